//! The node a compatibility run happens on: the fake node of `common::Bed`
//! (PF ens1f0 at 0000:01:00.0, two igbvf VFs, the recording netlink fake
//! standing in for the PF driver), `/tmp` and `/var/log` as a node has
//! them, a `CNI_PATH` with the IPAM plugins the configs name, and for a VF
//! on its kernel driver a network namespace playing the node, where a veth
//! end stands in for the VF's netdev, and one per pod.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{self, Bed, NodeState, Outcome};

/// Everything a command could change on the node, with the VF netdevs.
pub type Snapshot = (NodeState, Vec<Option<String>>);

use super::case::VfSetup;

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Ns(pub String);

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("dcc-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Ns(name)
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    /// Runs `cmd` in the namespace; its stdout, or `None` if it failed.
    pub fn sh(&self, cmd: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Whether runs that need network namespaces can happen here.
pub fn can_make_namespaces() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A link as the node sees it: name, admin state, MTU, MAC.
pub fn link_line(ns: &Ns, name: &str) -> Option<String> {
    let line = ns.sh(&format!("ip -o link show {name} 2>/dev/null"))?;
    let flags = line.split('<').nth(1)?.split('>').next()?;
    let up = flags.split(',').any(|f| f == "UP");
    let mtu = line.split(" mtu ").nth(1)?.split(' ').next()?;
    let mac = line.split("link/ether ").nth(1)?.split(' ').next()?;
    Some(format!("{name} up={up} mtu={mtu} mac={mac}"))
}

pub struct RunNode {
    pub bed: Bed,
    /// The node's network namespace (a VF on its kernel driver only).
    pub host: Option<Ns>,
    pub cni_path: PathBuf,
    pub ipam_dir: PathBuf,
}

/// The VF every run takes; VF 1 is its neighbour.
pub const VF: usize = 0;
/// The netdevs the node has for the two VFs and their MACs.
pub const NETDEVS: [(&str, &str); 2] = [
    ("ens1f0v0", "02:00:00:00:0f:00"),
    ("ens1f0v1", "02:00:00:00:0f:01"),
];

/// Writes a stand-in for sriov-cni's `test-ipam-cni` (its integration
/// tests' IPAM): answers ADD with the same 0.3.1 result it gives,
/// 192.0.2.1/24 named after CNI_IFNAME, and nothing for DEL.
fn write_test_ipam(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("test-ipam-cni");
    std::fs::write(
        &p,
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n\
         printf '{\"cniVersion\":\"0.3.1\",\"interfaces\":[{\"name\":\"%s\"}],\"ips\":[{\"name\":\"%s\",\"address\":\"192.0.2.1/24\"}]}\\n' \"$CNI_IFNAME\" \"$CNI_IFNAME\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl RunNode {
    pub fn new(setup: VfSetup, tag: &str, netdev_mtu: Option<u32>) -> RunNode {
        let bed = Bed::new(2);
        for d in ["tmp", "var/log"] {
            std::fs::create_dir_all(bed.root().join(d)).unwrap();
        }
        let cni_path = bed.tmp.path().join("cni-bin");
        std::fs::create_dir_all(&cni_path).unwrap();
        for p in ["host-local", "static", "dhcp"] {
            let _ = std::os::unix::fs::symlink(format!("/usr/lib/cni/{p}"), cni_path.join(p));
        }
        write_test_ipam(&cni_path);
        let ipam_dir = bed.tmp.path().join("ipam");
        let sysfs = vfio::fake::emulated(bed.root());
        let vf = bed.pf.vfs[VF];
        let host = match setup {
            VfSetup::Kernel => {
                let host = Ns::new(&format!("{tag}-h"));
                let (a, b) = (NETDEVS[0], NETDEVS[1]);
                let mtu = netdev_mtu.unwrap_or(1500);
                host.sh(&format!(
                    "ip link add {} type veth peer name {} && ip link set {} address {} && ip link set {} address {} \
                     && ip link set {} mtu {mtu} && ip link set {} up",
                    a.0, b.0, a.0, a.1, b.0, b.1, a.0, a.0
                ))
                .expect("veth stand-ins for the VF netdevs");
                Some(host)
            }
            VfSetup::VfioPci => {
                sysfs
                    .bind_driver(vf, "vfio-pci", Default::default())
                    .unwrap();
                None
            }
            VfSetup::IgbUio => {
                bed.node.add_driver("igb_uio").unwrap();
                sysfs
                    .bind_driver(vf, "igb_uio", Default::default())
                    .unwrap();
                None
            }
            VfSetup::VfioEarlyBind => {
                bed.prebind(VF, "igbvf");
                None
            }
        };
        RunNode {
            bed,
            host,
            cni_path,
            ipam_dir,
        }
    }

    pub fn device(&self) -> String {
        self.bed.vf(VF)
    }

    /// Runs a CNI command as a runtime does, in the node's namespace when
    /// there is one.
    pub fn run(&self, cmd: &str, env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let cni_path = self.cni_path.display().to_string();
        let mut env = env.to_vec();
        env.push(("CNI_PATH", &cni_path));
        let container = env
            .iter()
            .find(|(k, _)| *k == "CNI_CONTAINERID")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let ifname = env
            .iter()
            .find(|(k, _)| *k == "CNI_IFNAME")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let inner = self.bed.command(cmd, &container, &ifname, &env);
        let Some(host) = &self.host else {
            return common::run_process(inner, stdin);
        };
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.0, &common::bin()]);
        c.env_clear();
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        common::run_process(c, stdin)
    }

    pub fn driver(&self) -> String {
        self.bed.driver(VF).unwrap_or_else(|| "none".into())
    }

    /// The VF's admin state as the PF reports it.
    pub fn vf_state(&self) -> Value {
        serde_json::to_value(&self.bed.nl.load().unwrap().links["ens1f0"].vfs[VF]).unwrap()
    }

    /// Everything on the node a command could change, with the VF netdevs.
    pub fn snapshot(&self) -> Snapshot {
        let links = match &self.host {
            Some(h) => NETDEVS.iter().map(|(n, _)| link_line(h, n)).collect(),
            None => Vec::new(),
        };
        (self.bed.state(), links)
    }
}

/// Differences between two node states, one line each; `log` is a log
/// file the run may have written (a path from the node's root).
pub fn node_diff(before: &Snapshot, after: &Snapshot, log: Option<&str>) -> Vec<String> {
    let (b, a) = (&before.0, &after.0);
    let log = log.map(|l| l.trim_start_matches('/'));
    let mut d = Vec::new();
    for (k, v) in b.sysfs.iter().filter(|(k, _)| Some(k.as_str()) != log) {
        match a.sysfs.get(k) {
            None => d.push(format!("removed {k}")),
            Some(w) if w != v => d.push(format!("changed {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    d.extend(
        a.sysfs
            .keys()
            .filter(|k| !b.sysfs.contains_key(*k) && Some(k.as_str()) != log)
            .map(|k| format!("added {k}")),
    );
    if b.vfs != a.vfs {
        d.push(format!("VF state {} -> {}", b.vfs, a.vfs));
    }
    if b.attachments != a.attachments {
        d.push(format!(
            "state dir {:?} -> {:?}",
            b.attachments, a.attachments
        ));
    }
    if before.1 != after.1 {
        d.push(format!("node links {:?} -> {:?}", before.1, after.1));
    }
    d
}

/// The pod's interface as `ip` shows it in the pod.
pub fn pod_link(ns: &Ns, name: &str) -> Value {
    let Some(line) = ns.sh(&format!("ip -o link show {name} 2>/dev/null")) else {
        return json!({"name": null});
    };
    let field = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    let addrs: Vec<String> = ns
        .sh(&format!("ip -o -4 addr show dev {name}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split(" inet ")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .collect();
    json!({
        "name": name,
        "mac": field("link/ether "),
        "mtu": field(" mtu ").and_then(|m| m.parse::<u32>().ok()),
        "addresses": addrs,
    })
}
