#![no_main]
//! The CNI environment: `CNI_ARGS` parsed on its own, every variable of the
//! environment read for every command, and the CNI_ARGS a plan uses (`VF=`,
//! `MAC=`) fed into an ADD plan that names its VF by `master`.

use std::collections::HashMap;

use arbitrary::Arbitrary;
use dpdk_cni::config;
use dpdk_cni::env::{self, Command};
use dpdk_cni::error::code;
use dpdk_cni::plan::{self, DeviceRef};
use fuzzkit::{expect_err, is_container_id, is_ifname, with_bed};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    command: Option<String>,
    container_id: Option<String>,
    ifname: Option<String>,
    netns: Option<String>,
    args: Option<String>,
    path: Option<String>,
    /// Pairs appended to `args`, so keys the plugin reads come up often.
    pairs: Vec<(Key, String)>,
}

#[derive(Debug, Arbitrary)]
enum Key {
    Vf,
    Mac,
    PodName,
    IgnoreUnknown,
    Other(String),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Vf => "VF",
            Key::Mac => "MAC",
            Key::PodName => "K8S_POD_NAME",
            Key::IgnoreUnknown => "IgnoreUnknown",
            Key::Other(s) => s,
        }
    }
}

const COMMANDS: &[(&str, Command)] = &[
    ("ADD", Command::Add),
    ("DEL", Command::Del),
    ("CHECK", Command::Check),
    ("STATUS", Command::Status),
    ("GC", Command::Gc),
    ("VERSION", Command::Version),
];

fuzz_target!(|input: Input| {
    let mut args = input.args.clone();
    for (k, v) in &input.pairs {
        let a = args.get_or_insert_with(String::new);
        a.push_str(&format!(";{}={v}", k.name()));
    }
    if let Some(a) = &args {
        check_parse_args(a);
    }
    let vars: HashMap<&str, String> = [
        ("CNI_COMMAND", input.command.clone()),
        ("CNI_CONTAINERID", input.container_id.clone()),
        ("CNI_IFNAME", input.ifname.clone()),
        ("CNI_NETNS", input.netns.clone()),
        ("CNI_ARGS", args.clone()),
        ("CNI_PATH", input.path.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    let get = |k: &str| vars.get(k).cloned();

    match env::command(&get) {
        Ok(c) => {
            let named = COMMANDS.iter().find(|(_, cmd)| *cmd == c).unwrap().0;
            assert_eq!(input.command.as_deref(), Some(named));
        }
        Err(e) => {
            expect_err(&e, &[code::INVALID_ENV]);
            assert!(!COMMANDS
                .iter()
                .any(|(n, _)| Some(*n) == input.command.as_deref()));
        }
    }

    for &(_, cmd) in COMMANDS {
        let e = match env::read(cmd, &get) {
            Ok(e) => e,
            Err(e) => {
                expect_err(&e, &[code::INVALID_ENV]);
                continue;
            }
        };
        if matches!(cmd, Command::Add | Command::Del | Command::Check) {
            assert!(is_container_id(&e.container_id), "{:?}", e.container_id);
            assert!(is_ifname(&e.ifname), "{:?}", e.ifname);
            if cmd != Command::Del {
                assert!(!e.netns.is_empty());
            }
        }
        let want = args.as_deref().map(|a| env::parse_args(a).unwrap());
        assert_eq!(e.args, want.unwrap_or_default());
        assert!(e.path.iter().all(|p| !p.as_os_str().is_empty()));
        if cmd == Command::Add {
            check_plan_args(&e);
        }
    }
});

/// `K=V;K=V`: refused exactly when a non-empty pair has no `=`; otherwise
/// the pairs, in order, join back to the input without its empty pairs.
fn check_parse_args(a: &str) {
    let pairs: Vec<&str> = a.split(';').filter(|p| !p.is_empty()).collect();
    match env::parse_args(a) {
        Ok(kv) => {
            assert!(pairs.iter().all(|p| p.contains('=')));
            assert_eq!(kv.len(), pairs.len());
            for ((k, v), p) in kv.iter().zip(&pairs) {
                assert!(!k.contains('=') && !k.contains(';') && !v.contains(';'));
                assert_eq!(format!("{k}={v}"), *p);
            }
        }
        Err(e) => {
            expect_err(&e, &[code::INVALID_ENV]);
            assert!(pairs.iter().any(|p| !p.contains('=')), "{a:?}: {e:?}");
        }
    }
}

/// An ADD plan naming its VF as `master` plus CNI_ARGS `VF=`: the index is
/// the argument's, a bad index is an environment error (4), a bad `MAC=` a
/// netconf one (7).
fn check_plan_args(e: &env::CniEnv) {
    let conf =
        br#"{"cniVersion": "1.1.0", "name": "sriov-dpdk", "type": "dpdk-cni", "master": "ens1f0"}"#;
    let (raw, _) = config::parse_raw(conf).unwrap();
    with_bed(|bed| match plan::plan(&raw, e, &bed.node) {
        Ok(p) => {
            let vf: u32 = e.arg("VF").expect("a VF index").parse().unwrap();
            assert_eq!(
                p.device,
                DeviceRef::PfVf {
                    master: "ens1f0".into(),
                    vf
                }
            );
            if let Some(m) = e.arg("MAC") {
                assert_eq!(p.vf.mac, Some(m.parse().unwrap()));
            }
        }
        Err(err) => {
            let vf_ok = e.arg("VF").is_some_and(|v| v.parse::<u32>().is_ok());
            if vf_ok {
                expect_err(&err, &[code::INVALID_NETCONF]);
                assert!(err.msg.contains("MAC"), "{err:?}");
            } else if e.arg("VF").is_some() {
                expect_err(&err, &[code::INVALID_ENV]);
            } else {
                expect_err(&err, &[code::INVALID_NETCONF]);
            }
        }
    });
}
