//! The command line: dpdk-discover's options, then the program and its
//! arguments, which are passed on untouched.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use dpdk_discover::{parse_cpu_list, Lcores, DEFAULT_MEM_MB};

pub const USAGE: &str = "\
usage: dpdk-discover [--mem-mb MIB] [--huge-dir DIR] [--file-prefix NAME]
                     [--lcores LIST|cpuset|affinity] [--print]
                     [--] [PROGRAM [APP-ARGS...]]
Builds DPDK EAL arguments from what this pod was given (device-info files,
the network-status annotation file, PCIDEVICE_* variables, sysfs, the
hugetlbfs mount). Without PROGRAM, prints them on stdout, shell-quoted on one
line (eval \"set -- $(dpdk-discover)\" reads them back). With PROGRAM, runs
PROGRAM <EAL args> -- APP-ARGS in its place (no -- when APP-ARGS is empty).
Options go before PROGRAM; everything after PROGRAM is passed on untouched.
  --mem-mb MIB        hugepage memory on each NUMA node with a device (default 256)
  --huge-dir DIR      the hugetlbfs mount to use (default: the first mounted)
  --file-prefix NAME  EAL --file-prefix (default: POD_NAME, else HOSTNAME)
  --lcores LIST       EAL -l: a CPU list such as 0-3,8; cpuset (the pod's cgroup
                      cpuset); affinity (this process's CPU affinity)
                      (default: no -l, EAL takes every CPU it may run on; with
                      several NUMA nodes, those on the devices' nodes)
  --print             print the command line instead of running PROGRAM
  -h, --help          print this text
Exit status: 1 when discovery fails, 2 for a bad option, 127 when PROGRAM is
not found, 126 when it cannot be run; else PROGRAM's own.";

/// Largest `--mem-mb`: keeps the page arithmetic in range.
const MAX_MEM_MB: u64 = u32::MAX as u64;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mem_mb: u64,
    pub huge_dir: Option<PathBuf>,
    pub file_prefix: Option<String>,
    pub lcores: Lcores,
    pub print: bool,
    pub program: Option<OsString>,
    /// Everything after the program, verbatim.
    pub app_args: Vec<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mem_mb: DEFAULT_MEM_MB,
            huge_dir: None,
            file_prefix: None,
            lcores: Lcores::Default,
            print: false,
            program: None,
            app_args: Vec::new(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Options),
}

/// Parse the arguments after the program name. The error says which
/// argument is wrong and what it should be.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().filter(|t| t.starts_with('-')) else {
            // The program: it and everything after it belong to the app.
            o.program = Some(arg);
            break;
        };
        if text == "--" {
            o.program = args.next();
            break;
        }
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (text, None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => match args.next() {
                    Some(v) => v
                        .into_string()
                        .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8")),
                    None => Err(format!("{flag} needs a value")),
                },
            }
        };
        match flag {
            "--mem-mb" => o.mem_mb = parse_mem_mb(&value()?)?,
            "--huge-dir" => o.huge_dir = Some(parse_huge_dir(&value()?)?),
            "--file-prefix" => {
                let v = value()?;
                if v.is_empty() {
                    return Err("--file-prefix: empty name".to_owned());
                }
                o.file_prefix = Some(v);
            }
            "--lcores" => o.lcores = parse_lcores(&value()?)?,
            "--print" | "-h" | "--help" if inline.is_some() => {
                return Err(format!("{flag} takes no value"))
            }
            "--print" => o.print = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            _ => {
                return Err(format!(
                    "unknown option {text:?} (options go before the program)"
                ))
            }
        }
    }
    o.app_args = args.collect();
    Ok(Parsed::Run(o))
}

fn parse_mem_mb(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (1..=MAX_MEM_MB).contains(&n) => Ok(n),
        _ => Err(format!(
            "--mem-mb: bad value {v:?} (want MiB from 1 to {MAX_MEM_MB})"
        )),
    }
}

fn parse_huge_dir(v: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(format!(
            "--huge-dir: {v:?} is not an absolute path (want the mount point, such as /dev/hugepages)"
        ));
    }
    Ok(p)
}

fn parse_lcores(v: &str) -> Result<Lcores, String> {
    match v {
        "cpuset" => Ok(Lcores::Cpuset),
        "affinity" => Ok(Lcores::Affinity),
        _ => match parse_cpu_list(v) {
            Ok(cpus) if !cpus.is_empty() => Ok(Lcores::List(cpus)),
            _ => Err(format!(
                "--lcores: bad value {v:?} (want a CPU list such as 0-3,8, or cpuset, or affinity)"
            )),
        },
    }
}

/// What to run: `program <eal args>`, then `--` and the app's arguments when
/// there are any.
pub fn command_line<S: AsRef<OsStr>>(
    program: &OsStr,
    eal_args: &[S],
    app_args: &[OsString],
) -> Vec<OsString> {
    let mut argv = vec![program.to_owned()];
    argv.extend(eal_args.iter().map(|a| a.as_ref().to_owned()));
    if !app_args.is_empty() {
        argv.push("--".into());
        argv.extend(app_args.iter().cloned());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_arguments_print_with_the_defaults() {
        assert_eq!(run(&[]), Options::default());
        assert_eq!(Options::default().mem_mb, 256);
    }

    #[test]
    fn options_with_separate_and_inline_values() {
        let o = run(&[
            "--mem-mb",
            "1024",
            "--huge-dir=/dev/hugepages-1G",
            "--file-prefix",
            "web-0",
            "--lcores=2-3,6",
            "--print",
        ]);
        assert_eq!(
            o,
            Options {
                mem_mb: 1024,
                huge_dir: Some("/dev/hugepages-1G".into()),
                file_prefix: Some("web-0".into()),
                lcores: Lcores::List(vec![2, 3, 6]),
                print: true,
                program: None,
                app_args: vec![],
            }
        );
        assert_eq!(run(&["--lcores", "cpuset"]).lcores, Lcores::Cpuset);
        assert_eq!(run(&["--lcores", "affinity"]).lcores, Lcores::Affinity);
        // The last one counts.
        assert_eq!(run(&["--mem-mb", "2", "--mem-mb", "4"]).mem_mb, 4);
    }

    #[test]
    fn everything_after_the_program_is_the_apps() {
        let o = run(&[
            "--mem-mb",
            "64",
            "dpdk-testpmd",
            "-i",
            "--mem-mb",
            "--",
            "x y",
            "--help",
        ]);
        assert_eq!(o.mem_mb, 64);
        assert_eq!(o.program, Some("dpdk-testpmd".into()));
        assert_eq!(o.app_args, os(&["-i", "--mem-mb", "--", "x y", "--help"]));
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        let o = run(&["--print", "--", "--odd-name", "--print"]);
        assert!(o.print);
        assert_eq!(o.program, Some("--odd-name".into()));
        assert_eq!(o.app_args, os(&["--print"]));
        let o = run(&["--"]);
        assert_eq!((o.program, o.app_args), (None, vec![]));
    }

    #[test]
    fn non_utf8_app_arguments_pass() {
        use std::os::unix::ffi::OsStrExt;
        let odd = OsStr::from_bytes(b"\xff\xfe").to_owned();
        let parsed = parse_args([OsString::from("app"), odd.clone()]).unwrap();
        let Parsed::Run(o) = parsed else { panic!() };
        assert_eq!(o.app_args, vec![odd]);
    }

    #[test]
    fn help() {
        assert_eq!(parse(&["--help"]), Ok(Parsed::Help));
        assert_eq!(parse(&["--mem-mb", "8", "-h"]), Ok(Parsed::Help));
        // After the program it is the app's.
        assert_eq!(run(&["app", "--help"]).app_args, os(&["--help"]));
    }

    #[test]
    fn bad_values_say_what_to_give() {
        for (args, want) in [
            (&["--mem-mb"][..], "--mem-mb needs a value"),
            (
                &["--mem-mb", "0"],
                "--mem-mb: bad value \"0\" (want MiB from 1 to",
            ),
            (&["--mem-mb", "lots"], "--mem-mb: bad value \"lots\""),
            (&["--mem-mb=-1"], "--mem-mb: bad value \"-1\""),
            (&["--mem-mb", "99999999999"], "--mem-mb: bad value"),
            (
                &["--lcores", "0-"],
                "--lcores: bad value \"0-\" (want a CPU list",
            ),
            (&["--lcores", ""], "--lcores: bad value \"\""),
            (&["--lcores", "3-1"], "--lcores: bad value"),
            (
                &["--huge-dir", "huge"],
                "--huge-dir: \"huge\" is not an absolute path",
            ),
            (&["--file-prefix="], "--file-prefix: empty name"),
            (&["--print=yes"], "--print takes no value"),
            (&["--frobnicate", "app"], "unknown option \"--frobnicate\""),
            (&["-l", "0"], "unknown option \"-l\""),
            (&["-"], "unknown option \"-\""),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn command_line_adds_the_separator_only_for_app_arguments() {
        let eal = ["-a", "0000:01:10.0"];
        assert_eq!(
            command_line(OsStr::new("app"), &eal, &os(&["-i", "--"])),
            os(&["app", "-a", "0000:01:10.0", "--", "-i", "--"])
        );
        assert_eq!(
            command_line(OsStr::new("app"), &eal, &[]),
            os(&["app", "-a", "0000:01:10.0"])
        );
    }
}
