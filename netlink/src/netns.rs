//! Running netlink work inside another network namespace.
//!
//! setns(2) with CLONE_NEWNET changes the calling thread only, so the work
//! runs on a thread of its own that enters the namespace first; a netlink
//! socket opened there belongs to that namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

/// Runs `f` on a thread that has entered the network namespace at `path`
/// (e.g. `/var/run/netns/<name>` or `/proc/<pid>/ns/net`).
pub fn in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let ns = File::open(path)?;
    std::thread::spawn(move || -> std::io::Result<T> {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        Ok(f())
    })
    .join()
    .map_err(|_| std::io::Error::other("the netns worker thread panicked"))?
}
