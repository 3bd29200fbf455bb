//! Durable file writes: the one home of hyperctl's atomic write, used for every result file,
//! checkpoint, report and policy folder.
//!
//! [`write_atomic`] writes into a temporary file beside the target (tempfile's `NamedTempFile`,
//! so the name is unique and the file is removed if anything fails), flushes it to disk
//! (`fsync`), renames it over the target (`persist`), and syncs the folder, so that after a
//! crash or a kill the target holds either the old or the new contents, whole.
//!
//! # Architecture invariants
//! - No knowledge of what is written: bytes in, a file out.

#![warn(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A write that failed; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct Error {
    /// The file being written.
    pub path: PathBuf,
    /// The underlying error (in the message, not chained, so it prints once).
    pub error: std::io::Error,
}

/// Replaces `path` with `bytes` atomically and durably (see the crate docs). The folder must
/// exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |error: std::io::Error| Error {
        path: path.into(),
        error,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hyperctl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename itself is durable once the folder is synced (where the platform allows it).
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
    }

    #[test]
    fn a_write_into_a_missing_folder_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/folder/out.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("out.json"), "{err}");
    }
}
