//! The search loop: trials drawn from a [`Space`], each trained by the sweep's controller, stopped
//! early at rungs by the [`Method`], until the epoch budget is spent.
//!
//! **Determinism.** Trial `i`'s configuration comes from its own random stream (the sweep seed,
//! stream `i`), and every stopping decision of trial `i` reads only trials `0..i` — at a rung it
//! waits until each earlier trial has passed that rung or ended. Trials run in index order on the
//! pool's threads, so the lowest unfinished trial never waits, and the results are those of running
//! the trials one after another, whatever the thread count.
//!
//! **Budget.** Trial `i` is part of the sweep iff the trials before it trained fewer epochs than the
//! budget (stopped trials count what they trained): the last trial may overshoot. Trials started
//! past that point, while earlier ones were still running, are dropped.
//!
//! **Resume.** Trials are appended to `results.jsonl` in index order as the prefix completes; a
//! rerun into the same folder reads them back (a torn last line is dropped) and continues with the
//! next trial, taking the same decisions.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use hyperctl_env_core::Env;
use hyperctl_schedule_env::{EnvConfig, ScheduleEnv, run_schedule_while};
use hyperctl_tasks::{Backend, Dataset, TaskSpec};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::predictor::CurvePredictor;
use crate::space::{Config, Space, apply};

/// How trials are stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Method {
    /// Random search: every trial trains its whole budget.
    Random,
    /// Asynchronous successive halving (ASHA, Li et al. 2020) as a pruner: at each rung epoch
    /// `min_epochs · eta^k` (below the task's budget) a trial goes on only if its validation loss
    /// is among the best `max(1, ⌊n / eta⌋)` of the `n` trials (itself included, earlier ones
    /// only) that reached that rung.
    Asha {
        /// The reduction factor (≥ 2).
        eta: usize,
        /// The first rung's epoch (≥ 1).
        min_epochs: usize,
    },
    /// ASHA's rungs driven by a learned curve predictor ([`CurvePredictor`], the sweep's
    /// `predictor`): at a rung a trial goes on only if its optimistic predicted final validation
    /// loss (mean − `z`·std) is among the best `max(1, ⌊n / eta⌋)` predicted means of the `n`
    /// trials at that rung.
    Predicted {
        /// The reduction factor (≥ 2).
        eta: usize,
        /// The first rung's epoch (≥ 1).
        min_epochs: usize,
        /// How many standard deviations of optimism a trial gets (≥ 0).
        z: f64,
    },
}

impl Method {
    /// Parses `random`, `asha[:eta=3,min_epochs=1]` or `predicted[:eta=3,min_epochs=1,z=1]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, params) = text.split_once(':').unwrap_or((text, ""));
        let mut values = BTreeMap::new();
        for part in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("method `{text}`: expected key=value, got `{part}`"))?;
            let v: f64 = v
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("method `{text}`: `{k}` expects a number, got `{v}`"))?;
            values.insert(k.to_string(), v);
        }
        let mut whole = |k: &str, default: usize| -> Result<usize, String> {
            match values.remove(k) {
                None => Ok(default),
                Some(v) if v.fract() == 0.0 && v >= 0.0 => Ok(v as usize),
                Some(v) => Err(format!(
                    "method `{text}`: `{k}` expects a whole number, got {v}"
                )),
            }
        };
        let method = match name {
            "random" => Method::Random,
            "asha" => Method::Asha {
                eta: whole("eta", 3)?,
                min_epochs: whole("min_epochs", 1)?,
            },
            "predicted" => Method::Predicted {
                eta: whole("eta", 3)?,
                min_epochs: whole("min_epochs", 1)?,
                z: values.remove("z").unwrap_or(1.0),
            },
            other => {
                return Err(format!(
                    "unknown method `{other}`; expected random, asha or predicted"
                ));
            }
        };
        if let Some(k) = values.keys().next() {
            return Err(format!("method `{text}`: unknown parameter `{k}`"));
        }
        match method {
            Method::Asha { eta, min_epochs }
            | Method::Predicted {
                eta, min_epochs, ..
            } if eta < 2 || min_epochs < 1 => Err(format!(
                "method `{text}`: needs eta >= 2 and min_epochs >= 1"
            )),
            Method::Predicted { z, .. } if z < 0.0 => Err(format!("method `{text}`: needs z >= 0")),
            m => Ok(m),
        }
    }

    /// The rung epochs for a task of `epochs` epochs (none for random search).
    pub fn rungs(&self, epochs: usize) -> Vec<usize> {
        match *self {
            Method::Random => Vec::new(),
            Method::Asha { eta, min_epochs }
            | Method::Predicted {
                eta, min_epochs, ..
            } => {
                let mut rungs = Vec::new();
                let mut r = min_epochs;
                while r < epochs {
                    rungs.push(r);
                    r = r.saturating_mul(eta);
                }
                rungs
            }
        }
    }

    /// Whether a trial whose score is `own` goes on at a rung where `competing` (itself included)
    /// are the scores of every trial there; lower is better, and inf (diverged) sorts last.
    fn keep(&self, own: f64, competing: &[f64]) -> bool {
        match *self {
            Method::Random => true,
            Method::Asha { eta, .. } | Method::Predicted { eta, .. } => {
                let better = competing.iter().filter(|&&v| v < own).count();
                better < (competing.len() / eta).max(1)
            }
        }
    }
}

/// One sweep: the base task, what to search, how, and with what budget.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The task each trial starts from (the space overrides its parts).
    pub task: TaskSpec,
    /// What trials draw.
    pub space: Space,
    /// Total epochs all trials together may train.
    pub budget: usize,
    /// At most this many trials.
    pub max_trials: usize,
    /// Early stopping.
    pub method: Method,
    /// The curve predictor [`Method::Predicted`] reads.
    pub predictor: Option<Arc<CurvePredictor>>,
    /// Starting configurations from other tasks' sweeps ([`crate::prior::starting_configs`]);
    /// empty for a search without a prior.
    pub prior: Vec<Config>,
    /// The controller SPEC that sets every trial's lr and momentum.
    pub controller: String,
    /// Env bounds shared by every trial.
    pub env: EnvConfig,
    /// Backend.
    pub backend: Backend,
    /// The sweep seed: trial configurations, and every trial's run seed (the task's seed + it).
    pub seed: u64,
    /// Trials run in parallel.
    pub jobs: usize,
}

/// One trial as recorded in `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The trial's index (0, 1, … in order).
    pub trial: usize,
    /// The drawn configuration.
    pub config: Config,
    /// The trial's model, as a spec.
    pub model: String,
    /// The trial's minibatch size.
    pub batch_size: usize,
    /// Its weight decay.
    pub weight_decay: f64,
    /// Its inner optimizer.
    pub optimizer: String,
    /// The lr and momentum training started from.
    pub init_lr: f64,
    /// See `init_lr`.
    pub init_momentum: f64,
    /// The controller SPEC.
    pub controller: String,
    /// The run seed.
    pub seed: u64,
    /// The untrained model's validation loss.
    pub initial_val_loss: f64,
    /// Epochs trained (stopped trials: until they were stopped).
    pub epochs: usize,
    /// The task's budget in epochs.
    pub budget_epochs: usize,
    /// Stopped early by the method.
    pub stopped: bool,
    /// Diverged (and not rolled back).
    pub diverged: bool,
    /// Validation loss after each epoch (of the state training continued from: a rolled-back
    /// epoch repeats the one before).
    pub val_loss: Vec<Option<f64>>,
    /// The lr of each epoch.
    pub lr: Vec<f64>,
    /// The momentum of each epoch.
    pub momentum: Vec<f64>,
    /// The final validation loss of a trial that trained its whole budget.
    pub final_val_loss: Option<f64>,
    /// Its test loss (only trials that trained their whole budget are evaluated on test).
    pub test_loss: Option<f64>,
    /// Its test accuracy or R².
    pub test_metric: Option<f64>,
    /// Epochs trained by this trial and all before it.
    pub epochs_spent: usize,
    /// Rollbacks of the guard, if the controller is `rollback(...)`.
    pub rollbacks: usize,
    /// Wall-clock seconds of training.
    pub wall_secs: f64,
    /// hyperctl version.
    pub version: String,
    /// Backend.
    pub backend: String,
}

impl TrialRecord {
    /// Whether this trial counts as a result: it trained its whole budget without diverging.
    pub fn completed(&self) -> bool {
        !self.stopped && !self.diverged && self.final_val_loss.is_some()
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The configuration of trial `i`: with a prior (starting configurations, [`crate::prior`]),
/// the first trials take them in order, and each later trial is, with probability 1/2, one of
/// them with every key redrawn from the space with probability 1/2 (a search around what worked
/// elsewhere), else a fresh draw. Without a prior every trial is a fresh draw.
pub fn draw_config(space: &Space, seed: u64, trial: usize, prior: &[Config]) -> Config {
    if let Some(c) = prior.get(trial) {
        return c.clone();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(trial as u64);
    if !prior.is_empty() && rng.random::<f64>() < 0.5 {
        let base = &prior[rng.random_range(0..prior.len())];
        let fresh = space.draw(&mut rng);
        return fresh
            .into_iter()
            .map(|(k, v)| {
                let keep = rng.random::<bool>();
                let value = if keep {
                    base.get(&k).cloned().unwrap_or(v)
                } else {
                    v
                };
                (k, value)
            })
            .collect();
    }
    space.draw(&mut rng)
}

#[derive(Default)]
struct Slot {
    /// Rung values per epoch (inf for a diverged epoch).
    curve: Vec<f64>,
    /// The lr of each epoch.
    lr: Vec<f64>,
    /// The untrained validation loss.
    v0: f64,
    /// The trial's budget in epochs.
    budget: usize,
    finished: bool,
    record: Option<TrialRecord>,
}

struct State {
    slots: Vec<Slot>,
    /// Trials written to results.jsonl (a prefix).
    written: usize,
    spent: usize,
    /// The budget is spent by the written prefix: later trials are dropped.
    over: bool,
    file: std::fs::File,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the trials recorded in `path` (none if it does not exist; a `.gz` file is read gzipped);
/// a torn last line (a kill in mid-write) is dropped, anything else unreadable is an error naming
/// the line.
pub fn read_trials(path: &Path) -> Result<Vec<TrialRecord>, Error> {
    let read = |path: &Path| -> std::io::Result<String> {
        if path.extension().is_some_and(|e| e == "gz") {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(path)?),
                &mut text,
            )?;
            Ok(text)
        } else {
            std::fs::read_to_string(path)
        }
    };
    let text = match read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.into(),
                error: e,
            });
        }
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<TrialRecord>(line) {
            Ok(r) => out.push(r),
            Err(_) if n + 1 == lines.len() && !complete => break,
            Err(e) => {
                return Err(Error::Results {
                    path: path.into(),
                    reason: format!("line {}: {e}", n + 1),
                });
            }
        }
    }
    for (i, r) in out.iter().enumerate() {
        if r.trial != i {
            return Err(Error::Results {
                path: path.into(),
                reason: format!(
                    "line {}: trial {} where trial {i} was expected",
                    i + 1,
                    r.trial
                ),
            });
        }
    }
    Ok(out)
}

fn write_all(path: &Path, records: &[TrialRecord]) -> Result<(), Error> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("a record serializes"));
        text.push('\n');
    }
    hyperctl_files::write_atomic(path, text.as_bytes()).map_err(|e| Error::Io {
        path: path.into(),
        error: std::io::Error::other(e.to_string()),
    })
}

/// Checks, before anything trains, what would fail in some trial: the space against the task (an
/// MLP for the model keys, batch sizes within the training rows) and the controller against
/// every optimizer the space can draw. [`run`] calls it first.
pub fn check(sweep: &Sweep, data: &Arc<Dataset>) -> Result<(), Error> {
    sweep.space.check_task(&sweep.task).map_err(Error::Space)?;
    let rows = ScheduleEnv::with_data(
        sweep.task.clone(),
        data.clone(),
        sweep.env.clone(),
        sweep.backend,
    )
    .map_err(|e| Error::Space(format!("the task does not build: {e}")))?
    .train_rows();
    if let Some(b) = sweep.space.largest("batch_size")
        && b as usize > rows
    {
        return Err(Error::Space(format!(
            "`batch_size` goes up to {b}, more than the task's {rows} training rows"
        )));
    }
    let (inner, _) = hyperctl_controllers::unguarded_text(&sweep.controller);
    let mut optimizers = sweep.space.words("optimizer");
    if optimizers.is_empty() {
        optimizers.push(sweep.task.optimizer.name().to_string());
    }
    for o in &optimizers {
        let kind = o.parse().map_err(Error::Space)?;
        hyperctl_controllers::check_optimizer(inner, kind)
            .map_err(|e| Error::Space(format!("optimizer `{o}`: {e}")))?;
    }
    Ok(())
}

/// The trials `out/results.jsonl` already holds for `sweep` (none for a new folder), checked: they
/// are this sweep's configurations, and within its budget and trial count (a sweep continues
/// with more of either, never with less). [`run`] resumes from them.
pub fn resumable(sweep: &Sweep, out: &Path) -> Result<Vec<TrialRecord>, Error> {
    let path = out.join("results.jsonl");
    let existing = read_trials(&path)?;
    for r in &existing {
        let expected = draw_config(&sweep.space, sweep.seed, r.trial, &sweep.prior);
        if r.config != expected {
            return Err(Error::Results {
                path: path.clone(),
                reason: format!(
                    "trial {} has another configuration than this sweep draws; use another --out",
                    r.trial
                ),
            });
        }
    }
    // A sweep continues with a larger budget or more trials (its first trials are the same), but
    // a folder that already holds more than this sweep would run is refused, not cut.
    if existing.len() >= 2 && existing[existing.len() - 2].epochs_spent >= sweep.budget {
        let before_last = existing[existing.len() - 2].epochs_spent;
        return Err(Error::Results {
            path: path.clone(),
            reason: format!(
                "holds {} trials, the last started after {before_last} epochs, so a {}-epoch budget would end the sweep before it; use a budget of at least {} or another --out",
                existing.len(),
                sweep.budget,
                before_last + 1
            ),
        });
    }
    if existing.len() > sweep.max_trials {
        return Err(Error::Results {
            path: path.clone(),
            reason: format!(
                "holds {} trials, more than --max-trials {}; use another --out",
                existing.len(),
                sweep.max_trials
            ),
        });
    }
    Ok(existing)
}

/// Runs (or resumes) `sweep` into `out/results.jsonl`; `on_trial` sees each trial as it is
/// written, in order. Returns every trial of the sweep.
pub fn run(
    sweep: &Sweep,
    data: Arc<Dataset>,
    out: &Path,
    on_trial: &(dyn Fn(&TrialRecord) + Sync),
) -> Result<Vec<TrialRecord>, Error> {
    check(sweep, &data)?;
    let path: PathBuf = out.join("results.jsonl");
    let existing = resumable(sweep, out)?;
    write_all(&path, &existing)?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::Io {
            path: path.clone(),
            error: e,
        })?;
    let spent: usize = existing.iter().map(|r| r.epochs).sum();
    let start = existing.len();
    let mut slots: Vec<Slot> = existing
        .iter()
        .map(|r| Slot {
            curve: rung_curve(&r.val_loss, r.diverged),
            lr: r.lr.clone(),
            v0: r.initial_val_loss,
            budget: r.budget_epochs,
            finished: true,
            record: Some(r.clone()),
        })
        .collect();
    slots.resize_with(sweep.max_trials.max(start), Slot::default);
    let shared = Shared {
        state: Mutex::new(State {
            slots,
            written: start,
            spent,
            over: spent >= sweep.budget,
            file,
        }),
        changed: Condvar::new(),
    };
    let rungs = sweep.method.rungs(sweep.task.epochs);
    let todo = sweep.max_trials.saturating_sub(start);
    hyperctl_pool::try_for_each(todo, sweep.jobs, |j| {
        run_trial(sweep, &data, start + j, &rungs, &shared, &path, on_trial)
    })?;
    let state = shared.lock();
    Ok(state
        .slots
        .iter()
        .take(state.written)
        .filter_map(|s| s.record.clone())
        .collect())
}

/// The values rungs compare: the validation loss of each epoch, inf where it diverged.
fn rung_curve(val_loss: &[Option<f64>], diverged: bool) -> Vec<f64> {
    let n = val_loss.len();
    val_loss
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) if !(diverged && i + 1 == n) => *v,
            _ => f64::INFINITY,
        })
        .collect()
}

/// [`trial`], and on an error the trial is marked ended and the sweep over, so that no other
/// trial waits for it at a rung.
fn run_trial(
    sweep: &Sweep,
    data: &Arc<Dataset>,
    i: usize,
    rungs: &[usize],
    shared: &Shared,
    path: &Path,
    on_trial: &(dyn Fn(&TrialRecord) + Sync),
) -> Result<(), Error> {
    let result = trial(sweep, data, i, rungs, shared, path, on_trial);
    if result.is_err() {
        let mut state = shared.lock();
        state.over = true;
        state.slots[i].finished = true;
        shared.changed.notify_all();
    }
    result
}

fn trial(
    sweep: &Sweep,
    data: &Arc<Dataset>,
    i: usize,
    rungs: &[usize],
    shared: &Shared,
    path: &Path,
    on_trial: &(dyn Fn(&TrialRecord) + Sync),
) -> Result<(), Error> {
    let finish = |record: Option<TrialRecord>| -> Result<(), Error> {
        let mut state = shared.lock();
        state.slots[i].finished = true;
        state.slots[i].record = record;
        let result = flush(&mut state, sweep.budget, path, on_trial);
        shared.changed.notify_all();
        result
    };
    if shared.lock().over {
        return finish(None);
    }
    let config = draw_config(&sweep.space, sweep.seed, i, &sweep.prior);
    let task = apply(&config, &sweep.task).map_err(|reason| Error::Trial { trial: i, reason })?;
    let seed = sweep.task.seed.wrapping_add(sweep.seed);
    let mut env =
        ScheduleEnv::with_data(task.clone(), data.clone(), sweep.env.clone(), sweep.backend)
            .map_err(|e| Error::Trial {
                trial: i,
                reason: e.to_string(),
            })?;
    let (inner, rollback) = hyperctl_controllers::unguarded_text(&sweep.controller);
    let mut controller = hyperctl_controllers::build(inner).map_err(|e| Error::Trial {
        trial: i,
        reason: e.to_string(),
    })?;
    // The untrained loss, for the predictor (the episode below starts from the same state).
    env.reset(Some(seed));
    let v0 = env.trainer().initial_val().loss;
    {
        let mut state = shared.lock();
        state.slots[i].v0 = v0;
        state.slots[i].budget = task.epochs;
    }
    let mut kept = Vec::<Option<f64>>::new();
    let mut abandoned = false;
    let result = run_schedule_while(&mut env, controller.as_mut(), seed, rollback, |record| {
        // A rolled-back epoch leaves the state of the one before (the untrained model's for
        // the first).
        let value = if record.rolled_back {
            kept.last().copied().unwrap_or(finite(v0))
        } else {
            finite(record.stats.val_loss)
        };
        kept.push(value);
        let epoch = kept.len();
        let own = if record.stats.diverged && !record.rolled_back {
            f64::INFINITY
        } else {
            value.unwrap_or(f64::INFINITY)
        };
        let mut state = shared.lock();
        state.slots[i].curve.push(own);
        state.slots[i].lr.push(record.stats.lr);
        shared.changed.notify_all();
        if state.over {
            abandoned = true;
            return false;
        }
        if !rungs.contains(&epoch) {
            return true;
        }
        // Wait until every earlier trial has passed this rung or ended.
        while !state.over
            && state.slots[..i]
                .iter()
                .any(|s| !s.finished && s.curve.len() < epoch)
        {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        if state.over {
            abandoned = true;
            return false;
        }
        let at_rung = state.slots[..=i].iter().filter(|s| s.curve.len() >= epoch);
        match (&sweep.method, &sweep.predictor) {
            (Method::Predicted { z, .. }, Some(p)) => {
                let predicted = |s: &Slot| {
                    p.predict(s.v0, &s.curve[..epoch], s.budget, &s.lr[..epoch])
                        .filter(|q| q.mean.is_finite())
                };
                let competing: Vec<f64> = at_rung
                    .map(|s| predicted(s).map_or(f64::INFINITY, |q| q.mean))
                    .collect();
                let optimistic =
                    predicted(&state.slots[i]).map_or(f64::INFINITY, |q| q.mean - z * q.std);
                sweep.method.keep(optimistic, &competing)
            }
            _ => {
                let competing: Vec<f64> = at_rung.map(|s| s.curve[epoch - 1]).collect();
                sweep.method.keep(own, &competing)
            }
        }
    });
    if abandoned {
        return finish(None);
    }
    let full = !result.stopped && !result.diverged;
    let final_val = if full {
        kept.last().copied().flatten()
    } else {
        None
    };
    let record = TrialRecord {
        trial: i,
        config,
        model: task.model.to_string(),
        batch_size: task.batch_size,
        weight_decay: task.weight_decay,
        optimizer: task.optimizer.name().into(),
        init_lr: task.init.lr,
        init_momentum: task.init.momentum,
        controller: sweep.controller.clone(),
        seed,
        initial_val_loss: result.initial_val.loss,
        epochs: result.intervals.len(),
        budget_epochs: task.epochs,
        stopped: result.stopped,
        diverged: result.diverged,
        val_loss: kept,
        lr: result.intervals.iter().map(|r| r.stats.lr).collect(),
        momentum: result.intervals.iter().map(|r| r.stats.momentum).collect(),
        final_val_loss: final_val,
        test_loss: if full { finite(result.test.loss) } else { None },
        test_metric: if full {
            finite(result.test.metric)
        } else {
            None
        },
        epochs_spent: 0,
        rollbacks: result.rollbacks,
        wall_secs: result.wall_secs,
        version: env!("CARGO_PKG_VERSION").into(),
        backend: sweep.backend.name().into(),
    };
    finish(Some(record))
}

/// Writes the finished trials that continue the written prefix, in order, while the budget lasts.
fn flush(
    state: &mut State,
    budget: usize,
    path: &Path,
    on_trial: &(dyn Fn(&TrialRecord) + Sync),
) -> Result<(), Error> {
    while state.written < state.slots.len() && state.slots[state.written].finished && !state.over {
        let w = state.written;
        let Some(record) = state.slots[w].record.as_mut() else {
            // Dropped because the budget was already spent when it ran.
            state.over = true;
            break;
        };
        state.spent += record.epochs;
        record.epochs_spent = state.spent;
        let mut line = serde_json::to_string(&*record).expect("a record serializes");
        line.push('\n');
        let record = record.clone();
        if let Err(e) = state
            .file
            .write_all(line.as_bytes())
            .and_then(|_| state.file.flush())
        {
            state.over = true;
            return Err(Error::Io {
                path: path.into(),
                error: e,
            });
        }
        state.written += 1;
        if state.spent >= budget {
            state.over = true;
        }
        on_trial(&record);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperctl_tasks::{DatasetSource, ModelSpec, TaskType};

    fn sweep(method: &str, budget: usize, jobs: usize) -> (Sweep, Arc<Dataset>) {
        let task = TaskSpec::new(
            DatasetSource::parse("gen:gauss-mix:n=240,d=4").unwrap(),
            TaskType::Classification,
            ModelSpec::parse("mlp:8x1").unwrap(),
            6,
            32,
            3,
        );
        let data = Arc::new(task.load().unwrap());
        let space = Space::parse(
            "width = { choice = [4, 16] }\nweight_decay = { log_uniform = [1e-6, 1e-1] }\nlr = { log_uniform = [1e-3, 1.0] }",
        )
        .unwrap();
        (
            Sweep {
                task,
                space,
                budget,
                max_trials: 100,
                method: Method::parse(method).unwrap(),
                predictor: None,
                prior: Vec::new(),
                controller: "warmup-cosine".into(),
                env: EnvConfig::defaults(),
                backend: Backend::Flex,
                seed: 11,
                jobs,
            },
            data,
        )
    }

    fn strip(mut trials: Vec<TrialRecord>) -> Vec<TrialRecord> {
        for t in &mut trials {
            t.wall_secs = 0.0;
        }
        trials
    }

    #[test]
    fn asha_rungs_are_min_epochs_times_powers_of_eta_below_the_budget() {
        assert_eq!(Method::parse("asha").unwrap().rungs(20), vec![1, 3, 9]);
        assert_eq!(
            Method::parse("asha:eta=2,min_epochs=2").unwrap().rungs(9),
            vec![2, 4, 8]
        );
        assert!(Method::parse("random").unwrap().rungs(20).is_empty());
        for bad in [
            "asha:eta=1",
            "asha:min_epochs=0",
            "asha:x=2",
            "hyperband",
            "asha:eta=two",
        ] {
            assert!(Method::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sweep_gives_the_same_trials_on_one_thread_and_on_three() {
        let dir1 = tempfile::tempdir().unwrap();
        let dir3 = tempfile::tempdir().unwrap();
        let (s1, data) = sweep("asha:eta=2", 40, 1);
        let one = run(&s1, data.clone(), dir1.path(), &|_| {}).unwrap();
        let (s3, _) = sweep("asha:eta=2", 40, 3);
        let three = run(&s3, data, dir3.path(), &|_| {}).unwrap();
        assert_eq!(strip(one.clone()), strip(three));
        // The budget: every trial but the last started with fewer than 40 epochs spent.
        let last = one.last().unwrap();
        assert!(last.epochs_spent >= 40);
        assert!(one[one.len() - 2].epochs_spent < 40);
        // ASHA stopped some trials at a rung and let the first one through.
        assert!(one.iter().any(|t| t.stopped), "no trial was stopped");
        assert!(!one[0].stopped);
        for t in one.iter().filter(|t| t.stopped) {
            assert!(
                [1, 2, 4].contains(&t.epochs),
                "stopped at epoch {}",
                t.epochs
            );
            assert!(t.test_loss.is_none());
        }
        for t in one.iter().filter(|t| t.completed()) {
            assert_eq!(t.epochs, 6);
            assert!(t.test_loss.is_some());
        }
    }

    #[test]
    fn random_search_trains_every_trial_to_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data) = sweep("random", 18, 2);
        let trials = run(&s, data, dir.path(), &|_| {}).unwrap();
        assert_eq!(trials.len(), 3);
        assert!(trials.iter().all(|t| t.epochs == 6 && !t.stopped));
        // Configurations differ between trials and lie in the space.
        assert_ne!(trials[0].config, trials[1].config);
        assert!(
            trials
                .iter()
                .all(|t| t.model == "mlp:4x1" || t.model == "mlp:16x1")
        );
        assert!(trials.iter().all(|t| (1e-3..=1.0).contains(&t.init_lr)));
    }

    #[test]
    fn a_killed_sweep_resumes_to_the_same_trials() {
        let full_dir = tempfile::tempdir().unwrap();
        let (s, data) = sweep("asha:eta=2", 30, 2);
        let full = run(&s, data.clone(), full_dir.path(), &|_| {}).unwrap();
        // A kill after three trials, in the middle of writing the fourth.
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(full_dir.path().join("results.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let torn = format!(
            "{}\n{}\n{}\n{}",
            lines[0],
            lines[1],
            lines[2],
            &lines[3][..40]
        );
        std::fs::write(dir.path().join("results.jsonl"), torn).unwrap();
        let seen = Mutex::new(Vec::new());
        let resumed = run(&s, data.clone(), dir.path(), &|t| {
            seen.lock().unwrap().push(t.trial)
        })
        .unwrap();
        assert_eq!(strip(resumed), strip(full.clone()));
        assert_eq!(
            seen.into_inner().unwrap()[0],
            3,
            "the recorded trials are not run again"
        );
        // Another sweep's results are refused.
        let (mut other, _) = sweep("asha:eta=2", 30, 2);
        other.seed = 12;
        let err = run(&other, data, dir.path(), &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("another configuration"), "{err}");
    }
}
