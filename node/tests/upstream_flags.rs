//! The daemon started the way the SR-IOV network device plugin is: with its
//! DaemonSet's arguments (`--log-dir=... --log-level=10
//! --resource-prefix=... --config-file=/etc/pcidp/<node>`), with the Go
//! spellings its image's entrypoint hands the binary (`-v 10 --log_dir ...
//! -config-file ... -use-cdi`), and with the configs the SR-IOV network
//! operator renders. A config that does not load stops the daemon at start
//! with the file and the problem; at run time it changes nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{two_pf_node, wait_for, wait_for_log, Daemon, FakeKubelet};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::{AllocateRequest, ContainerAllocateRequest, Empty, ListAndWatchResponse};
use dpdk_cni_node::plugin::connect_unix;
use tonic::transport::Channel;
use tonic::Streaming;

/// A test's directories: the fake node's root, the kubelet's device-plugins
/// directory, the CNI state directory, the config directory (`/etc/pcidp`)
/// and the daemon's stderr.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    kdir: PathBuf,
    state: PathBuf,
    etc: PathBuf,
    stderr: PathBuf,
    base: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let etc = base.join("etc/pcidp");
    fs::create_dir_all(&etc).unwrap();
    Dirs {
        root: base.join("root"),
        kdir: base.join("device-plugins"),
        state: base.join("state"),
        etc,
        stderr: base.join("stderr.log"),
        base,
        _tmp: tmp,
    }
}

/// The daemon with `args` as the DaemonSet gives them, plus what points it
/// at the fake node (the tests' own flags).
fn command(d: &Dirs, args: &[String]) -> Command {
    let mut cmd = Command::new(common::daemon_bin());
    cmd.args(args)
        .arg("--sysfs-root")
        .arg(&d.root)
        .arg("--kubelet-dir")
        .arg(&d.kdir)
        .arg("--state-dir")
        .arg(&d.state)
        .args(["--emulated-kernel", "--no-annotate"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NODE_NAME", "node-1")
        .stdin(Stdio::null())
        .stderr(fs::File::create(&d.stderr).unwrap());
    cmd
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

/// What the SR-IOV network operator renders for a node: Go's encoder writes
/// the untagged `IsRdma` with a capital and `SelectorObjs: null`; the pool
/// without a prefix takes `--resource-prefix`.
const OPERATOR_CONFIG: &str = r#"{"resourceList":[{"resourceName":"sriov_a","selectors":{"vendors":["8086"],"devices":["10ca"],"pfNames":["ens1f0#0,2-3"],"IsRdma":false},"SelectorObjs":null},{"resourceName":"sriov_b","resourcePrefix":"intel.com","excludeTopology":true,"selectors":[{"rootDevices":["0000:81:00.0#1-2"]}],"SelectorObjs":null}]}"#;

async fn client(kdir: &Path, resource: &str) -> DevicePluginClient<Channel> {
    let sock = kdir.join(format!("dpdk-cni-{}.sock", resource.replace('/', "_")));
    DevicePluginClient::new(connect_unix(&sock).await.unwrap())
}

/// The next device list: id to NUMA nodes.
async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> BTreeMap<String, Vec<i64>> {
    let msg = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("no ListAndWatch update in time")
        .unwrap()
        .expect("stream ended");
    msg.devices
        .into_iter()
        .map(|d| {
            let numa = d
                .topology
                .map(|t| t.nodes.iter().map(|n| n.id).collect())
                .unwrap_or_default();
            (d.id, numa)
        })
        .collect()
}

async fn registrations(kubelet: &mut FakeKubelet, n: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for _ in 0..n {
        got.insert(
            kubelet
                .next_registration(Duration::from_secs(10))
                .await
                .resource_name,
        );
    }
    got
}

#[tokio::test(flavor = "current_thread")]
async fn upstream_daemonset_args_register_the_operator_pools() {
    let d = dirs();
    let _node = two_pf_node(&d.root, 4);
    let cfg = d.etc.join("node-1");
    fs::write(&cfg, OPERATOR_CONFIG).unwrap();
    let logs = d.base.join("log");
    let mut kubelet = FakeKubelet::start(&d.kdir);
    let _daemon = Daemon::spawn(command(
        &d,
        &[
            format!("--log-dir={}", logs.display()),
            "--log-level=10".into(),
            "--resource-prefix=openshift.io".into(),
            format!("--config-file={}", cfg.display()),
        ],
    ));

    assert_eq!(
        registrations(&mut kubelet, 2).await,
        BTreeSet::from(["openshift.io/sriov_a".into(), "intel.com/sriov_b".into()])
    );
    // pfNames with VF ranges: VFs 0, 2 and 3 of ens1f0, with their NUMA node.
    let mut a = client(&d.kdir, "openshift.io/sriov_a").await;
    let mut stream = a.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(
        next(&mut stream).await,
        BTreeMap::from([
            ("0000:01:10.0".into(), vec![0]),
            ("0000:01:10.4".into(), vec![0]),
            ("0000:01:10.6".into(), vec![0]),
        ])
    );
    // rootDevices with VF ranges, and excludeTopology.
    let mut b = client(&d.kdir, "intel.com/sriov_b").await;
    let mut stream = b.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(
        next(&mut stream).await,
        BTreeMap::from([
            ("0000:81:10.2".into(), vec![]),
            ("0000:81:10.4".into(), vec![])
        ])
    );

    // The log file: private, with what stderr has, debug lines included at 10.
    let file = logs.join("dpdk-cni-node.log");
    wait_for_log(
        &file,
        &["config", "node-1: 2 pools"],
        Duration::from_secs(5),
    );
    wait_for_log(
        &file,
        &[
            "debug",
            "openshift.io/sriov_a: selector 0 takes 0000:01:10.4",
        ],
        Duration::from_secs(5),
    );
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    wait_for_log(&d.stderr, &["node-1: 2 pools"], Duration::from_secs(5));
}

#[tokio::test(flavor = "current_thread")]
async fn go_flag_spellings_and_use_cdi() {
    let d = dirs();
    let _node = two_pf_node(&d.root, 2);
    let cfg = d.etc.join("config.json");
    fs::write(
        &cfg,
        r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens2f0"]}}]}"#,
    )
    .unwrap();
    let logs = d.base.join("glog");
    let mut kubelet = FakeKubelet::start(&d.kdir);
    // What the upstream image's entrypoint hands its binary.
    let _daemon = Daemon::spawn(command(
        &d,
        &[
            s(&["-v", "10", "--log_dir"]),
            vec![logs.display().to_string()],
            s(&[
                "--alsologtostderr",
                "--resource-prefix",
                "example.com",
                "-config-file",
            ]),
            vec![cfg.display().to_string()],
            s(&["-use-cdi"]),
        ]
        .concat(),
    ));
    assert_eq!(
        kubelet
            .next_registration(Duration::from_secs(10))
            .await
            .resource_name,
        "example.com/vf"
    );
    // --use-cdi: CDI device names instead of device specs, and the spec file.
    let mut c = client(&d.kdir, "example.com/vf").await;
    let r = c
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:81:10.2".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let r = &r.container_responses[0];
    assert_eq!(r.cdi_devices.len(), 1);
    assert_eq!(r.cdi_devices[0].name, "example.com/vf=0000:81:10.2");
    assert!(r.devices.is_empty(), "{:?}", r.devices);
    let spec = d.root.join("var/run/cdi/dpdk-cni-example.com_vf.json");
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(spec).unwrap()).unwrap();
    assert_eq!(spec["kind"], "example.com/vf");
    wait_for_log(
        &logs.join("dpdk-cni-node.log"),
        &["config.json: 1 pools"],
        Duration::from_secs(5),
    );

    // Still refused: an unknown flag, and two names for the config file.
    for bad in [
        s(&["--no-such-flag"]),
        s(&["--config=/a", "--config-file=/b"]),
        s(&["--use-cdi", "yes"]),
    ] {
        let out = command(&d, &bad).stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// Runs the daemon to its exit (at most 10 s); its exit code and stderr.
fn run_to_exit(d: &Dirs, args: &[String]) -> (Option<i32>, String) {
    let mut daemon = Daemon::spawn(command(d, args));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = daemon.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{args:?}: the daemon is still running with a bad config:\n{}",
            fs::read_to_string(&d.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), fs::read_to_string(&d.stderr).unwrap())
}

#[test]
fn a_bad_config_at_start_exits_naming_the_file_and_the_problem() {
    let d = dirs();
    let node = two_pf_node(&d.root, 2);
    let before = node.snapshot();
    let cfg = d.etc.join("node-1");
    let arg = |p: &Path| vec![format!("--config-file={}", p.display())];
    // A node setup that would change the node, in every bad file below.
    let setup = r#""nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 1}]}"#;
    for (content, want) in [
        (None, "failed to read".to_string()),
        (Some("{\"resourceList\": [".to_string()), "not valid JSON".into()),
        (
            Some(format!(
                r#"{{"resourceList": [{{"resourceName": "a", "deviceType": "gpu", "selectors": {{}}}}], {setup}}}"#
            )),
            "resourceList[0] (a): unsupported deviceType \"gpu\"".into(),
        ),
        (
            Some(format!(
                r#"{{"resourceList": [{{"resourceName": "a", "selectors": {{"pfNames": ["ens1f0#3-1"]}}}}], {setup}}}"#
            )),
            "intel.com/a: selectors: pfNames: \"ens1f0#3-1\": range 3-1 ends before it starts".into(),
        ),
        (
            Some(r#"{"resourceList": [{"resourceName": "a", "selectors": {"isRdma": true, "vdpaType": "vhost"}}]}"#.into()),
            "isRdma and vdpaType exclude each other".into(),
        ),
        (
            Some(r#"{"resourceList": []}"#.into()),
            "no pools in resourceList and no nodeSetup".into(),
        ),
    ] {
        let _ = fs::remove_file(&cfg);
        if let Some(c) = &content {
            fs::write(&cfg, c).unwrap();
        }
        let (code, err) = run_to_exit(&d, &arg(&cfg));
        assert_eq!(code, Some(1), "{content:?}: {err}");
        let line = format!("{}: ", cfg.display());
        assert!(
            err.contains(&line) && err.contains(&want),
            "{content:?}: stderr does not name {line:?} and {want:?}:\n{err}"
        );
        // Nothing served, nothing changed on the node.
        assert!(
            fs::read_dir(&d.kdir)
                .map(|r| r.flatten().all(|e| e.file_name() == "kubelet.sock"))
                .unwrap_or(true),
            "a plugin socket after {content:?}"
        );
        assert_eq!(node.snapshot(), before, "{content:?}");
    }
    // A per-node path the kubelet did not expand (no NODE_NAME in the
    // container's env) says why.
    let raw = d.etc.join("$(NODE_NAME)");
    let (code, err) = run_to_exit(&d, &arg(&raw));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("$(NODE_NAME)") && err.contains("defines VAR"),
        "{err}"
    );
}

/// How many lines of `log` contain `needle`.
fn count(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_config_at_run_time_keeps_the_pools() {
    let d = dirs();
    let node = two_pf_node(&d.root, 2);
    let cfg = d.etc.join("node-1");
    fs::write(
        &cfg,
        r#"{"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["ens1f0"]}}]}"#,
    )
    .unwrap();
    let mut kubelet = FakeKubelet::start(&d.kdir);
    let _daemon = Daemon::spawn(command(&d, &[format!("--config-file={}", cfg.display())]));
    assert_eq!(
        kubelet
            .next_registration(Duration::from_secs(10))
            .await
            .resource_name,
        "intel.com/a"
    );
    let mut c = client(&d.kdir, "intel.com/a").await;
    let mut stream = c.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut stream).await.len(), 2);
    let before = node.snapshot();

    // The way a ConfigMap volume changes: write aside, rename over.
    let replace = |content: &str| {
        let tmp = d.etc.join("..tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, &cfg).unwrap();
    };
    let kept = "keeps the last valid config (1 pools)";
    // Each bad file, or none at all.
    let bad: [(&str, Option<&str>); 5] = [
        ("removed", None),
        ("not JSON", Some("{not json")),
        ("no pools", Some(r#"{"resourceList": []}"#)),
        (
            "unknown deviceType",
            Some(
                r#"{"resourceList": [{"resourceName": "z", "deviceType": "gpu", "selectors": {}}]}"#,
            ),
        ),
        (
            "a bad selector beside a node setup",
            Some(
                r#"{"resourceList": [{"resourceName": "z", "selectors": {"rootDevices": ["ens1f0"]}}],
                    "nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 1}]}}"#,
            ),
        ),
    ];
    for (i, (what, content)) in bad.iter().enumerate() {
        match content {
            None => fs::remove_file(&cfg).unwrap(),
            Some(c) => replace(c),
        }
        let sock = d.kdir.join("dpdk-cni-intel.com_a.sock");
        wait_for(
            &format!("the error for a config {what}"),
            Duration::from_secs(5),
            || count(&d.stderr, kept) > i || !sock.exists(),
        );
        // The pool still serves: its socket, its stream, Allocate.
        assert!(sock.exists(), "{what}: the pool's socket is gone");
        assert!(count(&d.stderr, kept) > i, "{what}: no error logged");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stream.message())
                .await
                .is_err(),
            "{what}: the device list changed or its stream ended"
        );
        let r = c
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: vec!["0000:01:10.2".into()],
                }],
            })
            .await;
        assert!(r.is_ok(), "{what}: {r:?}");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), kubelet.registrations.recv())
                .await
                .is_err(),
            "{what}: registered again"
        );
        // Allocate writes its device-info file (devinfo/dp/); nothing else
        // on the node may change.
        let mut now = node.snapshot();
        now.retain(|k, _| k != "var" && !k.starts_with("var/"));
        assert_eq!(now, before, "{what}: the node changed");
    }
    let err = fs::read_to_string(&d.stderr).unwrap();
    assert!(
        err.contains("intel.com/z: selectors: rootDevices: \"ens1f0\""),
        "{err}"
    );

    // A valid config again: applied.
    replace(r#"{"resourceList": [{"resourceName": "b", "selectors": {"pfNames": ["ens2f0"]}}]}"#);
    assert_eq!(
        kubelet
            .next_registration(Duration::from_secs(5))
            .await
            .resource_name,
        "intel.com/b"
    );
}
