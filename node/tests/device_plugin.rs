//! The daemon against a fake kubelet speaking the real v1beta1 gRPC API:
//! registration, the device list with NUMA topology, health changes
//! streamed within a second of a sysfs change, preferred allocation,
//! Allocate, and registration again after the kubelet restarts.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{set_free_hugepages, two_pf_node, Daemon, FakeKubelet};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    ListAndWatchResponse, PreferredAllocationRequest,
};
use dpdk_cni_node::plugin::connect_unix;
use tonic::transport::Channel;
use tonic::Streaming;

const RESOURCE: &str = "intel.com/dpdk_vf";
const ENDPOINT: &str = "dpdk-cni-intel.com_dpdk_vf.sock";

fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("config.json");
    fs::write(
        &p,
        r#"{"resourceList": [{
            "resourceName": "dpdk_vf", "resourcePrefix": "intel.com",
            "selectors": {"vendors": ["8086"], "devices": ["10ca"], "pfNames": ["ens1f0", "ens2f0"],
                          "drivers": ["igbvf", "vfio-pci"]},
            "hugepages": {"pageSize": "2Mi"}
        }]}"#,
    )
    .unwrap();
    p
}

async fn plugin(kubelet_dir: &Path) -> DevicePluginClient<Channel> {
    DevicePluginClient::new(connect_unix(&kubelet_dir.join(ENDPOINT)).await.unwrap())
}

async fn next(
    stream: &mut Streaming<ListAndWatchResponse>,
    within: Duration,
) -> HashMap<String, (String, Vec<i64>)> {
    let msg = tokio::time::timeout(within, stream.message())
        .await
        .expect("no ListAndWatch update in time")
        .unwrap()
        .expect("stream ended");
    msg.devices
        .into_iter()
        .map(|d| {
            let numa = d
                .topology
                .map(|t| t.nodes.iter().map(|n| n.id).collect())
                .unwrap_or_default();
            (d.id, (d.health, numa))
        })
        .collect()
}

/// Changes the tree, then waits for the stream to report `dev` as `health`;
/// returns how long it took.
async fn expect_health(
    stream: &mut Streaming<ListAndWatchResponse>,
    dev: &str,
    health: &str,
    change: impl FnOnce(),
) -> Duration {
    let t0 = Instant::now();
    change();
    let list = next(stream, Duration::from_secs(1)).await;
    let took = t0.elapsed();
    assert_eq!(list[dev].0, health, "{dev} after {took:?}: {list:?}");
    assert!(
        took < Duration::from_secs(1),
        "{dev} {health} after {took:?}"
    );
    took
}

#[tokio::test(flavor = "current_thread")]
async fn device_plugin_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let node = two_pf_node(&root, 4);
    let sysfs = node.sysfs();
    set_free_hugepages(&root, &[(0, 16), (1, 4096)]);
    let kdir = tmp.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&kdir);
    let _d = Daemon::start(
        &root,
        &config(tmp.path()),
        &kdir,
        &tmp.path().join("state"),
        &["--no-annotate"],
    );

    // Registration.
    let reg = kubelet.next_registration(Duration::from_secs(10)).await;
    assert_eq!(reg.version, "v1beta1");
    assert_eq!(reg.resource_name, RESOURCE);
    assert_eq!(reg.endpoint, ENDPOINT);
    assert!(reg.options.unwrap().get_preferred_allocation_available);
    assert!(kdir.join(ENDPOINT).exists());

    // The device list with NUMA nodes.
    let mut client = plugin(&kdir).await;
    let opts = client
        .get_device_plugin_options(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = next(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(list.len(), 8, "{list:?}");
    assert_eq!(list["0000:01:10.0"], ("Healthy".to_string(), vec![0]));
    assert_eq!(list["0000:81:10.6"], ("Healthy".to_string(), vec![1]));

    // Health follows sysfs within a second: a VF disappears and comes back.
    let vf = root.join("sys/bus/pci/devices/0000:01:10.2");
    let gone = root.join("vf-away");
    let mut worst = Duration::ZERO;
    worst = worst.max(
        expect_health(&mut stream, "0000:01:10.2", "Unhealthy", || {
            fs::rename(&vf, &gone).unwrap()
        })
        .await,
    );
    worst = worst.max(
        expect_health(&mut stream, "0000:01:10.2", "Healthy", || {
            fs::rename(&gone, &vf).unwrap()
        })
        .await,
    );
    // Another driver grabs a VF; the CNI's vfio-pci does not count.
    let a: vfio::PciAddress = "0000:01:10.4".parse().unwrap();
    worst = worst.max(
        expect_health(&mut stream, "0000:01:10.4", "Unhealthy", || {
            sysfs
                .bind_driver(a, "pci-stub", Default::default())
                .unwrap()
        })
        .await,
    );
    worst = worst.max(
        expect_health(&mut stream, "0000:01:10.4", "Healthy", || {
            sysfs
                .bind_driver(a, vfio::VFIO_PCI, Default::default())
                .unwrap()
        })
        .await,
    );
    // The PF goes away: all its VFs.
    let pf = root.join("sys/bus/pci/devices/0000:81:00.0");
    let pf_gone = root.join("pf-away");
    let t0 = Instant::now();
    fs::rename(&pf, &pf_gone).unwrap();
    let list = next(&mut stream, Duration::from_secs(1)).await;
    worst = worst.max(t0.elapsed());
    for i in [
        "0000:81:10.0",
        "0000:81:10.2",
        "0000:81:10.4",
        "0000:81:10.6",
    ] {
        assert_eq!(list[i].0, "Unhealthy", "{i}");
    }
    assert_eq!(list["0000:01:10.0"].0, "Healthy");
    fs::rename(&pf_gone, &pf).unwrap();
    let list = next(&mut stream, Duration::from_secs(1)).await;
    assert!(list.values().all(|(h, _)| h == "Healthy"), "{list:?}");
    println!("slowest health update: {worst:?}");

    // Preferred allocation: one NUMA node, the one with the hugepages.
    let all: Vec<String> = {
        let mut v: Vec<String> = list.keys().cloned().collect();
        v.sort();
        v
    };
    let pref = |must: Vec<&str>, size: i32| PreferredAllocationRequest {
        container_requests: vec![ContainerPreferredAllocationRequest {
            available_device_i_ds: all.clone(),
            must_include_device_i_ds: must.into_iter().map(String::from).collect(),
            allocation_size: size,
        }],
    };
    let r = client
        .get_preferred_allocation(pref(vec![], 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.container_responses[0].device_i_ds,
        ["0000:81:10.0", "0000:81:10.2"]
    );
    let r = client
        .get_preferred_allocation(pref(vec!["0000:01:10.6"], 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.container_responses[0].device_i_ds,
        ["0000:01:10.6", "0000:01:10.0", "0000:01:10.2"]
    );

    // Allocate: device nodes, environment, hugepages.
    let r = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:81:10.0".into(), "0000:81:10.2".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let c = &r.container_responses[0];
    let devs: Vec<(&str, &str, &str)> = c
        .devices
        .iter()
        .map(|d| {
            (
                d.container_path.as_str(),
                d.host_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        devs,
        [
            ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"),
            ("/dev/vfio/1001", "/dev/vfio/1001", "rw"),
            ("/dev/vfio/1002", "/dev/vfio/1002", "rw"),
        ]
    );
    assert_eq!(
        c.envs["PCIDEVICE_INTEL_COM_DPDK_VF"],
        "0000:81:10.0,0000:81:10.2"
    );
    let info: serde_json::Value =
        serde_json::from_str(&c.envs["PCIDEVICE_INTEL_COM_DPDK_VF_INFO"]).unwrap();
    assert_eq!(
        info["0000:81:10.0"],
        serde_json::json!({"generic": {"deviceID": "0000:81:10.0"},
                           "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/1001"}})
    );
    assert_eq!(c.mounts.len(), 1);
    assert_eq!(
        (
            c.mounts[0].container_path.as_str(),
            c.mounts[0].host_path.as_str()
        ),
        ("/dev/hugepages", "/dev/hugepages")
    );

    // noiommu: the host's /dev/vfio/noiommu-N is the container's /dev/vfio/N.
    fs::write(root.join("dev/vfio/noiommu-101"), "").unwrap();
    let r = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:01:10.0".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let d = &r.container_responses[0].devices[1];
    assert_eq!(
        (d.container_path.as_str(), d.host_path.as_str()),
        ("/dev/vfio/101", "/dev/vfio/noiommu-101")
    );

    // A device of no pool is refused.
    let err = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:01:00.0".into()],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // The kubelet restarts: it removes every socket and serves a new one.
    kubelet.stop();
    let mut kubelet = FakeKubelet::start(&kdir);
    let reg = kubelet.next_registration(Duration::from_secs(10)).await;
    assert_eq!(reg.resource_name, RESOURCE);
    common::wait_for("the plugin socket", Duration::from_secs(5), || {
        kdir.join(ENDPOINT).exists()
    });
    let mut client = plugin(&kdir).await;
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut stream, Duration::from_secs(2)).await.len(), 8);
    // And once only.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), kubelet.registrations.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn config_reload_and_cdi() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = two_pf_node(&root, 2);
    let kdir = tmp.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&kdir);
    let cfg_dir = tmp.path().join("etc");
    fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = cfg_dir.join("config.json");
    let cdi = tmp.path().join("cdi");
    fs::write(
        &cfg,
        format!(
            r#"{{"resourceList": [{{"resourceName": "a", "selectors": {{"pfNames": ["ens1f0"], "drivers": ["igbvf", "vfio-pci"]}}}}],
                   "cdi": {{"specDir": "{}"}}}}"#,
            cdi.display()
        ),
    )
    .unwrap();
    let _d = Daemon::start(
        &root,
        &cfg,
        &kdir,
        &tmp.path().join("state"),
        &["--no-annotate"],
    );
    assert_eq!(
        kubelet
            .next_registration(Duration::from_secs(10))
            .await
            .resource_name,
        "intel.com/a"
    );

    // CDI mode: Allocate names CDI devices; the spec file describes them.
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(cdi.join("dpdk-cni-intel.com_a.json")).unwrap()).unwrap();
    assert_eq!(spec["kind"], "intel.com/a");
    assert_eq!(spec["devices"][0]["name"], "0000:01:10.0");
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/101"
    );
    let mut client = DevicePluginClient::new(
        connect_unix(&kdir.join("dpdk-cni-intel.com_a.sock"))
            .await
            .unwrap(),
    );
    let r = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:01:10.2".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let c = &r.container_responses[0];
    assert_eq!(c.cdi_devices[0].name, "intel.com/a=0000:01:10.2");
    assert!(c.devices.is_empty());
    assert_eq!(c.envs["PCIDEVICE_INTEL_COM_A"], "0000:01:10.2");

    // Reload, the way a ConfigMap volume updates: write aside, rename over.
    let tmpcfg = cfg_dir.join(".new");
    fs::write(&tmpcfg, r#"{"resourceList": [{"resourceName": "b", "resourcePrefix": "dpdk-cni.io", "selectors": {"pfNames": ["ens2f0"]}}]}"#).unwrap();
    fs::rename(&tmpcfg, &cfg).unwrap();
    let reg = kubelet.next_registration(Duration::from_secs(5)).await;
    assert_eq!(reg.resource_name, "dpdk-cni.io/b");
    common::wait_for("the old socket to go", Duration::from_secs(5), || {
        !kdir.join("dpdk-cni-intel.com_a.sock").exists()
    });
    // A broken config is ignored: the pools stay.
    fs::write(&cfg, "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(kdir.join("dpdk-cni-dpdk-cni.io_b.sock").exists());
}
