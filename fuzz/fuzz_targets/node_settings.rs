#![no_main]
//! The node's settings file (`/etc/dpdk-cni/node.json`, root-owned): any
//! bytes in it load into settings whose every path stays below the node's
//! root, or are refused with a message, as an I/O error (5) at the plugin's
//! edge.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use dpdk_cni::error::{code, CniError};
use fuzzkit::{at_or_below, expect_err};
use ledger::settings::SETTINGS_FILE;
use ledger::NodeSettings;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static ROOT: (tempfile::TempDir, PathBuf) = {
        let t = tempfile::tempdir().expect("a temporary directory");
        let root = t.path().join("node");
        let f = root.join(SETTINGS_FILE);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, b"{}").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        if std::fs::metadata(&f).unwrap().uid() != 0 {
            eprintln!("node_settings: not run as root, so every settings file is refused");
        }
        (t, root)
    };
}

fuzz_target!(|data: &[u8]| {
    ROOT.with(|(_, root)| {
        // Rewritten in place: the file keeps its owner (root, the fuzzer
        // runs as root) and mode.
        std::fs::write(root.join(SETTINGS_FILE), data).unwrap();
        match NodeSettings::load(root) {
            Ok(s) => {
                for p in [&s.state_dir, &s.pod_resources_socket]
                    .into_iter()
                    .chain(&s.log_dirs)
                {
                    assert!(
                        at_or_below(p, root),
                        "{} is outside the node's root",
                        p.display()
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(data).unwrap();
                let pfs: Vec<String> = v
                    .get("handoverPfs")
                    .and_then(|p| serde_json::from_value(p.clone()).ok())
                    .unwrap_or_default();
                assert_eq!(s.handover_pfs, pfs);
                assert_eq!(
                    s.allocation_check,
                    v.get("allocationCheck")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false)
                );
            }
            Err(e) => {
                assert!(!e.to_string().trim().is_empty());
                expect_err(&CniError::from(e), &[code::IO]);
            }
        }
    });
});
