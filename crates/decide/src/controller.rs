//! The [`Controller`] trait: what every controller (schedule, heuristic, learned policy) answers
//! before each interval, and the deployment guard's settings ([`Rollback`]).

use crate::stats::{EpochStats, Hyperparams, Method};

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
    /// What the trainer does besides following the lr and momentum: a parameter-free step rule,
    /// iterate averaging ([`Method`]; the inner optimizer, plainly, unless said otherwise).
    fn method(&self) -> Method {
        Method::INNER
    }
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
