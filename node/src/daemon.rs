//! The daemon: node setup, one device plugin per pool, device health, and
//! the free-VF count on the Node object, on one single-threaded runtime.
//!
//! What wakes it:
//! - inotify on the config file's directory (reload), the CNI ledger's
//!   `devices/` (free-VF count) and the kubelet's device-plugins directory
//!   (re-registration);
//! - a health tick (500 ms by default) that reads one `driver` link per
//!   device and one directory per PF: sysfs raises no inotify events, and
//!   uevents do not cover a PF or VF directory simply vanishing in a test
//!   tree; the tick costs about a millisecond of CPU for 256 VFs;
//! - SIGTERM/SIGINT (stop: sockets are removed).
//!
//! It fails closed. A claim in the CNI ledger that does not read holds its
//! VF (not free, reported Unhealthy to the kubelet) and is read again every
//! tick; node setup that would destroy VFs waits while any is held or while
//! who holds them cannot be known, and is tried again every couple of
//! seconds and whenever the ledger or the kubelet's directory changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ledger::Ledger;
use netlink::{RtNetlink, VfNetlink};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use vfio::Sysfs;

use crate::annotate;
use crate::config::{self, Config};
use crate::error::NodeError;
use crate::holders::Claims;
use crate::kube::KubeClient;
use crate::log;
use crate::plugin::PoolView;
use crate::pool::{self, HealthChecker};
use crate::served::Pools;
use crate::setup;
use crate::watch::DirWatcher;

/// Everything the daemon needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub sysfs_root: PathBuf,
    pub config: PathBuf,
    /// The prefix of pools that name none (`--resource-prefix`).
    pub resource_prefix: String,
    /// Allocate answers with CDI device names (`--use-cdi`), spec files in
    /// the config's `cdi.specDir` or `/var/run/cdi`.
    pub use_cdi: bool,
    pub kubelet_dir: PathBuf,
    pub state_dir: PathBuf,
    pub node_name: Option<String>,
    pub kube: Option<KubeClient>,
    pub health_interval: Duration,
    pub annotate_interval: Duration,
    #[cfg(feature = "test-hooks")]
    pub fakes: Fakes,
}

/// The `test-hooks` build's fakes.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Default)]
pub struct Fakes {
    /// Writes to sysfs are answered by the fake tree's emulated kernel.
    pub emulated_kernel: bool,
    /// VF admin state in a `RecordingNetlink` directory.
    pub netlink: Option<PathBuf>,
}

impl Options {
    fn sysfs(&self) -> Sysfs {
        #[cfg(feature = "test-hooks")]
        if self.fakes.emulated_kernel {
            return vfio::fake::emulated(&self.sysfs_root);
        }
        Sysfs::new(&self.sysfs_root)
    }

    fn netlink(&self) -> std::io::Result<Box<dyn VfNetlink>> {
        #[cfg(feature = "test-hooks")]
        if let Some(p) = &self.fakes.netlink {
            return Ok(Box::new(netlink::RecordingNetlink::new(p)));
        }
        Ok(Box::new(RtNetlink::connect()?))
    }
}

/// How soon node setup that waits for VFs to be let go is tried again.
const SETUP_RETRY: Duration = Duration::from_secs(2);

/// Logs when the ledger stops, or starts again, reading in full.
fn report_claims(old: Option<&Claims>, new: &Claims) {
    let now = new.incomplete();
    if old.and_then(Claims::incomplete) == now {
        return;
    }
    match now {
        Some(why) => log::warn(&format!(
            "the CNI ledger does not read in full: {why}; until it does, the VFs it may hold \
             are not offered as free, no VF is destroyed and none is bound early"
        )),
        None => log::info("every claim in the CNI ledger reads again"),
    }
}

/// What one application of the node setup left undone.
#[derive(Debug, Default, PartialEq)]
struct SetupOutcome {
    /// What failed, as logged.
    errors: Vec<String>,
    /// Some of it waits for VFs to be let go, or for the ledger or the
    /// kubelet's checkpoint to read: to be tried again.
    waits: bool,
}

impl SetupOutcome {
    /// Logs what is left undone, unless the last try left the same.
    fn log(&self, last: Option<&SetupOutcome>) {
        if last.is_some_and(|l| l.errors == self.errors) {
            return;
        }
        for e in &self.errors {
            log::warn(e);
        }
        if self.errors.is_empty() && last.is_some_and(|l| l.waits) {
            log::info("node setup: nothing waits any more");
        }
    }

    fn retry_at(&self) -> Option<Instant> {
        self.waits.then(|| Instant::now() + SETUP_RETRY)
    }
}

/// Applies the node setup; blocking (netlink runs its own small runtime).
fn run_setup(opts: &Options, cfg: &Config) -> SetupOutcome {
    if cfg.node_setup.pfs.is_empty() {
        return SetupOutcome::default();
    }
    let sysfs = opts.sysfs();
    let mut nl = match opts.netlink() {
        Ok(n) => n,
        Err(e) => {
            return SetupOutcome {
                errors: vec![format!("node setup: netlink: {e}")],
                waits: false,
            }
        }
    };
    let ledger = Ledger::new(&opts.state_dir);
    let guard = setup::Guard {
        ledger: &ledger,
        kubelet_dir: &opts.kubelet_dir,
        pool_drivers: cfg.pool_drivers(),
    };
    let errors = setup::apply(&sysfs, &cfg.node_setup, nl.as_mut(), &guard);
    SetupOutcome {
        waits: errors
            .iter()
            .any(|e| matches!(e, NodeError::SetupWaits { .. })),
        errors: errors.iter().map(ToString::to_string).collect(),
    }
}

/// Runs the node setup off the runtime.
async fn run_setup_blocking(opts: &Options, cfg: &Config) -> SetupOutcome {
    let (o, c) = (opts.clone(), cfg.clone());
    tokio::task::spawn_blocking(move || run_setup(&o, &c))
        .await
        .unwrap_or_else(|e| SetupOutcome {
            errors: vec![format!("node setup: {e}")],
            waits: true,
        })
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// A config that does not load stops it before anything on the node
/// changes, with the file and the problem in the error (the upstream plugin
/// exits too, so its pod restarts until the ConfigMap is fixed).
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = config::load_checked(&opts.config, &opts.resource_prefix)?;
    config::log_loaded(&opts.config, &cfg);
    // Before the runtime: the kernel netlink client blocks on its own.
    let setup = run_setup(&opts, &cfg);
    setup.log(None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts, cfg, setup))
}

async fn serve(opts: Options, mut cfg: Config, mut setup: SetupOutcome) -> anyhow::Result<()> {
    let sysfs = opts.sysfs();
    let ledger_dir = opts.state_dir.join("devices");
    for d in [&ledger_dir, &opts.kubelet_dir] {
        std::fs::create_dir_all(d).map_err(NodeError::write(d))?;
    }
    let mut watcher = DirWatcher::new()?;
    #[derive(Clone, Copy, PartialEq)]
    enum Tag {
        Config,
        Ledger,
        Kubelet,
    }
    let config_dir = match opts.config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Err(e) = watcher.watch(&config_dir, Tag::Config) {
        log::warn(&format!("config changes will not be noticed: {e}"));
    }
    watcher.watch(&ledger_dir, Tag::Ledger)?;
    watcher.watch(&opts.kubelet_dir, Tag::Kubelet)?;

    let (kubelet_tx, _) = broadcast::channel(16);
    let ledger = Ledger::new(&opts.state_dir);
    let mut claims = Claims::read(&ledger);
    report_claims(None, &claims);
    let mut setup_retry = setup.retry_at();
    let mut pools = Pools::start(&opts, &sysfs, &cfg, &kubelet_tx, &claims);
    let (free_tx, free_rx) = watch::channel(Some(pools.free(&claims)));
    let publisher = match (&opts.kube, &opts.node_name) {
        (Some(k), Some(n)) => Some(tokio::spawn(annotate::publish(
            k.clone(),
            n.clone(),
            free_rx,
            opts.annotate_interval,
        ))),
        _ => {
            log::info("not publishing free VFs on the Node: no API server or node name");
            None
        }
    };
    let hc = HealthChecker::new(&sysfs);
    let mut tick = tokio::time::interval(opts.health_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reload_at: Option<Instant> = None;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    log::info(&format!("running; config {}", opts.config.display()));
    loop {
        let mut recount = false;
        tokio::select! {
            _ = tick.tick() => {
                // A ledger that did not read in full is read again every tick.
                if claims.incomplete().is_some() {
                    let now = Claims::read(&ledger);
                    if now != claims {
                        report_claims(Some(&claims), &now);
                        claims = now;
                        recount = true;
                    }
                }
                if setup_retry.is_some_and(|at| Instant::now() >= at) {
                    let out = run_setup_blocking(&opts, &cfg).await;
                    out.log(Some(&setup));
                    setup_retry = out.retry_at();
                    setup = out;
                }
                let views: Vec<Arc<PoolView>> = pools.views.iter().map(|t| t.borrow().clone()).collect();
                if pool::pf_numvfs(&sysfs, views.iter().map(|v| &v.pool)) != pools.numvfs {
                    pools.rediscover(&sysfs, &cfg, &claims);
                    recount = true;
                }
                recount |= pools.check_health(&hc, &claims);
            }
            evs = watcher.next() => {
                for (tag, _name) in evs? {
                    match tag {
                        // A ConfigMap update is a burst of renames: settle first.
                        Tag::Config => reload_at = Some(Instant::now() + Duration::from_millis(200)),
                        Tag::Ledger => recount = true,
                        Tag::Kubelet => { let _ = kubelet_tx.send(()); }
                    }
                    // A claim released or the kubelet's checkpoint rewritten
                    // may let waiting node setup go ahead: on the next tick.
                    if tag != Tag::Config && setup.waits {
                        setup_retry = Some(Instant::now());
                    }
                }
                if recount {
                    let now = Claims::read(&ledger);
                    report_claims(Some(&claims), &now);
                    claims = now;
                }
            }
            _ = async { tokio::time::sleep_until(reload_at.unwrap_or_else(Instant::now)).await }, if reload_at.is_some() => {
                reload_at = None;
                // A config that does not load changes nothing: the pools
                // and the node setup of the last valid one stay.
                match config::load_checked(&opts.config, &opts.resource_prefix) {
                    Err(e) => log::error(&format!(
                        "{e}; the daemon keeps the last valid config ({} pools) until the file is fixed",
                        cfg.resource_list.len()
                    )),
                    Ok(new) if new != cfg => {
                        config::log_loaded(&opts.config, &new);
                        let setup_changed = new.node_setup != cfg.node_setup;
                        let pools_changed = new.resource_list != cfg.resource_list
                            || new.resource_prefix != cfg.resource_prefix
                            || new.cdi != cfg.cdi;
                        cfg = new;
                        if setup_changed || setup.waits {
                            setup = run_setup_blocking(&opts, &cfg).await;
                            setup.log(None);
                            setup_retry = setup.retry_at();
                        }
                        if pools_changed {
                            pools.stop().await;
                            pools = Pools::start(&opts, &sysfs, &cfg, &kubelet_tx, &claims);
                        } else {
                            pools.rediscover(&sysfs, &cfg, &claims);
                        }
                        recount = true;
                    }
                    Ok(_) => {}
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if recount {
            free_tx.send_if_modified(|cur| {
                let f = Some(pools.free(&claims));
                let changed = *cur != f;
                *cur = f;
                changed
            });
        }
    }
    log::info("stopping");
    pools.stop().await;
    if let Some(p) = publisher {
        p.abort();
    }
    Ok(())
}
