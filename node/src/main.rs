//! dpdk-cni-node: the daemon (`run`, the default), `install-cni` for the
//! DaemonSet's init container, and `status`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use dpdk_cni_node::args::{self, go_bool, go_int, LongFlag};
use dpdk_cni_node::config::DEFAULT_PREFIX;
use dpdk_cni_node::{daemon, install, kube::KubeClient, log, status};

#[derive(Debug, Parser)]
#[command(name = "dpdk-cni-node", version, about)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// The root under which `sys/`, `dev/`, `proc/` and `--use-cdi`'s
    /// `var/run/cdi` are found (a fake tree in tests).
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
    /// Serve the pools as a DRA driver: ResourceSlices for this node, and
    /// the kubelet's DRA plugin service (Prepare binds to vfio-pci).
    Dra(DraArgs),
    /// Liveness/readiness check: the pools' plugin sockets answer.
    Probe(dpdk_cni_node::probe::ProbeArgs),
    /// Show PFs, VFs, drivers, NUMA nodes, IOMMU groups, pools and holders.
    Status {
        #[arg(long, alias = "config-file", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        resource_prefix: String,
        #[arg(long, default_value = DEFAULT_STATE)]
        state_dir: PathBuf,
    },
}

const DEFAULT_CONFIG: &str = "/etc/dpdk-cni/config.json";
/// The upstream device plugin's default config file.
const UPSTREAM_CONFIG: &str = "/etc/pcidp/config.json";
const DEFAULT_STATE: &str = "/var/lib/cni/dpdk-cni";

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// The config file (pools and node setup); reloaded when it changes.
    /// Default: /etc/dpdk-cni/config.json, else /etc/pcidp/config.json
    /// (the upstream device plugin's), whichever exists.
    #[arg(long, conflicts_with = "config_file")]
    config: Option<PathBuf>,
    /// The same, by the upstream device plugin's name.
    #[arg(long, value_name = "CONFIG")]
    config_file: Option<PathBuf>,
    /// The resource prefix of pools that name none (in the pool or the file).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    resource_prefix: String,
    /// Allocate answers with CDI device names (spec files in /var/run/cdi,
    /// or the config's cdi.specDir).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    use_cdi: bool,
    /// Also append log lines to dpdk-cni-node.log in this directory; a
    /// relative one is under /var/log (the upstream image's meaning).
    #[arg(long, alias = "log_dir")]
    log_dir: Option<PathBuf>,
    /// Verbosity, an integer as glog's -v: 4 and up adds debug lines.
    #[arg(long, alias = "v", default_value = "0", value_parser = go_int,
          allow_negative_numbers = true)]
    log_level: i32,
    /// glog's; logs always go to stderr.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    logtostderr: Option<bool>,
    /// glog's; logs always go to stderr.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    alsologtostderr: Option<bool>,
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
    /// Tests: the least time between two Node updates.
    #[arg(long, hide = true, default_value_t = 1000)]
    annotate_interval_ms: u64,
    #[cfg(feature = "test-hooks")]
    #[command(flatten)]
    hooks: TestHooks,
}

/// The tests' flags, in the `test-hooks` build only.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, clap::Args)]
struct TestHooks {
    /// Tests: a plain-HTTP API server with no credentials.
    #[arg(long, hide = true)]
    api_server: Option<String>,
    /// Tests: the fake sysfs tree's emulated kernel answers writes.
    #[arg(long, hide = true)]
    emulated_kernel: bool,
    /// Tests: VF admin state through a recording fake in this directory.
    #[arg(long, hide = true)]
    fake_netlink: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
struct DraArgs {
    /// The driver name (a DNS subdomain of yours): DeviceClasses select it.
    #[arg(long, default_value = dpdk_cni_node::dra::DEFAULT_DRIVER)]
    driver_name: String,
    /// The pools' config file, as `run` reads it.
    #[arg(long, alias = "config", value_name = "CONFIG")]
    config_file: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_PREFIX)]
    resource_prefix: String,
    /// The dpdk-cni state directory (shared with the plugin).
    #[arg(long, default_value = DEFAULT_STATE)]
    state_dir: PathBuf,
    /// This node's name (the DaemonSet sets NODE_NAME).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubelet's plugin directory (the DRA socket is `<driver>/dra.sock` in it).
    #[arg(long, default_value = "/var/lib/kubelet/plugins")]
    kubelet_plugins_dir: PathBuf,
    /// The kubelet's plugin registration directory.
    #[arg(long, default_value = "/var/lib/kubelet/plugins_registry")]
    kubelet_registry_dir: PathBuf,
    /// Where the claims' CDI spec files go (containerd reads /var/run/cdi).
    #[arg(long, default_value = "/var/run/cdi")]
    cdi_dir: PathBuf,
    /// How often devices are discovered again and the slice compared.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// The dpdk-cni plugin, run to prepare and release devices (default:
    /// `dpdk-cni` next to this binary, as the image has it).
    #[arg(long)]
    cni_bin: Option<PathBuf>,
    #[arg(long, alias = "v", default_value = "0", value_parser = go_int,
          allow_negative_numbers = true)]
    log_level: i32,
    #[cfg(feature = "test-hooks")]
    #[command(flatten)]
    hooks: TestHooks,
}

fn dra(sysfs_root: PathBuf, a: DraArgs) -> anyhow::Result<()> {
    log::init(a.log_level, None);
    let config = args::config_path(
        a.config_file.as_deref(),
        &[Path::new(DEFAULT_CONFIG), Path::new(UPSTREAM_CONFIG)],
    )
    .map_err(anyhow::Error::msg)?;
    // Outside a pod and without a kubeconfig, in_cluster says what is missing.
    let kube = match api_client(test_server!(a), a.kubeconfig.as_deref())? {
        Some(k) => k,
        None => KubeClient::in_cluster()?,
    };
    #[allow(unused_mut)]
    let mut sysfs = vfio::Sysfs::new(&sysfs_root);
    #[allow(unused_mut)]
    let mut plugin_env = Vec::new();
    #[cfg(feature = "test-hooks")]
    {
        if a.hooks.emulated_kernel {
            sysfs = vfio::fake::emulated(&sysfs_root);
            plugin_env.push((
                "DPDK_CNI_FAKE_ROOT".into(),
                sysfs_root.display().to_string(),
            ));
        }
        if let Some(p) = &a.hooks.fake_netlink {
            plugin_env.push(("DPDK_CNI_FAKE_NETLINK".into(), p.display().to_string()));
        }
    }
    let plugin = match a.cni_bin {
        Some(p) => p,
        None => install::default_source().context("finding the dpdk-cni plugin")?,
    };
    dpdk_cni_node::dra::run(dpdk_cni_node::dra::Options {
        driver: a.driver_name,
        sysfs,
        plugin,
        plugin_env,
        config,
        resource_prefix: a.resource_prefix,
        state_dir: a.state_dir,
        node_name: a.node_name,
        kube,
        plugins_dir: a.kubelet_plugins_dir,
        registry_dir: a.kubelet_registry_dir,
        cdi_dir: a.cdi_dir,
        interval: Duration::from_millis(a.interval_ms.max(100)),
    })
}

/// The tests' plain-HTTP API server of a command's flags (none in a
/// release build).
macro_rules! test_server {
    ($a:expr) => {{
        #[cfg(feature = "test-hooks")]
        let s = $a.hooks.api_server.as_deref();
        #[cfg(not(feature = "test-hooks"))]
        let s: Option<&str> = None;
        s
    }};
}
use test_server;

/// The API server the flags name: the tests' plain-HTTP one, a
/// kubeconfig, or the pod's service account; none outside a pod.
fn api_client(
    test_server: Option<&str>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Option<KubeClient>> {
    if let Some(s) = test_server {
        #[cfg(feature = "test-hooks")]
        return Ok(Some(KubeClient::insecure_http(s)?));
        #[cfg(not(feature = "test-hooks"))]
        unreachable!("no test server in a release build: {s}");
    }
    if let Some(k) = kubeconfig {
        return Ok(Some(KubeClient::from_kubeconfig(k)?));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(Some(KubeClient::in_cluster()?));
    }
    Ok(None)
}

fn kube_client(a: &RunArgs) -> anyhow::Result<Option<KubeClient>> {
    if a.no_annotate {
        return Ok(None);
    }
    api_client(test_server!(a), a.kubeconfig.as_deref())
}

/// Every long flag and alias of `cmd` and its subcommands.
fn long_flags(cmd: &clap::Command) -> Vec<LongFlag> {
    let mut out = Vec::new();
    for a in cmd.get_arguments() {
        let takes_next = a.get_action().takes_values()
            && !a.is_require_equals_set()
            && a.get_num_args().is_none_or(|n| n.min_values() > 0);
        let names = a
            .get_long()
            .into_iter()
            .chain(a.get_all_aliases().unwrap_or_default());
        out.extend(names.map(|n| LongFlag {
            name: n.to_string(),
            takes_next,
        }));
    }
    for sc in cmd.get_subcommands() {
        out.extend(long_flags(sc));
    }
    out
}

/// Sets up logging as `--log-level` and `--log-dir` say.
fn init_log(a: &RunArgs) -> anyhow::Result<()> {
    let dir = match &a.log_dir {
        Some(v) => log::resolve_dir(v).map_err(anyhow::Error::msg)?,
        None => None,
    };
    let file = dir
        .map(|d| log::open_file(&d))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    log::init(a.log_level, file);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let argv = args::go_style(std::env::args_os(), &long_flags(&cmd));
    let cli = Cli::parse_from(argv);
    match cli.cmd.unwrap_or(Cmd::Run(cli.run)) {
        Cmd::Run(a) => {
            // One line for what stops the daemon, in the log file too.
            if let Err(e) = run(cli.sysfs_root, a) {
                log::error(&format!("{e}; exiting"));
                std::process::exit(1);
            }
            Ok(())
        }
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
        Cmd::Dra(a) => {
            if let Err(e) = dra(cli.sysfs_root, a) {
                log::error(&format!("{e}; exiting"));
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Probe(a) => dpdk_cni_node::probe::main(a),
        Cmd::Status {
            config,
            resource_prefix,
            state_dir,
        } => {
            let sysfs = vfio::Sysfs::new(&cli.sysfs_root);
            let cfg = if config.exists() {
                Some(dpdk_cni_node::config::Config::load_with_prefix(
                    &config,
                    Some(&resource_prefix),
                )?)
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

fn run(sysfs_root: PathBuf, a: RunArgs) -> anyhow::Result<()> {
    init_log(&a)?;
    let named = a.config.as_deref().or(a.config_file.as_deref());
    let config = args::config_path(
        named,
        &[Path::new(DEFAULT_CONFIG), Path::new(UPSTREAM_CONFIG)],
    )
    .map_err(anyhow::Error::msg)?;
    daemon::run(daemon::Options {
        sysfs_root,
        kube: kube_client(&a)?,
        config,
        resource_prefix: a.resource_prefix,
        use_cdi: a.use_cdi,
        kubelet_dir: a.kubelet_dir,
        state_dir: a.state_dir,
        node_name: a.node_name,
        health_interval: Duration::from_millis(a.health_interval_ms.max(50)),
        annotate_interval: Duration::from_millis(a.annotate_interval_ms),
        #[cfg(feature = "test-hooks")]
        fakes: daemon::Fakes {
            emulated_kernel: a.hooks.emulated_kernel,
            netlink: a.hooks.fake_netlink,
        },
    })
}
