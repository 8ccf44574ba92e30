//! IPAM delegation: the binary named by `ipam.type`, found in `CNI_PATH`,
//! run with the same environment and the netconf on stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};

use ledger::Attachment;
use serde_json::{json, Value};

use crate::config;
use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::version;

/// Finds `name` in the `CNI_PATH` directories.
pub fn find(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf> {
    cni_path
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::netconf(format!(
                "ipam plugin {name:?} not found in CNI_PATH ({}): install it or fix ipam.type",
                cni_path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))
        })
}

/// What a delegated call needs besides the command.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub binary: &'a Path,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    pub cni_path: &'a str,
}

fn run(call: &Call<'_>, command: &str, stdin: &[u8]) -> Result<(bool, Vec<u8>)> {
    let name = call.binary.display().to_string();
    let mut child = Proc::new(call.binary)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", call.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IPAM_FAILED,
                format!("failed to start ipam plugin {name}: {e}"),
            )
        })?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe: not our error.
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::new(
            code::IPAM_FAILED,
            format!("failed to wait for ipam plugin {name}: {e}"),
        )
    })?;
    Ok((out.status.success(), out.stdout))
}

fn plugin_error(name: &Path, command: &str, stdout: &[u8]) -> CniError {
    let v: Value = serde_json::from_slice(stdout).unwrap_or(Value::Null);
    let inner_code = v.get("code").and_then(Value::as_u64).unwrap_or(0);
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(stdout).trim().to_string());
    CniError::new(
        code::IPAM_FAILED,
        format!(
            "ipam plugin {} failed on {command} (code {inner_code}): {msg}",
            name.display()
        ),
    )
    .with_details(v.get("details").and_then(Value::as_str).unwrap_or_default())
}

/// The newest version both we and the plugin speak, from its VERSION answer.
fn common_version(call: &Call<'_>) -> Option<String> {
    let (ok, out) = run(call, "VERSION", br#"{"cniVersion":"0.3.0"}"#).ok()?;
    if !ok {
        return None;
    }
    let v: Value = serde_json::from_slice(&out).ok()?;
    let theirs: Vec<&str> = v
        .get("supportedVersions")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    version::SUPPORTED
        .iter()
        .rev()
        .find(|s| theirs.contains(s))
        .map(|s| s.to_string())
}

/// Runs `command` (ADD, DEL, CHECK) and returns the plugin's result for ADD.
///
/// If the plugin does not speak the netconf's version (an older
/// containernetworking-plugins with a 1.1.0 netconf), the call is repeated
/// with the newest version both speak.
pub fn exec(call: &Call<'_>, command: &str, netconf: &Value) -> Result<Option<Value>> {
    let stdin = serde_json::to_vec(netconf).expect("a JSON value always encodes");
    let (ok, out) = run(call, command, &stdin)?;
    let (ok, out) = if ok {
        (ok, out)
    } else {
        let code = serde_json::from_slice::<Value>(&out)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_u64));
        match (code, common_version(call)) {
            (Some(1), Some(v))
                if Some(v.as_str()) != netconf.get("cniVersion").and_then(Value::as_str) =>
            {
                let mut conf = netconf.clone();
                conf["cniVersion"] = v.into();
                run(call, command, &serde_json::to_vec(&conf).expect("encodes"))?
            }
            _ => (ok, out),
        }
    };
    if !ok {
        return Err(plugin_error(call.binary, command, &out));
    }
    if command != "ADD" {
        return Ok(None);
    }
    serde_json::from_slice(&out).map(Some).map_err(|e| {
        CniError::new(
            code::IPAM_FAILED,
            format!(
                "ipam plugin {} printed a result that is not JSON: {e}",
                call.binary.display()
            ),
        )
    })
}

/// Runs the attachment's IPAM plugin for `command` with netconf `conf`.
pub fn call(env: &CniEnv, a: &Attachment, command: &str, conf: &Value) -> Result<Option<Value>> {
    let ty = config::ipam_type(conf.get("ipam").unwrap_or(&Value::Null))?;
    let bin = find(ty, &env.path)?;
    let args = env
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let path = env
        .path
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let call = Call {
        binary: &bin,
        container_id: &a.container_id,
        netns: &a.netns,
        ifname: &a.ifname,
        args: &args,
        cni_path: &path,
    };
    exec(&call, command, conf)
}

/// The netconf the IPAM plugin gets at release: ours as given, or rebuilt
/// from the record (GC has none).
pub fn release_netconf(stdin_conf: Option<&Value>, a: &Attachment) -> Option<Value> {
    let ipam = a.ipam.as_ref()?;
    match stdin_conf {
        Some(c) if c.get("ipam").is_some() => Some(c.clone()),
        _ => Some(
            json!({ "cniVersion": a.cni_version, "name": a.network, "type": "dpdk-cni", "ipam": ipam }),
        ),
    }
}
