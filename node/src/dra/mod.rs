//! The DRA driver (`dpdk-cni-node dra`): the node's VFs as a ResourceSlice,
//! and the kubelet's DRA plugin service that prepares a ResourceClaim's
//! devices before the pod's sandbox exists.
//!
//! - [`slice`] builds the slice from the config's pools and keeps it current
//!   on the API server (devices that come, go, or are taken by a NAD's
//!   attachment);
//! - [`claim`] reads what the scheduler allocated and the claim's opaque
//!   configuration;
//! - [`prepare`] takes each device through the CNI plugin's own ADD (and
//!   back through its DEL), and writes the claim's CDI spec;
//! - this file registers with the kubelet (plugin registration API in
//!   `plugins_registry`, DRA service v1 on `plugins/<driver>/dra.sock`) and
//!   runs the loop.

pub mod authority;
pub mod claim;
pub mod prepare;
pub mod slice;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use vfio::Sysfs;

use crate::config::{self, Config};
use crate::dra_api::dra_plugin_server::{DraPlugin, DraPluginServer};
use crate::dra_api::{
    NodePrepareResourceResponse, NodePrepareResourcesRequest, NodePrepareResourcesResponse,
    NodeUnprepareResourceResponse, NodeUnprepareResourcesRequest, NodeUnprepareResourcesResponse,
};
use crate::error::{NodeError, Result};
use crate::holders::Claims;
use crate::kube::KubeClient;
use crate::log;
use crate::plugin::listen_owner_only;
use crate::pool;
use crate::registration_api::registration_server::{Registration, RegistrationServer};
use crate::registration_api::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use prepare::Preparer;

/// The gRPC service the kubelet is told we serve.
pub const DRA_SERVICE: &str = "v1.DRAPlugin";
/// The driver name unless `--driver-name` gives another.
pub const DEFAULT_DRIVER: &str = "vf.dpdk-cni.io";

/// Everything the DRA driver needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub driver: String,
    pub sysfs: Sysfs,
    /// The `dpdk-cni` plugin binary that prepares and releases devices.
    pub plugin: PathBuf,
    /// More environment for the plugin (the tests' fake node).
    pub plugin_env: Vec<(String, String)>,
    pub config: PathBuf,
    pub resource_prefix: String,
    pub state_dir: PathBuf,
    pub node_name: String,
    pub kube: KubeClient,
    /// The kubelet's `plugins` directory: our socket is `<driver>/dra.sock` in it.
    pub plugins_dir: PathBuf,
    /// The kubelet's `plugins_registry` directory.
    pub registry_dir: PathBuf,
    pub cdi_dir: PathBuf,
    /// How often the pools are discovered again and the slice compared.
    pub interval: Duration,
}

#[derive(Debug, Clone)]
struct RegistrationService {
    driver: String,
    endpoint: PathBuf,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(
        &self,
        _: Request<InfoRequest>,
    ) -> std::result::Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: "DRAPlugin".into(),
            name: self.driver.clone(),
            endpoint: self.endpoint.display().to_string(),
            supported_versions: vec![DRA_SERVICE.into()],
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> std::result::Result<Response<RegistrationStatusResponse>, Status> {
        let s = req.into_inner();
        if s.plugin_registered {
            log::info(&format!("{}: registered with the kubelet", self.driver));
        } else {
            log::error(&format!(
                "{}: the kubelet refused the registration: {}",
                self.driver, s.error
            ));
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

#[derive(Debug, Clone)]
struct DraService {
    kube: KubeClient,
    preparer: Preparer,
}

fn claim_path(ns: &str, name: &str) -> String {
    format!("/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}")
}

/// A namespace or object name as the API server allows them (a DNS
/// subdomain): they go into a request path.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

impl DraService {
    async fn prepare_one(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<Vec<crate::dra_api::Device>> {
        let id = format!("{ns}/{name}");
        if !valid_name(ns) || !valid_name(name) {
            return Err(NodeError::Claim(format!(
                "ResourceClaim {id:?}: not a valid namespace/name"
            )));
        }
        let obj = self.kube.get(&claim_path(ns, name)).await?;
        let got = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if got != uid {
            return Err(NodeError::Claim(format!(
                "ResourceClaim {id}: the API server has UID {got:?}, the kubelet asked for {uid:?} (the claim was replaced)"
            )));
        }
        let p = self.preparer.clone();
        let uid = uid.to_string();
        tokio::task::spawn_blocking(move || p.prepare(&obj, &uid, &id))
            .await
            .map_err(|e| NodeError::Claim(format!("Prepare: {e}")))?
    }
}

#[tonic::async_trait]
impl DraPlugin for DraService {
    async fn node_prepare_resources(
        &self,
        req: Request<NodePrepareResourcesRequest>,
    ) -> std::result::Result<Response<NodePrepareResourcesResponse>, Status> {
        let mut out = NodePrepareResourcesResponse::default();
        for c in req.into_inner().claims {
            let r = match self.prepare_one(&c.namespace, &c.name, &c.uid).await {
                Ok(devices) => NodePrepareResourceResponse {
                    devices,
                    error: String::new(),
                },
                Err(e) => {
                    log::warn(&format!("Prepare: {e}"));
                    NodePrepareResourceResponse {
                        devices: Vec::new(),
                        error: e.to_string(),
                    }
                }
            };
            out.claims.insert(c.uid, r);
        }
        Ok(Response::new(out))
    }

    async fn node_unprepare_resources(
        &self,
        req: Request<NodeUnprepareResourcesRequest>,
    ) -> std::result::Result<Response<NodeUnprepareResourcesResponse>, Status> {
        let mut out = NodeUnprepareResourcesResponse::default();
        for c in req.into_inner().claims {
            let p = self.preparer.clone();
            let (uid, id) = (c.uid.clone(), format!("{}/{}", c.namespace, c.name));
            let r = tokio::task::spawn_blocking(move || p.unprepare(&uid, &id))
                .await
                .map_err(|e| NodeError::Claim(format!("Unprepare: {e}")))
                .and_then(|r| r);
            let error = match r {
                Ok(()) => String::new(),
                Err(e) => {
                    log::warn(&format!("Unprepare: {e}"));
                    e.to_string()
                }
            };
            out.claims
                .insert(c.uid, NodeUnprepareResourceResponse { error });
        }
        Ok(Response::new(out))
    }
}

/// Keeps this node's ResourceSlice equal to `spec`: replaced when its
/// devices differ, created when missing.
async fn publish(kube: &KubeClient, name: &str, spec: &Value) -> Result<bool> {
    let path = format!("/apis/resource.k8s.io/v1/resourceslices/{name}");
    match kube.get(&path).await {
        Ok(cur) => {
            let cur_spec = cur.get("spec").cloned().unwrap_or(Value::Null);
            if slice::same_devices(&cur_spec, spec) {
                return Ok(false);
            }
            let generation = cur_spec
                .pointer("/pool/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            let mut spec = spec.clone();
            spec["pool"]["generation"] = generation.into();
            let rv = cur
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            kube.replace(&path, &slice::object(name, spec, rv)).await?;
            Ok(true)
        }
        Err(NodeError::Api { status: 404, .. }) => {
            kube.create(
                "/apis/resource.k8s.io/v1/resourceslices",
                &slice::object(name, spec.clone(), None),
            )
            .await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// The pools now, from `cfg`.
fn discover(opts: &Options, cfg: &Config) -> Vec<pool::Pool> {
    let claims = Claims::read(&ledger::Ledger::new(&opts.state_dir));
    pool::discover(&opts.sysfs, cfg, |a| claims.held(a)).unwrap_or_else(|e| {
        log::warn(&format!("discovering the pools: {e}"));
        Vec::new()
    })
}

/// A tonic service as `Server::add_service` takes it.
pub trait GrpcService:
    tonic::codegen::Service<
        tonic::codegen::http::Request<tonic::body::Body>,
        Response = tonic::codegen::http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
    > + tonic::server::NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Listens on a new socket at `path` (its directory made, an old socket
/// replaced, mode 0600); the path for messages.
fn listen_at(path: &Path) -> Result<(tokio::net::UnixListener, String)> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(NodeError::write(d))?;
    }
    let _ = std::fs::remove_file(path);
    let l = listen_owner_only(path).map_err(NodeError::write(path))?;
    Ok((l, path.display().to_string()))
}

/// Serves `svc` on the unix socket `path`.
pub fn serve_socket<S>(path: &Path, svc: S) -> Result<tokio::task::JoinHandle<()>>
where
    S: GrpcService,
    S::Future: Send + 'static,
{
    let (l, shown) = listen_at(path)?;
    Ok(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(l))
            .await
        {
            log::error(&format!("{shown}: {e}"));
        }
    }))
}

/// Serves the registration service on `path` behind [`authority::front`]:
/// each connection is piped to the gRPC server through it.
pub fn serve_registration<S>(path: &Path, svc: S) -> Result<tokio::task::JoinHandle<()>>
where
    S: GrpcService,
    S::Future: Send + 'static,
{
    let (l, shown) = listen_at(path)?;
    let (tx, rx) =
        tokio::sync::mpsc::unbounded_channel::<std::io::Result<tokio::io::DuplexStream>>();
    let server = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        if let Err(e) = Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
        {
            log::error(&format!("registration service: {e}"));
        }
    });
    Ok(tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((conn, _)) => {
                    let (ours, theirs) = tokio::io::duplex(64 * 1024);
                    if tx.send(Ok(theirs)).is_err() {
                        break;
                    }
                    tokio::spawn(authority::front(conn, ours));
                }
                Err(e) => {
                    log::warn(&format!("{shown}: accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        server.abort();
    }))
}

/// Runs the DRA driver until SIGTERM or SIGINT. A config that does not
/// load stops it before it starts.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = config::load_checked(&opts.config, &opts.resource_prefix)?;
    config::log_loaded(&opts.config, &cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts, cfg))
}

async fn serve(opts: Options, mut cfg: Config) -> anyhow::Result<()> {
    let pools = Arc::new(Mutex::new(discover(&opts, &cfg)));
    let preparer = Preparer {
        driver: opts.driver.clone(),
        sysfs: opts.sysfs.clone(),
        plugin: opts.plugin.clone(),
        plugin_env: opts.plugin_env.clone(),
        state_dir: opts.state_dir.clone(),
        cdi_dir: opts.cdi_dir.clone(),
        pools: pools.clone(),
    };
    let endpoint = opts.plugins_dir.join(&opts.driver).join("dra.sock");
    let reg_sock = opts.registry_dir.join(format!("{}-reg.sock", opts.driver));
    let dra = serve_socket(
        &endpoint,
        DraPluginServer::new(DraService {
            kube: opts.kube.clone(),
            preparer: preparer.clone(),
        }),
    )?;
    let reg = serve_registration(
        &reg_sock,
        RegistrationServer::new(RegistrationService {
            driver: opts.driver.clone(),
            endpoint: endpoint.clone(),
        }),
    )?;
    log::info(&format!(
        "DRA driver {} on {} (registration {})",
        opts.driver,
        endpoint.display(),
        reg_sock.display()
    ));
    let name = slice::slice_name(&opts.node_name, &opts.driver);
    let mut published: Option<Value> = None;
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        match config::load_checked(&opts.config, &opts.resource_prefix) {
            Ok(new) if new != cfg => {
                config::log_loaded(&opts.config, &new);
                cfg = new;
            }
            Ok(_) => {}
            Err(e) => {
                if published.is_none() {
                    log::error(&format!("{e}; keeping the last valid config"));
                }
            }
        }
        let found = discover(&opts, &cfg);
        let held = preparer.held_by_attachments();
        let spec = slice::spec(&opts.sysfs, &opts.driver, &opts.node_name, 0, &found, |a| {
            held.contains(&a)
        });
        if let Ok(mut p) = pools.lock() {
            *p = found;
        }
        if published
            .as_ref()
            .is_some_and(|p| slice::same_devices(p, &spec))
        {
            continue;
        }
        match publish(&opts.kube, &name, &spec).await {
            Ok(changed) => {
                if changed {
                    let n = spec["devices"].as_array().map_or(0, Vec::len);
                    log::info(&format!("ResourceSlice {name}: {n} device(s)"));
                }
                published = Some(spec);
            }
            Err(e) => log::warn(&format!("ResourceSlice {name}: {e}")),
        }
    }
    log::info("stopping");
    dra.abort();
    reg.abort();
    let _ = std::fs::remove_file(&reg_sock);
    let _ = std::fs::remove_file(&endpoint);
    Ok(())
}
