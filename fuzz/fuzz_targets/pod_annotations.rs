#![no_main]
//! Pod annotations (`runtimeConfig["io.kubernetes.cri.pod-annotations"]`)
//! against the netconf's `podOverrides`: a pod changes the VLAN or the tx
//! rate limit only where its network opens that field, whatever else its
//! annotations hold.

use arbitrary::Arbitrary;
use dpdk_cni::config;
use dpdk_cni::env::CniEnv;
use dpdk_cni::error::code;
use dpdk_cni::plan;
use fuzzkit::{check_plan, expect_err, with_bed};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

#[derive(Debug, Arbitrary)]
struct Input {
    vlan: Option<Num>,
    vlan_qos: Option<Num>,
    qinq: bool,
    min_tx_rate: Option<Num>,
    max_tx_rate: Option<Num>,
    pf_only: bool,
    overrides: Option<Vec<Field>>,
    annotations: Vec<(Key, Val)>,
}

/// A number: one at or around a bound, more often than chance would pick.
#[derive(Debug, Arbitrary)]
enum Num {
    Edge(u8),
    Any(u32),
}

/// The bounds the plugin checks against, and one either side.
const EDGES: &[u32] = &[
    0,
    1,
    6,
    7,
    8,
    4093,
    4094,
    4095,
    4096,
    65535,
    65536,
    u32::MAX,
];

impl Num {
    fn get(&self) -> u32 {
        match self {
            Num::Edge(i) => EDGES[*i as usize % EDGES.len()],
            Num::Any(n) => *n,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Field {
    Vlan,
    MaxTxRate,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Key {
    Vlan,
    TxRate,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Val {
    Number(i64),
    Edge(Num),
    Spaced(u32),
    Text(String),
}

const VLAN_KEY: &str = "networks-sriov-vlan";
const RATE_KEY: &str = "networks-sriov-txrate";

fuzz_target!(|input: Input| {
    let mut conf = json!({
        "cniVersion": "1.1.0",
        "name": "sriov-dpdk",
        "type": "dpdk-cni",
        "deviceID": "0000:01:10.0",
    });
    let set = |c: &mut Value, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            c[k] = v;
        }
    };
    let num = |n: &Option<Num>| n.as_ref().map(|n| json!(n.get()));
    set(&mut conf, "vlan", num(&input.vlan));
    set(&mut conf, "vlanQoS", num(&input.vlan_qos));
    if input.qinq {
        conf["vlanProto"] = json!("802.1ad");
    }
    set(&mut conf, "min_tx_rate", num(&input.min_tx_rate));
    set(&mut conf, "max_tx_rate", num(&input.max_tx_rate));
    if input.pf_only {
        conf["pfOnly"] = json!(true);
    }
    let overrides: Option<Vec<String>> = input.overrides.as_ref().map(|o| {
        o.iter()
            .map(|f| match f {
                Field::Vlan => "vlan".to_string(),
                Field::MaxTxRate => "max_tx_rate".to_string(),
                Field::Other(s) => s.clone(),
            })
            .collect()
    });
    set(
        &mut conf,
        "podOverrides",
        overrides.clone().map(Value::from),
    );
    let mut ann = Map::new();
    for (k, v) in &input.annotations {
        let k = match k {
            Key::Vlan => VLAN_KEY.to_string(),
            Key::TxRate => RATE_KEY.to_string(),
            Key::Other(s) => s.clone(),
        };
        let v = match v {
            Val::Number(n) => n.to_string(),
            Val::Edge(n) => n.get().to_string(),
            Val::Spaced(n) => format!(" {n}\t"),
            Val::Text(s) => s.clone(),
        };
        ann.insert(k, Value::String(v));
    }
    conf["runtimeConfig"] = json!({ "io.kubernetes.cri.pod-annotations": ann });

    let (raw, _) = config::parse_raw(conf.to_string().as_bytes()).expect("a well-formed netconf");
    let opened = |f: &str| overrides.iter().flatten().any(|o| o == f);
    let res = with_bed(|bed| {
        let res = plan::plan(&raw, &CniEnv::default(), &bed.node);
        if let Ok(p) = &res {
            check_plan(bed, &raw, p);
        }
        res
    });
    let p = match res {
        Ok(p) => p,
        Err(e) => {
            expect_err(&e, &[code::INVALID_NETCONF]);
            return;
        }
    };
    assert!(
        overrides
            .iter()
            .flatten()
            .all(|o| o == "vlan" || o == "max_tx_rate"),
        "podOverrides {overrides:?} accepted"
    );
    let ann_str = |k: &str| ann.get(k).and_then(Value::as_str).map(str::trim);
    let vlan = p.vf.vlan.map(|v| v.id);
    match ann_str(VLAN_KEY) {
        Some(a) if opened("vlan") => assert_eq!(vlan, Some(a.parse().unwrap()), "{conf}"),
        _ => assert_eq!(
            vlan,
            raw.vlan.map(|v| v as u16),
            "a pod changed its VLAN: {conf}"
        ),
    }
    let max = p.vf.rate.map(|r| r.max);
    match ann_str(RATE_KEY) {
        Some(a) if opened("max_tx_rate") => assert_eq!(max, Some(a.parse().unwrap()), "{conf}"),
        _ => {
            let want = (raw.min_tx_rate.is_some() || raw.max_tx_rate.is_some())
                .then(|| raw.max_tx_rate.unwrap_or(0));
            assert_eq!(max, want, "a pod changed its rate limit: {conf}");
        }
    }
    if let Some(r) = p.vf.rate {
        assert_eq!(r.min, raw.min_tx_rate.unwrap_or(0), "{conf}");
    }
    if raw.min_tx_rate.is_some() {
        assert!(p.vf.rate.is_some(), "min_tx_rate dropped: {conf}");
    }
});
