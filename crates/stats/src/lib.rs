//! What one decision interval of training reports, and the hyperparameters it ran with: the data
//! every controller reads, whoever trained (hyperctl's trainer, a burn loop, PyTorch).
//!
//! # Architecture invariants
//! - Plain data: no burn, no RL. The trainer (`hyperctl-tasks`) produces these; the decision path
//!   (`hyperctl-decide`) reads them; neither knows the other.

#![warn(missing_docs)]

pub mod method;

pub use method::{ADAMW_BETA2, ADAMW_EPS, Averaging, LrRangeTest, Method, OptimizerKind, StepRule};

/// The largest budget a task (or a live session) may have, in decision intervals (per-interval
/// records are kept in memory, so a budget is also a memory bound).
pub const MAX_EPOCHS: usize = 100_000;

/// A value outside its range, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidValue {
    /// The field.
    pub field: &'static str,
    /// What was expected.
    pub reason: String,
}

/// Learning rate and momentum for the next decision interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyperparams {
    /// Learning rate, finite and ≥ 0.
    pub lr: f64,
    /// Momentum μ in [0, 1).
    pub momentum: f64,
}

impl Hyperparams {
    /// Checks the values, naming the bad field.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(InvalidValue {
                field: "lr",
                reason: format!("{} is not a finite value ≥ 0", self.lr),
            });
        }
        if !(self.momentum >= 0.0 && self.momentum < 1.0) {
            return Err(InvalidValue {
                field: "momentum",
                reason: format!("{} is outside [0, 1)", self.momentum),
            });
        }
        Ok(())
    }
}

/// Validation or test loss and metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EvalStats {
    /// Mean loss (cross-entropy, or MSE on standardized targets).
    pub loss: f64,
    /// Accuracy (classification) or R² (regression).
    pub metric: f64,
}

/// The mean gradient norm of one layer over an interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerGradNorm {
    /// Module path, e.g. `hidden.0` or `conv1`.
    pub layer: String,
    /// Mean over the interval's steps of the layer's gradient L2 norm.
    pub mean: f64,
}

/// Statistics of one decision interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochStats {
    /// 1-based index of the interval.
    pub epoch: usize,
    /// Passes over the train split completed so far (fractional with `steps_per_decision`).
    pub epochs_done: f64,
    /// Minibatch steps taken in this interval.
    pub steps: usize,
    /// The learning rate used.
    pub lr: f64,
    /// The momentum used.
    pub momentum: f64,
    /// Mean of the minibatch losses.
    pub train_loss_mean: f64,
    /// Standard deviation of the minibatch losses.
    pub train_loss_std: f64,
    /// Loss of the first minibatch (before its update).
    pub train_loss_first: f64,
    /// Loss of the last minibatch.
    pub train_loss_last: f64,
    /// Validation loss after the interval.
    pub val_loss: f64,
    /// Validation accuracy or R² after the interval.
    pub val_metric: f64,
    /// Mean of the per-step global gradient L2 norms.
    pub grad_norm_mean: f64,
    /// Standard deviation of the per-step global gradient norms.
    pub grad_norm_std: f64,
    /// Largest per-step global gradient norm.
    pub grad_norm_max: f64,
    /// Per-layer mean gradient norms, in model order.
    pub layer_grad_norms: Vec<LayerGradNorm>,
    /// Mean cosine between consecutive minibatch gradients (g_t · g_{t−1} / ‖g_t‖‖g_{t−1}‖) over
    /// the interval's steps; the first step of a run has no predecessor. NaN when no pair exists.
    /// Positive: successive steps agree (the lr could grow); negative: they oscillate.
    pub grad_cos_mean: f64,
    /// L2 norm of all parameters after the interval.
    pub weight_norm: f64,
    /// ‖w_after − w_before‖ / ‖w_before‖ over the interval.
    pub update_ratio: f64,
    /// Wall-clock seconds of the interval (training and validation).
    pub wall_secs: f64,
    /// Whether the run diverged (see the module docs for the rule).
    pub diverged: bool,
}

/// Mean and population standard deviation (NaN, NaN when empty): how every per-interval
/// statistic is summarized.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    mean_std_of(values.iter().copied())
}

/// [`mean_std`] of any re-iterable sequence (two passes: the mean, then the squared deviations),
/// without collecting it: the one home of the mean/std that statistics and standardization use.
pub fn mean_std_of(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (mut n, mut sum) = (0usize, 0f64);
    for v in values.clone() {
        n += 1;
        sum += v;
    }
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var.sqrt())
}
