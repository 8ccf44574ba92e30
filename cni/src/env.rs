//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`.

use std::path::PathBuf;

use crate::error::{CniError, Result};

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// What the runtime put in the environment.
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// The value of a `CNI_ARGS` key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Set to `dra` by the node daemon's DRA driver when it runs the plugin to
/// prepare or release a ResourceClaim's device. A runtime passes plugins
/// its own environment and the `CNI_*` variables; nothing a pod or a NAD
/// writes reaches it.
pub const CALLER_ENV: &str = "DPDK_CNI_CALLER";

/// Whether the node daemon's DRA driver is the caller.
pub fn dra_caller(get: &dyn Fn(&str) -> Option<String>) -> bool {
    get(CALLER_ENV).as_deref() == Some("dra")
}

/// Reads `CNI_COMMAND`.
pub fn command(get: &dyn Fn(&str) -> Option<String>) -> Result<Command> {
    match get("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("STATUS") => Ok(Command::Status),
        Some("GC") => Ok(Command::Gc),
        Some("VERSION") => Ok(Command::Version),
        Some(other) => Err(CniError::env(format!(
            "unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, STATUS, GC or VERSION"
        ))),
        None => Err(CniError::env("CNI_COMMAND is not set")),
    }
}

/// A container ID is used in file names: the spec allows alphanumerics, `_`, `.` and `-`.
fn valid_container_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && s != "."
        && s != ".."
}

/// A Linux interface name: at most 15 bytes, no `/`, `:` or white space, not `.` or `..`.
pub use ledger::valid_ifname;

/// Parses `K=V;K=V`.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::env(format!(
                "invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE"
            ))
        })?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Reads and checks the variables `cmd` needs.
pub fn read(cmd: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<CniEnv> {
    let need = |name: &str| -> Result<String> {
        get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            CniError::env(format!(
                "{name} is not set: the runtime must pass it for {cmd:?}"
            ))
        })
    };
    let mut env = CniEnv::default();
    if matches!(cmd, Command::Add | Command::Del | Command::Check) {
        env.container_id = need("CNI_CONTAINERID")?;
        if !valid_container_id(&env.container_id) {
            return Err(CniError::env(format!(
                "invalid CNI_CONTAINERID {:?}: only letters, digits, '_', '.' and '-' are allowed",
                env.container_id
            )));
        }
        env.ifname = need("CNI_IFNAME")?;
        if !valid_ifname(&env.ifname) {
            return Err(CniError::env(format!(
                "invalid CNI_IFNAME {:?}: an interface name has 1 to 15 characters, none of them '/', ':' or white space",
                env.ifname
            )));
        }
        env.netns = match cmd {
            // DEL must work when the namespace is already gone; the DRA
            // driver prepares a device before the pod's namespace exists.
            Command::Del => get("CNI_NETNS").unwrap_or_default(),
            _ if dra_caller(get) => get("CNI_NETNS").unwrap_or_default(),
            _ => need("CNI_NETNS")?,
        };
    }
    if let Some(a) = get("CNI_ARGS") {
        env.args = parse_args(&a)?;
    }
    if let Some(p) = get("CNI_PATH") {
        env.path = p
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn add_needs_container_netns_ifname() {
        let g = env_of(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "net1")]);
        let e = read(Command::Add, &g).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
        // DEL does not need it.
        assert!(read(Command::Del, &g).is_ok());
    }

    #[test]
    fn rejects_path_like_ids_and_names() {
        for (id, ifn) in [
            ("../x", "net1"),
            ("abc", "a/b"),
            ("abc", "0123456789abcdef"),
            ("a b", "net1"),
        ] {
            let g = env_of(&[
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifn),
                ("CNI_NETNS", "/run/netns/x"),
            ]);
            assert_eq!(
                read(Command::Add, &g).unwrap_err().code,
                code::INVALID_ENV,
                "{id} {ifn}"
            );
        }
    }

    #[test]
    fn args_and_path() {
        let g = env_of(&[
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "net1"),
            ("CNI_NETNS", "/run/netns/x"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAME=p;VF=3;MAC=02:00:00:00:00:01",
            ),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]);
        let e = read(Command::Add, &g).unwrap();
        assert_eq!(e.arg("VF"), Some("3"));
        assert_eq!(e.arg("K8S_POD_NAME"), Some("p"));
        assert_eq!(e.path.len(), 2);
        let bad = env_of(&[("CNI_ARGS", "VF")]);
        assert_eq!(
            read(Command::Status, &bad).unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            command(&env_of(&[("CNI_COMMAND", "BOGUS")]))
                .unwrap_err()
                .code,
            code::INVALID_ENV
        );
    }
}
