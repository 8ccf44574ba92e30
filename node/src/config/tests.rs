use std::path::{Path, PathBuf};

use super::*;

fn parse(data: &str) -> Result<Config> {
    Config::parse(Path::new("c.json"), data.as_bytes())
}

fn refused(data: &str) -> String {
    match parse(data) {
        Ok(c) => panic!("accepted {data}: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn upstream_configmap_loads() {
    // The shape of seed 003's ConfigMap, selectors as an object.
    let data = r#"{"resourceList": [{
        "resourceName": "mlnx_sriov_rdma", "resourcePrefix": "mellanox.com",
        "selectors": {"vendors": ["15b3"], "devices": ["101e"], "drivers": ["mlx5_core"], "isRdma": false}
      }, {
        "resourceName": "intel_sriov_dpdk", "deviceType": "netDevice",
        "selectors": [{"pfNames": ["ens1f0#0,2-7"]}, {"pciAddresses": ["0000:18:02.5"]}]
      }]}"#;
    let cfg = parse(data).unwrap();
    assert_eq!(cfg.resource_list.len(), 2);
    assert_eq!(
        cfg.resource_list[0].full_name(None),
        "mellanox.com/mlnx_sriov_rdma"
    );
    assert_eq!(
        cfg.resource_list[1].full_name(None),
        "intel.com/intel_sriov_dpdk"
    );
    assert_eq!(cfg.resource_list[1].selectors.len(), 2);
}

#[test]
fn every_upstream_field_is_read() {
    let data = r#"{"resourceList": [{
        "resourceName": "a", "excludeTopology": true,
        "selectors": [{
            "vendors": ["8086"], "devices": ["154c"], "drivers": ["iavf"],
            "pciAddresses": ["0000:18:02.5"], "acpiIndexes": ["101"],
            "pfNames": ["ens1f0#0-3"], "rootDevices": ["0000:86:00.0#0-3"],
            "linkTypes": ["ether"], "ddpProfiles": ["GTP"], "pKeys": ["0x1"],
            "needVhostNet": true, "isRdma": true
        }, {"vdpaType": "vhost"}],
        "additionalInfo": {"*": {"token": "a"}, "0000:18:02.5": {"token": "b", "x": "y"}}
      }, {
        "resourceName": "fpga", "deviceType": "accelerator",
        "selectors": {"vendors": ["8086"], "devices": ["0d90"]}
      }, {
        "resourceName": "sf", "deviceType": "auxNetDevice",
        "selectors": [{"pfNames": ["p0#1-5"], "auxTypes": ["sf"]}]
      }]}"#;
    let cfg = parse(data).unwrap();
    let p = &cfg.resource_list[0];
    assert!(p.exclude_topology);
    assert_eq!(p.device_type, DeviceType::NetDevice);
    let s = &p.selectors[0];
    assert_eq!(s.acpi_indexes, ["101"]);
    assert_eq!(s.root_devices, ["0000:86:00.0#0-3"]);
    assert_eq!(s.ddp_profiles, ["GTP"]);
    assert_eq!(s.p_keys, ["0x1"]);
    assert!(s.need_vhost_net && s.is_rdma);
    assert_eq!(p.selectors[1].vdpa_type, "vhost");
    let mine = p.extra_info("0000:18:02.5".parse().unwrap());
    assert_eq!(
        mine.into_iter().collect::<Vec<_>>(),
        [("token".into(), "b".into()), ("x".into(), "y".into())]
    );
    let other = p.extra_info("0000:18:02.6".parse().unwrap());
    assert_eq!(
        other.into_iter().collect::<Vec<_>>(),
        [("token".to_string(), "a".to_string())]
    );
    assert_eq!(cfg.resource_list[1].device_type, DeviceType::Accelerator);
    assert_eq!(cfg.resource_list[2].device_type, DeviceType::AuxNetDevice);
    assert_eq!(cfg.resource_list[2].selectors[0].aux_types, ["sf"]);
    // What cannot be served here is said once per selector.
    let w = cfg.warnings();
    assert!(w
        .iter()
        .any(|l| l.starts_with("intel.com/a: selectors[0]: ddpProfiles")));
    assert!(w
        .iter()
        .any(|l| l.starts_with("intel.com/a: selectors[1]: vdpaType")));
    assert!(w
        .iter()
        .any(|l| l.starts_with("intel.com/sf: selectors: auxNetDevice")));
    assert_eq!(w.len(), 3, "{w:?}");
}

#[test]
fn operator_rendered_config_loads() {
    // What the SR-IOV network operator writes for a node: Go's encoder
    // spells the untagged field `IsRdma` and writes `SelectorObjs: null`.
    let data = r#"{"resourceList":[{"resourceName":"intelnics","selectors":{"vendors":["8086"],"devices":["154c"],"pfNames":["ens1f0#0-3"],"IsRdma":true,"needVhostNet":true},"SelectorObjs":null}]}"#;
    let cfg = parse(data).unwrap();
    let s = &cfg.resource_list[0].selectors[0];
    assert!(s.is_rdma, "IsRdma is isRdma");
    assert!(s.need_vhost_net);
    // A node without policies.
    let cfg = parse(r#"{"resourceList":null}"#).unwrap();
    assert!(cfg.resource_list.is_empty());
}

#[test]
fn keys_match_whatever_their_case() {
    let cfg = parse(
        r#"{"ResourceList": [{"RESOURCENAME": "a", "ResourcePrefix": "x.io",
            "Selectors": {"PfNames": ["ens1f0"], "DRIVERS": ["igbvf"], "vendors": null, "unknownKey": 1}}]}"#,
    )
    .unwrap();
    let p = &cfg.resource_list[0];
    assert_eq!(p.full_name(None), "x.io/a");
    assert_eq!(p.selectors[0].pf_names, ["ens1f0"]);
    assert_eq!(p.selectors[0].drivers, ["igbvf"]);
    assert!(p.selectors[0].vendors.is_empty());
}

#[test]
fn resource_prefix_precedence() {
    let data = br#"{"resourceList": [{"resourceName": "a", "selectors": {}},
                                     {"resourceName": "b", "resourcePrefix": "pool.io", "selectors": {}},
                                     {"resourceName": "c", "resourcePrefix": "", "selectors": {}}]}"#;
    let names = |cfg: &Config| {
        cfg.resource_list
            .iter()
            .map(|p| p.full_name(cfg.resource_prefix.as_deref()))
            .collect::<Vec<_>>()
    };
    let path = Path::new("c.json");
    // The pool's, else the flag's, else intel.com.
    let cfg = Config::parse_with_prefix(path, data, Some("flag.io")).unwrap();
    assert_eq!(names(&cfg), ["flag.io/a", "pool.io/b", "flag.io/c"]);
    assert_eq!(
        names(&Config::parse(path, data).unwrap()),
        ["intel.com/a", "pool.io/b", "intel.com/c"]
    );
    // The file's own default sits between the pool's and the flag's.
    let data = br#"{"resourcePrefix": "file.io", "resourceList": [{"resourceName": "a", "selectors": {}}]}"#;
    let cfg = Config::parse_with_prefix(path, data, Some("flag.io")).unwrap();
    assert_eq!(names(&cfg), ["file.io/a"]);
    // The prefix makes a name unique: the same name under two prefixes is fine.
    let data = br#"{"resourceList": [{"resourceName": "a", "selectors": {}},
                                     {"resourceName": "a", "resourcePrefix": "x.io", "selectors": {}}]}"#;
    assert!(Config::parse_with_prefix(path, data, Some("flag.io")).is_ok());
    let e = Config::parse_with_prefix(path, data, Some("x.io")).unwrap_err();
    assert!(e.to_string().contains("x.io/a is listed twice"), "{e}");
}

#[test]
fn refusals_name_the_file_and_the_problem() {
    for (data, want) in [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        (r#"{"resourceList": {}}"#, "resourceList must be a list"),
        (
            r#"{"resourceList": [{"resourceName": "a b", "selectors": {}}]}"#,
            "\"intel.com/a b\"",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {}}, {"resourceName": "a", "selectors": {}}]}"#,
            "intel.com/a is listed twice",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "deviceType": "gpu", "selectors": {}}]}"#,
            "resourceList[0] (a): unsupported deviceType \"gpu\"",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a"}]}"#,
            "intel.com/a: no selectors",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": null}]}"#,
            "no selectors",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": []}]}"#,
            "resourceList[0] (a): selectors is an empty list",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": "8086"}]}"#,
            "selectors must be an object or a list",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"vendors": "8086"}}]}"#,
            "resourceList[0] (a): selectors: invalid type: string \"8086\", expected a sequence",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": [{}, {"isRdma": "yes"}]}]}"#,
            "selectors[1]: invalid type: string \"yes\", expected a boolean",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["p#9-1"]}}]}"#,
            "intel.com/a: selectors: pfNames: \"p#9-1\": range 9-1 ends before it starts",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": [{}, {"rootDevices": ["0000:86:00.0#x"]}]}]}"#,
            "intel.com/a: selectors[1]: rootDevices: \"0000:86:00.0#x\"",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"pciAddresses": ["18:02.5"]}}]}"#,
            "selectors: pciAddresses",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"isRdma": true, "vdpaType": "vhost"}}]}"#,
            "isRdma and vdpaType exclude each other",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "deviceType": "auxNetDevice", "selectors": {}}]}"#,
            "needs auxTypes",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {}, "additionalInfo": {"eth0": {"k": "v"}}}]}"#,
            "additionalInfo key \"eth0\"",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {}, "additionalInfo": {"*": {"k": 1}}}]}"#,
            "resourceList[0] (a): invalid type: integer `1`, expected a string",
        ),
        (
            r#"{"resourceList": [{"resourceName": "a", "selectors": {}, "hugepages": {"pageSize": "3X"}}]}"#,
            "hugepages pageSize \"3X\"",
        ),
        (
            r#"{"nodeSetup": {"pfs": [{"numVfs": 4}]}}"#,
            "exactly one of pfName",
        ),
        (
            r#"{"nodeSetup": {"pfs": [{"pfName": "p", "vfs": [{"index": 0, "mac": "zz"}]}]}}"#,
            "nodeSetup: VF 0",
        ),
        (
            r#"{"nodeSetup": {"pfs": [{"pfName": "p", "vfs": [{"index": 0, "spoofchk": "no"}]}]}}"#,
            "spoofchk \"no\"",
        ),
    ] {
        let e = refused(data);
        assert!(e.starts_with("invalid config c.json: "), "{data}: {e}");
        assert!(e.contains(want), "{data}: {e:?} does not say {want:?}");
    }
}

#[test]
fn hugepage_sizes() {
    assert_eq!(parse_page_size("2Mi"), Some(2048));
    assert_eq!(parse_page_size("1Gi"), Some(1048576));
    assert_eq!(parse_page_size("2048kB"), Some(2048));
    assert_eq!(parse_page_size("0Mi"), None);
    let h = Hugepages {
        page_size: "1Gi".into(),
        host_path: None,
        container_path: PathBuf::from("/dev/hugepages"),
        pages_per_device: None,
        mount: true,
    };
    assert_eq!(h.host_path(), PathBuf::from("/dev/hugepages-1Gi"));
    assert_eq!(h.pages_per_device(), 1);
}
