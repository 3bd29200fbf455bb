//! How gradients become steps: the task's inner optimizer ([`OptimizerKind`]), and what a
//! controller may ask of the trainer beyond a learning rate and momentum ([`Method`]: a
//! parameter-free step rule in place of the inner optimizer, iterate averaging). Plain data: the
//! trainer (`hyperctl-tasks`) carries them out, controllers (`hyperctl-controllers`) name them.

use std::fmt;
use std::str::FromStr;

/// The inner optimizer of a task: what a controller's learning rate and momentum drive.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum in PyTorch semantics (`torch.optim.SGD`, dampening 0); the task's
    /// weight decay is an L2 term added to the gradient.
    #[default]
    Sgd,
    /// AdamW in PyTorch semantics (`torch.optim.AdamW`): the controller's momentum is beta1
    /// (beta2 = 0.999 and eps = 1e-8 are kept), the task's weight decay is decoupled
    /// (`w ← w·(1 − lr·wd)`).
    Adamw,
}

impl OptimizerKind {
    /// Its name in task files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adamw => "adamw",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adamw" => Ok(OptimizerKind::Adamw),
            other => Err(format!(
                "unknown optimizer `{other}`; expected sgd or adamw"
            )),
        }
    }
}

/// AdamW's second-moment decay (PyTorch's default), kept while beta1 follows the controller.
pub const ADAMW_BETA2: f64 = 0.999;
/// AdamW's epsilon (PyTorch's default; burn's `AdamConfig` defaults to 1e-5).
pub const ADAMW_EPS: f64 = 1e-8;

/// How the trainer turns a minibatch gradient into a step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum StepRule {
    /// The task's inner optimizer ([`OptimizerKind`]) at the controller's lr and momentum.
    Inner,
    /// DoG (Ivgi, Hinder & Carmon 2023; PyPI `dog-optimizer` 1.0.3): plain SGD steps of size
    /// `η_t = max_{i≤t} ‖x_i − x_0‖ / √(Σ_{i≤t} ‖g_i‖² + eps)`, the distance starting at
    /// `reps_rel · (1 + ‖x_0‖)`; `layerwise` is L-DoG (the same per parameter tensor). The
    /// task's weight decay is added to the gradient first, as the reference does. No lr, no
    /// momentum: the controller's are ignored.
    Dog {
        /// `r_ε` relative to `1 + ‖x_0‖` (reference default 1e-6).
        reps_rel: f64,
        /// L-DoG: one step size per parameter tensor.
        layerwise: bool,
    },
    /// Schedule-Free SGD (Defazio et al. 2024; PyPI `schedulefree` 1.4.1 `SGDScheduleFree`), or
    /// Schedule-Free AdamW (`AdamWScheduleFree`) on AdamW tasks. The lr is the controller's
    /// (the task's start: an untuned start stays untuned), warmed up linearly over the first
    /// `warmup_fraction` of the run's minibatch steps; gradients are taken at `y`, evaluation is
    /// at the average `x`.
    ScheduleFree {
        /// The interpolation (momentum) β, in (0, 1) (reference default 0.9).
        beta: f64,
        /// Linear warmup, as a fraction of the run's minibatch steps (rounded).
        warmup_fraction: f64,
        /// The average's weights are `lr_max^weight_lr_power` (reference default 2).
        weight_lr_power: f64,
    },
    /// Prodigy (Mishchenko & Defazio 2024; PyPI `prodigyopt` 1.1.2): Adam whose step is scaled
    /// by a running estimate `d` of the distance to the solution; lr 1 (a multiplier), betas
    /// (0.9, 0.999), β3 = √β2, eps 1e-8, decoupled weight decay, no bias correction, no
    /// safeguard warmup. The controller's lr and momentum are ignored.
    Prodigy {
        /// Initial distance estimate (reference default 1e-6).
        d0: f64,
    },
    /// D-Adaptation SGD (Defazio & Mishchenko 2023; PyPI `dadaptation` 3.2 `DAdaptSGD`):
    /// dual averaging whose step `d·lr/‖g_0‖` grows with a lower bound `d` on the distance to
    /// the solution; lr 1 (a multiplier), L2 weight decay. The controller's lr is ignored.
    DAdaptSgd {
        /// Initial distance estimate (reference default 1e-6).
        d0: f64,
        /// Momentum (reference default 0).
        momentum: f64,
    },
}

impl StepRule {
    /// Whether the rule reads the controller's learning rate (only the inner optimizer and
    /// Schedule-Free have one).
    pub fn reads_lr(&self) -> bool {
        matches!(self, StepRule::Inner | StepRule::ScheduleFree { .. })
    }
}

/// Iterate averaging: validation and test losses are measured at the averaged weights (the
/// trained iterate goes on unchanged).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "average", rename_all = "kebab-case")]
pub enum Averaging {
    /// Polynomial-decay averaging (Shamir & Zhang 2013; `dog-optimizer`'s
    /// `PolynomialDecayAverager`): `x̄_t = (1 − c_t) x̄_{t−1} + c_t x_t`, `c_t = (γ+1)/(γ+t)`,
    /// `t = 1, 2, …` counting steps (so `x̄_1 = x_1`).
    PolyDecay {
        /// γ (the DoG authors' prescription: 8).
        gamma: f64,
    },
    /// Exponential moving average `x̄_t = decay · x̄_{t−1} + (1 − decay) x_t`, starting from the
    /// initial weights.
    Ema {
        /// The decay, in (0, 1).
        decay: f64,
    },
}

/// An LR range test before training (Smith 2017; fastai's `lr_find`): minibatch steps with the
/// learning rate growing exponentially from `start_lr` to `end_lr`, stopped early when the
/// smoothed loss exceeds 4× its best or is not finite; the learning rate is picked from the curve
/// (fastai's `valley` rule), then the weights, optimizer state and data order go back to where
/// they were before the test (fastai reloads its saved model). The test's steps count against the
/// run's budget: the first intervals afterwards are shorter by as many steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LrRangeTest {
    /// The first step's lr (fastai: 1e-7).
    pub start_lr: f64,
    /// The lr the sweep would reach at its last step (fastai: 10).
    pub end_lr: f64,
    /// Steps of the sweep (fastai: 100), at most a quarter of the run's budget.
    pub steps: usize,
}

/// What a controller asks of the trainer besides its learning rate and momentum.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Method {
    /// The step rule.
    pub rule: StepRule,
    /// Iterate averaging, if any.
    pub average: Option<Averaging>,
    /// An LR range test before training; its pick becomes the run's starting lr.
    pub lr_range_test: Option<LrRangeTest>,
}

impl Method {
    /// The inner optimizer, no averaging: what every controller but the parameter-free ones
    /// and `average(SPEC)` runs.
    pub const INNER: Method = Method {
        rule: StepRule::Inner,
        average: None,
        lr_range_test: None,
    };
}

impl Default for Method {
    fn default() -> Self {
        Method::INNER
    }
}
