//! What to set up on the node's PFs: `sriov_numvfs`, and VF MACs and
//! spoofchk through the PF.

use serde::Deserialize;

/// What to set up on the node's PFs at start and on every reload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSetup {
    #[serde(default)]
    pub pfs: Vec<PfSetup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PfSetup {
    /// The PF's netdev name, or:
    #[serde(default)]
    pub pf_name: Option<String>,
    /// its PCI address.
    #[serde(default)]
    pub pci_address: Option<String>,
    /// `sriov_numvfs` to have.
    #[serde(default)]
    pub num_vfs: Option<u32>,
    #[serde(default)]
    pub vfs: Vec<VfSetup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfSetup {
    pub index: u32,
    #[serde(default)]
    pub mac: Option<String>,
    /// "on" or "off".
    #[serde(default)]
    pub spoofchk: Option<String>,
}

impl NodeSetup {
    /// Checks each PF and VF entry; the message names what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for pf in &self.pfs {
            if pf.pf_name.is_none() == pf.pci_address.is_none() {
                return Err("nodeSetup: each PF needs exactly one of pfName and pciAddress".into());
            }
            for vf in &pf.vfs {
                if let Some(m) = &vf.mac {
                    m.parse::<netlink::MacAddr>()
                        .map_err(|e| format!("nodeSetup: VF {}: {e}", vf.index))?;
                }
                if let Some(s) = &vf.spoofchk {
                    if s != "on" && s != "off" {
                        return Err(format!(
                            "nodeSetup: VF {}: spoofchk {s:?} is not \"on\" or \"off\"",
                            vf.index
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
