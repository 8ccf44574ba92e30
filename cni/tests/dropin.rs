//! sriov-cni NADs with only `type` changed, as upstream's docs, tests and
//! the SR-IOV network operator write them, run against the binary on a fake
//! node. Each case names where its netconf comes from and expects what
//! sriov-cni does with it (or, where ours is safer, what the README's
//! Differences table says).

mod common;

use common::{assert_same, Bed};
use serde_json::{json, Value};

/// An upstream netconf for VF `i` of the bed, `type` switched to ours.
fn upstream(bed: &Bed, i: usize, conf: Value) -> Value {
    let mut c = conf;
    c["type"] = json!("dpdk-cni");
    c["deviceID"] = json!(bed.vf(i));
    c
}

#[test]
fn no_device_type_follows_the_vfs_driver() {
    // sriov-cni README, "Kernel driver config": no deviceType.
    let bed = Bed::new(3);
    let before = bed.state();
    let conf = |i| {
        upstream(
            &bed,
            i,
            json!({"cniVersion": "0.3.1", "name": "sriov-dpdk", "vlan": 1000, "spoofchk": "off"}),
        )
    };
    // VF 0 on igbvf: the netdev goes into the pod (no netns here: the
    // fake node has no netdevs, so the kernel path is refused with a
    // message about the interface, and nothing is rebound to vfio-pci).
    let out = bed.run("ADD", "k", &conf(0));
    assert_ne!(bed.driver(0).as_deref(), Some("vfio-pci"), "{out:?}");
    assert!(!out.ok());
    assert!(out.msg().contains("interface"), "{}", out.msg());
    assert_same(&before, &bed.state());

    // VF 1 pre-bound to vfio-pci by the operator: stays there, gets its VLAN.
    let sysfs = vfio::fake::emulated(bed.root());
    sysfs
        .bind_driver(bed.pf.vfs[1], "vfio-pci", Default::default())
        .unwrap();
    let out = bed.run("ADD", "v", &conf(1));
    assert!(out.ok(), "{out:?}");
    assert_eq!(bed.driver(1).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[1].vlan, 1000);
    assert!(bed.run("DEL", "v", &conf(1)).ok());
    assert_eq!(
        bed.driver(1).as_deref(),
        Some("vfio-pci"),
        "DEL leaves it on vfio-pci"
    );
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[1].vlan, 0);

    // VF 2 pre-bound to igb_uio: left on igb_uio, not rebound to vfio-pci.
    bed.node.add_driver("igb_uio").unwrap();
    sysfs
        .bind_driver(bed.pf.vfs[2], "igb_uio", Default::default())
        .unwrap();
    let out = bed.run("ADD", "u", &conf(2));
    assert!(out.ok(), "{out:?}");
    assert_eq!(bed.driver(2).as_deref(), Some("igb_uio"));
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[2].vlan, 1000);
    assert!(bed.run("CHECK", "u", &conf(2)).ok());
    assert!(bed.run("DEL", "u", &conf(2)).ok());
    assert_eq!(bed.driver(2).as_deref(), Some("igb_uio"));
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[2].vlan, 0);
}

#[test]
fn operator_rendered_netconf_without_ipam_or_version() {
    // What the SR-IOV network operator renders for a network with no IPAM
    // ("ipam": {}), and the device plugin's DPDK example, which has no
    // cniVersion (libcni passes "" for it).
    let bed = Bed::new(2);
    for (i, version) in [(0, json!(null)), (1, json!(""))] {
        let mut c = upstream(
            &bed,
            i,
            json!({"name": "sriov-dpdk", "deviceType": "vfio-pci", "ipam": {}}),
        );
        if !version.is_null() {
            c["cniVersion"] = version;
        }
        let out = bed.run("ADD", "p", &c);
        assert!(out.ok(), "{out:?}");
        let r = out.json.unwrap();
        // 0.1.0: the old shape, no interfaces list.
        assert_eq!(r["cniVersion"], "0.1.0");
        assert!(r.get("interfaces").is_none(), "{r}");
        assert!(bed.run("DEL", "p", &c).ok());
    }
}

#[test]
fn keys_match_whatever_their_case_and_mtu_is_accepted() {
    // sriov-cni decodes with Go's encoding/json: MAC, Mtu, VlanQoS are its fields.
    let bed = Bed::new(1);
    let c = upstream(
        &bed,
        0,
        json!({"cniVersion": "1.0.0", "name": "sriov-dpdk", "deviceType": "vfio-pci",
               "Vlan": 7, "VlanQoS": 3, "MAC": "02:00:00:00:00:77", "Mtu": 9000}),
    );
    let out = bed.run("ADD", "p", &c);
    assert!(out.ok(), "{out:?}");
    let vf = &bed.nl.load().unwrap().links["ens1f0"].vfs[0];
    assert_eq!((vf.vlan, vf.qos), (7, 3));
    assert_eq!(vf.mac.to_string(), "02:00:00:00:00:77");
    assert!(bed.run("DEL", "p", &c).ok());
}

#[test]
fn the_result_carries_the_vfs_admin_mac() {
    // sriov-cni reports the VF's MAC even when the NAD sets none, so
    // Multus' network-status shows it.
    let bed = Bed::new(1);
    let mut nl = bed.nl.clone();
    use netlink::{VfAttr, VfNetlink};
    nl.set_vf(
        "ens1f0",
        0,
        VfAttr::Mac("02:00:00:00:00:42".parse().unwrap()),
    )
    .unwrap();
    let c = bed.conf(0, json!({}));
    let out = bed.run("ADD", "p", &c);
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        out.json.unwrap()["interfaces"][0]["mac"],
        "02:00:00:00:00:42"
    );
    assert!(bed.run("DEL", "p", &c).ok());
}
