//! The allocation check against a fake kubelet serving the real
//! pod-resources gRPC API on a unix socket: with `allocationCheck` on, a VF
//! goes only to the pod the kubelet allocated it to.

mod common;

use std::path::PathBuf;

use common::{assert_same, Bed};
use dpdk_cni::allocation::api;
use serde_json::json;

/// A kubelet that says `pod-a` in `ns` got `device`, and serves until dropped.
struct FakeKubelet {
    _thread: std::thread::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Lister {
    device: String,
}

#[tonic::async_trait]
impl api::pod_resources_lister_server::PodResourcesLister for Lister {
    async fn list(
        &self,
        _: tonic::Request<api::ListPodResourcesRequest>,
    ) -> Result<tonic::Response<api::ListPodResourcesResponse>, tonic::Status> {
        let devices = vec![api::ContainerDevices {
            resource_name: "intel.com/intel_sriov_dpdk".into(),
            device_ids: vec![self.device.clone()],
        }];
        Ok(tonic::Response::new(api::ListPodResourcesResponse {
            pod_resources: vec![
                api::PodResources {
                    name: "pod-a".into(),
                    namespace: "ns".into(),
                    containers: vec![api::ContainerResources {
                        name: "app".into(),
                        devices,
                    }],
                },
                api::PodResources {
                    name: "pod-b".into(),
                    namespace: "ns".into(),
                    containers: vec![],
                },
            ],
        }))
    }
}

impl FakeKubelet {
    fn start(socket: PathBuf, device: String) -> FakeKubelet {
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&socket).unwrap();
                ready_tx.send(()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(
                        api::pod_resources_lister_server::PodResourcesListerServer::new(Lister {
                            device,
                        }),
                    )
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .unwrap();
            });
        });
        ready.recv().unwrap();
        FakeKubelet {
            _thread: thread,
            stop: Some(stop),
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn pod(name: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={name}")
}

#[test]
fn a_vf_goes_only_to_the_pod_the_kubelet_gave_it_to() {
    let bed = Bed::new(2);
    bed.settings(json!({"allocationCheck": true}));
    let socket = bed
        .root()
        .join("var/lib/kubelet/pod-resources/kubelet.sock");
    let before = bed.state();
    let conf0 = bed.conf(0, json!({"vlan": 5}));

    // The kubelet is not there: fail closed, try again later.
    let out = bed.run_with("ADD", "c-a", "net1", &conf0, &[("CNI_ARGS", &pod("pod-a"))]);
    assert_eq!(out.err_code(), 11, "{out:?}");
    assert!(out.msg().contains("pod-resources"), "{}", out.msg());
    assert_same(&before, &bed.state());

    let _kubelet = FakeKubelet::start(socket, bed.vf(0));
    let before = bed.state();
    // pod-b names pod-a's VF in its NAD.
    let out = bed.run_with("ADD", "c-b", "net1", &conf0, &[("CNI_ARGS", &pod("pod-b"))]);
    assert_eq!(out.err_code(), 108, "{out:?}");
    assert!(out.msg().contains("ns/pod-b"), "{}", out.msg());
    // No pod named at all.
    let out = bed.run_with("ADD", "c-b", "net1", &conf0, &[]);
    assert_eq!(out.err_code(), 4, "{out:?}");
    assert_same(&before, &bed.state());
    // pod-a may take only what it was given.
    let conf1 = bed.conf(1, json!({}));
    let out = bed.run_with("ADD", "c-a", "net2", &conf1, &[("CNI_ARGS", &pod("pod-a"))]);
    assert_eq!(out.err_code(), 108, "{out:?}");
    let out = bed.run_with("ADD", "c-a", "net1", &conf0, &[("CNI_ARGS", &pod("pod-a"))]);
    assert!(out.ok(), "{out:?}");
    assert!(bed
        .run_with("DEL", "c-a", "net1", &conf0, &[("CNI_ARGS", &pod("pod-a"))])
        .ok());
    assert_same(&before, &bed.state());
}

#[test]
fn without_the_setting_no_kubelet_is_asked() {
    let bed = Bed::new(1);
    let out = bed.run_with(
        "ADD",
        "c",
        "net1",
        &bed.conf(0, json!({})),
        &[("CNI_ARGS", &pod("anyone"))],
    );
    assert!(out.ok(), "{out:?}");
}
