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
    /// The env's reward for the interval (0 for a rolled-back interval).
    pub reward: f64,
    /// The interval diverged and training went back to the state before it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
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
    /// Whether the run diverged (and was not rolled back).
    pub diverged: bool,
    /// Diverged intervals rolled back (see [`Rollback`]).
    pub rollbacks: usize,
    /// Test loss and metric of the final model (NaN when diverged).
    pub test: EvalStats,
    /// Total wall-clock seconds of the intervals.
    pub wall_secs: f64,
}

/// Deployment-time recovery from divergence: go back to the last good state, shrink the learning
/// rate, continue. An interval whose validation loss jumps above `blowup_factor` × the best so
/// far is undone the same way (and never becomes the good state). Not used in meta-training
/// (divergence ends those episodes); comparisons use it only for the controllers they name
/// `rollback(SPEC)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollback {
    /// The learning rate that diverged is multiplied by this (0 < factor < 1).
    pub lr_factor: f64,
    /// Give up (and end the run as diverged) after this many rollbacks.
    pub max_rollbacks: usize,
    /// A validation loss above this × the run's best so far counts as a blow-up (> 1;
    /// `f64::INFINITY`: only divergences are rolled back).
    pub blowup_factor: f64,
}

/// Runs one episode of `env` from `seed` under `controller`; `on_interval` sees each interval as
/// it finishes (for progress output). The test split is evaluated once, after the episode.
pub fn run_schedule(
    env: &mut ScheduleEnv,
    controller: &mut dyn Controller,
    seed: u64,
    on_interval: impl FnMut(&IntervalRecord),
) -> EpisodeResult {
    run_schedule_with(env, controller, seed, None, on_interval)
}

/// [`run_schedule`] with optional [`Rollback`]: after a diverged (or blown-up) interval the env
/// returns to its last good state with that interval's lr times `lr_factor`; explicit choices of fixed
/// controllers ([`Decision::Set`]) are scaled by every factor applied so far, so a schedule
/// that diverged keeps its shape at a safer scale, and no later interval of any controller runs
/// above the lowest such ceiling (a policy that raises its lr again would otherwise walk back
/// into the divergence, as seen in the headline experiment).
pub fn run_schedule_with(
    env: &mut ScheduleEnv,
    controller: &mut dyn Controller,
    seed: u64,
    rollback: Option<Rollback>,
    mut on_interval: impl FnMut(&IntervalRecord),
) -> EpisodeResult {
    if let Some(r) = rollback {
        env.enable_rollback(r.blowup_factor);
    }
    let mut lr_scale = 1.0;
    let mut lr_ceiling = f64::INFINITY;
    let mut rollbacks = 0;
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
        let mut hp = match decision {
            Decision::Action(action) => env.action_to_hparams(&env.action_space().clip(&action)),
            Decision::Set(hp) => Hyperparams {
                lr: hp.lr * lr_scale,
                momentum: hp.momentum,
            },
        };
        hp.lr = hp.lr.min(lr_ceiling);
        let requested_lr = hp.lr;
        let step = env.step_hparams(hp);
        let mut record = IntervalRecord {
            stats: env.last_stats().expect("an interval just ran").clone(),
            reward: step.reward,
            rolled_back: false,
        };
        let recovered = match rollback {
            // The env knows whether the interval diverged or blew up; otherwise this is `None`.
            Some(r) if rollbacks < r.max_rollbacks => env.rollback(r.lr_factor),
            _ => None,
        };
        if let Some(next_obs) = recovered {
            rollbacks += 1;
            // Relative to the lr actually used (the request may have been clamped).
            let clamped = (record.stats.lr / requested_lr).min(1.0);
            let factor = rollback.map_or(1.0, |r| r.lr_factor);
            lr_scale *= factor * clamped;
            lr_ceiling = lr_ceiling.min(record.stats.lr * factor);
            record.reward = 0.0;
            record.rolled_back = true;
            on_interval(&record);
            intervals.push(record);
            obs = next_obs;
            if env.episode_done() {
                break;
            }
            continue;
        }
        episode_return += step.reward;
        on_interval(&record);
        intervals.push(record);
        let done = step.done();
        obs = step.obs;
        if done {
            break;
        }
    }
    let diverged = intervals
        .last()
        .is_some_and(|r| r.stats.diverged && !r.rolled_back);
    EpisodeResult {
        controller: controller.spec(),
        seed,
        initial_val,
        wall_secs: intervals.iter().map(|r| r.stats.wall_secs).sum(),
        intervals,
        episode_return,
        diverged,
        rollbacks,
        test: env.evaluate_test(),
    }
}
