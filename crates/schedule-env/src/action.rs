//! The ONE mapping from an action in [−1, 1]² to the next hyperparameters, and the clamp that
//! every controller's choice (learned or fixed) passes through.
//!
//! ```text
//! lr'      = clamp(lr · 2^(a₀ · lr_log2_step),              lr_min, lr_max)
//! 1 − μ'   = clamp((1 − μ) · 10^(−a₁ · momentum_log10_step), 1 − momentum_max, 1 − momentum_min)
//! ```
//! So a₀ = +1 doubles the learning rate (default step), a₁ = +1 moves momentum towards 1 by half a
//! decade of (1 − μ) (0 → 0.68 → 0.9 → 0.968 → 0.99). Actions are clipped to [−1, 1] first; a
//! NaN component counts as 0 (no change).

use hyperctl_tasks::Hyperparams;

use crate::config::EnvConfig;

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
    let lr = current.lr * (a(0) * config.lr_log2_step).exp2();
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
}
