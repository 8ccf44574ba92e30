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
    // A new file of a random name (O_EXCL, so never through a symlink or
    // into another's file), renamed over the target: rename replaces a
    // symlink there rather than following it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file in", dir, e))?;
    tmp.write_all(data)
        .map_err(|e| io("write", tmp.path().to_path_buf(), e))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| io("fsync", tmp.path().to_path_buf(), e))?;
    }
    tmp.persist(path)
        .map_err(|e| io("rename into place", path, e.error))?;
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
