use futures::TryStreamExt;
use rtnetlink::Handle;
use tokio::runtime::Runtime;

use super::{LinkState, MacAddr, NetlinkError, Result, VfNetlink, VfState, VlanProto};

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

    pub(super) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The ifindex of `name`.
    pub(super) fn link_index(&self, name: &str) -> Result<u32> {
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

pub(super) fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// Turns an rtnetlink error for a VF call into ours, keeping the errno.
pub(super) fn refused(pf: &str, vf: u32, what: String, e: rtnetlink::Error) -> NetlinkError {
    match e {
        rtnetlink::Error::NetlinkError(msg) => NetlinkError::Refused {
            pf: pf.to_string(),
            vf,
            what,
            source: std::io::Error::from_raw_os_error(-msg.raw_code()),
        },
        other => NetlinkError::Other {
            pf: pf.to_string(),
            msg: other.to_string(),
        },
    }
}

impl VfNetlink for RtNetlink {
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState> {
        super::vf_get::vf_state(self, pf, vf)
    }
    fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<()> {
        super::vf_set::set_vf_mac(self, pf, vf, mac)
    }
    fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<()> {
        super::vf_set::set_vf_vlan(self, pf, vf, vlan, qos, proto)
    }
    fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        super::vf_set::set_vf_spoofchk(self, pf, vf, on)
    }
    fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        super::vf_set::set_vf_trust(self, pf, vf, on)
    }
    fn set_vf_link_state(&mut self, pf: &str, vf: u32, state: LinkState) -> Result<()> {
        super::vf_set::set_vf_link_state(self, pf, vf, state)
    }
    fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<()> {
        super::vf_set::set_vf_rate(self, pf, vf, min, max)
    }
}
