//! `dpdk-cni-node probe`: the DaemonSet's liveness and readiness checks,
//! run by the kubelet in the daemon's container (an exec probe).
//!
//! - liveness (`probe`): every pool of the config has its socket in the
//!   kubelet's device-plugins directory and the plugin behind it answers
//!   `GetDevicePluginOptions` within the timeout. A daemon whose runtime is
//!   stuck, or that lost a socket and did not serve it again, fails. A
//!   config that does not read does not fail liveness (a restart would not
//!   fix it and the daemon keeps serving its last good pools): then every
//!   `dpdk-cni-*.sock` present must answer.
//! - readiness (`probe --ready`): the config reads, and every pool's plugin
//!   also sends its device list on `ListAndWatch`, the first thing the
//!   kubelet asks after registration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::device_plugin_client::DevicePluginClient;
use crate::api::Empty;
use crate::config::Config;
use crate::plugin::{connect_unix, endpoint_name};

/// The probe's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The config file the daemon serves (its pools are the sockets checked).
    #[arg(
        long,
        alias = "config-file",
        default_value = "/etc/dpdk-cni/config.json"
    )]
    pub config: PathBuf,
    /// The kubelet's device plugin directory.
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    pub kubelet_dir: PathBuf,
    /// The resource prefix of pools that name none (as given to `run`).
    #[arg(long)]
    pub resource_prefix: Option<String>,
    /// Readiness: the config must read and every pool list its devices.
    #[arg(long)]
    pub ready: bool,
    /// How long each plugin has to answer.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// The sockets to check: `(what, path)`.
fn targets(a: &ProbeArgs) -> Result<Vec<(String, PathBuf)>, String> {
    match Config::load(&a.config) {
        Ok(cfg) => {
            let prefix = cfg
                .resource_prefix
                .as_deref()
                .or(a.resource_prefix.as_deref());
            Ok(cfg
                .resource_list
                .iter()
                .map(|p| {
                    let r = p.full_name(prefix);
                    let sock = a.kubelet_dir.join(endpoint_name(&r));
                    (r, sock)
                })
                .collect())
        }
        Err(e) if a.ready => Err(format!("not ready: {e}")),
        Err(_) => Ok(present_sockets(&a.kubelet_dir)),
    }
}

fn present_sockets(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with("dpdk-cni-") && n.ends_with(".sock")).then(|| (n, e.path()))
        })
        .collect();
    out.sort();
    out
}

async fn check(what: &str, sock: &Path, ready: bool, timeout: Duration) -> Result<(), String> {
    if !sock.exists() {
        return Err(format!("{what}: {} does not exist", sock.display()));
    }
    let answer = async {
        let ch = connect_unix(sock)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let mut c = DevicePluginClient::new(ch);
        c.get_device_plugin_options(Empty {})
            .await
            .map_err(|s| format!("GetDevicePluginOptions: {}", s.message()))?;
        if ready {
            let mut s = c
                .list_and_watch(Empty {})
                .await
                .map_err(|s| format!("ListAndWatch: {}", s.message()))?
                .into_inner();
            s.message()
                .await
                .map_err(|s| format!("ListAndWatch: {}", s.message()))?
                .ok_or("ListAndWatch ended without a device list")?;
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{what} ({}): {e}", sock.display())),
        Err(_) => Err(format!(
            "{what} ({}): no answer within {} ms",
            sock.display(),
            timeout.as_millis()
        )),
    }
}

/// Runs the probe; `Ok` with a line saying what answered, `Err` with every
/// failure.
pub fn probe(a: &ProbeArgs) -> Result<String, String> {
    let targets = targets(a)?;
    let timeout = Duration::from_millis(a.timeout_ms.max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the probe's runtime: {e}"))?;
    let failures: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for (what, sock) in &targets {
            if let Err(e) = check(what, sock, a.ready, timeout).await {
                out.push(e);
            }
        }
        out
    });
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let names: Vec<&str> = targets.iter().map(|(w, _)| w.as_str()).collect();
    Ok(format!(
        "{}: {} plugin(s) answer{}{}",
        if a.ready { "ready" } else { "alive" },
        names.len(),
        if names.is_empty() { "" } else { ": " },
        names.join(", ")
    ))
}

/// The subcommand: exit status 0 when the probe passes, 1 otherwise.
pub fn main(a: ProbeArgs) -> anyhow::Result<()> {
    match probe(&a) {
        Ok(line) => {
            println!("{line}");
            Ok(())
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            std::process::exit(1);
        }
    }
}
