//! Fault injection: the plugin killed (SIGKILL) after each step of ADD; DEL
//! or GC afterwards gives the device back exactly as it was. And two ADDs
//! racing for one device: exactly one wins.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{assert_same, Bed};
use dpdk_cni::failpoint::ADD_STEPS;
use serde_json::json;

fn settings() -> serde_json::Value {
    json!({"mac": "02:00:00:00:00:42", "vlan": 42, "vlanQoS": 1, "spoofchk": "off", "trust": "on"})
}

#[test]
fn killed_after_each_add_step_then_del_restores() {
    for step in ADD_STEPS {
        let bed = Bed::new(2);
        let before = bed.state();
        let conf = bed.conf(1, settings());
        let mut c = bed.command("ADD", "pod", "net1", &[("DPDK_CNI_FAILPOINT", step)]);
        let out = common::run_process(
            {
                c.env("DPDK_CNI_FAILPOINT", step);
                c
            },
            conf.to_string().as_bytes(),
        );
        assert_eq!(out.code, None, "{step}: the plugin was not killed: {out:?}");
        // Something was left behind by the crash for every step.
        assert_ne!(bed.state(), before, "{step}: nothing recorded");
        let del = bed.run("DEL", "pod", &conf);
        assert!(del.ok(), "{step}: {del:?}");
        assert_same(&before, &bed.state());
        assert_eq!(bed.driver(1).as_deref(), Some("igbvf"), "{step}");
    }
}

#[test]
fn killed_after_each_add_step_then_gc_restores() {
    for step in ADD_STEPS {
        let bed = Bed::new(2);
        let before = bed.state();
        let conf = bed.conf(0, settings());
        let mut c = bed.command("ADD", "pod", "net1", &[]);
        c.env("DPDK_CNI_FAILPOINT", step);
        let out = common::run_process(c, conf.to_string().as_bytes());
        assert!(out.code.is_none(), "{step}: {out:?}");
        let gc = bed.run(
            "GC",
            "",
            &bed.conf(0, json!({"cni.dev/valid-attachments": []})),
        );
        assert!(gc.ok(), "{step}: {gc:?}");
        assert_same(&before, &bed.state());
    }
}

#[test]
fn an_error_at_each_step_rolls_back_in_process() {
    for step in ADD_STEPS {
        let bed = Bed::new(2);
        let before = bed.state();
        let conf = bed.conf(1, settings());
        let fp = format!("{step}:error");
        let out = bed.run_with("ADD", "pod", "net1", &conf, &[("DPDK_CNI_FAILPOINT", &fp)]);
        assert_eq!(out.err_code(), 199, "{step}");
        assert_same(&before, &bed.state());
    }
}

#[test]
fn the_kill_is_a_real_sigkill() {
    let bed = Bed::new(1);
    let mut c = bed.command("ADD", "pod", "net1", &[("DPDK_CNI_FAILPOINT", "unbound")]);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bed.conf(0, json!({})).to_string().as_bytes())
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9));
    // Killed between unbind and bind: the VF has no driver at all.
    assert_eq!(bed.driver(0), None);
}

#[test]
fn two_adds_racing_for_one_device_exactly_one_wins() {
    for round in 0..20 {
        let bed = Bed::new(1);
        let conf = bed.conf(0, json!({"vlan": 3}));
        let spawn = |id: &str| {
            let mut c = bed.command("ADD", id, "net1", &[]);
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            let mut ch = c.spawn().unwrap();
            use std::io::Write;
            ch.stdin
                .take()
                .unwrap()
                .write_all(conf.to_string().as_bytes())
                .unwrap();
            ch
        };
        let (a, b) = (spawn("pod-a"), spawn("pod-b"));
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let wins = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(wins, 1, "round {round}: {outs:?}");
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        let err: serde_json::Value = serde_json::from_slice(&loser.stdout).unwrap();
        assert_eq!(err["code"], 101, "round {round}: {err}");
        let winner = if outs[0].status.success() {
            "pod-a"
        } else {
            "pod-b"
        };
        assert!(err["msg"].as_str().unwrap().contains(winner), "{err}");
        assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    }
}
