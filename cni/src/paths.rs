//! Files the netconf may name, confined. A netconf is tenant input (a
//! NetworkAttachmentDefinition is a namespaced object) feeding a root
//! process, so `logFile` and `runtimeConfig.CNIDeviceInfoFile` may only
//! name regular files inside the directories made for them, reached
//! without `..` and without a symlink leading out.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ledger::settings::under_root;

/// The NPWG device-info directory; a device-info file must be inside it.
pub const DEVINFO_DIR: &str = "var/run/k8s.cni.cncf.io/devinfo";
/// Where the plugin puts its device-info file when the runtime names none.
pub const DEFAULT_DEVINFO_SUBDIR: &str = "var/run/k8s.cni.cncf.io/devinfo/cni";

/// `path` (a node path) below `root`, if it is inside one of `dirs`
/// (already below `root`): absolute, no `.` or `..`, its directory inside
/// the allowed one once symlinks are resolved, and not itself a symlink or
/// anything but a regular file. `Err` says which rule it broke.
pub fn confine(root: &Path, path: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err("it must be an absolute path".into());
    }
    if path
        .split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("it must not contain '.' or '..' or an empty part".into());
    }
    let full = under_root(root, p).ok_or("it must be an absolute path without '..'")?;
    let Some(dir) = dirs.iter().find(|d| full.starts_with(d) && full != **d) else {
        return Err(format!(
            "it must be inside {}",
            dirs.iter()
                .map(|d| node_view(root, d))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    };
    let parent = full.parent().ok_or("it has no directory")?;
    let outside = || format!("a symlink on the way leads out of {}", node_view(root, dir));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{} cannot be made: {e}", node_view(root, dir)))?;
    let real_dir = dir
        .canonicalize()
        .map_err(|e| format!("{} cannot be resolved: {e}", node_view(root, dir)))?;
    // A netconf makes no directories: the file's own must exist, but for
    // the one level the NPWG layout puts below the device-info directory
    // (`devinfo/cni`), which the first writer makes.
    if std::fs::symlink_metadata(parent).is_err() {
        let npwg_subdir = parent.parent() == Some(dir.as_path())
            && parent.file_name().is_some_and(|n| n == "cni")
            && dir.ends_with(DEVINFO_DIR);
        if !npwg_subdir {
            return Err(format!(
                "its directory {} does not exist",
                node_view(root, parent)
            ));
        }
        std::fs::create_dir(parent).map_err(|e| format!("its directory cannot be made: {e}"))?;
    }
    let real_parent = parent
        .canonicalize()
        .map_err(|e| format!("its directory cannot be resolved: {e}"))?;
    if !real_parent.starts_with(&real_dir) {
        return Err(outside());
    }
    match std::fs::symlink_metadata(&full) {
        Ok(m) if m.file_type().is_symlink() => Err("it is a symlink".into()),
        Ok(m) if !m.file_type().is_file() => Err("it is not a regular file".into()),
        _ => Ok(real_parent.join(full.file_name().ok_or("it names no file")?)),
    }
}

/// How a path below `root` looks on the node.
fn node_view(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel).display().to_string(),
        Err(_) => p.display().to_string(),
    }
}

/// Opens a confined log file for appending, never through a symlink.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// `s` with every control character escaped, for one log line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_keeps_paths_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let logs = root.join("var/log");
        std::fs::create_dir_all(&logs).unwrap();
        let dirs = [logs.clone()];
        assert_eq!(
            confine(root, "/var/log/b.log", &dirs).unwrap(),
            logs.canonicalize().unwrap().join("b.log")
        );
        let e = confine(root, "/var/log/a/b.log", &dirs).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!logs.join("a").exists(), "made a directory for a netconf");
        let devinfo = root.join(DEVINFO_DIR);
        assert!(confine(
            root,
            "/var/run/k8s.cni.cncf.io/devinfo/cni/x.json",
            std::slice::from_ref(&devinfo)
        )
        .is_ok());
        assert!(confine(
            root,
            "/var/run/k8s.cni.cncf.io/devinfo/a/b/x.json",
            std::slice::from_ref(&devinfo)
        )
        .is_err());
        assert!(!devinfo.join("a").exists());
        for (bad, why) in [
            ("var/log/x", "absolute"),
            ("/var/log/../../etc/passwd", "'..'"),
            ("/var/log/./x", "'..'"),
            ("/etc/passwd", "inside /var/log"),
            ("/var/log", "inside /var/log"),
            ("/var/logs/x", "inside /var/log"),
        ] {
            let e = confine(root, bad, &dirs).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        std::os::unix::fs::symlink(root.join("etc"), logs.join("out")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let e = confine(root, "/var/log/out/shadow", &dirs).unwrap_err();
        assert!(e.contains("leads out"), "{e}");
        let e = confine(root, "/var/log/out/new/x", &dirs).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!root.join("etc/new").exists(), "made a directory outside");
        std::os::unix::fs::symlink(root.join("etc/shadow"), logs.join("l.log")).unwrap();
        let e = confine(root, "/var/log/l.log", &dirs).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        std::fs::create_dir_all(logs.join("d")).unwrap();
        let e = confine(root, "/var/log/d", &dirs).unwrap_err();
        assert!(e.contains("regular file"), "{e}");
    }

    #[test]
    fn escape_makes_one_line() {
        assert_eq!(escape("a\nb\r\t\u{1b}[31m"), "a\\nb\\r\\t\\u{1b}[31m");
    }
}
