//! dpdk-cni-node: the node daemon that makes dpdk-cni a complete install on
//! Kubernetes.
//!
//! A CNI plugin runs after the pod sandbox exists and cannot put
//! `/dev/vfio/<group>` or hugepages into an app container; the kubelet's
//! device plugin API can, at Allocate, before the sandbox (REFERENCE.md
//! section 4). This daemon serves that API (gRPC v1beta1 over unix sockets
//! in `/var/lib/kubelet/device-plugins`) for pools of VFs selected like the
//! SR-IOV network device plugin selects them, with NUMA topology and device
//! health read from PCI sysfs through the `vfio` crate; sets up the PFs
//! (`sriov_numvfs`, VF MAC and spoofchk over rtnetlink, through the
//! `netlink` crate); and publishes the free-VF count from the CNI's ledger
//! (the `ledger` crate; the daemon does not link the plugin) on the Node
//! object through the Kubernetes API. It also installs the plugin binary on
//! the host and shows the node's VFs (`status`). The `test-hooks` feature
//! adds the tests' flags (an emulated kernel, a recording netlink, a
//! plain-HTTP API server); the default build has none.

pub mod allocate;
pub mod annotate;
pub mod args;
pub mod cdi;
pub mod config;
pub mod daemon;
pub mod devinfo;
pub mod dra;
pub mod error;
pub mod grant;
pub mod holders;
pub mod install;
pub mod kube;
pub mod log;
pub mod plugin;
pub mod pool;
pub mod probe;
pub mod rdma;
pub mod select;
mod served;
pub mod setup;
pub mod status;
pub mod watch;

/// The kubelet device plugin API v1beta1, generated from `proto/api.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

/// The kubelet's DRA plugin API v1, generated from `proto/dra.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod dra_api {
    tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
}

/// The kubelet's plugin registration API, from `proto/pluginregistration.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod registration_api {
    tonic::include_proto!("pluginregistration");
}

pub use error::{NodeError, Result};
