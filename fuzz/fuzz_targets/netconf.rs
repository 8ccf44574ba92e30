#![no_main]
//! The netconf on stdin, as bytes: parsed, its common fields checked the
//! way every command (strict) and DEL (lenient) checks them, and planned
//! for ADD against a fake node. Never a panic; every refusal a known code
//! with a message; whatever is accepted stays within the rules.

use dpdk_cni::config::{self, Base, RawConf, RESERVED_NETWORK_NAMES};
use dpdk_cni::env::CniEnv;
use dpdk_cni::error::code;
use dpdk_cni::plan::{self, DeviceRef, Plan};
use fuzzkit::{
    assert_plain_file_path, expect_err, is_ifname, is_network_name, strictly_below, with_bed, Bed,
};
use ledger::DeviceType;
use libfuzzer_sys::fuzz_target;
use netlink::VlanProto;

fn env() -> CniEnv {
    CniEnv {
        container_id: "fuzz".into(),
        netns: "/var/run/netns/fuzz".into(),
        ifname: "net1".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "pod".into()),
        ],
        path: vec!["/opt/cni/bin".into()],
    }
}

fuzz_target!(|data: &[u8]| {
    let (raw, value) = match config::parse_raw(data) {
        Ok(r) => r,
        Err(e) => {
            expect_err(&e, &[code::DECODE, code::INVALID_NETCONF]);
            return;
        }
    };
    assert!(value.is_object());
    with_bed(|bed| {
        for strict in [true, false] {
            match config::base(&raw, &bed.node, strict) {
                Ok(b) => check_base(bed, &raw, &b, strict),
                Err(e) => expect_err(&e, &[code::INCOMPATIBLE_VERSION, code::INVALID_NETCONF]),
            }
        }
        match plan::plan(&raw, &env(), &bed.node) {
            Ok(p) => check_plan(bed, &raw, &p),
            Err(e) => expect_err(&e, &[code::INCOMPATIBLE_VERSION, code::INVALID_NETCONF]),
        }
    });
});

fn check_base(bed: &Bed, raw: &RawConf, b: &Base, strict: bool) {
    assert!(dpdk_cni::version::is_supported(&b.cni_version), "{b:?}");
    assert_eq!(raw.cni_version.as_deref(), Some(b.cni_version.as_str()));
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

fn check_plan(bed: &Bed, raw: &RawConf, p: &Plan) {
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
            assert_eq!(p.device_type, DeviceType::Macvlan);
            assert!(is_ifname(m), "macvlan master {m:?}");
        }
        DeviceRef::PfVf { master, .. } => {
            assert_ne!(p.device_type, DeviceType::Macvlan);
            assert!(is_ifname(master), "master {master:?}");
        }
        DeviceRef::Pci(_) => assert_ne!(p.device_type, DeviceType::Macvlan),
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
        assert!((68..=65535).contains(&m), "mtu {m}");
        assert!(p.device_type != DeviceType::VfioPci || p.fallback, "{p:?}");
    }
    if p.pf_only {
        assert!(p.vf.is_empty(), "pfOnly with VF settings: {:?}", p.vf);
    }
    if p.allowed_devices.is_some() {
        assert!(p.pf_only, "allowedDevices without pfOnly");
    }
    if p.fallback {
        assert_eq!(p.device_type, DeviceType::VfioPci);
    }
}
