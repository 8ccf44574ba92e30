//! The device plugins of the current pools, as the daemon runs them: each
//! pool's view (devices and their health) feeds its plugin's ListAndWatch;
//! CDI spec files when CDI is on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ledger::write_atomic;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use vfio::{PciAddress, Sysfs};

use crate::allocate;
use crate::annotate::{self, FreeVfs};
use crate::config::{CdiConfig, Config};
use crate::daemon::Options;
use crate::holders::Claims;
use crate::log;
use crate::plugin::{self, PluginService, PoolView};
use crate::pool::{self, HealthChecker};

/// The CDI settings in force: the config's, else with `--use-cdi` spec
/// files in `/var/run/cdi` (under the sysfs root: a fake tree's own).
fn cdi_config(opts: &Options, cfg: &Config) -> Option<CdiConfig> {
    cfg.cdi.clone().or_else(|| {
        opts.use_cdi.then(|| CdiConfig {
            spec_dir: opts.sysfs_root.join("var/run/cdi"),
        })
    })
}

/// Health of a pool's devices: sysfs, and a claim that does not read.
fn health(
    hc: &HealthChecker,
    pool: &pool::Pool,
    pf_cache: &mut BTreeMap<PciAddress, bool>,
    claims: &Claims,
) -> Vec<Result<(), pool::Unhealthy>> {
    let mut res = hc.check(pool, pf_cache);
    for (d, r) in pool.devices.iter().zip(res.iter_mut()) {
        if r.is_ok() && claims.unknown(d.addr).is_some() {
            *r = Err(pool::Unhealthy::ClaimUnreadable);
        }
    }
    res
}

/// The running plugins of the current pools.
pub(crate) struct Pools {
    pub(crate) views: Vec<watch::Sender<Arc<PoolView>>>,
    pub(crate) numvfs: BTreeMap<PciAddress, Option<u32>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pools {
    pub(crate) fn start(
        opts: &Options,
        sysfs: &Sysfs,
        cfg: &Config,
        kubelet: &broadcast::Sender<()>,
        claims: &Claims,
    ) -> Pools {
        let found = pool::discover(sysfs, cfg, |a| claims.held(a)).unwrap_or_else(|e| {
            log::warn(&format!("discovering devices: {e}"));
            Vec::new()
        });
        let numvfs = pool::pf_numvfs(sysfs, &found);
        let cdi = cdi_config(opts, cfg);
        let (stop, stop_rx) = watch::channel(false);
        let hc = HealthChecker::new(sysfs);
        let mut pf_cache = BTreeMap::new();
        let mut views = Vec::new();
        let mut tasks = Vec::new();
        for p in found {
            let healthy = health(&hc, &p, &mut pf_cache, claims)
                .iter()
                .map(|r| r.is_ok())
                .collect();
            log::info(&format!("pool {}: {} devices", p.resource, p.devices.len()));
            if let Some(cdi) = &cdi {
                write_cdi_spec(sysfs, &cdi.spec_dir, &p);
            }
            let resource = p.resource.clone();
            let (tx, rx) = watch::channel(Arc::new(PoolView { pool: p, healthy }));
            let svc = PluginService::new(rx, sysfs.clone(), cdi.is_some())
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

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Re-reads health; true when any device changed.
    pub(crate) fn check_health(&self, hc: &HealthChecker, claims: &Claims) -> bool {
        let mut pf_cache = BTreeMap::new();
        let mut changed = false;
        for tx in &self.views {
            let cur = tx.borrow().clone();
            let res = health(hc, &cur.pool, &mut pf_cache, claims);
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
    pub(crate) fn rediscover(&mut self, sysfs: &Sysfs, cfg: &Config, claims: &Claims) {
        let Ok(found) = pool::discover(sysfs, cfg, |a| claims.held(a)) else {
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
            let healthy = health(&hc, &p, &mut pf_cache, claims)
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

    pub(crate) fn free(&self, claims: &Claims) -> FreeVfs {
        let views: Vec<Arc<PoolView>> = self.views.iter().map(|t| t.borrow().clone()).collect();
        annotate::count_free(views.iter().map(|v| v.as_ref()), |a| claims.held(a))
    }
}

fn write_cdi_spec(sysfs: &Sysfs, dir: &Path, p: &pool::Pool) {
    let name = plugin::endpoint_name(&p.resource).replace(".sock", ".json");
    let spec = allocate::cdi_spec(sysfs, p);
    // The runtime reads the directory; it may not exist before the first spec.
    let written = std::fs::create_dir_all(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
        .and_then(|()| {
            write_atomic(&dir.join(name), spec.to_string().as_bytes(), false)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        log::warn(&format!("CDI spec for {}: {e}", p.resource));
    }
}
