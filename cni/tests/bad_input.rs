//! Every bad input gets its CNI error code and a message saying what to fix,
//! and leaves the node exactly as it was.

mod common;

use common::{assert_same, Bed};
use serde_json::{json, Value};
use vfio::fake::FakeDevice;

/// Runs ADD with `conf` and checks the code, a word of the message, and that nothing changed.
#[track_caller]
fn refused(bed: &Bed, conf: &Value, env: &[(&str, &str)], code: u64, says: &str) {
    let before = bed.state();
    let writes = bed.node.writes().len();
    let out = bed.run_with("ADD", "pod", "net1", conf, env);
    assert_eq!(out.err_code(), code, "{conf}: {out:?}");
    assert!(
        out.msg().contains(says),
        "{conf}: message {:?} lacks {says:?}",
        out.msg()
    );
    assert_same(&before, &bed.state());
    assert_eq!(bed.node.writes().len(), writes, "sysfs was written");
    assert!(
        bed.nl.calls().is_empty(),
        "VF calls were made: {:?}",
        bed.nl.calls()
    );
}

#[test]
fn malformed_stdin_is_a_decode_failure() {
    let bed = Bed::new(2);
    for stdin in [&b"{not json"[..], b"", b"[1,2]"] {
        let before = bed.state();
        let out = common::run_process(bed.command("ADD", "pod", "net1", &[]), stdin);
        assert_eq!(out.err_code(), 6, "{out:?}");
        assert_same(&before, &bed.state());
    }
}

#[test]
fn netconf_errors() {
    let bed = Bed::new(4);
    let cases: Vec<(Value, u64, &str)> = vec![
        (json!({"cniVersion": "0.5.0"}), 1, "not supported"),
        (json!({"name": null}), 7, "name is missing"),
        (json!({"name": "../etc"}), 7, "invalid network name"),
        (json!({"deviceType": "bogus"}), 7, "unsupported deviceType"),
        (json!({"deviceID": "../../etc"}), 7, "invalid deviceID"),
        (json!({"deviceID": "0000:01:10.7"}), 100, "does not exist"),
        (json!({"deviceID": null}), 7, "no device named"),
        (json!({"deviceID": "0000:01:00.0"}), 7, "pfOnly"),
        (
            json!({"runtimeConfig": {"deviceID": "0000:zz:00.0"}}),
            7,
            "runtimeConfig.deviceID",
        ),
        (json!({"vlan": 5000}), 7, "invalid vlan 5000"),
        (json!({"vlan": "ten"}), 7, "invalid netconf"),
        (json!({"vlanQoS": 3}), 7, "needs a non-zero vlan"),
        (json!({"vlan": 0, "vlanQoS": 3}), 7, "needs a non-zero vlan"),
        (json!({"vlan": 10, "vlanQoS": 8}), 7, "invalid vlanQoS"),
        (
            json!({"vlan": 0, "vlanProto": "802.1ad"}),
            7,
            "802.1ad needs a non-zero vlan",
        ),
        (
            json!({"vlan": 10, "vlanProto": "802.1x"}),
            7,
            "invalid vlanProto",
        ),
        (json!({"mac": "01:00:5e:00:00:01"}), 7, "unicast"),
        (json!({"mac": "02:00:00:00:00"}), 7, "invalid mac"),
        (
            json!({"runtimeConfig": {"mac": "zz"}}),
            7,
            "runtimeConfig.mac",
        ),
        (json!({"spoofchk": "yes"}), 7, "invalid spoofchk"),
        (json!({"trust": "true"}), 7, "invalid trust"),
        (json!({"link_state": "up"}), 7, "invalid link_state"),
        (
            json!({"min_tx_rate": 200, "max_tx_rate": 100}),
            7,
            "above max_tx_rate",
        ),
        (
            json!({"deviceID": null, "master": "ens1f0", "vf": 4}),
            7,
            "past sriov_numvfs 4",
        ),
        (
            json!({"deviceID": null, "master": "ens1f0"}),
            7,
            "no VF index",
        ),
        (
            json!({"deviceID": null, "master": "eth9", "vf": 0}),
            100,
            "not a PCI network interface",
        ),
        (
            json!({"deviceID": "0000:01:00.0", "pfOnly": true}),
            7,
            "not a PF this node hands over whole",
        ),
        (json!({"pfOnly": true}), 7, "is a VF of"),
        (
            json!({"stateDir": "/var/lib/cni/dpdk-cni"}),
            7,
            "the state directory is a node setting",
        ),
        (json!({"logLevel": "loud"}), 7, "invalid logLevel"),
        (
            json!({"ipam": {"type": "../../bin/sh"}}),
            7,
            "invalid ipam type",
        ),
        (
            json!({"ipam": {"subnet": "10.0.0.0/8"}}),
            7,
            "ipam has no \"type\"",
        ),
        (
            json!({"ipam": {"type": "no-such-ipam"}}),
            7,
            "not found in CNI_PATH",
        ),
        (
            json!({"runtimeConfig": {"CNIDeviceInfoFile": "rel.json"}}),
            7,
            "absolute",
        ),
    ];
    for (extra, code, says) in cases {
        refused(&bed, &bed.conf(0, extra), &[], code, says);
    }
}

#[test]
fn environment_errors() {
    let bed = Bed::new(2);
    let conf = bed.conf(0, json!({}));
    refused(&bed, &conf, &[("CNI_ARGS", "VF")], 4, "KEY=VALUE");
    refused(&bed, &conf, &[("CNI_IFNAME", "a/b")], 4, "CNI_IFNAME");
    refused(
        &bed,
        &conf,
        &[("CNI_CONTAINERID", "../x")],
        4,
        "CNI_CONTAINERID",
    );
    refused(
        &bed,
        &conf,
        &[("CNI_COMMAND", "ATTACH")],
        4,
        "unknown CNI_COMMAND",
    );
    let m = bed.conf(0, json!({"deviceID": null, "master": "ens1f0"}));
    refused(&bed, &m, &[("CNI_ARGS", "VF=x")], 4, "CNI_ARGS VF");

    let before = bed.state();
    let mut c = bed.command("ADD", "pod", "net1", &[]);
    c.env_remove("CNI_NETNS");
    let out = common::run_process(c, conf.to_string().as_bytes());
    assert_eq!(out.err_code(), 4);
    assert!(out.msg().contains("CNI_NETNS"));
    assert_same(&before, &bed.state());
}

#[test]
fn node_that_cannot_serve_vfio() {
    let bed = Bed::new(2);
    bed.node.remove_driver("vfio-pci").unwrap();
    refused(&bed, &bed.conf(0, json!({})), &[], 102, "modprobe vfio-pci");

    let bed = Bed::new(2);
    bed.node.disable_iommu().unwrap();
    refused(&bed, &bed.conf(0, json!({})), &[], 102, "intel_iommu=on");

    // A device on a kernel driver shares the VF's IOMMU group.
    let bed = Bed::new(2);
    bed.node
        .add_device(&FakeDevice {
            address: "0000:05:00.0".parse().unwrap(),
            vendor: 0x8086,
            device: 0x1533,
            class: 0x020000,
            driver: Some("igb".into()),
            default_driver: Some("igb".into()),
            iommu_group: Some(11),
            numa_node: 0,
            netdev: None,
        })
        .unwrap();
    refused(
        &bed,
        &bed.conf(0, json!({})),
        &[],
        102,
        "0000:05:00.0 in the same group is bound to igb",
    );
}

#[test]
fn a_vf_setting_the_driver_refuses_fails_add_and_puts_the_vf_back() {
    let bed = Bed::new(2);
    // igb refuses link-state: everything set before it must be undone.
    bed.nl.refuse("ens1f0", "link_state").unwrap();
    let before = bed.state();
    let conf = bed.conf(
        0,
        json!({"mac": "02:00:00:00:00:10", "vlan": 5, "link_state": "enable"}),
    );
    let out = bed.run("ADD", "pod", &conf);
    assert_eq!(out.err_code(), 104);
    assert!(
        out.msg()
            .contains("refused to set link_state enable on VF 0"),
        "{}",
        out.msg()
    );
    assert_same(&before, &bed.state());
    assert_eq!(
        bed.nl.calls(),
        vec![
            "ens1f0 vf 0 mac 02:00:00:00:00:10",
            "ens1f0 vf 0 vlan 5 qos 0 proto 802.1q",
            "refused ens1f0 vf 0 link_state enable",
            "ens1f0 vf 0 mac 00:00:00:00:00:00",
            "ens1f0 vf 0 vlan 0 qos 0 proto 802.1q",
        ]
    );
}

#[test]
fn a_bind_the_kernel_never_completes_times_out_and_rolls_back() {
    let bed = Bed::new(2);
    bed.node.refuse_bind(bed.pf.vfs[0], "vfio-pci").unwrap();
    let before = bed.state();
    let out = bed.run("ADD", "pod", &bed.conf(0, json!({"vlan": 9})));
    assert_eq!(out.err_code(), 103, "{out:?}");
    assert!(out.msg().contains("to bind to vfio-pci"), "{}", out.msg());
    assert_same(&before, &bed.state());
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
}
