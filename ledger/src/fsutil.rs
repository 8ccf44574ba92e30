//! Atomic and durable file writes, and reads of optional JSON records.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{io, LedgerError, Result};

/// Writes `data` to `path` atomically; with `durable`, also fsyncs the file
/// before the rename and the directory after it.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io(
            "find the directory of",
            path,
            std::io::Error::other("no parent"),
        )
    })?;
    fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| io("write", &tmp, e))?;
    if durable {
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io("rename into place", path, e))?;
    if durable {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", dir, e))?;
    }
    Ok(())
}

/// Reads a JSON record; `None` when there is none.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| LedgerError::Corrupt {
                what,
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path, e)),
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path, e)),
    }
}
