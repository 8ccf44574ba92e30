//! The compatibility suite: real sriov-cni netconfs from the upstream
//! projects (sriov-cni, the SR-IOV network device plugin, the SR-IOV
//! network operator's NAD template, Multus' docs), kept as data in
//! `tests/compat/` with where each comes from and what sriov-cni does with
//! it, run through ADD, CHECK and DEL the way Multus and libcni call a
//! delegate, on a fake node with the VF on its kernel driver or pre-bound
//! to a user-space driver. Where our outcome differs on purpose, the data
//! names the difference (`tests/compat/differences.json`).

#[path = "compat/case.rs"]
mod case;
mod common;
#[path = "compat/device_plugin.rs"]
mod device_plugin;
#[path = "compat/expect.rs"]
mod expect;
#[path = "compat/multus.rs"]
mod multus;
#[path = "compat/node.rs"]
mod node;

use serde_json::{json, Value};

use case::{Case, Refusal, Run, VfSetup};
use common::Outcome;
use expect::{part_of, sort_out, Miss};
use multus::Pod;
use node::{can_make_namespaces, node_diff, pod_link, Ns, RunNode, Snapshot};

/// What one run left: failures, and open differences it met.
#[derive(Debug, Default)]
struct Verdict {
    fail: Vec<String>,
    open: Vec<String>,
    skipped: Option<String>,
}

fn pod(tag: &str, ns: Option<&Ns>) -> Pod {
    Pod {
        name: format!("pod-{tag}"),
        uid: format!("0000-{tag}"),
        container_id: format!("cid-{tag}"),
        netns: ns
            .map(Ns::path)
            .unwrap_or_else(|| format!("/var/run/netns/cid-{tag}")),
    }
}

fn env<'a>(p: &'a Pod, args: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", p.container_id.as_str()),
        ("CNI_NETNS", p.netns.as_str()),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", args),
    ]
}

/// One ADD, CHECK, DEL cycle on its node, and what it found.
struct Cycle<'a> {
    run: &'a Run,
    version: String,
    node: RunNode,
    pod_ns: Option<Ns>,
    me: Pod,
    args: String,
    stdin: Vec<u8>,
    before: Snapshot,
    vf_before: Value,
    misses: Vec<Miss>,
    checked: Vec<String>,
    fail: Vec<String>,
}

fn code_of(o: &Outcome) -> Option<u64> {
    o.json.as_ref().and_then(|j| j["code"].as_u64())
}

impl Cycle<'_> {
    fn call(&self, cmd: &str, stdin: &[u8]) -> Outcome {
        let args = if cmd == "ADD" {
            self.me.add_args(self.run.pod_mac.as_deref())
        } else {
            self.args.clone()
        };
        self.node.run(cmd, &env(&self.me, &args), stdin)
    }

    fn miss(&mut self, path: &str, want: String, got: String) {
        self.misses.push(Miss {
            path: path.into(),
            want,
            got,
        });
    }

    fn compare(&mut self, what: &str, want: &Value, got: &Value) {
        let netns = self.me.netns.clone();
        part_of(want, got, what, &netns, &mut self.misses);
    }

    /// Upstream refuses this ADD: so must we, changing nothing, and the
    /// DEL a runtime sends next must do what upstream's does.
    fn refused(&mut self, add: &Outcome, r: &Refusal) {
        if add.ok() {
            let got = format!("accepted: {}", add.stdout.trim());
            self.miss("add.outcome", "refused".into(), got);
        } else {
            if code_of(add) != Some(r.code) {
                let got = format!("{:?} ({})", code_of(add), add.stdout.trim());
                self.miss("add.code", r.code.to_string(), got);
            }
            if !add.msg().contains(&r.msg) {
                let want = format!("a message with {:?}", r.msg);
                self.miss("add.msg", want, format!("{:?}", add.msg()));
            }
            let d = node_diff(&self.before, &self.node.snapshot(), None);
            if !d.is_empty() {
                self.fail.push(format!(
                    "the refused ADD changed the node: {}",
                    d.join("; ")
                ));
            }
        }
        let del = self.call("DEL", &self.stdin);
        match &self.run.expect.del_refused {
            None if !del.ok() => self.fail.push(format!(
                "DEL after the refused ADD failed: {}",
                del.stdout.trim()
            )),
            Some(r) if del.ok() || code_of(&del) != Some(r.code) || !del.msg().contains(&r.msg) => {
                self.fail.push(format!(
                    "DEL after the refused ADD: expected code {} with {:?}, got {}",
                    r.code,
                    r.msg,
                    del.stdout.trim()
                ))
            }
            _ => {}
        }
        let d = node_diff(&self.before, &self.node.snapshot(), None);
        if !d.is_empty() {
            self.fail
                .push(format!("the node is not as before: {}", d.join("; ")));
        }
    }

    /// Upstream accepts this ADD: the result, the VF, the pod's interface,
    /// CHECK where libcni sends it, then DEL and a second DEL.
    fn accepted(&mut self, add: &Outcome) {
        if !add.ok() {
            let got = format!("refused: {}", add.stdout.trim());
            self.miss("add.outcome", "accepted".into(), got);
            // The runtime's DEL after the failed ADD cleans up.
            let _ = self.call("DEL", &self.stdin);
            return;
        }
        let result = add.json.clone().unwrap_or(Value::Null);
        let e = &self.run.expect;
        if let Some(d) = &e.driver {
            self.checked.push("driver".into());
            let got = json!(self.node.driver());
            self.compare("driver.after_add", &json!(d.after_add), &got);
        }
        if let Some(r) = &e.result {
            self.checked.push("result".into());
            self.compare("result", r, &result);
        }
        if let Some(want) = &e.vf {
            self.checked.push("vf".into());
            let got = self.node.vf_state();
            self.compare("vf", want, &got);
        }
        if let (Some(pl), Some(ns)) = (&e.pod_link, &self.pod_ns) {
            self.checked.push("pod_link".into());
            let mut want =
                json!({"name": pl.name, "mac": pl.mac, "mtu": pl.mtu, "addresses": pl.addresses});
            want.as_object_mut().unwrap().retain(|_, x| !x.is_null());
            let got = pod_link(ns, &pl.name);
            self.compare("pod_link", &want, &got);
        }
        if let Some(f) = &e.log_file {
            self.checked.push("log_file".into());
            let p = self.node.bed.root().join(f.trim_start_matches('/'));
            if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) == 0 {
                self.miss("log_file", format!("log lines in {f}"), "none".into());
            }
        }
        let libcni_checks = multus::at_least_040(&self.version);
        let with_prev = multus::with_prev_result(&self.stdin, &result);
        match (e.check.as_deref(), libcni_checks) {
            (Some("ok"), true) => {
                self.checked.push("check".into());
                let out = self.call("CHECK", &with_prev);
                if !out.ok() {
                    self.miss("check", "ok".into(), out.stdout.trim().into());
                }
            }
            (Some("not issued"), false) => {}
            (c, _) => self.fail.push(format!(
                "data: check is {c:?} but libcni {} CHECK for cniVersion {:?}",
                if libcni_checks { "sends" } else { "sends no" },
                self.version
            )),
        }
        if let (Some(mtu), Some(ns)) = (self.run.pod_sets_mtu, &self.pod_ns) {
            if ns.sh(&format!("ip link set net1 mtu {mtu}")).is_none() {
                self.fail
                    .push(format!("the pod has no net1 to set MTU {mtu} on"));
            }
        }
        let del_stdin = if libcni_checks {
            with_prev
        } else {
            self.stdin.clone()
        };
        self.del_restores(&del_stdin);
    }

    /// DEL succeeds and leaves the node as ADD found it.
    fn del_restores(&mut self, stdin: &[u8]) {
        let del = self.call("DEL", stdin);
        if !del.ok() {
            self.fail.push(format!("DEL failed: {}", del.stdout.trim()));
        }
        let e = &self.run.expect;
        if let Some(d) = &e.driver {
            let got = json!(self.node.driver());
            self.compare("driver.after_del", &json!(d.after_del), &got);
        }
        let vf = self.node.vf_state();
        if vf != self.vf_before {
            self.fail.push(format!(
                "DEL left the VF as {vf} (before ADD: {})",
                self.vf_before
            ));
        }
        let after = self.node.snapshot();
        if after.1 != self.before.1 {
            self.fail.push(format!(
                "DEL left the VF netdev as {:?} (before ADD: {:?})",
                after.1, self.before.1
            ));
        }
        let left: Vec<_> = after
            .0
            .attachments
            .iter()
            .filter(|a| !self.before.0.attachments.contains(a))
            .collect();
        if !left.is_empty() {
            self.fail.push(format!("DEL left records {left:?}"));
        }
        // Unless the driver is to change, the node is as it was.
        let same_driver = e
            .driver
            .as_ref()
            .is_none_or(|d| d.after_del == self.run.vf.driver());
        if same_driver && self.run.vf != VfSetup::VfioEarlyBind {
            let d = node_diff(&self.before, &after, e.log_file.as_deref());
            if !d.is_empty() {
                self.fail
                    .push(format!("DEL did not restore the node: {}", d.join("; ")));
            }
        }
        if !self.call("DEL", stdin).ok() {
            self.fail.push("a second DEL failed".into());
        }
    }
}

/// Runs one ADD, CHECK, DEL cycle of a case and compares with the data.
fn run_one(case: &Case, run: &Run, tag: &str) -> Verdict {
    let mut v = Verdict::default();
    let namespaces = can_make_namespaces();
    if run.vf == VfSetup::Kernel && !namespaces {
        v.skipped = Some("a VF on its kernel driver needs network namespaces (root)".into());
        return v;
    }
    let node = RunNode::new(run.vf, tag, run.netdev_mtu);
    let pod_ns = namespaces.then(|| Ns::new(&format!("{tag}-p")));
    let other_ns = (namespaces && run.held_by_another_pod).then(|| Ns::new(&format!("{tag}-o")));
    let me = pod(tag, pod_ns.as_ref());
    let other = pod(&format!("{tag}-other"), other_ns.as_ref());
    let build = |p: &Pod| {
        let mac = run.pod_mac.as_deref();
        multus::netconf(case, run.invocation, &node.device(), p, "net1", mac)
            .map(|s| multus::private_ipam_dir(s, &node.ipam_dir))
    };
    let (stdin, other_stdin) = match (build(&me), build(&other)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            v.fail.push(e);
            return v;
        }
    };
    let other_args = other.cni_args();
    if run.held_by_another_pod {
        let out = node.run("ADD", &env(&other, &other_args), &other_stdin);
        if !out.ok() {
            v.fail
                .push(format!("the other pod's ADD failed: {}", out.stdout.trim()));
            return v;
        }
    }
    let before = node.snapshot();
    let vf_before = node.vf_state();
    let mut c = Cycle {
        run,
        version: case.cni_version(),
        args: me.cni_args(),
        node,
        pod_ns,
        me,
        stdin,
        before,
        vf_before,
        misses: Vec::new(),
        checked: vec!["add".into()],
        fail: Vec::new(),
    };
    let add = c.call("ADD", &c.stdin);
    match &run.expect.refused {
        Some(r) => c.refused(&add, r),
        None => c.accepted(&add),
    }
    if run.held_by_another_pod {
        let out = c.node.run("DEL", &env(&other, &other_args), &other_stdin);
        if !out.ok() {
            c.fail
                .push(format!("the other pod's DEL failed: {}", out.stdout.trim()));
        }
    }
    let (fail, open) = sort_out(c.misses, &run.open, &c.checked);
    v.fail = c.fail;
    v.fail.extend(fail);
    v.open = open;
    v
}

#[test]
fn upstream_sriov_configs_behave_as_upstream() {
    let diffs = case::load_differences();
    let cases = case::load_cases();
    assert!(!cases.is_empty(), "no cases in tests/compat/sriov-cni");
    let mut failures = Vec::new();
    let mut open = Vec::new();
    let mut skipped = 0;
    let mut runs = 0;
    for (ci, c) in cases.iter().enumerate() {
        failures.extend(
            c.problems(&diffs)
                .into_iter()
                .map(|p| format!("{} (from {}): {p}", c.name(), c.source)),
        );
        for (ri, r) in c.runs.iter().enumerate() {
            runs += 1;
            let v = run_one(c, r, &format!("{ci}-{ri}"));
            let nad = if c.nad.assumed {
                ", in the NAD its README describes"
            } else {
                ""
            };
            let at = format!(
                "{} (from {}{nad}), run {} (VF on {})",
                c.name(),
                c.source,
                ri + 1,
                r.vf.driver()
            );
            if let Some(why) = v.skipped {
                skipped += 1;
                eprintln!("skipped {at}: {why}");
                continue;
            }
            failures.extend(v.fail.iter().map(|f| format!("{at}: {f}")));
            open.extend(v.open.iter().map(|f| format!("{at}: {f}")));
        }
    }
    eprintln!(
        "compat: {} configs, {runs} runs, {skipped} skipped, {} open differences",
        cases.len(),
        open.len()
    );
    for o in &open {
        eprintln!("open: {o}");
    }
    if skipped > 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run these tests as root"
        );
    }
    assert!(
        failures.is_empty(),
        "{} expectation(s) from upstream not met:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn device_plugin_data_matches_upstream_selection() {
    let node = device_plugin::load_node("node.json");
    assert!(!node.description.is_empty(), "node.json: describe the node");
    let mut seen = std::collections::BTreeSet::new();
    for d in &node.devices {
        assert!(seen.insert(&d.address), "node.json: {} twice", d.address);
        assert!(d.numa_node >= -1, "node.json: {} numa_node", d.address);
        if let Some(pf) = &d.physfn {
            assert!(
                node.devices.iter().any(|p| &p.address == pf
                    && p.sriov_numvfs.unwrap_or(0) > d.vf_index.unwrap_or(u32::MAX)),
                "node.json: {}'s PF {pf} is not on the node or has no VF {:?}",
                d.address,
                d.vf_index
            );
        }
    }
    let cases = device_plugin::load_cases();
    assert!(cases.len() >= 10, "{} device plugin configs", cases.len());
    let bad: Vec<String> = cases
        .iter()
        .flat_map(|(name, c)| {
            device_plugin::check_case(name, c)
                .into_iter()
                .map(move |b| format!("{name} (from {}): {b}", c.source))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "device plugin data:\n  {}",
        bad.join("\n  ")
    );
}
