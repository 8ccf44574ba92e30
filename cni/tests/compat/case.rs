//! The compatibility data (`tests/compat/sriov-cni/*.json`, described in
//! `tests/compat/README.md`): one upstream netconf per file, where it comes
//! from, and what sriov-cni does with it on each kind of VF.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Where a config was copied from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub repo: String,
    pub path: String,
    pub commit: String,
    /// A release tag holding the same text, when there is one.
    #[serde(default)]
    pub tag: Option<String>,
    /// Which part of the file (a heading, a test's name, a template and its values).
    pub what: String,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self
            .tag
            .as_deref()
            .unwrap_or(&self.commit[..12.min(self.commit.len())]);
        write!(f, "{} {} @ {}, {}", self.repo, self.path, at, self.what)
    }
}

/// The NetworkAttachmentDefinition around the config, as Multus reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nad {
    /// `metadata.name`: Multus puts it in a config without a `name`.
    pub name: String,
    /// The `k8s.v1.cni.cncf.io/resourceName` annotation: Multus then
    /// injects the allocated VF as `deviceID` and `pciBusID`.
    #[serde(default, rename = "resourceName")]
    pub resource_name: Option<String>,
    /// The document shows the config alone; this wrapper is the one its
    /// README describes (`spec.config` of a NAD with a resourceName).
    #[serde(default)]
    pub assumed: bool,
}

/// How the VF is found before ADD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VfSetup {
    /// On its kernel driver with a netdev on the node (igbvf here).
    #[serde(rename = "kernel")]
    Kernel,
    /// Bound to vfio-pci by the operator or an administrator.
    #[serde(rename = "vfio-pci")]
    VfioPci,
    /// Bound to igb_uio.
    #[serde(rename = "igb_uio")]
    IgbUio,
    /// Bound to vfio-pci by dpdk-cni-node's no-IOMMU early bind at Allocate.
    #[serde(rename = "vfio-pci-early-bind")]
    VfioEarlyBind,
}

impl VfSetup {
    pub fn driver(self) -> &'static str {
        match self {
            VfSetup::Kernel => "igbvf",
            VfSetup::VfioPci | VfSetup::VfioEarlyBind => "vfio-pci",
            VfSetup::IgbUio => "igb_uio",
        }
    }
}

/// How the plugin is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Invocation {
    /// As Multus and libcni call a delegate.
    #[default]
    #[serde(rename = "multus")]
    Multus,
    /// The config text on stdin as it is, as the upstream test runs it.
    #[serde(rename = "direct")]
    Direct,
}

/// One ADD, CHECK, DEL cycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub vf: VfSetup,
    #[serde(default)]
    pub invocation: Invocation,
    /// The `mac` of the pod's network selection element.
    #[serde(default)]
    pub pod_mac: Option<String>,
    /// The VF netdev's MTU on the node before ADD.
    #[serde(default)]
    pub netdev_mtu: Option<u32>,
    /// What the pod's application does to its interface between ADD and DEL.
    #[serde(default)]
    pub pod_sets_mtu: Option<u32>,
    /// Another pod holds the VF through the same network before this ADD.
    #[serde(default)]
    pub held_by_another_pod: bool,
    pub expect: Expect,
    /// Expectations (paths as `result.interfaces.0.mtu`) ours does not meet
    /// yet: each must still differ, and is reported.
    #[serde(default)]
    pub open: Vec<String>,
}

/// ADD accepted, or refused with a CNI code and a message part.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub code: u64,
    pub msg: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drivers {
    pub after_add: String,
    pub after_del: String,
}

/// The pod's interface after ADD.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodLink {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `None`: ADD succeeds.
    #[serde(default)]
    pub refused: Option<Refusal>,
    /// The DEL a runtime sends after a refused ADD fails too (`None`: it succeeds).
    #[serde(default)]
    pub del_refused: Option<Refusal>,
    #[serde(default)]
    pub driver: Option<Drivers>,
    /// Part of the result; `"<netns>"` stands for CNI_NETNS.
    #[serde(default)]
    pub result: Option<Value>,
    /// Part of the VF's admin state after ADD, as the PF reports it.
    #[serde(default)]
    pub vf: Option<Value>,
    #[serde(default)]
    pub pod_link: Option<PodLink>,
    /// `"ok"`, or `"not issued"` where libcni sends no CHECK (cniVersion below 0.4.0).
    #[serde(default)]
    pub check: Option<String>,
    /// A `logFile` on the node that ADD writes to.
    #[serde(default)]
    pub log_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub source: Source,
    /// The same text elsewhere upstream (or with only `name` changed).
    #[serde(default)]
    pub also: Vec<Source>,
    pub nad: Nad,
    /// For a rendered config: the template and the values it was given.
    #[serde(default)]
    pub render: Option<Value>,
    /// The netconf (`spec.config`), or a conflist whose first plugin is sriov.
    #[serde(default)]
    pub config: Option<Value>,
    /// The config as text, when it is not valid JSON.
    #[serde(default)]
    pub config_text: Option<String>,
    /// `${NAME}` placeholders in the upstream text and what they stand for.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// What sriov-cni does with it, with the source lines that say so.
    pub upstream: String,
    /// Ids from `differences.json` where our expected outcome is ours on purpose.
    #[serde(default)]
    pub differences: Vec<String>,
    pub runs: Vec<Run>,
    #[serde(skip)]
    pub file: PathBuf,
}

/// A difference from sriov-cni kept on purpose (`differences.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    pub ours: String,
    pub upstream: String,
    pub why: String,
}

/// `tests/compat` in the repository.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat")
}

pub fn load_differences() -> BTreeMap<String, Difference> {
    let p = data_dir().join("differences.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every case, sorted by file name; a file that does not parse fails here.
pub fn load_cases() -> Vec<Case> {
    let dir = data_dir().join("sriov-cni");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut c: Case = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not a compat case: {e}", p.display()));
            c.file = p;
            c
        })
        .collect()
}

impl Source {
    /// What is missing for a reader to find the text upstream.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.commit.len() != 40 || !self.commit.chars().all(|c| c.is_ascii_hexdigit()) {
            p.push(format!(
                "{}: commit {:?} is not 40 hex digits",
                self.path, self.commit
            ));
        }
        if self.repo.split('/').count() != 2 || self.path.is_empty() || self.what.is_empty() {
            p.push(format!(
                "{:?} {:?}: give repo (owner/name), path and what",
                self.repo, self.path
            ));
        }
        p
    }
}

impl Difference {
    pub fn is_complete(&self) -> bool {
        !self.ours.is_empty() && !self.upstream.is_empty() && !self.why.is_empty()
    }
}

impl Case {
    /// What is wrong with the case as data, before it runs.
    pub fn problems(&self, diffs: &BTreeMap<String, Difference>) -> Vec<String> {
        let mut p = self.source.problems();
        p.extend(self.also.iter().flat_map(Source::problems));
        if self.upstream.is_empty() {
            p.push("say what upstream does in \"upstream\"".into());
        }
        if self.source.repo.ends_with("sriov-network-operator")
            && self.render.as_ref().and_then(|r| r.get("by")).is_none()
        {
            p.push("an operator render says how it was rendered (\"render\": {\"by\": ..})".into());
        }
        for d in &self.differences {
            match diffs.get(d) {
                None => p.push(format!("difference {d:?} is not in differences.json")),
                Some(x) if !x.is_complete() => p.push(format!("difference {d:?} is incomplete")),
                Some(_) => {}
            }
        }
        match (&self.config, &self.config_text) {
            (Some(_), None) => {}
            (None, Some(t)) if serde_json::from_str::<Value>(t).is_err() => {}
            (None, Some(_)) => p.push("config_text is valid JSON: give it as config".into()),
            _ => p.push("give exactly one of config and config_text".into()),
        }
        if self.runs.is_empty() {
            p.push("no runs".into());
        }
        p
    }

    pub fn name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    /// The config text with its placeholders filled in.
    pub fn text(&self) -> String {
        let mut t = match (&self.config, &self.config_text) {
            (Some(v), None) => v.to_string(),
            (None, Some(t)) => t.clone(),
            _ => panic!(
                "{}: give exactly one of config and config_text",
                self.name()
            ),
        };
        for (k, v) in &self.vars {
            t = t.replace(&format!("${{{k}}}"), v);
        }
        t
    }

    /// The CNI version libcni hands the plugin: the config's (or the
    /// conflist's), `""` when it has none.
    pub fn cni_version(&self) -> String {
        self.config
            .as_ref()
            .and_then(|c| c.get("cniVersion"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }
}
