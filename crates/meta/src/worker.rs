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
//! **Segment rollouts** (`rollout = "segments"`) are scheduled by episode instead of by step:
//! the learner knows every episode an env will run in the iteration before any starts (the next
//! cycle state does not depend on how an episode goes) and each decision's noise is a function of
//! (iteration, env, episode, place), so an episode goes to whichever worker is idle as soon as it
//! surely starts in this iteration, and an iteration waits for the busiest worker only at its end
//! ([`RemoteEnvs::run_segments`]).
//!
//! **A lost worker** (killed, crashed, a torn answer) is replaced by a fresh process, which gets
//! the run's set-up again and the lost envs restored from the learner's own record of each env
//! (its episode's start and the actions sent since: the checkpoint's snapshot format, replayed
//! deterministically); the round is then sent again. The final policy is the one an undisturbed
//! run gives. A worker lost [`MAX_RESTARTS`] times in one run stops it with the reason.
//!
//! **Protocol** (one JSON object per line, tagged `"meta"`): `init` (protocol, hyperctl version,
//! collection, task ids, env settings, backend: a worker of another protocol or version
//! refuses), `start` (episodes from handoffs), `restore` (episodes from snapshots), `step`
//! (actions; an episode that ends comes back as its handoff and leaves the worker), `policy` (a
//! segment iteration's frozen policy and noise), `piece` (an episode's next decisions of a
//! segment iteration, starting it first when asked), `eval` (one meta-val episode of a policy).
//! Episodes are named by `(env, serial)`. Each answer is `{"ok": …}` or `{"error": "…"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyperctl_env_core::{BoxSpace, Obs, Step, VecEnv};
use hyperctl_pool::process::ProcessPool;
use hyperctl_ppo::{Policy, SegmentNoise};
use hyperctl_schedule_env::{
    CycleSnapshot, EnvConfig, EnvTiming, EpisodeStarts, Handoff, TaskCycleEnv, TaskPool,
};
use hyperctl_tasks::Backend;
use serde::{Deserialize, Serialize};

/// The protocol's version.
pub const PROTOCOL: u32 = 2;

/// An episode on a worker: its env's index and the env's episode serial (the learner numbers
/// each env's episodes, so several episodes of one env can be live at once in segment rollouts).
pub type Key = (usize, u64);

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
    /// Per-episode starts of the training tasks (`[episode_starts]`; none: each task's own).
    #[serde(default)]
    pub starts: Option<EpisodeStarts>,
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
    /// Start these episodes.
    Start {
        /// `(key, handoff)`.
        envs: Vec<(Key, Handoff)>,
    },
    /// Bring these episodes back from snapshots (replaying them so far).
    Restore {
        /// `(key, snapshot)`.
        envs: Vec<(Key, CycleSnapshot)>,
    },
    /// Step these episodes.
    Step {
        /// `(key, action)`.
        envs: Vec<(Key, Vec<f32>)>,
    },
    /// The policy (its normalizer frozen) and noise of a segment iteration, for its pieces.
    Policy {
        /// The iteration's policy.
        policy: Policy,
        /// Its noise.
        noise: SegmentNoise,
    },
    /// One piece of a segment rollout (`rollout = "segments"`): an episode's next decisions.
    Piece {
        /// The episode.
        key: Key,
        /// Present: start the episode here from this handoff first.
        start: Option<Handoff>,
        /// Which of its env's episodes in this iteration it is (its noise stream).
        j: usize,
        /// Its decisions already run in this iteration (where in the stream to go on).
        p: usize,
        /// At most this many decisions (fewer when the episode ends).
        steps: usize,
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
    /// A piece: the episode's start when it started here, then `(action, step)` per decision;
    /// a step that ended the episode carries the cycle's handoff (the episode left the worker).
    Piece {
        /// The start, for a piece that started its episode.
        started: Option<Started>,
        /// The decisions.
        steps: Vec<(Vec<f32>, Stepped)>,
    },
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
    /// Live episodes and their observations now.
    envs: HashMap<Key, (TaskCycleEnv, Obs)>,
    /// The segment iteration's policy and noise.
    segment: Option<(Policy, SegmentNoise)>,
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
                self.segment = None;
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
                for (key, action) in envs {
                    let (env, obs) = self.live(key)?;
                    if action.len() != env.action_space().dim() {
                        return Err(format!(
                            "env {}: the action has {} values",
                            key.0,
                            action.len()
                        ));
                    }
                    let step = env.step(&action);
                    obs.clone_from(&step.obs);
                    let stepped = stepped(env, step);
                    if stepped.next.is_some() {
                        self.envs.remove(&key);
                    }
                    out.push(stepped);
                }
                Ok(Reply::Stepped(out))
            }
            Request::Policy { policy, noise } => {
                policy.validate()?;
                if noise.act_dim != policy.log_std.len() || noise.num_steps == 0 {
                    return Err(format!(
                        "segment noise of {} actions × {} steps for a policy of {} actions",
                        noise.act_dim,
                        noise.num_steps,
                        policy.log_std.len()
                    ));
                }
                self.segment = Some((policy, noise));
                Ok(Reply::Ready)
            }
            Request::Piece {
                key,
                start,
                j,
                p,
                steps,
            } => self.piece(key, start, j, p, steps),
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
    fn live(&mut self, key: Key) -> Result<&mut (TaskCycleEnv, Obs), String> {
        self.envs
            .get_mut(&key)
            .ok_or_else(|| format!("env {} (episode {}) is not on this worker", key.0, key.1))
    }

    /// One segment piece: [`hyperctl_ppo::run_episode_piece`] on the episode (started here
    /// first when `start` is given), its noise rows `p..p + steps` of stream `j`.
    fn piece(
        &mut self,
        key: Key,
        start: Option<Handoff>,
        j: usize,
        p: usize,
        steps: usize,
    ) -> Result<Reply, String> {
        let (policy, noise) = self
            .segment
            .clone()
            .ok_or("a segment piece before its iteration's `policy`")?;
        if p.checked_add(steps).is_none_or(|end| end > noise.num_steps) {
            return Err(format!(
                "a piece of decisions {p}..{p}+{steps} of an iteration of {}",
                noise.num_steps
            ));
        }
        let started = match start {
            Some(handoff) => {
                let train = self.pools()?.0.clone();
                let (mut env, obs) = TaskCycleEnv::start_from(train, handoff)
                    .map_err(|e| format!("env {}: {e}", key.0))?;
                let started = Started {
                    obs: obs.clone(),
                    timing: env.take_timing(),
                };
                self.envs.insert(key, (env, obs));
                Some(started)
            }
            None => None,
        };
        let (env, obs) = self.live(key)?;
        let rows = noise.episode(key.0, j);
        let act = noise.act_dim;
        let ran = hyperctl_ppo::run_episode_piece(
            env,
            &policy,
            &obs.clone(),
            &rows[p * act..(p + steps) * act],
        );
        let mut out = Vec::with_capacity(ran.len());
        let mut ended = false;
        for (action, step) in ran {
            obs.clone_from(&step.obs);
            let s = stepped(env, step);
            ended |= s.next.is_some();
            out.push((action, s));
        }
        if ended {
            self.envs.remove(&key);
        }
        Ok(Reply::Piece {
            started,
            steps: out,
        })
    }

    /// Builds each `(index, state)` env with `make` over the training pool and keeps it, answering
    /// each one's first observation and time (`start` and `restore`).
    fn install<T>(
        &mut self,
        envs: Vec<(Key, T)>,
        make: impl Fn(Arc<TaskPool>, T) -> Result<(TaskCycleEnv, Obs), String>,
    ) -> Result<Reply, String> {
        let train = self.pools()?.0.clone();
        let mut out = Vec::with_capacity(envs.len());
        for (key, state) in envs {
            let (mut env, obs) =
                make(train.clone(), state).map_err(|e| format!("env {}: {e}", key.0))?;
            out.push(Started {
                obs: obs.clone(),
                timing: env.take_timing(),
            });
            self.envs.insert(key, (env, obs));
        }
        Ok(Reply::Started(out))
    }
}

/// A step as a worker answers it: the handoff when the episode ended, and the time spent.
fn stepped(env: &mut TaskCycleEnv, step: Step) -> Stepped {
    Stepped {
        next: step.done().then(|| env.handoff()),
        timing: env.take_timing(),
        obs: step.obs,
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
    }
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
    let train = pick(&init.train)?
        .with_starts(init.starts.clone())
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(train), pick(&init.eval)?))
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
    /// Its episode's serial (the episode's [`Key`] on its worker).
    serial: u64,
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
    /// During a segment iteration: its `policy` request (a replaced worker gets it again).
    segment: Option<String>,
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
                    serial: 0,
                })
                .collect(),
            segment: None,
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
                    let items = envs
                        .iter()
                        .map(|&i| ((i, self.envs[i].serial), snapshots[i].clone()))
                        .collect();
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
                Err(Lost::Worker(w, reason)) => self.recover(w, &reason, None)?,
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
        add_timing(&mut self.timing, t);
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
                        self.recover(w, &reason, None)?;
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

    /// Replaces lost worker `w` by a fresh process: the set-up again (and a segment iteration's
    /// policy), then its episodes restored: `live`, or the envs it held by the learner's record.
    fn recover(
        &mut self,
        w: usize,
        reason: &str,
        live: Option<Vec<(Key, CycleSnapshot)>>,
    ) -> Result<(), String> {
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
        if let Some(policy) = self.segment.clone() {
            let answer = self.pool.scatter(&[(w, policy)]).pop().expect("one answer");
            match answer.map_err(|e| e.to_string()) {
                Ok(answer) => expect_ready(w, &answer)?,
                Err(reason) => return self.recover(w, &reason, live),
            }
        }
        let live = live.unwrap_or_else(|| {
            let snapshots = self.snapshots();
            (0..self.envs.len())
                .filter(|&i| self.envs[i].owner == Some(w))
                .map(|i| ((i, self.envs[i].serial), snapshots[i].clone()))
                .collect()
        });
        if live.is_empty() {
            return Ok(());
        }
        let request = Request::Restore { envs: live.clone() };
        let text = line(request).expect("a request serializes");
        let answer = self.pool.scatter(&[(w, text)]).pop().expect("one answer");
        match answer
            .map_err(|e| Lost::Worker(e.worker, e.reason))
            .and_then(|l| parse(&l))
        {
            Ok(reply) => {
                for s in started(reply, live.len())? {
                    self.timing_add(&s.timing);
                }
                Ok(())
            }
            Err(Lost::Worker(_, reason)) => self.recover(w, &reason, Some(live)),
            Err(Lost::Refused(reason)) => Err(reason),
        }
    }

    /// Starts the given envs' next episodes (their `start` already set) on placed workers.
    fn start_episodes(&mut self, envs: &[usize]) -> Result<Vec<Obs>, String> {
        for &i in envs {
            self.envs[i].serial += 1;
        }
        let placed = self.place(envs);
        let groups = group(&placed);
        let replies = self.round(
            groups
                .iter()
                .map(|(w, envs)| {
                    let items = envs
                        .iter()
                        .map(|&i| ((i, self.envs[i].serial), self.envs[i].start.clone()))
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

/// One episode of a segment iteration, as the learner follows it.
struct Episode {
    key: Key,
    start: Handoff,
    /// Its decisions left when the iteration began: it ends by then at the latest (budget).
    cap: usize,
    /// Its actions before this iteration (the episode under way when the iteration began).
    before: Vec<Vec<f32>>,
    /// Its first observation (an episode started in this iteration).
    first: Option<Obs>,
    /// Its observation now.
    obs: Obs,
    /// Its decisions in this iteration.
    steps: Vec<(Vec<f32>, Stepped)>,
    ended: bool,
    /// The worker it was handed to.
    owner: Option<usize>,
    /// Whether its worker holds it (it started there).
    live: bool,
    /// A piece of it is out.
    out: bool,
}

/// A segment iteration's schedule (see [`RemoteEnvs::run_segments`]).
struct SegmentRound<'a> {
    num_steps: usize,
    /// Each env's episodes of this iteration, in order.
    envs: Vec<Vec<Episode>>,
    train: &'a TaskPool,
    step_cost: &'a [f64],
    /// Per worker: the `(env, episode)` whose piece it runs, and the decisions asked.
    out: Vec<Option<(usize, usize, usize)>>,
    lost: Vec<(usize, String)>,
    error: Option<String>,
    /// Env time per worker.
    busy: Vec<f64>,
    timing: EnvTiming,
}

impl SegmentRound<'_> {
    /// Env `i`'s decisions before its episode `j` at the most: the episodes before it that
    /// ended count what they ran, the others their whole budget.
    fn before(&self, i: usize, j: usize) -> usize {
        self.envs[i][..j]
            .iter()
            .map(|e| if e.ended { e.steps.len() } else { e.cap })
            .sum()
    }

    /// Adds env `i`'s next episodes while they surely start in this iteration (also the one
    /// that starts right at its end, for its first observation).
    fn plan(&mut self, i: usize) {
        loop {
            let n = self.envs[i].len();
            let before = self.before(i, n);
            let all_ended = self.envs[i].iter().all(|e| e.ended);
            if before > self.num_steps || (before == self.num_steps && !all_ended) {
                return;
            }
            let last = &self.envs[i][n - 1];
            let start = last.start.successor();
            let cap = self.train.tasks()[start.next_task()].epochs.max(1);
            let key = (i, last.key.1 + 1);
            self.envs[i].push(Episode {
                key,
                start,
                cap,
                before: Vec::new(),
                first: None,
                obs: Vec::new(),
                steps: Vec::new(),
                ended: false,
                owner: None,
                live: false,
                out: false,
            });
        }
    }

    /// Decisions episode `(i, j)` may run now (None: nothing to hand out for it).
    fn ready(&self, i: usize, j: usize) -> Option<usize> {
        let e = &self.envs[i][j];
        if e.ended || e.out {
            return None;
        }
        let left = self.num_steps - self.before(i, j) - e.steps.len();
        (left > 0 || !e.live).then_some(left)
    }

    fn complete(&self) -> bool {
        (0..self.envs.len()).all(|i| {
            (0..self.envs[i].len()).all(|j| self.ready(i, j).is_none() && !self.envs[i][j].out)
        })
    }

    fn fail(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    /// Applies worker `w`'s piece of episode `(i, j)` (`asked` decisions).
    fn apply(
        &mut self,
        w: usize,
        i: usize,
        j: usize,
        asked: usize,
        line: &str,
    ) -> Result<(), String> {
        let reply = match parse(line) {
            Ok(reply) => reply,
            Err(Lost::Refused(reason) | Lost::Worker(_, reason)) => return Err(reason),
        };
        let Reply::Piece { started, steps } = reply else {
            return Err(format!("a worker answered a segment piece with {reply:?}"));
        };
        let successor = self.envs[i][j].start.successor();
        let e = &mut self.envs[i][j];
        let ended_at = steps.iter().position(|(_, s)| s.next.is_some());
        if started.is_some() == e.live
            || steps.len() > asked
            || e.steps.len() + steps.len() > e.cap
            || ended_at.is_some_and(|k| k + 1 != steps.len())
            || (steps.len() < asked && ended_at.is_none())
        {
            return Err(format!(
                "a worker's segment piece of env {i} is inconsistent"
            ));
        }
        if let Some(s) = started {
            self.busy[w] += s.timing.env_secs;
            add_timing(&mut self.timing, &s.timing);
            e.first = Some(s.obs.clone());
            e.obs = s.obs;
            e.live = true;
        }
        for (action, s) in steps {
            self.busy[w] += s.timing.env_secs;
            add_timing(&mut self.timing, &s.timing);
            e.obs.clone_from(&s.obs);
            if let Some(next) = &s.next {
                if *next != successor {
                    return Err(format!(
                        "env {i}: a worker's episode left a cycle state other than the one it \
                         started from implies"
                    ));
                }
                e.ended = true;
                e.live = false;
            }
            e.steps.push((action, s));
        }
        self.plan(i);
        Ok(())
    }
}

impl hyperctl_pool::process::Schedule for SegmentRound<'_> {
    fn next(&mut self, w: usize) -> Option<String> {
        if self.error.is_some() || !self.lost.is_empty() {
            return None;
        }
        // Work only this worker can do first (episodes it holds), then unstarted episodes; the
        // costliest first, ties by env and episode.
        let mut best: Option<(bool, f64, usize, usize, usize)> = None;
        for i in 0..self.envs.len() {
            for j in 0..self.envs[i].len() {
                let Some(left) = self.ready(i, j) else {
                    continue;
                };
                let e = &self.envs[i][j];
                if e.live && e.owner != Some(w) {
                    continue;
                }
                let run = left.min(e.cap - e.steps.len()).max(1);
                let cost = self.step_cost[e.start.next_task()] * run as f64;
                let better = match best {
                    None => true,
                    Some((mine, c, ..)) => (e.live, cost) > (mine, c),
                };
                if better {
                    best = Some((e.live, cost, i, j, left));
                }
            }
        }
        let (_, _, i, j, left) = best?;
        let e = &mut self.envs[i][j];
        e.out = true;
        e.owner = Some(w);
        self.out[w] = Some((i, j, left));
        let request = Request::Piece {
            key: e.key,
            start: (!e.live).then(|| e.start.clone()),
            j,
            p: e.steps.len(),
            steps: left,
        };
        Some(line(request).expect("a request serializes"))
    }

    fn answer(&mut self, w: usize, answer: Result<String, hyperctl_pool::process::WorkerError>) {
        let (i, j, asked) = self.out[w].take().expect("a piece was out");
        self.envs[i][j].out = false;
        match answer {
            Ok(line) => {
                if let Err(reason) = self.apply(w, i, j, asked, &line) {
                    self.fail(reason);
                }
            }
            Err(e) => {
                let ep = &mut self.envs[i][j];
                if !ep.live {
                    ep.owner = None;
                }
                self.lost.push((w, e.reason));
            }
        }
    }

    fn finished(&self) -> bool {
        self.error.is_some() || !self.lost.is_empty() || self.complete()
    }
}

fn add_timing(to: &mut EnvTiming, t: &EnvTiming) {
    to.env_secs += t.env_secs;
    to.train_secs += t.train_secs;
    to.reset_secs += t.reset_secs;
}

impl RemoteEnvs {
    /// A segment rollout over the workers, scheduled by episode: every env's episodes of the
    /// iteration are known before they start (a cycle's next state does not depend on how an
    /// episode goes, [`Handoff::successor`]) and so is each one's noise ([`SegmentNoise`]), so an
    /// episode is handed to any idle worker as soon as it surely starts in this iteration (the
    /// ones before it, at their full budgets, end before the iteration does) and runs as far as
    /// it surely belongs to it; when an episode before it ends early, it is continued on the
    /// worker holding it. Pieces go out by estimated cost, the costliest first, a worker's own
    /// episodes before unstarted ones. The steps are those of [`hyperctl_ppo::run_segment`] in
    /// one process, whatever the placement. A lost worker's episodes are restored on its
    /// replacement from the learner's record and their pieces run again.
    pub fn run_segments(
        &mut self,
        policy: &Policy,
        _obs: &[Obs],
        noise: &SegmentNoise,
    ) -> Result<Vec<Vec<hyperctl_ppo::SegmentStep>>, String> {
        let request = Request::Policy {
            policy: policy.clone(),
            noise: *noise,
        };
        let policy_line = line(request.clone()).expect("a request serializes");
        self.segment = None;
        let everyone: Vec<(usize, Request)> =
            (0..self.pool.len()).map(|w| (w, request.clone())).collect();
        for reply in self.round(everyone)? {
            if !matches!(reply, Reply::Ready) {
                return Err(format!(
                    "a worker answered the iteration's policy with {reply:?}"
                ));
            }
        }
        self.segment = Some(policy_line);
        let result = self.run_segment_round(noise.num_steps);
        self.segment = None;
        result
    }

    fn run_segment_round(
        &mut self,
        num_steps: usize,
    ) -> Result<Vec<Vec<hyperctl_ppo::SegmentStep>>, String> {
        let train = self.train.clone();
        let step_cost = self.step_cost.clone();
        let mut envs = Vec::with_capacity(self.envs.len());
        for (i, t) in self.envs.iter().enumerate() {
            let epochs = train.tasks()[t.start.next_task()].epochs.max(1);
            if t.actions.len() >= epochs {
                return Err(format!("env {i}'s episode is past its budget"));
            }
            envs.push(vec![Episode {
                key: (i, t.serial),
                start: t.start.clone(),
                cap: epochs - t.actions.len(),
                before: t.actions.clone(),
                first: None,
                obs: t.obs.clone(),
                steps: Vec::new(),
                ended: false,
                owner: t.owner,
                live: true,
                out: false,
            }]);
        }
        let mut round = SegmentRound {
            num_steps,
            envs,
            train: &train,
            step_cost: &step_cost,
            out: vec![None; self.pool.len()],
            lost: Vec::new(),
            error: None,
            busy: vec![0.0; self.pool.len()],
            timing: EnvTiming::default(),
        };
        for i in 0..round.envs.len() {
            round.plan(i);
        }
        loop {
            self.pool.serve(&mut round);
            if let Some(reason) = round.error.take() {
                return Err(reason);
            }
            if round.lost.is_empty() {
                break;
            }
            for (w, reason) in std::mem::take(&mut round.lost) {
                let live: Vec<(Key, CycleSnapshot)> = round
                    .envs
                    .iter()
                    .flatten()
                    .filter(|e| e.live && e.owner == Some(w))
                    .map(|e| {
                        let actions = e
                            .before
                            .iter()
                            .cloned()
                            .chain(e.steps.iter().map(|(a, _)| a.clone()))
                            .collect();
                        (
                            e.key,
                            CycleSnapshot::new(&train, e.start.clone(), actions, e.obs.clone()),
                        )
                    })
                    .collect();
                self.recover(w, &reason, Some(live))?;
            }
        }
        if !round.complete() {
            return Err("the segment schedule stalled with work left (a bug)".into());
        }
        let busy = std::mem::take(&mut round.busy);
        let timing = std::mem::take(&mut round.timing);
        let SegmentRound { envs, .. } = round;
        self.add_round(&busy);
        self.timing_add(&timing);
        let mut out = Vec::with_capacity(envs.len());
        for (i, episodes) in envs.into_iter().enumerate() {
            let firsts: Vec<Option<Obs>> = episodes.iter().map(|e| e.first.clone()).collect();
            let mut steps = Vec::with_capacity(num_steps);
            let last = episodes.len() - 1;
            let mut tail = None;
            for (j, e) in episodes.into_iter().enumerate() {
                let mut actions = e.before;
                for (action, s) in e.steps {
                    let reset = match &s.next {
                        Some(_) => Some(firsts.get(j + 1).cloned().flatten().ok_or_else(|| {
                            format!("env {i}: an episode ended with no next one started")
                        })?),
                        None => None,
                    };
                    actions.push(action.clone());
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
                if j == last {
                    tail = Some((e.owner, e.start, actions, e.obs, e.key.1));
                }
            }
            if steps.len() != num_steps {
                return Err(format!(
                    "env {i} ran {} decisions of a segment of {num_steps}",
                    steps.len()
                ));
            }
            let (owner, start, actions, obs, serial) = tail.expect("at least one episode");
            self.envs[i] = Tracked {
                owner,
                start,
                actions,
                obs,
                serial,
            };
            out.push(steps);
        }
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
                    let items = envs
                        .iter()
                        .map(|&i| ((i, self.envs[i].serial), actions[i].clone()))
                        .collect();
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
