//! The [`Controller`] trait and [`run_schedule`], the one loop through which learned policies and
//! fixed or reactive baselines train a task, on the same env, bounds, rewards and divergence rule.

use hyperctl_env_core::Env;
use hyperctl_tasks::{EpochStats, EvalStats, Hyperparams};

use crate::decision::{DecisionLoop, Observed};
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
    /// Whether decisions read the whole observation (a learned policy), so that a live loop
    /// that leaves out statistics is warned (see [`LiveSession`](crate::LiveSession)).
    fn reads_observation(&self) -> bool {
        false
    }
    /// Whether decisions read [`EpochStats::grad_cos_mean`] (the trainer measures it only
    /// then: it costs a gradient copy and a dot product per step).
    fn reads_grad_cosine(&self) -> bool {
        false
    }
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

impl Rollback {
    /// The guard as deployed (`train --rollback`'s defaults, `rollback(SPEC)` in comparisons,
    /// every `hyperctl serve` session unless turned off): on divergence, or a validation loss
    /// above 4× the run's best so far, go back to the last good epoch, halve that epoch's lr
    /// and go on, at most 5 times.
    pub const DEPLOYED: Rollback = Rollback {
        lr_factor: 0.5,
        max_rollbacks: 5,
        blowup_factor: 4.0,
    };
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

/// [`run_schedule`] with the deployment guard ([`Rollback`]) when given: the env trains, and
/// the [`DecisionLoop`] — the same one a [`LiveSession`](crate::LiveSession) and the server run —
/// decides, detects divergence and blow-ups, and says when to go back to the last good state.
pub fn run_schedule_with(
    env: &mut ScheduleEnv,
    controller: &mut dyn Controller,
    seed: u64,
    rollback: Option<Rollback>,
    mut on_interval: impl FnMut(&IntervalRecord),
) -> EpisodeResult {
    if rollback.is_some() {
        env.enable_rollback();
    }
    env.measure_grad_cosines(controller.reads_grad_cosine());
    env.reset(Some(seed));
    let initial_val = env.trainer().initial_val();
    let mut decisions = DecisionLoop::new(
        env.config().clone(),
        env.task().epochs,
        env.current_hparams(),
        initial_val.loss,
        rollback,
    );
    let steps_per_epoch = env.trainer().steps_per_epoch();
    controller.reset(&decisions.context(
        steps_per_epoch,
        env.task().steps_per_decision.unwrap_or(steps_per_epoch),
    ));
    let mut intervals: Vec<IntervalRecord> = Vec::with_capacity(env.task().epochs);
    let mut episode_return = 0.0;
    let mut obs = decisions.initial_obs();
    loop {
        let hp = decisions.decide(controller, &obs);
        let step = env.step_hparams(hp);
        let stats = env.last_stats().expect("an interval just ran").clone();
        let mut record = IntervalRecord {
            stats: stats.clone(),
            reward: step.reward,
            rolled_back: false,
        };
        match decisions.observe(stats) {
            Observed::RolledBack { obs: next, .. } => {
                env.restore_good(decisions.current())
                    .expect("the guard enabled rollback");
                record.reward = 0.0;
                record.rolled_back = true;
                obs = next;
            }
            Observed::Kept {
                obs: next, good, ..
            } => {
                if good {
                    env.keep_good();
                }
                episode_return += step.reward;
                obs = next;
            }
        }
        on_interval(&record);
        intervals.push(record);
        debug_assert_eq!(decisions.ended(), env.episode_done());
        if decisions.ended() {
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
        rollbacks: decisions.rollbacks(),
        test: env.evaluate_test(),
    }
}
