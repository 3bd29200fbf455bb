//! [`LiveSession`]: a controller running beside a training loop that is not ours (a user's own
//! burn loop, or any framework through `hyperctl serve`). The loop reports each epoch's
//! per-minibatch losses and gradient norms and its validation loss ([`EpochReport`]); the session
//! turns them into the same [`EpochStats`] our trainer produces, observes them with the same
//! [`Featurizer`], asks the controller, and maps its decision with the same [`apply_action`] /
//! [`clamp_hparams`] as [`run_schedule`](crate::run_schedule). Fed our trainer's statistics, it
//! chooses exactly what `run_schedule` chooses (tested).

use hyperctl_tasks::trainer::mean_std;
use hyperctl_tasks::{EpochStats, Hyperparams};

use crate::action::{apply_action, clamp_hparams};
use crate::config::EnvConfig;
use crate::controller::{Controller, Decision, DecisionInput, EpisodeContext};
use crate::env::action_space;
use crate::features::Featurizer;

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

/// One training run under a controller, driven by the run's own loop.
pub struct LiveSession {
    controller: Box<dyn Controller + Send>,
    env: EnvConfig,
    epochs: usize,
    featurizer: Featurizer,
    initial_val_loss: Option<f64>,
    hp: Hyperparams,
    last: Option<EpochStats>,
    epoch: usize,
}

impl LiveSession {
    /// Starts a run of `epochs` epochs from `start` (clamped into the env's bounds) and returns
    /// the session and the first epoch's hyperparameters. `initial_val_loss` is the untrained
    /// model's validation loss; when unknown, the first minibatch loss of epoch 1 stands in.
    /// `steps_per_epoch` matters only to step-based schedules (use 1 when unknown).
    pub fn open(
        mut controller: Box<dyn Controller + Send>,
        env: EnvConfig,
        epochs: usize,
        start: Hyperparams,
        initial_val_loss: Option<f64>,
        steps_per_epoch: usize,
    ) -> Result<(Self, Hyperparams), ReportError> {
        if epochs == 0 {
            return Err(ReportError {
                field: "epochs",
                reason: "expected at least 1".into(),
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
        if let Some(v) = initial_val_loss.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(ReportError {
                field: "initial_val_loss",
                reason: format!("expected a finite loss ≥ 0, got {v}"),
            });
        }
        let hp = clamp_hparams(start, &env);
        controller.reset(&EpisodeContext {
            epochs,
            init: hp,
            steps_per_epoch: steps_per_epoch.max(1),
            steps_per_interval: steps_per_epoch.max(1),
        });
        let featurizer = Featurizer::new(initial_val_loss.unwrap_or(1.0), epochs);
        let mut session = Self {
            controller,
            env,
            epochs,
            featurizer,
            initial_val_loss,
            hp,
            last: None,
            epoch: 0,
        };
        let obs = session.featurizer.initial(hp);
        let first = session.decide(&obs);
        Ok((session, first))
    }

    /// Observes the epoch just finished and returns the next epoch's hyperparameters.
    pub fn observe(&mut self, report: &EpochReport) -> Result<Hyperparams, ReportError> {
        let stats = report.to_stats(self.epoch + 1, self.hp)?;
        if self.epoch == 0 && self.initial_val_loss.is_none() {
            self.featurizer = Featurizer::new(stats.train_loss_first, self.epochs);
        }
        Ok(self.observe_stats(stats))
    }

    /// Observes statistics in our trainer's form (what [`LiveSession::observe`] builds).
    pub fn observe_stats(&mut self, stats: EpochStats) -> Hyperparams {
        self.epoch += 1;
        let obs = self.featurizer.observe(&stats, self.hp);
        self.last = Some(stats);
        self.decide(&obs)
    }

    fn decide(&mut self, obs: &[f32]) -> Hyperparams {
        let decision = self.controller.decide(&DecisionInput {
            interval: self.epoch,
            obs,
            last: self.last.as_ref(),
            current: self.hp,
        });
        self.hp = match decision {
            Decision::Action(a) => apply_action(self.hp, &action_space().clip(&a), &self.env),
            Decision::Set(hp) => clamp_hparams(hp, &self.env),
        };
        self.hp
    }

    /// Epochs observed so far.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// The epoch budget given at open.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// The hyperparameters chosen for the next epoch.
    pub fn current(&self) -> Hyperparams {
        self.hp
    }
}
