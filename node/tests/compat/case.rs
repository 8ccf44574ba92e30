//! One config file of `tests/compat/device-plugin/`: where it comes from,
//! the daemon flags upstream runs with there, the config, and the outcome
//! expected of dpdk-cni-node (upstream's, unless `difference` says why ours
//! is another).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// `tests/compat/device-plugin/`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/device-plugin")
}

/// Where the config was copied from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub repo: String,
    pub path: String,
    pub commit: String,
    #[serde(default)]
    pub tag: Option<String>,
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

/// How upstream's daemon runs where the config comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    /// Its `--resource-prefix`.
    #[serde(rename = "resourcePrefix")]
    pub resource_prefix: String,
    pub why: String,
}

/// The resource prefix the daemon takes when it is given no flag: the
/// upstream plugin's and ours.
pub const DEFAULT_PREFIX: &str = "intel.com";

/// An advertised resource and the PCI addresses of its devices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub resource: String,
    pub devices: Vec<String>,
}

/// Whether the file loads: `true`, or refused with part of upstream's
/// reason (`refused`) and of ours when it words it otherwise (`ours`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Loads {
    Yes(bool),
    Refused {
        refused: String,
        #[serde(default)]
        ours: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub loads: Loads,
    pub pools: Vec<Pool>,
    pub not_advertised: Vec<String>,
}

/// Our outcome differs from upstream's on purpose: what ours does, why
/// (with where the README says so), and upstream's outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    pub ours: String,
    pub why: String,
    pub upstream: Expected,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpCase {
    pub source: Source,
    #[serde(default)]
    pub render: Option<Value>,
    pub daemon: Daemon,
    pub node: String,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub config_text: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub difference: Option<Difference>,
    pub expected: Expected,
}

/// What a run of the daemon is to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The daemon stops at start; its message holds this.
    Refused(String),
    /// Every configured resource with the devices it lists (none for a
    /// pool that selects nothing).
    Pools(BTreeMap<String, BTreeSet<String>>),
}

impl DpCase {
    /// The config file's bytes, as the ConfigMap holds them.
    pub fn text(&self) -> String {
        match (&self.config, &self.config_text) {
            (Some(v), _) => serde_json::to_string_pretty(v).unwrap(),
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        }
    }

    /// The `--resource-prefix` flag the DaemonSet passes, if any: upstream's
    /// DaemonSet passes none when the prefix is the default.
    pub fn prefix_flag(&self) -> Option<String> {
        (self.daemon.resource_prefix != DEFAULT_PREFIX)
            .then(|| format!("--resource-prefix={}", self.daemon.resource_prefix))
    }

    /// What dpdk-cni-node is to do with the file.
    pub fn outcome(&self) -> Outcome {
        match &self.expected.loads {
            Loads::Refused { refused, ours } => {
                Outcome::Refused(ours.clone().unwrap_or_else(|| refused.clone()))
            }
            Loads::Yes(_) => {
                let mut out = BTreeMap::new();
                for p in &self.expected.pools {
                    out.insert(p.resource.clone(), p.devices.iter().cloned().collect());
                }
                for r in &self.expected.not_advertised {
                    out.insert(r.clone(), BTreeSet::new());
                }
                Outcome::Pools(out)
            }
        }
    }

    /// Whether the pool `resource` leaves NUMA topology out of its device
    /// list (`excludeTopology`, any case, as the Go decoder reads it).
    pub fn excludes_topology(&self, resource: &str) -> bool {
        let Some(list) = self
            .config
            .as_ref()
            .and_then(|c| c.get("resourceList"))
            .and_then(Value::as_array)
        else {
            return false;
        };
        list.iter().filter_map(Value::as_object).any(|p| {
            let field = |k: &str| {
                p.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            };
            let prefix = field("resourcePrefix")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(&self.daemon.resource_prefix);
            let name = field("resourceName").and_then(Value::as_str).unwrap_or("");
            format!("{prefix}/{name}") == resource
                && field("excludeTopology").and_then(Value::as_bool) == Some(true)
        })
    }

    /// What is wrong with the file as data, before it runs.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.source.commit.len() != 40
            || !self.source.commit.chars().all(|c| c.is_ascii_hexdigit())
        {
            p.push(format!(
                "source commit {:?} is not 40 hex digits",
                self.source.commit
            ));
        }
        if self.config.is_some() == self.config_text.is_some() {
            p.push("give exactly one of config and config_text".into());
        }
        match (&self.expected.loads, &self.difference) {
            (Loads::Yes(false), _) => p.push("loads is true or {\"refused\": why}".into()),
            (Loads::Refused { .. }, _)
                if !self.expected.pools.is_empty() || !self.expected.not_advertised.is_empty() =>
            {
                p.push(
                    "a refused config advertises nothing: pools and not_advertised stay empty"
                        .into(),
                )
            }
            _ => {}
        }
        for pool in self.expected.pools.iter().filter(|p| p.devices.is_empty()) {
            p.push(format!(
                "{}: an empty pool belongs in not_advertised",
                pool.resource
            ));
        }
        if let Some(d) = &self.difference {
            if d.ours.is_empty() || d.why.is_empty() {
                p.push("a difference says what ours does and why".into());
            }
            if d.upstream == self.expected {
                p.push("difference.upstream is the expected outcome: no difference".into());
            }
        }
        p
    }
}

/// Every config file (all but the node descriptions), sorted by name.
pub fn load_cases() -> Vec<(String, DpCase)> {
    let dir = data_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("node"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let t = std::fs::read_to_string(&p).unwrap();
            let c: DpCase = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, c)
        })
        .collect()
}
