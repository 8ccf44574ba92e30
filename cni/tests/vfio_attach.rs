//! ADD, DEL, CHECK, STATUS, GC and VERSION of the binary on fake nodes.

mod common;

use common::Bed;
use serde_json::json;

#[test]
fn add_binds_vfio_sets_vf_and_reports_everything_then_del_restores_exactly() {
    let bed = Bed::new(4);
    let before = bed.state();
    let conf = bed.conf(
        1,
        json!({"vlan": 100, "vlanQoS": 3, "mac": "02:00:00:00:00:10", "spoofchk": "off", "trust": "on"}),
    );
    let out = bed.run("ADD", "pod-a", &conf);
    assert!(out.ok(), "{out:?}");
    let res = out.json.unwrap();
    assert_eq!(res["cniVersion"], "1.1.0");
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert_eq!(res["interfaces"][0]["pciID"], bed.vf(1));
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:00:00:10");
    assert_eq!(res["interfaces"][0]["sandbox"], "/var/run/netns/pod-a");

    // The device is on vfio-pci with its group node; the VF has its settings.
    assert_eq!(bed.driver(1).as_deref(), Some("vfio-pci"));
    assert!(bed.root().join("dev/vfio/12").exists());
    let vf = &bed.nl.load().unwrap().links["ens1f0"].vfs[1];
    assert_eq!(vf.mac.to_string(), "02:00:00:00:00:10");
    assert_eq!((vf.vlan, vf.qos), (100, 3));
    assert_eq!((vf.spoofchk, vf.trust), (Some(false), Some(true)));
    assert_eq!(
        bed.nl.calls(),
        vec![
            "ens1f0 vf 1 mac 02:00:00:00:00:10",
            "ens1f0 vf 1 vlan 100 qos 3 proto 802.1q",
            "ens1f0 vf 1 spoofchk off",
            "ens1f0 vf 1 trust on",
        ]
    );

    // The device-info file, in the default directory.
    let devinfo = bed
        .root()
        .join("var/run/k8s.cni.cncf.io/devinfo/cni/sriov-dpdk-pod-a-net1-device.json");
    let di: serde_json::Value = serde_json::from_slice(&std::fs::read(&devinfo).unwrap()).unwrap();
    assert_eq!(di["type"], "pci");
    assert_eq!(di["version"], "1.1.0");
    assert_eq!(di["pci"]["pci-address"], bed.vf(1));
    assert_eq!(di["pci"]["pf-pci-address"], "0000:01:00.0");
    assert_eq!(di["pci"]["numa-node"], 0);
    assert_eq!(di["pci"]["iommu-group"], "12");
    assert_eq!(di["pci"]["vfio-device"], "/dev/vfio/12");
    assert_eq!(di["pci"]["original-driver"], "igbvf");

    // CHECK passes on a good attachment.
    let chk = bed.run("CHECK", "pod-a", &conf);
    assert!(chk.ok(), "{chk:?}");

    let del = bed.run("DEL", "pod-a", &conf);
    assert!(del.ok(), "{del:?}");
    common::assert_same(&before, &bed.state());
    assert!(!devinfo.exists());
    assert_eq!(bed.driver(1).as_deref(), Some("igbvf"));

    // A second DEL is a no-op.
    let calls = bed.nl.calls().len();
    assert!(bed.run("DEL", "pod-a", &conf).ok());
    assert_eq!(bed.nl.calls().len(), calls);
    common::assert_same(&before, &bed.state());
}

#[test]
fn device_info_goes_where_the_runtime_says() {
    let bed = Bed::new(2);
    let path = bed
        .root()
        .join("var/run/k8s.cni.cncf.io/devinfo/cni/pod-net1.json");
    let conf = bed.conf(
        0,
        json!({"runtimeConfig": {"CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/cni/pod-net1.json"}}),
    );
    assert!(bed.run("ADD", "c1", &conf).ok());
    let di: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(di["pci"]["pci-address"], bed.vf(0));
    assert!(bed.run("DEL", "c1", &conf).ok());
    assert!(!path.exists());
}

#[test]
fn del_without_add_without_netns_and_twice_succeeds() {
    let bed = Bed::new(2);
    let before = bed.state();
    let conf = bed.conf(0, json!({}));
    let mut c = bed.command("DEL", "never-added", "net1", &[]);
    c.env_remove("CNI_NETNS");
    let out = common::run_process(c, conf.to_string().as_bytes());
    assert!(out.ok(), "{out:?}");
    common::assert_same(&before, &bed.state());
}

#[test]
fn every_supported_version_gets_a_result_in_its_shape() {
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let bed = Bed::new(1);
        let conf = bed.conf(0, json!({"cniVersion": v}));
        let out = bed.run("ADD", "c", &conf);
        assert!(out.ok(), "{v}: {out:?}");
        let res = out.json.unwrap();
        assert_eq!(res["cniVersion"], v);
        assert_eq!(
            res["interfaces"][0].get("pciID").is_some(),
            v == "1.1.0",
            "{v}"
        );
        assert!(bed.run("DEL", "c", &conf).ok());
    }
}

#[test]
fn version_lists_supported_versions() {
    let bed = Bed::new(1);
    let out = bed.run("VERSION", "x", &json!({"cniVersion": "1.0.0"}));
    assert!(out.ok());
    let v = out.json.unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn master_with_vf_from_cni_args_and_mac_precedence() {
    let bed = Bed::new(4);
    let before = bed.state();
    let conf = bed.conf(
        0,
        json!({"deviceID": null, "master": "ens1f0", "vf": 0, "mac": "02:00:00:00:00:01",
               "runtimeConfig": {"mac": "02:00:00:00:00:03"}}),
    );
    let out = bed.run_with(
        "ADD",
        "c",
        "net1",
        &conf,
        &[("CNI_ARGS", "IgnoreUnknown=1;VF=2;MAC=02:00:00:00:00:02")],
    );
    assert!(out.ok(), "{out:?}");
    let res = out.json.unwrap();
    assert_eq!(res["interfaces"][0]["pciID"], bed.vf(2));
    // runtimeConfig.mac wins over CNI_ARGS MAC, which wins over mac.
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:00:00:03");
    assert_eq!(bed.driver(2).as_deref(), Some("vfio-pci"));
    assert!(bed
        .run_with("DEL", "c", "net1", &conf, &[("CNI_ARGS", "VF=2")])
        .ok());
    common::assert_same(&before, &bed.state());
}

#[test]
fn device_held_by_another_attachment_is_refused_naming_the_holder() {
    let bed = Bed::new(2);
    let conf = bed.conf(0, json!({}));
    assert!(bed.run("ADD", "pod-a", &conf).ok());
    let held = bed.state();
    let out = bed.run("ADD", "pod-b", &conf);
    assert_eq!(out.err_code(), 101);
    assert!(out.msg().contains("pod-a"), "{}", out.msg());
    common::assert_same(&held, &bed.state());
    // DEL of the loser must not release the winner's device.
    assert!(bed.run("DEL", "pod-b", &conf).ok());
    common::assert_same(&held, &bed.state());
    assert!(bed.run("DEL", "pod-a", &conf).ok());
}

#[test]
fn check_fails_after_a_rebind_behind_the_plugins_back_and_after_vf_drift() {
    let bed = Bed::new(2);
    let conf = bed.conf(0, json!({"mac": "02:00:00:00:00:10", "vlan": 7}));
    assert!(bed.run("ADD", "c", &conf).ok());
    assert!(bed.run("CHECK", "c", &conf).ok());

    // Someone changes the VF's MAC through the PF.
    use netlink::{VfAttr, VfNetlink};
    let mut nl = bed.nl.clone();
    nl.set_vf(
        "ens1f0",
        0,
        VfAttr::Mac("02:00:00:00:00:99".parse().unwrap()),
    )
    .unwrap();
    let out = bed.run("CHECK", "c", &conf);
    assert_eq!(out.err_code(), 107);
    assert!(
        out.msg().contains("mac is 02:00:00:00:00:99"),
        "{}",
        out.msg()
    );
    nl.set_vf(
        "ens1f0",
        0,
        VfAttr::Mac("02:00:00:00:00:10".parse().unwrap()),
    )
    .unwrap();

    // Someone gives the VF back to igbvf.
    let sysfs = bed.node.sysfs();
    sysfs
        .restore_driver(bed.pf.vfs[0], Some("igbvf"), None, Default::default())
        .unwrap();
    let out = bed.run("CHECK", "c", &conf);
    assert_eq!(out.err_code(), 107);
    assert!(
        out.msg().contains("bound to igbvf, not vfio-pci"),
        "{}",
        out.msg()
    );

    // DEL still cleans up.
    assert!(bed.run("DEL", "c", &conf).ok());
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
    let unknown = bed.run("CHECK", "c", &conf);
    assert_eq!(unknown.err_code(), 3);
}

#[test]
fn check_fails_when_the_group_node_vanishes() {
    let bed = Bed::new(1);
    let conf = bed.conf(0, json!({}));
    assert!(bed.run("ADD", "c", &conf).ok());
    std::fs::remove_file(bed.root().join("dev/vfio/11")).unwrap();
    let out = bed.run("CHECK", "c", &conf);
    assert_eq!(out.err_code(), 107);
    assert!(out.msg().contains("/dev/vfio/11 vanished"), "{}", out.msg());
}

#[test]
fn status_reports_what_is_missing() {
    let bed = Bed::new(1);
    let conf = bed.conf(0, json!({}));
    assert!(bed.run("STATUS", "", &conf).ok());

    bed.node.remove_driver("vfio-pci").unwrap();
    let out = bed.run("STATUS", "", &conf);
    assert_eq!(out.err_code(), 50);
    assert!(out.msg().contains("vfio-pci"), "{}", out.msg());

    let bed = Bed::new(1);
    bed.node.disable_iommu().unwrap();
    let out = bed.run("STATUS", "", &conf);
    assert_eq!(out.err_code(), 50);
    assert!(out.msg().contains("IOMMU"), "{}", out.msg());

    let bed = Bed::new(1);
    std::fs::write(bed.root().join("a-file"), "").unwrap();
    bed.settings(json!({"stateDir": "/a-file/state"}));
    let out = bed.run("STATUS", "", &bed.conf(0, json!({})));
    assert_eq!(out.err_code(), 50);
    assert!(out.msg().contains("state directory"), "{}", out.msg());

    let out = bed.run("STATUS", "", &bed.conf(0, json!({"cniVersion": "1.0.0"})));
    assert_eq!(out.err_code(), 1);
}

#[test]
fn gc_releases_what_is_not_valid() {
    let bed = Bed::new(3);
    let before = bed.state();
    for (i, c) in ["keep", "drop1", "drop2"].iter().enumerate() {
        assert!(bed
            .run("ADD", c, &bed.conf(i, json!({"vlan": 10 + i})))
            .ok());
    }
    let gc_conf = bed.conf(
        0,
        json!({"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "net1"}]}),
    );
    let out = bed.run("GC", "", &gc_conf);
    assert!(out.ok(), "{out:?}");
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.driver(1).as_deref(), Some("igbvf"));
    assert_eq!(bed.driver(2).as_deref(), Some("igbvf"));
    assert!(bed
        .run("CHECK", "keep", &bed.conf(0, json!({"vlan": 10})))
        .ok());

    let out = bed.run(
        "GC",
        "",
        &bed.conf(0, json!({"cni.dev/valid-attachments": []})),
    );
    assert!(out.ok(), "{out:?}");
    common::assert_same(&before, &bed.state());

    let out = bed.run("GC", "", &bed.conf(0, json!({})));
    assert_eq!(out.err_code(), 7);
    let out = bed.run(
        "GC",
        "",
        &bed.conf(
            0,
            json!({"cniVersion": "0.4.0", "cni.dev/valid-attachments": []}),
        ),
    );
    assert_eq!(out.err_code(), 1);
}

#[test]
fn gc_leaves_other_networks_alone() {
    let bed = Bed::new(2);
    assert!(bed
        .run("ADD", "a", &bed.conf(0, json!({"name": "other-net"})))
        .ok());
    let out = bed.run(
        "GC",
        "",
        &bed.conf(0, json!({"cni.dev/valid-attachments": []})),
    );
    assert!(out.ok());
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
}

#[test]
fn pod_annotations_override_vlan_and_tx_rate() {
    let bed = Bed::new(2);
    let ann = |vlan: &str, rate: &str| {
        json!({"vlan": 100, "max_tx_rate": 1000, "podOverrides": ["vlan", "max_tx_rate"],
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {
            "networks-sriov-vlan": vlan, "networks-sriov-txrate": rate, "other": "x"}}})
    };
    let conf = bed.conf(0, ann("200", "500"));
    assert!(bed.run("ADD", "p", &conf).ok());
    let vf = &bed.nl.load().unwrap().links["ens1f0"].vfs[0];
    assert_eq!((vf.vlan, vf.max_tx_rate), (200, 500));
    assert!(bed.run("DEL", "p", &conf).ok());

    for (vlan, rate, says) in [
        ("abc", "5", "networks-sriov-vlan"),
        ("5000", "5", "networks-sriov-vlan"),
        ("7", "fast", "networks-sriov-txrate"),
    ] {
        let before = bed.state();
        let out = bed.run("ADD", "p", &bed.conf(0, ann(vlan, rate)));
        assert_eq!(out.err_code(), 7, "{vlan} {rate}");
        assert!(out.msg().contains(says), "{}", out.msg());
        common::assert_same(&before, &bed.state());
    }
}

#[test]
fn log_file_gets_the_commands_at_the_level_asked() {
    let bed = Bed::new(1);
    let log = bed.root().join("var/log/dpdk-cni.log");
    let conf = bed.conf(
        0,
        json!({"logFile": "/var/log/dpdk-cni.log", "logLevel": "debug"}),
    );
    assert!(bed.run("ADD", "c", &conf).ok());
    assert!(bed.run("DEL", "c", &conf).ok());
    assert!(bed.run("DEL", "c", &conf).ok());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("ADD c net1: {} as vfio-pci", bed.vf(0))),
        "{text}"
    );
    assert!(text.contains("released vfio-pci"), "{text}");
    assert!(
        text.contains("[Debug]") && text.contains("no attachment recorded"),
        "{text}"
    );

    let quiet = bed.root().join("tmp/quiet.log");
    let conf = bed.conf(0, json!({"logFile": "/tmp/quiet.log", "logLevel": "error"}));
    assert!(bed.run("ADD", "c", &conf).ok());
    let out = bed.run("ADD", "d", &conf);
    assert_eq!(out.err_code(), 101);
    let text = std::fs::read_to_string(&quiet).unwrap();
    assert!(!text.contains("[Info]"), "{text}");
    assert!(
        text.contains("[Error]") && text.contains("in use by container c"),
        "{text}"
    );
}

#[test]
fn a_device_the_node_daemon_bound_early_goes_back_to_its_first_driver() {
    // In no-IOMMU mode the node daemon binds a VF to vfio-pci at Allocate
    // (its group exists only then) and records the driver it had.
    let bed = Bed::new(2);
    let before = bed.state();
    bed.prebind(0, "igbvf");
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));

    let conf = bed.conf(0, json!({"vlan": 7}));
    let out = bed.run("ADD", "pod-a", &conf);
    assert!(out.ok(), "{out:?}");
    let devinfo = bed
        .root()
        .join("var/run/k8s.cni.cncf.io/devinfo/cni/sriov-dpdk-pod-a-net1-device.json");
    let di: serde_json::Value = serde_json::from_slice(&std::fs::read(&devinfo).unwrap()).unwrap();
    assert_eq!(di["pci"]["original-driver"], "igbvf");

    assert!(bed.run("DEL", "pod-a", &conf).ok());
    // Back on igbvf, no driver_override, no early-bind record, VF settings as before.
    common::assert_same(&before, &bed.state());
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
}
