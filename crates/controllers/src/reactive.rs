//! Reactive heuristics: they read each interval's statistics and adjust the learning rate.
//!
//! | SPEC | rule | defaults |
//! |---|---|---|
//! | `plateau[:lr,momentum,factor,patience,threshold,cooldown,min_lr]` | PyTorch ReduceLROnPlateau on the validation loss (mode `min`, relative threshold): after more than `patience` intervals without a relative improvement of `threshold`, lr ← max(lr·factor, min_lr), then `cooldown` intervals of rest | PyTorch's (factor 0.1, threshold 1e-4, cooldown 0, min_lr 0, eps 1e-8) except patience: PyTorch's 10 is half or all of a 10–20-epoch budget, so patience = clamp(round(T/10), 1, 10) |
//! | `simple-reactive[:lr,momentum,a,b]` | DAC4SGD's simple reactive rule on the interval's mean train loss: lr ← lr·a if it fell below the previous interval's, else lr ← lr/b | a = 1.1, b = 2 |
//! | `hypergradient[:lr,momentum,beta]` | multiplicative hypergradient descent (Baydin et al. 2018, normalized form) aggregated over the interval: each step contributes a factor (1 + β·cos(g_t, g_{t−1})), so lr ← lr·(1 + β·c̄)^steps with c̄ the interval's mean consecutive-gradient cosine; the factor is kept in [1/2, 2] per interval, so lr stays positive and cannot jump | β = 0.02 |
//!
//! `lr` and `momentum` left out start from the task's initial values. Momentum is held fixed.

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::Hyperparams;

use crate::spec::{ControllerSpec, SpecError};

/// Which rule, with its parameters.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Plateau {
        factor: f64,
        patience: Option<usize>,
        threshold: f64,
        cooldown: usize,
        min_lr: f64,
    },
    SimpleReactive {
        a: f64,
        b: f64,
    },
    Hypergradient {
        beta: f64,
    },
}

/// State of ReduceLROnPlateau within an episode.
#[derive(Debug, Clone, Default)]
struct PlateauState {
    best: f64,
    bad_intervals: usize,
    cooldown_left: usize,
}

/// A reactive controller.
#[derive(Debug, Clone)]
pub struct Reactive {
    spec: String,
    rule: Rule,
    lr: Option<f64>,
    momentum: Option<f64>,
    current: Option<Hyperparams>,
    patience: usize,
    plateau: PlateauState,
    previous_train_loss: Option<f64>,
}

impl Reactive {
    /// Builds `plateau`, `simple-reactive` or `hypergradient` from a SPEC.
    pub fn from_spec(spec: &ControllerSpec) -> Result<Self, SpecError> {
        let rule = match spec.name.as_str() {
            "plateau" => {
                spec.only(&[
                    "lr",
                    "momentum",
                    "factor",
                    "patience",
                    "threshold",
                    "cooldown",
                    "min_lr",
                ])?;
                let whole = |key: &str| -> Result<Option<usize>, SpecError> {
                    match spec.get_in(key, 0.0, 1e6)? {
                        Some(v) if v.fract() != 0.0 => Err(SpecError::new(
                            &spec.raw,
                            format!("{key}={v} must be a whole number"),
                        )),
                        other => Ok(other.map(|v| v as usize)),
                    }
                };
                Rule::Plateau {
                    factor: spec.get_in("factor", 0.0, 0.999)?.unwrap_or(0.1),
                    patience: whole("patience")?,
                    threshold: spec.get_in("threshold", 0.0, 1.0)?.unwrap_or(1e-4),
                    cooldown: whole("cooldown")?.unwrap_or(0),
                    min_lr: spec.get_in("min_lr", 0.0, 10.0)?.unwrap_or(0.0),
                }
            }
            "simple-reactive" => {
                spec.only(&["lr", "momentum", "a", "b"])?;
                Rule::SimpleReactive {
                    a: spec.get_in("a", 1.0, 10.0)?.unwrap_or(1.1),
                    b: spec.get_in("b", 1.0, 10.0)?.unwrap_or(2.0),
                }
            }
            "hypergradient" => {
                spec.only(&["lr", "momentum", "beta"])?;
                Rule::Hypergradient {
                    beta: spec.get_in("beta", 0.0, 0.5)?.unwrap_or(0.02),
                }
            }
            other => {
                return Err(SpecError::new(
                    &spec.raw,
                    format!("`{other}` is not a reactive rule"),
                ));
            }
        };
        Ok(Self {
            spec: spec.raw.clone(),
            rule,
            lr: spec.get_in("lr", 0.0, f64::MAX)?,
            momentum: spec.get_in("momentum", 0.0, 0.999_999)?,
            current: None,
            patience: 0,
            plateau: PlateauState::default(),
            previous_train_loss: None,
        })
    }
}

impl Controller for Reactive {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reads_grad_cosine(&self) -> bool {
        matches!(self.rule, Rule::Hypergradient { .. })
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.current = Some(Hyperparams {
            lr: self.lr.unwrap_or(context.init.lr),
            momentum: self.momentum.unwrap_or(context.init.momentum),
        });
        self.patience = match self.rule {
            Rule::Plateau { patience, .. } => {
                patience.unwrap_or(((context.epochs as f64 / 10.0).round() as usize).clamp(1, 10))
            }
            _ => 0,
        };
        self.plateau = PlateauState {
            best: f64::INFINITY,
            bad_intervals: 0,
            cooldown_left: 0,
        };
        self.previous_train_loss = None;
    }

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        let mut hp = self.current.expect("reset should be called before decide");
        // Continue from what the env actually used (its clamp may have changed our last choice).
        if input.last.is_some() {
            hp.lr = input.current.lr;
        }
        if let Some(stats) = input.last {
            match self.rule {
                Rule::Plateau {
                    factor,
                    threshold,
                    cooldown,
                    min_lr,
                    ..
                } => {
                    let s = &mut self.plateau;
                    let val = stats.val_loss;
                    if val < s.best * (1.0 - threshold) {
                        s.best = val;
                        s.bad_intervals = 0;
                    } else {
                        s.bad_intervals += 1;
                    }
                    if s.cooldown_left > 0 {
                        s.cooldown_left -= 1;
                        s.bad_intervals = 0;
                    }
                    if s.bad_intervals > self.patience {
                        let new_lr = (hp.lr * factor).max(min_lr);
                        if hp.lr - new_lr > 1e-8 {
                            hp.lr = new_lr;
                        }
                        s.cooldown_left = cooldown;
                        s.bad_intervals = 0;
                    }
                }
                Rule::SimpleReactive { a, b } => {
                    let loss = stats.train_loss_mean;
                    if let Some(previous) = self.previous_train_loss {
                        hp.lr = if loss < previous {
                            hp.lr * a
                        } else {
                            hp.lr / b
                        };
                    }
                    self.previous_train_loss = Some(loss);
                }
                Rule::Hypergradient { beta } => {
                    if stats.grad_cos_mean.is_finite() && stats.steps > 0 {
                        let factor = (1.0 + beta * stats.grad_cos_mean).powi(stats.steps as i32);
                        hp.lr *= factor.clamp(0.5, 2.0);
                    }
                }
            }
        }
        self.current = Some(hp);
        Decision::Set(hp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperctl_tasks::EpochStats;

    fn stats(train: f64, val: f64, grad_cos: f64, steps: usize) -> EpochStats {
        EpochStats {
            epoch: 1,
            epochs_done: 1.0,
            steps,
            lr: 0.0,
            momentum: 0.0,
            train_loss_mean: train,
            train_loss_std: 0.0,
            train_loss_first: train,
            train_loss_last: train,
            val_loss: val,
            val_metric: 0.0,
            grad_norm_mean: 1.0,
            grad_norm_std: 0.0,
            grad_norm_max: 1.0,
            layer_grad_norms: vec![],
            grad_cos_mean: grad_cos,
            weight_norm: 1.0,
            update_ratio: 0.01,
            wall_secs: 0.0,
            diverged: false,
        }
    }

    /// Runs the controller over a sequence of interval statistics; returns the lrs chosen.
    fn lrs(spec: &str, budget: usize, seq: &[EpochStats]) -> Vec<f64> {
        let mut c = Reactive::from_spec(&ControllerSpec::parse(spec).unwrap()).unwrap();
        let init = Hyperparams {
            lr: 1.0,
            momentum: 0.9,
        };
        c.reset(&EpisodeContext {
            epochs: budget,
            init,
            steps_per_epoch: 10,
            steps_per_interval: 10,
        });
        let mut current = init;
        let mut out = Vec::new();
        for t in 0..=seq.len() {
            let input = DecisionInput {
                interval: t,
                obs: &[],
                last: if t == 0 { None } else { Some(&seq[t - 1]) },
                current,
            };
            let Decision::Set(hp) = c.decide(&input) else {
                panic!("reactive controllers set hyperparameters")
            };
            out.push(hp.lr);
            current = hp;
        }
        out
    }

    #[test]
    fn plateau_follows_pytorch_reduce_lr_on_plateau() {
        // patience 1: the lr drops on the 2nd bad interval in a row, then the count restarts.
        let vals = [1.0, 0.9, 0.9, 0.95, 0.8, 0.85, 0.85, 0.85];
        let seq: Vec<_> = vals.iter().map(|&v| stats(1.0, v, 0.0, 10)).collect();
        let got = lrs("plateau:patience=1,factor=0.5", 10, &seq);
        assert_eq!(got, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]);
        // A relative threshold: 0.99995 is not an improvement on 1.0 with threshold 1e-4.
        let seq: Vec<_> = [1.0, 0.99995, 0.99995]
            .iter()
            .map(|&v| stats(1.0, v, 0.0, 10))
            .collect();
        assert_eq!(
            lrs("plateau:patience=1", 10, &seq),
            vec![1.0, 1.0, 1.0, 0.1]
        );
        // Default patience for a 20-interval budget is 2; cooldown 1 skips one count after a drop.
        let seq: Vec<_> = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|&v| stats(1.0, v, 0.0, 10))
            .collect();
        assert_eq!(
            lrs("plateau:factor=0.5,cooldown=1", 20, &seq),
            vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
        );
    }

    #[test]
    fn simple_reactive_grows_on_improvement_and_halves_otherwise() {
        let seq: Vec<_> = [2.0, 1.5, 1.6, 1.0]
            .iter()
            .map(|&t| stats(t, 1.0, 0.0, 10))
            .collect();
        let got = lrs("simple-reactive", 10, &seq);
        let expected = [1.0, 1.0, 1.1, 0.55, 0.605];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn hypergradient_scales_lr_by_gradient_agreement_within_safeguards() {
        let seq = vec![
            stats(1.0, 1.0, 0.5, 10),
            stats(1.0, 1.0, -0.5, 10),
            stats(1.0, 1.0, 1.0, 100),
            stats(1.0, 1.0, f64::NAN, 10),
        ];
        let got = lrs("hypergradient:beta=0.02", 10, &seq);
        let up = 1.01f64.powi(10);
        let down = 0.99f64.powi(10);
        let expected = [1.0, up, up * down, up * down * 2.0, up * down * 2.0];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?} vs {expected:?}");
        }
    }
}
