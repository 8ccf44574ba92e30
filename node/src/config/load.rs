//! The config as the daemon loads it, at start and on every change: read,
//! checked, and what it holds logged.

use std::path::Path;

use super::Config;
use crate::error::{NodeError, Result};
use crate::log;

/// Reads and checks the config; the error names the file and the problem.
/// A config with no pools and no node setup is refused too: the upstream
/// plugin stops on one ("no resource configuration").
pub fn load_checked(path: &Path, default_prefix: &str) -> Result<Config> {
    let cfg = Config::load_with_prefix(path, Some(default_prefix)).map_err(|e| match e {
        NodeError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound
                && path.to_string_lossy().contains("$(") =>
        {
            NodeError::Config {
                path: path.to_path_buf(),
                msg: format!(
                    "{source}; the kubelet expands $(VAR) in args only when the container's \
                     env defines VAR (NODE_NAME from fieldRef spec.nodeName)"
                ),
            }
        }
        e => e,
    })?;
    if cfg.resource_list.is_empty() && cfg.node_setup.pfs.is_empty() {
        return Err(NodeError::Config {
            path: path.to_path_buf(),
            msg: "no pools in resourceList and no nodeSetup: nothing to serve".into(),
        });
    }
    Ok(cfg)
}

/// Logs what a config just loaded holds, and what its selectors cannot do.
pub fn log_loaded(path: &Path, cfg: &Config) {
    let names: Vec<String> = cfg
        .resource_list
        .iter()
        .map(|p| p.full_name(cfg.resource_prefix.as_deref()))
        .collect();
    log::info(&format!(
        "config {}: {} pools ({})",
        path.display(),
        names.len(),
        names.join(", ")
    ));
    for w in cfg.warnings() {
        log::warn(&w);
    }
    log::debug(&format!("config {}: {cfg:?}", path.display()));
}
