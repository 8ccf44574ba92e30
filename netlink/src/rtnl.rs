use futures::TryStreamExt;
use rtnetlink::Handle;
use tokio::runtime::Runtime;

use crate::error::{NetlinkError, Result};

/// The kernel's rtnetlink, on a socket in the caller's network namespace.
pub struct RtNetlink {
    rt: Runtime,
    handle: Handle,
}

impl std::fmt::Debug for RtNetlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtNetlink")
    }
}

impl RtNetlink {
    /// Opens a NETLINK_ROUTE socket served by a single-threaded runtime.
    pub fn connect() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            Ok::<_, std::io::Error>(handle)
        })?;
        Ok(RtNetlink { rt, handle })
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The ifindex of `name`.
    pub(crate) fn link_index(&self, name: &str) -> Result<u32> {
        let handle = self.handle.clone();
        let name_owned = name.to_string();
        self.rt.block_on(async move {
            let mut links = handle.link().get().match_name(name_owned.clone()).execute();
            match links.try_next().await {
                Ok(Some(msg)) => Ok(msg.header.index),
                Ok(None) => Err(NetlinkError::NoSuchLink(name_owned)),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                    Err(NetlinkError::NoSuchLink(name_owned))
                }
                Err(e) => Err(NetlinkError::Other {
                    pf: name_owned,
                    msg: e.to_string(),
                }),
            }
        })
    }
}

pub(crate) fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}
