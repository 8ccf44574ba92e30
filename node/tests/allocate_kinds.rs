//! Allocate by kind of pool, against the SR-IOV network device plugin's
//! answers: the device nodes, `PCIDEVICE_<..>` and its `_INFO` byte for
//! byte, and the device-info file in `devinfo/dp/` with its name, content
//! and life (replaced at each Allocate, removed when the plugin starts and
//! stops). The daemon binary runs on a fake node against a fake kubelet;
//! `DPDK_CNI_NODE_BIN` runs the same tests against another build.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{two_pf_node, Daemon, FakeKubelet};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::{AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse};
use dpdk_cni_node::plugin::{connect_unix, endpoint_name};
use vfio::fake::FakeNode;
use vfio::PciAddress;

const DP: &str = "var/run/k8s.cni.cncf.io/devinfo/dp";

/// One pool of each kind; each VF is named by its PF and index.
const CONFIG: &str = r#"{"resourceList": [
  {"resourceName": "sriov-net", "resourcePrefix": "example.com",
   "selectors": {"pfNames": ["ens1f0#0"], "drivers": ["igbvf"]}},
  {"resourceName": "dpdk", "selectors": {"pfNames": ["ens1f0#1"], "drivers": ["vfio-pci"]}},
  {"resourceName": "uio", "selectors": {"pfNames": ["ens1f0#2"], "drivers": ["igb_uio"]}},
  {"resourceName": "bind", "selectors": {"pfNames": ["ens1f0#3"], "drivers": ["igbvf", "vfio-pci"]}},
  {"resourceName": "rdma", "selectors": {"pfNames": ["ens2f0#0-1"], "isRdma": true}},
  {"resourceName": "vhost", "selectors": {"pfNames": ["ens2f0#2"], "needVhostNet": true},
   "additionalInfo": {"*": {"k": "v", "x": "all"}, "0000:81:10.4": {"x": "this one"}}}
]}"#;

const RESOURCES: [&str; 6] = [
    "example.com/sriov-net",
    "intel.com/dpdk",
    "intel.com/uio",
    "intel.com/bind",
    "intel.com/rdma",
    "intel.com/vhost",
];

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// An RDMA device `name` (`mlx5_<n>`) on `bdf`: its sysfs entries and char
/// devices, as the mlx5 RDMA driver lays them out.
fn add_rdma(root: &Path, bdf: &str, name: &str, n: u32) {
    fs::create_dir_all(
        root.join("sys/bus/pci/devices")
            .join(bdf)
            .join("infiniband")
            .join(name),
    )
    .unwrap();
    for (class, entry) in [
        ("infiniband_verbs", format!("uverbs{n}")),
        ("infiniband_mad", format!("umad{n}")),
        ("infiniband_mad", format!("issm{n}")),
    ] {
        let d = root.join("sys/class").join(class).join(entry);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ibdev"), format!("{name}\n")).unwrap();
    }
    fs::create_dir_all(root.join("dev/infiniband")).unwrap();
    fs::write(root.join("dev/infiniband/rdma_cm"), "").unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    node: FakeNode,
    kdir: PathBuf,
    state: PathBuf,
    cfg: PathBuf,
}

impl Fixture {
    /// The node: ens1f0's VF 1 on vfio-pci, VF 2 on igb_uio (as uio3);
    /// ens2f0's VF 0 with RDMA device mlx5_4 (VF 1 without RDMA);
    /// `/dev/vhost-net` and `/dev/net/tun` when `vhost`.
    fn new(vhost: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let node = two_pf_node(&root, 4);
        let sysfs = node.sysfs();
        sysfs
            .bind_driver(addr("0000:01:10.2"), vfio::VFIO_PCI, Default::default())
            .unwrap();
        node.add_driver("igb_uio").unwrap();
        sysfs
            .bind_driver(addr("0000:01:10.4"), "igb_uio", Default::default())
            .unwrap();
        fs::create_dir_all(root.join("sys/bus/pci/devices/0000:01:10.4/uio/uio3")).unwrap();
        add_rdma(&root, "0000:81:10.0", "mlx5_4", 4);
        if vhost {
            fs::create_dir_all(root.join("dev/net")).unwrap();
            fs::write(root.join("dev/vhost-net"), "").unwrap();
            fs::write(root.join("dev/net/tun"), "").unwrap();
        }
        let cfg = tmp.path().join("config.json");
        fs::write(&cfg, CONFIG).unwrap();
        Fixture {
            kdir: tmp.path().join("device-plugins"),
            state: tmp.path().join("state"),
            cfg,
            root,
            node,
            _tmp: tmp,
        }
    }

    fn dp_file(&self, resource: &str, bdf: &str) -> PathBuf {
        self.root
            .join(DP)
            .join(format!("{}-{bdf}-device.json", resource.replace('/', "-")))
    }

    /// Starts the daemon and waits for every pool to register.
    async fn start(&self) -> (Daemon, FakeKubelet) {
        let mut kubelet = FakeKubelet::start(&self.kdir);
        let d = Daemon::start(
            &self.root,
            &self.cfg,
            &self.kdir,
            &self.state,
            &["--no-annotate"],
        );
        let mut seen = Vec::new();
        for _ in RESOURCES {
            seen.push(
                kubelet
                    .next_registration(Duration::from_secs(10))
                    .await
                    .resource_name,
            );
        }
        seen.sort();
        let mut want = RESOURCES.map(String::from).to_vec();
        want.sort();
        assert_eq!(seen, want);
        (d, kubelet)
    }

    async fn allocate(
        &self,
        resource: &str,
        ids: &[&str],
    ) -> Result<ContainerAllocateResponse, tonic::Status> {
        let sock = self.kdir.join(endpoint_name(resource));
        let mut c = DevicePluginClient::new(connect_unix(&sock).await.unwrap());
        let r = c
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: ids.iter().map(|s| s.to_string()).collect(),
                }],
            })
            .await?;
        Ok(r.into_inner().container_responses.remove(0))
    }
}

/// The device nodes as `(container, host, permissions)`.
fn nodes(r: &ContainerAllocateResponse) -> Vec<(String, String, String)> {
    r.devices
        .iter()
        .map(|d| {
            (
                d.container_path.clone(),
                d.host_path.clone(),
                d.permissions.clone(),
            )
        })
        .collect()
}

fn rw(path: &str) -> (String, String, String) {
    (path.into(), path.into(), "rw".into())
}

fn envs(r: &ContainerAllocateResponse) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r.envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

fn env_pair(name: &str, ids: &str, info: &str) -> Vec<(String, String)> {
    vec![
        (name.to_string(), ids.to_string()),
        (format!("{name}_INFO"), info.to_string()),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn allocate_gives_each_kind_of_pool_what_the_sriov_device_plugin_gives() {
    let f = Fixture::new(true);
    let (_d, _k) = f.start().await;

    // A VF on its kernel driver: no device node at all (the CNI moves its
    // netdev); only the generic entry. The '-' of the name stays in the
    // variable's name, as upstream.
    let r = f
        .allocate("example.com/sriov-net", &["0000:01:10.0"])
        .await
        .unwrap();
    assert_eq!(nodes(&r), []);
    assert_eq!(
        envs(&r),
        env_pair(
            "PCIDEVICE_EXAMPLE_COM_SRIOV-NET",
            "0000:01:10.0",
            r#"{"0000:01:10.0":{"generic":{"deviceID":"0000:01:10.0"}}}"#
        )
    );
    assert_eq!(
        fs::read_to_string(f.dp_file("example.com/sriov-net", "0000:01:10.0")).unwrap(),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:10.0","pf-pci-address":"0000:01:00.0"}}"#
    );

    // vfio-pci: the container node and the group's.
    let r = f
        .allocate("intel.com/dpdk", &["0000:01:10.2"])
        .await
        .unwrap();
    assert_eq!(nodes(&r), [rw("/dev/vfio/vfio"), rw("/dev/vfio/102")]);
    assert_eq!(
        envs(&r),
        env_pair(
            "PCIDEVICE_INTEL_COM_DPDK",
            "0000:01:10.2",
            r#"{"0000:01:10.2":{"generic":{"deviceID":"0000:01:10.2"},"vfio":{"dev-mount":"/dev/vfio/102","mount":"/dev/vfio/vfio"}}}"#
        )
    );
    assert_eq!(
        fs::read_to_string(f.dp_file("intel.com/dpdk", "0000:01:10.2")).unwrap(),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:10.2","pf-pci-address":"0000:01:00.0"}}"#
    );

    // igb_uio: its /dev/uioN.
    let r = f
        .allocate("intel.com/uio", &["0000:01:10.4"])
        .await
        .unwrap();
    assert_eq!(nodes(&r), [rw("/dev/uio3")]);
    assert_eq!(
        envs(&r),
        env_pair(
            "PCIDEVICE_INTEL_COM_UIO",
            "0000:01:10.4",
            r#"{"0000:01:10.4":{"generic":{"deviceID":"0000:01:10.4"},"uio":{"mount":"/dev/uio3"}}}"#
        )
    );

    // Still on igbvf, in a pool of VFs the CNI binds to vfio-pci at ADD:
    // the group's node, which exists by the time the container does.
    let r = f
        .allocate("intel.com/bind", &["0000:01:10.6"])
        .await
        .unwrap();
    assert_eq!(nodes(&r), [rw("/dev/vfio/vfio"), rw("/dev/vfio/104")]);

    // isRdma: only the VF with an RDMA device is in the pool; it gets the
    // RDMA char devices in rdmamap's order and rdma-device in its file.
    let err = f
        .allocate("intel.com/rdma", &["0000:81:10.2"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let r = f
        .allocate("intel.com/rdma", &["0000:81:10.0"])
        .await
        .unwrap();
    assert_eq!(
        nodes(&r),
        [
            rw("/dev/infiniband/issm4"),
            rw("/dev/infiniband/umad4"),
            rw("/dev/infiniband/uverbs4"),
            rw("/dev/infiniband/rdma_cm"),
        ]
    );
    assert_eq!(
        envs(&r),
        env_pair(
            "PCIDEVICE_INTEL_COM_RDMA",
            "0000:81:10.0",
            r#"{"0000:81:10.0":{"generic":{"deviceID":"0000:81:10.0"},"rdma":{"issm":"/dev/infiniband/issm4","rdma_cm":"/dev/infiniband/rdma_cm","rdma_dev":"mlx5_4","umad":"/dev/infiniband/umad4","uverbs":"/dev/infiniband/uverbs4"}}}"#
        )
    );
    assert_eq!(
        fs::read_to_string(f.dp_file("intel.com/rdma", "0000:81:10.0")).unwrap(),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:81:10.0","rdma-device":"mlx5_4","pf-pci-address":"0000:81:00.0"}}"#
    );

    // needVhostNet, with additionalInfo: "*" first, the device's own over it.
    let r = f
        .allocate("intel.com/vhost", &["0000:81:10.4"])
        .await
        .unwrap();
    assert_eq!(nodes(&r), [rw("/dev/vhost-net"), rw("/dev/net/tun")]);
    assert_eq!(
        envs(&r),
        env_pair(
            "PCIDEVICE_INTEL_COM_VHOST",
            "0000:81:10.4",
            r#"{"0000:81:10.4":{"extra":{"k":"v","x":"this one"},"generic":{"deviceID":"0000:81:10.4"},"vhost":{"net-mount":"/dev/vhost-net","tun-mount":"/dev/net/tun"}}}"#
        )
    );
    assert_eq!(
        fs::read_to_string(f.dp_file("intel.com/vhost", "0000:81:10.4")).unwrap(),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:81:10.4","vhost-net":"/dev/vhost-net","pf-pci-address":"0000:81:00.0"}}"#
    );
    // Nothing was bound by any of it.
    let sysfs = f.node.sysfs();
    for (bdf, drv) in [
        ("0000:01:10.0", "igbvf"),
        ("0000:01:10.6", "igbvf"),
        ("0000:81:10.0", "igbvf"),
    ] {
        assert_eq!(
            sysfs
                .device(addr(bdf))
                .unwrap()
                .driver()
                .unwrap()
                .as_deref(),
            Some(drv)
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn devinfo_files_are_replaced_at_allocate_and_removed_at_start_and_stop() {
    let f = Fixture::new(true);
    // Left by an earlier run: a file of a pool's device, and one of a
    // resource this daemon does not serve.
    let stale = f.dp_file("intel.com/dpdk", "0000:01:10.2");
    let foreign = f.dp_file("other.io/x", "0000:01:10.2");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(&stale, "stale").unwrap();
    fs::write(&foreign, "theirs").unwrap();
    let (mut d, _k) = f.start().await;
    common::wait_for("the stale file to go", Duration::from_secs(5), || {
        !stale.exists()
    });
    assert_eq!(fs::read_to_string(&foreign).unwrap(), "theirs");

    f.allocate("intel.com/dpdk", &["0000:01:10.2"])
        .await
        .unwrap();
    let first = fs::read_to_string(&stale).unwrap();
    assert!(first.contains(r#""pci-address":"0000:01:10.2""#), "{first}");
    // Replaced at the next Allocate of the device, whatever was there.
    fs::remove_file(&stale).unwrap();
    fs::write(&stale, "changed").unwrap();
    f.allocate("intel.com/dpdk", &["0000:01:10.2"])
        .await
        .unwrap();
    assert_eq!(fs::read_to_string(&stale).unwrap(), first);
    f.allocate("example.com/sriov-net", &["0000:01:10.0"])
        .await
        .unwrap();
    let net = f.dp_file("example.com/sriov-net", "0000:01:10.0");
    assert!(net.exists());
    // Only the files: no temporary left in the directory.
    let mut names: Vec<String> = fs::read_dir(f.root.join(DP))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "example.com-sriov-net-0000:01:10.0-device.json",
            "intel.com-dpdk-0000:01:10.2-device.json",
            "other.io-x-0000:01:10.2-device.json",
        ]
    );

    // SIGTERM: the daemon removes what it wrote, and only that.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!stale.exists() && !net.exists());
    assert_eq!(fs::read_to_string(&foreign).unwrap(), "theirs");
}

#[tokio::test(flavor = "current_thread")]
async fn allocate_refuses_what_it_cannot_give_and_writes_nothing() {
    // No /dev/vhost-net on the node, and the uio device lost its uio entry.
    let f = Fixture::new(false);
    fs::remove_dir_all(f.root.join("sys/bus/pci/devices/0000:01:10.4/uio")).unwrap();
    let (_d, _k) = f.start().await;

    let err = f
        .allocate("intel.com/vhost", &["0000:81:10.4"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("/dev/vhost-net") && err.message().contains("vhost_net"),
        "{}",
        err.message()
    );
    assert!(!f.dp_file("intel.com/vhost", "0000:81:10.4").exists());

    let err = f
        .allocate("intel.com/uio", &["0000:01:10.4"])
        .await
        .unwrap_err();
    assert!(err.message().contains("uio"), "{}", err.message());
    assert!(!f.dp_file("intel.com/uio", "0000:01:10.4").exists());

    // The devinfo directory is a symlink someone planted: refused, nothing
    // written through it.
    let victim = f.root.join("victim");
    fs::create_dir_all(&victim).unwrap();
    let dp = f.root.join(DP);
    fs::create_dir_all(dp.parent().unwrap()).unwrap();
    let _ = fs::remove_dir_all(&dp);
    std::os::unix::fs::symlink(&victim, &dp).unwrap();
    let err = f
        .allocate("intel.com/dpdk", &["0000:01:10.2"])
        .await
        .unwrap_err();
    assert!(err.message().contains("symlink"), "{}", err.message());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
}
