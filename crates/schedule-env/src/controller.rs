//! [`run_schedule`], the one loop through which learned policies and
//! fixed or reactive baselines train a task, on the same env, bounds, rewards and divergence rule.

use hyperctl_decide::{Controller, Rollback};
use hyperctl_env_core::Env;
use hyperctl_tasks::{EpochStats, EvalStats};

use crate::decision::{DecisionLoop, Observed};
use crate::env::ScheduleEnv;

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
    /// Stopped before its budget by [`run_schedule_while`]'s caller (never set otherwise).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
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
    run_schedule_while(env, controller, seed, rollback, |record| {
        on_interval(record);
        true
    })
}

/// [`run_schedule_with`] that `go_on` may stop early: after each interval it sees the record and
/// answers whether to train the next one (a search's early stopping). A stopped episode ends
/// there: [`EpisodeResult::stopped`] is set and its test split is not evaluated (`test` is NaN),
/// since a stopped run is not a result to report.
pub fn run_schedule_while(
    env: &mut ScheduleEnv,
    controller: &mut dyn Controller,
    seed: u64,
    rollback: Option<Rollback>,
    mut go_on: impl FnMut(&IntervalRecord) -> bool,
) -> EpisodeResult {
    if rollback.is_some() {
        env.enable_rollback();
    }
    env.measure_grad_cosines(controller.reads_grad_cosine());
    if let Err(err) = env.set_method(controller.method()) {
        panic!(
            "controller `{}` asks for an invalid method: {err}",
            controller.spec()
        );
    }
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
    let mut stopped = false;
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
        let wanted = go_on(&record);
        intervals.push(record);
        debug_assert_eq!(decisions.ended(), env.episode_done());
        if decisions.ended() {
            break;
        }
        if !wanted {
            stopped = true;
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
        stopped,
        test: if stopped {
            EvalStats {
                loss: f64::NAN,
                metric: f64::NAN,
            }
        } else {
            env.evaluate_test()
        },
    }
}
