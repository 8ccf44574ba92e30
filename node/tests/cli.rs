//! `status` and `install-cni` as an operator and the init container run them.

mod common;

use std::fs;
use std::process::Command;

use ledger::{Claim, Ledger};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dpdk-cni-node"))
}

#[test]
fn status_table_from_a_fake_node() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = common::two_pf_node(&root, 2);
    let cfg = tmp.path().join("config.json");
    fs::write(
        &cfg,
        r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens2f0"]}}]}"#,
    )
    .unwrap();
    let state = tmp.path().join("state");
    let claim = Claim {
        network: "dpdk-net".into(),
        container_id: "f00dcafe0123456789".into(),
        ifname: "net1".into(),
    };
    Ledger::new(&state)
        .set_claim("0000:81:10.2".parse().unwrap(), &claim)
        .unwrap();
    let out = bin()
        .arg("--sysfs-root")
        .arg(&root)
        .arg("status")
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout).unwrap();
    print!("{t}");
    let row = t.lines().find(|l| l.starts_with("0000:81:10.2")).unwrap();
    for want in [
        "0000:81:00.0",
        "ens2f0v1",
        "igbvf",
        "1002",
        "intel.com/vf",
        "dpdk-net f00dcafe0123/net1",
    ] {
        assert!(row.contains(want), "{want} not in {row:?}");
    }
    let row = t.lines().find(|l| l.starts_with("0000:01:10.0")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[cols.len() - 2..],
        ["-", "-"],
        "no pool, no holder: {row:?}"
    );
    assert!(
        t.ends_with("4 VFs, 1 held by pods, 1 free in pools\n"),
        "{t}"
    );
}

/// ETXTBSY, "text file busy".
fn libc_etxtbsy() -> i32 {
    26
}

#[test]
fn install_cni_copies_next_to_itself_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    // The image layout: both binaries in one directory.
    let img = tmp.path().join("usr/bin");
    fs::create_dir_all(&img).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_dpdk-cni-node"),
        img.join("dpdk-cni-node"),
    )
    .unwrap();
    fs::write(img.join("dpdk-cni"), b"#!/bin/sh\necho plugin\n").unwrap();
    let to = tmp.path().join("host/opt/cni/bin");
    // A test running beside this one may fork while the copy's file is
    // still open for writing in this process: the child holds it until its
    // exec, and exec of the copy meanwhile fails with ETXTBSY. Try again.
    let mut tries = 0;
    let out = loop {
        match Command::new(img.join("dpdk-cni-node"))
            .args(["install-cni", "--to"])
            .arg(&to)
            .output()
        {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(to.join("dpdk-cni")).unwrap(),
        b"#!/bin/sh\necho plugin\n"
    );
    // Missing source: a clear failure, nothing installed.
    let empty = tmp.path().join("empty");
    let out = bin()
        .args(["install-cni", "--from"])
        .arg(tmp.path().join("nope"))
        .arg("--to")
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    assert_eq!(fs::read_dir(&empty).map(|d| d.count()).unwrap_or(0), 0);
}
