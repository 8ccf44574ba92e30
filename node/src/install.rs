//! `dpdk-cni-node install-cni`: puts the plugin binary into the host's CNI
//! directory for the DaemonSet's init container. The copy is written under
//! a temporary name in the target directory, synced and renamed, so a
//! runtime calling the plugin meanwhile sees the old binary or the new one,
//! never a partial file (and a running one keeps its inode).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{NodeError, Result};

/// The plugin's file name.
pub const PLUGIN: &str = "dpdk-cni";

/// Where the plugin is when `--from` is not given: next to this binary.
pub fn default_source() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(PLUGIN))
}

/// Copies `from` into `dir` as `name`, atomically; returns the installed path.
pub fn install(from: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    fs::create_dir_all(dir).map_err(NodeError::write(dir))?;
    let mut src = File::open(from).map_err(NodeError::read(from))?;
    let res = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        io::copy(&mut src, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(0o755))?;
        out.flush()?;
        out.sync_all()?;
        fs::rename(&tmp, &dest)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(NodeError::Write {
            path: dest,
            source: e,
        });
    }
    Ok(dest)
}

/// Where the plugin reads the node's settings, below the host's root.
pub const SETTINGS_NAME: &str = "node.json";

/// Checks the node settings at `from` and writes them, root-owned and
/// mode 0644, as `dir/node.json` (the host's `/etc/dpdk-cni`), atomically.
pub fn install_settings(from: &Path, dir: &Path) -> Result<PathBuf> {
    let data = fs::read(from).map_err(NodeError::read(from))?;
    ledger::NodeSettings::check_document(&data).map_err(|msg| NodeError::Config {
        path: from.to_path_buf(),
        msg,
    })?;
    let dest = dir.join(SETTINGS_NAME);
    ledger::write_atomic(&dest, &data, true)?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))
        .map_err(NodeError::write(&dest))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::write(&src, b"new plugin").unwrap();
        let dir = tmp.path().join("opt/cni/bin");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(PLUGIN), b"old").unwrap();
        let old_ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(dir.join(PLUGIN)).unwrap());
        let dest = install(&src, &dir, PLUGIN).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new plugin");
        let meta = fs::metadata(&dest).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_ne!(std::os::unix::fs::MetadataExt::ino(&meta), old_ino);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [PLUGIN]);
        assert!(install(&tmp.path().join("missing"), &dir, PLUGIN).is_err());
    }

    #[test]
    fn settings_are_checked_and_readable_by_the_plugin() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("node.json");
        let etc = tmp.path().join("etc/dpdk-cni");
        fs::write(
            &src,
            br#"{"allocationCheck": true, "handoverPfs": ["0000:03:00.0"]}"#,
        )
        .unwrap();
        let dest = install_settings(&src, &etc).unwrap();
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let s = ledger::NodeSettings::load(tmp.path()).unwrap();
        assert!(s.allocation_check);
        fs::write(&src, br#"{"stateDir": "relative"}"#).unwrap();
        assert!(install_settings(&src, &etc).is_err());
        fs::write(&src, br#"{"allocationChek": true}"#).unwrap();
        assert!(install_settings(&src, &etc).is_err());
        assert!(
            ledger::NodeSettings::load(tmp.path())
                .unwrap()
                .allocation_check
        );
    }
}
