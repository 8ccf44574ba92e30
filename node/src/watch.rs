//! Directory change notification with inotify(7), on the tokio reactor.
//!
//! Used for regular filesystems only: the config file's directory (a
//! ConfigMap volume swaps a `..data` symlink), the CNI ledger's `devices/`
//! directory and the kubelet's device-plugins directory. sysfs attributes
//! do not raise inotify events, so device health is polled instead.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::{NodeError, Result};

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Watches a few directories; each reports events under a tag.
pub struct DirWatcher<T> {
    fd: AsyncFd<Fd>,
    tags: HashMap<WatchDescriptor, T>,
}

impl<T> std::fmt::Debug for DirWatcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("watches", &self.tags.len())
            .finish()
    }
}

impl<T: Clone> DirWatcher<T> {
    pub fn new() -> Result<Self> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| NodeError::read("inotify")(e.into()))?;
        // SAFETY: the inotify fd is owned by `Fd`, which the AsyncFd owns
        // from here on; nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(ino), Interest::READABLE) }
            .map_err(|e| NodeError::read("inotify")(e.into()))?;
        Ok(DirWatcher {
            fd,
            tags: HashMap::new(),
        })
    }

    /// Reports creations, deletions, renames and finished writes in `dir`.
    pub fn watch(&mut self, dir: &Path, tag: T) -> Result<()> {
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB;
        let wd = self
            .fd
            .get_ref()
            .0
            .add_watch(dir, flags)
            .map_err(|e| NodeError::read(dir)(e.into()))?;
        self.tags.insert(wd, tag);
        Ok(())
    }

    /// The next batch of events as `(tag, file name)`.
    pub async fn next(&mut self) -> Result<Vec<(T, PathBuf)>> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(NodeError::read("inotify"))?;
            match guard.get_inner().0.read_events() {
                Ok(evs) => {
                    return Ok(evs
                        .into_iter()
                        .filter_map(|e| {
                            let tag = self.tags.get(&e.wd)?.clone();
                            Some((tag, e.name.map(PathBuf::from).unwrap_or_default()))
                        })
                        .collect())
                }
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(NodeError::read("inotify")(e.into())),
            }
        }
    }
}
