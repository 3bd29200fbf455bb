//! Meta-training: PPO across the tasks of a collection's training split, with the deterministic
//! policy evaluated on the eval split every few iterations, the best evaluation kept as the
//! policy, and a checkpoint after every iteration from which `--resume` continues exactly.
//!
//! # Output folder (`hyperctl meta-train --out DIR`)
//! | file | content |
//! |---|---|
//! | `config.json`, `weights.json` | the best-evaluated policy ([`hyperctl_controllers::policy`]) |
//! | `CARD.md` | collection, splits, budget, wall time, metrics, the exact commands |
//! | `checkpoint.bin` | the latest state ([`hyperctl_ppo::checkpoint`]) |
//! | `metrics.csv` | one row per iteration (PPO diagnostics, training returns, evaluations) |
//! | `eval.jsonl` | every evaluation with its per-task returns |
//! | `learning_curve.svg` | training and eval returns against environment steps |
//!
//! Every file is written atomically, the checkpoint first: it also holds the history and the best
//! policy, and every other file is rewritten from it (on resume too), so a kill at any moment
//! loses at most the iteration in progress and never leaves the folder inconsistent.
//!
//! # Architecture invariants
//! - Results depend only on the config (and the code): per-environment seeds, deterministic
//!   gathering, evaluation through the same `run_schedule` as every other controller.
//! - The eval split is never trained on; the test split is never looked at.

#![warn(missing_docs)]

pub mod config;
pub mod eval;
pub mod report;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyperctl_collections::CollectionTask;
use hyperctl_env_core::{BoxSpace, Obs, Step, ThreadedEnvs, VecEnv};
use hyperctl_ppo::{CheckpointError, IterationMetrics, Policy, Ppo, decode, encode};
use hyperctl_schedule_env::{CycleSnapshot, EnvTiming, TaskCycleEnv, TaskPool};
use hyperctl_tasks::Backend;
use serde::{Deserialize, Serialize};

/// A checkpoint's sections by name.
type Sections = std::collections::BTreeMap<String, Vec<u8>>;

pub use config::{MetaTrainConfig, Resolved, Select};
pub use eval::EvalRecord;
pub use worker::WorkerProgram;

/// Errors of meta-training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is invalid.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tasks could not be loaded or set up.
    #[error("{0}")]
    Tasks(String),
    /// The checkpoint could not be used.
    #[error("{}: {error}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why (in the message, not chained, so it prints once).
        error: CheckpointError,
    },
    /// The output folder is not in the state the command needs.
    #[error("{0}")]
    Output(String),
    /// Writing a file failed.
    #[error(transparent)]
    Io(#[from] hyperctl_files::Error),
    /// The worker processes could not do the run's work.
    #[error("worker processes: {0}")]
    Workers(String),
}

/// Where a result came from: recorded in the card and the policy's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// hyperctl version.
    pub version: String,
    /// git commit of the build.
    pub git_commit: String,
    /// The exact command line.
    pub command: Vec<String>,
    /// Unix time of the start of this invocation.
    pub started_unix: u64,
}

/// One iteration's row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRow {
    /// 1-based iteration.
    pub iteration: usize,
    /// Environment steps so far.
    pub global_step: usize,
    /// Wall-clock seconds of training so far (over all invocations, evaluations included).
    pub wall_secs: f64,
    /// Adam learning rate of the iteration.
    pub learning_rate: f64,
    /// Episodes finished in the iteration.
    pub episodes: usize,
    /// Their mean return (None when none finished).
    pub mean_return: Option<f64>,
    /// How many of them diverged.
    pub diverged: usize,
    /// `losses/value_loss`.
    pub value_loss: f64,
    /// `losses/policy_loss`.
    pub policy_loss: f64,
    /// `losses/entropy`.
    pub entropy: f64,
    /// `losses/approx_kl`.
    pub approx_kl: f64,
    /// `losses/clipfrac`.
    pub clipfrac: f64,
    /// `losses/explained_variance` (None when undefined).
    pub explained_variance: Option<f64>,
    /// Environment steps per second in the iteration.
    pub sps: f64,
    /// Where the iteration's time went (absent in checkpoints written before it was recorded).
    #[serde(default)]
    pub timing: IterationTiming,
}

/// Where one iteration's wall time went, in seconds. `env_secs` and `train_secs` are summed over
/// the envs, which step in parallel: on one thread they are parts of `rollout_secs`. A field
/// missing from an older checkpoint reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IterationTiming {
    /// The rollout: policy forward passes, env steps and resets.
    pub rollout_secs: f64,
    /// GAE and the PPO minibatch updates.
    pub update_secs: f64,
    /// The meta-val evaluation (0 in iterations without one).
    pub eval_secs: f64,
    /// Inside the envs' `step` and `reset` (summed over envs).
    pub env_secs: f64,
    /// Of that, inside the inner training: epochs with their validation pass (summed over envs).
    pub train_secs: f64,
    /// Of that, in env resets: starting episodes (data, model, first validation pass; summed).
    pub reset_secs: f64,
    /// In worker processes: the rollout time workers spent waiting for the busiest one, each
    /// step (sum over steps and resets of the busiest worker's env time minus the workers' mean).
    pub straggler_secs: f64,
}

/// The best evaluation so far and its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Its evaluation.
    pub eval: EvalRecord,
    /// The policy evaluated.
    pub policy: Policy,
}

/// Everything besides the learner that a checkpoint holds (section `meta.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    /// The config the run was started with.
    pub config: MetaTrainConfig,
    /// Per-iteration rows.
    pub rows: Vec<IterationRow>,
    /// Every evaluation, iteration 0 (the untrained policy) first.
    pub evals: Vec<EvalRecord>,
    /// The best evaluation.
    pub best: Option<Best>,
    /// Training tasks and eval tasks (ids).
    pub tasks: (Vec<String>, Vec<String>),
    /// Each invocation (the first started the run; later ones resumed it).
    pub invocations: Vec<Provenance>,
    /// Backend name.
    pub backend: String,
    /// Whether the run has finished its budget.
    pub finished: bool,
    /// The inner optimizer of every task (the policy's momentum action means its momentum or
    /// beta1; runs from before AdamW existed were SGD).
    #[serde(default)]
    pub optimizer: hyperctl_tasks::OptimizerKind,
}

/// How a run is invoked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from `OUT/checkpoint.bin`.
    pub resume: bool,
    /// Stop after this many iterations of this invocation (resume later).
    pub stop_after: Option<usize>,
    /// Compute backend of the inner training runs.
    pub backend: Backend,
    /// Compute backend of the policy's PPO updates (the caller picks it; the binary uses flex:
    /// the policy network is tiny).
    pub ppo_backend: Backend,
    /// Threads for evaluation episodes (results do not depend on it).
    pub eval_threads: usize,
    /// Run the envs and evaluations in worker processes instead of threads of this one (results
    /// do not depend on it, nor on their number).
    pub workers: Option<WorkerProgram>,
    /// This invocation's provenance.
    pub provenance: Provenance,
}

/// What the caller hears after each iteration (for progress display).
#[derive(Debug)]
pub struct Progress<'a> {
    /// Iterations done.
    pub iteration: usize,
    /// Iterations in all.
    pub num_iterations: usize,
    /// The iteration's row.
    pub row: &'a IterationRow,
    /// Its evaluation, if one ran.
    pub eval: Option<&'a EvalRecord>,
    /// The best evaluation so far.
    pub best: Option<&'a EvalRecord>,
}

/// The checkpoint file in an output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

fn pick(
    tasks: Vec<&CollectionTask>,
    n: Option<usize>,
    split: &str,
    resolved: &Resolved,
) -> Result<Vec<CollectionTask>, Error> {
    if tasks.is_empty() {
        return Err(Error::Config {
            path: resolved.path.clone(),
            reason: format!(
                "collection `{}` has no tasks in split `{split}`",
                resolved.collection
            ),
        });
    }
    Ok(hyperctl_collections::evenly_spaced(tasks.len(), n)
        .into_iter()
        .map(|i| tasks[i].clone())
        .collect())
}

/// Loads the collection and builds the training and eval task pools.
fn pools(resolved: &Resolved, backend: Backend) -> Result<(Arc<TaskPool>, TaskPool), Error> {
    let c = &resolved.config;
    let collection = hyperctl_collections::load(&resolved.collection, resolved.data_dir.as_deref())
        .map_err(|p| {
            Error::Tasks(format!(
                "collection `{}` has {} problem(s):\n{p}",
                resolved.collection,
                p.0.len()
            ))
        })?;
    let train = pick(
        collection.split(Some(&c.split)).collect(),
        c.max_tasks,
        &c.split,
        resolved,
    )?;
    let evals = pick(
        collection.split(Some(&c.eval_split)).collect(),
        c.eval_max_tasks,
        &c.eval_split,
        resolved,
    )?;
    // One policy drives one optimizer: its momentum action is SGD's momentum or AdamW's beta1.
    let optimizers: std::collections::BTreeSet<_> = train
        .iter()
        .chain(&evals)
        .map(|t| t.task.optimizer)
        .collect();
    if optimizers.len() > 1 {
        return Err(Error::Tasks(format!(
            "splits `{}` and `{}` mix inner optimizers ({}); a policy is trained for one: \
             select tasks of one optimizer",
            c.split,
            c.eval_split,
            optimizers
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let pool = |tasks: Vec<CollectionTask>, split: &str| {
        TaskPool::new(
            tasks.into_iter().map(|t| t.task).collect(),
            c.env.clone(),
            backend,
        )
        .map_err(|e| Error::Tasks(format!("split `{split}`: {e}")))
    };
    // Only the training episodes draw their starts; evaluation keeps each task's own, so that
    // selection scores every checkpoint on the same cells.
    let train = pool(train, &c.split)?
        .with_starts(c.episode_starts.clone())
        .map_err(|e| Error::Tasks(format!("split `{}`: {e}", c.split)))?;
    Ok((Arc::new(train), pool(evals, &c.eval_split)?))
}

fn row_from(
    m: &IterationMetrics,
    wall_secs: f64,
    crash_penalty: f64,
    timing: IterationTiming,
) -> IterationRow {
    let n = m.episodic_returns.len();
    let finite = |v: f64| v.is_finite().then_some(v);
    IterationRow {
        iteration: m.iteration,
        global_step: m.global_step,
        wall_secs,
        learning_rate: m.learning_rate,
        episodes: n,
        mean_return: (n > 0).then(|| m.episodic_returns.iter().sum::<f64>() / n as f64),
        diverged: m
            .episodic_returns
            .iter()
            .filter(|&&r| r <= -crash_penalty + 1e-9)
            .count(),
        value_loss: m.value_loss,
        policy_loss: m.policy_loss,
        entropy: m.entropy,
        approx_kl: m.approx_kl,
        clipfrac: m.clipfrac,
        explained_variance: finite(m.explained_variance),
        sps: m.sps,
        timing,
    }
}

/// Runs (or resumes) meta-training into `out`. Returns the final state.
pub fn run(
    resolved: &Resolved,
    out: &Path,
    options: &RunOptions,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<MetaState, Error> {
    let c = &resolved.config;
    let ckpt_path = out.join(CHECKPOINT_FILE);
    let ckpt_err = |error: CheckpointError| Error::Checkpoint {
        path: ckpt_path.clone(),
        error,
    };
    // Read the checkpoint before any expensive setup, so a bad one fails fast.
    let resumed = read_checkpoint(resolved, out, options)?;

    let (pool, eval_pool) = pools(resolved, options.backend)?;
    let task_ids = (
        pool.tasks()
            .iter()
            .map(|t| t.id.clone())
            .collect::<Vec<_>>(),
        eval_pool
            .tasks()
            .iter()
            .map(|t| t.id.clone())
            .collect::<Vec<_>>(),
    );
    let threads = options.eval_threads.max(1);
    let mut envs = match &options.workers {
        None => Envs::Local {
            envs: (0..c.num_envs)
                .map(|_| TaskCycleEnv::from_pool(pool.clone()))
                .collect(),
            threads: if resolved.ppo.parallel_envs {
                c.num_envs
            } else {
                1
            },
        },
        Some(program) => Envs::Remote(Box::new(
            worker::RemoteEnvs::start(
                program,
                worker::Init {
                    protocol: worker::PROTOCOL,
                    version: env!("CARGO_PKG_VERSION").into(),
                    collection: resolved.collection.clone(),
                    data_dir: resolved.data_dir.clone(),
                    train: task_ids.0.clone(),
                    eval: task_ids.1.clone(),
                    env: c.env.clone(),
                    starts: c.episode_starts.clone(),
                    backend: options.backend,
                },
                pool.clone(),
                &eval_pool,
                c.num_envs,
            )
            .map_err(Error::Workers)?,
        )),
    };
    let device = options
        .ppo_backend
        .device()
        .map_err(|e| Error::Tasks(e.to_string()))?;

    let (mut ppo, mut state) = match resumed {
        Some((sections, state)) => resume(
            resolved, options, &ckpt_path, &sections, state, task_ids, &mut envs, &device,
        )?,
        None => start(
            resolved, options, &eval_pool, threads, task_ids, &mut envs, &device,
        )?,
    };
    let num_iterations = ppo.num_iterations(c.num_envs);
    let save = |ppo: &Ppo, envs: &Envs, state: &MetaState| -> Result<(), Error> {
        let mut sections = ppo
            .checkpoint_sections_from(&envs.snapshots())
            .map_err(ckpt_err)?;
        sections.push((
            "meta.json".into(),
            serde_json::to_vec(state).expect("the meta state serializes"),
        ));
        hyperctl_files::write_atomic(&ckpt_path, &encode(&sections))?;
        report::write_outputs(out, resolved, state, num_iterations)
    };
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", out.display())))?;
    save(&ppo, &envs, &state)?;

    let mut done_here = 0;
    let mut wall = state.rows.last().map_or(0.0, |r| r.wall_secs);
    while ppo.iteration < num_iterations && options.stop_after.is_none_or(|k| done_here < k) {
        let start = std::time::Instant::now();
        let metrics = ppo.iterate_segments(&mut envs).map_err(Error::Workers)?;
        let mut timing = timing_of(&metrics, &mut envs);
        let iteration = ppo.iteration;
        let eval_start = std::time::Instant::now();
        if iteration % c.eval_interval == 0 || iteration == num_iterations {
            // Export once: the evaluated policy is the one kept when it is the best.
            let policy = ppo.policy();
            let e = envs.evaluate(
                &policy,
                &eval_pool,
                c.eval_seeds,
                threads,
                iteration,
                ppo.global_step,
            )?;
            if state
                .best
                .as_ref()
                .is_none_or(|b| c.select.better(&e, &b.eval))
            {
                state.best = Some(Best {
                    eval: e.clone(),
                    policy,
                });
            }
            state.evals.push(e);
            timing.eval_secs = eval_start.elapsed().as_secs_f64();
        }
        let eval = state
            .evals
            .last()
            .filter(|e| e.iteration == iteration)
            .cloned();
        wall += start.elapsed().as_secs_f64();
        state
            .rows
            .push(row_from(&metrics, wall, c.env.crash_penalty, timing));
        state.finished = ppo.iteration >= num_iterations;
        save(&ppo, &envs, &state)?;
        done_here += 1;
        on_progress(&Progress {
            iteration,
            num_iterations,
            row: state.rows.last().expect("a row was just pushed"),
            eval: eval.as_ref(),
            best: state.best.as_ref().map(|b| &b.eval),
        });
    }
    Ok(state)
}

/// The checkpoint's sections and meta state with `--resume` (checked against this config and
/// backend); `None` for a new run (refused when the folder already holds one).
fn read_checkpoint(
    resolved: &Resolved,
    out: &Path,
    options: &RunOptions,
) -> Result<Option<(Sections, MetaState)>, Error> {
    let c = &resolved.config;
    let ckpt_path = out.join(CHECKPOINT_FILE);
    let ckpt_err = |error: CheckpointError| Error::Checkpoint {
        path: ckpt_path.clone(),
        error,
    };
    let sections = if options.resume {
        let bytes = std::fs::read(&ckpt_path).map_err(|e| {
            Error::Output(format!(
                "--resume: cannot read {}: {e} (start without --resume to begin a new run)",
                ckpt_path.display()
            ))
        })?;
        Some(decode(&bytes).map_err(ckpt_err)?)
    } else {
        if ckpt_path.exists() {
            return Err(Error::Output(format!(
                "{} already holds a meta-training run ({CHECKPOINT_FILE}); pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }
        None
    };
    let previous: Option<MetaState> = match &sections {
        Some(s) => {
            let state: MetaState = serde_json::from_slice(
                s.get("meta.json")
                    .ok_or_else(|| ckpt_err(CheckpointError::Missing("meta.json".into())))?,
            )
            .map_err(|e| {
                ckpt_err(CheckpointError::Section {
                    section: "meta.json".into(),
                    reason: e.to_string(),
                })
            })?;
            if &state.config != c {
                return Err(ckpt_err(CheckpointError::Mismatch(format!(
                    "{} differs from the config the run was started with; resume with that config, or start a new run in another folder",
                    resolved.path.display()
                ))));
            }
            if state.backend != options.backend.name() {
                return Err(ckpt_err(CheckpointError::Mismatch(format!(
                    "the run used backend {}, this invocation {}",
                    state.backend,
                    options.backend.name()
                ))));
            }
            Some(state)
        }
        None => None,
    };

    Ok(sections.zip(previous))
}

/// A new run: PPO from its seed, and iteration 0's evaluation of the untrained policy.
fn start(
    resolved: &Resolved,
    options: &RunOptions,
    eval_pool: &TaskPool,
    threads: usize,
    task_ids: (Vec<String>, Vec<String>),
    envs: &mut Envs,
    device: &burn::tensor::Device,
) -> Result<(Ppo, MetaState), Error> {
    let c = &resolved.config;
    let ppo = Ppo::new_vec(resolved.ppo.clone(), envs, device).map_err(Error::Workers)?;
    // Iteration 0: the untrained policy (mean action ≈ 0: the task's start kept).
    let policy = ppo.policy();
    let eval = envs.evaluate(&policy, eval_pool, c.eval_seeds, threads, 0, 0)?;
    let state = MetaState {
        config: c.clone(),
        rows: Vec::new(),
        best: Some(Best {
            eval: eval.clone(),
            policy,
        }),
        evals: vec![eval],
        tasks: task_ids,
        invocations: vec![options.provenance.clone()],
        backend: options.backend.name().into(),
        finished: false,
        optimizer: eval_pool
            .tasks()
            .first()
            .map(|t| t.optimizer)
            .unwrap_or_default(),
    };
    Ok((ppo, state))
}

/// A resumed run: PPO, the envs' streams and the meta state exactly as checkpointed (the
/// collection's tasks must not have changed).
#[allow(clippy::too_many_arguments)]
fn resume(
    resolved: &Resolved,
    options: &RunOptions,
    ckpt_path: &Path,
    sections: &Sections,
    mut state: MetaState,
    task_ids: (Vec<String>, Vec<String>),
    envs: &mut Envs,
    device: &burn::tensor::Device,
) -> Result<(Ppo, MetaState), Error> {
    let ckpt_err = |error: CheckpointError| Error::Checkpoint {
        path: ckpt_path.into(),
        error,
    };
    if state.tasks != task_ids {
        return Err(ckpt_err(CheckpointError::Mismatch(
            "the collection's tasks changed since the run started".into(),
        )));
    }
    let spaces = (envs.observation_space().dim(), envs.action_space().dim());
    let ppo = Ppo::resume_from(
        &resolved.ppo,
        sections,
        envs.num_envs(),
        spaces,
        device,
        |snapshots| envs.restore(snapshots),
    )
    .map_err(ckpt_err)?;
    state.invocations.push(options.provenance.clone());
    tracing::info!(
        iteration = ppo.iteration,
        "resumed from {}",
        ckpt_path.display()
    );
    Ok((ppo, state))
}

/// Where one iteration's time went: the PPO phases, and (summed over the envs) env steps, inner
/// training and episode starts.
fn timing_of(metrics: &IterationMetrics, envs: &mut Envs) -> IterationTiming {
    let t = envs.take_timing();
    IterationTiming {
        rollout_secs: metrics.rollout_secs,
        update_secs: metrics.update_secs,
        env_secs: t.env_secs,
        train_secs: t.train_secs,
        reset_secs: t.reset_secs,
        straggler_secs: match envs {
            Envs::Remote(remote) => remote.take_straggler_secs(),
            Envs::Local { .. } => 0.0,
        },
        ..IterationTiming::default()
    }
}

/// The run's envs: threads of this process, or worker processes. Both give the same results.
enum Envs {
    Local {
        envs: Vec<TaskCycleEnv>,
        threads: usize,
    },
    Remote(Box<worker::RemoteEnvs>),
}

impl Envs {
    fn snapshots(&self) -> Vec<CycleSnapshot> {
        use hyperctl_env_core::Resumable;
        match self {
            Envs::Local { envs, .. } => envs.iter().map(Resumable::snapshot).collect(),
            Envs::Remote(remote) => remote.snapshots(),
        }
    }

    fn restore(&mut self, snapshots: Vec<CycleSnapshot>) -> Result<Vec<Obs>, CheckpointError> {
        use hyperctl_env_core::Resumable;
        match self {
            Envs::Local { envs, .. } => envs
                .iter_mut()
                .zip(snapshots)
                .enumerate()
                .map(|(index, (env, snap))| {
                    env.restore(snap)
                        .map_err(|reason| CheckpointError::Env { index, reason })
                })
                .collect(),
            Envs::Remote(remote) => {
                remote
                    .restore(snapshots)
                    .map_err(|reason| CheckpointError::Env {
                        index: 0,
                        reason: format!("in the worker processes: {reason}"),
                    })
            }
        }
    }

    fn take_timing(&mut self) -> EnvTiming {
        match self {
            Envs::Local { envs, .. } => {
                let mut sum = EnvTiming::default();
                for env in envs {
                    let t = env.take_timing();
                    sum.env_secs += t.env_secs;
                    sum.train_secs += t.train_secs;
                    sum.reset_secs += t.reset_secs;
                }
                sum
            }
            Envs::Remote(remote) => remote.take_timing(),
        }
    }

    /// The meta-val evaluation of `policy` (threads here, or the workers).
    fn evaluate(
        &mut self,
        policy: &Policy,
        eval_pool: &TaskPool,
        seeds: usize,
        threads: usize,
        iteration: usize,
        global_step: usize,
    ) -> Result<EvalRecord, Error> {
        match self {
            Envs::Local { .. } => Ok(eval::evaluate(
                policy,
                eval_pool,
                seeds,
                threads,
                iteration,
                global_step,
            )),
            Envs::Remote(remote) => {
                let start = std::time::Instant::now();
                let episodes = remote.evaluate(policy, seeds).map_err(Error::Workers)?;
                Ok(eval::summarize(
                    &episodes,
                    seeds,
                    iteration,
                    global_step,
                    start,
                ))
            }
        }
    }
}

impl hyperctl_ppo::SegmentEnv for Envs {
    fn run_segments(
        &mut self,
        policy: &Policy,
        obs: &[Vec<f32>],
        noise: &hyperctl_ppo::SegmentNoise,
    ) -> Result<Vec<Vec<hyperctl_ppo::SegmentStep>>, String> {
        match self {
            Envs::Local { envs, threads } => {
                ThreadedEnvs::new(envs, *threads).run_segments(policy, obs, noise)
            }
            Envs::Remote(remote) => remote.run_segments(policy, obs, noise),
        }
    }
}

impl VecEnv for Envs {
    fn num_envs(&self) -> usize {
        match self {
            Envs::Local { envs, .. } => envs.len(),
            Envs::Remote(remote) => remote.num_envs(),
        }
    }

    fn observation_space(&self) -> &BoxSpace {
        use hyperctl_env_core::Env;
        match self {
            Envs::Local { envs, .. } => envs[0].observation_space(),
            Envs::Remote(remote) => remote.observation_space(),
        }
    }

    fn action_space(&self) -> &BoxSpace {
        use hyperctl_env_core::Env;
        match self {
            Envs::Local { envs, .. } => envs[0].action_space(),
            Envs::Remote(remote) => remote.action_space(),
        }
    }

    fn reset_each(&mut self, seeds: &[u64]) -> Result<Vec<Obs>, String> {
        match self {
            Envs::Local { envs, threads } => ThreadedEnvs::new(envs, *threads).reset_each(seeds),
            Envs::Remote(remote) => remote.reset_each(seeds),
        }
    }

    fn step_each(&mut self, actions: &[Vec<f32>]) -> Result<Vec<(Step, Option<Obs>)>, String> {
        match self {
            Envs::Local { envs, threads } => ThreadedEnvs::new(envs, *threads).step_each(actions),
            Envs::Remote(remote) => remote.step_each(actions),
        }
    }
}
