//! Free-VF accounting published on the Node object.
//!
//! A VF is free when it is in a pool, healthy, and no pod holds it in the
//! CNI ledger (`<stateDir>/devices/<bdf>.json`); a claim file that does not
//! read holds its VF all the same. The count goes out as the
//! annotation `sriov/vfCount` with the label `sriov/freeVFAvailable=true`
//! while it is above zero (what the NGPAAS fork of sriov-cni maintained, seed
//! 001), and under our own prefix with a per-pool breakdown. Updates are
//! JSON merge-patches (RFC 7386: `null` removes a key), at most one a second.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use vfio::PciAddress;

use crate::kube::KubeClient;
use crate::log;
use crate::plugin::PoolView;

pub const SRIOV_COUNT: &str = "sriov/vfCount";
pub const SRIOV_AVAILABLE: &str = "sriov/freeVFAvailable";
pub const FREE_VFS: &str = "dpdk-cni.io/free-vfs";
pub const FREE_VFS_BY_POOL: &str = "dpdk-cni.io/free-vfs-by-pool";
pub const FREE_AVAILABLE: &str = "dpdk-cni.io/free-vfs-available";

/// Free devices, in total and per pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeVfs {
    pub total: u32,
    pub by_pool: BTreeMap<String, u32>,
}

/// Counts the healthy devices of every pool that no claim holds; `held`
/// is true for a claimed device and for one whose claim does not read.
pub fn count_free<'a>(
    views: impl IntoIterator<Item = &'a PoolView>,
    held: impl Fn(PciAddress) -> bool,
) -> FreeVfs {
    let mut out = FreeVfs::default();
    for v in views {
        let n = v
            .pool
            .devices
            .iter()
            .zip(&v.healthy)
            .filter(|(d, ok)| **ok && !held(d.addr))
            .count() as u32;
        out.total += n;
        out.by_pool.insert(v.pool.resource.clone(), n);
    }
    out
}

/// The merge-patch that publishes `free`.
pub fn node_patch(free: &FreeVfs) -> Value {
    let avail = if free.total > 0 {
        json!("true")
    } else {
        Value::Null
    };
    let by_pool = serde_json::to_string(&free.by_pool).unwrap_or_default();
    json!({"metadata": {
        "annotations": {
            SRIOV_COUNT: free.total.to_string(),
            FREE_VFS: free.total.to_string(),
            FREE_VFS_BY_POOL: by_pool,
        },
        "labels": {
            SRIOV_AVAILABLE: avail.clone(),
            FREE_AVAILABLE: avail,
        },
    }})
}

/// Publishes every new count, at most one PATCH per `min_interval`,
/// retrying a failed one; runs until `free` is dropped.
pub async fn publish(
    client: KubeClient,
    node: String,
    mut free: watch::Receiver<Option<FreeVfs>>,
    min_interval: Duration,
) {
    let mut published: Option<FreeVfs> = None;
    let mut last: Option<Instant> = None;
    let mut backoff = min_interval;
    loop {
        let want = free.borrow_and_update().clone();
        if want.is_some() && want != published {
            if let Some(t) = last {
                // Coalesce: whatever arrives meanwhile goes out in this PATCH.
                tokio::time::sleep_until(t + min_interval).await;
            }
            let want = free.borrow_and_update().clone();
            let Some(w) = want else { continue };
            last = Some(Instant::now());
            match client.patch_node(&node, &node_patch(&w)).await {
                Ok(()) => {
                    log::info(&format!("node {node}: {} free VFs", w.total));
                    published = Some(w);
                    backoff = min_interval;
                }
                Err(e) => {
                    log::warn(&format!("node {node}: {e}"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            continue;
        }
        if free.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_removes_the_label_at_zero() {
        let p = node_patch(&FreeVfs::default());
        assert_eq!(p["metadata"]["annotations"][SRIOV_COUNT], "0");
        assert!(p["metadata"]["labels"][SRIOV_AVAILABLE].is_null());
        let p = node_patch(&FreeVfs {
            total: 3,
            by_pool: BTreeMap::from([("intel.com/a".into(), 3)]),
        });
        assert_eq!(p["metadata"]["annotations"][FREE_VFS], "3");
        assert_eq!(
            p["metadata"]["annotations"][FREE_VFS_BY_POOL],
            r#"{"intel.com/a":3}"#
        );
        assert_eq!(p["metadata"]["labels"][SRIOV_AVAILABLE], "true");
    }
}
