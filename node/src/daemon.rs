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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ledger::{write_atomic, Ledger};
use netlink::{RtNetlink, VfNetlink};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use vfio::{PciAddress, Sysfs};

use crate::allocate;
use crate::annotate::{self, FreeVfs};
use crate::config::Config;
use crate::error::NodeError;
use crate::kube::KubeClient;
use crate::log;
use crate::plugin::{self, PluginService, PoolView};
use crate::pool::{self, HealthChecker};
use crate::setup;
use crate::watch::DirWatcher;

/// Everything the daemon needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub sysfs_root: PathBuf,
    pub config: PathBuf,
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

fn claimed(state_dir: &Path) -> BTreeSet<String> {
    match Ledger::new(state_dir).claims() {
        Ok(c) => c.into_iter().map(|(a, _)| a.to_string()).collect(),
        Err(e) => {
            log::warn(&format!("reading the CNI ledger: {e}"));
            BTreeSet::new()
        }
    }
}

fn load_config(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(NodeError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            log::warn(&format!("{} does not exist yet: no pools", path.display()));
            Some(Config::default())
        }
        Err(e) => {
            log::warn(&e.to_string());
            None
        }
    }
}

/// Applies the node setup; blocking (netlink runs its own small runtime).
fn run_setup(opts: &Options, cfg: &Config) {
    if cfg.node_setup.pfs.is_empty() {
        return;
    }
    let sysfs = opts.sysfs();
    let mut nl = match opts.netlink() {
        Ok(n) => n,
        Err(e) => {
            log::warn(&format!("node setup: netlink: {e}"));
            return;
        }
    };
    for e in setup::apply(
        &sysfs,
        &cfg.node_setup,
        nl.as_mut(),
        &claimed(&opts.state_dir),
    ) {
        log::warn(&e.to_string());
    }
}

/// The running plugins of the current pools.
struct Pools {
    views: Vec<watch::Sender<Arc<PoolView>>>,
    numvfs: BTreeMap<PciAddress, Option<u32>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pools {
    fn start(
        opts: &Options,
        sysfs: &Sysfs,
        cfg: &Config,
        kubelet: &broadcast::Sender<()>,
        claims: &BTreeSet<String>,
    ) -> Pools {
        let found = pool::discover(sysfs, cfg, claims).unwrap_or_else(|e| {
            log::warn(&format!("discovering devices: {e}"));
            Vec::new()
        });
        let numvfs = pool::pf_numvfs(sysfs, &found);
        let (stop, stop_rx) = watch::channel(false);
        let hc = HealthChecker::new(sysfs);
        let mut pf_cache = BTreeMap::new();
        let mut views = Vec::new();
        let mut tasks = Vec::new();
        for p in found {
            let healthy = hc
                .check(&p, &mut pf_cache)
                .iter()
                .map(|r| r.is_ok())
                .collect();
            log::info(&format!("pool {}: {} devices", p.resource, p.devices.len()));
            if let Some(cdi) = &cfg.cdi {
                write_cdi_spec(sysfs, &cdi.spec_dir, &p);
            }
            let resource = p.resource.clone();
            let (tx, rx) = watch::channel(Arc::new(PoolView { pool: p, healthy }));
            let svc = PluginService::new(rx, sysfs.clone(), cfg.cdi.is_some())
                .with_state_dir(&opts.state_dir);
            tasks.push(tokio::spawn(plugin::run(
                opts.kubelet_dir.clone(),
                svc,
                resource,
                kubelet.subscribe(),
                stop_rx.clone(),
            )));
            views.push(tx);
        }
        Pools {
            views,
            numvfs,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Re-reads health; true when any device changed.
    fn check_health(&self, hc: &HealthChecker) -> bool {
        let mut pf_cache = BTreeMap::new();
        let mut changed = false;
        for tx in &self.views {
            let cur = tx.borrow().clone();
            let res = hc.check(&cur.pool, &mut pf_cache);
            let healthy: Vec<bool> = res.iter().map(|r| r.is_ok()).collect();
            if healthy == cur.healthy {
                continue;
            }
            for ((d, was), r) in cur.pool.devices.iter().zip(&cur.healthy).zip(&res) {
                if *was != r.is_ok() {
                    match r {
                        Ok(()) => log::info(&format!(
                            "{}: {} is healthy again",
                            cur.pool.resource, d.addr
                        )),
                        Err(why) => log::warn(&format!(
                            "{}: {} is unhealthy: {why:?}",
                            cur.pool.resource, d.addr
                        )),
                    }
                }
            }
            tx.send_replace(Arc::new(PoolView {
                pool: cur.pool.clone(),
                healthy,
            }));
            changed = true;
        }
        changed
    }

    /// Discovers the devices again (VFs created or destroyed) for the same
    /// pools; the plugins keep running and stream the new lists.
    fn rediscover(&mut self, sysfs: &Sysfs, cfg: &Config, claims: &BTreeSet<String>) {
        let Ok(found) = pool::discover(sysfs, cfg, claims) else {
            return;
        };
        self.numvfs = pool::pf_numvfs(sysfs, &found);
        let hc = HealthChecker::new(sysfs);
        let mut pf_cache = BTreeMap::new();
        for (tx, mut p) in self.views.iter().zip(found) {
            // A device that vanished (or whose PF did) stays listed, as
            // unhealthy, until it is back: the kubelet keeps its count right.
            let old = tx.borrow().clone();
            let lost: Vec<pool::Device> = old
                .pool
                .devices
                .iter()
                .filter(|d| !p.devices.iter().any(|n| n.addr == d.addr))
                .cloned()
                .collect();
            if !lost.is_empty() {
                let probe = pool::Pool {
                    devices: lost,
                    ..p.clone()
                };
                let res = hc.check(&probe, &mut pf_cache);
                p.devices.extend(
                    probe
                        .devices
                        .into_iter()
                        .zip(res)
                        .filter(|(_, r)| {
                            matches!(r, Err(pool::Unhealthy::Gone | pool::Unhealthy::PfGone))
                        })
                        .map(|(d, _)| d),
                );
                p.devices.sort_by_key(|d| d.addr);
            }
            let healthy = hc
                .check(&p, &mut pf_cache)
                .iter()
                .map(|r| r.is_ok())
                .collect();
            let view = PoolView { pool: p, healthy };
            if **tx.borrow() != view {
                log::info(&format!(
                    "pool {}: {} devices after sriov_numvfs changed",
                    view.pool.resource,
                    view.pool.devices.len()
                ));
                tx.send_replace(Arc::new(view));
            }
        }
    }

    fn free(&self, claims: &BTreeSet<String>) -> FreeVfs {
        let views: Vec<Arc<PoolView>> = self.views.iter().map(|t| t.borrow().clone()).collect();
        annotate::count_free(views.iter().map(|v| v.as_ref()), claims)
    }
}

fn write_cdi_spec(sysfs: &Sysfs, dir: &Path, p: &pool::Pool) {
    let name = plugin::endpoint_name(&p.resource).replace(".sock", ".json");
    let spec = allocate::cdi_spec(sysfs, p);
    if let Err(e) = write_atomic(&dir.join(name), spec.to_string().as_bytes(), false) {
        log::warn(&format!("CDI spec for {}: {e}", p.resource));
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = load_config(&opts.config).unwrap_or_default();
    // Before the runtime: the kernel netlink client blocks on its own.
    run_setup(&opts, &cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts, cfg))
}

async fn serve(opts: Options, mut cfg: Config) -> anyhow::Result<()> {
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
    let mut claims = claimed(&opts.state_dir);
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
                let views: Vec<Arc<PoolView>> = pools.views.iter().map(|t| t.borrow().clone()).collect();
                if pool::pf_numvfs(&sysfs, views.iter().map(|v| &v.pool)) != pools.numvfs {
                    pools.rediscover(&sysfs, &cfg, &claims);
                    recount = true;
                }
                recount |= pools.check_health(&hc);
            }
            evs = watcher.next() => {
                for (tag, _name) in evs? {
                    match tag {
                        // A ConfigMap update is a burst of renames: settle first.
                        Tag::Config => reload_at = Some(Instant::now() + Duration::from_millis(200)),
                        Tag::Ledger => recount = true,
                        Tag::Kubelet => { let _ = kubelet_tx.send(()); }
                    }
                }
                if recount {
                    claims = claimed(&opts.state_dir);
                }
            }
            _ = async { tokio::time::sleep_until(reload_at.unwrap_or_else(Instant::now)).await }, if reload_at.is_some() => {
                reload_at = None;
                if let Some(new) = load_config(&opts.config) {
                    if new != cfg {
                        log::info("config changed");
                        let setup_changed = new.node_setup != cfg.node_setup;
                        let pools_changed = new.resource_list != cfg.resource_list
                            || new.resource_prefix != cfg.resource_prefix
                            || new.cdi != cfg.cdi;
                        cfg = new;
                        if setup_changed {
                            let (o, c) = (opts.clone(), cfg.clone());
                            let _ = tokio::task::spawn_blocking(move || run_setup(&o, &c)).await;
                        }
                        if pools_changed {
                            pools.stop().await;
                            pools = Pools::start(&opts, &sysfs, &cfg, &kubelet_tx, &claims);
                        } else {
                            pools.rediscover(&sysfs, &cfg, &claims);
                        }
                        recount = true;
                    }
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
