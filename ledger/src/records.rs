//! What the state directory holds, typed. The JSON keeps the strings the
//! records have always had on disk, so records written before still read.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use netlink::{Link, VfSettings, VfState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use vfio::{IommuMode, PciAddress};

/// Whether ADD finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Recorded before the first change: any of ADD's changes may have been made.
    Pending,
    /// ADD finished.
    Complete,
}

/// How a device reaches the pod (`deviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceType {
    /// Rebound to vfio-pci, for a DPDK application in user space.
    VfioPci,
    /// The kernel netdev moved into the pod's namespace.
    Netdevice,
    /// A macvlan on `master`, for nodes with no SR-IOV.
    Macvlan,
    /// Left on the user-space driver it was found on (igb_uio,
    /// uio_pci_generic); only its VF admin state is set.
    Userspace,
}

impl DeviceType {
    /// The netconf's (and the record's) name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::VfioPci => "vfio-pci",
            DeviceType::Netdevice => "netdevice",
            DeviceType::Macvlan => "macvlan",
            DeviceType::Userspace => "userspace",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an attachment holds: a PCI function, or (macvlan) the host
/// interface its link was made on. On disk, the address or the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceId {
    Pci(PciAddress),
    Netdev(String),
}

impl DeviceId {
    /// The PCI address, for a device that is one.
    pub fn pci(&self) -> Option<PciAddress> {
        match self {
            DeviceId::Pci(a) => Some(*a),
            DeviceId::Netdev(_) => None,
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Pci(a) => a.fmt(f),
            DeviceId::Netdev(n) => f.write_str(n),
        }
    }
}

impl FromStr for DeviceId {
    type Err = std::convert::Infallible;

    /// An interface name can hold no `:`, so nothing that parses as a PCI
    /// address is one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<PciAddress>() {
            Ok(a) => DeviceId::Pci(a),
            Err(_) => DeviceId::Netdev(s.to_string()),
        })
    }
}

impl From<PciAddress> for DeviceId {
    fn from(a: PciAddress) -> Self {
        DeviceId::Pci(a)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {}))
    }
}

/// `iommuMode`: `"iommu"`, `"noiommu"`, or `""` where no IOMMU is involved.
mod iommu_mode {
    use super::*;

    pub fn serialize<S: Serializer>(m: &Option<IommuMode>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.map(IommuMode::as_str).unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IommuMode>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        IommuMode::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&s)).map(Some)
    }
}

/// The version of the record format this build writes. Records without a
/// version were written before it was kept and read the same way.
pub const RECORD_VERSION: u32 = 1;

/// Everything needed to undo one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default)]
    pub version: u32,
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub cni_version: String,
    pub phase: Phase,
    pub device_type: DeviceType,
    /// The PCI address handed to the pod (macvlan: the master's name).
    pub device: DeviceId,
    pub pf: Option<PciAddress>,
    pub pf_ifname: Option<String>,
    pub vf_index: Option<u32>,
    pub iommu_group: Option<u32>,
    #[serde(with = "iommu_mode", default)]
    pub iommu_mode: Option<IommuMode>,
    pub vfio_device: Option<PathBuf>,
    pub numa_node: Option<u32>,
    pub original_driver: Option<String>,
    pub original_override: Option<String>,
    pub original_netdevs: Vec<String>,
    pub original_vf: Option<VfState>,
    pub vf_settings: VfSettings,
    pub device_info_file: Option<PathBuf>,
    /// ADD wrote (or was about to write) the device-info file; only then
    /// does undoing it remove the file.
    #[serde(default)]
    pub device_info_written: bool,
    pub ipam: Option<Value>,
    pub result: Option<Value>,
    /// Kernel modes: the netdev as it was in the host namespace.
    #[serde(default)]
    pub original_link: Option<OriginalLink>,
    /// Macvlan mode: the name the link was created under in the host namespace.
    #[serde(default)]
    pub macvlan_name: Option<String>,
    /// Why vfio-pci was not used, when the netdevice fallback served the ADD.
    #[serde(default)]
    pub fallback_reason: Option<String>,
    /// Netdevice mode: the PF held the original admin MAC as an
    /// administrative pin (the VF driver was refused a new MAC), so ADD
    /// cleared it first and DEL sets it again after the netdev's MAC.
    #[serde(default)]
    pub admin_mac_pinned: bool,
    /// vfio-pci mode: before ADD the VF driver could choose its own MAC (no
    /// administrative pin), so DEL unpins the original MAC it sets back.
    #[serde(default)]
    pub admin_mac_driver_chosen: bool,
    /// vfio-pci mode: the MAC of the VF's netdev before ADD, which a VF
    /// driver that chose its own gets back at DEL (it picks a new one when
    /// it probes again).
    #[serde(default)]
    pub original_netdev_mac: Option<String>,
    /// A NAD's attachment of a device a ResourceClaim holds (the pod's own
    /// claim, handed over by Multus): the claim's UID. The claim keeps the
    /// device; DEL puts back what this ADD changed and leaves the rest to
    /// the claim's Unprepare.
    #[serde(default)]
    pub dra_claim: Option<String>,
}

/// A kernel driver name as sysfs shows it.
fn valid_driver(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:`, white space or NUL.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c == 0)
}

/// A path with no `..` (and absolute) that starts with `dir`.
fn inside(p: &std::path::Path, dir: &std::path::Path) -> bool {
    p.is_absolute()
        && p.starts_with(dir)
        && !p
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

impl Attachment {
    /// Checks every field a teardown acts on: a record is input too (the
    /// state directory is root's, but a record may be truncated, edited or
    /// from another version). `devinfo_dir` is where device-info files may
    /// be. `Err` names the first field that fails.
    pub fn validate(&self, devinfo_dir: &std::path::Path) -> Result<(), String> {
        if self.version > RECORD_VERSION {
            return Err(format!(
                "version {} is newer than this plugin's {RECORD_VERSION}",
                self.version
            ));
        }
        if !valid_ifname(&self.ifname) {
            return Err(format!("ifname {:?}", self.ifname));
        }
        if let Some(m) = &self.original_netdev_mac {
            let ok = m.len() == 17
                && m.split(':').count() == 6
                && m.split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                return Err(format!("original_netdev_mac {m:?}"));
            }
        }
        for d in [&self.original_driver, &self.original_override]
            .into_iter()
            .flatten()
        {
            if !valid_driver(d) {
                return Err(format!("driver {d:?}"));
            }
        }
        let names = self
            .pf_ifname
            .iter()
            .chain(&self.original_netdevs)
            .chain(&self.macvlan_name)
            .chain(self.original_link.as_ref().map(|l| &l.name));
        for n in names {
            if !valid_ifname(n) {
                return Err(format!("interface name {n:?}"));
            }
        }
        match (&self.device_type, &self.device) {
            (DeviceType::Macvlan, DeviceId::Netdev(n)) if valid_ifname(n) => {}
            (DeviceType::Macvlan, d) => return Err(format!("macvlan master {d}")),
            (_, DeviceId::Pci(_)) => {}
            (t, d) => return Err(format!("device {d} of a {t} attachment")),
        }
        if self.vf_index.is_some() != self.pf.is_some() {
            return Err("a VF index without its PF, or a PF without the VF index".into());
        }
        if let Some(p) = &self.device_info_file {
            if !inside(p, devinfo_dir) {
                return Err(format!("device-info file {}", p.display()));
            }
        }
        if let Some(p) = &self.vfio_device {
            if !inside(p, std::path::Path::new("/dev/vfio")) {
                return Err(format!("vfio device {}", p.display()));
            }
        }
        Ok(())
    }

    /// The claim this attachment makes on its device.
    pub fn claim(&self) -> Claim {
        Claim {
            network: self.network.clone(),
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// A netdev's name, MAC, MTU and state before ADD moved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalLink {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: u32,
    pub up: bool,
}

impl From<Link> for OriginalLink {
    fn from(l: Link) -> Self {
        OriginalLink {
            name: l.name,
            mac: l.mac.map(|m| m.to_string()),
            mtu: l.mtu,
            up: l.up,
        }
    }
}

/// Who holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl Claim {
    /// The ResourceClaim UID of a claim the DRA driver made.
    pub fn dra_claim(&self) -> Option<&str> {
        (self.network == crate::DRA_NETWORK)
            .then(|| self.container_id.strip_prefix("claim-"))
            .flatten()
    }
}

/// A ResourceClaim the DRA driver prepared: which pods may use its devices
/// (its `status.reservedFor` when it was prepared). A NAD's ADD for one of
/// them (Multus hands it the claim's device) is let through for these pods
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraClaim {
    pub namespace: String,
    pub name: String,
    /// The UIDs of the pods the claim is reserved for.
    pub pods: Vec<String>,
}

/// A device the node daemon bound to vfio-pci before any ADD (no-IOMMU mode:
/// the group exists only once vfio-pci holds the device): the driver it had,
/// which ADD records as the original and DEL restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prebound {
    pub driver: Option<String>,
    pub driver_override: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_and_modes_keep_their_strings() {
        let pci: DeviceId = "0000:01:10.0".parse().unwrap();
        assert_eq!(pci.pci(), Some("0000:01:10.0".parse().unwrap()));
        assert_eq!(serde_json::to_string(&pci).unwrap(), "\"0000:01:10.0\"");
        let master: DeviceId = "eth0".parse().unwrap();
        assert_eq!(master, DeviceId::Netdev("eth0".into()));
        assert_eq!(
            serde_json::to_string(&DeviceType::VfioPci).unwrap(),
            "\"vfio-pci\""
        );
        assert_eq!(
            serde_json::from_str::<DeviceType>("\"netdevice\"").unwrap(),
            DeviceType::Netdevice
        );
    }
}
