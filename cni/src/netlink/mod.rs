//! VF admin state through the PF netdev: what `ip link set <pf> vf N ...`
//! does, over rtnetlink (`IFLA_VFINFO_LIST`, see
//! <https://docs.kernel.org/networking/netdevices.html> and
//! `include/uapi/linux/if_link.h`).
//!
//! The plugin talks to a [`VfNetlink`]; [`RtNetlink`] is the kernel,
//! [`RecordingNetlink`] a fake that keeps VF state in a file and logs every
//! call, for tests.

mod addr;
pub mod garp;
mod link;
pub mod netns;
mod record;
mod rtnl;
mod types;
mod vf_get;
mod vf_set;

pub use link::Link;
pub use record::RecordingNetlink;
pub use rtnl::RtNetlink;
pub use types::{LinkState, MacAddr, Rate, VfSettings, VfState, Vlan, VlanProto};
pub use vf_set::vf_set_message;

/// Errors of VF admin calls.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("network interface {0} not found")]
    NoSuchLink(String),
    #[error("{pf} reports no VF {vf} (it lists {count} VFs): is SR-IOV enabled on it?")]
    NoSuchVf { pf: String, vf: u32, count: usize },
    #[error("{pf} refused to set {what} on VF {vf}: {source}")]
    Refused {
        pf: String,
        vf: u32,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink request on {pf} failed: {msg}")]
    Other { pf: String, msg: String },
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// The VF admin operations the plugin needs, in the kernel's terms.
pub trait VfNetlink {
    /// The admin state the PF reports for VF `vf` (`ip link show <pf>`).
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState>;
    /// Equal to `ip link set <pf> vf <vf> mac <mac>`.
    fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<()>;
    /// Equal to `ip link set <pf> vf <vf> vlan <vlan> qos <qos> proto <proto>`.
    fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<()>;
    /// Equal to `ip link set <pf> vf <vf> spoofchk on|off`.
    fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<()>;
    /// Equal to `ip link set <pf> vf <vf> trust on|off`.
    fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<()>;
    /// Equal to `ip link set <pf> vf <vf> state auto|enable|disable`.
    fn set_vf_link_state(&mut self, pf: &str, vf: u32, state: LinkState) -> Result<()>;
    /// Equal to `ip link set <pf> vf <vf> min_tx_rate <min> max_tx_rate <max>` (Mbps).
    fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<()>;
}

/// Applies the configured settings one by one. On the first refusal, puts
/// back what was already changed and returns that refusal.
pub fn apply_vf_settings(
    nl: &mut dyn VfNetlink,
    pf: &str,
    vf: u32,
    want: &VfSettings,
    original: &VfState,
) -> Result<()> {
    let mut done = VfSettings::default();
    let res = (|| {
        if let Some(mac) = want.mac {
            nl.set_vf_mac(pf, vf, mac)?;
            done.mac = Some(mac);
        }
        if let Some(v) = want.vlan {
            nl.set_vf_vlan(pf, vf, v.id, v.qos, v.proto)?;
            done.vlan = Some(v);
        }
        if let Some(on) = want.spoofchk {
            nl.set_vf_spoofchk(pf, vf, on)?;
            done.spoofchk = Some(on);
        }
        if let Some(on) = want.trust {
            nl.set_vf_trust(pf, vf, on)?;
            done.trust = Some(on);
        }
        if let Some(s) = want.link_state {
            nl.set_vf_link_state(pf, vf, s)?;
            done.link_state = Some(s);
        }
        if let Some(r) = want.rate {
            nl.set_vf_rate(pf, vf, r.min, r.max)?;
            done.rate = Some(r);
        }
        Ok(())
    })();
    if res.is_err() {
        // Best effort: the refusal is the error worth reporting.
        let _ = restore_vf_settings(nl, pf, vf, &done, original);
    }
    res
}

/// Puts every field named in `touched` back to its value in `original`,
/// skipping fields that already have it. Carries on past failures and
/// returns the first.
pub fn restore_vf_settings(
    nl: &mut dyn VfNetlink,
    pf: &str,
    vf: u32,
    touched: &VfSettings,
    original: &VfState,
) -> Result<()> {
    let now = nl.vf_state(pf, vf)?;
    let mut first: Option<NetlinkError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if touched.mac.is_some() && now.mac != original.mac {
        note(nl.set_vf_mac(pf, vf, original.mac));
    }
    if touched.vlan.is_some()
        && (now.vlan, now.qos, now.proto) != (original.vlan, original.qos, original.proto)
    {
        note(nl.set_vf_vlan(pf, vf, original.vlan, original.qos, original.proto));
    }
    if let (Some(_), Some(orig)) = (touched.spoofchk, original.spoofchk) {
        if now.spoofchk != Some(orig) {
            note(nl.set_vf_spoofchk(pf, vf, orig));
        }
    }
    if let (Some(_), Some(orig)) = (touched.trust, original.trust) {
        if now.trust != Some(orig) {
            note(nl.set_vf_trust(pf, vf, orig));
        }
    }
    if touched.link_state.is_some() && now.link_state != original.link_state {
        note(nl.set_vf_link_state(pf, vf, original.link_state));
    }
    if touched.rate.is_some()
        && (now.min_tx_rate, now.max_tx_rate) != (original.min_tx_rate, original.max_tx_rate)
    {
        note(nl.set_vf_rate(pf, vf, original.min_tx_rate, original.max_tx_rate));
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The settings in `want` that `now` does not have, described for a message.
pub fn vf_drift(want: &VfSettings, now: &VfState) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = want.mac {
        if now.mac != m {
            out.push(format!("mac is {} instead of {m}", now.mac));
        }
    }
    if let Some(v) = want.vlan {
        if (now.vlan, now.qos, now.proto) != (v.id, v.qos, v.proto) {
            out.push(format!(
                "vlan is {} qos {} proto {} instead of {} qos {} proto {}",
                now.vlan, now.qos, now.proto, v.id, v.qos, v.proto
            ));
        }
    }
    if let Some(on) = want.spoofchk {
        if now.spoofchk != Some(on) {
            out.push(format!(
                "spoofchk is {} instead of {}",
                onoff(now.spoofchk),
                onoff(Some(on))
            ));
        }
    }
    if let Some(on) = want.trust {
        if now.trust != Some(on) {
            out.push(format!(
                "trust is {} instead of {}",
                onoff(now.trust),
                onoff(Some(on))
            ));
        }
    }
    if let Some(s) = want.link_state {
        if now.link_state != s {
            out.push(format!("link_state is {} instead of {s}", now.link_state));
        }
    }
    if let Some(r) = want.rate {
        if (now.min_tx_rate, now.max_tx_rate) != (r.min, r.max) {
            out.push(format!(
                "tx rates are {}/{} Mbps instead of {}/{}",
                now.min_tx_rate, now.max_tx_rate, r.min, r.max
            ));
        }
    }
    out
}

fn onoff(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    }
}
