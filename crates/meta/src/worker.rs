//! `meta-train --workers N`: the environments in N worker processes (`hyperctl worker`), the
//! learner (PPO, evaluation bookkeeping, checkpoints) in this one.
//!
//! The learner keeps the algorithm exactly as in-process: it samples every action itself (one
//! random stream), sends each worker the actions of the envs it holds, one request per worker
//! per step, and gathers the answers by env index; a worker only trains. So a run gives the same
//! policy, bit for bit, for any number of workers and any timing, and the same as `--workers 0`
//! (threads in this process).
//!
//! **Placement by cost.** Envs move between workers only at episode boundaries, where an env is
//! its cycle state alone ([`Handoff`], a few hundred bytes, nothing to replay): a worker whose env
//! ended an episode hands it back, and the learner starts the next episode on the worker with the
//! least estimated load (minibatch steps × parameters of its envs' current tasks per decision),
//! the costliest episodes placed first. One MNIST CNN thus gets a worker to itself while the
//! tabular MLPs share the others, instead of every step waiting for the worker holding it and
//! three others.
//!
//! **A lost worker** (killed, crashed, a torn answer) is replaced by a fresh process, which gets
//! the run's set-up again and the lost envs restored from the learner's own record of each env
//! (its episode's start and the actions sent since: the checkpoint's snapshot format, replayed
//! deterministically); the round is then sent again. The final policy is the one an undisturbed
//! run gives. A worker lost [`MAX_RESTARTS`] times in one run stops it with the reason.
//!
//! **Protocol** (one JSON object per line, tagged `"meta"`): `init` (protocol, hyperctl version,
//! collection, task ids, env settings, backend: a worker of another protocol or version
//! refuses), `start` (episodes from handoffs), `restore` (envs from snapshots), `step` (actions;
//! an env whose episode ends comes back as its handoff and leaves the worker), `eval` (one
//! meta-val episode of a policy). Each answer is `{"ok": …}` or `{"error": "…"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyperctl_env_core::{BoxSpace, Obs, Step, VecEnv};
use hyperctl_pool::process::ProcessPool;
use hyperctl_ppo::Policy;
use hyperctl_schedule_env::{CycleSnapshot, EnvConfig, EnvTiming, Handoff, TaskCycleEnv, TaskPool};
use hyperctl_tasks::Backend;
use serde::{Deserialize, Serialize};

/// The protocol's version.
pub const PROTOCOL: u32 = 1;

/// How often one worker may be replaced in one invocation before the run stops.
pub const MAX_RESTARTS: usize = 3;

/// Where the workers come from.
#[derive(Debug, Clone)]
pub enum WorkerProgram {
    /// Child processes of the learner (the binary passes itself and `worker`).
    Spawn {
        /// Worker processes (at least 1).
        count: usize,
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Workers anywhere that connect to `listener` with `token` (`hyperctl worker --connect`);
    /// a lost one is replaced by the next to connect.
    Listen {
        /// Workers to wait for.
        count: usize,
        /// The learner's listening socket.
        listener: Arc<std::net::TcpListener>,
        /// The run's token.
        token: String,
        /// How long to wait for each worker.
        wait: std::time::Duration,
    },
}

impl WorkerProgram {
    /// Starts (or waits for) the workers.
    pub fn pool(&self) -> Result<ProcessPool, String> {
        match self {
            WorkerProgram::Spawn {
                count,
                program,
                args,
            } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                ProcessPool::spawn(*count, program, &args).map_err(|e| {
                    format!(
                        "cannot start {count} worker processes ({}): {e}",
                        program.display()
                    )
                })
            }
            WorkerProgram::Listen {
                count,
                listener,
                token,
                wait,
            } => {
                let listener = listener
                    .try_clone()
                    .map_err(|e| format!("the listening socket: {e}"))?;
                ProcessPool::listen(*count, listener, token, *wait).map_err(|e| e.to_string())
            }
        }
    }
}

/// The run's set-up, sent to every worker first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Init {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The learner's hyperctl version.
    pub version: String,
    /// The collection (a path or an embedded name).
    pub collection: String,
    /// Its data root.
    pub data_dir: Option<PathBuf>,
    /// Training tasks by id, in pool order.
    pub train: Vec<String>,
    /// Eval tasks by id, in pool order.
    pub eval: Vec<String>,
    /// Env settings.
    pub env: EnvConfig,
    /// Backend of the inner training.
    pub backend: Backend,
}

/// A request line: `{"meta": {"<kind>": …}}` (the key tells `hyperctl worker` it is
/// meta-train's; externally tagged, so the random generators' `u128` words pass through).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The request.
    pub meta: Request,
}

/// A request to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The run's set-up (first, and after every respawn).
    Init(Init),
    /// Start these envs' next episodes.
    Start {
        /// `(env index, handoff)`.
        envs: Vec<(usize, Handoff)>,
    },
    /// Bring these envs back from snapshots (replaying their episodes so far).
    Restore {
        /// `(env index, snapshot)`.
        envs: Vec<(usize, CycleSnapshot)>,
    },
    /// Step these envs.
    Step {
        /// `(env index, action)`.
        envs: Vec<(usize, Vec<f32>)>,
    },
    /// Run these envs' segments (`meta-train` with `rollout = "segments"`).
    Segment {
        /// The iteration's policy (its normalizer frozen).
        policy: Policy,
        /// `(env index, its observation now, its noise: num_steps × act_dim)`.
        envs: Vec<(usize, Obs, Vec<f32>)>,
    },
    /// One evaluation episode.
    Eval {
        /// Eval task index.
        task: usize,
        /// Episode `s` of the task (its seed: the task's seed + s).
        s: usize,
        /// The policy.
        policy: Policy,
    },
}

/// One env's observation after a start or restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    /// The observation.
    pub obs: Obs,
    /// Time spent, for the run's time breakdown.
    pub timing: EnvTiming,
}

/// One env's step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stepped {
    /// The observation after the step.
    pub obs: Obs,
    /// The reward.
    pub reward: f64,
    /// Diverged.
    pub terminated: bool,
    /// Out of budget.
    pub truncated: bool,
    /// Present when the episode ended: the env's cycle state (the env left the worker).
    pub next: Option<Handoff>,
    /// Time spent.
    pub timing: EnvTiming,
}

/// One decision of a segment on a worker: the action, the step, the new episode's first
/// observation when one ended.
pub type SegmentStepped = (Vec<f32>, Stepped, Option<Obs>);

/// A worker's reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Set up.
    Ready,
    /// Started or restored envs, in request order.
    Started(Vec<Started>),
    /// Stepped envs, in request order.
    Stepped(Vec<Stepped>),
    /// Each env's segment, in request order: `(action, step)` per decision; a step that ended
    /// an episode carries the cycle's handoff, and the next step's observation is then the new
    /// episode's first (the worker reset the env itself).
    Segments(Vec<Vec<SegmentStepped>>),
    /// An evaluation episode's return and whether it diverged.
    Episode(f64, bool),
}

/// A worker's answer line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Done.
    Ok(Reply),
    /// Why not.
    Error(String),
}

/// A worker's state between requests.
#[derive(Default)]
pub struct Server {
    pools: Option<(Arc<TaskPool>, TaskPool)>,
    envs: HashMap<usize, TaskCycleEnv>,
}

impl Server {
    /// Answers one request line (one answer line, without its newline).
    pub fn handle_line(&mut self, line: &str) -> String {
        let answer = match serde_json::from_str::<Envelope>(line) {
            Ok(Envelope { meta: request }) => match self.handle(request) {
                Ok(reply) => Answer::Ok(reply),
                Err(e) => Answer::Error(format!("worker: {e}")),
            },
            Err(e) => Answer::Error(format!("worker: not a meta-train request ({e})")),
        };
        serde_json::to_string(&answer).expect("an answer serializes")
    }

    fn pools(&self) -> Result<&(Arc<TaskPool>, TaskPool), String> {
        self.pools
            .as_ref()
            .ok_or_else(|| "the first request must be `init`".to_string())
    }

    fn handle(&mut self, request: Request) -> Result<Reply, String> {
        match request {
            Request::Init(init) => {
                self.pools = Some(init_pools(&init)?);
                self.envs.clear();
                Ok(Reply::Ready)
            }
            Request::Start { envs } => self.install(envs, TaskCycleEnv::start_from),
            Request::Restore { envs } => self.install(envs, |pool, snapshot| {
                use hyperctl_env_core::Resumable;
                let mut env = TaskCycleEnv::from_pool(pool);
                let obs = env.restore(snapshot)?;
                Ok((env, obs))
            }),
            Request::Step { envs } => {
                use hyperctl_env_core::Env;
                let mut out = Vec::with_capacity(envs.len());
                for (i, action) in envs {
                    let env = self
                        .envs
                        .get_mut(&i)
                        .ok_or_else(|| format!("env {i} is not on this worker"))?;
                    if action.len() != env.action_space().dim() {
                        return Err(format!("env {i}: the action has {} values", action.len()));
                    }
                    let step = env.step(&action);
                    let next = step.done().then(|| env.handoff());
                    out.push(Stepped {
                        obs: step.obs,
                        reward: step.reward,
                        terminated: step.terminated,
                        truncated: step.truncated,
                        next,
                        timing: env.take_timing(),
                    });
                    if step.terminated || step.truncated {
                        self.envs.remove(&i);
                    }
                }
                Ok(Reply::Stepped(out))
            }
            Request::Segment { policy, envs } => {
                policy.validate()?;
                let mut out = Vec::with_capacity(envs.len());
                for (i, obs, eps) in envs {
                    let env = self
                        .envs
                        .get_mut(&i)
                        .ok_or_else(|| format!("env {i} is not on this worker"))?;
                    out.push(run_segment_here(env, &policy, &obs, &eps));
                }
                Ok(Reply::Segments(out))
            }
            Request::Eval { task, s, policy } => {
                let eval = &self.pools()?.1;
                if task >= eval.tasks().len() {
                    return Err(format!("eval task {task} of {}", eval.tasks().len()));
                }
                let (ret, diverged) = crate::eval::episode(&policy, eval, task, s);
                Ok(Reply::Episode(ret, diverged))
            }
        }
    }
}

impl Server {
    /// Builds each `(index, state)` env with `make` over the training pool and keeps it, answering
    /// each one's first observation and time (`start` and `restore`).
    fn install<T>(
        &mut self,
        envs: Vec<(usize, T)>,
        make: impl Fn(Arc<TaskPool>, T) -> Result<(TaskCycleEnv, Obs), String>,
    ) -> Result<Reply, String> {
        let train = self.pools()?.0.clone();
        let mut out = Vec::with_capacity(envs.len());
        for (i, state) in envs {
            let (mut env, obs) = make(train.clone(), state).map_err(|e| format!("env {i}: {e}"))?;
            out.push(Started {
                obs,
                timing: env.take_timing(),
            });
            self.envs.insert(i, env);
        }
        Ok(Reply::Started(out))
    }
}

/// One env's segment on a worker: [`hyperctl_ppo::run_segment`]'s steps, with the handoff of
/// each episode that ended (the state its successor started from: what the learner records to
/// restore the env) and the time spent.
fn run_segment_here(
    env: &mut TaskCycleEnv,
    policy: &Policy,
    obs: &[f32],
    eps: &[f32],
) -> Vec<SegmentStepped> {
    hyperctl_ppo::run_segment_with(env, policy, obs, eps, |env, done| {
        let next = done.then(|| env.episode_start().expect("an episode started"));
        (next, env.take_timing())
    })
    .into_iter()
    .map(|((action, step, reset), (next, timing))| {
        (
            action,
            Stepped {
                obs: step.obs,
                reward: step.reward,
                terminated: step.terminated,
                truncated: step.truncated,
                next,
                timing,
            },
            reset,
        )
    })
    .collect()
}

/// The worker's copy of the learner's task pools, from the collection by task id.
fn init_pools(init: &Init) -> Result<(Arc<TaskPool>, TaskPool), String> {
    if init.protocol != PROTOCOL || init.version != env!("CARGO_PKG_VERSION") {
        return Err(format!(
            "protocol {PROTOCOL} of hyperctl {} cannot serve a run of protocol {} from hyperctl {}",
            env!("CARGO_PKG_VERSION"),
            init.protocol,
            init.version
        ));
    }
    let collection = hyperctl_collections::load(&init.collection, init.data_dir.as_deref())
        .map_err(|p| format!("collection `{}`: {p}", init.collection))?;
    let pick = |ids: &[String]| -> Result<TaskPool, String> {
        let by_id: HashMap<&str, &hyperctl_tasks::TaskSpec> = collection
            .tasks
            .iter()
            .map(|t| (t.task.id.as_str(), &t.task))
            .collect();
        let tasks =
            ids.iter()
                .map(|id| {
                    by_id.get(id.as_str()).map(|t| (*t).clone()).ok_or_else(|| {
                        format!("collection `{}` has no task `{id}`", init.collection)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
        TaskPool::new(tasks, init.env.clone(), init.backend).map_err(|e| e.to_string())
    };
    Ok((Arc::new(pick(&init.train)?), pick(&init.eval)?))
}

/// The learner's record of one env.
struct Tracked {
    /// The worker holding it (None while its next episode is being placed).
    owner: Option<usize>,
    /// The state its episode started from.
    start: Handoff,
    /// Actions since.
    actions: Vec<Vec<f32>>,
    /// Its observation now.
    obs: Obs,
}

/// The run's envs in worker processes, as a [`VecEnv`].
pub struct RemoteEnvs {
    pool: ProcessPool,
    init: String,
    train: Arc<TaskPool>,
    /// Estimated cost of one decision of each training task.
    step_cost: Vec<f64>,
    /// Estimated cost of one episode of each eval task.
    episode_cost: Vec<f64>,
    envs: Vec<Tracked>,
    restarts: Vec<usize>,
    timing: EnvTiming,
    straggler_secs: f64,
    observation_space: BoxSpace,
    action_space: BoxSpace,
}

fn cost(pool: &TaskPool, i: usize) -> f64 {
    let task = &pool.tasks()[i];
    hyperctl_collections::DatasetInfo::of(pool.dataset(i)).cost(task)
}

impl RemoteEnvs {
    /// Starts the workers and sends them the run's set-up; `num_envs` envs over `train`.
    pub fn start(
        program: &WorkerProgram,
        init: Init,
        train: Arc<TaskPool>,
        eval: &TaskPool,
        num_envs: usize,
    ) -> Result<Self, String> {
        let pool = program.pool()?;
        let step_cost = (0..train.tasks().len())
            .map(|i| cost(&train, i) / train.tasks()[i].epochs.max(1) as f64)
            .collect();
        let episode_cost = (0..eval.tasks().len()).map(|i| cost(eval, i)).collect();
        let seed_state = Handoff::seeded(train.tasks().len(), 0);
        let probe = TaskCycleEnv::from_pool(train.clone());
        let (observation_space, action_space) = {
            use hyperctl_env_core::Env;
            (
                probe.observation_space().clone(),
                probe.action_space().clone(),
            )
        };
        let me = Self {
            restarts: vec![0; pool.len()],
            pool,
            init: line(Request::Init(init)).expect("a request serializes"),
            train,
            step_cost,
            episode_cost,
            envs: (0..num_envs)
                .map(|_| Tracked {
                    owner: None,
                    start: seed_state.clone(),
                    actions: Vec::new(),
                    obs: Vec::new(),
                })
                .collect(),
            timing: EnvTiming::default(),
            straggler_secs: 0.0,
            observation_space,
            action_space,
        };
        let everyone: Vec<(usize, String)> =
            (0..me.pool.len()).map(|w| (w, me.init.clone())).collect();
        for (w, answer) in everyone.iter().zip(me.pool.scatter(&everyone)) {
            let answer = answer.map_err(|e| e.to_string())?;
            expect_ready(w.0, &answer)?;
        }
        Ok(me)
    }

    /// Number of worker processes.
    pub fn workers(&self) -> usize {
        self.pool.len()
    }

    /// Where the envs' time went since the last call (summed over envs).
    pub fn take_timing(&mut self) -> EnvTiming {
        std::mem::take(&mut self.timing)
    }

    /// Time workers waited for the busiest one since the last call (see
    /// [`crate::IterationTiming::straggler_secs`]).
    pub fn take_straggler_secs(&mut self) -> f64 {
        std::mem::take(&mut self.straggler_secs)
    }

    /// Adds one round's wait: `busy[w]` is worker w's env time in it.
    fn add_round(&mut self, busy: &[f64]) {
        let max = busy.iter().copied().fold(0.0, f64::max);
        let mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
        self.straggler_secs += max - mean;
    }

    /// Each env's snapshot, from the learner's record (what the envs' own snapshots would be).
    pub fn snapshots(&self) -> Vec<CycleSnapshot> {
        self.envs
            .iter()
            .map(|t| {
                CycleSnapshot::new(
                    &self.train,
                    t.start.clone(),
                    t.actions.clone(),
                    t.obs.clone(),
                )
            })
            .collect()
    }

    /// Restores every env from a checkpoint's snapshots (placed by cost) and returns their
    /// observations.
    pub fn restore(&mut self, snapshots: Vec<CycleSnapshot>) -> Result<Vec<Obs>, String> {
        if snapshots.len() != self.envs.len() {
            return Err(format!(
                "{} snapshots for {} envs",
                snapshots.len(),
                self.envs.len()
            ));
        }
        for (t, s) in self.envs.iter_mut().zip(&snapshots) {
            t.owner = None;
            t.start = s.start();
            t.actions = s.actions().to_vec();
            t.obs = s.obs().clone();
        }
        let all: Vec<usize> = (0..self.envs.len()).collect();
        let placed = self.place(&all);
        let mut requests: Vec<(usize, Vec<usize>)> = Vec::new();
        for (w, envs) in group(&placed) {
            requests.push((w, envs));
        }
        let obs = self.round(
            requests
                .iter()
                .map(|(w, envs)| {
                    let items = envs.iter().map(|&i| (i, snapshots[i].clone())).collect();
                    (*w, Request::Restore { envs: items })
                })
                .collect(),
        )?;
        let mut out = vec![Vec::new(); self.envs.len()];
        for ((w, envs), reply) in requests.iter().zip(obs) {
            let started = started(reply, envs.len())?;
            for (&i, s) in envs.iter().zip(started) {
                self.envs[i].owner = Some(*w);
                self.timing_add(&s.timing);
                out[i] = s.obs;
            }
        }
        Ok(out)
    }

    /// Evaluates `policy` on `seeds` episodes of every eval task, in the workers, the costliest
    /// first; the episodes come back in task-major order.
    pub fn evaluate(&mut self, policy: &Policy, seeds: usize) -> Result<Vec<(f64, bool)>, String> {
        let n = self.episode_cost.len() * seeds;
        let results: Mutex<Vec<Option<(f64, bool)>>> = Mutex::new(vec![None; n]);
        loop {
            let todo: Vec<usize> = {
                let r = results.lock().unwrap_or_else(|p| p.into_inner());
                (0..n).filter(|&k| r[k].is_none()).collect()
            };
            if todo.is_empty() {
                break;
            }
            let requests: Vec<String> = todo
                .iter()
                .map(|&k| {
                    line(Request::Eval {
                        task: k / seeds,
                        s: k % seeds,
                        policy: policy.clone(),
                    })
                    .expect("a request serializes")
                })
                .collect();
            let costs: Vec<f64> = todo.iter().map(|&k| self.episode_cost[k / seeds]).collect();
            let ran = self
                .pool
                .run(&requests, &costs, |j, line| match parse(&line)? {
                    Reply::Episode(ret, diverged) => {
                        results.lock().unwrap_or_else(|p| p.into_inner())[todo[j]] =
                            Some((ret, diverged));
                        Ok(())
                    }
                    other => Err(Lost::Refused(format!(
                        "a worker answered an evaluation with {other:?}"
                    ))),
                });
            match ran {
                Ok(()) => {}
                Err(Lost::Worker(w, reason)) => self.recover(w, &reason)?,
                Err(Lost::Refused(reason)) => return Err(reason),
            }
        }
        Ok(results
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .map(|r| r.expect("every episode ran"))
            .collect())
    }

    fn timing_add(&mut self, t: &EnvTiming) {
        self.timing.env_secs += t.env_secs;
        self.timing.train_secs += t.train_secs;
        self.timing.reset_secs += t.reset_secs;
    }

    /// Every env by the worker holding it (between steps every env is placed).
    fn placement(&self) -> Vec<(usize, Vec<usize>)> {
        let placed: Vec<(usize, usize)> = self
            .envs
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.owner.expect("every env is placed between steps")))
            .collect();
        group(&placed)
    }

    /// Workers for the unplaced envs `envs`, costliest episode first, each to the worker with
    /// the least load (ties: the lowest index). Returns `(env, worker)` in `envs`' order.
    fn place(&self, envs: &[usize]) -> Vec<(usize, usize)> {
        let mut load = vec![0f64; self.pool.len()];
        for t in &self.envs {
            if let Some(w) = t.owner {
                load[w] += self.step_cost[t.start.next_task()];
            }
        }
        let mut order: Vec<usize> = envs.to_vec();
        let c = |i: usize| self.step_cost[self.envs[i].start.next_task()];
        order.sort_by(|&a, &b| c(b).total_cmp(&c(a)).then(a.cmp(&b)));
        let mut placed = HashMap::new();
        for i in order {
            let w = (0..load.len())
                .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
                .expect("at least one worker");
            load[w] += c(i);
            placed.insert(i, w);
        }
        envs.iter().map(|&i| (i, placed[&i])).collect()
    }

    /// Sends one request per worker and returns the replies in request order; a lost worker is
    /// replaced, its envs restored, and its request sent again.
    fn round(&mut self, requests: Vec<(usize, Request)>) -> Result<Vec<Reply>, String> {
        let lines: Vec<(usize, String)> = requests
            .iter()
            .map(|(w, r)| (*w, line(r.clone()).expect("a request serializes")))
            .collect();
        let mut replies: Vec<Option<Reply>> = vec![None; lines.len()];
        let mut pending: Vec<usize> = (0..lines.len()).collect();
        while !pending.is_empty() {
            let batch: Vec<(usize, String)> = pending.iter().map(|&k| lines[k].clone()).collect();
            let answers = self.pool.scatter(&batch);
            let mut again = Vec::new();
            for (&k, answer) in pending.iter().zip(answers) {
                let w = lines[k].0;
                match answer
                    .map_err(|e| Lost::Worker(e.worker, e.reason))
                    .and_then(|l| parse(&l))
                {
                    Ok(reply) => replies[k] = Some(reply),
                    Err(Lost::Worker(_, reason)) => {
                        self.recover(w, &reason)?;
                        again.push(k);
                    }
                    Err(Lost::Refused(reason)) => return Err(reason),
                }
            }
            pending = again;
        }
        Ok(replies
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }

    /// Replaces lost worker `w` by a fresh process: the set-up again, then its envs restored
    /// from the learner's record.
    fn recover(&mut self, w: usize, reason: &str) -> Result<(), String> {
        self.restarts[w] += 1;
        if self.restarts[w] > MAX_RESTARTS {
            return Err(format!(
                "worker process {w} was lost {} times in this run (last: {reason}); stopping \
                 (continue with --resume)",
                self.restarts[w]
            ));
        }
        eprintln!(
            "meta-train: worker process {w} lost ({reason}); starting a new one and restoring its environments"
        );
        tracing::warn!(worker = w, reason, "worker process lost; respawning");
        self.pool
            .respawn(w)
            .map_err(|e| format!("cannot restart worker process {w}: {e}"))?;
        let init = self.init.clone();
        let answer = self
            .pool
            .scatter(&[(w, init)])
            .pop()
            .expect("one answer")
            .map_err(|e| e.to_string())?;
        expect_ready(w, &answer)?;
        let mine: Vec<usize> = (0..self.envs.len())
            .filter(|&i| self.envs[i].owner == Some(w))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let snapshots = self.snapshots();
        let request = Request::Restore {
            envs: mine.iter().map(|&i| (i, snapshots[i].clone())).collect(),
        };
        let text = line(request).expect("a request serializes");
        let answer = self.pool.scatter(&[(w, text)]).pop().expect("one answer");
        match answer
            .map_err(|e| Lost::Worker(e.worker, e.reason))
            .and_then(|l| parse(&l))
        {
            Ok(reply) => {
                for s in started(reply, mine.len())? {
                    self.timing_add(&s.timing);
                }
                Ok(())
            }
            Err(Lost::Worker(_, reason)) => self.recover(w, &reason),
            Err(Lost::Refused(reason)) => Err(reason),
        }
    }

    /// Starts the given envs' next episodes (their `start` already set) on placed workers.
    fn start_episodes(&mut self, envs: &[usize]) -> Result<Vec<Obs>, String> {
        let placed = self.place(envs);
        let groups = group(&placed);
        let replies = self.round(
            groups
                .iter()
                .map(|(w, envs)| {
                    let items = envs
                        .iter()
                        .map(|&i| (i, self.envs[i].start.clone()))
                        .collect();
                    (*w, Request::Start { envs: items })
                })
                .collect(),
        )?;
        let mut obs: HashMap<usize, Obs> = HashMap::new();
        let mut busy = vec![0.0; self.pool.len()];
        for ((w, envs), reply) in groups.iter().zip(replies) {
            for (&i, s) in envs.iter().zip(started(reply, envs.len())?) {
                busy[*w] += s.timing.env_secs;
                let t = &mut self.envs[i];
                t.owner = Some(*w);
                t.actions.clear();
                t.obs = s.obs.clone();
                self.timing_add(&s.timing);
                obs.insert(i, s.obs);
            }
        }
        self.add_round(&busy);
        Ok(envs
            .iter()
            .map(|i| obs.remove(i).expect("started"))
            .collect())
    }
}

/// Why a round failed: a worker lost (recoverable), or a refusal (not).
enum Lost {
    Worker(usize, String),
    Refused(String),
}

impl From<hyperctl_pool::process::WorkerError> for Lost {
    fn from(e: hyperctl_pool::process::WorkerError) -> Self {
        Lost::Worker(e.worker, e.reason)
    }
}

/// A request as its line.
fn line(request: Request) -> serde_json::Result<String> {
    serde_json::to_string(&Envelope { meta: request })
}

fn parse(line: &str) -> Result<Reply, Lost> {
    match serde_json::from_str::<Answer>(line) {
        Ok(Answer::Ok(reply)) => Ok(reply),
        Ok(Answer::Error(reason)) => Err(Lost::Refused(reason)),
        Err(e) => Err(Lost::Refused(format!(
            "a worker answered something that is not a meta-train answer ({e}): {}",
            line.chars().take(200).collect::<String>()
        ))),
    }
}

fn expect_ready(w: usize, line: &str) -> Result<(), String> {
    match parse(line) {
        Ok(Reply::Ready) => Ok(()),
        Ok(other) => Err(format!(
            "worker process {w} answered its set-up with {other:?}"
        )),
        Err(Lost::Refused(reason) | Lost::Worker(_, reason)) => Err(reason),
    }
}

fn started(reply: Reply, n: usize) -> Result<Vec<Started>, String> {
    match reply {
        Reply::Started(s) if s.len() == n => Ok(s),
        other => Err(format!(
            "a worker answered a start of {n} envs with {other:?}"
        )),
    }
}

/// A reply's items, one per env of its request.
fn one_each<T>(items: Vec<T>, n: usize, what: &str) -> Result<Vec<T>, String> {
    if items.len() == n {
        Ok(items)
    } else {
        Err(format!("a worker answered {} {what} of {n}", items.len()))
    }
}

/// `(env, worker)` pairs grouped by worker (in worker order, envs in their order).
fn group(placed: &[(usize, usize)]) -> Vec<(usize, Vec<usize>)> {
    let mut by: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for &(i, w) in placed {
        by.entry(w).or_default().push(i);
    }
    by.into_iter().collect()
}

impl RemoteEnvs {
    /// Runs every env's segment on the worker holding it (see [`Request::Segment`]); the
    /// learner's record of each env follows its steps, so a lost worker's envs are restored to
    /// the iteration's start and their segments run again.
    pub fn run_segments(
        &mut self,
        policy: &Policy,
        obs: &[Obs],
        eps: &[Vec<f32>],
    ) -> Result<Vec<Vec<hyperctl_ppo::SegmentStep>>, String> {
        let groups = self.placement();
        let replies = self.round(
            groups
                .iter()
                .map(|(w, envs)| {
                    let items = envs
                        .iter()
                        .map(|&i| (i, obs[i].clone(), eps[i].clone()))
                        .collect();
                    (
                        *w,
                        Request::Segment {
                            policy: policy.clone(),
                            envs: items,
                        },
                    )
                })
                .collect(),
        )?;
        let mut out: Vec<Vec<hyperctl_ppo::SegmentStep>> = vec![Vec::new(); self.envs.len()];
        let mut busy = vec![0.0; self.pool.len()];
        for ((w, envs), reply) in groups.iter().zip(replies) {
            let Reply::Segments(segments) = reply else {
                return Err(format!("a worker answered a segment with {reply:?}"));
            };
            let segments = one_each(segments, envs.len(), "segments")?;
            for (&i, segment) in envs.iter().zip(segments) {
                let mut steps = Vec::with_capacity(segment.len());
                for (action, s, reset) in segment {
                    busy[*w] += s.timing.env_secs;
                    self.timing_add(&s.timing);
                    let t = &mut self.envs[i];
                    match (&s.next, &reset) {
                        (Some(next), Some(first)) => {
                            t.start = next.clone();
                            t.actions.clear();
                            t.obs = first.clone();
                        }
                        (None, None) => {
                            t.actions.push(action.clone());
                            t.obs = s.obs.clone();
                        }
                        _ => return Err("a worker's segment step is inconsistent".into()),
                    }
                    steps.push((
                        action,
                        Step {
                            obs: s.obs,
                            reward: s.reward,
                            terminated: s.terminated,
                            truncated: s.truncated,
                            info: Default::default(),
                        },
                        reset,
                    ));
                }
                out[i] = steps;
            }
        }
        self.add_round(&busy);
        Ok(out)
    }
}

impl VecEnv for RemoteEnvs {
    fn num_envs(&self) -> usize {
        self.envs.len()
    }

    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn reset_each(&mut self, seeds: &[u64]) -> Result<Vec<Obs>, String> {
        assert_eq!(seeds.len(), self.envs.len(), "one seed per env");
        let n_tasks = self.train.tasks().len();
        for (t, &seed) in self.envs.iter_mut().zip(seeds) {
            t.owner = None;
            t.start = Handoff::seeded(n_tasks, seed);
        }
        let all: Vec<usize> = (0..self.envs.len()).collect();
        self.start_episodes(&all)
    }

    fn step_each(&mut self, actions: &[Vec<f32>]) -> Result<Vec<(Step, Option<Obs>)>, String> {
        assert_eq!(actions.len(), self.envs.len(), "one action per env");
        let groups = self.placement();
        let replies = self.round(
            groups
                .iter()
                .map(|(w, envs)| {
                    let items = envs.iter().map(|&i| (i, actions[i].clone())).collect();
                    (*w, Request::Step { envs: items })
                })
                .collect(),
        )?;
        let mut steps: Vec<Option<(Step, Option<Handoff>)>> = vec![None; self.envs.len()];
        let mut busy = vec![0.0; self.pool.len()];
        for ((w, envs), reply) in groups.iter().zip(replies) {
            let Reply::Stepped(stepped) = reply else {
                return Err(format!("a worker answered a step with {reply:?}"));
            };
            let stepped = one_each(stepped, envs.len(), "steps")?;
            for (&i, s) in envs.iter().zip(stepped) {
                busy[*w] += s.timing.env_secs;
                self.timing_add(&s.timing);
                let t = &mut self.envs[i];
                t.actions.push(actions[i].clone());
                t.obs = s.obs.clone();
                if s.next.is_some() {
                    t.owner = None;
                }
                steps[i] = Some((
                    Step {
                        obs: s.obs,
                        reward: s.reward,
                        terminated: s.terminated,
                        truncated: s.truncated,
                        info: Default::default(),
                    },
                    s.next,
                ));
            }
        }
        self.add_round(&busy);
        // Episodes that ended: the next ones start on the least loaded workers.
        let mut ended = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            if let Some((_, Some(next))) = s {
                self.envs[i].start = next.clone();
                ended.push(i);
            }
        }
        let mut first_obs: HashMap<usize, Obs> = if ended.is_empty() {
            HashMap::new()
        } else {
            ended
                .iter()
                .copied()
                .zip(self.start_episodes(&ended)?)
                .collect()
        };
        Ok(steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let (step, _) = s.expect("every env stepped");
                (step, first_obs.remove(&i))
            })
            .collect())
    }
}
