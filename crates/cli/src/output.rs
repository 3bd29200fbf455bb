//! Result files: run metadata every result records, and atomic writes (temp file + rename), so
//! an interrupted command never leaves a half-written file.

use std::path::Path;

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

/// Writes `bytes` to `path` atomically (temp file + rename), creating the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    Ok(hyperctl_compare::write_atomic(path, bytes)?)
}
