//! The [`Controller`] trait and [`run_schedule`], the one loop through which learned policies and
//! fixed or reactive baselines train a task, on the same env, bounds, rewards and divergence rule.

use hyperctl_env_core::{Env, Obs};
use hyperctl_tasks::{EpochStats, EvalStats, Hyperparams};

use crate::env::ScheduleEnv;

/// What a controller chooses for the next interval.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// An action in [−1, 1]², mapped by the env's ONE action mapping (learned policies).
    Action(Vec<f32>),
    /// Explicit hyperparameters, clamped into the env's bounds (schedules and heuristics).
    Set(Hyperparams),
}

/// What a controller knows at the start of an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeContext {
    /// Budget in intervals.
    pub epochs: usize,
    /// The task's starting hyperparameters (after clamping).
    pub init: Hyperparams,
    /// Minibatch steps in one full epoch.
    pub steps_per_epoch: usize,
    /// Minibatch steps per decision interval.
    pub steps_per_interval: usize,
}

/// What a controller sees before each decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// 0-based index of the interval about to run.
    pub interval: usize,
    /// The env's observation (what a learned policy reads).
    pub obs: &'a [f32],
    /// Statistics of the interval just finished (`None` before the first).
    pub last: Option<&'a EpochStats>,
    /// Hyperparameters of the interval just finished (the task's start before the first).
    pub current: Hyperparams,
}

/// Chooses hyperparameters interval by interval.
pub trait Controller {
    /// The controller's SPEC string, as written on the command line.
    fn spec(&self) -> String;
    /// Called once at the start of each episode.
    fn reset(&mut self, context: &EpisodeContext);
    /// Chooses the next interval's hyperparameters.
    fn decide(&mut self, input: &DecisionInput) -> Decision;
}

/// One interval of an episode, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IntervalRecord {
    /// The trainer's statistics (lr and momentum are the values actually used).
    #[serde(flatten)]
    pub stats: EpochStats,
    /// The env's reward for the interval.
    pub reward: f64,
}

/// The outcome of [`run_schedule`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpisodeResult {
    /// The controller's SPEC.
    pub controller: String,
    /// The episode seed.
    pub seed: u64,
    /// The untrained model's validation loss and metric.
    pub initial_val: EvalStats,
    /// Every interval run.
    pub intervals: Vec<IntervalRecord>,
    /// Sum of rewards (ln(V₀/V_T), or −crash_penalty on divergence).
    pub episode_return: f64,
    /// Whether the run diverged.
    pub diverged: bool,
    /// Test loss and metric of the final model (NaN when diverged).
    pub test: EvalStats,
    /// Total wall-clock seconds of the intervals.
    pub wall_secs: f64,
}

/// Runs one episode of `env` from `seed` under `controller`; `on_interval` sees each interval as
/// it finishes (for progress output). The test split is evaluated once, after the episode.
pub fn run_schedule(
    env: &mut ScheduleEnv,
    controller: &mut dyn Controller,
    seed: u64,
    mut on_interval: impl FnMut(&IntervalRecord),
) -> EpisodeResult {
    let (mut obs, info): (Obs, _) = env.reset(Some(seed));
    let initial_val = EvalStats {
        loss: info["initial_val_loss"],
        metric: info["initial_val_metric"],
    };
    let steps_per_epoch = env.trainer().steps_per_epoch();
    controller.reset(&EpisodeContext {
        epochs: env.task().epochs,
        init: env.current_hparams(),
        steps_per_epoch,
        steps_per_interval: env.task().steps_per_decision.unwrap_or(steps_per_epoch),
    });
    let mut intervals: Vec<IntervalRecord> = Vec::with_capacity(env.task().epochs);
    let mut episode_return = 0.0;
    loop {
        let decision = controller.decide(&DecisionInput {
            interval: intervals.len(),
            obs: &obs,
            last: intervals.last().map(|r| &r.stats),
            current: env.current_hparams(),
        });
        let hp = match decision {
            Decision::Action(action) => env.action_to_hparams(&env.action_space().clip(&action)),
            Decision::Set(hp) => hp,
        };
        let step = env.step_hparams(hp);
        episode_return += step.reward;
        let record = IntervalRecord {
            stats: env.last_stats().expect("an interval just ran").clone(),
            reward: step.reward,
        };
        on_interval(&record);
        intervals.push(record);
        let done = step.done();
        obs = step.obs;
        if done {
            break;
        }
    }
    let diverged = intervals.last().is_some_and(|r| r.stats.diverged);
    EpisodeResult {
        controller: controller.spec(),
        seed,
        initial_val,
        wall_secs: intervals.iter().map(|r| r.stats.wall_secs).sum(),
        intervals,
        episode_return,
        diverged,
        test: env.evaluate_test(),
    }
}
