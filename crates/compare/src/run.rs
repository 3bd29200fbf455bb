//! Running every controller × task × seed, in parallel, resumably.
//!
//! Each finished run is appended to `results.jsonl` as one line in one write (no torn lines
//! between runs); a run already recorded there is skipped, so an interrupted comparison resumes
//! where it stopped. When every run is done the file is rewritten (temp file + rename) in a fixed
//! order (task, controller, seed), so two comparisons with the same inputs give the same file
//! apart from timings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyperctl_collections::CollectionTask;
use hyperctl_schedule_env::{EnvConfig, ScheduleEnv, run_schedule_with};
use hyperctl_tasks::{Backend, Dataset};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One run: a controller on a task with a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The task id.
    pub task_id: String,
    /// The task's split label.
    pub split: String,
    /// The task's group.
    pub group: String,
    /// The controller SPEC as given.
    pub controller: String,
    /// The episode seed (split, initialisation, shuffling).
    pub seed: u64,
    /// Final test loss (NaN → null when diverged).
    pub test_loss: Option<f64>,
    /// Final test accuracy or R².
    pub test_metric: Option<f64>,
    /// Whether training diverged.
    pub diverged: bool,
    /// The untrained model's validation loss.
    pub initial_val_loss: f64,
    /// Validation loss after each interval.
    pub val_loss: Vec<Option<f64>>,
    /// Mean train loss of each interval.
    pub train_loss: Vec<Option<f64>>,
    /// Learning rate of each interval.
    pub lr: Vec<f64>,
    /// Momentum of each interval.
    pub momentum: Vec<f64>,
    /// Sum of rewards.
    pub episode_return: f64,
    /// Minibatch steps taken.
    pub steps: usize,
    /// Wall-clock seconds.
    pub wall_secs: f64,
    /// hyperctl version.
    pub version: String,
    /// Backend.
    pub backend: String,
    /// The learning rate training started from.
    #[serde(default)]
    pub init_lr: Option<f64>,
    /// The momentum training started from.
    #[serde(default)]
    pub init_momentum: Option<f64>,
    /// Divergences undone by rollback (only `rollback(SPEC)` controllers roll back).
    #[serde(default)]
    pub rollbacks: usize,
}

impl RunRecord {
    /// The key that identifies a run.
    pub fn key(&self) -> (String, String, u64) {
        (self.task_id.clone(), self.controller.clone(), self.seed)
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Controller SPECs, in report order.
    pub controllers: Vec<String>,
    /// Seed offsets: run seed = task seed + offset.
    pub seeds: usize,
    /// Parallel runs.
    pub jobs: usize,
    /// Backend.
    pub backend: Backend,
    /// Environment config (bounds, penalty) shared by every run.
    pub env: EnvConfig,
    /// Open-loop trajectories by controller name and task id (for `replay(NAME)` controllers).
    pub replays: HashMap<String, HashMap<String, hyperctl_controllers::Replay>>,
    /// The untuned-start protocol: each task × seed starts from a drawn lr and momentum (the
    /// same for every controller) instead of the task's own `init`.
    pub starts: Option<StartDistribution>,
    /// Datasets loaded so far, shared by every run (and by [`check_tasks`]).
    pub datasets: Arc<DatasetCache>,
    /// Worker processes to run in (`compare --workers N`); `None`: `jobs` threads here.
    pub workers: Option<Arc<crate::worker::Workers>>,
}

/// Datasets by source string, each loaded once and shared by every run that trains on it.
#[derive(Debug, Default)]
pub struct DatasetCache(Mutex<HashMap<String, Arc<Dataset>>>);

impl DatasetCache {
    /// The dataset of `task`, loaded on first use.
    pub fn get(&self, task: &CollectionTask) -> Result<Arc<Dataset>, Error> {
        let key = task.task.source.to_string();
        let mut cache = self.0.lock().expect("no poisoned lock");
        if let Some(d) = cache.get(&key) {
            return Ok(d.clone());
        }
        let d = Arc::new(task.task.load().map_err(|e| Error::Task {
            task: task.task.id.clone(),
            reason: e.to_string(),
        })?);
        cache.insert(key, d.clone());
        Ok(d)
    }
}

/// Checks, before anything is written, that every task loads and builds under `config` (data
/// parses, the model fits, the batch fits the training split) and every controller SPEC builds:
/// a comparison that would fail part-way fails here instead.
pub fn check_tasks(tasks: &[CollectionTask], config: &RunConfig) -> Result<(), Error> {
    for c in &config.controllers {
        if !config.replays.contains_key(c) {
            hyperctl_controllers::build(hyperctl_controllers::unguarded_text(c).0)
                .map_err(|e| Error::Controller(e.to_string()))?;
        }
    }
    for t in tasks {
        let data = config.datasets.get(t)?;
        let mut spec = t.task.clone();
        if let Some(starts) = &config.starts {
            spec.init = starts.draw_for(&spec, spec.seed);
        }
        ScheduleEnv::with_data(spec, data, config.env.clone(), config.backend).map_err(|e| {
            Error::Task {
                task: t.task.id.clone(),
                reason: e.to_string(),
            }
        })?;
    }
    Ok(())
}

/// Where training starts under the untuned-start protocol: lr log-uniform over
/// `[lr_min, lr_max]`, momentum uniform over `momenta`, drawn from a seed that depends only on
/// the task id and the run seed, so every controller starts a task × seed from the same point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartDistribution {
    /// Smallest starting lr.
    pub lr_min: f64,
    /// Largest starting lr.
    pub lr_max: f64,
    /// Starting momenta to choose from.
    pub momenta: Vec<f64>,
}

/// Under a drawn (untuned) start, AdamW tasks draw their lr from `[lr_min, lr_max]` times this:
/// AdamW's learning rates sit about a decade below SGD's. A fixed start is used as given.
pub const ADAMW_UNTUNED_LR_SCALE: f64 = 0.1;

impl StartDistribution {
    /// The mission's protocol: lr in [1e-4, 1] (AdamW tasks: [1e-5, 0.1]), momentum (AdamW's
    /// beta1) in {0, 0.9}.
    pub fn untuned() -> Self {
        Self {
            lr_min: 1e-4,
            lr_max: 1.0,
            momenta: vec![0.0, 0.9],
        }
    }

    /// Every task × seed starts from the same point (for sweeps of the starting lr).
    pub fn fixed(lr: f64, momentum: f64) -> Self {
        Self {
            lr_min: lr,
            lr_max: lr,
            momenta: vec![momentum],
        }
    }

    /// Whether starts are drawn (not one fixed point).
    pub fn is_drawn(&self) -> bool {
        !(self.lr_min == self.lr_max && self.momenta.len() == 1)
    }

    /// The start of `task` at run seed `seed`: [`StartDistribution::draw`], its lr scaled by
    /// [`ADAMW_UNTUNED_LR_SCALE`] on an AdamW task when starts are drawn.
    pub fn draw_for(
        &self,
        task: &hyperctl_tasks::TaskSpec,
        seed: u64,
    ) -> hyperctl_tasks::Hyperparams {
        let mut start = self.draw(&task.id, seed);
        if task.optimizer == hyperctl_tasks::OptimizerKind::Adamw && self.is_drawn() {
            start.lr *= ADAMW_UNTUNED_LR_SCALE;
        }
        start
    }

    /// The start of `task_id` at run seed `seed`.
    pub fn draw(&self, task_id: &str, seed: u64) -> hyperctl_tasks::Hyperparams {
        use rand::{RngExt, SeedableRng};
        let h = hyperctl_collections::fnv1a(task_id);
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(h ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let u: f64 = rng.random();
        let lr = if self.lr_min == self.lr_max {
            self.lr_min
        } else {
            (self.lr_min.ln() + u * (self.lr_max.ln() - self.lr_min.ln())).exp()
        };
        let momentum = self.momenta[rng.random_range(0..self.momenta.len().max(1))];
        hyperctl_tasks::Hyperparams { lr, momentum }
    }
}

/// Reads the runs recorded so far; a torn last line (an interrupted write) is dropped.
pub fn read_results(path: &Path) -> Result<Vec<RunRecord>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.into(),
                error: e,
            });
        }
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<RunRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(file = %path.display(), "dropping a torn last line (an interrupted write)");
            }
            Err(e) => {
                return Err(Error::Results {
                    path: path.into(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(records)
}

/// Runs every (task, controller, seed) not yet in `out/results.jsonl`; `on_run` is called after
/// each new run with (runs done, runs total). Returns every record in the fixed order.
pub fn run_all(
    tasks: &[CollectionTask],
    config: &RunConfig,
    out: &Path,
    on_run: &(dyn Fn(usize, usize, &RunRecord) + Sync),
) -> Result<Vec<RunRecord>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.into(),
        error: e,
    })?;
    let results_path = out.join("results.jsonl");
    let existing = read_results(&results_path)?;
    // Rewrite without a torn line before appending.
    write_results(&results_path, &existing)?;
    let done: HashSet<(String, String, u64)> = existing.iter().map(RunRecord::key).collect();

    let mut jobs = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        for (ci, c) in config.controllers.iter().enumerate() {
            for s in 0..config.seeds {
                let seed = t.task.seed.wrapping_add(s as u64);
                if !done.contains(&(t.task.id.clone(), c.clone(), seed)) {
                    jobs.push((ti, ci, seed));
                }
            }
        }
    }
    let total = tasks.len() * config.controllers.len() * config.seeds;
    let finished = AtomicUsize::new(done.len());
    let file = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results_path)
            .map_err(|e| Error::Io {
                path: results_path.clone(),
                error: e,
            })?,
    );
    // Each run is appended as soon as it ends, so a kill loses only the runs in flight.
    let record_done = |record: RunRecord| -> Result<(), Error> {
        let mut line = serde_json::to_string(&record).expect("a record serializes");
        line.push('\n');
        {
            let mut f = file.lock().expect("no poisoned lock");
            f.write_all(line.as_bytes())
                .and_then(|_| f.flush())
                .map_err(|e| Error::Io {
                    path: results_path.clone(),
                    error: e,
                })?;
        }
        on_run(finished.fetch_add(1, Ordering::Relaxed) + 1, total, &record);
        Ok(())
    };
    // Replays carry trajectories from an earlier phase: they run here, the rest in the workers.
    let (remote, local): (Vec<_>, Vec<_>) = match &config.workers {
        Some(_) => jobs
            .iter()
            .copied()
            .partition(|&(_, ci, _)| !config.replays.contains_key(&config.controllers[ci])),
        None => (Vec::new(), jobs.clone()),
    };
    if let Some(workers) = &config.workers
        && !remote.is_empty()
    {
        let mut remote_jobs = Vec::with_capacity(remote.len());
        for &(ti, ci, seed) in &remote {
            let data = config.datasets.get(&tasks[ti])?;
            let cost = hyperctl_collections::DatasetInfo::of(&data).cost(&tasks[ti].task);
            remote_jobs.push((
                tasks[ti].task.id.as_str(),
                config.controllers[ci].as_str(),
                seed,
                cost,
            ));
        }
        workers.run(&remote_jobs, config, |_, record| record_done(record))?;
    }
    hyperctl_pool::try_for_each(local.len(), config.jobs, |j| {
        let (ti, ci, seed) = local[j];
        record_done(run_one(&tasks[ti], &config.controllers[ci], seed, config)?)
    })?;

    // Every run is recorded: rewrite in the fixed order.
    let mut by_key: BTreeMap<(usize, usize, u64), RunRecord> = BTreeMap::new();
    let task_index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task.id.as_str(), i))
        .collect();
    let controller_index: HashMap<&str, usize> = config
        .controllers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for r in read_results(&results_path)? {
        if let (Some(&ti), Some(&ci)) = (
            task_index.get(r.task_id.as_str()),
            controller_index.get(r.controller.as_str()),
        ) {
            by_key.insert((ti, ci, r.seed), r);
        }
    }
    let ordered: Vec<RunRecord> = by_key.into_values().collect();
    write_results(&results_path, &ordered)?;
    Ok(ordered)
}

pub(crate) fn run_one(
    task: &CollectionTask,
    controller: &str,
    seed: u64,
    config: &RunConfig,
) -> Result<RunRecord, Error> {
    let data = config.datasets.get(task)?;
    let mut spec = task.task.clone();
    if let Some(starts) = &config.starts {
        spec.init = starts.draw_for(&spec, seed);
    }
    let mut env = ScheduleEnv::with_data(spec.clone(), data, config.env.clone(), config.backend)
        .map_err(|e| Error::Task {
            task: task.task.id.clone(),
            reason: e.to_string(),
        })?;
    let (inner, rollback) = hyperctl_controllers::unguarded_text(controller);
    let mut ctl: Box<dyn hyperctl_schedule_env::Controller + Send> = match config
        .replays
        .get(controller)
    {
        Some(per_task) => Box::new(per_task.get(&task.task.id).cloned().ok_or_else(|| {
            Error::Controller(format!(
                "{controller}: no trajectory recorded for task `{}`",
                task.task.id
            ))
        })?),
        None => hyperctl_controllers::build(inner).map_err(|e| Error::Controller(e.to_string()))?,
    };
    let result = run_schedule_with(&mut env, ctl.as_mut(), seed, rollback, |_| {});
    Ok(RunRecord {
        task_id: task.task.id.clone(),
        split: task.split.clone(),
        group: task.group.clone(),
        controller: controller.to_string(),
        seed,
        test_loss: finite(result.test.loss),
        test_metric: finite(result.test.metric),
        diverged: result.diverged,
        initial_val_loss: result.initial_val.loss,
        val_loss: result
            .intervals
            .iter()
            .map(|r| finite(r.stats.val_loss))
            .collect(),
        train_loss: result
            .intervals
            .iter()
            .map(|r| finite(r.stats.train_loss_mean))
            .collect(),
        lr: result.intervals.iter().map(|r| r.stats.lr).collect(),
        momentum: result.intervals.iter().map(|r| r.stats.momentum).collect(),
        episode_return: result.episode_return,
        steps: result.intervals.iter().map(|r| r.stats.steps).sum(),
        wall_secs: result.wall_secs,
        version: env!("CARGO_PKG_VERSION").into(),
        backend: config.backend.name().into(),
        init_lr: Some(spec.init.lr),
        init_momentum: Some(spec.init.momentum),
        rollbacks: result.rollbacks,
    })
}

/// Writes records as JSON lines, atomically (temp file + rename).
pub fn write_results(path: &Path, records: &[RunRecord]) -> Result<(), Error> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("a record serializes"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` atomically and durably ([`hyperctl_files::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    hyperctl_files::write_atomic(path, bytes).map_err(|e| Error::Io {
        path: e.path,
        error: e.error,
    })
}

/// A minimal record for unit tests: a finished run with this loss.
#[cfg(test)]
pub(crate) fn test_record(task: &str, controller: &str, seed: u64, loss: Option<f64>) -> RunRecord {
    RunRecord {
        task_id: task.into(),
        split: "s".into(),
        group: task.into(),
        controller: controller.into(),
        seed,
        test_loss: loss,
        test_metric: Some(0.5),
        diverged: loss.is_none(),
        initial_val_loss: 2.0,
        val_loss: vec![],
        train_loss: vec![],
        lr: vec![],
        momentum: vec![],
        episode_return: 0.0,
        steps: 1,
        wall_secs: 1.0,
        version: "0".into(),
        backend: "flex".into(),
        init_lr: None,
        init_momentum: None,
        rollbacks: 0,
    }
}
