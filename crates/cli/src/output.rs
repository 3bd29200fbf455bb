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
    Ok(hyperctl_files::write_atomic(path, bytes)?)
}

/// An exclusive lock on an output folder, held while a command writes into it (released when
/// dropped or when the process ends, however it ends). The lock file records the holder, so a
/// second command on the same folder is refused with a message that names it.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// The lock file inside a locked folder.
pub const LOCK_FILE: &str = ".hyperctl.lock";

/// Creates `dir` if needed and takes its lock, or fails naming the process that holds it.
pub fn lock_dir(dir: &Path) -> anyhow::Result<DirLock> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder: serde_json::Value =
                serde_json::from_str(&holder).unwrap_or(serde_json::Value::Null);
            let pid = holder["pid"].as_u64().map_or("?".into(), |p| p.to_string());
            let command = holder["command"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            anyhow::bail!(
                "{} is in use by another hyperctl (pid {pid}: `{command}`); wait for it to finish or use another folder",
                dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let holder = serde_json::json!({
        "pid": std::process::id(),
        "command": std::env::args().collect::<Vec<_>>(),
    });
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(holder.to_string().as_bytes()))
        .and_then(|_| file.flush())
        .with_context(|| format!("cannot write the lock file {}", path.display()))?;
    Ok(DirLock { _file: file })
}

/// What differs between two JSON records of a command's inputs, in words: each top-level key
/// that changed, and for objects keyed by name (tasks, policies) the names that changed and how.
pub fn describe_changes(before: &serde_json::Value, after: &serde_json::Value) -> String {
    fn short(v: Option<&serde_json::Value>) -> String {
        let text = v.map_or("(absent)".to_string(), |v| v.to_string());
        if text.len() > 120 {
            let mut cut = 117;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &text[..cut])
        } else {
            text
        }
    }
    fn changes(
        path: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
        out: &mut Vec<String>,
    ) {
        match (before, after) {
            (Some(serde_json::Value::Object(b)), Some(serde_json::Value::Object(a))) => {
                let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    changes(&p, b.get(k), a.get(k), out);
                }
            }
            (b, a) if b != a => out.push(format!("`{path}` was {}, now {}", short(b), short(a))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    changes("", Some(before), Some(after), &mut out);
    let n = out.len();
    if n > 5 {
        out.truncate(5);
        out.push(format!("and {} more", n - 5));
    }
    if out.is_empty() {
        "nothing differs".into()
    } else {
        out.join("; ")
    }
}

/// Writes `out/config.json` as `{KEY: identity, "meta": meta}`, or checks that the run already there
/// (a comparison, a sweep) was made from the same inputs — then its recorded results are resumed —
/// naming what changed otherwise.
pub fn claim(
    out: &Path,
    key: &str,
    identity: &serde_json::Value,
    meta: &RunMeta,
) -> anyhow::Result<()> {
    let config_path = out.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config_path) {
        let previous: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", config_path.display()))?;
        let previous = previous.get(key).cloned().unwrap_or_default();
        if previous != *identity {
            anyhow::bail!(
                "{} holds a {key} made from other inputs, so its results cannot be resumed here: {}; use another --out",
                out.display(),
                describe_changes(&previous, identity)
            );
        }
    }
    let config_json = serde_json::json!({ key: identity, "meta": meta });
    write_atomic(
        &config_path,
        serde_json::to_string_pretty(&config_json)?.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_by_their_path_with_both_values() {
        let before =
            serde_json::json!({"seeds": 3, "tasks": {"a": {"epochs": 2}, "b": {"epochs": 5}}});
        let after = serde_json::json!({"seeds": 3, "tasks": {"a": {"epochs": 3}, "b": {"epochs": 5}}, "policies": {}});
        let text = describe_changes(&before, &after);
        assert!(text.contains("`tasks.a.epochs` was 2, now 3"), "{text}");
        assert!(text.contains("`policies` was (absent), now {}"), "{text}");
        assert!(
            !text.contains("seeds") && !text.contains("tasks.b"),
            "{text}"
        );
        assert_eq!(describe_changes(&before, &before), "nothing differs");
        let many: serde_json::Value = (0..9)
            .map(|i| (format!("k{i}"), serde_json::json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert!(describe_changes(&serde_json::json!({}), &many).ends_with("and 4 more"));
    }

    #[test]
    fn a_locked_folder_refuses_a_second_lock_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        // A second open file description of the same lock file (as another process would have).
        let err = lock_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("in use by another hyperctl")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(lock_dir(dir.path()).is_ok(), "released when dropped");
    }
}
