//! The ONE mapping from an action in [−1, 1]² to the next hyperparameters, and the clamp that
//! every controller's choice (learned or fixed) passes through.
//!
//! ```text
//! lr'      = clamp(lr · 2^(sign(a₀)·|a₀|^p · s),  lr_min, lr_max)   (p = lr_action_power;
//!             s = lr_log2_step, or lr_down_log2_step when a₀ < 0 and it is set)
//! 1 − μ'   = clamp((1 − μ) · 10^(−a₁ · momentum_log10_step), 1 − momentum_max, 1 − momentum_min)
//! ```
//! So a₀ = +1 doubles the learning rate (default step, p = 1), a₁ = +1 moves momentum towards 1
//! by half a decade of (1 − μ) (0 → 0.68 → 0.9 → 0.968 → 0.99). Actions are clipped to [−1, 1] first; a
//! NaN component counts as 0 (no change).

use crate::stats::Hyperparams;

use crate::config::EnvConfig;
use hyperctl_env_core::BoxSpace;

/// The action space of every schedule env: [−1, 1]².
pub fn action_space() -> BoxSpace {
    BoxSpace::uniform(2, -1.0, 1.0).expect("[-1, 1]^2 is a valid box")
}

/// Applies `action` to `current` (see the module docs).
pub fn apply_action(current: Hyperparams, action: &[f32], config: &EnvConfig) -> Hyperparams {
    assert_eq!(
        action.len(),
        2,
        "the schedule action should have 2 components"
    );
    let a = |i: usize| {
        if action[i].is_nan() {
            0.0
        } else {
            (action[i] as f64).clamp(-1.0, 1.0)
        }
    };
    let a0 = a(0);
    let shaped = a0.signum() * a0.abs().powf(config.lr_action_power);
    let lr = current.lr * (shaped * config.lr_step_for(a0)).exp2();
    let one_minus = (1.0 - current.momentum) * 10f64.powf(-a(1) * config.momentum_log10_step);
    clamp_hparams(
        Hyperparams {
            lr,
            momentum: 1.0 - one_minus,
        },
        config,
    )
}

/// Clamps hyperparameters into the environment's bounds (NaN goes to the lower bound).
pub fn clamp_hparams(hp: Hyperparams, config: &EnvConfig) -> Hyperparams {
    let clamp = |v: f64, lo: f64, hi: f64| if v.is_nan() { lo } else { v.clamp(lo, hi) };
    Hyperparams {
        lr: clamp(hp.lr, config.lr_min, config.lr_max),
        momentum: clamp(hp.momentum, config.momentum_min, config.momentum_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_actions_double_or_halve_lr_and_move_momentum_by_half_a_decade() {
        let c = EnvConfig::defaults();
        let hp = Hyperparams {
            lr: 0.1,
            momentum: 0.9,
        };
        let up = apply_action(hp, &[1.0, 1.0], &c);
        assert!((up.lr - 0.2).abs() < 1e-12);
        assert!((1.0 - up.momentum - 0.1 * 10f64.powf(-0.5)).abs() < 1e-12);
        let down = apply_action(hp, &[-1.0, -1.0], &c);
        assert!((down.lr - 0.05).abs() < 1e-12);
        assert!((1.0 - down.momentum - 0.1 * 10f64.powf(0.5)).abs() < 1e-12);
        assert_eq!(apply_action(hp, &[0.0, 0.0], &c), hp);
        assert_eq!(
            apply_action(hp, &[f32::NAN, 7.0], &c),
            apply_action(hp, &[0.0, 1.0], &c)
        );
    }

    #[test]
    fn hyperparameters_stay_inside_their_bounds() {
        let c = EnvConfig::defaults();
        let mut hp = Hyperparams {
            lr: 5.0,
            momentum: 0.98,
        };
        for _ in 0..10 {
            hp = apply_action(hp, &[1.0, 1.0], &c);
        }
        assert_eq!(
            hp,
            Hyperparams {
                lr: 10.0,
                momentum: 0.99
            }
        );
        for _ in 0..40 {
            hp = apply_action(hp, &[-1.0, -1.0], &c);
        }
        assert_eq!(
            hp,
            Hyperparams {
                lr: 1e-5,
                momentum: 0.0
            }
        );
        assert_eq!(
            clamp_hparams(
                Hyperparams {
                    lr: f64::NAN,
                    momentum: 2.0
                },
                &c
            ),
            Hyperparams {
                lr: 1e-5,
                momentum: 0.99
            }
        );
    }

    /// The lr after action `a` (momentum action 0) from lr 0.01, momentum 0.9.
    fn lr_after(c: &EnvConfig, a: f32) -> f64 {
        let hp = Hyperparams {
            lr: 0.01,
            momentum: 0.9,
        };
        apply_action(hp, &[a, 0.0], c).lr
    }

    fn refused(bad: EnvConfig, field: &str) {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }

    #[test]
    fn a_power_above_one_refines_small_actions_and_keeps_the_full_step() {
        let c = EnvConfig {
            lr_log2_step: 3.0,
            lr_action_power: 2.0,
            ..EnvConfig::defaults()
        };
        c.validate().unwrap();
        let lr = |a: f32| lr_after(&c, a);
        // Full action: ×8 / ÷8 as with a linear action.
        assert!((lr(1.0) - 0.08).abs() < 1e-12);
        assert!((lr(-1.0) - 0.00125).abs() < 1e-12);
        // Half action: 2^(0.25 · 3) instead of the linear 2^(0.5 · 3); the sign is kept.
        assert!((lr(0.5) - 0.01 * 0.75f64.exp2()).abs() < 1e-12);
        assert!((lr(-0.5) - 0.01 * (-0.75f64).exp2()).abs() < 1e-12);
        assert_eq!(lr(0.0), 0.01);
        refused(
            EnvConfig {
                lr_action_power: 0.5,
                ..EnvConfig::defaults()
            },
            "lr_action_power",
        );
    }

    #[test]
    fn a_separate_down_step_lowers_faster_than_it_raises() {
        let c = EnvConfig {
            lr_log2_step: 2.0,
            lr_down_log2_step: Some(3.0),
            ..EnvConfig::defaults()
        };
        c.validate().unwrap();
        let lr = |a: f32| lr_after(&c, a);
        assert!((lr(1.0) - 0.04).abs() < 1e-12);
        assert!((lr(-1.0) - 0.00125).abs() < 1e-12);
        assert!((lr(-0.5) - 0.01 * (-1.5f64).exp2()).abs() < 1e-12);
        refused(
            EnvConfig {
                lr_down_log2_step: Some(0.0),
                ..EnvConfig::defaults()
            },
            "lr_down_log2_step",
        );
    }

    #[test]
    fn feature_versions_other_than_the_known_ones_are_refused() {
        for v in [1, 2] {
            EnvConfig {
                feature_version: v,
                ..EnvConfig::defaults()
            }
            .validate()
            .unwrap();
        }
        refused(
            EnvConfig {
                feature_version: 7,
                ..EnvConfig::defaults()
            },
            "feature_version",
        );
        // Version 1 is left out of records, so they read as before.
        let json = serde_json::to_string(&EnvConfig::defaults()).unwrap();
        assert!(!json.contains("feature_version"), "{json}");
        let v2 = EnvConfig {
            feature_version: 2,
            ..EnvConfig::defaults()
        };
        let json = serde_json::to_string(&v2).unwrap();
        assert_eq!(serde_json::from_str::<EnvConfig>(&json).unwrap(), v2);
    }
}
