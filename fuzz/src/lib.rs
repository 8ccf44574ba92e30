//! What the fuzz targets share: a small fake node made once per process,
//! the CNI error codes the plugin may answer with, and checks written
//! apart from the plugin's own (an invariant checked with the code under
//! test proves nothing).

use std::path::{Component, Path, PathBuf};

use dpdk_cni::config::{Base, RawConf, RESERVED_NETWORK_NAMES};
use dpdk_cni::error::{code, CniError};
use dpdk_cni::node::{NetlinkFactory, Node};
use dpdk_cni::plan::{DeviceRef, Plan};
use ledger::DeviceType;
use netlink::VlanProto;
use vfio::fake::{FakeNode, FakePf};

/// Every code the plugin defines.
pub const ALL_CODES: &[u32] = &[
    code::INCOMPATIBLE_VERSION,
    code::UNSUPPORTED_FIELD,
    code::UNKNOWN_CONTAINER,
    code::INVALID_ENV,
    code::IO,
    code::DECODE,
    code::INVALID_NETCONF,
    code::TRY_AGAIN,
    code::NOT_AVAILABLE,
    code::DEVICE_NOT_FOUND,
    code::DEVICE_BUSY,
    code::VFIO_UNAVAILABLE,
    code::BIND_FAILED,
    code::VF_SETTING_REFUSED,
    code::IPAM_FAILED,
    code::MISSING_CAPABILITY,
    code::CHECK_FAILED,
    code::NOT_ALLOCATED,
    code::INJECTED,
];

/// Asserts `e` is an error the plugin may print for input it refuses: a
/// known code, one of `expected`, with a message, and the JSON the
/// runtime reads carries both.
#[track_caller]
pub fn expect_err(e: &CniError, expected: &[u32]) {
    assert!(
        ALL_CODES.contains(&e.code),
        "unknown CNI code {}: {e:?}",
        e.code
    );
    assert!(
        expected.contains(&e.code),
        "code {} where one of {expected:?} was expected: {e:?}",
        e.code
    );
    assert!(
        !e.msg.trim().is_empty(),
        "an error without a message: {e:?}"
    );
    let j = e.to_json("1.1.0");
    assert_eq!(j["code"].as_u64(), Some(u64::from(e.code)), "{j}");
    assert_eq!(j["msg"].as_str(), Some(e.msg.as_str()), "{j}");
}

/// A fake node: one PF (`0000:01:00.0`, `ens1f0`) with two VFs, the
/// device-info directory, and the default settings (logs under `/var/log`
/// and `/tmp`, all below the tree's root).
pub struct Bed {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub fake: FakeNode,
    pub pf: FakePf,
    pub node: Node,
}

impl Bed {
    pub fn new() -> Bed {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let root = tmp.path().join("node");
        let fake = FakeNode::new(&root).expect("a fake node");
        let pf = fake
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 10)
            .expect("a fake PF");
        std::fs::create_dir_all(root.join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)).unwrap();
        let no_netlink: NetlinkFactory = Box::new(|| {
            Err::<Box<dyn netlink::VfNetlink>, _>(std::io::Error::other(
                "no netlink in the fuzz targets",
            ))
        });
        let node = Node::new(vfio::fake::emulated(&root), &root, no_netlink);
        Bed {
            _tmp: tmp,
            root,
            fake,
            pf,
            node,
        }
    }

    /// The device-info directory, resolved.
    pub fn devinfo_dir(&self) -> PathBuf {
        real(&self.root.join(dpdk_cni::paths::DEVINFO_DIR))
    }

    /// The log directories, resolved (made if missing, as the plugin does).
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.node
            .settings
            .log_dirs
            .iter()
            .map(|d| real(d))
            .collect()
    }
}

impl Default for Bed {
    fn default() -> Self {
        Bed::new()
    }
}

thread_local! {
    static BED: Bed = Bed::new();
}

/// Runs `f` on this process's fake node, made on first use.
pub fn with_bed<R>(f: impl FnOnce(&Bed) -> R) -> R {
    BED.with(f)
}

/// `d` with every symlink resolved; made first if missing.
pub fn real(d: &Path) -> PathBuf {
    std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
}

/// `p` is absolute, has no `.` or `..` part, and lies strictly below `dir`.
pub fn strictly_below(p: &Path, dir: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.starts_with(dir)
        && p != dir
}

/// `p` is absolute, has no `..` part, and lies below `dir` or is `dir`.
pub fn at_or_below(p: &Path, dir: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.starts_with(dir)
}

/// Asserts `p`'s directory exists and is its own resolved path (no
/// symlink left on the way), and `p`, if it exists, is a regular file.
#[track_caller]
pub fn assert_plain_file_path(p: &Path) {
    let parent = p
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", p.display()));
    let rp = parent
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: parent does not resolve: {e}", p.display()));
    assert_eq!(rp, parent, "{}: a symlink on the way", p.display());
    if let Ok(m) = std::fs::symlink_metadata(p) {
        assert!(
            m.file_type().is_file(),
            "{}: not a regular file",
            p.display()
        );
    }
}

/// A Linux interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:`,
/// white space or NUL.
pub fn is_ifname(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// A kernel driver name as the ledger accepts it: `[a-z0-9_-]+`.
pub fn is_driver(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A CNI network name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn is_network_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A container ID as a file name: `[A-Za-z0-9_.-]{1,256}`, not `.` or `..`.
pub fn is_container_id(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// What every command may rely on once the common fields are accepted.
pub fn check_base(bed: &Bed, raw: &RawConf, b: &Base, strict: bool) {
    assert!(dpdk_cni::version::is_supported(&b.cni_version), "{b:?}");
    // No cniVersion (or the empty one libcni passes) reads as 0.1.0.
    let named = raw.cni_version.as_deref().filter(|v| !v.is_empty());
    assert_eq!(named.unwrap_or(dpdk_cni::version::IMPLICIT), b.cni_version);
    assert!(is_network_name(&b.name), "network name {:?}", b.name);
    assert!(
        !RESERVED_NETWORK_NAMES.contains(&b.name.as_str()),
        "{:?}",
        b.name
    );
    // The state directory is the node's whatever the netconf says.
    assert_eq!(b.state_dir, bed.node.settings.state_dir);
    if strict {
        assert!(
            raw.state_dir.is_none(),
            "stateDir accepted: {:?}",
            raw.state_dir
        );
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        assert_eq!(raw.log_file.is_some(), b.log_file.is_some());
    }
    if let Some(f) = &b.log_file {
        let dirs = bed.log_dirs();
        assert!(
            dirs.iter().any(|d| strictly_below(f, d)),
            "logFile {:?} became {} outside {dirs:?}",
            raw.log_file,
            f.display()
        );
        assert_plain_file_path(f);
    }
    if let Some(ipam) = &b.ipam {
        let t = ipam["type"].as_str().expect("an ipam type");
        assert!(
            !t.is_empty() && !t.contains('/') && t != "." && t != "..",
            "ipam type {t:?}"
        );
    }
}

/// What an accepted ADD plan may hold, whatever the netconf said.
pub fn check_plan(bed: &Bed, raw: &RawConf, p: &Plan) {
    check_base(bed, raw, &p.base, true);
    let asked = raw
        .runtime_config
        .as_ref()
        .and_then(|r| r.device_info_file.as_ref());
    assert_eq!(asked.is_some(), p.device_info_file.is_some());
    if let Some(f) = &p.device_info_file {
        let dir = bed.devinfo_dir();
        assert!(
            strictly_below(f, &dir),
            "CNIDeviceInfoFile {asked:?} became {} outside {}",
            f.display(),
            dir.display()
        );
        assert_plain_file_path(f);
    }
    match &p.device {
        DeviceRef::Master(m) => {
            assert_eq!(p.device_type, Some(DeviceType::Macvlan));
            assert!(is_ifname(m), "macvlan master {m:?}");
        }
        DeviceRef::PfVf { master, .. } => {
            assert_ne!(p.device_type, Some(DeviceType::Macvlan));
            assert!(is_ifname(master), "master {master:?}");
        }
        DeviceRef::Pci(_) => assert_ne!(p.device_type, Some(DeviceType::Macvlan)),
    }
    if let Some(v) = p.vf.vlan {
        assert!(v.id <= 4094, "{v:?}");
        assert!(v.qos <= 7, "{v:?}");
        if v.id == 0 {
            assert!(v.qos == 0 && v.proto == VlanProto::Dot1Q, "{v:?}");
        }
    }
    if let Some(r) = p.vf.rate {
        assert!(r.max == 0 || r.min <= r.max, "{r:?}");
    }
    if let Some(m) = p.vf.mac {
        assert!(m.0[0] & 1 == 0 && m.0 != [0; 6], "MAC {m:?}");
    }
    if let Some(m) = p.mtu {
        // Accepted in every mode (vfio-pci leaves it to the DPDK application).
        assert!((68..=65535).contains(&m), "mtu {m}");
    }
    if p.pf_only {
        assert!(p.vf.is_empty(), "pfOnly with VF settings: {:?}", p.vf);
    }
    if p.allowed_devices.is_some() {
        assert!(p.pf_only, "allowedDevices without pfOnly");
    }
    if p.fallback {
        assert_eq!(p.device_type, Some(DeviceType::VfioPci));
    }
}
