//! Prepare and Unprepare: a claim's devices go through the CNI plugin's own
//! ADD and DEL in vfio-pci mode (the `dpdk-cni` binary, run as a runtime
//! runs it, with `DPDK_CNI_CALLER=dra`), under the reserved
//! network [`ledger::DRA_NETWORK`] with the container ID `claim-<uid>` and
//! one interface name per device (`dev0`, `dev1`, ...). So a prepared
//! device has a claim in the same ledger, under the same locks, as a NAD's
//! attachment (neither can take the other's device), its original state is
//! recorded durably before the first change, and Unprepare restores exactly
//! what DEL restores. A CDI spec per claim then gives the container the
//! device nodes, the pool's hugetlbfs mount and the device plugin's
//! `PCIDEVICE_*` environment.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger::{Claim, DraClaim, Ledger, LedgerError, Phase, DRA_NETWORK};
use serde_json::{json, Value};
use vfio::{PciAddress, Sysfs};

use crate::allocate::env_name;
use crate::dra::claim::{self, Allocated, HandOver};
use crate::dra_api::Device as PreparedDevice;
use crate::error::{NodeError, Result};
use crate::grant::{grant, Grant, Mode};
use crate::log;
use crate::pool::{Device, Pool};

/// The longest a plugin call may take: it waits at most 10 s for a
/// device's lock, and a rebind takes well under a second.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What Prepare and Unprepare need; cheap to clone into a blocking task.
#[derive(Debug, Clone)]
pub struct Preparer {
    pub driver: String,
    pub sysfs: Sysfs,
    /// The `dpdk-cni` plugin binary.
    pub plugin: PathBuf,
    /// More environment for the plugin (the tests' fake node).
    pub plugin_env: Vec<(String, String)>,
    /// The plugin's state directory (its node settings' `stateDir`).
    pub state_dir: PathBuf,
    pub cdi_dir: PathBuf,
    /// The pools as last discovered.
    pub pools: Arc<Mutex<Vec<Pool>>>,
}

/// A CNI error as the plugin prints it.
#[derive(Debug)]
struct PluginError {
    code: u64,
    msg: String,
}

fn container_id(uid: &str) -> String {
    format!("claim-{uid}")
}

/// The plugin's environment variable naming its caller (its
/// `env::CALLER_ENV`; the daemon does not link the plugin).
const CALLER_ENV: &str = "DPDK_CNI_CALLER";

fn cni(id: &str, e: PluginError) -> NodeError {
    NodeError::Claim(format!(
        "ResourceClaim {id}: {} (dpdk-cni error {})",
        e.msg, e.code
    ))
}

fn netconf(extra: serde_json::Map<String, Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": DRA_NETWORK, "type": "dpdk-cni"});
    c.as_object_mut().expect("an object").extend(extra);
    c
}

impl Preparer {
    /// The CDI kind of the driver's devices.
    pub fn cdi_kind(&self) -> String {
        format!("{}/claim", self.driver)
    }

    /// The claim's CDI spec file.
    pub fn cdi_file(&self, uid: &str) -> PathBuf {
        self.cdi_dir.join(format!("{DRA_NETWORK}-{uid}.json"))
    }

    fn ledger(&self) -> Ledger {
        Ledger::new(&self.state_dir)
    }

    /// Runs the plugin: `cmd` (ADD or DEL) for device `ifname` of claim
    /// `uid`, `conf` on stdin. The result JSON, or the plugin's error.
    fn plugin(
        &self,
        cmd: &str,
        uid: &str,
        ifname: &str,
        conf: &Value,
    ) -> std::result::Result<Value, PluginError> {
        let io = |what: &str, e: std::io::Error| PluginError {
            code: 0,
            msg: format!("{what} {}: {e}", self.plugin.display()),
        };
        let mut child = Command::new(&self.plugin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container_id(uid))
            .env("CNI_IFNAME", ifname)
            .env(CALLER_ENV, "dra")
            .envs(self.plugin_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io("running", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| io("writing to", e))?;
        }
        let start = std::time::Instant::now();
        loop {
            match child.try_wait().map_err(|e| io("waiting for", e))? {
                Some(_) => break,
                None if start.elapsed() > PLUGIN_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PluginError {
                        code: 0,
                        msg: format!(
                            "{} {cmd} took more than {}s",
                            self.plugin.display(),
                            PLUGIN_TIMEOUT.as_secs()
                        ),
                    });
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let out = child.wait_with_output().map_err(|e| io("reading", e))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() {
            return Ok(stdout);
        }
        Err(PluginError {
            code: stdout.get("code").and_then(Value::as_u64).unwrap_or(0),
            msg: stdout
                .get("msg")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "{} {cmd} failed ({}): {}",
                        self.plugin.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                }),
        })
    }

    /// Prepares the devices of `claim` (the object from the API server)
    /// allocated to this driver: all or none.
    pub fn prepare(&self, claim: &Value, uid: &str, id: &str) -> Result<Vec<PreparedDevice>> {
        if !ledger::valid_claim_uid(uid) {
            return Err(NodeError::Claim(format!(
                "ResourceClaim {id}: UID {uid:?} is not a UID"
            )));
        }
        let allocs = claim::allocated(claim, &self.driver, id)?;
        if allocs.is_empty() {
            return Ok(Vec::new());
        }
        let reserved = DraClaim {
            namespace: str_at(claim, "/metadata/namespace"),
            name: str_at(claim, "/metadata/name"),
            pods: claim::reserved_pods(claim),
        };
        match self.prepare_all(&allocs, uid, id, &reserved) {
            Ok(d) => Ok(d),
            Err(e) => {
                // Nothing half-prepared stays behind: the kubelet calls
                // Prepare again.
                if let Err(u) = self.unprepare(uid, id) {
                    log::warn(&format!(
                        "ResourceClaim {id}: undoing a failed Prepare: {u}"
                    ));
                }
                Err(e)
            }
        }
    }

    fn prepare_all(
        &self,
        allocs: &[Allocated],
        uid: &str,
        id: &str,
        reserved: &DraClaim,
    ) -> Result<Vec<PreparedDevice>> {
        let pools = self
            .pools
            .lock()
            .map_err(|_| NodeError::Claim("pools lock poisoned".into()))?
            .clone();
        let ledger = self.ledger();
        // Before any device: which pods a NAD's ADD of them may come from.
        ledger.set_dra_claim(uid, reserved)?;
        let mut done: Vec<(&Allocated, Pool, Device)> = Vec::new();
        for (i, a) in allocs.iter().enumerate() {
            let Some((pool, dev)) = find(&pools, a.addr) else {
                return Err(NodeError::Claim(format!(
                    "ResourceClaim {id}: device {} ({}) is gone from this node or from every pool of the config since the scheduler allocated it; delete the pod so its claim is allocated again",
                    a.device, a.addr
                )));
            };
            let ifname = format!("dev{i}");
            if a.config.hand_over() == HandOver::Netdevice {
                reserve(&ledger, a, uid, &ifname, id)?;
                done.push((a, pool.clone(), dev.clone()));
                continue;
            }
            let existing = match ledger.load(DRA_NETWORK, &container_id(uid), &ifname) {
                Ok(a) => a,
                Err(e @ LedgerError::Quarantined { .. }) => {
                    log::warn(&e.to_string());
                    None
                }
                Err(e) => return Err(e.into()),
            };
            match existing {
                Some(att) if att.phase == Phase::Complete && att.device.pci() == Some(a.addr) => {
                    log::info(&format!("ResourceClaim {id}: {} prepared already", a.addr));
                }
                other => {
                    if other.is_some() {
                        // A Prepare killed half-way: undo, then start over.
                        self.release(uid, &ifname, id)?;
                    }
                    let mut fields = a.config.netconf_fields();
                    fields.insert("deviceType".into(), json!("vfio-pci"));
                    fields.insert("deviceID".into(), json!(a.addr.to_string()));
                    self.plugin("ADD", uid, &ifname, &netconf(fields))
                        .map_err(|e| cni(id, e))?;
                    log::info(&format!(
                        "ResourceClaim {id}: prepared {} ({}) on vfio-pci",
                        a.device, a.addr
                    ));
                }
            }
            done.push((a, pool.clone(), dev.clone()));
        }
        self.write_cdi(uid, id, &done)?;
        let kind = self.cdi_kind();
        Ok(done
            .iter()
            .map(|(a, _, _)| PreparedDevice {
                request_names: vec![a.request.clone()],
                pool_name: a.pool.clone(),
                device_name: a.device.clone(),
                cdi_device_ids: vec![format!("{kind}={uid}-{}", a.device)],
                share_id: None,
            })
            .collect())
    }

    /// The CDI spec of a prepared claim: per device its nodes and the
    /// pool's hugetlbfs mount; for the claim the device plugin's
    /// environment, so an app finds its devices as it would there.
    fn write_cdi(&self, uid: &str, id: &str, done: &[(&Allocated, Pool, Device)]) -> Result<()> {
        let mut devices = Vec::new();
        let mut by_pool: BTreeMap<String, (Vec<String>, BTreeMap<String, Value>)> = BTreeMap::new();
        for (a, pool, dev) in done {
            let g = if a.config.hand_over() == HandOver::Netdevice {
                // The netdev goes to the pod with the NAD's ADD: no node here.
                Grant::netdev(dev)
            } else {
                grant(&self.sysfs, pool, dev, Mode::Describe)?
            };
            let nodes: Vec<Value> = g
                .specs
                .iter()
                .map(|s| json!({"path": s.container_path, "hostPath": s.host_path, "permissions": s.permissions}))
                .collect();
            let mut edits = json!({"deviceNodes": nodes});
            if let Some(h) = pool.config.hugepages.as_ref().filter(|h| h.mount) {
                edits["mounts"] = json!([{
                    "hostPath": h.host_path(), "containerPath": h.container_path,
                    "type": "bind", "options": ["rbind", "rw"]
                }]);
            }
            devices.push(json!({"name": format!("{uid}-{}", a.device), "containerEdits": edits}));
            let e = by_pool.entry(pool.resource.clone()).or_default();
            e.0.push(dev.addr.to_string());
            e.1.insert(
                dev.addr.to_string(),
                serde_json::to_value(&g.info).unwrap_or(Value::Null),
            );
        }
        let mut env = Vec::new();
        for (resource, (ids, info)) in by_pool {
            let name = env_name(&resource);
            env.push(format!("{name}={}", ids.join(",")));
            env.push(format!(
                "{name}_INFO={}",
                Value::Object(info.into_iter().collect())
            ));
        }
        let spec = json!({
            "cdiVersion": "0.6.0",
            "kind": self.cdi_kind(),
            "containerEdits": {"env": env},
            "devices": devices,
        });
        std::fs::create_dir_all(&self.cdi_dir).map_err(NodeError::write(&self.cdi_dir))?;
        let path = self.cdi_file(uid);
        let data = serde_json::to_vec_pretty(&spec).expect("JSON values encode");
        ledger::write_atomic(&path, &data, true)?;
        log::debug(&format!("ResourceClaim {id}: CDI spec {}", path.display()));
        Ok(())
    }

    /// One device of the claim through the plugin's DEL.
    fn release(&self, uid: &str, ifname: &str, id: &str) -> Result<()> {
        self.plugin("DEL", uid, ifname, &netconf(Default::default()))
            .map(drop)
            .map_err(|e| cni(id, e))
    }

    /// Releases every device the claim holds, as DEL does, and removes its
    /// CDI spec. Nothing held is fine.
    pub fn unprepare(&self, uid: &str, id: &str) -> Result<()> {
        if !ledger::valid_claim_uid(uid) {
            return Err(NodeError::Claim(format!(
                "ResourceClaim {id}: UID {uid:?} is not a UID"
            )));
        }
        let ledger = self.ledger();
        let me = container_id(uid);
        let mut ifnames = BTreeSet::new();
        for a in ledger.list(DRA_NETWORK)?.into_iter().flatten() {
            if a.container_id == me {
                ifnames.insert(a.ifname);
            }
        }
        // A claim without its record: a Prepare killed before the record.
        for (_, c) in ledger.claims()? {
            if c.network == DRA_NETWORK && c.container_id == me {
                ifnames.insert(c.ifname);
            }
        }
        for ifname in &ifnames {
            self.release(uid, ifname, id)?;
        }
        ledger.clear_dra_claim(uid)?;
        match std::fs::remove_file(self.cdi_file(uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(NodeError::Write {
                    path: self.cdi_file(uid),
                    source: e,
                })
            }
            _ => {}
        }
        if !ifnames.is_empty() {
            log::info(&format!(
                "ResourceClaim {id}: released {} device(s)",
                ifnames.len()
            ));
        }
        Ok(())
    }

    /// The devices of claims this driver holds, for the slice: held by a
    /// claim of another kind means not offered.
    pub fn held_by_attachments(&self) -> BTreeSet<PciAddress> {
        self.ledger()
            .claims()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, c)| c.dra_claim().is_none())
            .map(|(a, _)| a)
            .collect()
    }
}

fn str_at(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A netdevice claim: the VF is held for the claim (no rebind, no record):
/// the NAD's ADD, which Multus makes for the claim's pod, moves its netdev,
/// and Unprepare releases it.
fn reserve(ledger: &Ledger, a: &Allocated, uid: &str, ifname: &str, id: &str) -> Result<()> {
    if !a.config.netconf_fields().is_empty() {
        return Err(NodeError::Claim(format!(
            "ResourceClaim {id}: a netdevice claim takes no VF settings (the NAD of the pod's network sets them)"
        )));
    }
    let _lock = ledger.lock_device(&a.addr, Duration::from_secs(10))?;
    let mine = Claim {
        network: DRA_NETWORK.into(),
        container_id: container_id(uid),
        ifname: ifname.to_string(),
    };
    match ledger.claim(a.addr)? {
        Some(c) if c == mine => Ok(()),
        Some(c) => Err(NodeError::Claim(format!(
            "ResourceClaim {id}: {} is in use by container {} (network {}, interface {})",
            a.addr, c.container_id, c.network, c.ifname
        ))),
        None => {
            ledger.set_claim(a.addr, &mine)?;
            log::info(&format!(
                "ResourceClaim {id}: {} ({}) held for the pod's netdevice attachment",
                a.device, a.addr
            ));
            Ok(())
        }
    }
}

fn find(pools: &[Pool], addr: PciAddress) -> Option<(&Pool, &Device)> {
    pools
        .iter()
        .find_map(|p| p.devices.iter().find(|d| d.addr == addr).map(|d| (p, d)))
}
