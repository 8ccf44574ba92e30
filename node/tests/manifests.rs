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
        .filter(|p| p.is_file())
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
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "NetworkAttachmentDefinition",
        "Pod",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "Kustomization",
    ] {
        assert!(!find(&docs, kind).is_empty(), "no {kind}");
    }
    assert!(
        find(&docs, "Namespace").is_empty(),
        "a namespace of our own"
    );
    // Where the upstream device plugin runs, so its ConfigMap can be mounted.
    let ns = "kube-system";

    // RBAC: one verb on one resource, bound to the DaemonSet's service account.
    let role = find(&docs, "ClusterRole")[0];
    let rules: Value =
        serde_yaml::from_str(r#"[{apiGroups: [""], resources: ["nodes"], verbs: ["patch"]}]"#)
            .unwrap();
    assert_eq!(role["rules"], rules, "the daemon only patches its Node");
    let binding = find(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = find(&docs, "ServiceAccount")[0];
    assert_eq!(s(&sa["metadata"]["namespace"]), ns);
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(s(&binding["subjects"][0]["namespace"]), ns);

    // The pools: the upstream plugin's ConfigMap, a config the daemon loads.
    let configmap = |name: &str| {
        *find(&docs, "ConfigMap")
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    let pools_cm = configmap("sriovdp-config");
    assert_eq!(s(&pools_cm["metadata"]["namespace"]), ns);
    let cfg = dpdk_cni_node::config::Config::parse(
        Path::new("sriovdp-config"),
        s(&pools_cm["data"]["config.json"]).as_bytes(),
    )
    .unwrap();
    let cm = configmap("dpdk-cni-config");
    assert_eq!(s(&cm["metadata"]["namespace"]), ns);
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
    assert_eq!(
        spec["nodeSelector"]["feature.node.kubernetes.io/network-sriov.capable"],
        "true"
    );
    let mut containers: Vec<&Value> = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect();
    containers.extend(spec["containers"].as_sequence().unwrap());
    let mut subcommands = Vec::new();
    let mut mounts = BTreeMap::new();
    let run: Vec<&str> = containers[1]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let arg = |cmd: &[&str], flag: &str| -> String {
        cmd[cmd
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag} in {cmd:?}"))
            + 1]
        .to_string()
    };
    let mut commands: Vec<(String, Vec<&str>)> = Vec::new();
    for c in &containers {
        let cmd: Vec<&str> = c["command"].as_sequence().unwrap().iter().map(s).collect();
        commands.push((s(&c["name"]).to_string(), cmd));
    }
    // The probes: the image's binary, `probe` on the config `run` serves.
    for (kind, ready) in [("livenessProbe", false), ("readinessProbe", true)] {
        let p = &containers[1][kind];
        let cmd: Vec<&str> = p["exec"]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("no exec {kind}"))
            .iter()
            .map(s)
            .collect();
        assert_eq!(cmd[1], "probe", "{kind}");
        assert_eq!(cmd.contains(&"--ready"), ready, "{kind}: {cmd:?}");
        assert_eq!(
            arg(&cmd, "--config-file"),
            arg(&run, "--config-file"),
            "{kind}"
        );
        assert_eq!(
            arg(&cmd, "--kubelet-dir"),
            arg(&run, "--kubelet-dir"),
            "{kind}"
        );
        let timeout = p["timeoutSeconds"].as_u64().unwrap_or(1);
        assert!(timeout >= 5, "{kind}: the probe waits up to 3 s per plugin");
        commands.push((kind.to_string(), cmd));
    }
    for (name, cmd) in &commands {
        assert!(
            bins.contains(cmd[0]),
            "{name} runs {}, not in the image",
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
    }
    for c in &containers {
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            mounts.insert(s(&m["name"]).to_string(), s(&m["mountPath"]).to_string());
        }
    }
    assert_eq!(subcommands, ["install-cni", "run", "probe", "probe"]);
    // `run` reads the pools where the upstream plugin does, from its ConfigMap.
    assert_eq!(arg(&run, "--config-file"), "/etc/pcidp/config.json");
    assert_eq!(mounts["pools"], "/etc/pcidp");
    let pools_vol = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "pools")
        .unwrap();
    assert_eq!(pools_vol["configMap"]["name"], "sriovdp-config");
    assert_eq!(pools_vol["configMap"]["items"][0]["key"], "config.json");
    assert_eq!(pools_vol["configMap"]["items"][0]["path"], "config.json");
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
        if v["configMap"]["name"] == "dpdk-cni-config" {
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

    // The testpmd pod: the network, the resource, hugepages; EAL arguments
    // from dpdk-discover, none written by hand.
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
    assert_eq!(c["command"][0], "dpdk-discover");
    assert_eq!(c["command"][1], "dpdk-testpmd");
    let args = serde_yaml::to_string(&c["args"]).unwrap();
    for eal in ["-a", "-l", "--huge-dir", "--socket-mem", "PCIDEVICE_"] {
        assert!(
            !args.contains(eal),
            "hand-written EAL argument {eal}: {args}"
        );
    }
    assert_eq!(
        pod["spec"]["volumes"][0]["emptyDir"]["medium"],
        "HugePages-2Mi"
    );
}

/// The expression of a policy variable.
fn variable<'a>(policy: &'a Value, name: &str) -> &'a str {
    s(&policy["spec"]["variables"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}"))["expression"])
}

/// The quoted strings of a CEL list literal such as `['a', 'b']`.
fn cel_strings(expr: &str) -> BTreeSet<String> {
    expr.split('\'')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn the_node_policy_holds_the_daemon_to_its_node_and_keys() {
    use dpdk_cni_node::annotate::{
        FREE_AVAILABLE, FREE_VFS, FREE_VFS_BY_POOL, SRIOV_AVAILABLE, SRIOV_COUNT,
    };
    let docs = load_all();
    let sa = find(&docs, "ServiceAccount")[0];
    let policy = find(&docs, "ValidatingAdmissionPolicy")[0];
    let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["resources"][0], "nodes");
    assert_eq!(rule["operations"][0], "UPDATE");
    // Only the daemon's requests are judged.
    let user = format!(
        "system:serviceaccount:{}:{}",
        s(&sa["metadata"]["namespace"]),
        s(&sa["metadata"]["name"])
    );
    let cond = s(&policy["spec"]["matchConditions"][0]["expression"]);
    assert!(cond.contains(&format!("'{user}'")), "{cond}");
    // Its keys are the ones the daemon writes, no more and no fewer.
    assert_eq!(
        cel_strings(variable(policy, "ownLabels")),
        BTreeSet::from([SRIOV_AVAILABLE.to_string(), FREE_AVAILABLE.to_string()])
    );
    assert_eq!(
        cel_strings(variable(policy, "ownAnnotations")),
        BTreeSet::from([
            SRIOV_COUNT.to_string(),
            FREE_VFS.to_string(),
            FREE_VFS_BY_POOL.to_string()
        ])
    );
    assert!(variable(policy, "nodeName").contains("authentication.kubernetes.io/node-name"));
    let checks: Vec<&str> = policy["spec"]["validations"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| s(&v["expression"]))
        .collect();
    assert!(checks
        .iter()
        .any(|c| c.contains("object.metadata.name == variables.nodeName")));
    assert!(checks.iter().any(|c| c.contains("variables.ownLabels")));
    assert!(checks
        .iter()
        .any(|c| c.contains("variables.ownAnnotations")));
    assert!(checks.contains(&"object.spec == oldObject.spec"));
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding")[0];
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
}

fn kustomization(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(v["kind"], "Kustomization", "{}", path.display());
    v
}

#[test]
fn kustomize_base_and_overlays_patch_only_the_cni_binary_directory() {
    let k8s = docker_dir().join("k8s");
    let base = kustomization(&k8s.join("kustomization.yaml"));
    let resources: Vec<&str> = base["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(resources, ["rbac.yaml", "configmap.yaml", "daemonset.yaml"]);
    for r in &resources {
        assert!(k8s.join(r).is_file(), "{r}");
    }
    let docs = load_all();
    let ds = find(&docs, "DaemonSet")[0];
    let volumes = ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let base_bin = volumes.iter().find(|v| v["name"] == "cni-bin").unwrap();
    assert_eq!(base_bin["hostPath"]["path"], "/opt/cni/bin");
    for (overlay, bin) in [
        ("k3s", "/var/lib/rancher/k3s/data/cni"),
        ("openshift", "/var/lib/cni/bin"),
    ] {
        let dir = docker_dir().join("overlays").join(overlay);
        let k = kustomization(&dir.join("kustomization.yaml"));
        let res: Vec<&str> = k["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        assert_eq!(res[0], "../../k8s", "{overlay}");
        for r in &res[1..] {
            assert!(dir.join(r).is_file(), "{overlay}: {r}");
        }
        let patches = k["patches"].as_sequence().unwrap();
        assert_eq!(patches.len(), 1, "{overlay}");
        let p: Value = serde_yaml::from_str(s(&patches[0]["patch"])).unwrap();
        assert_eq!(p["kind"], "DaemonSet");
        assert_eq!(p["metadata"]["name"], ds["metadata"]["name"]);
        assert_eq!(p["metadata"]["namespace"], ds["metadata"]["namespace"]);
        let pv = p["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap();
        assert_eq!(pv.len(), 1, "{overlay}: only the CNI binary directory");
        assert_eq!(pv[0]["name"], "cni-bin");
        assert_eq!(pv[0]["hostPath"]["path"], bin, "{overlay}");
    }
    // OpenShift: the privileged SCC for the daemon's service account.
    let scc: Value = serde_yaml::from_str(
        &std::fs::read_to_string(docker_dir().join("overlays/openshift/scc.yaml")).unwrap(),
    )
    .unwrap();
    let sa = find(&docs, "ServiceAccount")[0];
    assert_eq!(scc["roleRef"]["name"], "system:openshift:scc:privileged");
    assert_eq!(scc["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(scc["subjects"][0]["namespace"], sa["metadata"]["namespace"]);
    assert_eq!(scc["metadata"]["namespace"], sa["metadata"]["namespace"]);
}
