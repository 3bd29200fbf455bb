//! [`TaskCycleEnv`]: one environment over many tasks. Each reset moves to the next task of a
//! seeded shuffled order (a new order every pass), so meta-training sees every task equally often.
//! The tasks and their datasets live in a [`TaskPool`], loaded and checked once and shared by
//! every env of a run.
//!
//! Snapshots ([`Resumable`]) hold the cycle's state at the start of the current episode and the
//! actions taken since; restoring replays them. Training is deterministic on the CPU backend, so
//! the replay lands on exactly the checkpointed state, and the restored observation is compared
//! bit for bit with the recorded one to prove it.

use std::collections::HashMap;
use std::sync::Arc;

use hyperctl_env_core::{BoxSpace, Env, Info, Obs, Resumable, Step};
use hyperctl_tasks::{Backend, Dataset, TaskSpec};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Error;
use crate::config::EnvConfig;
use crate::env::ScheduleEnv;
use crate::features::observation_space_of;

/// Tasks with their datasets loaded (one copy per distinct source), each checked by building it
/// once under one env config and backend.
pub struct TaskPool {
    tasks: Vec<TaskSpec>,
    data: Vec<Arc<Dataset>>,
    config: EnvConfig,
    backend: Backend,
    starts: Option<EpisodeStarts>,
}

/// Where each episode of a [`TaskCycleEnv`] starts, drawn afresh per episode from its seed
/// instead of the task's one fixed `init` (meta-training's `[episode_starts]`): the learning
/// rate log-uniform over `lr = [lo, hi]`, the momentum uniformly from `momentum`. A task then
/// no longer pairs with a single start, so a policy cannot do well by remembering a trajectory
/// per start; it has to read where the task's good lr is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeStarts {
    /// Log-uniform range of the starting learning rate, `[lo, hi]` with 0 < lo ≤ hi.
    pub lr: [f64; 2],
    /// Starting momenta (SGD's momentum or AdamW's beta1), drawn uniformly.
    pub momentum: Vec<f64>,
}

impl EpisodeStarts {
    /// Checks the ranges against the env's bounds; the error names the field.
    pub fn validate(&self, env: &EnvConfig) -> Result<(), Error> {
        let bad = |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        let [lo, hi] = self.lr;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return bad(
                "episode_starts.lr",
                format!("expected [lo, hi] with 0 < lo <= hi, got [{lo}, {hi}]"),
            );
        }
        if lo < env.lr_min || hi > env.lr_max {
            return bad(
                "episode_starts.lr",
                format!(
                    "[{lo}, {hi}] leaves the env's lr bounds [{}, {}]",
                    env.lr_min, env.lr_max
                ),
            );
        }
        if self.momentum.is_empty() {
            return bad(
                "episode_starts.momentum",
                "expected at least one momentum".into(),
            );
        }
        if let Some(m) = self
            .momentum
            .iter()
            .find(|m| !(**m >= env.momentum_min && **m <= env.momentum_max))
        {
            return bad(
                "episode_starts.momentum",
                format!(
                    "{m} is outside the env's momentum bounds [{}, {}]",
                    env.momentum_min, env.momentum_max
                ),
            );
        }
        Ok(())
    }

    /// The start of the episode with seed `seed` (the same seed always gives the same start).
    pub fn draw(&self, seed: u64) -> hyperctl_tasks::Hyperparams {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x57A2_75EE_D5EE_D5EE);
        let [lo, hi] = self.lr;
        let u: f64 = rng.random();
        let lr = (lo.ln() + u * (hi.ln() - lo.ln())).exp().clamp(lo, hi);
        let momentum = self.momentum[rng.random_range(0..self.momentum.len())];
        hyperctl_tasks::Hyperparams { lr, momentum }
    }
}

impl TaskPool {
    /// Loads and checks `tasks` (at least one).
    pub fn new(tasks: Vec<TaskSpec>, config: EnvConfig, backend: Backend) -> Result<Self, Error> {
        if tasks.is_empty() {
            return Err(Error::InvalidConfig {
                field: "tasks",
                reason: "a task cycle needs at least one task".into(),
            });
        }
        let mut cache: HashMap<String, Arc<Dataset>> = HashMap::new();
        let mut data = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let key = task.source.to_string();
            let dataset = match cache.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = Arc::new(task.load()?);
                    cache.insert(key, d.clone());
                    d
                }
            };
            ScheduleEnv::with_data(task.clone(), dataset.clone(), config.clone(), backend)?;
            data.push(dataset);
        }
        Ok(Self {
            tasks,
            data,
            config,
            backend,
            starts: None,
        })
    }

    /// Every episode a cycle over this pool starts draws its own start from `starts` (checked
    /// against the env's bounds); `None` keeps each task's own `init`.
    pub fn with_starts(mut self, starts: Option<EpisodeStarts>) -> Result<Self, Error> {
        if let Some(s) = &starts {
            s.validate(&self.config)?;
        }
        self.starts = starts;
        Ok(self)
    }

    /// The per-episode start distribution, if any.
    pub fn starts(&self) -> Option<&EpisodeStarts> {
        self.starts.as_ref()
    }

    /// The tasks, in the order given.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// The dataset of task `index` (shared by the tasks of one source).
    pub fn dataset(&self, index: usize) -> &Arc<Dataset> {
        &self.data[index]
    }

    /// A fresh env for task `index` (checked in [`TaskPool::new`]).
    pub fn env(&self, index: usize) -> ScheduleEnv {
        ScheduleEnv::prevalidated(
            self.tasks[index].clone(),
            self.data[index].clone(),
            self.config.clone(),
            self.backend,
        )
    }

    /// The env for an episode of task `index` with seed `seed`: [`TaskPool::env`], started
    /// from the pool's per-episode start when it has one.
    pub fn episode_env(&self, index: usize, seed: u64) -> ScheduleEnv {
        let mut task = self.tasks[index].clone();
        if let Some(starts) = &self.starts {
            task.init = starts.draw(seed);
        }
        ScheduleEnv::prevalidated(
            task,
            self.data[index].clone(),
            self.config.clone(),
            self.backend,
        )
    }
}

/// Where the cycle stood when the current episode began.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct CycleState {
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
}

impl CycleState {
    /// Starts the next episode: its task index (reshuffling after a pass) and its seed.
    fn advance(&mut self) -> (usize, u64) {
        if self.cursor >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let index = self.order[self.cursor];
        self.cursor += 1;
        (index, self.rng.random::<u64>())
    }
}

/// The cycle's state between episodes: everything the next episode depends on. An env can be
/// handed to another process at an episode boundary by this alone (small, no replay):
/// [`TaskCycleEnv::start_from`] there starts exactly the episode a reset here would have.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handoff(CycleState);

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handoff(next task {})", self.next_task())
    }
}

impl Handoff {
    /// The state a reset with `seed` gives a cycle over `n_tasks` tasks.
    pub fn seeded(n_tasks: usize, seed: u64) -> Self {
        Self(CycleState {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xC1C1E),
            order: (0..n_tasks).collect(),
            cursor: usize::MAX,
        })
    }

    /// The index (in the pool) of the task the next episode trains.
    pub fn next_task(&self) -> usize {
        self.0.clone().advance().0
    }

    /// The state after the next episode starts: the handoff that episode leaves, whatever
    /// happens in it (the cycle's state changes only when an episode starts), so an env's
    /// episodes can be started ahead of time.
    pub fn successor(&self) -> Handoff {
        let mut s = self.0.clone();
        s.advance();
        Handoff(s)
    }

    fn check(&self, n: usize) -> Result<(), String> {
        let s = &self.0;
        if s.order.len() != n
            || s.order.iter().any(|&i| i >= n)
            || (s.cursor > n && s.cursor != usize::MAX)
        {
            return Err(format!(
                "the cycle state's task order does not fit the task list of {n}"
            ));
        }
        Ok(())
    }
}

/// A [`TaskCycleEnv`]'s state: the cycle at the start of the current episode and the actions since.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CycleSnapshot {
    /// Task ids of the pool, in order (a restore into another pool is refused).
    task_ids: Vec<String>,
    start: CycleState,
    actions: Vec<Vec<f32>>,
    obs: Obs,
}

/// A [`ScheduleEnv`] that switches task at every reset.
pub struct TaskCycleEnv {
    pool: Arc<TaskPool>,
    state: CycleState,
    episode_start: Option<CycleState>,
    actions: Vec<Vec<f32>>,
    obs: Obs,
    current: Option<ScheduleEnv>,
    observation_space: BoxSpace,
    action_space: BoxSpace,
    timing: EnvTiming,
}

/// Where an env's time went since [`TaskCycleEnv::take_timing`] was last called (seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvTiming {
    /// Inside `step` and `reset` in all.
    pub env_secs: f64,
    /// Of that, inside the inner training: the epochs with their validation pass.
    pub train_secs: f64,
    /// Of that, in `reset`: starting an episode (its data, model and first validation pass).
    pub reset_secs: f64,
}

impl TaskCycleEnv {
    /// An env over `tasks` (at least one); every task is checked by building it once.
    pub fn new(tasks: Vec<TaskSpec>, config: EnvConfig, backend: Backend) -> Result<Self, Error> {
        Ok(Self::from_pool(Arc::new(TaskPool::new(
            tasks, config, backend,
        )?)))
    }

    /// An env over a shared pool.
    pub fn from_pool(pool: Arc<TaskPool>) -> Self {
        Self {
            state: CycleState {
                rng: ChaCha8Rng::seed_from_u64(0),
                order: (0..pool.tasks.len()).collect(),
                cursor: usize::MAX,
            },
            observation_space: observation_space_of(pool.config.feature_version),
            pool,
            episode_start: None,
            actions: Vec::new(),
            obs: Vec::new(),
            current: None,
            action_space: crate::env::action_space(),
            timing: EnvTiming::default(),
        }
    }

    /// An env over `pool` that starts the episode `handoff` leads to (what a reset of the env
    /// that gave `handoff` would start), with its first observation.
    pub fn start_from(pool: Arc<TaskPool>, handoff: Handoff) -> Result<(Self, Obs), String> {
        handoff.check(pool.tasks.len())?;
        let mut env = Self::from_pool(pool);
        env.state = handoff.0;
        let start = std::time::Instant::now();
        let (obs, _) = env.start_episode();
        let secs = start.elapsed().as_secs_f64();
        env.timing.env_secs += secs;
        env.timing.reset_secs += secs;
        Ok((env, obs))
    }

    /// The cycle's state now: after an episode ended, what the next one depends on.
    pub fn handoff(&self) -> Handoff {
        Handoff(self.state.clone())
    }

    /// The state the current episode started from (None before the first reset).
    pub fn episode_start(&self) -> Option<Handoff> {
        self.episode_start.clone().map(Handoff)
    }

    /// Where this env's time went since the last call (for meta-training's time breakdown).
    pub fn take_timing(&mut self) -> EnvTiming {
        std::mem::take(&mut self.timing)
    }

    /// `reset` without its timing: a seed restarts the cycle, then the next episode starts.
    fn reset_untimed(&mut self, seed: Option<u64>) -> (Obs, Info) {
        if let Some(seed) = seed {
            self.state = Handoff::seeded(self.pool.tasks.len(), seed).0;
        }
        self.start_episode()
    }

    /// Starts the episode the cycle's current state leads to.
    fn start_episode(&mut self) -> (Obs, Info) {
        self.episode_start = Some(self.state.clone());
        self.actions.clear();
        let (index, episode_seed) = self.state.advance();
        let mut env = self.pool.episode_env(index, episode_seed);
        let (obs, mut info) = env.reset(Some(episode_seed));
        info.insert("task_index".into(), index as f64);
        self.current = Some(env);
        self.obs = obs.clone();
        (obs, info)
    }
}

impl Env for TaskCycleEnv {
    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> (Obs, Info) {
        let start = std::time::Instant::now();
        let reset = self.reset_untimed(seed);
        let secs = start.elapsed().as_secs_f64();
        self.timing.env_secs += secs;
        self.timing.reset_secs += secs;
        reset
    }

    fn step(&mut self, action: &[f32]) -> Step {
        let start = std::time::Instant::now();
        let step = self
            .current
            .as_mut()
            .expect("reset should be called before step")
            .step(action);
        self.actions.push(action.to_vec());
        self.obs = step.obs.clone();
        self.timing.train_secs += step.info.get("wall_secs").copied().unwrap_or(0.0);
        self.timing.env_secs += start.elapsed().as_secs_f64();
        step
    }
}

impl CycleSnapshot {
    /// The snapshot of an env over `pool` whose episode started from `start` and has taken
    /// `actions` since, now observing `obs`: what [`Resumable::snapshot`] of that env returns, for
    /// a learner that tracks envs living elsewhere.
    pub fn new(pool: &TaskPool, start: Handoff, actions: Vec<Vec<f32>>, obs: Obs) -> Self {
        Self {
            task_ids: pool.tasks.iter().map(|t| t.id.clone()).collect(),
            start: start.0,
            actions,
            obs,
        }
    }

    /// The state its episode started from.
    pub fn start(&self) -> Handoff {
        Handoff(self.start.clone())
    }

    /// The actions since.
    pub fn actions(&self) -> &[Vec<f32>] {
        &self.actions
    }

    /// The observation now.
    pub fn obs(&self) -> &Obs {
        &self.obs
    }
}

impl Resumable for TaskCycleEnv {
    type Snapshot = CycleSnapshot;

    fn snapshot(&self) -> CycleSnapshot {
        CycleSnapshot {
            task_ids: self.pool.tasks.iter().map(|t| t.id.clone()).collect(),
            start: self
                .episode_start
                .clone()
                .expect("snapshot should be taken after a reset"),
            actions: self.actions.clone(),
            obs: self.obs.clone(),
        }
    }

    fn restore(&mut self, snapshot: CycleSnapshot) -> Result<Obs, String> {
        let ids: Vec<&str> = self.pool.tasks.iter().map(|t| t.id.as_str()).collect();
        if snapshot.task_ids != ids {
            return Err(format!(
                "the snapshot was taken over {} tasks ({}...), this env has {} ({}...): not the same task list",
                snapshot.task_ids.len(),
                snapshot.task_ids.first().map_or("", |s| s.as_str()),
                ids.len(),
                ids.first().copied().unwrap_or("")
            ));
        }
        let n = ids.len();
        Handoff(snapshot.start.clone())
            .check(n)
            .map_err(|_| "the snapshot's task order does not fit the task list".to_string())?;
        self.state = snapshot.start;
        self.start_episode();
        for (k, action) in snapshot.actions.iter().enumerate() {
            if action.len() != self.action_space.dim() {
                return Err(format!(
                    "snapshot action {k} has {} values, expected 2",
                    action.len()
                ));
            }
            let step = self.step(action);
            if step.done() && k + 1 < snapshot.actions.len() {
                return Err(format!(
                    "replaying the snapshot ended the episode after {} of {} actions",
                    k + 1,
                    snapshot.actions.len()
                ));
            }
        }
        let same = self.obs.len() == snapshot.obs.len()
            && self
                .obs
                .iter()
                .zip(&snapshot.obs)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return Err(format!(
                "replaying the snapshot's {} actions did not reproduce its observation \
                 (data, code or backend differ from the run that wrote it)",
                snapshot.actions.len()
            ));
        }
        Ok(self.obs.clone())
    }
}
