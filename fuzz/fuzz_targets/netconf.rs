#![no_main]
//! The netconf on stdin, as bytes: parsed, its common fields checked the
//! way every command (strict) and DEL (lenient) checks them, and planned
//! for ADD against a fake node. Never a panic; every refusal a known code
//! with a message; whatever is accepted stays within the rules.

use dpdk_cni::config;
use dpdk_cni::env::CniEnv;
use dpdk_cni::error::code;
use dpdk_cni::plan;
use fuzzkit::{check_base, check_plan, expect_err, with_bed};
use libfuzzer_sys::fuzz_target;

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
