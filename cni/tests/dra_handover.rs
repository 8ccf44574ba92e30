//! A VF that the node daemon's DRA driver prepared for a ResourceClaim, as
//! the plugin meets it from a NAD (Multus passes the claim's device as
//! `deviceID`): the claim's own pod uses it, with no second rebind and
//! no release at DEL; any other pod is refused. The daemon's side is
//! node/tests/dra.rs; the real cluster, tests/vm/scenarios/k8s-dra.bats.

mod common;

use common::Bed;
use serde_json::json;

const UID: &str = "0b5e2a44-1111-4222-8333-444455556666";

/// What Prepare leaves: VF `i` on vfio-pci, held by the claim, reserved
/// for pod `pod-a`.
fn prepared(bed: &Bed, i: usize) -> ledger::Claim {
    let l = ledger::Ledger::new(&bed.state_dir);
    let claim = ledger::Claim {
        network: ledger::DRA_NETWORK.into(),
        container_id: format!("claim-{UID}"),
        ifname: "dev0".into(),
    };
    l.set_claim(bed.pf.vfs[i], &claim).unwrap();
    l.set_dra_claim(
        UID,
        &ledger::DraClaim {
            namespace: "default".into(),
            name: "c".into(),
            pods: vec!["pod-a".into()],
        },
    )
    .unwrap();
    vfio::fake::emulated(bed.root())
        .bind_driver(bed.pf.vfs[i], "vfio-pci", Default::default())
        .unwrap();
    claim
}

fn args(pod_uid: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID={pod_uid}")
}

#[test]
fn the_claims_own_pod_uses_its_vf_and_del_leaves_it_to_the_claim() {
    let bed = Bed::new(2);
    // The node checks allocations: the pod's claim is its allocation (no
    // kubelet answers here, so a device plugin check would fail).
    bed.settings(json!({"allocationCheck": true}));
    let claim = prepared(&bed, 0);
    let conf = bed.conf(0, json!({"vlan": 200}));
    let add = bed.run_with(
        "ADD",
        "sandbox-a",
        "net1",
        &conf,
        &[("CNI_ARGS", &args("pod-a"))],
    );
    assert!(add.ok(), "{add:?}");
    assert_eq!(
        add.json.unwrap()["interfaces"][0]["pciID"],
        json!(bed.vf(0))
    );
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[0].vlan, 200);
    let l = ledger::Ledger::new(&bed.state_dir);
    assert_eq!(l.claim(bed.pf.vfs[0]).unwrap(), Some(claim.clone()));

    let del = bed.run_with(
        "DEL",
        "sandbox-a",
        "net1",
        &conf,
        &[("CNI_ARGS", &args("pod-a"))],
    );
    assert!(del.ok(), "{del:?}");
    // The NAD's VLAN is undone; the VF stays bound and held for the claim.
    assert_eq!(bed.nl.load().unwrap().links["ens1f0"].vfs[0].vlan, 0);
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    assert_eq!(l.claim(bed.pf.vfs[0]).unwrap(), Some(claim));
    assert!(l.list("sriov-dpdk").unwrap().is_empty());
}

#[test]
fn another_pod_cannot_take_a_claimed_vf() {
    let bed = Bed::new(2);
    prepared(&bed, 0);
    let before = bed.state();
    let conf = bed.conf(0, json!({"vlan": 200}));
    for a in [args("pod-b"), args(""), "IgnoreUnknown=1".to_string()] {
        let out = bed.run_with("ADD", "sandbox-b", "net1", &conf, &[("CNI_ARGS", &a)]);
        assert_eq!(out.err_code(), 101, "{out:?}");
        assert!(
            out.msg().contains(&format!("ResourceClaim {UID}")),
            "{}",
            out.msg()
        );
        assert_eq!(before, bed.state(), "{a}");
    }
}
