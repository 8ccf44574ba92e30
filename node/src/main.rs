//! dpdk-cni-node: the daemon (`run`, the default), `install-cni` for the
//! DaemonSet's init container, and `status`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dpdk_cni_node::{daemon, install, kube::KubeClient, status};

#[derive(Debug, Parser)]
#[command(name = "dpdk-cni-node", version, about)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// The root under which `sys/` and `dev/` are found (a fake tree in tests).
    #[arg(long, global = true, default_value = "/")]
    sysfs_root: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the device plugins and keep the node annotations (default).
    Run(RunArgs),
    /// Copy the dpdk-cni plugin into the host's CNI directory, atomically.
    InstallCni {
        /// The plugin binary (default: `dpdk-cni` next to this binary).
        #[arg(long)]
        from: Option<PathBuf>,
        /// The CNI binary directory, e.g. /host/opt/cni/bin.
        #[arg(long)]
        to: PathBuf,
        #[arg(long, default_value = install::PLUGIN)]
        name: String,
        /// Also install the node's settings from this file (checked) as
        /// `node.json` in `--settings-dir`.
        #[arg(long, requires = "settings_dir")]
        settings: Option<PathBuf>,
        /// The host's `/etc/dpdk-cni`, e.g. /host/etc/dpdk-cni.
        #[arg(long)]
        settings_dir: Option<PathBuf>,
    },
    /// Liveness/readiness check: the pools' plugin sockets answer.
    Probe(dpdk_cni_node::probe::ProbeArgs),
    /// Show PFs, VFs, drivers, NUMA nodes, IOMMU groups, pools and holders.
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value = DEFAULT_STATE)]
        state_dir: PathBuf,
    },
}

const DEFAULT_CONFIG: &str = "/etc/dpdk-cni/config.json";
const DEFAULT_STATE: &str = "/var/lib/cni/dpdk-cni";

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// The config file (pools and node setup); reloaded when it changes.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The kubelet's device plugin directory.
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    kubelet_dir: PathBuf,
    /// The dpdk-cni state directory (its ledger says which VFs pods hold).
    #[arg(long, default_value = DEFAULT_STATE)]
    state_dir: PathBuf,
    /// This node's name, for the annotations (the DaemonSet sets NODE_NAME).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Use this kubeconfig instead of the pod's service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Do not publish free VFs on the Node object.
    #[arg(long)]
    no_annotate: bool,
    /// How often device health is read from sysfs.
    #[arg(long, default_value_t = 500)]
    health_interval_ms: u64,
    /// Tests: a plain-HTTP API server with no credentials.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    api_server: Option<String>,
    /// Tests: the least time between two Node updates.
    #[arg(long, hide = true, default_value_t = 1000)]
    annotate_interval_ms: u64,
    /// Tests: the fake sysfs tree's emulated kernel answers writes.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    emulated_kernel: bool,
    /// Tests: VF admin state through a recording fake in this directory.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    fake_netlink: Option<PathBuf>,
}

fn kube_client(a: &RunArgs) -> anyhow::Result<Option<KubeClient>> {
    if a.no_annotate {
        return Ok(None);
    }
    #[cfg(feature = "test-hooks")]
    if let Some(s) = &a.api_server {
        return Ok(Some(KubeClient::insecure_http(s)?));
    }
    if let Some(k) = &a.kubeconfig {
        return Ok(Some(KubeClient::from_kubeconfig(k)?));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(Some(KubeClient::in_cluster()?));
    }
    Ok(None)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Run(cli.run)) {
        Cmd::Run(a) => daemon::run(daemon::Options {
            sysfs_root: cli.sysfs_root,
            kube: kube_client(&a)?,
            config: a.config,
            kubelet_dir: a.kubelet_dir,
            state_dir: a.state_dir,
            node_name: a.node_name,
            health_interval: Duration::from_millis(a.health_interval_ms.max(50)),
            annotate_interval: Duration::from_millis(a.annotate_interval_ms),
            #[cfg(feature = "test-hooks")]
            fakes: daemon::Fakes {
                emulated_kernel: a.emulated_kernel,
                netlink: a.fake_netlink,
            },
        }),
        Cmd::InstallCni {
            from,
            to,
            name,
            settings,
            settings_dir,
        } => {
            if let (Some(s), Some(dir)) = (&settings, &settings_dir) {
                let dest = install::install_settings(s, dir)?;
                println!("installed {} from {}", dest.display(), s.display());
            }
            let from = match from {
                Some(f) => f,
                None => install::default_source().context("finding this binary")?,
            };
            let dest = install::install(&from, &to, &name)?;
            println!("installed {} from {}", dest.display(), from.display());
            Ok(())
        }
        Cmd::Probe(a) => dpdk_cni_node::probe::main(a),
        Cmd::Status { config, state_dir } => {
            let sysfs = vfio::Sysfs::new(&cli.sysfs_root);
            let cfg = if config.exists() {
                Some(dpdk_cni_node::config::Config::load(&config)?)
            } else {
                None
            };
            let claims = ledger::Ledger::new(&state_dir)
                .claims()?
                .into_iter()
                .map(|(addr, c)| (addr.to_string(), c))
                .collect::<Vec<_>>();
            print!("{}", status::render(&sysfs, cfg.as_ref(), &claims)?);
            Ok(())
        }
    }
}
