//! [`LiveSession`]: a controller running beside a training loop that is not ours (a user's own
//! burn loop, or any framework through `hyperctl serve`). The loop reports each epoch's
//! per-minibatch losses and gradient norms, its update ratio and its validation loss
//! ([`EpochReport`]); the session turns them into the same [`EpochStats`] our trainer produces
//! and runs them through the same [`DecisionLoop`] as `run_schedule` (hyperctl-schedule-env):
//! the same featurizer, action mapping, bounds, divergence rule and deployment guard. Fed our
//! trainer's statistics, it chooses exactly what `run_schedule` chooses, before and after a
//! rollback (tested).
//!
//! With the guard on, a reply may say [`LiveDecision::restore_epoch`]: the loop must restore
//! the model and optimizer state it saved after that epoch (0: the initial state) before
//! training the next epoch at the reply's (reduced) lr. A loop keeps the state of its last good
//! epoch for this (in PyTorch: `copy.deepcopy` of the model's and optimizer's `state_dict()`).
//!
//! Feature parity: a learned policy reads every feature our trainer computes. A report without
//! `grad_norms` or `update_ratio` leaves those features at their neutral values, far from what
//! the policy saw in training; the first such report gets a warning naming the field
//! ([`LiveDecision::warnings`]).

use crate::stats::mean_std;
use crate::stats::{EpochStats, Hyperparams};

use crate::config::EnvConfig;
use crate::controller::{Controller, Rollback};
use crate::decision::{DecisionLoop, Observed};

/// One epoch as a training loop reports it. Only `train_losses` and `val_loss` are required.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochReport {
    /// The loss of every minibatch of the epoch, in order (before each update).
    pub train_losses: Vec<f64>,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// The global gradient L2 norm of every minibatch step (empty: unknown).
    #[serde(default)]
    pub grad_norms: Vec<f64>,
    /// ‖w_after − w_before‖ / ‖w_before‖ over the epoch, if the loop measures it.
    #[serde(default)]
    pub update_ratio: Option<f64>,
    /// Validation accuracy or R², for the record only.
    #[serde(default)]
    pub val_metric: Option<f64>,
}

/// A report that cannot be used; the message says which field and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ReportError {
    /// The field at fault.
    pub field: &'static str,
    /// What was expected.
    pub reason: String,
}

impl EpochReport {
    /// The statistics our trainer would report for this epoch, run at `hp`. Non-finite losses
    /// are allowed (they mark divergence); negative ones are not.
    pub fn to_stats(&self, epoch: usize, hp: Hyperparams) -> Result<EpochStats, ReportError> {
        if self.train_losses.is_empty() {
            return Err(ReportError {
                field: "train_losses",
                reason: "expected the loss of at least one minibatch".into(),
            });
        }
        if self
            .train_losses
            .iter()
            .chain([&self.val_loss])
            .any(|&l| l < 0.0)
        {
            return Err(ReportError {
                field: "train_losses",
                reason: "losses must not be negative (the features are log-ratios)".into(),
            });
        }
        if !self.grad_norms.is_empty() && self.grad_norms.len() != self.train_losses.len() {
            return Err(ReportError {
                field: "grad_norms",
                reason: format!(
                    "{} gradient norms for {} minibatch losses; expected one per minibatch (or none)",
                    self.grad_norms.len(),
                    self.train_losses.len()
                ),
            });
        }
        if self.update_ratio.is_some_and(|r| r < 0.0) {
            return Err(ReportError {
                field: "update_ratio",
                reason: "an update ratio ‖Δw‖/‖w‖ must not be negative".into(),
            });
        }
        if self.grad_norms.iter().any(|&g| g < 0.0) {
            return Err(ReportError {
                field: "grad_norms",
                reason: "gradient norms must not be negative".into(),
            });
        }
        let (train_loss_mean, train_loss_std) = mean_std(&self.train_losses);
        let (grad_norm_mean, grad_norm_std) = mean_std(&self.grad_norms);
        let finite = self.train_losses.iter().all(|l| l.is_finite())
            && self.val_loss.is_finite()
            && self.grad_norms.iter().all(|g| g.is_finite());
        Ok(EpochStats {
            epoch,
            epochs_done: epoch as f64,
            steps: self.train_losses.len(),
            lr: hp.lr,
            momentum: hp.momentum,
            train_loss_mean,
            train_loss_std,
            train_loss_first: self.train_losses[0],
            train_loss_last: *self.train_losses.last().expect("not empty"),
            val_loss: self.val_loss,
            val_metric: self.val_metric.unwrap_or(f64::NAN),
            grad_norm_mean,
            grad_norm_std,
            grad_norm_max: self.grad_norms.iter().copied().fold(f64::NAN, f64::max),
            layer_grad_norms: Vec::new(),
            grad_cos_mean: f64::NAN,
            weight_norm: f64::NAN,
            update_ratio: self.update_ratio.unwrap_or(f64::NAN),
            wall_secs: 0.0,
            diverged: !finite,
        })
    }
}

/// The session's answer to one observed epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDecision {
    /// The next epoch's hyperparameters.
    pub hp: Hyperparams,
    /// With the guard: the epoch just reported diverged or blew up and is undone; restore the
    /// state saved after this epoch (0: the initial state) before training on at `hp`.
    pub restore_epoch: Option<usize>,
    /// The run diverged and the guard could not (or was not asked to) undo it: stop training.
    pub diverged: bool,
    /// The run is over (budget spent, or diverged); no further epoch is expected.
    pub done: bool,
    /// With the guard: keep the state after this epoch (model and optimizer); a later
    /// `restore_epoch` names the last epoch marked so (or 0, the initial state).
    pub keep: bool,
    /// Problems with what the loop reports that make the policy see less than it was trained
    /// on (each given once per session).
    pub warnings: Vec<String>,
}

/// The report fields a learned policy reads, beyond the required ones.
pub const FEATURE_FIELDS: [&str; 2] = ["grad_norms", "update_ratio"];

/// One training run under a controller, driven by the run's own loop.
pub struct LiveSession {
    controller: Box<dyn Controller + Send>,
    decisions: DecisionLoop,
    initial_val_known: bool,
    warned: Vec<&'static str>,
}

impl LiveSession {
    /// Starts a run of `epochs` epochs from `start` (clamped into the env's bounds) and returns
    /// the session and the first epoch's hyperparameters. `initial_val_loss` is the untrained
    /// model's validation loss; when unknown, the first minibatch loss of epoch 1 stands in.
    /// `steps_per_epoch` matters only to step-based schedules (use 1 when unknown). `guard`
    /// turns on the deployment guard (as `train --rollback`).
    pub fn open(
        mut controller: Box<dyn Controller + Send>,
        env: EnvConfig,
        epochs: usize,
        start: Hyperparams,
        initial_val_loss: Option<f64>,
        steps_per_epoch: usize,
        guard: Option<Rollback>,
    ) -> Result<(Self, Hyperparams), ReportError> {
        if !(1..=crate::stats::MAX_EPOCHS).contains(&epochs) {
            return Err(ReportError {
                field: "epochs",
                reason: format!("{epochs} is outside 1..={}", crate::stats::MAX_EPOCHS),
            });
        }
        if !(start.lr.is_finite() && start.lr > 0.0) {
            return Err(ReportError {
                field: "lr",
                reason: format!("expected a positive learning rate, got {}", start.lr),
            });
        }
        if !(0.0..1.0).contains(&start.momentum) {
            return Err(ReportError {
                field: "momentum",
                reason: format!("expected a momentum in [0, 1), got {}", start.momentum),
            });
        }
        if controller.method() != crate::stats::Method::INNER {
            // A parameter-free rule or an average lives in hyperctl's trainer: a loop that is
            // not ours would get the rule's start hyperparameters and nothing else.
            return Err(ReportError {
                field: "controller",
                reason: format!(
                    "`{}` replaces the optimizer or averages the weights inside hyperctl's trainer; \
                     a live session only sets lr and momentum (use the reference package in your loop, \
                     or `hyperctl train`)",
                    controller.spec()
                ),
            });
        }
        if let Some(v) = initial_val_loss.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(ReportError {
                field: "initial_val_loss",
                reason: format!("expected a finite loss ≥ 0, got {v}"),
            });
        }
        let mut decisions =
            DecisionLoop::new(env, epochs, start, initial_val_loss.unwrap_or(1.0), guard);
        let steps = steps_per_epoch.max(1);
        controller.reset(&decisions.context(steps, steps));
        let obs = decisions.initial_obs();
        let first = decisions.decide(controller.as_mut(), &obs);
        Ok((
            Self {
                controller,
                decisions,
                initial_val_known: initial_val_loss.is_some(),
                warned: Vec::new(),
            },
            first,
        ))
    }

    /// Observes the epoch just finished and returns the next epoch's hyperparameters.
    pub fn observe(&mut self, report: &EpochReport) -> Result<LiveDecision, ReportError> {
        if self.decisions.ended() {
            return Err(self.ended_error());
        }
        let stats = report.to_stats(self.decisions.intervals() + 1, self.decisions.current())?;
        if self.decisions.intervals() == 0 && !self.initial_val_known {
            self.decisions.set_initial_val_loss(stats.train_loss_first);
        }
        let mut warnings = Vec::new();
        if self.controller.reads_observation() {
            let missing = [
                (
                    "grad_norms",
                    report.grad_norms.is_empty(),
                    "inputs grad_norm_rel and grad_noise sit",
                ),
                (
                    "update_ratio",
                    report.update_ratio.is_none(),
                    "input log10_update_ratio sits",
                ),
            ];
            for (field, absent, features) in missing {
                if absent && !self.warned.contains(&field) {
                    self.warned.push(field);
                    warnings.push(format!(
                        "`{field}` not sent: the policy's {features} at a neutral value it never saw in training; send it every epoch"
                    ));
                }
            }
        }
        let mut decision = self.observe_stats(stats)?;
        decision.warnings = warnings;
        Ok(decision)
    }

    /// Observes statistics in our trainer's form (what [`LiveSession::observe`] builds).
    pub fn observe_stats(&mut self, stats: EpochStats) -> Result<LiveDecision, ReportError> {
        if self.decisions.ended() {
            return Err(self.ended_error());
        }
        let (obs, restore_epoch, diverged, keep) = match self.decisions.observe(stats) {
            Observed::Kept {
                obs,
                diverged,
                good,
            } => (obs, None, diverged, good),
            Observed::RolledBack { obs, restore_epoch } => (obs, Some(restore_epoch), false, false),
        };
        let done = self.decisions.ended();
        // Like run_schedule, no decision after the run is over: the reply repeats the last one.
        let hp = if done {
            self.decisions.current()
        } else {
            self.decisions.decide(self.controller.as_mut(), &obs)
        };
        Ok(LiveDecision {
            hp,
            restore_epoch,
            diverged,
            done,
            keep,
            warnings: Vec::new(),
        })
    }

    fn ended_error(&self) -> ReportError {
        let diverged = self.decisions.last().is_some_and(|s| s.diverged);
        ReportError {
            field: "epoch",
            reason: if diverged {
                format!(
                    "the run diverged at epoch {} and is over",
                    self.decisions.intervals()
                )
            } else {
                format!(
                    "the run's budget of {} epochs is spent",
                    self.decisions.budget()
                )
            },
        }
    }

    /// Epochs observed so far (rolled-back ones included).
    pub fn epochs_done(&self) -> usize {
        self.decisions.intervals()
    }

    /// The epoch budget given at open.
    pub fn epochs(&self) -> usize {
        self.decisions.budget()
    }

    /// The hyperparameters chosen for the next epoch.
    pub fn current(&self) -> Hyperparams {
        self.decisions.current()
    }

    /// Epochs undone by the guard so far.
    pub fn rollbacks(&self) -> usize {
        self.decisions.rollbacks()
    }
}
