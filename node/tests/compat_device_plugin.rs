//! The SR-IOV network device plugin's own configs (`tests/compat/device-plugin/`)
//! run through dpdk-cni-node: for each `config.json`, the node `node.json`
//! describes is laid out as a fake sysfs tree, the daemon binary starts on it
//! with the config as upstream's DaemonSet starts (its `--resource-prefix`
//! when it passes one) and a fake kubelet, and what it registers and lists
//! must be the outcome the file expects: the resources and, through each
//! one's ListAndWatch, the PCI addresses of its devices (all healthy, with
//! their NUMA node); or, for a file upstream refuses, exit 1 at start with
//! the file and the reason, nothing registered and the node untouched.
//!
//! A pool that selects nothing: upstream starts no device plugin for it;
//! dpdk-cni-node registers it with an empty device list (the kubelet shows
//! 0 of it), and this test checks exactly that.
//!
//! `DPDK_CNI_NODE_BIN` runs another build of the daemon (with the test hooks).

mod common;
mod compat;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, FakeKubelet};
use compat::case::{load_cases, DpCase, Outcome};
use compat::fake_node::{build, load_node, NodeDesc};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::{Empty, RegisterRequest};
use dpdk_cni_node::plugin::connect_unix;
use vfio::fake::FakeNode;

/// How long the daemon gets to register its pools, or to stop on a bad file.
const START: Duration = Duration::from_secs(15);
/// After the registrations expected, how long any other one gets to show.
const SETTLE: Duration = Duration::from_millis(400);

/// The end of the daemon's log, for a failure message.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n      | ")
}

/// `got` against `want`: what is extra and what is missing.
fn set_diff(got: &BTreeSet<&String>, want: &BTreeSet<&String>) -> String {
    let extra: Vec<&&String> = got.difference(want).collect();
    let missing: Vec<&&String> = want.difference(got).collect();
    let mut out = Vec::new();
    if !extra.is_empty() {
        out.push(format!("not expected {extra:?}"));
    }
    if !missing.is_empty() {
        out.push(format!("missing {missing:?}"));
    }
    out.join(", ")
}

/// One device as ListAndWatch lists it: health and NUMA nodes.
type Listed = BTreeMap<String, (String, Vec<i64>)>;

async fn list(kdir: &Path, reg: &RegisterRequest) -> Result<Listed, String> {
    let sock = kdir.join(&reg.endpoint);
    let chan = connect_unix(&sock).await.map_err(|e| {
        format!(
            "{}: connecting to {}: {e}",
            reg.resource_name,
            sock.display()
        )
    })?;
    let mut stream = DevicePluginClient::new(chan)
        .list_and_watch(Empty {})
        .await
        .map_err(|e| format!("{}: ListAndWatch: {e}", reg.resource_name))?
        .into_inner();
    let msg = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .map_err(|_| format!("{}: no device list within 3 s", reg.resource_name))?
        .map_err(|e| format!("{}: ListAndWatch: {e}", reg.resource_name))?
        .ok_or_else(|| format!("{}: ListAndWatch ended at once", reg.resource_name))?;
    Ok(msg
        .devices
        .into_iter()
        .map(|d| {
            let numa = d
                .topology
                .map(|t| t.nodes.iter().map(|n| n.id).collect())
                .unwrap_or_default();
            (d.id, (d.health, numa))
        })
        .collect())
}

/// Runs the daemon on the node with the case's config; what differs from
/// the expected outcome, one line each, and a summary when nothing does.
/// `fake` is the node's tree, shared by the runs: each checks that the
/// daemon left it as it was.
async fn run_case(c: &DpCase, node: &NodeDesc, fake: &FakeNode) -> Result<String, Vec<String>> {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let etc = base.join("etc/pcidp");
    fs::create_dir_all(&etc).unwrap();
    let cfg = etc.join("config.json");
    fs::write(&cfg, c.text()).unwrap();
    let (kdir, state, log) = (
        base.join("device-plugins"),
        base.join("state"),
        base.join("stderr.log"),
    );
    let before = fake.snapshot();

    let mut kubelet = FakeKubelet::start(&kdir);
    let mut extra = vec!["--no-annotate".to_string()];
    extra.extend(c.prefix_flag());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut daemon = Daemon::start_logged(fake.root(), &cfg, &kdir, &state, &extra, &log);
    let mut bad = Vec::new();
    let deadline = Instant::now() + START;

    let summary = match c.outcome() {
        Outcome::Refused(reason) => {
            // Until it stops, or registers a pool from the file.
            let mut registered = BTreeSet::new();
            let status = loop {
                if let Some(s) = daemon.child.try_wait().unwrap() {
                    break Some(s);
                }
                if let Ok(r) = kubelet.registrations.try_recv() {
                    registered.insert(r.resource_name);
                    break None;
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            if status.is_none() {
                tokio::time::sleep(SETTLE).await;
            }
            while let Ok(r) = kubelet.registrations.try_recv() {
                registered.insert(r.resource_name);
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            match status {
                None if registered.is_empty() => bad.push(format!(
                    "upstream refuses this file; dpdk-cni-node is still running after {START:?}:\n      | {}",
                    log_tail(&log)
                )),
                None => bad.push(format!(
                    "upstream refuses this file; dpdk-cni-node loads it and registers {registered:?}:\n      | {}",
                    log_tail(&log)
                )),
                Some(s) if s.code() != Some(1) => bad.push(format!(
                    "refused with {s}, not exit 1:\n      | {}",
                    log_tail(&log)
                )),
                Some(_) if !registered.is_empty() => {
                    bad.push(format!("registered {registered:?} before stopping"))
                }
                Some(_) => {}
            }
            if status.is_some()
                && !text
                    .lines()
                    .any(|l| l.contains(&cfg.display().to_string()) && l.contains(&reason))
            {
                bad.push(format!(
                    "no line names the file and {reason:?}:\n      | {}",
                    log_tail(&log)
                ));
            }
            let socks: Vec<String> = fs::read_dir(&kdir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "kubelet.sock")
                .collect();
            if status.is_some() && !socks.is_empty() {
                bad.push(format!("left plugin sockets {socks:?}"));
            }
            if fake.snapshot() != before {
                bad.push("changed the node".into());
            }
            "refused".to_string()
        }
        Outcome::Pools(want) => {
            let mut regs: BTreeMap<String, RegisterRequest> = BTreeMap::new();
            let mut stopped = false;
            while regs.len() < want.len() {
                if let Some(s) = daemon.child.try_wait().unwrap() {
                    stopped = true;
                    bad.push(format!(
                        "dpdk-cni-node stopped ({s}) with {} of {} resources registered:\n      | {}",
                        regs.len(),
                        want.len(),
                        log_tail(&log)
                    ));
                    break;
                }
                if Instant::now() > deadline {
                    break;
                }
                if let Ok(Some(r)) =
                    tokio::time::timeout(Duration::from_millis(100), kubelet.registrations.recv())
                        .await
                {
                    regs.insert(r.resource_name.clone(), r);
                }
            }
            tokio::time::sleep(SETTLE).await;
            while let Ok(r) = kubelet.registrations.try_recv() {
                regs.insert(r.resource_name.clone(), r);
            }
            let got: BTreeSet<&String> = regs.keys().collect();
            let expected: BTreeSet<&String> = want.keys().collect();
            if got != expected && !stopped {
                bad.push(format!(
                    "registered {got:?}: {}:\n      | {}",
                    set_diff(&got, &expected),
                    log_tail(&log)
                ));
            }
            let mut devices = 0;
            for (resource, reg) in &regs {
                let Some(addrs) = want.get(resource) else {
                    continue;
                };
                let listed = match list(&kdir, reg).await {
                    Ok(l) => l,
                    Err(e) => {
                        bad.push(e);
                        continue;
                    }
                };
                let ids: BTreeSet<&String> = listed.keys().collect();
                let wanted: BTreeSet<&String> = addrs.iter().collect();
                if ids != wanted {
                    bad.push(format!(
                        "{resource} lists {ids:?}: {}",
                        set_diff(&ids, &wanted)
                    ));
                }
                devices += listed.len();
                let no_topology = c.excludes_topology(resource);
                for (id, (health, numa)) in &listed {
                    if health != "Healthy" {
                        bad.push(format!("{resource}: {id} is {health}"));
                    }
                    let want_numa: Vec<i64> = match node.device(id) {
                        Some(d) if !no_topology && d.numa_node >= 0 => vec![d.numa_node.into()],
                        _ => vec![],
                    };
                    if *numa != want_numa {
                        bad.push(format!(
                            "{resource}: {id} on NUMA {numa:?}, expected {want_numa:?}"
                        ));
                    }
                }
            }
            if let Some(s) = daemon.child.try_wait().unwrap().filter(|_| !stopped) {
                bad.push(format!(
                    "dpdk-cni-node stopped ({s}):\n      | {}",
                    log_tail(&log)
                ));
            }
            let writes = fake.writes();
            if !writes.is_empty() {
                bad.push(format!("wrote to the node's sysfs: {writes:?}"));
            }
            if fake.snapshot() != before {
                bad.push("changed the node".into());
            }
            format!("{} resources, {devices} devices", regs.len())
        }
    };
    drop(daemon);
    kubelet.stop();
    if bad.is_empty() {
        Ok(summary)
    } else {
        Err(bad)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn upstream_device_plugin_configs_give_upstreams_pools() {
    let cases = load_cases();
    assert!(
        !cases.is_empty(),
        "no configs in tests/compat/device-plugin"
    );
    let mut failures = Vec::new();
    let mut differences = Vec::new();
    // Each node description, laid out once.
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes: BTreeMap<String, (NodeDesc, FakeNode)> = BTreeMap::new();
    for (name, c) in &cases {
        let mut bad = c.problems();
        if !nodes.contains_key(&c.node) {
            let desc = load_node(&c.node);
            let problems = desc.problems();
            assert!(problems.is_empty(), "{}: {}", c.node, problems.join("; "));
            let fake = build(&tmp.path().join(&c.node), &desc);
            nodes.insert(c.node.clone(), (desc, fake));
        }
        let (node, fake) = &nodes[&c.node];
        if bad.is_empty() {
            match run_case(c, node, fake).await {
                Ok(summary) => eprintln!("device-plugin compat: {name}: {summary}"),
                Err(b) => bad = b,
            }
        }
        if c.difference.is_some() {
            differences.push(name.as_str());
        }
        failures.extend(
            bad.into_iter()
                .map(|b| format!("{name} (from {}): {b}", c.source)),
        );
    }
    eprintln!(
        "device-plugin compat: {} configs through dpdk-cni-node, {} with a difference kept on purpose ({})",
        cases.len(),
        differences.len(),
        differences.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} outcome(s) not met:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
