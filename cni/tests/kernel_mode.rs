//! The kernel-mode paths in real network namespaces: `netdevice` (a veth end
//! stands in for each VF netdev, VF admin calls go through the recording
//! fake), `macvlan`, pfOnly guards, the vfio-pci to netdevice fallback, with
//! Debian's real host-local IPAM.
//!
//! The plugin runs in a namespace playing the node ("host"); pods are
//! namespaces of their own.

mod common;

use std::process::Command;

use common::{Bed, Outcome};
use serde_json::{json, Value};

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("dc-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
    fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn try_sh(&self, cmd: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .status()
            .unwrap()
            .success()
    }
    fn delete(&self) {
        if std::path::Path::new(&self.path()).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        self.delete();
    }
}

fn root() -> bool {
    let r = nix::unistd::Uid::effective().is_root();
    if !r {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run these tests as root"
        );
        eprintln!("skipped: needs root for network namespaces");
    }
    r
}

/// A node namespace with two "VF netdevs" (ens1f0v0, ens1f0v1), the two ends
/// of one veth pair, so pods holding them can reach each other as two VFs on
/// one PF do through the NIC's switch.
struct Node {
    bed: Bed,
    host: Ns,
}

impl Node {
    fn new(tag: &str) -> Node {
        let bed = Bed::new(2);
        let host = Ns::new(tag);
        host.sh(
            "ip link add ens1f0v0 type veth peer name ens1f0v1 && \
             ip link set ens1f0v0 address 02:00:00:00:0f:00 && ip link set ens1f0v1 address 02:00:00:00:0f:01 && \
             ip link set ens1f0v0 up",
        );
        Node { bed, host }
    }

    fn run(&self, cmd: &str, container: &str, netns: &str, conf: &Value) -> Outcome {
        self.run_as(cmd, container, "net1", netns, conf, &[])
    }

    fn run_as(
        &self,
        cmd: &str,
        container: &str,
        ifname: &str,
        netns: &str,
        conf: &Value,
        env: &[(&str, &str)],
    ) -> Outcome {
        let mut env = env.to_vec();
        env.push(("CNI_NETNS", netns));
        let inner = self.bed.command(cmd, container, ifname, &env);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host.0, &common::bin()]);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        common::run_process(c, conf.to_string().as_bytes())
    }

    fn conf(&self, vf: usize, extra: Value) -> Value {
        let mut c = self.bed.conf(
            vf,
            json!({"deviceType": "netdevice",
                   "ipam": {"type": "host-local", "dataDir": self.bed.tmp.path().join("ipam"),
                            "ranges": [[{"subnet": "10.99.0.0/24", "gateway": "10.99.0.1"}]],
                            "routes": [{"dst": "0.0.0.0/0"}]}}),
        );
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// Name, admin state, MTU and MAC of a node link (not its peer or carrier).
    fn link(&self, name: &str) -> String {
        let line = self.host.sh(&format!("ip -o link show {name}"));
        let name = line
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("")
            .to_string();
        let flags = line
            .split('<')
            .nth(1)
            .and_then(|f| f.split('>').next())
            .unwrap_or("");
        let up = flags.split(',').any(|f| f == "UP");
        let mtu = line
            .split(" mtu ")
            .nth(1)
            .and_then(|m| m.split(' ').next())
            .unwrap_or("");
        let mac = line
            .split("link/ether ")
            .nth(1)
            .and_then(|m| m.split(' ').next())
            .unwrap_or("");
        format!("{name} up={up} mtu={mtu} mac={mac}")
    }
}

#[test]
fn netdevice_moves_the_vf_into_the_pod_and_back() {
    if !root() {
        return;
    }
    let node = Node::new("nd");
    let (p1, p2) = (Ns::new("p1"), Ns::new("p2"));
    let before0 = node.link("ens1f0v0");
    let before_vfs = node.bed.state().vfs;

    let c2 = node.conf(1, json!({}));
    let out = node.run("ADD", "pod2", &p2.path(), &c2);
    assert!(out.ok(), "{out:?}");
    // pod2 learns pod1's address from its gratuitous ARP, not from a ping.
    p2.sh("sysctl -qw net.ipv4.conf.net1.arp_accept=1");

    let c1 = node.conf(
        0,
        json!({"mac": "02:00:00:00:00:a1", "vlan": 20, "mtu": 1400}),
    );
    let out = node.run("ADD", "pod1", &p1.path(), &c1);
    assert!(out.ok(), "{out:?}");
    let res = out.json.unwrap();
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:00:00:a1");
    assert_eq!(res["interfaces"][0]["pciID"], node.bed.vf(0));
    assert_eq!(res["ips"][0]["address"], "10.99.0.3/24");

    // In the pod: the name, MAC, MTU, address and default route; gone from the node.
    let l = p1.sh("ip -o link show net1");
    assert!(
        l.contains("02:00:00:00:00:a1") && l.contains("mtu 1400") && l.contains("UP"),
        "{l}"
    );
    assert!(p1.sh("ip -o addr show net1").contains("10.99.0.3/24"));
    assert!(p1
        .sh("ip route show default")
        .contains("via 10.99.0.1 dev net1"));
    assert!(!node.host.try_sh("ip link show ens1f0v0 2>/dev/null"));
    // The VF admin MAC and VLAN were set through the PF.
    let vf0 = &node.bed.nl.load().unwrap().links["ens1f0"].vfs[0];
    assert_eq!(
        (vf0.mac.to_string(), vf0.vlan),
        ("02:00:00:00:00:a1".into(), 20)
    );

    let neigh = p2.sh("ip neigh show 10.99.0.3 dev net1");
    assert!(
        neigh.contains("02:00:00:00:00:a1"),
        "no gratuitous ARP seen: {neigh:?}"
    );
    assert!(
        p1.try_sh("ping -c 1 -W 2 10.99.0.2 >/dev/null"),
        "pod1 cannot reach pod2"
    );

    // The device-info file tells a DPDK app how to reach it.
    let di: Value = serde_json::from_slice(
        &std::fs::read(
            node.bed
                .root()
                .join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)
                .join("sriov-dpdk-pod1-net1-device.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(di["pci"]["device-type"], "netdevice");
    assert_eq!(di["pci"]["eal-vdev"], "net_af_packet0,iface=net1");

    assert!(node.run("CHECK", "pod1", &p1.path(), &c1).ok());

    let lease = node.bed.tmp.path().join("ipam/sriov-dpdk/10.99.0.3");
    assert!(lease.exists());
    let out = node.run("DEL", "pod1", &p1.path(), &c1);
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        node.link("ens1f0v0"),
        before0,
        "name, MAC, MTU or state not restored"
    );
    assert!(!p1.try_sh("ip link show net1 2>/dev/null"));
    assert!(!lease.exists(), "IPAM lease not released");
    assert!(node.run("DEL", "pod1", &p1.path(), &c1).ok(), "second DEL");

    // DEL after the pod's namespace is gone (the veth stand-in dies with it,
    // and its peer with it; a real VF comes back to the host, which the QEMU
    // tests cover).
    p2.delete();
    let out = node.run("DEL", "pod2", &p2.path(), &c2);
    assert!(out.ok(), "{out:?}");
    assert_eq!(node.bed.state().vfs, before_vfs);
    assert!(
        node.bed.state().attachments.is_empty(),
        "{:?}",
        node.bed.state().attachments
    );
}

/// A VF netdev that gets carrier only after ADD returned (a fresh VF takes
/// seconds): ADD does not wait for it, and the pod's address is still
/// announced once carrier comes, with no process left behind and no packet
/// sent by anything in the pod.
#[test]
fn netdevice_add_does_not_wait_for_carrier_and_the_kernel_announces_later() {
    if !root() {
        return;
    }
    let node = Node::new("late");
    let (pod, peer) = (Ns::new("lp"), Ns::new("lq"));
    // The far end of the pod's "VF" sits down in the peer's namespace: no
    // carrier until the peer brings it up.
    node.host
        .sh(&format!("ip link set ens1f0v1 netns {}", peer.0));
    peer.sh(
        "sysctl -qw net.ipv4.conf.ens1f0v1.arp_accept=1 && ip addr add 10.99.0.1/24 dev ens1f0v1",
    );
    let conf = node.conf(0, json!({"mac": "02:00:00:00:00:b1"}));
    let t = std::time::Instant::now();
    let out = node.run("ADD", "late", &pod.path(), &conf);
    let took = t.elapsed();
    assert!(out.ok(), "{out:?}");
    let ip = out.json.unwrap()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let l = pod.sh("ip -o link show net1");
    assert!(
        l.contains("NO-CARRIER"),
        "the link has carrier already: {l}"
    );
    assert!(
        took < std::time::Duration::from_millis(900),
        "ADD took {took:?}: it waited for carrier"
    );
    // Nothing is left running in the pod to announce it.
    let pids = Command::new("ip")
        .args(["netns", "pids", &pod.0])
        .output()
        .unwrap();
    assert!(
        pids.stdout.is_empty(),
        "processes left in the pod: {pids:?}"
    );

    peer.sh("ip link set ens1f0v1 up");
    let t = std::time::Instant::now();
    let mut neigh = String::new();
    while t.elapsed() < std::time::Duration::from_secs(12) {
        neigh = peer.sh(&format!("ip neigh show {ip} dev ens1f0v1"));
        if neigh.contains("02:00:00:00:00:b1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        neigh.contains("02:00:00:00:00:b1"),
        "the peer never learnt {ip} at the pod's MAC: {neigh:?}"
    );
    assert!(node.run("DEL", "late", &pod.path(), &conf).ok());
}

#[test]
fn netdevice_killed_at_each_step_then_del_restores() {
    if !root() {
        return;
    }
    for step in dpdk_cni::failpoint::NETDEVICE_STEPS {
        let node = Node::new("kill");
        let p = Ns::new("kp");
        let before = node.link("ens1f0v0");
        let conf = node.conf(0, json!({"mac": "02:00:00:00:00:b1", "mtu": 1300}));
        let inner = node.bed.command(
            "ADD",
            "pod",
            "net1",
            &[("CNI_NETNS", &p.path()), ("DPDK_CNI_FAILPOINT", step)],
        );
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &node.host.0, &common::bin()]);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let out = common::run_process(c, conf.to_string().as_bytes());
        assert!(
            out.code.is_none() || out.code == Some(137),
            "{step}: {out:?}"
        );
        let del = node.run("DEL", "pod", &p.path(), &conf);
        assert!(del.ok(), "{step}: {del:?}");
        assert_eq!(node.link("ens1f0v0"), before, "{step}");
        assert!(node.bed.state().attachments.is_empty(), "{step}");
    }
}

#[test]
fn macvlan_pods_reach_each_other_and_del_removes_them() {
    if !root() {
        return;
    }
    let node = Node::new("mv");
    node.host.sh("ip link add uplink type veth peer name uplink-peer && ip link set uplink-peer up && ip link set uplink up");
    let (p1, p2) = (Ns::new("m1"), Ns::new("m2"));
    let conf = |extra: Value| {
        let mut c = node.conf(
            0,
            json!({"deviceType": "macvlan", "master": "uplink", "deviceID": null}),
        );
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.as_object_mut().unwrap().remove("deviceID");
        c
    };
    let c = conf(json!({"mtu": 1450}));
    assert!(node.run("ADD", "a", &p1.path(), &c).ok());
    let out = node.run("ADD", "b", &p2.path(), &c);
    assert!(out.ok(), "{out:?}");
    assert!(out.json.unwrap()["interfaces"][0].get("pciID").is_none());
    assert!(p2
        .sh("ip -d -o link show net1")
        .contains("macvlan mode bridge"));
    assert!(
        p1.try_sh("ping -c 1 -W 2 10.99.0.3 >/dev/null"),
        "macvlan pods cannot reach each other"
    );
    assert!(node.run("CHECK", "a", &p1.path(), &c).ok());
    assert!(node.run("DEL", "a", &p1.path(), &c).ok());
    assert!(!p1.try_sh("ip link show net1 2>/dev/null"));
    assert!(node.run("DEL", "a", &p1.path(), &c).ok());
    assert!(node.run("DEL", "b", &p2.path(), &c).ok());
    assert!(node
        .host
        .sh("ip -o link show")
        .lines()
        .all(|l| !l.contains("dcni")));

    let bad = node.run("ADD", "c", &p1.path(), &conf(json!({"master": "nope0"})));
    assert_eq!(bad.err_code(), 100);
    let bad = node.run("ADD", "c", &p1.path(), &conf(json!({"mode": "vepa"})));
    assert_eq!(bad.err_code(), 7);
}

#[test]
fn macvlan_takes_the_runtimes_mac_and_two_networks_both_route_by_default() {
    if !root() {
        return;
    }
    let node = Node::new("mm");
    node.host.sh(
        "ip link add up1 type veth peer name up1-peer && ip link set up1-peer up && ip link set up1 up && \
         ip link add up2 type veth peer name up2-peer && ip link set up2-peer up && ip link set up2 up",
    );
    let p = Ns::new("mmp");
    let conf = |name: &str, master: &str, subnet: &str, gw: &str| {
        let mut c = node.conf(
            0,
            json!({"deviceType": "macvlan", "master": master, "name": name}),
        );
        c.as_object_mut().unwrap().remove("deviceID");
        c["ipam"]["ranges"] = json!([[{"subnet": subnet, "gateway": gw}]]);
        c["ipam"]["dataDir"] = json!(node.bed.tmp.path().join(format!("ipam-{name}")));
        c
    };
    let a = conf("net-a", "up1", "10.98.1.0/24", "10.98.1.1");
    let b = conf("net-b", "up2", "10.98.2.0/24", "10.98.2.1");
    // podman --mac-address: CNI_ARGS MAC=.
    let out = node.run_as(
        "ADD",
        "c",
        "net1",
        &p.path(),
        &a,
        &[("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:aa:01")],
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        out.json.unwrap()["interfaces"][0]["mac"],
        "02:00:00:00:aa:01"
    );
    assert!(p.sh("ip -o link show net1").contains("02:00:00:00:aa:01"));
    // A second network whose IPAM also gives a default route.
    let out = node.run_as("ADD", "c", "net2", &p.path(), &b, &[]);
    assert!(out.ok(), "{out:?}");
    let routes = p.sh("ip -4 route show default");
    assert!(
        routes.contains("net1") && routes.contains("net2"),
        "{routes}"
    );
    assert!(node.run_as("DEL", "c", "net2", &p.path(), &b, &[]).ok());
    assert!(node.run_as("DEL", "c", "net1", &p.path(), &a, &[]).ok());
}

#[test]
fn pf_only_guards_and_the_whole_pf_as_a_netdev() {
    if !root() {
        return;
    }
    let node = Node::new("pf");
    // A second PF, with no VFs, whose netdev is a veth end in the node.
    let pf = node
        .bed
        .node
        .add_pf("0000:05:00.0".parse().unwrap(), "ens9", 0, 7, 0, 90)
        .unwrap();
    node.host
        .sh("ip link add ens9 type veth peer name ens9-peer && ip link set ens9 up");
    let p = Ns::new("pfp");
    let conf = |extra: Value| {
        let mut c = node.conf(
            0,
            json!({"pfOnly": true, "deviceID": pf.address.to_string()}),
        );
        c.as_object_mut().unwrap().remove("ipam");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let before = node.bed.state();

    // Not a PF the node hands over: refused whatever the netconf says.
    let out = node.run(
        "ADD",
        "x",
        &p.path(),
        &conf(json!({"allowedDevices": ["ens9"]})),
    );
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("handoverPfs"), "{}", out.msg());
    common::assert_same(&before, &node.bed.state());
    node.bed
        .settings(json!({"handoverPfs": ["0000:05:00.0", "ens1f0"]}));
    let before = node.bed.state();

    // The PF with VFs enabled.
    let out = node.run(
        "ADD",
        "x",
        &p.path(),
        &conf(json!({"deviceID": "0000:01:00.0"})),
    );
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("VFs enabled"), "{}", out.msg());
    // Not in allowedDevices.
    let out = node.run(
        "ADD",
        "x",
        &p.path(),
        &conf(json!({"allowedDevices": ["0000:06:00.0", "ens10"]})),
    );
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("allowedDevices"), "{}", out.msg());
    // An address the host uses.
    node.host.sh("ip addr add 10.77.0.5/24 dev ens9");
    let out = node.run("ADD", "x", &p.path(), &conf(json!({})));
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("10.77.0.5/24"), "{}", out.msg());
    // The node's default route.
    node.host.sh("ip route add default via 10.77.0.1 dev ens9");
    let out = node.run("ADD", "x", &p.path(), &conf(json!({})));
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("default route"), "{}", out.msg());
    common::assert_same(&before, &node.bed.state());
    assert!(node.link("ens9").contains("ens9"));

    node.host
        .sh("ip route del default && ip addr flush dev ens9");
    let before_link = node.link("ens9");
    let out = node.run(
        "ADD",
        "x",
        &p.path(),
        &conf(json!({"allowedDevices": ["ens9"]})),
    );
    assert!(out.ok(), "{out:?}");
    assert!(p.sh("ip -o link show net1").contains("UP"));
    assert!(node.run("DEL", "x", &p.path(), &conf(json!({}))).ok());
    assert_eq!(node.link("ens9"), before_link);
}

#[test]
fn vfio_falls_back_to_netdevice_only_when_asked() {
    if !root() {
        return;
    }
    let node = Node::new("fb");
    node.bed.node.disable_iommu().unwrap();
    let p = Ns::new("fbp");
    let mut conf = node.conf(0, json!({"deviceType": "vfio-pci"}));
    let out = node.run("ADD", "pod", &p.path(), &conf);
    assert_eq!(out.err_code(), 102);

    conf["fallback"] = "netdevice".into();
    let out = node.run("ADD", "pod", &p.path(), &conf);
    assert!(out.ok(), "{out:?}");
    assert!(p.sh("ip -o addr show net1").contains("10.99.0."));
    let di: Value = serde_json::from_slice(
        &std::fs::read(
            node.bed
                .root()
                .join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)
                .join("sriov-dpdk-pod-net1-device.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(di["pci"]["device-type"], "netdevice");
    assert!(
        di["pci"]["fallback-reason"]
            .as_str()
            .unwrap()
            .contains("IOMMU"),
        "{di}"
    );
    assert_eq!(node.bed.driver(0).as_deref(), Some("igbvf"));
    assert!(node.run("DEL", "pod", &p.path(), &conf).ok());
}
