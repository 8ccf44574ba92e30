//! Hugepage setup for the tests that start EAL: reserve 2 MiB pages through
//! `/proc/sys/vm/nr_hugepages` when too few are free, and mount hugetlbfs in a
//! temp dir. Needs root; without it the EAL tests skip with a message.

#![allow(dead_code)]

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const FREE_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// A hugetlbfs mount in a temp dir, unmounted on drop.
pub struct HugeDir {
    dir: tempfile::TempDir,
}

impl HugeDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for HugeDir {
    fn drop(&mut self) {
        let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
    }
}

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// `min_free` free 2 MiB pages and a hugetlbfs mount, or `None` (test skipped)
/// when not running as root.
pub fn hugepages(min_free: u64) -> Option<HugeDir> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: EAL tests need root to reserve hugepages and mount hugetlbfs");
        return None;
    }
    let free = read_u64(FREE_2M);
    if free < min_free {
        let nr = read_u64(NR_HUGEPAGES) + (min_free - free);
        std::fs::write(NR_HUGEPAGES, nr.to_string()).expect("write nr_hugepages");
        let free = read_u64(FREE_2M);
        assert!(
            free >= min_free,
            "only {free} free 2 MiB hugepages after asking for {nr} (memory fragmented?)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    mount(
        Some("nodev"),
        dir.path(),
        Some("hugetlbfs"),
        MsFlags::empty(),
        Some("pagesize=2M"),
    )
    .expect("mount hugetlbfs");
    Some(HugeDir { dir })
}

/// EAL arguments for a private, file-less EAL on one lcore with the given vdevs.
pub fn eal_args(huge: &HugeDir, prefix: &str, vdevs: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-l",
        "0",
        "--no-pci",
        "--in-memory",
        "--no-telemetry",
        "--log-level",
        "lib.eal:notice",
        "--huge-dir",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(huge.path().display().to_string());
    args.extend([
        "--file-prefix".to_owned(),
        // --in-memory shares nothing between processes, so a fixed prefix is
        // safe and leaves one empty /var/run/dpdk/<prefix> dir, not one per run.
        format!("dpdk-rs-{prefix}"),
    ]);
    for v in vdevs {
        args.extend(["--vdev".to_owned(), (*v).to_owned()]);
    }
    args
}
