#![no_main]
//! Attachment records are input too: a record that parses and validates
//! names no path outside its directory, no driver but a driver name, no
//! interface but an interface name; and the ledger hands out only such a
//! record, for the attachment its file is named after, and moves every
//! other one aside.

use std::path::{Path, PathBuf};

use fuzzkit::{at_or_below, is_driver, is_ifname, strictly_below};
use ledger::{Attachment, DeviceId, DeviceType, Ledger, LedgerError, RECORD_VERSION};
use libfuzzer_sys::fuzz_target;

/// Where a node's device-info files live.
const DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";
const NETWORK: &str = "sriov-dpdk";
const CONTAINER: &str = "fuzz";
const IFNAME: &str = "net1";

thread_local! {
    static STATE: (tempfile::TempDir, PathBuf) = {
        let t = tempfile::tempdir().expect("a temporary directory");
        let dir = t.path().join("state");
        std::fs::create_dir_all(dir.join(NETWORK)).unwrap();
        (t, dir)
    };
}

fuzz_target!(|data: &[u8]| {
    let devinfo = Path::new(DEVINFO_DIR);
    let parsed = serde_json::from_slice::<Attachment>(data).ok();
    let valid = parsed.as_ref().filter(|a| match a.validate(devinfo) {
        Ok(()) => {
            check_valid(a, devinfo);
            true
        }
        Err(why) => {
            assert!(!why.trim().is_empty(), "a refusal without a reason");
            false
        }
    });
    if let Some(a) = valid {
        // What the ledger writes back reads the same and still validates.
        let again: Attachment = serde_json::from_slice(&serde_json::to_vec(a).unwrap())
            .expect("a saved record reads back");
        again.validate(devinfo).expect("a saved record validates");
        let strip = |a: &Attachment| Attachment {
            ipam: None,
            result: None,
            ..a.clone()
        };
        assert_eq!(strip(a), strip(&again));
    }

    STATE.with(|(_, dir)| {
        let ledger = Ledger::new(dir).validating(devinfo);
        let file = ledger.attachment_path(NETWORK, CONTAINER, IFNAME);
        std::fs::write(&file, data).unwrap();
        match ledger.load(NETWORK, CONTAINER, IFNAME) {
            Ok(Some(a)) => {
                assert_eq!(Some(&a), valid, "the ledger took a record that fails");
                assert_eq!(
                    (
                        a.network.as_str(),
                        a.container_id.as_str(),
                        a.ifname.as_str()
                    ),
                    (NETWORK, CONTAINER, IFNAME),
                    "the ledger took another attachment's record"
                );
            }
            Ok(None) => panic!("the record vanished"),
            Err(LedgerError::Quarantined { path, moved_to, .. }) => {
                assert_eq!(path, file);
                assert!(!file.exists(), "a quarantined record stayed");
                assert!(strictly_below(&moved_to, &dir.join("quarantine")));
                std::fs::remove_file(&moved_to).unwrap();
                let names_it = valid.is_some_and(|a| {
                    (
                        a.network.as_str(),
                        a.container_id.as_str(),
                        a.ifname.as_str(),
                    ) == (NETWORK, CONTAINER, IFNAME)
                });
                assert!(!names_it, "a good record was moved aside");
            }
            Err(e) => panic!("{e}"),
        }
    });
});

fn check_valid(a: &Attachment, devinfo: &Path) {
    assert!(a.version <= RECORD_VERSION, "version {}", a.version);
    assert!(is_ifname(&a.ifname), "ifname {:?}", a.ifname);
    for d in [&a.original_driver, &a.original_override]
        .into_iter()
        .flatten()
    {
        assert!(is_driver(d), "driver {d:?}");
    }
    let names = a
        .pf_ifname
        .iter()
        .chain(&a.original_netdevs)
        .chain(&a.macvlan_name)
        .chain(a.original_link.as_ref().map(|l| &l.name));
    for n in names {
        assert!(is_ifname(n), "interface name {n:?}");
    }
    match (&a.device_type, &a.device) {
        (DeviceType::Macvlan, DeviceId::Netdev(n)) => assert!(is_ifname(n), "master {n:?}"),
        (DeviceType::Macvlan, d) => panic!("a macvlan on {d}"),
        (_, DeviceId::Pci(_)) => {}
        (t, d) => panic!("a {t} attachment of {d}"),
    }
    assert_eq!(a.pf.is_some(), a.vf_index.is_some());
    // The directory itself is not outside it (and removing a directory as
    // a file fails harmlessly).
    if let Some(p) = &a.device_info_file {
        assert!(at_or_below(p, devinfo), "device-info file {}", p.display());
    }
    if let Some(p) = &a.vfio_device {
        assert!(
            at_or_below(p, Path::new("/dev/vfio")),
            "vfio device {}",
            p.display()
        );
    }
}
