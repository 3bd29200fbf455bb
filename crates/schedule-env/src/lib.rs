//! A DNN training run as a reinforcement-learning environment, and the one loop every
//! controller runs through.
//!
//! Per-interval data path: [`Trainer::run_epoch`](hyperctl_tasks::Trainer::run_epoch) →
//! [`EpochStats`](hyperctl_tasks::EpochStats) → [`Featurizer::observe`] → observation →
//! [`Controller::decide`] → [`Decision`] → ([`apply_action`] for learned actions) → next interval.
//!
//! - [`features`]: the scale-free observation (a table of every feature is in its docs).
//! - [`action`]: the ONE action → (lr, momentum) mapping and the bounds every controller obeys.
//! - [`env`](mod@env): [`ScheduleEnv`] (Gymnasium-shaped), its reward and divergence handling.
//! - [`cycle`]: [`TaskCycleEnv`], one env that draws the next task of a list at every reset.
//! - [`controller`]: the [`Controller`] trait and [`run_schedule`].
//! - [`config`]: [`EnvConfig`], mirrored in `envs/schedule_env.toml`.
//! - [`decision`]: [`DecisionLoop`], the one decision loop (featurizer, action mapping, bounds,
//!   divergence, deployment guard) under `run_schedule`, [`LiveSession`] and the server.
//! - [`live`]: [`LiveSession`], a controller beside a training loop that is not ours.
//!
//! # Architecture invariants
//! - One function maps actions to hyperparameters ([`apply_action`]); every choice, learned or
//!   fixed, is clamped by [`clamp_hparams`] and trained by [`ScheduleEnv::step_hparams`].
//! - Learned and fixed controllers run through the same [`run_schedule`]; it, [`LiveSession`]
//!   and the server decide through the same [`DecisionLoop`].
//! - The env never reads the test split while stepping; `info` is diagnostics only.

#![warn(missing_docs)]

pub mod controller;
pub mod cycle;
pub mod env;

// The decision path lives in `hyperctl-decide` (no burn); its modules keep their paths here.
pub use hyperctl_decide::{action, config, decision, features, live};

pub use controller::{
    EpisodeResult, IntervalRecord, run_schedule, run_schedule_while, run_schedule_with,
};
pub use cycle::{CycleSnapshot, EnvTiming, EpisodeStarts, Handoff, TaskCycleEnv, TaskPool};
pub use env::ScheduleEnv;
pub use hyperctl_decide::{
    Controller, Decision, DecisionInput, DecisionLoop, EnvConfig, EpisodeContext, EpochReport,
    FEATURE_FIELDS, FEATURES, FEATURIZER_VERSION, Featurizer, LiveDecision, LiveSession,
    N_FEATURES, Observed, ReportError, Rollback, apply_action, clamp_hparams,
};

/// Errors of the schedule environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The task could not be loaded or built.
    #[error(transparent)]
    Task(#[from] hyperctl_tasks::Error),
    /// An environment config value is invalid.
    #[error("invalid env config {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
}

impl From<hyperctl_decide::InvalidValue> for Error {
    fn from(e: hyperctl_decide::InvalidValue) -> Self {
        Error::InvalidConfig {
            field: e.field,
            reason: e.reason,
        }
    }
}
