//! kubelet-sim: the part of a kubelet that talks to device plugins, for
//! shell scripts (the QEMU scenario `tests/vm/scenarios/node.sh`).
//!
//! It speaks the real v1beta1 API (`dpdk_cni_node::api`):
//!
//! 1. removes stale sockets from `--dir` and serves `Registration` on
//!    `<dir>/kubelet.sock`, as the kubelet does when it starts;
//! 2. waits (at most `--timeout` seconds) for a plugin to register
//!    `--resource`;
//! 3. connects to the plugin's endpoint in `--dir`, asks for its options and
//!    reads the first ListAndWatch response (or, with `--min-devices N`, the
//!    first one listing at least N healthy devices);
//! 4. with `--allocate N`: asks GetPreferredAllocation for N of the healthy
//!    devices when the plugin offers it (else takes the first N), then
//!    Allocate for them; with `--devices a,b`: Allocate for exactly those.
//!
//! Every step prints one JSON line on stdout, the fields named as in
//! `proto/api.proto`, keys in alphabetical order:
//!
//! ```text
//! {"request":{"endpoint":"...","options":{...},"resource_name":"...","version":"v1beta1"},"rpc":"Register"}
//! {"response":{"get_preferred_allocation_available":true,"pre_start_required":false},"rpc":"GetDevicePluginOptions"}
//! {"response":{"devices":[{"ID":"0000:01:10.0","health":"Healthy","topology":null}]},"rpc":"ListAndWatch"}
//! {"request":{...},"response":{"deviceIDs":["0000:01:10.0"]},"rpc":"GetPreferredAllocation"}
//! {"request":{"devices_ids":["0000:01:10.0"]},"response":{"annotations":{},"cdi_devices":[],"devices":[...],"envs":{...},"mounts":[...]},"rpc":"Allocate"}
//! ```
//!
//! `topology` is `{"nodes":[{"ID":0}]}` when the plugin reports a NUMA node.
//!
//! Progress goes to stderr. Any failure (no registration in time, a refused
//! call, too few healthy devices) is one `kubelet-sim: ...` line on stderr
//! and exit status 1; `kubelet.sock` is removed on the way out.
//!
//! ```sh
//! kubelet-sim --dir /tmp/dp --resource intel.com/intel_sriov_dpdk --allocate 1
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::registration_server::{Registration, RegistrationServer};
use dpdk_cni_node::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, Device, DevicePluginOptions, Empty, ListAndWatchResponse,
    PreferredAllocationRequest, RegisterRequest,
};
use dpdk_cni_node::plugin::{connect_unix, API_VERSION, HEALTHY, KUBELET_SOCKET};
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Debug, Parser)]
#[command(
    name = "kubelet-sim",
    about = "A fake kubelet: takes a device plugin's Register, reads its device list, allocates"
)]
struct Args {
    /// The device-plugins directory (the kubelet's is /var/lib/kubelet/device-plugins).
    #[arg(long)]
    dir: PathBuf,
    /// The extended resource to wait for, e.g. intel.com/intel_sriov_dpdk.
    #[arg(long)]
    resource: String,
    /// Seconds for the whole exchange, from start to the Allocate answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Read ListAndWatch updates until one lists at least this many healthy devices.
    #[arg(long)]
    min_devices: Option<usize>,
    /// Allocate this many healthy devices (chosen by GetPreferredAllocation
    /// when the plugin offers it).
    #[arg(long, conflicts_with = "devices")]
    allocate: Option<usize>,
    /// Allocate exactly these device IDs (comma separated).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
}

/// The Registration service: hands every request to the main task.
#[derive(Debug)]
struct Kubelet {
    tx: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for Kubelet {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        // The kubelet refuses versions it does not speak.
        if r.version != API_VERSION {
            eprintln!(
                "kubelet-sim: refusing Register of {} with version {:?}",
                r.resource_name, r.version
            );
            return Err(Status::invalid_argument(format!(
                "unsupported version {:?}, want {API_VERSION}",
                r.version
            )));
        }
        let _ = self.tx.send(r);
        Ok(Response::new(Empty {}))
    }
}

fn options_json(o: &DevicePluginOptions) -> Value {
    json!({
        "pre_start_required": o.pre_start_required,
        "get_preferred_allocation_available": o.get_preferred_allocation_available,
    })
}

fn device_json(d: &Device) -> Value {
    json!({
        "ID": d.id,
        "health": d.health,
        "topology": d.topology.as_ref().map(|t| json!({
            "nodes": t.nodes.iter().map(|n| json!({"ID": n.id})).collect::<Vec<_>>(),
        })),
    })
}

fn container_response_json(r: &ContainerAllocateResponse) -> Value {
    // Sorted maps: the same answer always prints the same line.
    let envs: BTreeMap<&String, &String> = r.envs.iter().collect();
    let annotations: BTreeMap<&String, &String> = r.annotations.iter().collect();
    json!({
        "envs": envs,
        "mounts": r.mounts.iter().map(|m| json!({
            "container_path": m.container_path,
            "host_path": m.host_path,
            "read_only": m.read_only,
        })).collect::<Vec<_>>(),
        "devices": r.devices.iter().map(|d| json!({
            "container_path": d.container_path,
            "host_path": d.host_path,
            "permissions": d.permissions,
        })).collect::<Vec<_>>(),
        "annotations": annotations,
        "cdi_devices": r.cdi_devices.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>(),
    })
}

/// A refused call as one readable line: the gRPC code and the plugin's message.
fn refused(rpc: &str, s: Status) -> anyhow::Error {
    anyhow!("{rpc} refused ({:?}): {}", s.code(), s.message())
}

fn emit(line: Value) {
    println!("{line}");
}

/// Removes the sockets a previous kubelet or plugin left in `dir`.
fn remove_stale_sockets(dir: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_socket() {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing stale socket {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Waits for the Register of `resource`; other resources are reported and skipped.
async fn wait_registration(
    rx: &mut mpsc::UnboundedReceiver<RegisterRequest>,
    resource: &str,
    deadline: Instant,
    args: &Args,
) -> Result<RegisterRequest> {
    loop {
        let r = timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "no device plugin registered {resource} within {}s \
                     (is the daemon running with --kubelet-dir {}, and does its config have that pool?)",
                    args.timeout,
                    args.dir.display()
                )
            })?
            .ok_or_else(|| anyhow!("the Registration server stopped"))?;
        emit(json!({"rpc": "Register", "request": {
            "version": r.version,
            "endpoint": r.endpoint,
            "resource_name": r.resource_name,
            "options": r.options.as_ref().map(options_json),
        }}));
        if r.resource_name == resource {
            return Ok(r);
        }
        eprintln!(
            "kubelet-sim: ignoring the registration of {} (waiting for {resource})",
            r.resource_name
        );
    }
}

/// Reads ListAndWatch until a response has at least `min` healthy devices.
async fn list_devices(
    client: &mut DevicePluginClient<Channel>,
    min: Option<usize>,
    deadline: Instant,
    args: &Args,
) -> Result<ListAndWatchResponse> {
    let mut stream = timeout_at(deadline, client.list_and_watch(Empty {}))
        .await
        .map_err(|_| anyhow!("ListAndWatch did not answer within {}s", args.timeout))?
        .map_err(|s| refused("ListAndWatch", s))?
        .into_inner();
    let mut n = 0;
    loop {
        let msg = timeout_at(deadline, stream.message())
            .await
            .map_err(|_| match min {
                Some(m) => anyhow!(
                    "no ListAndWatch response with {m} healthy devices within {}s ({n} responses read)",
                    args.timeout
                ),
                None => anyhow!("no ListAndWatch response within {}s", args.timeout),
            })?
            .map_err(|s| refused("ListAndWatch stream", s))?
            .ok_or_else(|| anyhow!("the plugin ended the ListAndWatch stream"))?;
        n += 1;
        let healthy = msg.devices.iter().filter(|d| d.health == HEALTHY).count();
        match min {
            Some(m) if healthy < m => {
                eprintln!("kubelet-sim: ListAndWatch response {n}: {healthy} healthy devices, waiting for {m}");
            }
            _ => return Ok(msg),
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    remove_stale_sockets(&args.dir)?;
    let sock = args.dir.join(KUBELET_SOCKET);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("listening on {}", sock.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(Kubelet { tx }))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    eprintln!(
        "kubelet-sim: serving Registration on {}; waiting for {}",
        sock.display(),
        args.resource
    );

    let reg = wait_registration(&mut rx, &args.resource, deadline, args).await?;
    if reg.endpoint.is_empty() || reg.endpoint.contains('/') {
        bail!(
            "{} registered an endpoint that is not a socket name in {}: {:?}",
            args.resource,
            args.dir.display(),
            reg.endpoint
        );
    }
    let endpoint = args.dir.join(&reg.endpoint);
    let channel = timeout_at(deadline, connect_unix(&endpoint))
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", endpoint.display()))?
        .with_context(|| format!("connecting to the plugin at {}", endpoint.display()))?;
    let mut client = DevicePluginClient::new(channel);

    let opts = timeout_at(deadline, client.get_device_plugin_options(Empty {}))
        .await
        .map_err(|_| anyhow!("GetDevicePluginOptions did not answer in time"))?
        .map_err(|s| refused("GetDevicePluginOptions", s))?
        .into_inner();
    emit(json!({"rpc": "GetDevicePluginOptions", "response": options_json(&opts)}));

    let list = list_devices(&mut client, args.min_devices, deadline, args).await?;
    emit(json!({"rpc": "ListAndWatch", "response": {
        "devices": list.devices.iter().map(device_json).collect::<Vec<_>>(),
    }}));

    let ids: Vec<String> = if !args.devices.is_empty() {
        args.devices.clone()
    } else if let Some(n) = args.allocate {
        let healthy: Vec<String> = list
            .devices
            .iter()
            .filter(|d| d.health == HEALTHY)
            .map(|d| d.id.clone())
            .collect();
        if n == 0 || n > healthy.len() {
            bail!(
                "cannot allocate {n} devices of {}: {} healthy devices listed",
                args.resource,
                healthy.len()
            );
        }
        if opts.get_preferred_allocation_available {
            let size = i32::try_from(n).context("--allocate is too large")?;
            let req = ContainerPreferredAllocationRequest {
                available_device_i_ds: healthy.clone(),
                must_include_device_i_ds: Vec::new(),
                allocation_size: size,
            };
            let resp = timeout_at(
                deadline,
                client.get_preferred_allocation(PreferredAllocationRequest {
                    container_requests: vec![req],
                }),
            )
            .await
            .map_err(|_| anyhow!("GetPreferredAllocation did not answer in time"))?
            .map_err(|s| refused("GetPreferredAllocation", s))?
            .into_inner();
            let picked = resp
                .container_responses
                .first()
                .map(|r| r.device_i_ds.clone())
                .unwrap_or_default();
            emit(json!({"rpc": "GetPreferredAllocation",
                "request": {"available_deviceIDs": healthy, "allocation_size": size},
                "response": {"deviceIDs": picked}}));
            // The kubelet checks the preference and falls back on its own choice.
            if picked.len() == n && picked.iter().all(|id| healthy.contains(id)) {
                picked
            } else {
                eprintln!("kubelet-sim: the preferred allocation {picked:?} is unusable; taking the first {n} healthy devices");
                healthy.into_iter().take(n).collect()
            }
        } else {
            healthy.into_iter().take(n).collect()
        }
    } else {
        Vec::new()
    };

    if !ids.is_empty() {
        let resp = timeout_at(
            deadline,
            client.allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: ids.clone(),
                }],
            }),
        )
        .await
        .map_err(|_| anyhow!("Allocate did not answer in time"))?
        .map_err(|s| refused(&format!("Allocate {}", ids.join(",")), s))?
        .into_inner();
        let [c] = resp.container_responses.as_slice() else {
            bail!(
                "Allocate for one container answered {} container responses",
                resp.container_responses.len()
            );
        };
        emit(json!({"rpc": "Allocate", "request": {"devices_ids": ids},
            "response": container_response_json(c)}));
    }
    server.abort();
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let res = run(&args).await;
    let _ = std::fs::remove_file(args.dir.join(KUBELET_SOCKET));
    if let Err(e) = res {
        eprintln!("kubelet-sim: {e:#}");
        std::process::exit(1);
    }
}
