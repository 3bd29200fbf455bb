//! A data-driven prior for a sweep: what worked on other tasks. Earlier sweeps (normally on the
//! meta-train collection) each contribute their task's dataset meta-features and their best
//! configurations; a new sweep starts from the best configurations of the sweeps whose datasets
//! look most like its own (rows, features, outputs, task type), and later draws half of its
//! trials around them.
//!
//! - Distance between datasets: |Δ ln rows| + |Δ ln features| + |Δ ln outputs|, plus 10 when one
//!   is classification and the other regression (so a match of type comes first).
//! - Only configurations the new sweep's space could draw itself are used (same keys, every value
//!   inside its distribution), so the prior never leaves the declared space.

use serde::{Deserialize, Serialize};

use crate::search::TrialRecord;
use crate::space::{Config, Space};

/// What a sweep records of its dataset, for matching.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetaFeatures {
    /// Rows to split into train/val(/test).
    pub rows: usize,
    /// Features per row.
    pub features: usize,
    /// Model outputs (classes, or 1 for regression).
    pub outputs: usize,
    /// Classification (else regression).
    pub classification: bool,
}

impl MetaFeatures {
    /// The distance of the module docs.
    pub fn distance(&self, other: &MetaFeatures) -> f64 {
        let l = |a: usize, b: usize| ((a.max(1) as f64).ln() - (b.max(1) as f64).ln()).abs();
        l(self.rows, other.rows)
            + l(self.features, other.features)
            + l(self.outputs, other.outputs)
            + if self.classification == other.classification {
                0.0
            } else {
                10.0
            }
    }
}

/// One earlier sweep's contribution: its task, dataset and best configurations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorEntry {
    /// The task id of that sweep.
    pub task: String,
    /// Its dataset's meta-features.
    pub meta: MetaFeatures,
    /// Its completed trials' configurations, best (lowest final validation loss) first.
    pub best: Vec<Config>,
}

impl PriorEntry {
    /// From a sweep's trials: the completed ones' configurations, best first.
    pub fn from_trials(task: &str, meta: MetaFeatures, trials: &[TrialRecord]) -> Self {
        let mut done: Vec<&TrialRecord> = trials.iter().filter(|t| t.completed()).collect();
        done.sort_by(|a, b| {
            a.final_val_loss
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.final_val_loss.unwrap_or(f64::INFINITY))
                .then(a.trial.cmp(&b.trial))
        });
        Self {
            task: task.into(),
            meta,
            best: done.into_iter().map(|t| t.config.clone()).collect(),
        }
    }
}

/// The configurations a sweep on a dataset with `meta` starts from: the best admissible
/// configuration of each of the `k` nearest entries (nearest first; ties by task id), without
/// repeats. Entries for the same task id as `own_task` are left out (a sweep does not learn from
/// itself).
pub fn starting_configs(
    entries: &[PriorEntry],
    meta: &MetaFeatures,
    own_task: &str,
    space: &Space,
    k: usize,
) -> Vec<Config> {
    let mut ranked: Vec<&PriorEntry> = entries.iter().filter(|e| e.task != own_task).collect();
    ranked.sort_by(|a, b| {
        a.meta
            .distance(meta)
            .total_cmp(&b.meta.distance(meta))
            .then(a.task.cmp(&b.task))
    });
    let mut out: Vec<Config> = Vec::new();
    for e in ranked {
        if out.len() >= k {
            break;
        }
        if let Some(c) = e.best.iter().find(|c| space.admits(c))
            && !out.contains(c)
        {
            out.push(c.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(width: i64) -> Config {
        [("width".to_string(), toml::Value::Integer(width))]
            .into_iter()
            .collect()
    }

    fn meta(rows: usize, classification: bool) -> MetaFeatures {
        MetaFeatures {
            rows,
            features: 8,
            outputs: if classification { 3 } else { 1 },
            classification,
        }
    }

    #[test]
    fn the_nearest_tasks_best_admissible_configurations_come_first() {
        let space = Space::parse("width = { choice = [16, 32, 64] }").unwrap();
        let entries = vec![
            PriorEntry {
                task: "far".into(),
                meta: meta(100_000, true),
                best: vec![config(16)],
            },
            PriorEntry {
                task: "near".into(),
                meta: meta(1000, true),
                best: vec![config(128), config(32)],
            },
            PriorEntry {
                task: "regression".into(),
                meta: meta(1000, false),
                best: vec![config(64)],
            },
            PriorEntry {
                task: "self".into(),
                meta: meta(1000, true),
                best: vec![config(64)],
            },
        ];
        let got = starting_configs(&entries, &meta(1100, true), "self", &space, 3);
        // 128 is outside the space, so `near` gives its second best; then `far` (same type) before
        // the closer-sized regression task; `self` never.
        assert_eq!(got, vec![config(32), config(16), config(64)]);
        assert_eq!(
            starting_configs(&entries, &meta(1100, true), "self", &space, 1),
            vec![config(32)]
        );
    }
}
