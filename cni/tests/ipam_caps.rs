//! IPAM delegated to Debian's real `host-local` and `static` plugins, and the
//! capability check, run as the kernel enforces it (setpriv).

mod common;

use common::{assert_same, Bed};
use serde_json::json;

const CNI_BIN: &str = "/usr/lib/cni";

fn have_plugins() -> bool {
    let ok = std::path::Path::new(CNI_BIN).join("host-local").exists();
    if !ok && std::env::var_os("CI").is_some() {
        panic!("containernetworking-plugins is not installed; make test installs it");
    }
    ok
}

#[test]
fn host_local_addresses_are_reported_and_released() {
    if !have_plugins() {
        eprintln!(
            "skipped: {CNI_BIN}/host-local missing (apt-get install containernetworking-plugins)"
        );
        return;
    }
    for version in ["1.1.0", "1.0.0", "0.4.0", "0.3.1"] {
        let bed = Bed::new(2);
        let data = bed.tmp.path().join("ipam");
        let conf = bed.conf(
            0,
            json!({"cniVersion": version, "ipam": {"type": "host-local", "dataDir": data,
                   "ranges": [[{"subnet": "10.56.217.0/24", "gateway": "10.56.217.1"}]],
                   "routes": [{"dst": "0.0.0.0/0"}]}}),
        );
        let before = bed.state();
        let out = bed.run("ADD", "pod", &conf);
        assert!(out.ok(), "{version}: {out:?}");
        let res = out.json.unwrap();
        assert_eq!(res["cniVersion"], version);
        assert_eq!(
            res["ips"][0]["address"], "10.56.217.2/24",
            "{version}: {res}"
        );
        assert_eq!(res["ips"][0]["gateway"], "10.56.217.1");
        assert_eq!(res["ips"][0]["interface"], 0);
        assert_eq!(res["routes"][0]["dst"], "0.0.0.0/0");
        let lease = data.join("sriov-dpdk/10.56.217.2");
        assert!(
            lease.exists(),
            "host-local keeps no lease at {}",
            lease.display()
        );
        assert!(bed.run("CHECK", "pod", &conf).ok() || version == "0.3.1");
        assert!(bed.run("DEL", "pod", &conf).ok());
        assert!(!lease.exists(), "{version}: lease not released");
        assert_same(&before, &bed.state());
    }
}

#[test]
fn static_ipam_and_gc_releases_through_ipam_too() {
    if !have_plugins() {
        return;
    }
    let bed = Bed::new(2);
    let data = bed.tmp.path().join("ipam");
    let conf = bed.conf(
        1,
        json!({"ipam": {"type": "host-local", "dataDir": data, "ranges": [[{"subnet": "192.168.77.0/24"}]]}}),
    );
    assert!(bed.run("ADD", "pod", &conf).ok());
    let lease = data.join("sriov-dpdk/192.168.77.2");
    assert!(lease.exists());
    let gc = bed.run(
        "GC",
        "",
        &bed.conf(1, json!({"cni.dev/valid-attachments": []})),
    );
    assert!(gc.ok(), "{gc:?}");
    assert!(!lease.exists(), "GC did not release the IPAM lease");

    let st = bed.conf(
        0,
        json!({"ipam": {"type": "static", "addresses": [{"address": "10.10.0.5/24"}]}}),
    );
    let out = bed.run("ADD", "pod2", &st);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.json.unwrap()["ips"][0]["address"], "10.10.0.5/24");
    assert!(bed.run("DEL", "pod2", &st).ok());
}

#[test]
fn an_ipam_failure_fails_add_and_changes_nothing() {
    if !have_plugins() {
        return;
    }
    let bed = Bed::new(1);
    let before = bed.state();
    // host-local refuses a range without a subnet.
    let conf = bed.conf(
        0,
        json!({"vlan": 3, "ipam": {"type": "host-local", "ranges": [[{}]]}}),
    );
    let out = bed.run("ADD", "pod", &conf);
    assert_eq!(out.err_code(), 105, "{out:?}");
    assert!(out.msg().contains("host-local"), "{}", out.msg());
    assert_same(&before, &bed.state());
}

#[test]
fn missing_capabilities_are_named() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to drop capabilities");
        return;
    }
    let bed = Bed::new(1);
    let before = bed.state();
    for (drop, name) in [
        ("-net_admin", "CAP_NET_ADMIN"),
        ("-sys_admin", "CAP_SYS_ADMIN"),
    ] {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set", drop, "--inh-caps", drop, &common::bin()]);
        let inner = bed.command("ADD", "pod", "net1", &[]);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let out = common::run_process(c, bed.conf(0, json!({})).to_string().as_bytes());
        assert_eq!(out.err_code(), 106, "{out:?}");
        assert!(out.msg().contains(name), "{}", out.msg());
        assert_same(&before, &bed.state());
    }
}
