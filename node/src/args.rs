//! The command line as the SR-IOV network device plugin's users write it.
//!
//! Its DaemonSets pass `--log-dir=sriovdp --log-level=10
//! --resource-prefix=... --config-file=... --use-cdi` to the image's
//! entrypoint, which hands the binary Go-style flags (`-v 10 --log_dir ...
//! --alsologtostderr`). Go's `flag` package takes `-name` as well as
//! `--name`, `=value` or the next argument as the value, and `=true` or
//! `=false` after a boolean. Before clap sees the arguments, [`go_style`]
//! turns a single-dash long flag into a double-dash one; the glog names are
//! hidden aliases of ours.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A long flag clap knows: its name, and whether the next argument is its
/// value when no `=` follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFlag {
    pub name: String,
    pub takes_next: bool,
}

/// `-name[=value]` to `--name[=value]` for every `name` in `known`; the
/// argument after a flag that takes it as its value is left alone, and so is
/// everything after `--`.
pub fn go_style(args: impl IntoIterator<Item = OsString>, known: &[LongFlag]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut value_next = false;
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest || std::mem::take(&mut value_next) {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let body = match s.strip_prefix("--") {
            Some(b) => Some(b),
            None => s.strip_prefix('-'),
        };
        let Some(body) = body.filter(|b| !b.is_empty()) else {
            out.push(arg);
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        match known.iter().find(|f| f.name == name) {
            Some(f) => {
                value_next = f.takes_next && !has_value;
                out.push(format!("--{body}").into());
            }
            None => out.push(arg),
        }
    }
    out
}

/// A boolean as Go's `strconv.ParseBool` reads it (`--use-cdi=false`).
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// An integer as Go's `strconv.Atoi` reads it (glog's `-v`).
pub fn go_int(s: &str) -> Result<i32, String> {
    s.parse::<i32>()
        .map_err(|_| format!("{s:?} is not an integer"))
}

/// The config file: the one named, else the first of `defaults` that
/// exists.
pub fn config_path(named: Option<&Path>, defaults: &[&Path]) -> Result<PathBuf, String> {
    if let Some(p) = named {
        return Ok(p.to_path_buf());
    }
    defaults
        .iter()
        .find(|p| p.exists())
        .map(|p| p.to_path_buf())
        .ok_or_else(|| {
            let names: Vec<String> = defaults.iter().map(|p| p.display().to_string()).collect();
            format!(
                "no config file: none of {} exists; name one with --config-file",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<LongFlag> {
        [
            ("config-file", true),
            ("use-cdi", false),
            ("v", true),
            ("log-dir", true),
        ]
        .map(|(n, t)| LongFlag {
            name: n.into(),
            takes_next: t,
        })
        .to_vec()
    }

    fn run(args: &[&str]) -> Vec<String> {
        go_style(args.iter().map(OsString::from), &known())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double() {
        assert_eq!(
            run(&[
                "bin",
                "-config-file",
                "/c",
                "-use-cdi",
                "-v=10",
                "-log-dir=x"
            ]),
            [
                "bin",
                "--config-file",
                "/c",
                "--use-cdi",
                "--v=10",
                "--log-dir=x"
            ]
        );
        // Already double, unknown, short or values: untouched.
        assert_eq!(
            run(&["bin", "--config-file=/c", "-h", "-x", "--nope", "-"]),
            ["bin", "--config-file=/c", "-h", "-x", "--nope", "-"]
        );
    }

    #[test]
    fn values_and_the_rest_are_left_alone() {
        // A value that looks like a flag stays a value.
        assert_eq!(
            run(&["bin", "-config-file", "-use-cdi", "-v", "-log-dir"]),
            ["bin", "--config-file", "-use-cdi", "--v", "-log-dir"]
        );
        assert_eq!(
            run(&["bin", "--", "-config-file"]),
            ["bin", "--", "-config-file"]
        );
    }

    #[test]
    fn go_values() {
        assert_eq!(go_bool("T"), Ok(true));
        assert_eq!(go_bool("False"), Ok(false));
        assert!(go_bool("yes").is_err());
        assert_eq!(go_int("10"), Ok(10));
        assert_eq!(go_int("-1"), Ok(-1));
        assert!(go_int("ten").is_err());
    }

    #[test]
    fn config_path_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp.path().join("dpdk-cni/config.json");
        let theirs = tmp.path().join("pcidp/config.json");
        let defaults = [ours.as_path(), theirs.as_path()];
        let e = config_path(None, &defaults).unwrap_err();
        assert!(
            e.contains("pcidp/config.json") && e.contains("--config-file"),
            "{e}"
        );
        std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        std::fs::write(&theirs, "{}").unwrap();
        assert_eq!(config_path(None, &defaults).unwrap(), theirs);
        std::fs::create_dir_all(ours.parent().unwrap()).unwrap();
        std::fs::write(&ours, "{}").unwrap();
        assert_eq!(config_path(None, &defaults).unwrap(), ours);
        let named = Path::new("/etc/pcidp/node-1");
        assert_eq!(config_path(Some(named), &defaults).unwrap(), named);
    }
}
