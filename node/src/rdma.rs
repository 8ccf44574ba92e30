//! RDMA facts of a PCI device from sysfs, found as the SR-IOV network
//! device plugin finds them (through its `rdmamap` library):
//!
//! - the RDMA devices of a function are the directories in
//!   `/sys/bus/pci/devices/<bdf>/infiniband/` (`mlx5_0`, ...);
//! - an RDMA device's character devices are the entries of
//!   `/sys/class/infiniband_cm` named `ucm*`, of `/sys/class/infiniband_mad`
//!   named `issm*` and `umad*`, and of `/sys/class/infiniband_verbs` named
//!   `uverbs*` whose `ibdev` file names it, each as `/dev/infiniband/<entry>`
//!   (one of each kind, in that order), then `/dev/infiniband/rdma_cm` when
//!   it exists.
//!
//! Entries are read in name order, so a node with several of a kind gives
//! the same answer every time.

use std::fs;
use std::path::Path;

use vfio::{PciAddress, Sysfs};

/// The RDMA devices of a PCI function, in name order.
pub fn devices_of(sysfs: &Sysfs, addr: PciAddress) -> Vec<String> {
    let dir = sysfs
        .pci_devices_dir()
        .join(addr.to_string())
        .join("infiniband");
    let mut out: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The class directories and name prefixes, in the order the character
/// devices are listed.
const CHAR_DEVICES: [(&str, &str); 4] = [
    ("sys/class/infiniband_cm", "ucm"),
    ("sys/class/infiniband_mad", "issm"),
    ("sys/class/infiniband_mad", "umad"),
    ("sys/class/infiniband_verbs", "uverbs"),
];

/// The shared connection manager node, given with every RDMA device.
pub const RDMA_CM: &str = "/dev/infiniband/rdma_cm";

/// The character devices of RDMA device `name`, as host paths.
pub fn char_devices(sysfs: &Sysfs, name: &str) -> Vec<String> {
    let root = sysfs.root();
    let mut out = Vec::new();
    for (class, prefix) in CHAR_DEVICES {
        if let Some(entry) = entry_for(&root.join(class), prefix, name) {
            out.push(format!("/dev/infiniband/{entry}"));
        }
    }
    if root.join(RDMA_CM.trim_start_matches('/')).exists() {
        out.push(RDMA_CM.to_string());
    }
    out
}

/// The first entry (by name) of `class_dir` whose name contains `prefix`
/// and whose `ibdev` is `name`.
fn entry_for(class_dir: &Path, prefix: &str, name: &str) -> Option<String> {
    let mut entries: Vec<String> = fs::read_dir(class_dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(prefix))
        .collect();
    entries.sort();
    entries.into_iter().find(|e| {
        fs::read_to_string(class_dir.join(e).join("ibdev"))
            .map(|s| s.trim_end_matches('\n') == name)
            .unwrap_or(false)
    })
}

/// A fake RDMA device for tests: `<bdf>/infiniband/<name>` and its class
/// entries (`uverbs<n>`, `umad<n>`, `issm<n>`), and `/dev/infiniband/rdma_cm`.
#[cfg(test)]
pub(crate) fn fake(root: &Path, addr: &str, name: &str, n: u32) {
    fs::create_dir_all(
        root.join("sys/bus/pci/devices")
            .join(addr)
            .join("infiniband")
            .join(name),
    )
    .unwrap();
    for (class, entry) in [
        ("infiniband_verbs", format!("uverbs{n}")),
        ("infiniband_mad", format!("umad{n}")),
        ("infiniband_mad", format!("issm{n}")),
    ] {
        let d = root.join("sys/class").join(class).join(entry);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ibdev"), format!("{name}\n")).unwrap();
    }
    fs::create_dir_all(root.join("dev/infiniband")).unwrap();
    fs::write(root.join("dev/infiniband/rdma_cm"), "").unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdma_devices_and_their_char_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let sysfs = Sysfs::new(tmp.path());
        let a: PciAddress = "0000:3b:00.2".parse().unwrap();
        assert!(devices_of(&sysfs, a).is_empty());
        fake(tmp.path(), "0000:3b:00.2", "mlx5_2", 2);
        // Another device's entries are not this one's.
        fake(tmp.path(), "0000:3b:00.3", "mlx5_3", 3);
        assert_eq!(devices_of(&sysfs, a), ["mlx5_2"]);
        assert_eq!(
            char_devices(&sysfs, "mlx5_2"),
            [
                "/dev/infiniband/issm2",
                "/dev/infiniband/umad2",
                "/dev/infiniband/uverbs2",
                "/dev/infiniband/rdma_cm"
            ]
        );
        assert_eq!(char_devices(&sysfs, "mlx5_9"), [RDMA_CM]);
    }
}
