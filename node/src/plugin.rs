//! One pool as a kubelet device plugin: the `DevicePlugin` gRPC service on a
//! unix socket in the kubelet's device-plugins directory, registered with
//! the kubelet's `Registration` service, and registered again whenever the
//! kubelet restarts (it recreates `kubelet.sock` and removes our socket).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use ledger::Ledger;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status};
use vfio::Sysfs;

use crate::allocate;
use crate::api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use crate::api::registration_client::RegistrationClient;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
    RegisterRequest, TopologyInfo,
};
use crate::devinfo::DpDir;
use crate::error::NodeError;
use crate::log;
use crate::pool::Pool;

/// The kubelet's socket in its device-plugins directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// The API version we speak.
pub const API_VERSION: &str = "v1beta1";

pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// A pool with the health of each of its devices, as the daemon last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    pub pool: Pool,
    pub healthy: Vec<bool>,
}

impl PoolView {
    /// The device list as ListAndWatch sends it.
    pub fn devices(&self) -> Vec<Device> {
        self.pool
            .devices
            .iter()
            .zip(&self.healthy)
            .map(|(d, ok)| Device {
                id: d.addr.to_string(),
                health: if *ok { HEALTHY } else { UNHEALTHY }.into(),
                topology: match d.numa {
                    Some(n) if !self.pool.config.exclude_topology => Some(TopologyInfo {
                        nodes: vec![NumaNode { id: i64::from(n) }],
                    }),
                    _ => None,
                },
            })
            .collect()
    }
}

/// The socket name of a pool's plugin, relative to the device-plugins directory.
pub fn endpoint_name(resource: &str) -> String {
    let safe: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("dpdk-cni-{safe}.sock")
}

/// The DevicePlugin service of one pool.
#[derive(Debug, Clone)]
pub struct PluginService {
    view: watch::Receiver<Arc<PoolView>>,
    sysfs: Sysfs,
    cdi: bool,
    ledger: Option<Ledger>,
    devinfo: DpDir,
}

impl PluginService {
    /// The service of one pool; device-info files go to the device
    /// plugin's directory under the sysfs root (`/var/run/...` on a node).
    pub fn new(view: watch::Receiver<Arc<PoolView>>, sysfs: Sysfs, cdi: bool) -> Self {
        let devinfo = DpDir::new(sysfs.root());
        PluginService {
            view,
            sysfs,
            cdi,
            ledger: None,
            devinfo,
        }
    }

    /// Removes the device-info files of every device of the pool, as the
    /// plugin starts and stops (NPWG device-info specification 4.1.1).
    fn clean_devinfo(&self) {
        let view = self.view.borrow().clone();
        let ids: Vec<String> = view
            .pool
            .devices
            .iter()
            .map(|d| d.addr.to_string())
            .collect();
        match self
            .devinfo
            .remove(&view.pool.resource, ids.iter().map(String::as_str))
        {
            Ok(0) => {}
            Ok(n) => log::info(&format!(
                "{}: removed {n} device-info files from {}",
                view.pool.resource,
                self.devinfo.path().display()
            )),
            Err(e) => log::warn(&format!("{}: device-info files: {e}", view.pool.resource)),
        }
    }

    /// The CNI's state directory, where an early no-IOMMU bind is recorded.
    pub fn with_state_dir(mut self, dir: &Path) -> Self {
        self.ledger = Some(Ledger::new(dir));
        self
    }
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let rx = self.view.clone();
        // The current list first, then one message per change of the view.
        let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let devices = rx.borrow_and_update().devices();
            Some((Ok(ListAndWatchResponse { devices }), (rx, false)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let view = self.view.borrow().clone();
        let numa_of: HashMap<String, Option<u32>> = view
            .pool
            .devices
            .iter()
            .map(|d| (d.addr.to_string(), d.numa))
            .collect();
        let (pages, per_device) = match &view.pool.config.hugepages {
            Some(h) => (
                allocate::free_hugepages(&self.sysfs, h.size_kb().unwrap_or(2048)),
                h.pages_per_device(),
            ),
            None => (BTreeMap::new(), 0),
        };
        let mut resp = PreferredAllocationResponse::default();
        for c in req.into_inner().container_requests {
            let size = usize::try_from(c.allocation_size).unwrap_or(0);
            let ids = allocate::preferred(
                &numa_of,
                &c.available_device_i_ds,
                &c.must_include_device_i_ds,
                size,
                &pages,
                per_device,
            );
            resp.container_responses
                .push(ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(resp))
    }

    async fn allocate(
        &self,
        req: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let view = self.view.borrow().clone();
        let (sysfs, cdi, ledger) = (self.sysfs.clone(), self.cdi, self.ledger.clone());
        let devinfo = self.devinfo.clone();
        let requests = req.into_inner().container_requests;
        // Off the runtime: an early bind waits for the device's lock and the kernel.
        tokio::task::spawn_blocking(move || {
            let mut resp = AllocateResponse::default();
            for c in requests {
                let r = allocate::container_response(
                    &sysfs,
                    &view.pool,
                    &c.devices_ids,
                    cdi,
                    ledger.as_ref(),
                    Some(&devinfo),
                )
                .map_err(|e| {
                    log::warn(&format!(
                        "{}: allocate {:?}: {e}",
                        view.pool.resource, c.devices_ids
                    ));
                    match e {
                        NodeError::Refused(msg) => Status::failed_precondition(msg),
                        e => Status::invalid_argument(e.to_string()),
                    }
                })?;
                log::info(&format!(
                    "{}: allocated {}",
                    view.pool.resource,
                    c.devices_ids.join(",")
                ));
                resp.container_responses.push(r);
            }
            Ok(Response::new(resp))
        })
        .await
        .map_err(|e| Status::internal(format!("allocate: {e}")))?
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// A gRPC channel over a unix socket (the kubelet's or a plugin's).
pub async fn connect_unix(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://[::]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Registration.Register with the kubelet.
pub async fn register(
    kubelet_sock: &Path,
    endpoint: &str,
    resource: &str,
) -> Result<(), NodeError> {
    let ch = connect_unix(kubelet_sock).await.map_err(|e| {
        NodeError::Kubelet(format!("connecting to {}: {e}", kubelet_sock.display()))
    })?;
    let mut client = RegistrationClient::new(ch);
    let req = RegisterRequest {
        version: API_VERSION.into(),
        endpoint: endpoint.into(),
        resource_name: resource.into(),
        options: Some(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    };
    tokio::time::timeout(Duration::from_secs(10), client.register(req))
        .await
        .map_err(|_| NodeError::Kubelet("the kubelet did not answer Register within 10s".into()))?
        .map_err(|s| {
            NodeError::Kubelet(format!(
                "the kubelet refused the registration: {}",
                s.message()
            ))
        })?;
    Ok(())
}

/// Listens on a unix socket at `path` that only its owner may connect to,
/// whatever the umask: the socket is given mode 0600 before bind(2), which
/// creates the file with that mode less the umask (which can only take
/// bits away), and the file is set to 0600 again once it exists. It is
/// bound under a temporary name and renamed into place once it listens, so
/// whoever sees `path` can connect.
pub fn listen_owner_only(path: &Path) -> std::io::Result<UnixListener> {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    use nix::sys::stat::{fchmod, Mode};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;

    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    bind(fd.as_raw_fd(), &UnixAddr::new(&tmp)?)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    listen(&fd, Backlog::new(1024)?)?;
    std::fs::rename(&tmp, path)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// Identity of a file: its inode and change time, so a socket deleted and
/// created again is noticed even when the inode number is reused.
fn identity(p: &Path) -> Option<(u64, i64, i64)> {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Serves one pool until `stop` fires: binds its socket, registers, and
/// starts over when the kubelet's socket or ours is replaced. `dir_events`
/// fires on any change in the device-plugins directory.
pub async fn run(
    dir: PathBuf,
    service: PluginService,
    resource: String,
    mut dir_events: broadcast::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let endpoint = endpoint_name(&resource);
    let sock = dir.join(&endpoint);
    let kubelet = dir.join(KUBELET_SOCKET);
    service.clean_devinfo();
    // Wakes on a directory event, a fallback period, or stop; true when stopping.
    async fn wait(
        ev: &mut broadcast::Receiver<()>,
        stop: &mut watch::Receiver<bool>,
        period: Duration,
    ) -> bool {
        tokio::select! {
            _ = ev.recv() => false,
            _ = tokio::time::sleep(period) => false,
            r = stop.changed() => r.is_err() || *stop.borrow(),
        }
    }
    loop {
        if *stop.borrow() {
            service.clean_devinfo();
            return;
        }
        let _ = std::fs::remove_file(&sock);
        let listener = match listen_owner_only(&sock) {
            Ok(l) => l,
            Err(e) => {
                log::warn(&format!(
                    "{resource}: cannot listen on {}: {e}",
                    sock.display()
                ));
                if wait(&mut dir_events, &mut stop, Duration::from_secs(5)).await {
                    service.clean_devinfo();
                    return;
                }
                continue;
            }
        };
        let ours = identity(&sock);
        let server = tokio::spawn(
            Server::builder()
                .add_service(DevicePluginServer::new(service.clone()))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let mut registered = None;
        loop {
            if registered.is_none() && identity(&kubelet).is_some() {
                match register(&kubelet, &endpoint, &resource).await {
                    Ok(()) => {
                        registered = identity(&kubelet);
                        log::info(&format!(
                            "{resource}: registered with the kubelet as {endpoint}"
                        ));
                    }
                    Err(e) => log::warn(&format!("{resource}: {e}")),
                }
            }
            let period = if registered.is_some() { 5 } else { 2 };
            if wait(&mut dir_events, &mut stop, Duration::from_secs(period)).await {
                server.abort();
                let _ = std::fs::remove_file(&sock);
                service.clean_devinfo();
                return;
            }
            // Coalesce the burst of events a kubelet restart makes.
            while dir_events.try_recv().is_ok() {}
            if identity(&sock) != ours {
                log::info(&format!(
                    "{resource}: {} was removed; serving again",
                    sock.display()
                ));
                break;
            }
            let now = identity(&kubelet);
            // A new kubelet socket (not merely a missing one): the kubelet
            // restarted and removes plugin sockets when it starts; serve anew.
            if registered.is_some() && now.is_some() && now != registered {
                log::info(&format!(
                    "{resource}: the kubelet restarted; registering again"
                ));
                break;
            }
        }
        server.abort();
    }
}
