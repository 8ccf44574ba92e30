//! The rtnetlink code against a real kernel, in a fresh network namespace.
//!
//! Links there have no VFs, so the kernel refuses every VF request: this
//! proves the requests are well formed enough to reach the driver check and
//! that refusals come back with their errno and a clear message. The real
//! igb VF path is tested in the QEMU guest (tests/vm).

use std::os::fd::AsFd;
use std::process::Command;

use netlink::{
    vf_set_message, LinkState, NetlinkError, Rate, RtNetlink, VfAttr, VfNetlink, Vlan, VlanProto,
};
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkVfInfo, VfInfo, VfInfoMac};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("dpdkcni-{tag}-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns(name)
    }
    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {args:?}", self.0);
    }
    /// Runs `f` on a thread that has entered the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
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

#[test]
fn vf_requests_on_a_link_without_vfs_are_refused_with_errno() {
    if !root() {
        return;
    }
    let ns = Netns::new("nl");
    // veth stands in for a PF: a real Ethernet link whose driver has no VF operations.
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d0", "up"]);
    let results = ns.run(|| {
        let mut nl = RtNetlink::connect().unwrap();
        let state = nl.vf_state("d0", 0);
        let mac_attr = VfAttr::Mac("02:00:00:00:00:01".parse().unwrap());
        let vlan = |id, qos, proto| VfAttr::Vlan(Vlan { id, qos, proto });
        let mac = nl.set_vf("d0", 0, mac_attr);
        let vlan_q = nl.set_vf("d0", 0, vlan(10, 2, VlanProto::Dot1Q));
        let qinq = nl.set_vf("d0", 0, vlan(10, 0, VlanProto::Dot1Ad));
        let spoof = nl.set_vf("d0", 0, VfAttr::SpoofChk(false));
        let trust = nl.set_vf("d0", 0, VfAttr::Trust(true));
        let ls = nl.set_vf("d0", 0, VfAttr::LinkState(LinkState::Enable));
        let rate = nl.set_vf("d0", 0, VfAttr::Rate(Rate { min: 0, max: 100 }));
        let missing = nl.set_vf("nope0", 0, mac_attr);
        (
            state,
            vec![mac, vlan_q, qinq, spoof, trust, ls, rate],
            missing,
        )
    });
    match results.0 {
        Err(NetlinkError::NoSuchVf {
            pf,
            vf: 0,
            count: 0,
        }) => assert_eq!(pf, "d0"),
        other => panic!("vf_state on a veth link: {other:?}"),
    }
    let whats = [
        "mac 02:00:00:00:00:01",
        "vlan 10 qos 2",
        "vlan 10 qos 0 proto 802.1ad",
        "spoofchk off",
        "trust on",
        "link_state enable",
        "max_tx_rate 100",
    ];
    for (r, what) in results.1.into_iter().zip(whats) {
        let e = r.expect_err(what);
        match &e {
            NetlinkError::Refused {
                pf, vf: 0, source, ..
            } => {
                assert_eq!(pf, "d0");
                // veth has no ndo_set_vf_* operations: the kernel answers EOPNOTSUPP.
                assert_eq!(
                    source.raw_os_error(),
                    Some(nix::errno::Errno::EOPNOTSUPP as i32),
                    "{what}: {e}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(what) && msg.contains("d0 refused"), "{msg}");
    }
    assert!(
        matches!(results.2, Err(NetlinkError::NoSuchLink(ref n)) if n == "nope0"),
        "{:?}",
        results.2
    );
}

#[test]
fn a_vf_request_is_a_vfinfo_list_nest_that_round_trips() {
    let msg = vf_set_message(7, VfInfo::Mac(VfInfoMac::new(3, &[2, 0, 0, 0, 0, 0x11])));
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    // ifinfomsg header (16 bytes), then IFLA_VFINFO_LIST (22) > IFLA_VF_INFO (1) > IFLA_VF_MAC (1).
    let nla = &buf[16..];
    assert_eq!(u16::from_ne_bytes([nla[2], nla[3]]) & 0x3fff, 22);
    assert_eq!(u16::from_ne_bytes([nla[6], nla[7]]) & 0x3fff, 1);
    assert_eq!(u16::from_ne_bytes([nla[10], nla[11]]), 1);
    // IFLA_VF_MAC carries struct ifla_vf_mac: u32 vf + 32-byte address.
    assert_eq!(u16::from_ne_bytes([nla[8], nla[9]]), 4 + 4 + 32);
    let parsed = LinkMessage::parse(&buf[..]).unwrap();
    assert_eq!(parsed.header.index, 7);
    assert_eq!(
        parsed.attributes,
        vec![LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
            VfInfo::Mac(VfInfoMac::new(3, &[2, 0, 0, 0, 0, 0x11]))
        ])])]
    );
}

#[test]
fn a_link_moves_back_under_its_own_name_in_one_request() {
    if !root() {
        return;
    }
    let (node, pod) = (Netns::new("mvnode"), Netns::new("mvpod"));
    for (vf, name) in [("vf0", "net1"), ("vf1", "net2")] {
        node.ip(&[
            "link",
            "add",
            vf,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{vf}p"),
        ]);
        node.ip(&["link", "set", vf, "netns", &pod.0]);
        pod.ip(&["link", "set", vf, "name", name]);
        pod.ip(&["link", "set", name, "up"]);
    }
    node.ip(&[
        "link", "add", "taken", "type", "veth", "peer", "name", "takenp",
    ]);
    let node_path = format!("/run/netns/{}", node.0);
    let (moved, clash, left) = pod.run(move || {
        let host = std::fs::File::open(&node_path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&host);
        let nl = RtNetlink::connect().unwrap();
        let net1 = nl.link_by_name("net1").unwrap().expect("net1 in the pod");
        let moved = nl.move_link_to_netns_as(&net1, fd, "vf0").unwrap();
        // A name the node already uses: refused (the kernel may have moved
        // the link under its pod name before it refused the rename).
        let net2 = nl.link_by_name("net2").unwrap().expect("net2 in the pod");
        let clash = nl.move_link_to_netns_as(&net2, fd, "taken").unwrap();
        let left: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        (moved, clash, left)
    });
    assert!(moved && !clash, "moved {moved}, clash {clash}");
    assert!(
        !left.iter().any(|n| n == "net1"),
        "net1 left in the pod: {left:?}"
    );
    let (vf0, net1, taken) = node.run(|| {
        let nl = RtNetlink::connect().unwrap();
        (
            nl.link_by_name("vf0").unwrap().map(|l| l.up),
            nl.link_by_name("net1").unwrap().is_some(),
            nl.link_by_name("taken").unwrap().is_some(),
        )
    });
    // Back as vf0, down (the move closed it), no net1 on the node; the
    // node's own "taken" untouched.
    assert_eq!((vf0, net1, taken), (Some(false), false, true));
}
