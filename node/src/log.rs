//! One line per event on stderr, which the container runtime keeps, and
//! with `--log-dir` also appended to `<dir>/dpdk-cni-node.log`.
//!
//! `--log-level` is the upstream device plugin's glog verbosity (`-v`): an
//! integer; glog prints info, warnings and errors at every level and only
//! its `V(n)` lines up to the level. Here: info, warnings and errors always,
//! debug lines (each device a pool takes, each config read) from
//! [`DEBUG_LEVEL`] up.
//!
//! The log file is opened once, `O_APPEND|O_NOFOLLOW`, created `0600`; a
//! symlink, a file that is not regular or that another user owns is
//! refused at start. Control characters in a message are escaped, so no
//! value can start a line of its own.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The verbosity from which debug lines are logged (Kubernetes' convention
/// for glog: `-v=4` is debug).
pub const DEBUG_LEVEL: i32 = 4;

/// The file `--log-dir` names.
pub const LOG_FILE: &str = "dpdk-cni-node.log";

/// Where a relative `--log-dir` lives: the upstream image's entrypoint takes
/// `--log-dir=sriovdp` as `/var/log/sriovdp`.
pub const LOG_BASE: &str = "/var/log";

#[derive(Debug)]
struct Logger {
    level: i32,
    file: Option<Mutex<File>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// The directory `--log-dir=<value>` means: an absolute path as it is, a
/// relative one under [`LOG_BASE`]; `None` for an empty value (no file).
pub fn resolve_dir(value: &Path) -> Result<Option<PathBuf>, String> {
    if value.as_os_str().is_empty() {
        return Ok(None);
    }
    if value.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "--log-dir {}: no '..' in the log directory",
            value.display()
        ));
    }
    Ok(Some(if value.is_absolute() {
        value.to_path_buf()
    } else {
        Path::new(LOG_BASE).join(value)
    }))
}

/// Opens (creating it and its directory if needed) the log file in `dir`.
pub fn open_file(dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("creating the log directory {}: {e}", dir.display()))?;
    let path = dir.join(LOG_FILE);
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // A FIFO would block the daemon; a symlink could point anywhere.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!("log file {} is a symlink: refused", path.display()),
            _ => format!("opening the log file {}: {e}", path.display()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("log file {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "log file {} is not a regular file: refused",
            path.display()
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(format!(
            "log file {} belongs to uid {}, not to this daemon (uid {euid}): refused",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("log file {}: setting mode 0600: {e}", path.display()))?;
    }
    Ok(file)
}

/// Sets the level and the log file; once, before the first line. Lines
/// logged before (or without) it go to stderr at level 0.
pub fn init(level: i32, file: Option<File>) {
    let _ = LOGGER.set(Logger {
        level,
        file: file.map(Mutex::new),
    });
}

/// Whether debug lines are logged.
pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.level >= DEBUG_LEVEL)
}

/// `msg` with control characters escaped (`\n` as `\\n`).
fn escape(msg: &str) -> String {
    if !msg.chars().any(char::is_control) {
        return msg.to_string();
    }
    msg.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn line(level: &str, msg: &str) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let text = format!(
        "{}.{:03} {level} dpdk-cni-node: {}",
        t.as_secs(),
        t.subsec_millis(),
        escape(msg)
    );
    eprintln!("{text}");
    if let Some(f) = LOGGER.get().and_then(|l| l.file.as_ref()) {
        if let Ok(mut f) = f.lock() {
            // One write per line: O_APPEND keeps lines whole.
            let _ = f.write_all(format!("{text}\n").as_bytes());
        }
    }
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        line("debug", msg);
    }
}

pub fn info(msg: &str) {
    line("info", msg);
}

pub fn warn(msg: &str) {
    line("warn", msg);
}

pub fn error(msg: &str) {
    line("error", msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn log_dir_values() {
        assert_eq!(resolve_dir(Path::new("")).unwrap(), None);
        assert_eq!(
            resolve_dir(Path::new("sriovdp")).unwrap(),
            Some(PathBuf::from("/var/log/sriovdp"))
        );
        assert_eq!(
            resolve_dir(Path::new("/var/log")).unwrap(),
            Some(PathBuf::from("/var/log"))
        );
        assert!(resolve_dir(Path::new("../etc")).is_err());
        assert!(resolve_dir(Path::new("/var/log/../../etc")).is_err());
    }

    #[test]
    fn log_file_is_private_and_never_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let f = open_file(&dir).unwrap();
        let meta = f.metadata().unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        drop(f);
        // An existing file with a wider mode is narrowed, and appended to.
        let path = dir.join(LOG_FILE);
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = open_file(&dir).unwrap();
        f.write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // A symlink in its place is refused and its target left alone.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let trap = tmp.path().join("trap");
        std::fs::create_dir(&trap).unwrap();
        symlink(&victim, trap.join(LOG_FILE)).unwrap();
        let e = open_file(&trap).unwrap_err();
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        // A FIFO or a directory is not a log file.
        let fifo = tmp.path().join("fifo");
        std::fs::create_dir(&fifo).unwrap();
        nix::unistd::mkfifo(&fifo.join(LOG_FILE), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(open_file(&fifo).is_err());
        let sub = tmp.path().join("sub");
        std::fs::create_dir_all(sub.join(LOG_FILE)).unwrap();
        assert!(open_file(&sub).is_err());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape("plain"), "plain");
    }
}
