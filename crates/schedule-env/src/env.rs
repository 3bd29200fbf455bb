//! [`ScheduleEnv`]: one training task as a Gymnasium-shaped environment.
//!
//! - `reset(seed)` splits the data and initialises a fresh model from the seed (`None`: the next
//!   seed of the env's own stream) and returns the pre-training observation.
//! - `step(action)` maps the action to the next interval's hyperparameters with the ONE mapping
//!   ([`apply_action`]), trains one interval, and returns the next observation and the reward.
//! - Reward: `r_t = ln V_{t−1} − ln V_t` on the validation loss (V₀: the untrained model), so an
//!   episode's return is `ln(V₀ / V_T)`, the same for any loss scale.
//! - Divergence (see [`hyperctl_tasks::trainer`] for the rule) terminates the episode and its last
//!   reward makes the return exactly `−crash_penalty`.
//! - The budget (`epochs` intervals) truncates the episode. The progress feature is observed, so a
//!   learner may treat truncation as terminal.
//! - The test split is never used by `reset`/`step`; [`ScheduleEnv::evaluate_test`] reports it
//!   after an episode.

use std::sync::Arc;

use hyperctl_env_core::{BoxSpace, Env, Info, Obs, Step};
use hyperctl_tasks::{
    Backend, Dataset, EpochStats, EvalStats, Hyperparams, Method, TaskSpec, Trainer, TrainerConfig,
};

use crate::Error;
use crate::action::{apply_action, clamp_hparams};
use crate::config::EnvConfig;
use crate::features::{Featurizer, observation_space_of};

pub use hyperctl_decide::action::action_space;

/// The schedule environment over one [`TaskSpec`].
pub struct ScheduleEnv {
    task: TaskSpec,
    config: EnvConfig,
    backend: Backend,
    data: Arc<Dataset>,
    observation_space: BoxSpace,
    action_space: BoxSpace,
    next_seed: u64,
    episode: Option<Episode>,
    keep_snapshots: bool,
    grad_cosines: bool,
    method: Method,
    train_rows: usize,
}

/// The last state of an episode that had not diverged (kept when rollback is enabled).
#[derive(Clone)]
struct GoodState {
    trainer: hyperctl_tasks::TrainerSnapshot,
    featurizer: Featurizer,
    prev_ln_val: f64,
    return_so_far: f64,
    last_stats: Option<EpochStats>,
}

struct Episode {
    seed: u64,
    trainer: Trainer,
    featurizer: Featurizer,
    hp: Hyperparams,
    intervals_done: usize,
    prev_ln_val: f64,
    return_so_far: f64,
    last_stats: Option<EpochStats>,
    done: bool,
    good: Option<GoodState>,
}

impl ScheduleEnv {
    /// Loads the task's data and checks that a trainer can be built for it.
    pub fn new(task: TaskSpec, config: EnvConfig, backend: Backend) -> Result<Self, Error> {
        let data = Arc::new(task.load()?);
        Self::with_data(task, data, config, backend)
    }

    /// Like [`ScheduleEnv::new`] with data already loaded (shared between envs of one dataset).
    pub fn with_data(
        task: TaskSpec,
        data: Arc<Dataset>,
        config: EnvConfig,
        backend: Backend,
    ) -> Result<Self, Error> {
        config.validate()?;
        task.validate()?;
        // Building once here turns every data/model mismatch into an error now, not a panic later.
        let trial = task.build(&data, task.seed, backend)?;
        let mut env = Self::prevalidated(task, data, config, backend);
        env.train_rows = trial.train_rows();
        Ok(env)
    }

    /// An env for a task that [`ScheduleEnv::with_data`] already accepted with this data, config
    /// and backend (skips the trial build).
    pub(crate) fn prevalidated(
        task: TaskSpec,
        data: Arc<Dataset>,
        config: EnvConfig,
        backend: Backend,
    ) -> Self {
        Self {
            next_seed: task.seed,
            observation_space: observation_space_of(config.feature_version),
            task,
            config,
            backend,
            data,
            action_space: action_space(),
            episode: None,
            keep_snapshots: false,
            grad_cosines: false,
            method: Method::INNER,
            train_rows: 0,
        }
    }

    /// The task.
    pub fn task(&self) -> &TaskSpec {
        &self.task
    }

    /// Rows of the training split (of the task's own seed; the split sizes do not depend on
    /// the seed). 0 for an env made by [`TaskCycleEnv`](crate::TaskCycleEnv), which skips the
    /// trial build.
    pub fn train_rows(&self) -> usize {
        self.train_rows
    }

    /// The environment config.
    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// The backend the trainer runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The hyperparameters the next interval will use unless changed.
    pub fn current_hparams(&self) -> Hyperparams {
        self.episode().hp
    }

    /// The seed of the current episode.
    pub fn episode_seed(&self) -> u64 {
        self.episode().seed
    }

    /// Statistics of the last interval, if any ran.
    pub fn last_stats(&self) -> Option<&EpochStats> {
        self.episode().last_stats.as_ref()
    }

    /// The current episode's trainer (for steps per epoch, parameter counts, ...).
    pub fn trainer(&self) -> &Trainer {
        &self.episode().trainer
    }

    /// Maps an action to hyperparameters from the current ones (the ONE mapping).
    pub fn action_to_hparams(&self, action: &[f32]) -> Hyperparams {
        apply_action(self.episode().hp, action, &self.config)
    }

    /// Test loss and metric of the current model (report after the episode; NaN if diverged).
    pub fn evaluate_test(&self) -> EvalStats {
        self.episode().trainer.evaluate_test()
    }

    fn episode(&self) -> &Episode {
        self.episode
            .as_ref()
            .expect("reset should be called before using the episode")
    }

    /// Whether the current episode has ended.
    pub fn episode_done(&self) -> bool {
        self.episode.as_ref().is_none_or(|e| e.done)
    }

    /// From the next reset on, the trainer measures the cosine between consecutive minibatch
    /// gradients (`grad_cos_mean`, read by the hypergradient controller; NaN otherwise).
    pub fn measure_grad_cosines(&mut self, on: bool) {
        self.grad_cosines = on;
    }

    /// Trains every later episode with `method` (a parameter-free step rule, iterate averaging;
    /// see [`Method`]); checked now, so a bad one is an error here, not a panic at reset.
    pub fn set_method(&mut self, method: Method) -> Result<(), Error> {
        hyperctl_tasks::trainer::check_method(&method)?;
        self.method = method;
        Ok(())
    }

    /// Keeps a good state of each episode from the next reset on (the initial state at every
    /// reset, then whatever [`ScheduleEnv::keep_good`] marks), so that
    /// [`ScheduleEnv::restore_good`] can return to it. Costs a copy of the small per-interval
    /// state; weights are shared, not copied. Which states are good, and when to go back, is the
    /// guard's decision ([`DecisionLoop`](crate::DecisionLoop)), not the env's.
    pub fn enable_rollback(&mut self) {
        self.keep_snapshots = true;
    }

    /// Marks the state after the last interval as the one to return to (with rollback enabled;
    /// otherwise does nothing).
    pub fn keep_good(&mut self) {
        if self.keep_snapshots
            && let Some(ep) = self.episode.as_mut()
        {
            ep.good = Some(GoodState::of(ep));
        }
    }

    /// Goes back to the kept good state (weights, velocity, data order, featurizer, reward
    /// bookkeeping) and continues the episode under `next` (clamped). The undone interval still
    /// counts against the budget and its reward is undone (the return stays ln(V₀/V_t)).
    /// Returns the observation for the next decision (the episode is over if that was the
    /// budget's last interval), or `None` when rollback is not enabled.
    pub fn restore_good(&mut self, next: Hyperparams) -> Option<Obs> {
        let config = self.config.clone();
        let budget = self.task.epochs;
        let ep = self.episode.as_mut()?;
        let good = ep.good.clone()?;
        ep.trainer.restore(&good.trainer);
        ep.featurizer = good.featurizer;
        ep.prev_ln_val = good.prev_ln_val;
        ep.return_so_far = good.return_so_far;
        ep.last_stats = good.last_stats;
        ep.hp = clamp_hparams(next, &config);
        ep.done = ep.intervals_done >= budget;
        let obs = ep.featurizer.after_rollback(ep.hp);
        ep.good = Some(GoodState::of(ep));
        Some(obs)
    }

    /// Runs one interval under `hp` (clamped into the env's bounds): the step that both
    /// learned actions and fixed schedules go through.
    pub fn step_hparams(&mut self, hp: Hyperparams) -> Step {
        let config = self.config.clone();
        let budget = self.task.epochs;
        let ep = self
            .episode
            .as_mut()
            .expect("reset should be called before step");
        assert!(!ep.done, "step called after the episode ended; call reset");
        let hp = clamp_hparams(hp, &config);
        ep.hp = hp;
        let stats = ep
            .trainer
            .run_epoch(hp)
            .expect("clamped hyperparameters should be valid");
        ep.intervals_done += 1;
        let terminated = stats.diverged;
        let reward = if terminated {
            -config.crash_penalty - ep.return_so_far
        } else {
            let ln_val = stats.val_loss.max(1e-12).ln();
            let r = ep.prev_ln_val - ln_val;
            ep.prev_ln_val = ln_val;
            r
        };
        ep.return_so_far += reward;
        let truncated = !terminated && ep.intervals_done >= budget;
        ep.done = terminated || truncated;
        let obs = ep.featurizer.observe(&stats, hp);
        let mut info = Info::new();
        for (key, value) in [
            ("epoch", stats.epoch as f64),
            ("lr", stats.lr),
            ("momentum", stats.momentum),
            ("train_loss", stats.train_loss_mean),
            ("val_loss", stats.val_loss),
            ("val_metric", stats.val_metric),
            ("grad_norm", stats.grad_norm_mean),
            ("diverged", if stats.diverged { 1.0 } else { 0.0 }),
            ("episode_return", ep.return_so_far),
            ("wall_secs", stats.wall_secs),
        ] {
            info.insert(key.to_string(), value);
        }
        ep.last_stats = Some(stats);
        Step {
            obs,
            reward,
            terminated,
            truncated,
            info,
        }
    }
}

impl GoodState {
    fn of(ep: &Episode) -> Self {
        Self {
            trainer: ep.trainer.snapshot(),
            featurizer: ep.featurizer.clone(),
            prev_ln_val: ep.prev_ln_val,
            return_so_far: ep.return_so_far,
            last_stats: ep.last_stats.clone(),
        }
    }
}

impl Env for ScheduleEnv {
    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> (Obs, Info) {
        let seed = seed.unwrap_or(self.next_seed);
        self.next_seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let config = TrainerConfig {
            grad_cosines: self.grad_cosines,
            ..self.task.trainer_config(seed, self.backend)
        };
        let mut trainer = self
            .task
            .split(&self.data, seed)
            .and_then(|split| Trainer::from_split(split, &config))
            .expect("the task was built once in ScheduleEnv::new, so it should build for any seed");
        let mut hp = clamp_hparams(self.task.init, &self.config);
        let mut info = Info::new();
        if self.method != Method::INNER {
            let steps_per_interval = self
                .task
                .steps_per_decision
                .unwrap_or_else(|| trainer.steps_per_epoch());
            let budget = self.task.epochs * steps_per_interval;
            trainer
                .set_method(self.method, budget)
                .expect("set_method checked the method");
            if let Some(test) = &self.method.lr_range_test {
                // At most a quarter of the budget goes to the sweep.
                let test = hyperctl_tasks::LrRangeTest {
                    steps: test.steps.min(budget / 4).max(1),
                    ..*test
                };
                let outcome = trainer
                    .lr_range_test(&test, hp.momentum)
                    .expect("set_method checked the test, before any step");
                if let Some(lr) = outcome.picked {
                    hp = clamp_hparams(Hyperparams { lr, ..hp }, &self.config);
                }
                info.insert(
                    "lr_range_test_lr".into(),
                    outcome.picked.unwrap_or(f64::NAN),
                );
                info.insert("lr_range_test_steps".into(), outcome.lrs.len() as f64);
            }
        }
        let initial_val = trainer.initial_val();
        let featurizer = Featurizer::with_version(
            self.config.feature_version,
            initial_val.loss,
            self.task.epochs,
        );
        let obs = featurizer.initial(hp);
        info.insert("initial_val_loss".into(), initial_val.loss);
        info.insert("initial_val_metric".into(), initial_val.metric);
        info.insert("seed".into(), seed as f64);
        self.episode = Some(Episode {
            seed,
            trainer,
            featurizer,
            hp,
            intervals_done: 0,
            prev_ln_val: initial_val.loss.max(1e-12).ln(),
            return_so_far: 0.0,
            last_stats: None,
            done: false,
            good: None,
        });
        if self.keep_snapshots {
            let ep = self.episode.as_mut().expect("just set");
            ep.good = Some(GoodState::of(ep));
        }
        (obs, info)
    }

    fn step(&mut self, action: &[f32]) -> Step {
        let hp = self.action_to_hparams(&self.action_space.clip(action));
        self.step_hparams(hp)
    }
}
