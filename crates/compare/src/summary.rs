//! Statistics over a comparison: per controller, across (task, seed) cells.
//!
//! - A run's **loss** is its final test loss; a diverged run counts as the untrained model's
//!   validation loss (what training bought: nothing).
//! - **log-loss ratio** `ln(loss / best)`, where `best` is the lowest loss any compared controller
//!   reached on that task and seed (0 = the best of the compared; later, with tuning, the grid
//!   oracle takes its place).
//! - **win rate** against the reference controller: 1 for a lower loss, ½ for a tie, 0 otherwise.
//! - **mean rank** among the compared controllers (1 = best, ties share the average rank).
//! - 95% intervals: percentile bootstrap over tasks (2000 resamples, seeds averaged within a task,
//!   fixed RNG seed), so tasks, not seeds, are the unit of evidence.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::run::RunRecord;

/// A mean with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ci {
    /// The mean over tasks.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap means.
    pub hi: f64,
}

/// One controller's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControllerSummary {
    /// The SPEC.
    pub controller: String,
    /// Runs.
    pub runs: usize,
    /// Diverged runs.
    pub diverged: usize,
    /// Mean ln(loss / best).
    pub log_loss_ratio: Ci,
    /// Win rate against the reference (None for the reference itself).
    pub win_rate: Option<Ci>,
    /// Mean rank.
    pub mean_rank: Ci,
    /// Mean test metric over non-diverged runs (accuracy or R²; tasks mix them).
    pub mean_test_metric: Option<f64>,
    /// Total wall-clock seconds.
    pub wall_secs: f64,
}

/// A task's mean loss under each controller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    /// The task id.
    pub task_id: String,
    /// Mean loss over seeds, per controller (in controller order).
    pub mean_loss: Vec<f64>,
    /// Diverged runs per controller.
    pub diverged: Vec<usize>,
}

/// The whole summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The reference controller for win rates.
    pub reference: String,
    /// Tasks compared.
    pub n_tasks: usize,
    /// Seeds per task.
    pub n_seeds: usize,
    /// Per controller, in the order given.
    pub controllers: Vec<ControllerSummary>,
    /// Per task.
    pub tasks: Vec<TaskRow>,
}

/// The loss a run counts with (diverged: the untrained model's validation loss).
pub fn effective_loss(r: &RunRecord) -> f64 {
    match (r.diverged, r.test_loss) {
        (false, Some(l)) => l.max(1e-12),
        _ => r.initial_val_loss.max(1e-12),
    }
}

/// Summarizes `records` of `controllers` (all runs complete) with win rates against `reference`.
pub fn summarize(records: &[RunRecord], controllers: &[String], reference: &str) -> Summary {
    // cells[(task, seed)][controller] = loss
    let mut cells: BTreeMap<(String, u64), Vec<Option<f64>>> = BTreeMap::new();
    let mut task_order: Vec<String> = Vec::new();
    for r in records {
        let Some(ci) = controllers.iter().position(|c| *c == r.controller) else {
            continue;
        };
        if !task_order.contains(&r.task_id) {
            task_order.push(r.task_id.clone());
        }
        cells
            .entry((r.task_id.clone(), r.seed))
            .or_insert_with(|| vec![None; controllers.len()])[ci] = Some(effective_loss(r));
    }
    cells.retain(|_, v| v.iter().all(Option::is_some));
    let ref_idx = controllers.iter().position(|c| c == reference);
    let n_seeds = cells
        .keys()
        .filter(|(t, _)| Some(t) == task_order.first())
        .count();

    // Per task, per controller: mean over seeds of each per-cell statistic.
    let mut per_task: BTreeMap<&str, Vec<[f64; 3]>> = BTreeMap::new(); // [log ratio, win, rank]
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ((task, _), losses) in &cells {
        let losses: Vec<f64> = losses
            .iter()
            .map(|l| l.expect("complete cells only"))
            .collect();
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let ranks = average_ranks(&losses);
        let entry = per_task
            .entry(task)
            .or_insert_with(|| vec![[0.0; 3]; controllers.len()]);
        for (ci, &loss) in losses.iter().enumerate() {
            let win = match ref_idx {
                Some(ri) if losses[ri] > loss => 1.0,
                Some(ri) if losses[ri] == loss => 0.5,
                _ => 0.0,
            };
            entry[ci][0] += (loss / best).ln();
            entry[ci][1] += win;
            entry[ci][2] += ranks[ci];
        }
        *counts.entry(task).or_default() += 1;
    }
    for (task, values) in per_task.iter_mut() {
        let n = counts[task] as f64;
        values
            .iter_mut()
            .for_each(|v| v.iter_mut().for_each(|x| *x /= n));
    }
    let task_values: Vec<&Vec<[f64; 3]>> = per_task.values().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0xB00757A9);
    let resamples: Vec<Vec<usize>> = (0..2000)
        .map(|_| {
            (0..task_values.len())
                .map(|_| rng.random_range(0..task_values.len().max(1)))
                .collect()
        })
        .collect();
    let ci_of = |ci: usize, k: usize| -> Ci {
        let mean_of = |idx: &mut dyn Iterator<Item = usize>| {
            let (sum, n) = idx.fold((0.0, 0usize), |(s, n), i| {
                (s + task_values[i][ci][k], n + 1)
            });
            sum / n.max(1) as f64
        };
        let mean = mean_of(&mut (0..task_values.len()));
        let mut boot: Vec<f64> = resamples
            .iter()
            .map(|r| mean_of(&mut r.iter().copied()))
            .collect();
        boot.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            boot.get(((boot.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Ci {
            mean,
            lo: pick(0.025),
            hi: pick(0.975),
        }
    };

    let summaries = controllers
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let runs: Vec<&RunRecord> = records.iter().filter(|r| &r.controller == c).collect();
            let metrics: Vec<f64> = runs
                .iter()
                .filter(|r| !r.diverged)
                .filter_map(|r| r.test_metric)
                .collect();
            ControllerSummary {
                controller: c.clone(),
                runs: runs.len(),
                diverged: runs.iter().filter(|r| r.diverged).count(),
                log_loss_ratio: ci_of(ci, 0),
                win_rate: (Some(ci) != ref_idx && ref_idx.is_some()).then(|| ci_of(ci, 1)),
                mean_rank: ci_of(ci, 2),
                mean_test_metric: (!metrics.is_empty())
                    .then(|| metrics.iter().sum::<f64>() / metrics.len() as f64),
                wall_secs: runs.iter().map(|r| r.wall_secs).sum(),
            }
        })
        .collect();
    let tasks = task_order
        .iter()
        .map(|task| {
            let mean_loss = controllers
                .iter()
                .map(|c| {
                    let losses: Vec<f64> = records
                        .iter()
                        .filter(|r| &r.task_id == task && &r.controller == c)
                        .map(effective_loss)
                        .collect();
                    losses.iter().sum::<f64>() / losses.len().max(1) as f64
                })
                .collect();
            let diverged = controllers
                .iter()
                .map(|c| {
                    records
                        .iter()
                        .filter(|r| &r.task_id == task && &r.controller == c && r.diverged)
                        .count()
                })
                .collect();
            TaskRow {
                task_id: task.clone(),
                mean_loss,
                diverged,
            }
        })
        .collect();
    Summary {
        reference: reference.to_string(),
        n_tasks: per_task.len(),
        n_seeds,
        controllers: summaries,
        tasks,
    }
}

/// Ranks (1 = smallest), ties sharing their average rank.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task: &str, controller: &str, seed: u64, loss: f64, diverged: bool) -> RunRecord {
        crate::run::test_record(task, controller, seed, (!diverged).then_some(loss))
    }

    #[test]
    fn ranks_share_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn summary_statistics_match_a_hand_computed_case() {
        let controllers = vec!["a".to_string(), "b".to_string()];
        let records = vec![
            record("t1", "a", 0, 1.0, false),
            record("t1", "b", 0, 0.5, false),
            record("t2", "a", 0, 1.0, false),
            record("t2", "b", 0, 9.0, true), // counts as the untrained loss 2.0
        ];
        let s = summarize(&records, &controllers, "a");
        let (a, b) = (&s.controllers[0], &s.controllers[1]);
        assert!((a.log_loss_ratio.mean - 2f64.ln() / 2.0).abs() < 1e-12);
        assert!((b.log_loss_ratio.mean - 2f64.ln() / 2.0).abs() < 1e-12);
        assert_eq!(a.win_rate, None);
        assert!((b.win_rate.unwrap().mean - 0.5).abs() < 1e-12);
        assert!((a.mean_rank.mean - 1.5).abs() < 1e-12 && (b.mean_rank.mean - 1.5).abs() < 1e-12);
        assert_eq!((a.diverged, b.diverged), (0, 1));
        assert!(
            b.log_loss_ratio.lo <= b.log_loss_ratio.mean
                && b.log_loss_ratio.mean <= b.log_loss_ratio.hi
        );
        assert_eq!(s.tasks[1].mean_loss, vec![1.0, 2.0]);
        assert_eq!((s.n_tasks, s.n_seeds), (2, 1));
    }
}
