//! The allocation check: a VF is taken only if the kubelet allocated it to
//! the very pod the ADD is for. A NAD can name any `deviceID`; the kubelet's
//! pod-resources API (`List`) says which devices each pod was given. On
//! when the node's settings say `"allocationCheck": true`.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Endpoint, Uri};
use vfio::PciAddress;

use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::node::Node;

/// The kubelet pod-resources API v1, generated from `proto/podresources.proto`.
pub mod api {
    tonic::include_proto!("v1");
}

/// How long the kubelet has to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// Refuses `dev` unless the kubelet allocated it to the pod CNI_ARGS names.
pub fn check(node: &Node, env: &CniEnv, dev: PciAddress) -> Result<()> {
    // A ResourceClaim's allocation was checked by the DRA driver against
    // the API server before it called ADD.
    if !node.settings.allocation_check || node.dra {
        return Ok(());
    }
    let (Some(ns), Some(pod)) = (env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME")) else {
        return Err(CniError::env(
            "this node checks device allocations: CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME (the runtime passes them for a Kubernetes pod)",
        ));
    };
    let socket = &node.settings.pod_resources_socket;
    let pods = list(socket).map_err(|e| {
        CniError::new(
            code::TRY_AGAIN,
            format!(
                "this node checks device allocations, and the kubelet's pod-resources API at {} did not answer: {e}",
                node.node_path(socket).display()
            ),
        )
    })?;
    let id = dev.to_string();
    let given = pods
        .iter()
        .filter(|p| p.namespace == ns && p.name == pod)
        .flat_map(|p| &p.containers)
        .flat_map(|c| &c.devices)
        .any(|d| d.device_ids.contains(&id));
    if given {
        Ok(())
    } else {
        Err(CniError::new(
            code::NOT_ALLOCATED,
            format!(
                "{dev} is not allocated to pod {ns}/{pod} by the kubelet: a pod gets only the devices its resource requests were given"
            ),
        ))
    }
}

/// `PodResourcesLister.List` over the kubelet's unix socket.
fn list(socket: &Path) -> std::result::Result<Vec<api::PodResources>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let socket = socket.to_path_buf();
    rt.block_on(async move {
        let channel = Endpoint::from_static("http://[::]:0")
            .connect_timeout(ANSWER_WAIT)
            .timeout(ANSWER_WAIT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                )
            })?;
        let mut client = api::pod_resources_lister_client::PodResourcesListerClient::new(channel);
        let resp = client
            .list(api::ListPodResourcesRequest {})
            .await
            .map_err(|s| s.message().to_string())?;
        Ok(resp.into_inner().pod_resources)
    })
}
