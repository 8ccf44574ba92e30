//! The netconf is tenant input: whoever may create a NetworkAttachmentDefinition
//! writes the stdin of a root process on every node. Each test here is an
//! attack, or a crash or drift that used to leave the node stuck, run
//! against the binary on a fake node: the victim must stay as it was.

mod common;

use common::{assert_same, Bed};
use serde_json::{json, Value};

/// A file the attacker must not reach, below the fake root.
fn victim(bed: &Bed, rel: &str) -> std::path::PathBuf {
    let p = bed.root().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "ssh-ed25519 AAAA admin\n").unwrap();
    p
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn log_file_stays_in_the_log_directories() {
    let bed = Bed::new(2);
    let keys = victim(&bed, "root/.ssh/authorized_keys");
    let before = bed.state();
    for bad in [
        "/root/.ssh/authorized_keys",
        "/var/log/../../root/.ssh/authorized_keys",
    ] {
        let out = bed.run("ADD", "p", &bed.conf(0, json!({"logFile": bad})));
        assert_eq!(out.err_code(), 7, "{bad}");
        assert!(out.msg().contains("logFile"), "{}", out.msg());
        assert_eq!(read(&keys), "ssh-ed25519 AAAA admin\n");
        assert_same(&before, &bed.state());
    }
    // A symlink planted in a log directory is not followed.
    std::fs::create_dir_all(bed.root().join("var/log")).unwrap();
    std::os::unix::fs::symlink(&keys, bed.root().join("var/log/dpdk.log")).unwrap();
    let out = bed.run(
        "ADD",
        "p",
        &bed.conf(0, json!({"logFile": "/var/log/dpdk.log"})),
    );
    assert_eq!(out.err_code(), 7);
    assert!(out.msg().contains("symlink"), "{}", out.msg());
    assert_eq!(read(&keys), "ssh-ed25519 AAAA admin\n");
    // DEL goes on with a refused logFile.
    let del = bed.run(
        "DEL",
        "p",
        &bed.conf(0, json!({"logFile": "/root/.ssh/authorized_keys"})),
    );
    assert!(del.ok(), "{del:?}");
    assert_eq!(read(&keys), "ssh-ed25519 AAAA admin\n");
}

#[test]
fn a_message_cannot_plant_a_log_line() {
    let bed = Bed::new(1);
    let conf = bed.conf(
        0,
        json!({"logFile": "/var/log/dpdk-cni.log", "master": "x\nssh-ed25519 EVIL attacker", "deviceID": null}),
    );
    let out = bed.run("ADD", "p", &conf);
    assert_eq!(out.err_code(), 7);
    let log = read(&bed.root().join("var/log/dpdk-cni.log"));
    assert!(log.contains("EVIL"), "the refusal is logged: {log:?}");
    assert!(
        log.lines().all(|l| !l.starts_with("ssh-ed25519")),
        "a line of the attacker's: {log:?}"
    );
}

#[test]
fn state_dir_is_the_nodes_not_the_netconfs() {
    let bed = Bed::new(2);
    let keys = victim(&bed, "root/.ssh/authorized_keys");
    // Network A holds VF 0.
    assert!(bed.run("ADD", "a", &bed.conf(0, json!({"vlan": 10}))).ok());
    let held = bed.state();
    // Network B names a state directory of its own to miss A's claim.
    for dir in ["/tmp/other-state", "/root/.ssh/authorized_keys\nevil"] {
        let b = bed.conf(0, json!({"name": "net-b", "stateDir": dir, "vlan": 20}));
        let out = bed.run("ADD", "b", &b);
        assert_eq!(out.err_code(), 7, "{out:?}");
        assert!(out.msg().contains("node setting"), "{}", out.msg());
        assert_same(&held, &bed.state());
    }
    // Without one, B meets A's claim.
    let out = bed.run("ADD", "b", &bed.conf(0, json!({"name": "net-b"})));
    assert_eq!(out.err_code(), 101);
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[0].vlan, 10);
    assert_eq!(read(&keys), "ssh-ed25519 AAAA admin\n");
    assert!(bed.run("DEL", "a", &bed.conf(0, json!({}))).ok());
}

#[test]
fn reserved_network_names_are_refused() {
    let bed = Bed::new(1);
    for name in ["devices", "locks", "prebound", "quarantine"] {
        let out = bed.run("ADD", "p", &bed.conf(0, json!({"name": name})));
        assert_eq!(out.err_code(), 7, "{name}");
        assert!(out.msg().contains("reserved"), "{}", out.msg());
    }
}

#[test]
fn device_info_file_stays_in_its_directory_and_is_never_anothers() {
    let bed = Bed::new(2);
    let shadow = victim(&bed, "etc/shadow");
    let before = bed.state();
    for bad in [
        "/etc/shadow",
        "/var/run/k8s.cni.cncf.io/devinfo/../../../../etc/shadow",
    ] {
        let conf = bed.conf(0, json!({"runtimeConfig": {"CNIDeviceInfoFile": bad}}));
        let out = bed.run("ADD", "p", &conf);
        assert_eq!(out.err_code(), 7, "{bad}");
        assert!(out.msg().contains("CNIDeviceInfoFile"), "{}", out.msg());
        assert!(bed.run("DEL", "p", &conf).ok());
        assert_eq!(read(&shadow), "ssh-ed25519 AAAA admin\n");
        assert_same(&before, &bed.state());
    }
    // Another pod's device-info file: neither overwritten by ADD nor
    // removed by the DEL that follows the failed ADD.
    let theirs = bed
        .root()
        .join("var/run/k8s.cni.cncf.io/devinfo/other-pod.json");
    std::fs::write(&theirs, "{\"theirs\":true}").unwrap();
    let conf = bed.conf(
        0,
        json!({"runtimeConfig": {"CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/other-pod.json"}}),
    );
    let out = bed.run("ADD", "p", &conf);
    assert_eq!(out.err_code(), 7, "{out:?}");
    assert!(bed.run("DEL", "p", &conf).ok());
    assert_eq!(read(&theirs), "{\"theirs\":true}");
}

#[test]
fn the_copy_multus_made_for_this_device_is_replaced_and_no_other_file() {
    let bed = Bed::new(2);
    let dir = bed.root().join("var/run/k8s.cni.cncf.io/devinfo/cni");
    std::fs::create_dir_all(&dir).unwrap();
    // What the device plugin writes in devinfo/dp/ and Multus copies to
    // `<network>-<container>_<ifname>` before it calls the plugin.
    let dp_doc = |i: usize| {
        json!({"type": "pci", "version": "1.1.0",
               "pci": {"pci-address": bed.pf.vfs[i].to_string(),
                       "pf-pci-address": bed.pf.address.to_string()}})
        .to_string()
    };
    let name = "/var/run/k8s.cni.cncf.io/devinfo/cni/net-p_net1";
    let file = bed.root().join(&name[1..]);
    let conf = bed.conf(0, json!({"runtimeConfig": {"CNIDeviceInfoFile": name}}));

    // Another VF's file, and a symlink to this VF's: refused, untouched.
    std::fs::write(&file, dp_doc(1)).unwrap();
    let before = bed.state();
    let out = bed.run("ADD", "p", &conf);
    assert_eq!(out.err_code(), 7, "{out:?}");
    assert!(out.msg().contains("describes"), "{}", out.msg());
    assert_same(&before, &bed.state());
    assert_eq!(read(&file), dp_doc(1));
    std::fs::remove_file(&file).unwrap();
    let target = dir.join("elsewhere.json");
    std::fs::write(&target, dp_doc(0)).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let out = bed.run("ADD", "p", &conf);
    assert_eq!(out.err_code(), 7, "{out:?}");
    assert!(out.msg().contains("symlink"), "{}", out.msg());
    assert_eq!(read(&target), dp_doc(0));
    assert!(bed.run("DEL", "p", &conf).ok());
    assert!(
        file.symlink_metadata().is_ok(),
        "DEL removed a file ADD did not write"
    );
    std::fs::remove_file(&file).unwrap();

    // This VF's copy: ADD replaces it with the plugin's document, DEL removes it.
    std::fs::write(&file, dp_doc(0)).unwrap();
    let out = bed.run("ADD", "p", &conf);
    assert!(out.ok(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&read(&file)).unwrap();
    assert_eq!(doc["pci"]["pci-address"], bed.pf.vfs[0].to_string());
    assert!(doc["pci"]["iommu-group"].is_string(), "{doc}");
    assert!(bed.run("DEL", "p", &conf).ok());
    assert!(!file.exists(), "DEL left the device-info file");
}

#[test]
fn only_network_devices_are_taken() {
    let bed = Bed::new(3);
    // VF 1 turns out to be an NVMe VF, VF 2 a GPU function.
    bed.node.set_class(bed.pf.vfs[1], 0x010802).unwrap();
    bed.node.set_class(bed.pf.vfs[2], 0x030000).unwrap();
    let before = bed.state();
    for i in [1, 2] {
        let out = bed.run("ADD", "p", &bed.conf(i, json!({})));
        assert_eq!(out.err_code(), 7);
        assert!(out.msg().contains("not a network device"), "{}", out.msg());
        assert_eq!(bed.driver(i).as_deref(), Some("igbvf"));
    }
    assert_same(&before, &bed.state());
}

#[test]
fn a_whole_pf_needs_the_nodes_word() {
    let bed = Bed::new(1);
    // The management NIC, and an NVMe controller.
    let mgmt = bed.pf.address.to_string();
    let nvme = bed
        .node
        .add_pf("0000:02:00.0".parse().unwrap(), "nvme0", 0, 0, 0, 50)
        .unwrap();
    bed.node.set_class(nvme.address, 0x010802).unwrap();
    let before = bed.state();
    for (dev, says) in [
        (mgmt.as_str(), "handoverPfs"),
        ("0000:02:00.0", "not a network device"),
    ] {
        let conf = bed.conf(0, json!({"deviceID": dev, "pfOnly": true}));
        let out = bed.run("ADD", "p", &conf);
        assert_eq!(out.err_code(), 7, "{dev}");
        assert!(out.msg().contains(says), "{dev}: {}", out.msg());
    }
    // allowedDevices cannot widen the node's list.
    let conf = bed.conf(
        0,
        json!({"deviceID": mgmt, "pfOnly": true, "allowedDevices": [mgmt]}),
    );
    assert_eq!(bed.run("ADD", "p", &conf).err_code(), 7);
    assert_same(&before, &bed.state());
}

#[test]
fn vfs_sharing_an_iommu_group_go_to_one_pod() {
    let bed = Bed::new(3);
    // VF 0 and VF 1 behind a bridge without ACS: one group, viable for
    // vfio while VF 1 has no driver.
    bed.node.join_group(bed.pf.vfs[1], 11).unwrap();
    vfio::fake::emulated(bed.root())
        .unbind(bed.pf.vfs[1])
        .unwrap();
    assert!(bed.run("ADD", "pod-a", &bed.conf(0, json!({}))).ok());
    let held = bed.state();
    let out = bed.run("ADD", "pod-b", &bed.conf(1, json!({})));
    assert_eq!(out.err_code(), 102, "{out:?}");
    assert!(out.msg().contains("pod-a"), "{}", out.msg());
    assert_same(&held, &bed.state());
    // The same pod may have both.
    let out = bed.run_with("ADD", "pod-a", "net2", &bed.conf(1, json!({})), &[]);
    assert!(out.ok(), "{out:?}");
    assert!(bed
        .run_with("DEL", "pod-a", "net2", &bed.conf(1, json!({})), &[])
        .ok());
    assert!(bed.run("DEL", "pod-a", &bed.conf(0, json!({}))).ok());

    // A peer something else bound to vfio-pci.
    bed.node.join_group(bed.pf.vfs[2], 11).unwrap();
    vfio::fake::emulated(bed.root())
        .bind_driver(bed.pf.vfs[2], "vfio-pci", Default::default())
        .unwrap();
    let out = bed.run("ADD", "pod-c", &bed.conf(0, json!({})));
    assert_eq!(out.err_code(), 102, "{out:?}");
    assert!(out.msg().contains("something other"), "{}", out.msg());
}

#[test]
fn pod_annotations_override_only_what_the_netconf_opens() {
    let bed = Bed::new(1);
    let conf = bed.conf(
        0,
        json!({"vlan": 100, "max_tx_rate": 1000, "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {
            "networks-sriov-vlan": "0", "networks-sriov-txrate": "0"}}}),
    );
    assert!(bed.run("ADD", "p", &conf).ok());
    let vf = &bed.nl.load().unwrap().links["ens1f0"].vfs[0];
    assert_eq!((vf.vlan, vf.max_tx_rate), (100, 1000));
    assert!(bed.run("DEL", "p", &conf).ok());
    let mut bad = conf.clone();
    bad["podOverrides"] = json!(["trust"]);
    assert_eq!(bed.run("ADD", "p", &bad).err_code(), 7);
}

/// The record of attachment `container`/net1 of the default network.
fn record(bed: &Bed, container: &str) -> std::path::PathBuf {
    bed.state_dir
        .join("sriov-dpdk")
        .join(format!("{container}-net1.json"))
}

#[test]
fn a_forged_record_touches_nothing_it_does_not_hold() {
    let bed = Bed::new(3);
    let nvme = bed
        .node
        .add_pf("0000:02:00.0".parse().unwrap(), "nvme0", 0, 0, 0, 50)
        .unwrap();
    bed.node.set_class(nvme.address, 0x010802).unwrap();
    assert!(bed.run("ADD", "mine", &bed.conf(0, json!({}))).ok());
    assert!(bed
        .run("ADD", "theirs", &bed.conf(1, json!({"vlan": 30})))
        .ok());
    let theirs = bed.nl.load().unwrap().links["ens1f0"].vfs[1].clone();

    // "mine" now says it holds the NVMe controller.
    let p = record(&bed, "mine");
    let mut r: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    r["device"] = json!("0000:02:00.0");
    r["pf"] = Value::Null;
    r["vfIndex"] = Value::Null;
    r["originalDriver"] = json!("vfio-pci");
    std::fs::write(&p, r.to_string()).unwrap();
    assert!(bed.run("DEL", "mine", &bed.conf(0, json!({}))).ok());
    let nvme_drv = bed
        .node
        .sysfs()
        .device(nvme.address)
        .unwrap()
        .driver()
        .unwrap();
    assert_eq!(
        nvme_drv.as_deref(),
        Some("igb"),
        "the NVMe controller was rebound"
    );

    // Another record now says it holds the other tenant's VF.
    assert!(bed.run("ADD", "mine", &bed.conf(2, json!({}))).ok());
    let p = record(&bed, "mine");
    let mut r: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    r["device"] = json!(bed.vf(1));
    r["vfIndex"] = json!(1);
    r["vfSettings"] = json!({"vlan": {"id": 30, "qos": 0, "proto": "802.1q"}});
    std::fs::write(&p, r.to_string()).unwrap();
    assert!(bed.run("DEL", "mine", &bed.conf(2, json!({}))).ok());
    assert_eq!(bed.driver(1).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[1], theirs);
    assert!(bed
        .run("CHECK", "theirs", &bed.conf(1, json!({"vlan": 30})))
        .ok());
    // Its own VF 2 was not in the forged record: its claim still says so,
    // and the claim alone brings it back.
    assert!(bed.run("DEL", "theirs", &bed.conf(1, json!({}))).ok());
}

#[test]
fn unusable_records_never_block_del_or_gc() {
    for body in ["", "{}", "{\"network\": \"sriov-dpdk\", \"conta", "[]"] {
        let bed = Bed::new(3);
        let before = bed.state();
        for (i, c) in ["bad", "good"].iter().enumerate() {
            assert!(bed.run("ADD", c, &bed.conf(i, json!({}))).ok());
        }
        std::fs::write(record(&bed, "bad"), body).unwrap();
        // DEL of the bad one succeeds, moves the record aside and still
        // gives its VF back, found through its claim.
        let out = bed.run("DEL", "bad", &bed.conf(0, json!({})));
        assert!(out.ok(), "{body:?}: {out:?}");
        assert_eq!(bed.driver(0).as_deref(), Some("igbvf"), "{body:?}");
        assert!(bed.state_dir.join("quarantine").read_dir().unwrap().count() == 1);
        // GC goes past a bad record to release the good one.
        assert!(bed.run("ADD", "bad", &bed.conf(2, json!({}))).ok());
        std::fs::write(record(&bed, "bad"), body).unwrap();
        let gc = bed.conf(0, json!({"cni.dev/valid-attachments": []}));
        let _ = bed.run("GC", "", &gc);
        assert_eq!(bed.driver(1).as_deref(), Some("igbvf"), "{body:?}");
        assert!(bed.run("DEL", "bad", &bed.conf(2, json!({}))).ok());
        let mut after = bed.state();
        after.attachments.retain(|a| !a.starts_with("quarantine/"));
        assert_same(&before, &after);
    }
}

#[test]
fn del_succeeds_when_the_vf_or_pf_is_gone() {
    let bed = Bed::new(2);
    let conf = bed.conf(0, json!({"vlan": 7}));
    assert!(bed.run("ADD", "p", &conf).ok());
    // numvfs reset: the VF and the PF's VF list are gone.
    let dev = bed.root().join("sys/bus/pci/devices").join(bed.vf(0));
    std::fs::remove_dir_all(&dev).unwrap();
    std::fs::remove_dir_all(bed.nl.path().join("ens1f0")).unwrap();
    let out = bed.run("DEL", "p", &conf);
    assert!(out.ok(), "{out:?}");
    assert!(
        bed.state().attachments.is_empty(),
        "{:?}",
        bed.state().attachments
    );
    // The VF's claim went with it: a new VF at that address can be taken.
    assert!(bed.run("ADD", "q", &bed.conf(1, json!({}))).ok());
}

#[test]
fn gc_never_releases_a_device_another_attachment_holds() {
    let bed = Bed::new(2);
    assert!(bed.run("ADD", "old", &bed.conf(0, json!({}))).ok());
    assert!(bed.run("ADD", "new", &bed.conf(1, json!({}))).ok());
    // A stale record of "old" that names the device "new" holds now.
    let p = record(&bed, "old");
    let mut r: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    r["device"] = json!(bed.vf(1));
    r["vfIndex"] = json!(1);
    std::fs::write(&p, r.to_string()).unwrap();
    let gc = bed.conf(
        0,
        json!({"cni.dev/valid-attachments": [{"containerID": "new", "ifname": "net1"}]}),
    );
    let _ = bed.run("GC", "", &gc);
    assert_eq!(bed.driver(1).as_deref(), Some("vfio-pci"));
    assert!(bed.run("CHECK", "new", &bed.conf(1, json!({}))).ok());
}

#[test]
fn no_iommu_flow_after_the_daemons_early_bind() {
    let bed = Bed::new(2);
    bed.node.disable_iommu().unwrap();
    bed.node.enable_noiommu().unwrap();
    let before = bed.state();
    // The node daemon's Allocate: record the driver, bind to vfio-pci,
    // which makes a no-IOMMU group.
    bed.prebind(0, "igbvf");
    let conf = bed.conf(0, json!({"vlan": 3}));
    let out = bed.run("ADD", "p", &conf);
    assert!(out.ok(), "{out:?}");
    let di: Value = serde_json::from_slice(
        &std::fs::read(
            bed.root()
                .join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)
                .join("sriov-dpdk-p-net1-device.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        di["pci"]["vfio-device"]
            .as_str()
            .unwrap()
            .starts_with("/dev/vfio/noiommu-"),
        "{di}"
    );
    assert!(bed.run("DEL", "p", &conf).ok());
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
    let mut after = bed.state();
    // The no-IOMMU group vfio-pci made stays, as the kernel's does.
    after
        .sysfs
        .retain(|k, _| !k.contains("iommu_group") && !k.contains("noiommu"));
    let mut before = before;
    before
        .sysfs
        .retain(|k, _| !k.contains("iommu_group") && !k.contains("noiommu"));
    assert_same(&before, &after);
}

#[test]
fn two_attachments_whose_names_join_alike_keep_their_own_records() {
    // <containerID>-<ifname>: "pod-a" + "net1" and "pod" + "a-net1" meet in
    // one file name.
    let bed = Bed::new(2);
    assert!(bed
        .run_with(
            "ADD",
            "pod-a",
            "net1",
            &bed.conf(0, json!({"vlan": 30})),
            &[]
        )
        .ok());
    let held = bed.state();
    let other = bed.conf(1, json!({}));
    let out = bed.run_with("ADD", "pod", "a-net1", &other, &[]);
    assert_eq!(out.err_code(), 101, "{out:?}");
    // The runtime's DEL after the failed ADD leaves pod-a's VF alone.
    assert!(bed.run_with("DEL", "pod", "a-net1", &other, &[]).ok());
    assert_same(&held, &bed.state());
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    assert!(bed
        .run_with("DEL", "pod-a", "net1", &bed.conf(0, json!({})), &[])
        .ok());
}

#[test]
fn a_netconf_makes_no_directories() {
    let bed = Bed::new(1);
    std::fs::create_dir_all(bed.root().join("tmp")).unwrap();
    let before = bed.state();
    let conf = bed.conf(
        0,
        json!({"runtimeConfig": {"CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/a/b/c.json"},
               "logFile": "/tmp/x/y/z.log"}),
    );
    let out = bed.run("ADD", "p", &conf);
    assert_eq!(out.err_code(), 7, "{out:?}");
    assert!(out.msg().contains("does not exist"), "{}", out.msg());
    assert!(bed.run("DEL", "p", &conf).ok());
    assert!(!bed.root().join("tmp/x").exists());
    assert!(!bed
        .root()
        .join("var/run/k8s.cni.cncf.io/devinfo/a")
        .exists());
    assert_same(&before, &bed.state());
}
