//! The plugin as a runtime calls it: environment and stdin in, result or
//! error JSON on stdout, exit code out.

use std::io::Write;

use serde_json::Value;

use crate::commands::{add, check, del, gc, status};
use crate::config;
use crate::env::{self, Command};
use crate::error::{code, CniError, Result};
use crate::log;
use crate::node::Node;
use crate::version;

/// The node this process works on: the machine itself, or in the
/// `test-hooks` build whatever fake the environment names.
pub fn node_from_env(get: &dyn Fn(&str) -> Option<String>) -> Node {
    #[cfg(feature = "test-hooks")]
    let mut node = crate::hooks::node_from_env(get);
    #[cfg(not(feature = "test-hooks"))]
    let mut node = Node::real();
    node.dra = env::dra_caller(get);
    node
}

/// Checks the effective capabilities a command that changes the node needs.
pub fn check_capabilities() -> Result<()> {
    use caps::{CapSet, Capability};
    let mut missing = Vec::new();
    for (cap, why) in [
        (
            Capability::CAP_NET_ADMIN,
            "to set VF admin state through the PF",
        ),
        (Capability::CAP_SYS_ADMIN, "to rebind PCI drivers in sysfs"),
    ] {
        match caps::has_cap(None, CapSet::Effective, cap) {
            Ok(true) => {}
            Ok(false) => missing.push(format!("{cap} ({why})")),
            Err(e) => {
                return Err(CniError::io(format!(
                    "failed to read the process capabilities: {e}"
                )))
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::MISSING_CAPABILITY,
            format!(
                "dpdk-cni lacks {}: run it as root from the container runtime",
                missing.join(" and ")
            ),
        ))
    }
}

/// The netconf's `cniVersion` when it is one we speak, else the newest.
fn input_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| version::is_supported(v))
        .unwrap_or_else(|| version::LATEST.to_string())
}

/// Runs one command; `Ok(Some(v))` is printed, `Ok(None)` prints nothing.
pub fn run(
    cmd: Command,
    get: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    node: &mut Node,
) -> Result<Option<Value>> {
    if cmd == Command::Version {
        return Ok(Some(version::version_info(&input_version(stdin))));
    }
    let cenv = env::read(cmd, get)?;
    let (raw, conf) = config::parse_raw(stdin)?;
    node.load_settings()?;
    if let Ok(b) = config::base(&raw, node, cmd != Command::Del) {
        log::init(b.log_level, b.log_file);
        for w in &b.warnings {
            log::warn(w);
        }
    }
    if matches!(cmd, Command::Status | Command::Gc) {
        let v = raw.cni_version.as_deref().unwrap_or("");
        if version::is_supported(v) && !version::at_least(v, "1.1.0") {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("{cmd:?} needs cniVersion 1.1.0 or later; the netconf says {v}"),
            ));
        }
    }
    if cmd != Command::Status {
        check_capabilities()?;
    }
    match cmd {
        Command::Add => add::add(node, &cenv, &raw, &conf).map(Some),
        Command::Del => del::del(node, &cenv, &raw, &conf).map(|()| None),
        Command::Check => check::check(node, &cenv, &raw, &conf).map(|()| None),
        Command::Status => status::status(node, &raw).map(|()| None),
        Command::Gc => gc::gc(node, &cenv, &raw).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// The process of a plugin binary: stdin (none, or unreadable, is empty),
/// the environment, the answer on stdout, and the exit code.
pub fn process_main() -> ! {
    let mut stdin = Vec::new();
    // VERSION may come with no stdin at all.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut stdin);
    let get = |k: &str| std::env::var(k).ok();
    let code = main_with(&get, &stdin, &mut std::io::stdout().lock());
    std::process::exit(code);
}

/// The whole plugin process: returns the exit code.
pub fn main_with(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8], out: &mut dyn Write) -> i32 {
    let version_of_input = input_version(stdin);
    let res = env::command(get).and_then(|cmd| {
        let mut node = node_from_env(get);
        run(cmd, get, stdin, &mut node)
    });
    match res {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            log::log(config::LogLevel::Error, &e.msg);
            let _ = writeln!(out, "{}", e.to_json(&version_of_input));
            1
        }
    }
}
