//! The decision path of hyperctl, without burn: what a training loop reports each interval
//! ([`EpochStats`]), the scale-free observation ([`features`]), the ONE action mapping and bounds
//! ([`action`]), the one decision loop with its divergence rule and deployment guard
//! ([`decision`]), a session beside a loop that is not ours ([`LiveSession`]), the exported
//! policy ([`Policy`], crate `hyperctl-policy`, forward pass on `ndarray`) and its folder
//! ([`folder`]); the statistics it reads come from crate `hyperctl-stats`.
//!
//! Everything that decides lives here, so the trainer (`hyperctl-tasks`, burn), the server, the
//! library and the Python package run the same code; this crate compiles in seconds, which is
//! what lets the Python wheel build without burn.
//!
//! # Architecture invariants
//! - No burn, no training, no I/O beyond reading a policy folder.
//! - One function maps actions to hyperparameters ([`apply_action`]); every choice is clamped by
//!   [`clamp_hparams`].

#![warn(missing_docs)]

pub mod action;
pub mod config;
pub mod controller;
pub mod decision;
pub mod features;
pub mod folder;
pub mod live;

/// The exported policy (crate `hyperctl-policy`).
pub use hyperctl_policy as policy;
/// Interval statistics and hyperparameters (crate `hyperctl-stats`).
pub use hyperctl_stats as stats;

pub use action::{action_space, apply_action, clamp_hparams};
pub use config::EnvConfig;
pub use controller::{Controller, Decision, DecisionInput, EpisodeContext, Rollback};
pub use decision::{DecisionLoop, Observed};
pub use features::{
    FEATURES, FEATURES_V2, FEATURIZER_VERSION, FEATURIZER_VERSIONS, Featurizer, N_FEATURES,
    feature_table,
};
pub use folder::{PolicyController, PolicyError, PolicyFolder};
pub use live::{EpochReport, FEATURE_FIELDS, LiveDecision, LiveSession, ReportError};
pub use policy::{Dense, Policy, RunningMeanStd};
pub use stats::{
    EpochStats, EvalStats, Hyperparams, InvalidValue, LayerGradNorm, mean_std, mean_std_of,
};
