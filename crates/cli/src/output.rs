//! Result files: run metadata every result records, and atomic writes (temp file + rename), so
//! an interrupted command never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Provenance every result file records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunMeta {
    /// hyperctl version.
    pub version: &'static str,
    /// git commit of the build (`-dirty` when built with uncommitted changes).
    pub git_commit: &'static str,
    /// Backend name.
    pub backend: String,
    /// Seed.
    pub seed: u64,
    /// Unix time of the start.
    pub started_unix: u64,
    /// The command line.
    pub command: Vec<String>,
}

impl RunMeta {
    /// Metadata for a run starting now.
    pub fn new(backend: &str, seed: u64) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            git_commit: env!("HYPERCTL_GIT_COMMIT"),
            backend: backend.into(),
            seed,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            command: std::env::args().collect(),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let file_name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp: PathBuf = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
