//! A black-box mutation run of the plugin binary on a fake node: valid
//! netconfs and CNI environments, mutated by a seeded PRNG (fields deleted,
//! retyped, set to odd strings or huge numbers, other devices named, the
//! environment and CNI_ARGS bent, stdin broken), each run as ADD, and as
//! DEL after it. For every input:
//!
//! - a failure exits 1 with an error JSON holding a known code and a message;
//! - nothing panics;
//! - a refused ADD changes nothing on the node, and neither does a DEL of it;
//! - an accepted ADD followed by DEL leaves the node as it was, byte for byte;
//! - no device but a network-class VF or a PF the node's settings hand over
//!   is ever taken (the NVMe VF, the NVMe controller, the PF that is not
//!   listed and the neighbour's VF keep their drivers).
//!
//! `DPDK_CNI_MUTATIONS` sets the number of inputs (300), `DPDK_CNI_MUTATION_SEED`
//! the seed; every failure is printed with the input that caused it.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use common::{Bed, NodeState, Outcome};
use serde_json::{json, Map, Value};
use vfio::PciAddress;

/// xorshift64*: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True `pct` times in 100.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// The network-class VFs of the bed's PF and what each one is for.
const FREE_VFS: &[usize] = &[0, 1, 5];
const NVME_VF: usize = 2;
const NEIGHBOUR_VF: usize = 3;
/// No driver, in VF 1's IOMMU group.
const UNBOUND_VF: usize = 4;
const NVME_CTRL: &str = "0000:02:00.0";
const LISTED_PF: &str = "0000:03:00.0";
const UNLISTED_PF: &str = "0000:04:00.0";

/// The fake node with its traps: an NVMe VF, an NVMe controller, a PF the
/// node hands over and one it does not, two VFs sharing an IOMMU group,
/// a neighbour's attachment, and files no tenant may reach.
struct World {
    bed: Bed,
    /// Devices whose driver and override must never change.
    watched: Vec<(PciAddress, Drivers)>,
    /// Devices a pod may be given.
    takeable: Vec<PciAddress>,
    /// An empty CNI_PATH: no IPAM plugin runs on the real host.
    cni_path: String,
}

type Drivers = (Option<String>, Option<String>);

impl World {
    fn new(kernel_links: bool) -> World {
        let bed = Bed::new(6);
        let vf = |i: usize| bed.pf.vfs[i];
        bed.node.set_class(vf(NVME_VF), 0x010802).unwrap();
        let nvme = bed
            .node
            .add_pf(NVME_CTRL.parse().unwrap(), "nvme0", 0, 0, 0, 50)
            .unwrap();
        bed.node.set_class(nvme.address, 0x010802).unwrap();
        bed.node
            .add_pf(LISTED_PF.parse().unwrap(), "ens3f0", 0, 8, 0, 60)
            .unwrap();
        bed.node
            .add_pf(UNLISTED_PF.parse().unwrap(), "ens4f0", 0, 8, 0, 70)
            .unwrap();
        bed.node.join_group(vf(UNBOUND_VF), 12).unwrap();
        vfio::fake::emulated(bed.root())
            .unbind(vf(UNBOUND_VF))
            .unwrap();
        bed.settings(json!({"handoverPfs": [LISTED_PF]}));
        for (rel, body) in [
            ("etc/shadow", "root:$6$x:19000::::::\n"),
            ("root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n"),
        ] {
            let p = bed.root().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        if kernel_links {
            // The PFs' netdevs exist in the plugin's (private) namespace,
            // unused by it: only the node's settings stand between a
            // netconf and each PF.
            for name in ["ens3f0", "ens4f0"] {
                let peer = format!("{name}p");
                // Left from a World this run made before.
                let _ = Command::new("ip")
                    .args(["link", "del", name])
                    .stderr(std::process::Stdio::null())
                    .status();
                let ok = Command::new("ip")
                    .args(["link", "add", name, "type", "veth", "peer", "name", &peer])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "ip link add {name} type veth");
            }
        }
        let cni_path = bed.tmp.path().join("cni-bin");
        std::fs::create_dir_all(&cni_path).unwrap();
        let out = bed.run("ADD", "pod-a", &bed.conf(NEIGHBOUR_VF, json!({"vlan": 30})));
        assert!(out.ok(), "the neighbour's ADD: {out:?}");
        let watched = [
            vf(NVME_VF),
            vf(NEIGHBOUR_VF),
            bed.pf.address,
            nvme.address,
            UNLISTED_PF.parse().unwrap(),
        ]
        .into_iter()
        .map(|a| (a, drivers(&bed, a)))
        .collect();
        let mut takeable: Vec<PciAddress> = FREE_VFS.iter().map(|&i| vf(i)).collect();
        takeable.push(vf(UNBOUND_VF));
        takeable.push(LISTED_PF.parse().unwrap());
        World {
            bed,
            watched,
            takeable,
            cni_path: cni_path.display().to_string(),
        }
    }

    /// Every device a pod may name, good and bad.
    fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> = self.bed.pf.vfs.iter().map(|a| a.to_string()).collect();
        d.extend(
            [
                "0000:01:00.0",
                NVME_CTRL,
                LISTED_PF,
                UNLISTED_PF,
                "0000:09:00.0",
                "0000:01:10.8",
                "0000:01:10.0/../../00.0",
            ]
            .map(String::from),
        );
        d
    }
}

fn drivers(bed: &Bed, a: PciAddress) -> Drivers {
    let sysfs = bed.node.sysfs();
    let d = sysfs.device(a).unwrap();
    (d.driver().unwrap(), d.driver_override().unwrap())
}

/// The node's state, less what logging is expected to write (log files
/// and their directories under `/var/log` and `/tmp`).
fn state(bed: &Bed) -> NodeState {
    let mut s = bed.state();
    s.sysfs
        .retain(|k, _| !(k.starts_with("var/log") || k == "tmp" || k.starts_with("tmp/")));
    s
}

/// One input: a netconf (or raw stdin) and the environment changes.
#[derive(Debug, Clone)]
struct Input {
    container: String,
    conf: Value,
    /// Replaces the netconf's JSON as stdin.
    stdin: Option<Vec<u8>>,
    /// Variables set (`Some`) or removed (`None`).
    env: BTreeMap<String, Option<String>>,
    mutations: Vec<String>,
}

impl Input {
    fn stdin(&self) -> Vec<u8> {
        self.stdin
            .clone()
            .unwrap_or_else(|| self.conf.to_string().into_bytes())
    }

    fn show(&self) -> String {
        format!(
            "container {:?}, env {:?}, stdin {}, after {:?}",
            self.container,
            self.env,
            String::from_utf8_lossy(&self.stdin()),
            self.mutations
        )
    }
}

/// The valid netconfs mutations start from.
fn base(w: &World, rng: &mut Rng, n: usize) -> Value {
    let bed = &w.bed;
    let free = *rng.pick(FREE_VFS);
    match rng.below(19) {
        0 => bed.conf(free, json!({})),
        1 => bed.conf(
            free,
            json!({"mac": "02:00:00:00:00:42", "vlan": 42, "vlanQoS": 1, "spoofchk": "off",
                   "trust": "on", "link_state": "enable", "min_tx_rate": 10, "max_tx_rate": 1000}),
        ),
        2 => bed.conf(free, json!({"vlan": 100, "vlanProto": "802.1ad"})),
        3 => bed.conf(0, json!({"deviceID": null, "master": "ens1f0", "vf": 1})),
        4 => bed.conf(
            0,
            json!({"deviceID": null, "runtimeConfig": {"deviceID": bed.vf(free), "mac": "02:00:00:00:00:10",
                   "CNIDeviceInfoFile": format!("/var/run/k8s.cni.cncf.io/devinfo/cni/mut-{n}.json")}}),
        ),
        5 => bed.conf(
            free,
            json!({"vlan": 100, "max_tx_rate": 1000, "podOverrides": ["vlan"],
                   "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {
                       "networks-sriov-vlan": "7", "networks-sriov-txrate": "0"}}}),
        ),
        6 => bed.conf(0, json!({"deviceID": LISTED_PF, "pfOnly": true})),
        7 => bed.conf(
            free,
            json!({"logLevel": "debug", "logFile": "/var/log/dpdk-cni.log"}),
        ),
        8 => bed.conf(free, json!({"deviceType": "netdevice", "mtu": 1400})),
        9 => bed.conf(
            0,
            json!({"deviceType": "macvlan", "master": "ens9", "deviceID": null}),
        ),
        10 => bed.conf(UNBOUND_VF, json!({})),
        11 => bed.conf(free, json!({"fallback": "netdevice"})),
        12 => json!({
            "cniVersion": "1.0.0", "name": "dpdk-net", "type": "dpdk-cni", "deviceType": "vfio-pci",
            "spoofchk": "off", "trust": "on", "runtimeConfig": {"deviceID": bed.vf(free)}}),
        13 => bed.conf(
            0,
            json!({"cniVersion": "0.4.0", "deviceID": null, "pciBusID": bed.vf(free), "trust": "off"}),
        ),
        // Devices no netconf may take.
        14 => bed.conf(NVME_VF, json!({})),
        15 => bed.conf(NEIGHBOUR_VF, json!({"vlan": 31})),
        16 => bed.conf(0, json!({"deviceID": NVME_CTRL, "pfOnly": true})),
        17 => bed.conf(0, json!({"deviceID": UNLISTED_PF, "pfOnly": true})),
        _ => bed.conf(
            0,
            json!({"deviceID": "0000:01:00.0", "pfOnly": true, "allowedDevices": ["0000:01:00.0"]}),
        ),
    }
}

const ODD_STRINGS: &[&str] = &[
    "..",
    "../../etc/shadow",
    "/",
    "a/b",
    "x\ny",
    "",
    " ",
    "é",
    "\u{0}",
    "%n%s",
    "/var/log/../../etc/shadow",
    "/var/run/k8s.cni.cncf.io/devinfo/../../../etc/shadow",
    "/var/run/k8s.cni.cncf.io/devinfo/x.json",
    "/var/run/k8s.cni.cncf.io/devinfo/a/b/c.json",
    "/var/log/a.log",
    "/tmp/x\nssh-ed25519 EVIL",
    "/root/.ssh/authorized_keys",
    "/etc/shadow",
    "vfio-pci",
    "netdevice",
    "macvlan",
    "on",
    "off",
    "802.1ad",
    "1.1.0",
    "0.2.0",
    "devices",
    "quarantine",
    "ens1f0",
    "ens3f0",
    "ens1f0v0",
    "02:00:00:00:00:01",
    "ff:ff:ff:ff:ff:ff",
    "00:00:00:00:00:00",
    "4094",
    "-1",
    "IgnoreUnknown",
];

fn odd_string(rng: &mut Rng, w: &World) -> String {
    match rng.below(5) {
        0 => rng.pick(&w.devices()).clone(),
        1 => "A".repeat(1 + rng.below(5000)),
        _ => rng.pick(ODD_STRINGS).to_string(),
    }
}

fn number(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => json!(u64::MAX),
        1 => json!(u32::MAX),
        2 => json!(u64::from(u32::MAX) + 1),
        3 => json!(-1),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(0.5),
        7 => json!(4095),
        8 => json!(65536),
        9 => json!(67),
        10 => json!(8),
        _ => json!(rng.below(5000)),
    }
}

fn any_value(rng: &mut Rng, w: &World) -> Value {
    match rng.below(8) {
        0 | 1 => Value::String(odd_string(rng, w)),
        2 => number(rng),
        3 => json!(rng.chance(50)),
        4 => Value::Null,
        5 => json!([odd_string(rng, w), odd_string(rng, w)]),
        6 => json!({"type": odd_string(rng, w)}),
        _ => json!({}),
    }
}

/// The same value as another JSON type.
fn retype(rng: &mut Rng, v: &Value) -> Value {
    match (v, rng.below(3)) {
        (Value::String(s), 0) => s.parse::<f64>().map_or(json!(s.len()), |f| json!(f)),
        (Value::String(s), 1) => json!([s]),
        (Value::Number(n), 0) => json!(n.to_string()),
        (Value::Number(_), 1) => json!(true),
        (Value::Bool(b), _) => json!(b.to_string()),
        (Value::Object(o), 0) => json!(o.keys().collect::<Vec<_>>()),
        (Value::Array(a), _) => a.first().cloned().unwrap_or(Value::Null),
        (_, 2) => json!({}),
        _ => Value::Null,
    }
}

/// The netconf's fields, as the plugin reads them.
use dpdk_cni::config::FIELDS;

const RUNTIME_FIELDS: &[&str] = &[
    "deviceID",
    "mac",
    "CNIDeviceInfoFile",
    "io.kubernetes.cri.pod-annotations",
];

/// Applies one mutation; returns what it did.
fn mutate(rng: &mut Rng, w: &World, inp: &mut Input) -> String {
    let conf = inp.conf.as_object_mut().expect("an object");
    let keys: Vec<String> = conf.keys().cloned().collect();
    // Deleting or retyping needs a field to work on.
    let op = if keys.is_empty() {
        2 + rng.below(9)
    } else {
        rng.below(11)
    };
    match op {
        0 => {
            let k = rng.pick(&keys).clone();
            conf.remove(&k);
            format!("delete {k}")
        }
        1 => {
            let k = rng.pick(&keys).clone();
            let v = retype(rng, &conf[&k]);
            conf.insert(k.clone(), v.clone());
            format!("retype {k} to {v}")
        }
        2 => {
            let k = rng.pick(FIELDS).to_string();
            let v = Value::String(odd_string(rng, w));
            conf.insert(k.clone(), v);
            format!("odd string in {k}")
        }
        3 => {
            let k = rng.pick(FIELDS).to_string();
            let v = number(rng);
            conf.insert(k.clone(), v.clone());
            format!("{k} = {v}")
        }
        4 => {
            let d = rng.pick(&w.devices()).clone();
            let k = *rng.pick(&["deviceID", "pciBusID", "runtimeConfig.deviceID"]);
            if k == "runtimeConfig.deviceID" {
                let rc = conf.entry("runtimeConfig").or_insert_with(|| json!({}));
                if !rc.is_object() {
                    *rc = json!({});
                }
                rc["deviceID"] = json!(d);
            } else {
                conf.insert(k.into(), json!(d));
            }
            if rng.chance(30) {
                conf.insert("pfOnly".into(), json!(true));
            }
            format!("{k} = {d} (pfOnly {:?})", conf.get("pfOnly"))
        }
        5 => {
            let k = rng.pick(FIELDS).to_string();
            let v = any_value(rng, w);
            conf.insert(k.clone(), v.clone());
            format!("{k} = {v}")
        }
        6 => {
            let rc = conf.entry("runtimeConfig").or_insert_with(|| json!({}));
            if !rc.is_object() {
                *rc = json!({});
            }
            let k = *rng.pick(RUNTIME_FIELDS);
            let v = if k == "io.kubernetes.cri.pod-annotations" {
                let mut m = Map::new();
                for key in ["networks-sriov-vlan", "networks-sriov-txrate"] {
                    if rng.chance(70) {
                        let val = match rng.below(3) {
                            0 => odd_string(rng, w),
                            1 => number(rng).to_string(),
                            _ => rng.below(4100).to_string(),
                        };
                        m.insert(key.into(), json!(val));
                    }
                }
                if rng.chance(50) {
                    let f = *rng.pick(&["vlan", "max_tx_rate", "trust", "mac"]);
                    conf.insert("podOverrides".into(), json!([f]));
                }
                Value::Object(m)
            } else {
                any_value(rng, w)
            };
            let rc = conf.get_mut("runtimeConfig").unwrap();
            rc[k] = v.clone();
            format!("runtimeConfig.{k} = {v}")
        }
        7 => {
            let (k, v) = env_change(rng);
            inp.env.insert(k.clone(), v.clone());
            format!("env {k} = {v:?}")
        }
        8 => {
            let a = env_safe(cni_args(rng, w));
            inp.env.insert("CNI_ARGS".into(), Some(a.clone()));
            format!("CNI_ARGS = {a:?}")
        }
        9 => {
            let c = match rng.below(4) {
                0 => (*rng.pick(&["a-b", "pod"])).to_string(),
                1 => "X".repeat(256),
                2 => "c.o_n-t".to_string(),
                _ => env_safe(odd_string(rng, w)),
            };
            inp.container = c.clone();
            format!("container {c:?}")
        }
        _ => {
            let mut s = inp.stdin();
            let what = match rng.below(6) {
                0 => {
                    s.truncate(rng.below(s.len().max(1)));
                    "truncated".to_string()
                }
                1 => {
                    let at = rng.below(s.len().max(1));
                    s.insert(at, 0xff);
                    "invalid UTF-8".to_string()
                }
                2 => {
                    s = format!(
                        "{}, \"vlan\": 123456789012345678901234567890}}",
                        String::from_utf8_lossy(&s[..s.len().saturating_sub(1)])
                    )
                    .into_bytes();
                    "a number past u64".to_string()
                }
                3 => {
                    s = format!(
                        "{}, \"deviceID\": \"{}\"}}",
                        String::from_utf8_lossy(&s[..s.len().saturating_sub(1)]),
                        UNLISTED_PF
                    )
                    .into_bytes();
                    "a duplicate key".to_string()
                }
                4 => {
                    let depth = 1 + rng.below(300);
                    s = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
                    format!("nested {depth} deep")
                }
                _ => {
                    s.extend_from_slice(b" trailing");
                    "trailing garbage".to_string()
                }
            };
            inp.stdin = Some(s);
            format!("stdin {what}")
        }
    }
}

/// An environment variable cannot hold a NUL byte.
fn env_safe(s: String) -> String {
    s.replace('\0', "")
}

fn env_change(rng: &mut Rng) -> (String, Option<String>) {
    let unset = rng.chance(20);
    let (k, vals): (&str, &[&str]) = match rng.below(5) {
        0 => (
            "CNI_CONTAINERID",
            &["", "../x", "a b", "a/b", ".", "é", "x\ny"],
        ),
        1 => (
            "CNI_IFNAME",
            &[
                "",
                "a/b",
                "0123456789abcdef",
                "a:b",
                "net-1",
                "a-net1",
                ".",
                "eth0 ",
                "ens1f0",
            ],
        ),
        // Paths that name no namespace: nothing outside the test is touched.
        2 => (
            "CNI_NETNS",
            &[
                "",
                "relative/ns",
                "/var/run/netns/none",
                "/nonexistent/../x",
            ],
        ),
        3 => ("CNI_PATH", &["", ":::", "/nonexistent"]),
        _ => ("CNI_COMMAND", &["add", "BOGUS", "", "ADD "]),
    };
    let v = (!unset).then(|| rng.pick(vals).to_string());
    (k.to_string(), v)
}

fn cni_args(rng: &mut Rng, w: &World) -> String {
    let mut parts = Vec::new();
    for _ in 0..1 + rng.below(3) {
        parts.push(match rng.below(9) {
            0 => format!("VF={}", rng.below(8)),
            1 => format!("VF={}", number(rng)),
            2 => "MAC=02:00:00:00:00:99".to_string(),
            3 => format!("MAC={}", odd_string(rng, w)),
            4 => "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns".to_string(),
            5 => "VF".to_string(),
            6 => "=;=;".to_string(),
            7 => ";;;".to_string(),
            _ => format!("{}={}", odd_string(rng, w), odd_string(rng, w)),
        });
    }
    parts.join(";")
}

/// The codes the plugin defines (199, injected failures, is not set here).
const KNOWN_CODES: &[u64] = &[
    1, 2, 3, 4, 5, 6, 7, 11, 50, 100, 101, 102, 103, 104, 105, 106, 107, 108,
];

fn run(w: &World, cmd: &str, inp: &Input) -> Outcome {
    let mut c = w.bed.command(cmd, &inp.container, "net1", &[]);
    c.env("CNI_PATH", &w.cni_path);
    for (k, v) in &inp.env {
        if k == "CNI_COMMAND" && cmd != "ADD" {
            continue;
        }
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    common::run_process(c, &inp.stdin())
}

/// What is wrong with how a command ended, if anything.
fn ending_faults(out: &Outcome) -> Vec<String> {
    let mut f = Vec::new();
    if out.code == Some(101) || out.stderr.contains("panicked") {
        f.push(format!("panicked: {}", out.stderr.trim()));
    }
    match out.code {
        Some(0) => {}
        Some(1) => match &out.json {
            Some(j) => {
                match j["code"].as_u64() {
                    Some(c) if KNOWN_CODES.contains(&c) => {}
                    other => f.push(format!("error JSON with code {other:?}: {j}")),
                }
                if j["msg"].as_str().is_none_or(|m| m.trim().is_empty()) {
                    f.push(format!("error JSON without a message: {j}"));
                }
            }
            None => f.push(format!("exit 1 without an error JSON: {:?}", out.stdout)),
        },
        other => f.push(format!(
            "exit {other:?}: stdout {:?} stderr {:?}",
            out.stdout, out.stderr
        )),
    }
    f
}

/// What differs between two states, if anything.
fn diff(before: &NodeState, after: &NodeState) -> Option<String> {
    let mut d = Vec::new();
    for (k, v) in &before.sysfs {
        match after.sysfs.get(k) {
            None => d.push(format!("removed {k} ({v:?})")),
            Some(w) if w != v => d.push(format!("changed {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    for (k, v) in &after.sysfs {
        if !before.sysfs.contains_key(k) {
            d.push(format!("added {k} ({v:?})"));
        }
    }
    if before.vfs != after.vfs {
        for (pf, link) in before.vfs["links"].as_object().into_iter().flatten() {
            let was = link["vfs"].as_array().cloned().unwrap_or_default();
            let now = after.vfs["links"][pf]["vfs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for i in 0..was.len().max(now.len()) {
                if was.get(i) != now.get(i) {
                    d.push(format!(
                        "VF {i} of {pf}: {:?} -> {:?}",
                        was.get(i),
                        now.get(i)
                    ));
                }
            }
        }
    }
    if before.attachments != after.attachments {
        d.push(format!(
            "state dir {:?} -> {:?}",
            before.attachments, after.attachments
        ));
    }
    (!d.is_empty()).then(|| d.join("\n      "))
}

/// Devices that must keep their drivers and did not; devices taken that
/// may not be.
fn taken_faults(w: &World, before: &NodeState) -> Vec<String> {
    let mut f = Vec::new();
    for (a, d) in &w.watched {
        let now = drivers(&w.bed, *a);
        if now != *d {
            f.push(format!("{a} went from {d:?} to {now:?}"));
        }
    }
    let sysfs = w.bed.node.sysfs();
    for a in sysfs.devices().unwrap() {
        let key = format!("sys/bus/pci/devices/{a}/driver");
        let was = before.sysfs.get(&key);
        let now = std::fs::read_link(w.bed.root().join(&key))
            .ok()
            .map(|t| format!("-> {}", t.display()));
        if was != now.as_ref() && !w.takeable.contains(&a) {
            f.push(format!("{a} was taken: driver {was:?} -> {now:?}"));
        }
    }
    if let Ok(rd) = std::fs::read_dir(w.bed.state_dir.join("devices")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(a) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<PciAddress>().ok())
            else {
                continue;
            };
            if !w.takeable.contains(&a) && a != w.bed.pf.vfs[NEIGHBOUR_VF] {
                f.push(format!("{a} is claimed"));
            }
        }
    }
    f
}

#[derive(Default)]
struct Tally {
    tried: usize,
    accepted: usize,
    refused: usize,
    failures: Vec<String>,
}

#[test]
fn mutated_inputs_never_hurt_the_node() {
    let count: usize = std::env::var("DPDK_CNI_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("DPDK_CNI_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    // A network namespace of this thread's own, inherited by the plugin:
    // whatever a mutated netconf makes it try on links (macvlan, netdevice
    // moves, PF guards) stays in it.
    let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok();
    let mut rng = Rng::new(seed);
    let mut w = World::new(private);
    let mut t = Tally::default();
    let started = std::time::Instant::now();
    for n in 0..count {
        let mut inp = Input {
            container: format!("m{n}"),
            conf: base(&w, &mut rng, n),
            stdin: None,
            env: BTreeMap::new(),
            mutations: Vec::new(),
        };
        // A quarter of the inputs are left valid.
        let rounds = if rng.chance(25) { 0 } else { 1 + rng.below(3) };
        for _ in 0..rounds {
            let m = mutate(&mut rng, &w, &mut inp);
            inp.mutations.push(m);
        }
        if !private {
            // Without a namespace of our own, stay off the host's links:
            // vfio-pci mode (the default) only, no whole PF.
            for k in ["deviceType", "fallback", "pfOnly", "master"] {
                inp.conf.as_object_mut().unwrap().remove(k);
            }
            inp.stdin = None;
        }
        t.tried += 1;
        let faults = one_input(&w, &inp, &mut t);
        if !faults.is_empty() {
            let f = format!("input {n}: {}\n    {}", inp.show(), faults.join("\n    "));
            let _ = writeln!(std::io::stderr(), "mutation run: failure: {f}");
            t.failures.push(f);
            // Start again from a clean node, so one fault is reported once.
            w = World::new(private);
        }
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "mutation run (seed {seed:#x}, {}): {} inputs tried, {} accepted, {} refused, {} failures found, {:.1} s",
        if private { "private netns" } else { "vfio-pci only: no private netns" },
        t.tried,
        t.accepted,
        t.refused,
        t.failures.len(),
        started.elapsed().as_secs_f64()
    );
    for f in &t.failures {
        let _ = writeln!(err, "  {f}");
    }
    assert!(t.failures.is_empty(), "{} failures", t.failures.len());
    assert!(
        t.accepted > 0,
        "no input was accepted: the bases are broken"
    );
}

/// Runs ADD (and DEL) of one input; returns what went wrong.
fn one_input(w: &World, inp: &Input, t: &mut Tally) -> Vec<String> {
    let bed = &w.bed;
    let before = state(bed);
    let add = run(w, "ADD", inp);
    let mut faults: Vec<String> = ending_faults(&add)
        .into_iter()
        .map(|f| format!("ADD: {f}"))
        .collect();
    faults.extend(
        taken_faults(w, &before)
            .into_iter()
            .map(|f| format!("ADD: {f}")),
    );
    if add.ok() {
        t.accepted += 1;
        if add
            .json
            .as_ref()
            .is_none_or(|j| j.get("cniVersion").is_none())
        {
            faults.push(format!("ADD: no CNI result: {:?}", add.stdout));
        }
    } else {
        t.refused += 1;
        if let Some(d) = diff(&before, &state(bed)) {
            faults.push(format!("refused ADD ({}) changed the node: {d}", add.msg()));
        }
    }
    if !faults.is_empty() {
        return faults;
    }
    // A runtime calls DEL after every ADD, failed or not.
    let del = run(w, "DEL", inp);
    faults.extend(ending_faults(&del).into_iter().map(|f| format!("DEL: {f}")));
    faults.extend(
        taken_faults(w, &before)
            .into_iter()
            .map(|f| format!("DEL: {f}")),
    );
    if add.ok() && !del.ok() {
        faults.push(format!("DEL of an accepted ADD failed: {}", del.stdout));
    }
    if let Some(d) = diff(&before, &state(bed)) {
        faults.push(format!(
            "ADD ({}) then DEL ({}) did not restore the node: {d}",
            if add.ok() { "accepted" } else { "refused" },
            if del.ok() { "ok" } else { "failed" }
        ));
    }
    faults
}
