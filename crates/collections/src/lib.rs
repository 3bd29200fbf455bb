//! Task collections: TOML files under `envs/` listing training tasks, explicitly or as
//! templates that expand deterministically (from the collection's `seed`) into many tasks.
//!
//! ```toml
//! name = "example"
//! seed = 0
//!
//! [[task]]                       # an explicit task (INTERFACE.md)
//! id = "iris-mlp"
//! dataset = "csv:tabular/sklearn_iris.csv.gz"
//! task_type = "classification"
//! model = "mlp:64x2"
//! epochs = 20
//! batch_size = 32
//! split = "meta-val"
//! group = "iris"
//!
//! [[template]]                   # `count` tasks drawn from distributions
//! name = "gm"
//! split = "meta-train"           # or splits = { meta-train = 0.7, meta-val = 0.3 } (by group)
//! count = 40
//! dataset = { generated = "gauss-mix", n = { int = [400, 2000] }, d = { int = [2, 32] } }
//! model = { widths = [16, 32, 64], depths = [1, 2], activations = ["relu", "tanh"] }
//! batch_size = { choice = [16, 32, 64] }
//! epochs = { choice = [10, 20] }
//! init_lr = { log_uniform = [1e-4, 1.0] }
//! init_momentum = { choice = [0.0, 0.5, 0.9] }
//! # optimizer = "adamw"          # or { choice = ["sgd", "adamw"] }; default sgd (then
//! #                              # init_momentum is AdamW's beta1, weight_decay decoupled)
//!
//! [[include]]                    # the tasks of another collection, ids prefixed `name/`
//! collection = "generated.toml"
//! splits = ["meta-train"]
//! # prefix = "gen"               # optional: another id prefix
//! # as_split = "held-out"        # optional: put every included task in this split
//! # templates = ["gm-train"]     # optional: only the tasks of these templates
//! ```
//!
//! Template datasets: `{ generated = FAMILY, k = value-or-distribution, ... }` (each task draws its
//! own data seed unless `seed` is given), `{ files = ["csv:...", "idx:..."] }` (one drawn per task), or
//! `{ manifest = "tabular/manifest.json", task = ..., min_rows = ..., max_rows = ...,
//! min_features = ..., max_features = ..., exclude = [...] }` (every matching dataset, `count`
//! variants each). Sampled fields take a value or `{ choice = [...] }`, `{ uniform = [lo, hi] }`,
//! `{ log_uniform = [lo, hi] }`, `{ int = [lo, hi] }`.
//!
//! Paths resolve against the data root: the caller's `data_dir` (the binary's `--data-dir`, else
//! its `HYPERCTL_DATA`; this crate reads no environment), else the collection
//! file's folder. Every task has an id, a split label and a group; datasets that share base data
//! share a group, and [`validate`] reports a group found in two splits.
//!
//! # Architecture invariants
//! - Collections are data: nothing here trains or knows of RL; the output is [`TaskSpec`]s.
//! - Expansion depends only on the file's text and the collection seed (a template draws from its
//!   own stream, so adding a template leaves the others' tasks unchanged).

#![warn(missing_docs)]

mod expand;
mod info;
pub mod sample;
mod schema;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyperctl_tasks::TaskSpec;

pub use info::{DatasetInfo, model_params};
pub use validate::{dataset_infos, validate};

/// Collections compiled into the binary, usable by name without the `envs/` folder.
pub const EMBEDDED: &[(&str, &str)] =
    &[("generated", include_str!("../../../envs/generated.toml"))];

/// One problem in a collection, located by file and (when known) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The collection file (or embedded name).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All problems found, as one error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// One task of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionTask {
    /// The task (paths resolved against the data root).
    pub task: TaskSpec,
    /// Split label (`meta-train`, `meta-val`, `test`, or any other).
    pub split: String,
    /// Datasets sharing base data share a group.
    pub group: String,
    /// Line of the entry that made this task.
    pub line: Option<usize>,
    /// The collection file that defined it.
    pub file: PathBuf,
    /// The template that made it (`None`: an explicit `[[task]]`).
    pub template: Option<String>,
}

/// An expanded collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// Its name.
    pub name: String,
    /// The file it came from (or the embedded name).
    pub file: PathBuf,
    /// The data root paths were resolved against.
    pub data_root: PathBuf,
    /// Expansion seed.
    pub seed: u64,
    /// Every task, in file order.
    pub tasks: Vec<CollectionTask>,
    /// Split labels that templates and tasks declare (to report empty ones).
    pub declared_splits: Vec<String>,
    /// Dataset facts known without loading (generated parameters, manifest entries), by source.
    pub known_info: BTreeMap<String, DatasetInfo>,
}

impl Collection {
    /// The tasks of one split (all with `None`).
    pub fn split<'a>(
        &'a self,
        split: Option<&'a str>,
    ) -> impl Iterator<Item = &'a CollectionTask> + 'a {
        self.tasks
            .iter()
            .filter(move |t| split.is_none_or(|s| t.split == s))
    }

    /// The task with this id.
    pub fn get(&self, id: &str) -> Option<&CollectionTask> {
        self.tasks.iter().find(|t| t.task.id == id)
    }
}

/// Where the collection text comes from.
fn read_collection(spec: &str) -> Result<(PathBuf, String), Problems> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|e| {
                Problems(vec![Problem {
                    file: path,
                    line: None,
                    message: format!("cannot read: {e}"),
                }])
            });
    }
    let name = spec.trim_end_matches(".toml");
    let name = name.rsplit('/').next().unwrap_or(name);
    if let Some((name, text)) = EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .filter(|_| !spec.contains('/'))
    {
        return Ok((
            PathBuf::from(format!("<embedded {name}>")),
            text.to_string(),
        ));
    }
    let names: Vec<_> = EMBEDDED.iter().map(|(n, _)| *n).collect();
    Err(Problems(vec![Problem {
        file: path,
        line: None,
        message: format!(
            "no such collection file (embedded collections: {})",
            names.join(", ")
        ),
    }]))
}

/// The data root: `data_dir` if given (the binary passes `--data-dir`, else `HYPERCTL_DATA`),
/// else the collection's folder.
pub fn data_root(file: &Path, data_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = data_dir {
        return dir.to_path_buf();
    }
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() && file.exists() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Loads and expands a collection (a file path, or an embedded name such as `generated`).
/// Structural problems (syntax, unknown fields, bad values) are all reported together.
pub fn load(spec: &str, data_dir: Option<&Path>) -> Result<Collection, Problems> {
    let (file, text) = read_collection(spec)?;
    let root = data_root(&file, data_dir);
    expand::expand(&file, &text, &root, data_dir, 0)
}

/// `n` indices evenly spaced over `0..len` (all of them when `n >= len`).
pub fn evenly_spaced(len: usize, n: Option<usize>) -> Vec<usize> {
    match n {
        Some(n) if n < len => (0..n).map(|i| i * len / n).collect(),
        _ => (0..len).collect(),
    }
}

/// A stable 64-bit hash of a name (FNV-1a): the same on every build and platform, so seeds
/// derived from names (template streams, untuned starts) never change.
pub fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses `COLLECTION#TASK_ID`.
pub fn split_task_ref(s: &str) -> Option<(&str, &str)> {
    s.rsplit_once('#')
        .filter(|(c, id)| !c.is_empty() && !id.is_empty())
}

/// `, did you mean `x`?` when a known word is close to `word`, else nothing.
pub fn did_you_mean(word: &str, known: &[&str]) -> String {
    let best = known.iter().map(|k| (edit_distance(word, k), *k)).min();
    match best {
        Some((d, k)) if d <= 2.max(word.len() / 3) && d < word.len() => {
            format!(", did you mean `{k}`?")
        }
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_covers_the_whole_split() {
        assert_eq!(evenly_spaced(10, Some(3)), vec![0, 3, 6]);
        assert_eq!(evenly_spaced(3, Some(5)), vec![0, 1, 2]);
        assert_eq!(evenly_spaced(4, None), vec![0, 1, 2, 3]);
    }

    #[test]
    fn did_you_mean_suggests_close_words_only() {
        assert_eq!(
            did_you_mean("epoch", &["epochs", "model"]),
            ", did you mean `epochs`?"
        );
        assert_eq!(did_you_mean("zzz", &["epochs", "model"]), "");
    }

    #[test]
    fn task_refs_split_at_the_last_hash() {
        assert_eq!(
            split_task_ref("envs/a.toml#t-1"),
            Some(("envs/a.toml", "t-1"))
        );
        assert_eq!(split_task_ref("generated"), None);
    }
}
