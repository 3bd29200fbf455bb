//! [`EnvConfig`]: the environment's defaults (mirrored in `envs/schedule_env.toml`).

use serde::{Deserialize, Serialize};

/// Bounds, action scale and penalty of the schedule environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Return of an episode that diverges (its rewards sum to exactly −crash_penalty).
    #[serde(default = "defaults::crash_penalty")]
    pub crash_penalty: f64,
    /// Smallest learning rate.
    #[serde(default = "defaults::lr_min")]
    pub lr_min: f64,
    /// Largest learning rate.
    #[serde(default = "defaults::lr_max")]
    pub lr_max: f64,
    /// Smallest momentum.
    #[serde(default = "defaults::momentum_min")]
    pub momentum_min: f64,
    /// Largest momentum.
    #[serde(default = "defaults::momentum_max")]
    pub momentum_max: f64,
    /// Action 0 = ±1 multiplies the learning rate by 2^(±lr_log2_step).
    #[serde(default = "defaults::lr_log2_step")]
    pub lr_log2_step: f64,
    /// Step for lowering the lr: a₀ = −1 divides it by 2^lr_down_log2_step (default: the same as
    /// `lr_log2_step`; a larger one escapes a too-high start faster without climbing faster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_down_log2_step: Option<f64>,
    /// Shape of the lr action: the exponent is sign(a₀)·|a₀|^lr_action_power·lr_log2_step, so a
    /// power > 1 gives fine steps near a₀ = 0 and keeps the full step at |a₀| = 1 (1 = linear).
    #[serde(default = "defaults::lr_action_power")]
    pub lr_action_power: f64,
    /// Action 1 = ±1 multiplies (1 − momentum) by 10^(∓momentum_log10_step).
    #[serde(default = "defaults::momentum_log10_step")]
    pub momentum_log10_step: f64,
    /// Which observation the featurizer computes (`crate::features`): 1 (the default) or 2
    /// (version 1 with a two-interval memory of lr steps and loss changes). A policy runs only
    /// under the version it was trained with. Left out of records when 1, so earlier records read
    /// as before.
    #[serde(
        default = "defaults::feature_version",
        skip_serializing_if = "defaults::is_feature_version_1"
    )]
    pub feature_version: u32,
}

mod defaults {
    pub fn crash_penalty() -> f64 {
        10.0
    }
    pub fn lr_min() -> f64 {
        1e-5
    }
    pub fn lr_max() -> f64 {
        10.0
    }
    pub fn momentum_min() -> f64 {
        0.0
    }
    pub fn momentum_max() -> f64 {
        0.99
    }
    pub fn lr_log2_step() -> f64 {
        1.0
    }
    pub fn lr_action_power() -> f64 {
        1.0
    }
    pub fn momentum_log10_step() -> f64 {
        0.5
    }
    pub fn feature_version() -> u32 {
        crate::features::FEATURIZER_VERSION
    }
    pub fn is_feature_version_1(v: &u32) -> bool {
        *v == 1
    }
}

impl EnvConfig {
    /// The lr step (log₂) of a full action in direction `a0` (up: `lr_log2_step`; down:
    /// `lr_down_log2_step` when set).
    pub fn lr_step_for(&self, a0: f64) -> f64 {
        if a0 < 0.0 {
            self.lr_down_log2_step.unwrap_or(self.lr_log2_step)
        } else {
            self.lr_log2_step
        }
    }

    /// The documented defaults: penalty 10, lr in [1e-5, 10], momentum in [0, 0.99], lr ×2^±1
    /// (linear in the action) and (1 − μ) ×10^∓0.5 per decision at full action.
    pub fn defaults() -> Self {
        Self {
            crash_penalty: defaults::crash_penalty(),
            lr_min: defaults::lr_min(),
            lr_max: defaults::lr_max(),
            momentum_min: defaults::momentum_min(),
            momentum_max: defaults::momentum_max(),
            lr_log2_step: defaults::lr_log2_step(),
            lr_down_log2_step: None,
            lr_action_power: defaults::lr_action_power(),
            momentum_log10_step: defaults::momentum_log10_step(),
            feature_version: defaults::feature_version(),
        }
    }

    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<(), crate::InvalidValue> {
        let bad = |field: &'static str, reason: &str| {
            Err(crate::InvalidValue {
                field,
                reason: reason.into(),
            })
        };
        if !(self.crash_penalty.is_finite() && self.crash_penalty > 0.0) {
            return bad("crash_penalty", "must be a finite value > 0");
        }
        if !(self.lr_min > 0.0 && self.lr_min < self.lr_max && self.lr_max.is_finite()) {
            return bad("lr_min/lr_max", "need 0 < lr_min < lr_max < ∞");
        }
        if !(self.momentum_min >= 0.0
            && self.momentum_min < self.momentum_max
            && self.momentum_max < 1.0)
        {
            return bad(
                "momentum_min/momentum_max",
                "need 0 ≤ momentum_min < momentum_max < 1",
            );
        }
        if !(self.lr_log2_step > 0.0 && self.lr_log2_step <= 10.0) {
            return bad("lr_log2_step", "must be in (0, 10]");
        }
        if let Some(down) = self.lr_down_log2_step
            && !(down > 0.0 && down <= 10.0)
        {
            return bad("lr_down_log2_step", "must be in (0, 10]");
        }
        if !(self.lr_action_power >= 1.0 && self.lr_action_power <= 4.0) {
            return bad("lr_action_power", "must be in [1, 4]");
        }
        if !(self.momentum_log10_step > 0.0 && self.momentum_log10_step <= 2.0) {
            return bad("momentum_log10_step", "must be in (0, 2]");
        }
        if crate::features::feature_table(self.feature_version).is_none() {
            return bad(
                "feature_version",
                &format!(
                    "{} is not a feature version this build computes (expected one of {:?})",
                    self.feature_version,
                    crate::features::FEATURIZER_VERSIONS
                ),
            );
        }
        Ok(())
    }
}
