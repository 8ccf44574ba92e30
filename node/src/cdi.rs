//! CDI (Container Device Interface) for a pool: the spec file the runtime
//! reads, naming per device the nodes and mounts Allocate would hand out,
//! and the names Allocate answers with when CDI is on.

use serde_json::{json, Value};
use vfio::Sysfs;

use crate::grant::{grant, Mode};
use crate::log;
use crate::pool::Pool;

/// The CDI kind of a pool: `<prefix>/<name>`, which is already vendor/class.
pub fn cdi_kind(resource: &str) -> String {
    resource.to_string()
}

/// CDI device names allow letters, digits, `_`, `-`, `.` and `:`; a BDF fits.
pub fn cdi_device_name(bdf: &str) -> String {
    bdf.to_string()
}

/// A CDI spec (version 0.6.0) for every device of the pool: the device
/// nodes Allocate would give it, as far as known without changing the node.
pub fn cdi_spec(sysfs: &Sysfs, pool: &Pool) -> Value {
    let mut devices = Vec::new();
    for d in &pool.devices {
        let id = d.addr.to_string();
        let nodes: Vec<Value> = match grant(sysfs, pool, d, Mode::Describe) {
            Ok(g) => g
                .specs
                .iter()
                .map(|s| {
                    json!({"path": s.container_path, "hostPath": s.host_path, "permissions": s.permissions})
                })
                .collect(),
            Err(e) => {
                log::warn(&format!("{}: CDI spec of {id}: {e}", pool.resource));
                continue;
            }
        };
        let mut edits = json!({"deviceNodes": nodes});
        if let Some(h) = pool.config.hugepages.as_ref().filter(|h| h.mount) {
            edits["mounts"] = json!([{
                "hostPath": h.host_path(), "containerPath": h.container_path,
                "type": "bind", "options": ["rbind", "rw"]
            }]);
        }
        devices.push(json!({"name": cdi_device_name(&id), "containerEdits": edits}));
    }
    json!({"cdiVersion": "0.6.0", "kind": cdi_kind(&pool.resource), "devices": devices})
}
