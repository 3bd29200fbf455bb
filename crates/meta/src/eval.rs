//! Evaluation of a deterministic policy on the eval split: every task × seed once, through
//! [`run_schedule`] and [`PolicyController`], exactly as `hyperctl compare --controller policy:DIR`
//! would run it (same episode seeds: the task's seed + 0..N). Episodes run in parallel and are
//! gathered by index, so the result does not depend on the number of threads.

use hyperctl_controllers::PolicyController;
use hyperctl_ppo::Policy;
use hyperctl_schedule_env::{TaskPool, run_schedule};
use serde::{Deserialize, Serialize};

/// One evaluation of the policy of one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Iteration whose policy was evaluated (0: the untrained policy).
    pub iteration: usize,
    /// Environment steps of training so far.
    pub global_step: usize,
    /// Mean episode return over tasks × seeds (ln(V₀/V_T), −crash_penalty when diverged).
    pub mean_return: f64,
    /// Median over tasks of the per-task mean return.
    pub median_return: f64,
    /// Episodes that diverged.
    pub diverged: usize,
    /// Episodes run.
    pub episodes: usize,
    /// Mean return of each task over its seeds, in task order.
    pub per_task: Vec<f64>,
    /// Wall-clock seconds of the evaluation.
    pub wall_secs: f64,
}

/// Runs `policy` on every task of `pool` with `seeds` seeds each, on `threads` threads.
pub fn evaluate(
    policy: &Policy,
    pool: &TaskPool,
    seeds: usize,
    threads: usize,
    iteration: usize,
    global_step: usize,
) -> EvalRecord {
    let start = std::time::Instant::now();
    let n = pool.tasks().len();
    let episodes: Vec<(f64, bool)> = hyperctl_pool::map(n * seeds, threads, |k| {
        episode(policy, pool, k / seeds, k % seeds)
    });
    summarize(&episodes, seeds, iteration, global_step, start)
}

/// Episode `s` (its seed: the task's seed + s) of `policy` on task `task` of `pool`: its return
/// and whether it diverged.
pub fn episode(policy: &Policy, pool: &TaskPool, task: usize, s: usize) -> (f64, bool) {
    let mut env = pool.env(task);
    let mut controller = PolicyController::new("policy", policy.clone());
    let seed = pool.tasks()[task].seed.wrapping_add(s as u64);
    let result = run_schedule(&mut env, &mut controller, seed, |_| {});
    (result.episode_return, result.diverged)
}

/// The record of `episodes` (task-major, `seeds` per task) of an evaluation begun at `start`.
pub fn summarize(
    episodes: &[(f64, bool)],
    seeds: usize,
    iteration: usize,
    global_step: usize,
    start: std::time::Instant,
) -> EvalRecord {
    let per_task: Vec<f64> = episodes
        .chunks(seeds)
        .map(|c| c.iter().map(|e| e.0).sum::<f64>() / seeds as f64)
        .collect();
    let mut sorted = per_task.clone();
    sorted.sort_by(f64::total_cmp);
    let median_return = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        0.5 * (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2])
    };
    EvalRecord {
        iteration,
        global_step,
        mean_return: episodes.iter().map(|e| e.0).sum::<f64>() / episodes.len() as f64,
        median_return,
        diverged: episodes.iter().filter(|e| e.1).count(),
        episodes: episodes.len(),
        per_task,
        wall_secs: start.elapsed().as_secs_f64(),
    }
}
