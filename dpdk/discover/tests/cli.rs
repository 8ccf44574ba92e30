//! The `dpdk-discover` binary as a container would start it: on this
//! machine's own /proc and /sys, with a device plugin variable naming a PCI
//! function no machine has (so its `vfio` entry decides) and, as root, a
//! hugetlbfs mount of its own in a temp dir. Tests that need the mount print
//! `skipped:` without root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const BIN: &str = env!("CARGO_BIN_EXE_dpdk-discover");
/// Domain fffe: not a real one (VMD domains have five hex digits).
const PCI: &str = "fffe:fe:1f.7";
const VAR: &str = "PCIDEVICE_EXAMPLE_COM_VF";
const FREE_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The binary with only the variables a pod would set for it.
fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("POD_NAME", "web-0")
        .env(VAR, PCI)
        .env(
            format!("{VAR}_INFO"),
            format!(
                r#"{{"{PCI}":{{"generic":{{"deviceID":"{PCI}"}},"vfio":{{"mount":"/dev/vfio/vfio","dev-mount":"/dev/vfio/7"}},"numa-node":0}}}}"#
            ),
        );
    c
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn stderr(out: &Output) -> &str {
    text(&out.stderr)
}

/// 2 MiB hugetlbfs mounted at `<tmp>/huge pages` (a space, so it needs
/// quoting), unmounted on drop.
struct Pod {
    tmp: tempfile::TempDir,
    huge: PathBuf,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = umount2(&self.huge, MntFlags::MNT_DETACH);
    }
}

impl Pod {
    /// `None` (test skipped) without root, or when this machine has
    /// discovery inputs of its own that would add devices.
    fn new() -> Option<Pod> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to mount hugetlbfs");
            return None;
        }
        for p in [
            dpdk_discover::DEFAULT_DEVINFO_DIR,
            dpdk_discover::DEFAULT_ANNOTATIONS_FILE,
        ] {
            if Path::new(p).exists() {
                eprintln!("skipped: {p} exists here and would add devices");
                return None;
            }
        }
        assert!(
            !Path::new("/sys/bus/pci/devices").join(PCI).exists(),
            "{PCI} exists on this machine"
        );
        let read = |p: &str| -> u64 { std::fs::read_to_string(p).unwrap().trim().parse().unwrap() };
        // `--mem-mb 2` needs one free page.
        if read(FREE_2M) < 1 {
            let nr = read(NR_HUGEPAGES) + 1;
            std::fs::write(NR_HUGEPAGES, nr.to_string()).unwrap();
            assert!(
                read(FREE_2M) >= 1,
                "no free 2 MiB hugepage after asking for {nr}"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let tmp_path = tmp.path().canonicalize().unwrap();
        let huge = tmp_path.join("huge pages");
        std::fs::create_dir(&huge).unwrap();
        mount(
            Some("nodev"),
            &huge,
            Some("hugetlbfs"),
            MsFlags::empty(),
            Some("pagesize=2M"),
        )
        .expect("mount hugetlbfs");
        Some(Pod { tmp, huge })
    }

    /// The binary with `--mem-mb 2 --lcores 0 --huge-dir <mount>`.
    fn cmd(&self) -> Command {
        let mut c = cmd();
        c.args(["--mem-mb", "2", "--lcores", "0", "--huge-dir"])
            .arg(&self.huge);
        c
    }

    /// What discovery must give: `-l 0`, the prefix from POD_NAME, the
    /// mount, 2 MiB on node 0 (0 on any other node), the device.
    fn eal_args(&self) -> Vec<String> {
        let nodes = dpdk_discover::numa_nodes(Path::new("/sys"));
        let mut mem = vec!["0"; nodes.last().map_or(1, |&n| n as usize + 1)];
        mem[0] = "2";
        [
            "-l",
            "0",
            "--file-prefix",
            "web-0",
            "--huge-dir",
            self.huge.to_str().unwrap(),
            "--socket-mem",
            &mem.join(","),
            "-a",
            PCI,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// An executable script printing its pid, then each argument on a line.
    fn show_args(&self) -> PathBuf {
        let p = self.tmp.path().join("show-args");
        std::fs::write(&p, "#!/bin/sh\necho \"pid=$$\"\nprintf '%s\\n' \"$@\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

/// The words a shell gets from `eval "set -- <line>"`.
fn shell_words(line: &str) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"eval "set -- $1"; for a in "$@"; do printf '%s\0' "$a"; done"#)
        .arg("sh")
        .arg(line)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut words: Vec<String> = text(&out.stdout).split('\0').map(str::to_owned).collect();
    words.pop();
    words
}

/// Run `c` and check it printed `pid=<its own pid>` (so it was exec'd in
/// place, not spawned), then return the argument lines.
fn exec_lines(c: &mut Command) -> Vec<String> {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut lines = text(&out.stdout).lines().map(str::to_owned);
    assert_eq!(lines.next(), Some(format!("pid={pid}")), "{out:?}");
    lines.collect()
}

#[test]
fn prints_eal_args_that_a_shell_reads_back() {
    let Some(pod) = Pod::new() else { return };
    let out = pod.cmd().output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let want = pod.eal_args();
    let line = text(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(&format!("--huge-dir '{}' ", pod.huge.display())),
        "{line}"
    );
    assert_eq!(shell_words(line.trim_end()), want);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "dpdk-discover: device pci {PCI} (-a) (NUMA node 0) from {VAR}\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("dpdk-discover: eal-args: {}\n", line.trim_end())),
        "{err}"
    );

    // An explicit prefix wins over POD_NAME, reduced to [A-Za-z0-9_.-].
    let out = pod
        .cmd()
        .args(["--file-prefix", "my pod"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut want = pod.eal_args();
    want[3] = "my_pod".to_owned();
    assert_eq!(shell_words(text(&out.stdout).trim_end()), want);
}

#[test]
fn execs_program_with_eal_args_then_app_args() {
    let Some(pod) = Pod::new() else { return };
    let show = pod.show_args();
    let app = ["--mem-mb", "x y", "--", "-l", ""];
    let mut want = pod.eal_args();
    want.push("--".to_owned());
    want.extend(app.map(str::to_owned));
    assert_eq!(exec_lines(pod.cmd().arg(&show).args(app)), want);

    // No app arguments: no `--`. A `--` before the program ends our options,
    // and a bare name is looked up in PATH.
    assert_eq!(
        exec_lines(
            pod.cmd()
                .env("PATH", pod.tmp.path())
                .args(["--", "show-args"])
        ),
        pod.eal_args()
    );
}

#[test]
fn print_shows_the_command_instead_of_running_it() {
    let Some(pod) = Pod::new() else { return };
    let show = pod.show_args();
    let out = pod
        .cmd()
        .arg("--print")
        .arg(&show)
        .args(["-i", "a b"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut want = vec![show.to_str().unwrap().to_owned()];
    want.extend(pod.eal_args());
    want.extend(["--", "-i", "a b"].map(str::to_owned));
    assert_eq!(shell_words(text(&out.stdout).trim_end()), want);
}

#[test]
fn program_not_found_or_not_executable() {
    let Some(pod) = Pod::new() else { return };
    let missing = pod.tmp.path().join("no-such-app");
    let out = pod.cmd().arg(&missing).arg("-i").output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        stderr(&out).contains(&format!(
            "dpdk-discover: cannot run {}: No such file or directory",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
    let out = pod
        .cmd()
        .env("PATH", pod.tmp.path())
        .arg("no-such-app")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(stderr(&out).contains("cannot run no-such-app: "), "{out:?}");

    let show = pod.show_args();
    std::fs::set_permissions(&show, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = pod.cmd().arg(&show).output().unwrap();
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("cannot run {}: Permission denied", show.display())),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn discovery_error_exits_1_and_runs_nothing() {
    let out = cmd()
        .env(VAR, "0000:01:10.0,nope")
        .args(["/bin/echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!("dpdk-discover: {VAR}: bad PCI address \"nope\" (want dddd:bb:dd.f)\n")
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn huge_dir_that_is_no_mount_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cmd().arg("--huge-dir").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "dpdk-discover: --huge-dir {} is not a hugetlbfs mount (none at that path in /proc/self/mountinfo)\n",
            tmp.path().display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_option_exits_2_with_usage() {
    for args in [&["--mem-mb", "0"][..], &["--lcores"], &["-x", "app"]] {
        let out = cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(err.starts_with("dpdk-discover: "), "{err}");
        assert!(err.contains("\nusage: dpdk-discover "), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn help_prints_usage() {
    let out = cmd().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).starts_with("usage: dpdk-discover "));
    assert!(out.stderr.is_empty());
}

#[test]
fn non_utf8_app_arguments_pass_through() {
    let Some(pod) = Pod::new() else { return };
    let show = pod.show_args();
    let odd = OsStr::from_bytes(b"caf\xe9");
    let out = pod.cmd().arg(&show).arg(odd).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.ends_with(b"\n--\ncaf\xe9\n"), "{out:?}");
}
