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
}
