//! docker/k8s/dra: the DRA driver's manifests parse, run the image's binary
//! with arguments it accepts, name the driver the daemon serves, mount what
//! it reads and writes where it looks, and their claim configurations are
//! ones Prepare accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/k8s/dra")
}

fn docs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                out.push((name.clone(), v));
            }
        }
    }
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn of<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn flag<'a>(cmd: &[&'a str], f: &str) -> &'a str {
    cmd[cmd
        .iter()
        .position(|a| *a == f)
        .unwrap_or_else(|| panic!("{f} in {cmd:?}"))
        + 1]
}

#[test]
fn the_dra_manifests_match_the_image_and_the_driver() {
    let docs = docs();
    // The kustomization applies every object but the examples.
    let kust = of(&docs, "Kustomization")[0];
    let listed: BTreeSet<&str> = kust["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let files: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| d["kind"] != "Kustomization")
        .map(|(f, _)| f.as_str())
        .collect();
    let examples = BTreeSet::from(["claim-templates.yaml", "testpmd-pod.yaml"]);
    assert_eq!(
        listed,
        files.difference(&examples).copied().collect(),
        "resources of the kustomization"
    );

    let ds = of(&docs, "DaemonSet")[0];
    let spec = &ds["spec"]["template"]["spec"];
    let main = &spec["containers"][0];
    let cmd: Vec<&str> = main["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(cmd[..2], ["/usr/bin/dpdk-cni-node", "dra"]);
    let driver = flag(&cmd, "--driver-name");
    assert_eq!(driver, dpdk_cni_node::dra::DEFAULT_DRIVER);
    for c in spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_sequence().unwrap())
    {
        let cmd: Vec<&str> = c["command"].as_sequence().unwrap().iter().map(s).collect();
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
    // Host paths, mounted where the daemon and the plugin it runs look.
    let mounts: std::collections::BTreeMap<&str, &str> = main["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (s(&m["name"]), s(&m["mountPath"])))
        .collect();
    let mut host = std::collections::BTreeMap::new();
    for v in spec["volumes"].as_sequence().unwrap() {
        if let Some(p) = v["hostPath"]["path"].as_str() {
            if let Some(at) = mounts.get(s(&v["name"])) {
                host.insert(p, *at);
            }
        }
    }
    for (h, at) in [
        ("/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins"),
        (
            "/var/lib/kubelet/plugins_registry",
            "/var/lib/kubelet/plugins_registry",
        ),
        ("/var/run/cdi", "/var/run/cdi"),
        ("/etc/dpdk-cni", "/etc/dpdk-cni"),
        ("/sys", "/sys"),
        ("/dev/vfio", "/dev/vfio"),
        ("/var/lib/cni/dpdk-cni", flag(&cmd, "--state-dir")),
        (
            "/var/run/k8s.cni.cncf.io/devinfo",
            "/var/run/k8s.cni.cncf.io/devinfo",
        ),
    ] {
        assert_eq!(host.get(h).copied(), Some(at), "hostPath {h}");
    }
    assert_eq!(
        mounts["pools"],
        Path::new(flag(&cmd, "--config-file"))
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
    );

    // RBAC: the verbs the driver uses, on the two resources it uses.
    let role = of(&docs, "ClusterRole")[0];
    let rules: Value = serde_yaml::from_str(
        r#"[{apiGroups: ["resource.k8s.io"], resources: ["resourceslices"], verbs: ["get", "create", "update", "delete"]},
            {apiGroups: ["resource.k8s.io"], resources: ["resourceclaims"], verbs: ["get"]}]"#,
    )
    .unwrap();
    assert_eq!(role["rules"], rules);
    assert_eq!(
        of(&docs, "ServiceAccount")[0]["metadata"]["name"],
        spec["serviceAccountName"]
    );

    // The DeviceClass selects the driver's devices.
    let class = of(&docs, "DeviceClass")[0];
    assert_eq!(s(&class["metadata"]["name"]), driver);
    let cel = s(&class["spec"]["selectors"][0]["cel"]["expression"]);
    assert!(
        cel.contains(&format!("device.driver == \"{driver}\"")),
        "{cel}"
    );

    // Each template's class is ours; its configuration one Prepare takes.
    let templates = of(&docs, "ResourceClaimTemplate");
    assert_eq!(templates.len(), 2);
    for t in &templates {
        let devices = &t["spec"]["spec"]["devices"];
        for r in devices["requests"].as_sequence().unwrap() {
            assert_eq!(
                s(&r["exactly"]["deviceClassName"]),
                s(&class["metadata"]["name"])
            );
        }
        let config: serde_json::Value =
            serde_json::to_value(&devices["config"]).unwrap_or(serde_json::Value::Null);
        let claim = serde_json::json!({"status": {"allocation": {"devices": {
            "results": [{"request": "vf", "driver": driver, "pool": "n", "device": "pci-0000-01-10-0"}],
            "config": if config.is_null() { serde_json::json!([]) } else { config }}}}});
        let got = dpdk_cni_node::dra::claim::allocated(&claim, driver, "example").unwrap();
        assert_eq!(got.len(), 1);
    }
    // The NUMA example selects with CEL on the driver's numaNode attribute.
    let numa = templates
        .iter()
        .find(|t| t["metadata"]["name"] == "dpdk-vf-numa0")
        .unwrap();
    let cel = s(
        &numa["spec"]["spec"]["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]
            ["expression"],
    );
    assert!(
        cel.contains(&format!("device.attributes[\"{driver}\"].numaNode == 0")),
        "{cel}"
    );

    // The pod: a claim from a template here, CDI only (no extended
    // resource), EAL arguments from dpdk-discover.
    let pod = of(&docs, "Pod")[0];
    let tname = &pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"];
    assert!(templates.iter().any(|t| &t["metadata"]["name"] == tname));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(
        c["resources"]["claims"][0]["name"],
        pod["spec"]["resourceClaims"][0]["name"]
    );
    for k in ["requests", "limits"] {
        let keys: Vec<&str> = c["resources"][k]
            .as_mapping()
            .unwrap()
            .keys()
            .map(s)
            .collect();
        assert_eq!(keys, ["cpu", "memory", "hugepages-2Mi"], "{k}");
    }
    assert_eq!(c["command"][0], "dpdk-discover");
    let args = serde_yaml::to_string(&c["args"]).unwrap();
    for eal in ["-a", "-l", "--huge-dir", "PCIDEVICE_"] {
        assert!(
            !args.contains(eal),
            "hand-written EAL argument {eal}: {args}"
        );
    }
}
