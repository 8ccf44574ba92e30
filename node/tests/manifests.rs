//! The Kubernetes manifests in docker/k8s parse as YAML and reference only
//! what the image provides: the binaries the Containerfile copies, the
//! subcommands and flags they accept, the paths they use by default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

fn load_all() -> Vec<Value> {
    let mut docs = Vec::new();
    let dir = docker_dir().join("k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(
            f.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{}",
            f.display()
        );
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                assert!(
                    v["apiVersion"].is_string() && v["kind"].is_string(),
                    "{}: {v:?}",
                    f.display()
                );
                docs.push(v);
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Paths the Containerfile copies binaries to.
fn image_binaries() -> BTreeSet<String> {
    let cf = std::fs::read_to_string(docker_dir().join("Containerfile")).unwrap();
    assert!(
        cf.lines().any(|l| l.trim() == "FROM scratch"),
        "no base image to pull"
    );
    let mut out = BTreeSet::new();
    for l in cf.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
        let (dest, srcs) = parts.split_last().unwrap();
        assert!(dest.ends_with('/'), "{l}");
        for s in srcs {
            out.insert(format!("{dest}{s}"));
        }
    }
    out
}

#[test]
fn manifests_parse_and_match_the_image() {
    let docs = load_all();
    let bins = image_binaries();
    assert_eq!(
        bins,
        BTreeSet::from([
            "/usr/bin/dpdk-cni".to_string(),
            "/usr/bin/dpdk-cni-node".to_string()
        ])
    );
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "NetworkAttachmentDefinition",
        "Pod",
    ] {
        assert!(!find(&docs, kind).is_empty(), "no {kind}");
    }
    let ns = s(&find(&docs, "Namespace")[0]["metadata"]["name"]).to_string();

    // RBAC: nodes get and patch, bound to the DaemonSet's service account.
    let role = find(&docs, "ClusterRole")[0];
    let rule = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| {
            r["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| x == "nodes")
        })
        .expect("a rule on nodes");
    let verbs: BTreeSet<&str> = rule["verbs"].as_sequence().unwrap().iter().map(s).collect();
    assert!(
        verbs.contains("get") && verbs.contains("patch"),
        "{verbs:?}"
    );
    let binding = find(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = find(&docs, "ServiceAccount")[0];
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(s(&binding["subjects"][0]["namespace"]), ns);

    // The ConfigMap is a config the daemon loads.
    let cm = find(&docs, "ConfigMap")[0];
    let cfg = dpdk_cni_node::config::Config::parse(
        Path::new("configmap"),
        s(&cm["data"]["config.json"]).as_bytes(),
    )
    .unwrap();
    let resources: BTreeSet<String> = cfg
        .resource_list
        .iter()
        .map(|p| p.full_name(cfg.resource_prefix.as_deref()))
        .collect();

    // The DaemonSet runs only the image's binaries, with arguments they accept.
    let ds = find(&docs, "DaemonSet")[0];
    assert_eq!(s(&ds["metadata"]["namespace"]), ns);
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    let mut containers: Vec<&Value> = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect();
    containers.extend(spec["containers"].as_sequence().unwrap());
    let mut subcommands = Vec::new();
    let mut mounts = BTreeMap::new();
    for c in &containers {
        let cmd: Vec<&str> = c["command"].as_sequence().unwrap().iter().map(s).collect();
        assert!(
            bins.contains(cmd[0]),
            "{} runs {}, not in the image",
            s(&c["name"]),
            cmd[0]
        );
        subcommands.push(cmd[1].to_string());
        // The binary accepts the arguments: clap rejects an unknown one before --help.
        let out = Command::new(env!("CARGO_BIN_EXE_dpdk-cni-node"))
            .args(&cmd[1..])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            mounts.insert(s(&m["name"]).to_string(), s(&m["mountPath"]).to_string());
        }
    }
    assert_eq!(subcommands, ["install-cni", "run"]);
    let env: Vec<&str> = containers[1]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| s(&e["name"]))
        .collect();
    assert!(env.contains(&"NODE_NAME"));
    let install: Vec<&str> = containers[0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let to = install[install.iter().position(|a| *a == "--to").unwrap() + 1];
    assert_eq!(mounts.get("cni-bin").map(String::as_str), Some(to));
    // The node's settings: a document the plugin reads, installed where it
    // reads it (the host's /etc/dpdk-cni), with the allocation check on.
    let settings = s(&cm["data"]["node.json"]);
    ledger::NodeSettings::check_document(settings.as_bytes()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(settings).unwrap();
    assert_eq!(doc["allocationCheck"], true);
    let dir = install[install.iter().position(|a| *a == "--settings-dir").unwrap() + 1];
    assert_eq!(mounts.get("host-settings").map(String::as_str), Some(dir));
    let host_etc = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "host-settings")
        .unwrap();
    assert_eq!(host_etc["hostPath"]["path"], "/etc/dpdk-cni");
    // Host paths the daemon and plugin need, mounted where they look.
    let mut host = BTreeMap::new();
    for v in spec["volumes"].as_sequence().unwrap() {
        if let Some(p) = v["hostPath"]["path"].as_str() {
            host.insert(
                p.to_string(),
                mounts.get(s(&v["name"])).cloned().unwrap_or_default(),
            );
        }
        if let Some(name) = v["configMap"]["name"].as_str() {
            assert_eq!(name, s(&cm["metadata"]["name"]));
            assert_eq!(mounts[s(&v["name"])], "/etc/dpdk-cni");
        }
    }
    for (h, at) in [
        ("/opt/cni/bin", to),
        (
            "/var/lib/kubelet/device-plugins",
            "/var/lib/kubelet/device-plugins",
        ),
        ("/sys", "/sys"),
        ("/dev/vfio", "/dev/vfio"),
        ("/var/lib/cni/dpdk-cni", "/var/lib/cni/dpdk-cni"),
        (
            "/var/run/k8s.cni.cncf.io/devinfo",
            "/var/run/k8s.cni.cncf.io/devinfo",
        ),
    ] {
        assert_eq!(host.get(h).map(String::as_str), Some(at), "hostPath {h}");
    }

    // The NAD: the plugin the image installs, vfio-pci, a pool's resource.
    let nad = find(&docs, "NetworkAttachmentDefinition")[0];
    let res = s(&nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]);
    assert!(
        resources.contains(res),
        "{res} is not a pool: {resources:?}"
    );
    let conf: serde_json::Value = serde_json::from_str(s(&nad["spec"]["config"])).unwrap();
    assert_eq!(
        format!("/usr/bin/{}", conf["type"].as_str().unwrap()),
        "/usr/bin/dpdk-cni"
    );
    assert!(bins.contains("/usr/bin/dpdk-cni"));
    assert_eq!(conf["deviceType"], "vfio-pci");
    // libcni hands a plugin runtimeConfig only for capabilities it declares:
    // without these Multus' network-status gets no device-info.
    assert_eq!(conf["capabilities"]["CNIDeviceInfoFile"], true);
    assert_eq!(conf["capabilities"]["deviceID"], true);

    // The testpmd pod: the network, the resource, hugepages, the env the plugin sets.
    let pod = find(&docs, "Pod")[0];
    assert_eq!(
        pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"],
        nad["metadata"]["name"]
    );
    let c = &pod["spec"]["containers"][0];
    for k in ["requests", "limits"] {
        assert_eq!(c["resources"][k][res], "1");
        assert!(c["resources"][k]["hugepages-2Mi"].is_string());
    }
    let args = serde_yaml::to_string(&c["args"]).unwrap();
    assert!(
        args.contains(&dpdk_cni_node::allocate::env_name(res)),
        "{args}"
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["emptyDir"]["medium"],
        "HugePages-2Mi"
    );
}
