//! Discovery on recorded pod inputs laid out in temp dirs: the happy paths,
//! and one clear error for every missing or malformed input.

use std::path::{Path, PathBuf};

use dpdk_discover::{discover, DeviceKind, DiscoverError, Inputs, Lcores, Location, NetworkStatus};

const VFIO_DEVINFO: &str = r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:10.0","pf-pci-address":"0000:01:00.0","rdma-device":"","vhost-net":"","representor-device":"","numa-node":1,"iommu-group":"12","vfio-device":"/dev/vfio/12","original-driver":"igbvf","device-type":"vfio-pci"}}"#;
const NETDEV_DEVINFO: &str = r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:10.1","pf-pci-address":"0000:01:00.0","rdma-device":"","vhost-net":"","representor-device":"","numa-node":-1,"iommu-group":"","vfio-device":"","original-driver":"","device-type":"netdevice","interface":"net1","eal-vdev":"net_af_packet0,iface=net1"}}"#;

const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
31 22 0:45 / /dev/hugepages rw,relatime master:14 - hugetlbfs hugetlbfs rw,pagesize=2M
";

/// A pod's view: `proc/`, `sys/` and a device-info dir under one temp dir,
/// two NUMA nodes with 512 free 2 MiB pages each.
struct Pod {
    tmp: tempfile::TempDir,
}

impl Pod {
    fn new() -> Pod {
        let pod = Pod {
            tmp: tempfile::tempdir().unwrap(),
        };
        pod.write("proc/self/mountinfo", MOUNTINFO);
        pod.write(
            "proc/meminfo",
            "MemTotal: 1000 kB\nHugepagesize:       2048 kB\n",
        );
        for n in 0..2 {
            pod.free_pages(n, "512\n");
        }
        std::fs::create_dir_all(pod.path("devinfo")).unwrap();
        pod
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn free_pages(&self, node: u32, text: &str) {
        self.write(
            &format!(
                "sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/free_hugepages"
            ),
            text,
        );
    }

    fn devinfo(&self, name: &str, json: &str) {
        self.write(&format!("devinfo/{name}"), json);
    }

    fn inputs(&self) -> Inputs {
        let mut i = Inputs::with_roots(self.path("proc"), self.path("sys"));
        i.devinfo_dir = Location::Required(self.path("devinfo"));
        i.env = vec![("POD_NAME".into(), "web-0".into())];
        i
    }
}

fn err(inputs: &Inputs) -> DiscoverError {
    discover(inputs).expect_err("discovery should fail")
}

fn args(inputs: &Inputs) -> String {
    discover(inputs).unwrap().args().join(" ")
}

// ---- happy paths ----------------------------------------------------------

#[test]
fn vfio_device_gets_memory_on_its_numa_node() {
    let pod = Pod::new();
    pod.devinfo("net-a-c1-net1-device.json", VFIO_DEVINFO);
    let plan = discover(&pod.inputs()).unwrap();
    assert_eq!(plan.socket_mem, vec![0, 256]);
    assert_eq!(plan.huge_mount.path, Path::new("/dev/hugepages"));
    assert_eq!(plan.huge_mount.page_size_kb, 2048);
    assert_eq!(
        plan.args().join(" "),
        "--file-prefix web-0 --huge-dir /dev/hugepages --socket-mem 0,256 -a 0000:01:10.0"
    );
}

#[test]
fn netdevice_fallback_becomes_af_packet_vdev() {
    let pod = Pod::new();
    pod.devinfo("a.json", NETDEV_DEVINFO);
    let plan = discover(&pod.inputs()).unwrap();
    assert_eq!(
        plan.devices[0].kind,
        DeviceKind::Netdevice {
            interface: "net1".into(),
            vdev: "net_af_packet0,iface=net1".into()
        }
    );
    // NUMA unknown (-1) on a two-node machine: the node with most free pages.
    pod.free_pages(1, "600\n");
    let plan = discover(&pod.inputs()).unwrap();
    assert_eq!(plan.socket_mem, vec![0, 256]);
    assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
    assert!(plan.args().ends_with(&[
        "--vdev".to_owned(),
        "net_af_packet0,iface=net1".to_owned(),
        "--no-pci".to_owned()
    ]));
}

#[test]
fn netdevice_without_eal_vdev_names_one() {
    let pod = Pod::new();
    pod.devinfo(
        "a.json",
        r#"{"type":"pci","pci":{"device-type":"netdevice","interface":"net2","numa-node":0}}"#,
    );
    assert!(args(&pod.inputs()).contains("--vdev net_af_packet_net2,iface=net2"));
}

#[test]
fn network_status_from_downward_api_file() {
    let pod = Pod::new();
    let status = format!(
        r#"[{{"name":"cbr0","interface":"eth0","ips":["10.0.0.5"],"mac":"aa:bb:cc:dd:ee:ff","default":true,"dns":{{}}}},{{"name":"default/sriov-a","interface":"net1","mac":"02:00:00:00:00:01","mtu":1500,"dns":{{}},"device-info":{VFIO_DEVINFO}}}]"#
    );
    // The kubelet writes annotation values Go-quoted.
    let quoted = format!("{:?}", status);
    pod.write(
        "podinfo/annotations",
        &format!("kubernetes.io/config.seen=\"2024-01-01\"\nk8s.v1.cni.cncf.io/network-status={quoted}\n"),
    );
    let mut i = pod.inputs();
    i.devinfo_dir = Location::Skip;
    i.network_status =
        NetworkStatus::AnnotationsFile(Location::Required(pod.path("podinfo/annotations")));
    let plan = discover(&i).unwrap();
    assert_eq!(plan.devices.len(), 1);
    assert!(
        plan.devices[0].origin.contains("sriov-a net1"),
        "{}",
        plan.devices[0].origin
    );
    assert_eq!(plan.socket_mem, vec![0, 256]);

    i.network_status = NetworkStatus::Json(status);
    assert!(args(&i).contains("-a 0000:01:10.0"));
}

#[test]
fn device_plugin_env_with_numa_and_dedup() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    let mut i = pod.inputs();
    i.env.push((
        "PCIDEVICE_INTEL_COM_SRIOV_A".into(),
        "0000:01:10.0,0000:02:00.2".into(),
    ));
    i.env.push((
        "PCIDEVICE_INTEL_COM_SRIOV_A_INFO".into(),
        r#"{"0000:02:00.2":{"generic":{"deviceID":"0000:02:00.2"},"vfio":{"mount":"/dev/vfio/vfio","dev-mount":"/dev/vfio/40"},"numa-node":0}}"#.into(),
    ));
    let plan = discover(&i).unwrap();
    assert_eq!(plan.devices.len(), 2, "{:?}", plan.devices);
    assert_eq!(plan.socket_mem, vec![256, 256]);
    assert!(plan
        .args()
        .join(" ")
        .ends_with("-a 0000:01:10.0 -a 0000:02:00.2"));
}

#[test]
fn device_plugin_env_says_vfio_only_with_a_vfio_or_uio_entry() {
    // Neither device is in the pod's sysfs: only what the env states counts.
    let pod = Pod::new();
    let mut i = pod.inputs();
    i.env
        .push(("PCIDEVICE_INTEL_COM_K".into(), "0000:05:10.0".into()));
    i.env.push((
        "PCIDEVICE_INTEL_COM_K_INFO".into(),
        r#"{"0000:05:10.0":{"generic":{"deviceID":"0000:05:10.0"}}}"#.into(),
    ));
    // A VF left on its kernel driver (a netdevice pool): no `-a` for it.
    assert!(
        matches!(err(&i), DiscoverError::DeviceNotInSysfs { pci, .. } if pci.to_string() == "0000:05:10.0"),
        "{:?}",
        discover(&i)
    );
    i.env.pop();
    i.env.push((
        "PCIDEVICE_INTEL_COM_K_INFO".into(),
        r#"{"0000:05:10.0":{"generic":{"deviceID":"0000:05:10.0"},"uio":{"mount":"/dev/uio3"}}}"#
            .into(),
    ));
    assert!(args(&i).contains("-a 0000:05:10.0"));
}

#[test]
fn lcores_from_cpuset_and_list() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.write("sys/fs/cgroup/cpuset.cpus.effective", "2-3,6\n");
    let mut i = pod.inputs();
    i.lcores = Lcores::Cpuset;
    assert!(args(&i).starts_with("-l 2-3,6 "));
    i.lcores = Lcores::List(vec![1]);
    assert!(args(&i).starts_with("-l 1 "));
}

/// Two nodes with CPUs 0-1 and 2-3, as the kernel lists them.
fn with_cpulists(pod: &Pod) {
    pod.write("sys/devices/system/node/node0/cpulist", "0-1\n");
    pod.write("sys/devices/system/node/node1/cpulist", "2-3\n");
}

#[test]
fn default_lcores_on_two_nodes_are_the_devices_nodes_cpus() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO); // NUMA node 1
    with_cpulists(&pod);
    let mut i = pod.inputs();
    i.allowed_cpus = Some(vec![0, 1, 2, 3]);
    let plan = discover(&i).unwrap();
    assert_eq!(plan.lcores, Some(vec![2, 3]));
    assert!(
        args(&i).starts_with(
            "-l 2-3 --file-prefix web-0 --huge-dir /dev/hugepages --socket-mem 0,256 "
        ),
        "{}",
        args(&i)
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("lcores 2-3") && n.contains("NUMA node 1")),
        "{:?}",
        plan.notes
    );
    // Only the allowed CPUs of the node: a pod limited to 1 and 3 gets 3.
    i.allowed_cpus = Some(vec![1, 3]);
    assert_eq!(discover(&i).unwrap().lcores, Some(vec![3]));
    // A device on node 0: its CPUs.
    pod.devinfo(
        "a.json",
        &VFIO_DEVINFO.replace(r#""numa-node":1"#, r#""numa-node":0"#),
    );
    i.allowed_cpus = Some(vec![0, 1, 2, 3]);
    assert_eq!(discover(&i).unwrap().lcores, Some(vec![0, 1]));
}

#[test]
fn default_lcores_left_to_eal_where_numa_does_not_narrow_them() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO); // NUMA node 1
    let mut i = pod.inputs();
    i.allowed_cpus = Some(vec![0, 1, 2, 3]);
    // No cpulist in sysfs: nothing to go by.
    assert_eq!(discover(&i).unwrap().lcores, None);
    with_cpulists(&pod);
    // The pod may not run on node 1: EAL chooses, and the note says why.
    i.allowed_cpus = Some(vec![0, 1]);
    let plan = discover(&i).unwrap();
    assert_eq!(plan.lcores, None);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("none of the CPUs this pod may use (0-1)")),
        "{:?}",
        plan.notes
    );
    // Every allowed CPU is on node 1 already: no -l.
    i.allowed_cpus = Some(vec![2, 3]);
    assert_eq!(discover(&i).unwrap().lcores, None);
    // Devices on both nodes: memory on both, lcores left to EAL.
    pod.devinfo(
        "b.json",
        &VFIO_DEVINFO
            .replace("0000:01:10.0", "0000:01:10.2")
            .replace(r#""numa-node":1"#, r#""numa-node":0"#),
    );
    i.allowed_cpus = Some(vec![0, 1, 2, 3]);
    let plan = discover(&i).unwrap();
    assert_eq!(plan.socket_mem, vec![256, 256], "{:?}", plan.notes);
    assert_eq!(plan.lcores, None);
    // An explicit choice is kept as given.
    i.lcores = Lcores::List(vec![0]);
    assert_eq!(discover(&i).unwrap().lcores, Some(vec![0]));
}

#[test]
fn file_prefix_falls_back_and_is_sanitised() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    let mut i = pod.inputs();
    i.env = vec![("HOSTNAME".into(), "my pod/1".into())];
    assert_eq!(discover(&i).unwrap().file_prefix, "my_pod_1");
    i.env.clear();
    pod.write("proc/sys/kernel/hostname", "node-7\n");
    assert_eq!(discover(&i).unwrap().file_prefix, "node-7");
    i.file_prefix = Some("explicit".into());
    assert_eq!(discover(&i).unwrap().file_prefix, "explicit");
}

#[test]
fn mount_without_pagesize_uses_meminfo_and_huge_dir_selects() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.write(
        "proc/self/mountinfo",
        &format!("{MOUNTINFO}40 22 0:50 / /mnt/huge\\040pages rw - hugetlbfs nodev rw\n"),
    );
    let mut i = pod.inputs();
    i.huge_dir = Some("/mnt/huge pages".into());
    let plan = discover(&i).unwrap();
    assert_eq!(plan.huge_mount.page_size_kb, 2048);
    assert_eq!(plan.huge_mount.path, Path::new("/mnt/huge pages"));
}

#[test]
fn single_node_machine_without_numa_dirs() {
    let pod = Pod::new();
    std::fs::remove_dir_all(pod.path("sys/devices")).unwrap();
    pod.write(
        "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        "200\n",
    );
    pod.devinfo(
        "a.json",
        &VFIO_DEVINFO.replace(r#""numa-node":1"#, r#""numa-node":0"#),
    );
    assert_eq!(discover(&pod.inputs()).unwrap().socket_mem, vec![256]);
}

// ---- every missing or malformed input -------------------------------------

#[test]
fn no_devices() {
    let pod = Pod::new();
    let e = err(&pod.inputs());
    assert!(matches!(e, DiscoverError::NoDevices { .. }));
    assert!(e.to_string().contains("PCIDEVICE_"), "{e}");
    // Default locations that do not exist are skipped, not errors.
    let mut i = pod.inputs();
    i.devinfo_dir = Location::IfPresent(pod.path("nope"));
    i.network_status = NetworkStatus::AnnotationsFile(Location::IfPresent(pod.path("nope2")));
    assert!(
        matches!(err(&i), DiscoverError::NoDevices { looked_in } if looked_in.contains("(absent)"))
    );
}

#[test]
fn required_devinfo_dir_missing() {
    let pod = Pod::new();
    let mut i = pod.inputs();
    i.devinfo_dir = Location::Required(pod.path("nope"));
    assert!(matches!(err(&i), DiscoverError::Read { path, .. } if path.ends_with("nope")));
}

#[test]
fn device_info_not_json() {
    let pod = Pod::new();
    pod.devinfo("a.json", "{\"type\": \"pci\",");
    let e = err(&pod.inputs());
    assert!(
        matches!(&e, DiscoverError::DeviceInfoJson { origin, .. } if origin.ends_with("a.json"))
    );
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

#[test]
fn device_info_missing_fields() {
    for (doc, field) in [
        (r#"{"version":"1.1.0"}"#, "type"),
        (r#"{"type":"pci"}"#, "pci"),
        (r#"{"type":"pci","pci":{"numa-node":0}}"#, "pci-address"),
        (r#"{"type":"pci","pci":{"pci-address":""}}"#, "pci-address"),
        (
            r#"{"type":"pci","pci":{"device-type":"netdevice"}}"#,
            "interface",
        ),
    ] {
        let pod = Pod::new();
        pod.devinfo("a.json", doc);
        match err(&pod.inputs()) {
            DiscoverError::DeviceInfoMissing { field: f, .. } => assert_eq!(f, field, "{doc}"),
            other => panic!("{doc}: {other}"),
        }
    }
}

#[test]
fn device_info_wrong_field_types() {
    for (doc, field) in [
        (r#"[1]"#, "(document)"),
        (r#"{"type":7}"#, "type"),
        (r#"{"type":"pci","pci":"0000:01:10.0"}"#, "pci"),
        (r#"{"type":"pci","pci":{"pci-address":1}}"#, "pci-address"),
        (
            r#"{"type":"pci","pci":{"pci-address":"0000:01:10.0","device-type":3}}"#,
            "device-type",
        ),
    ] {
        let pod = Pod::new();
        pod.devinfo("a.json", doc);
        match err(&pod.inputs()) {
            DiscoverError::DeviceInfoField { field: f, .. } => assert_eq!(f, field, "{doc}"),
            other => panic!("{doc}: {other}"),
        }
    }
}

#[test]
fn non_pci_device_info_is_skipped() {
    let pod = Pod::new();
    pod.devinfo("a.json", r#"{"type":"vdpa","vdpa":{"parent-device":"x"}}"#);
    assert!(matches!(
        err(&pod.inputs()),
        DiscoverError::NoDevices { .. }
    ));
}

#[test]
fn bad_pci_address() {
    let pod = Pod::new();
    pod.devinfo(
        "a.json",
        &VFIO_DEVINFO.replace("0000:01:10.0", "0000:01:10"),
    );
    let e = err(&pod.inputs());
    assert!(matches!(&e, DiscoverError::BadPciAddress { value, .. } if value == "0000:01:10"));
    assert!(e.to_string().contains("dddd:bb:dd.f"), "{e}");

    let pod = Pod::new();
    let mut i = pod.inputs();
    i.env
        .push(("PCIDEVICE_X_Y".into(), "0000:01:10.0,zz".into()));
    assert!(
        matches!(err(&i), DiscoverError::BadPciAddress { origin, value } if origin == "PCIDEVICE_X_Y" && value == "zz")
    );
}

#[test]
fn numa_node_not_a_number() {
    for bad in [r#""abc""#, "-2", "1.5", "true", "[0]"] {
        let pod = Pod::new();
        pod.devinfo(
            "a.json",
            &VFIO_DEVINFO.replace(r#""numa-node":1"#, &format!(r#""numa-node":{bad}"#)),
        );
        match err(&pod.inputs()) {
            DiscoverError::BadNumaNode { value, .. } => assert_eq!(value, bad),
            other => panic!("{bad}: {other}"),
        }
    }
    // A numeric string is accepted.
    let pod = Pod::new();
    pod.devinfo(
        "a.json",
        &VFIO_DEVINFO.replace(r#""numa-node":1"#, r#""numa-node":"1""#),
    );
    assert_eq!(discover(&pod.inputs()).unwrap().socket_mem, vec![0, 256]);
}

#[test]
fn unknown_device_type() {
    let pod = Pod::new();
    pod.devinfo("a.json", &VFIO_DEVINFO.replace("\"vfio-pci\"", "\"uio\""));
    assert!(
        matches!(err(&pod.inputs()), DiscoverError::UnknownDeviceType { value, .. } if value == "uio")
    );
}

#[test]
fn network_status_malformed() {
    let pod = Pod::new();
    let mut i = pod.inputs();
    i.devinfo_dir = Location::Skip;
    i.network_status = NetworkStatus::Json(r#"{"name":"not a list"}"#.into());
    assert!(matches!(err(&i), DiscoverError::NetworkStatusJson { .. }));
    i.network_status = NetworkStatus::Json(r#"[{"name":"a","device-info":{"type":"pci"}}]"#.into());
    assert!(
        matches!(err(&i), DiscoverError::DeviceInfoMissing { field: "pci", origin } if origin.contains("[0] (a ?)"))
    );
}

#[test]
fn annotations_file_problems() {
    let pod = Pod::new();
    let mut i = pod.inputs();
    i.devinfo_dir = Location::Skip;
    i.network_status =
        NetworkStatus::AnnotationsFile(Location::Required(pod.path("podinfo/annotations")));
    // Missing file.
    assert!(matches!(err(&i), DiscoverError::Read { .. }));
    // Unquoted value.
    pod.write(
        "podinfo/annotations",
        "a=\"b\"\nk8s.v1.cni.cncf.io/network-status=[{}]\n",
    );
    assert!(matches!(
        err(&i),
        DiscoverError::AnnotationLine { line: 2, .. }
    ));
    // Bad escape.
    pod.write(
        "podinfo/annotations",
        "k8s.v1.cni.cncf.io/network-status=\"[\\q]\"\n",
    );
    assert!(
        matches!(err(&i), DiscoverError::AnnotationLine { line: 1, reason, .. } if reason.contains("\\q"))
    );
    // No such annotation: noted, then no devices.
    pod.write("podinfo/annotations", "a=\"b\"\n");
    assert!(matches!(err(&i), DiscoverError::NoDevices { .. }));
}

#[test]
fn device_plugin_info_malformed() {
    let pod = Pod::new();
    let mut i = pod.inputs();
    i.env.push(("PCIDEVICE_X_Y".into(), "0000:01:10.0".into()));
    i.env
        .push(("PCIDEVICE_X_Y_INFO".into(), "{not json".into()));
    assert!(
        matches!(err(&i), DiscoverError::DevicePluginInfoJson { var, .. } if var == "PCIDEVICE_X_Y_INFO")
    );
    i.env.pop();
    i.env.push((
        "PCIDEVICE_X_Y_INFO".into(),
        r#"{"0000:01:10.0":{"numa-node":"one"}}"#.into(),
    ));
    assert!(
        matches!(err(&i), DiscoverError::BadNumaNode { origin, .. } if origin.contains("0000:01:10.0"))
    );
}

#[test]
fn no_hugetlbfs_mount() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.write(
        "proc/self/mountinfo",
        "22 1 0:21 / / rw - overlay overlay rw\n",
    );
    let e = err(&pod.inputs());
    assert!(matches!(e, DiscoverError::NoHugetlbfsMount { .. }));
    assert!(e.to_string().starts_with("no hugetlbfs mount in "), "{e}");
    // A huge_dir that is not a hugetlbfs mount.
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    let mut i = pod.inputs();
    i.huge_dir = Some("/elsewhere".into());
    assert!(matches!(err(&i), DiscoverError::NoHugetlbfsMount { .. }));
}

#[test]
fn malformed_mountinfo_and_page_size() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.write("proc/self/mountinfo", "garbage\n");
    assert!(
        matches!(err(&pod.inputs()), DiscoverError::BadMountInfo { line, .. } if line == "garbage")
    );
    pod.write(
        "proc/self/mountinfo",
        "31 22 0:45 / /h rw - hugetlbfs h rw,pagesize=2Q\n",
    );
    assert!(matches!(err(&pod.inputs()), DiscoverError::BadPageSize { value } if value == "2Q"));
    pod.write(
        "proc/self/mountinfo",
        "31 22 0:45 / /h rw - hugetlbfs h rw\n",
    );
    pod.write("proc/meminfo", "MemTotal: 1 kB\n");
    assert!(matches!(
        err(&pod.inputs()),
        DiscoverError::BadPageSize { .. }
    ));
}

#[test]
fn device_on_missing_numa_node() {
    let pod = Pod::new();
    pod.devinfo(
        "a.json",
        &VFIO_DEVINFO.replace(r#""numa-node":1"#, r#""numa-node":3"#),
    );
    let e = err(&pod.inputs());
    assert!(
        matches!(e, DiscoverError::UnknownNumaNode { node: 3, .. }),
        "{e}"
    );
}

#[test]
fn no_free_hugepages_on_the_device_node() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.free_pages(1, "0\n");
    let e = err(&pod.inputs());
    assert!(
        matches!(
            e,
            DiscoverError::NoFreeHugepages {
                node: 1,
                size_kb: 2048
            }
        ),
        "{e}"
    );
    // Node 0's free pages do not help a device on node 1.
    pod.free_pages(0, "100000\n");
    assert!(matches!(
        err(&pod.inputs()),
        DiscoverError::NoFreeHugepages { node: 1, .. }
    ));
    // A missing pool of the mount's size counts as none free.
    std::fs::remove_dir_all(pod.path("sys/devices/system/node/node1/hugepages")).unwrap();
    assert!(matches!(
        err(&pod.inputs()),
        DiscoverError::NoFreeHugepages { node: 1, .. }
    ));
}

#[test]
fn not_enough_hugepages() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.free_pages(1, "100\n");
    let e = err(&pod.inputs());
    assert!(
        matches!(
            e,
            DiscoverError::NotEnoughHugepages {
                node: 1,
                free: 100,
                needed: 128,
                mem_mb: 256,
                ..
            }
        ),
        "{e}"
    );
    let mut i = pod.inputs();
    i.mem_mb = 200;
    assert_eq!(discover(&i).unwrap().socket_mem, vec![0, 200]);
}

#[test]
fn free_hugepages_not_a_number() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    pod.free_pages(1, "lots\n");
    assert!(
        matches!(err(&pod.inputs()), DiscoverError::BadHugepageCount { value, .. } if value == "lots")
    );
}

#[test]
fn bad_or_missing_cpuset() {
    let pod = Pod::new();
    pod.devinfo("a.json", VFIO_DEVINFO);
    let mut i = pod.inputs();
    i.lcores = Lcores::Cpuset;
    assert!(matches!(err(&i), DiscoverError::Read { .. }));
    pod.write("sys/fs/cgroup/cpuset.cpus.effective", "3-1\n");
    assert!(matches!(err(&i), DiscoverError::BadCpuList { .. }));
    pod.write("sys/fs/cgroup/cpuset.cpus.effective", "\n");
    assert!(matches!(err(&i), DiscoverError::NoCpus));
}
