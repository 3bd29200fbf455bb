//! Fixed (open-loop) schedules, stepped once per decision interval (epoch) as PyTorch schedulers
//! are when `scheduler.step()` is called once per epoch. `t` is the 0-based interval, `T` the budget.
//!
//! | SPEC | lr at interval t | defaults |
//! |---|---|---|
//! | `step[:lr,momentum,step_size,gamma]` | lr·γ^⌊t/step_size⌋ (StepLR) | γ = 0.1, step_size = max(1, round(T/3)) (PyTorch has no default) |
//! | `exponential[:lr,momentum,gamma]` | lr·γ^t (ExponentialLR) | γ = 0.01^(1/(T−1)): 100× decay over the run (PyTorch has no default) |
//! | `cosine[:lr,momentum,eta_min]` | η_min + (lr − η_min)(1 + cos(πt/T))/2 (CosineAnnealingLR, T_max = T) | η_min = 0 |
//! | `warmup-cosine[:lr,momentum,warmup,eta_min]` | t < W: lr·(t+1)/W; then cosine from lr to η_min over the remaining T − W | W = max(1, round(T/10)), η_min = 0 |
//! | `onecycle[:max_lr,pct_start,div_factor,final_div_factor,base_momentum,max_momentum,cycle_momentum]` | OneCycleLR (cosine anneal, two phases), momentum cycled inversely | PyTorch's: 0.3, 25, 1e4, 0.85, 0.95, 1 |
//!
//! `lr` (`max_lr`) and `momentum` left out start from the task's initial values, as the policy does.

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::Hyperparams;

use crate::spec::{ControllerSpec, SpecError};

/// StepLR: `lr·γ^⌊t/step_size⌋`.
pub fn step_lr(lr: f64, gamma: f64, step_size: usize, t: usize) -> f64 {
    lr * gamma.powi((t / step_size.max(1)) as i32)
}

/// ExponentialLR: `lr·γ^t`.
pub fn exponential_lr(lr: f64, gamma: f64, t: usize) -> f64 {
    lr * gamma.powi(t as i32)
}

/// CosineAnnealingLR (closed form) with `T_max = budget`.
pub fn cosine_lr(lr: f64, eta_min: f64, t: usize, budget: usize) -> f64 {
    eta_min
        + (lr - eta_min) * (1.0 + (std::f64::consts::PI * t as f64 / budget.max(1) as f64).cos())
            / 2.0
}

/// Linear warmup over `warmup` intervals to `lr`, then cosine to `eta_min` over the rest.
pub fn warmup_cosine_lr(lr: f64, eta_min: f64, warmup: usize, t: usize, budget: usize) -> f64 {
    if t < warmup {
        lr * (t + 1) as f64 / warmup as f64
    } else {
        cosine_lr(
            lr,
            eta_min,
            t - warmup,
            budget.saturating_sub(warmup).max(1),
        )
    }
}

/// OneCycleLR parameters (PyTorch names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Fraction of the cycle spent increasing the lr.
    pub pct_start: f64,
    /// initial_lr = max_lr / div_factor.
    pub div_factor: f64,
    /// min_lr = initial_lr / final_div_factor.
    pub final_div_factor: f64,
    /// Momentum at the lr peak.
    pub base_momentum: f64,
    /// Momentum at the start and end.
    pub max_momentum: f64,
    /// Whether momentum is cycled.
    pub cycle_momentum: bool,
}

impl OneCycle {
    /// (lr, momentum) at step `t` of `total` steps, exactly as PyTorch's `OneCycleLR.get_lr`
    /// (two phases, cosine annealing).
    pub fn at(&self, t: usize, total: usize) -> (f64, Option<f64>) {
        let initial = self.max_lr / self.div_factor;
        let min_lr = initial / self.final_div_factor;
        let anneal = |start: f64, end: f64, pct: f64| {
            end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
        };
        let phases = [
            (
                self.pct_start * total as f64 - 1.0,
                initial,
                self.max_lr,
                self.max_momentum,
                self.base_momentum,
            ),
            (
                total as f64 - 1.0,
                self.max_lr,
                min_lr,
                self.base_momentum,
                self.max_momentum,
            ),
        ];
        let step = t as f64;
        let mut start_step = 0.0;
        for (i, &(end_step, lr0, lr1, m0, m1)) in phases.iter().enumerate() {
            if step <= end_step || i == phases.len() - 1 {
                let span = end_step - start_step;
                let pct = if span > 0.0 {
                    (step - start_step) / span
                } else {
                    1.0
                };
                let momentum = self.cycle_momentum.then(|| anneal(m0, m1, pct));
                return (anneal(lr0, lr1, pct), momentum);
            }
            start_step = end_step;
        }
        unreachable!("the last phase always matches")
    }
}

/// Which schedule, with its parameters as given (budget-dependent defaults resolved at reset).
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Step {
        step_size: Option<usize>,
        gamma: f64,
    },
    Exponential {
        gamma: Option<f64>,
    },
    Cosine {
        eta_min: f64,
    },
    WarmupCosine {
        warmup: Option<usize>,
        eta_min: f64,
    },
    OneCycle(OneCycle),
}

/// An open-loop schedule controller.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: String,
    kind: Kind,
    lr: Option<f64>,
    momentum: Option<f64>,
    /// Resolved at reset: base lr, momentum, budget.
    run: Option<(f64, f64, usize)>,
}

fn whole(spec: &ControllerSpec, key: &str) -> Result<Option<usize>, SpecError> {
    match spec.get_in(key, 0.0, 1e9)? {
        Some(v) if v.fract() != 0.0 || v < 1.0 => Err(SpecError::new(
            &spec.raw,
            format!("{key}={v} must be a whole number ≥ 1"),
        )),
        other => Ok(other.map(|v| v as usize)),
    }
}

impl Schedule {
    /// Builds `step`, `exponential`, `cosine`, `warmup-cosine` or `onecycle` from a SPEC.
    pub fn from_spec(spec: &ControllerSpec) -> Result<Self, SpecError> {
        let lr_key = if spec.name == "onecycle" {
            "max_lr"
        } else {
            "lr"
        };
        let kind = match spec.name.as_str() {
            "step" => {
                spec.only(&["lr", "momentum", "step_size", "gamma"])?;
                Kind::Step {
                    step_size: whole(spec, "step_size")?,
                    gamma: spec.get_in("gamma", 0.0, 1.0)?.unwrap_or(0.1),
                }
            }
            "exponential" => {
                spec.only(&["lr", "momentum", "gamma"])?;
                Kind::Exponential {
                    gamma: spec.get_in("gamma", 0.0, 1.0)?,
                }
            }
            "cosine" => {
                spec.only(&["lr", "momentum", "eta_min"])?;
                Kind::Cosine {
                    eta_min: spec.get_in("eta_min", 0.0, 10.0)?.unwrap_or(0.0),
                }
            }
            "warmup-cosine" => {
                spec.only(&["lr", "momentum", "warmup", "eta_min"])?;
                Kind::WarmupCosine {
                    warmup: whole(spec, "warmup")?,
                    eta_min: spec.get_in("eta_min", 0.0, 10.0)?.unwrap_or(0.0),
                }
            }
            "onecycle" => {
                spec.only(&[
                    "max_lr",
                    "pct_start",
                    "div_factor",
                    "final_div_factor",
                    "base_momentum",
                    "max_momentum",
                    "cycle_momentum",
                ])?;
                let base_momentum = spec.get_in("base_momentum", 0.0, 0.999)?.unwrap_or(0.85);
                let max_momentum = spec.get_in("max_momentum", 0.0, 0.999)?.unwrap_or(0.95);
                Kind::OneCycle(OneCycle {
                    max_lr: 0.0, // Resolved at reset (the SPEC's max_lr or the task's initial lr).
                    pct_start: spec.get_in("pct_start", 0.01, 0.99)?.unwrap_or(0.3),
                    div_factor: spec.get_in("div_factor", 1.0, 1e6)?.unwrap_or(25.0),
                    final_div_factor: spec.get_in("final_div_factor", 1.0, 1e9)?.unwrap_or(1e4),
                    base_momentum,
                    max_momentum,
                    cycle_momentum: spec.get_in("cycle_momentum", 0.0, 1.0)?.unwrap_or(1.0) != 0.0,
                })
            }
            other => {
                return Err(SpecError::new(
                    &spec.raw,
                    format!("`{other}` is not a schedule"),
                ));
            }
        };
        Ok(Self {
            spec: spec.raw.clone(),
            kind,
            lr: spec.get_in(lr_key, 0.0, f64::MAX)?,
            momentum: if spec.name == "onecycle" {
                None
            } else {
                spec.get_in("momentum", 0.0, 0.999_999)?
            },
            run: None,
        })
    }

    /// The hyperparameters of interval `t` (0-based).
    pub fn at(&self, t: usize) -> Hyperparams {
        let (lr, momentum, budget) = self.run.expect("reset should be called before decide");
        let lr_t = match &self.kind {
            Kind::Step { step_size, gamma } => step_lr(
                lr,
                *gamma,
                step_size.unwrap_or(((budget as f64 / 3.0).round() as usize).max(1)),
                t,
            ),
            Kind::Exponential { gamma } => exponential_lr(
                lr,
                gamma.unwrap_or_else(|| 0.01f64.powf(1.0 / (budget.max(2) - 1) as f64)),
                t,
            ),
            Kind::Cosine { eta_min } => cosine_lr(lr, *eta_min, t, budget),
            Kind::WarmupCosine { warmup, eta_min } => {
                let w = warmup
                    .unwrap_or(((budget as f64 / 10.0).round() as usize).max(1))
                    .min(budget);
                warmup_cosine_lr(lr, *eta_min, w, t, budget)
            }
            Kind::OneCycle(cycle) => {
                let (lr_t, momentum_t) = OneCycle {
                    max_lr: lr,
                    ..*cycle
                }
                .at(t, budget);
                return Hyperparams {
                    lr: lr_t,
                    momentum: momentum_t.unwrap_or(momentum),
                };
            }
        };
        Hyperparams { lr: lr_t, momentum }
    }
}

impl Controller for Schedule {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.run = Some((
            self.lr.unwrap_or(context.init.lr),
            self.momentum.unwrap_or(context.init.momentum),
            context.epochs,
        ));
    }

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        Decision::Set(self.at(input.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &str, budget: usize, init: Hyperparams) -> Vec<Hyperparams> {
        let mut s = Schedule::from_spec(&ControllerSpec::parse(spec).unwrap()).unwrap();
        s.reset(&EpisodeContext {
            epochs: budget,
            init,
            steps_per_epoch: 10,
            steps_per_interval: 10,
        });
        (0..budget).map(|t| s.at(t)).collect()
    }

    fn lrs(spec: &str, budget: usize) -> Vec<f64> {
        run(
            spec,
            budget,
            Hyperparams {
                lr: 0.5,
                momentum: 0.9,
            },
        )
        .iter()
        .map(|h| h.lr)
        .collect()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * y.abs().max(1e-12) + 1e-15,
                "step {i}: {x} vs {y}\n{a:?}\n{b:?}"
            );
        }
    }

    #[test]
    fn step_exponential_and_cosine_match_hand_computed_values() {
        close(
            &lrs("step:lr=1,step_size=2,gamma=0.5", 5),
            &[1.0, 1.0, 0.5, 0.5, 0.25],
        );
        // Default step_size round(6/3) = 2, gamma 0.1.
        close(&lrs("step:lr=1", 6), &[1.0, 1.0, 0.1, 0.1, 0.01, 0.01]);
        close(
            &lrs("exponential:lr=2,gamma=0.5", 4),
            &[2.0, 1.0, 0.5, 0.25],
        );
        // Default gamma: 100x decay over the run: 1, 0.1, 0.01 for T = 3.
        close(&lrs("exponential:lr=1", 3), &[1.0, 0.1, 0.01]);
        // T = 4: 1, (1+cos(π/4))/2, 0.5, (1+cos(3π/4))/2.
        let c = std::f64::consts::FRAC_1_SQRT_2;
        close(
            &lrs("cosine:lr=1", 4),
            &[1.0, (1.0 + c) / 2.0, 0.5, (1.0 - c) / 2.0],
        );
        close(&lrs("cosine:lr=1,eta_min=0.2", 2), &[1.0, 0.6]);
    }

    #[test]
    fn warmup_cosine_matches_hand_computed_values() {
        // T = 6, W = 2: 0.5, 1, then cosine over 4: 1, (1+c)/2, 0.5, (1-c)/2.
        let c = std::f64::consts::FRAC_1_SQRT_2;
        close(
            &lrs("warmup-cosine:lr=1,warmup=2", 6),
            &[0.5, 1.0, 1.0, (1.0 + c) / 2.0, 0.5, (1.0 - c) / 2.0],
        );
        // Default warmup round(20/10) = 2.
        assert!((lrs("warmup-cosine:lr=1", 20)[0] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn onecycle_matches_pytorch_for_ten_steps() {
        // torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10) with defaults gives,
        // computed by hand from its formulas: phase 1 ends at step 0.3*10-1 = 2, phase 2 at 9.
        let anneal =
            |s: f64, e: f64, p: f64| e + (s - e) / 2.0 * ((std::f64::consts::PI * p).cos() + 1.0);
        let (initial, min_lr) = (1.0 / 25.0, 1.0 / 25.0 / 1e4);
        let mut expected_lr = Vec::new();
        let mut expected_m = Vec::new();
        for t in 0..10 {
            let t = t as f64;
            if t <= 2.0 {
                expected_lr.push(anneal(initial, 1.0, t / 2.0));
                expected_m.push(anneal(0.95, 0.85, t / 2.0));
            } else {
                expected_lr.push(anneal(1.0, min_lr, (t - 2.0) / 7.0));
                expected_m.push(anneal(0.85, 0.95, (t - 2.0) / 7.0));
            }
        }
        let got = run(
            "onecycle:max_lr=1",
            10,
            Hyperparams {
                lr: 0.1,
                momentum: 0.0,
            },
        );
        close(&got.iter().map(|h| h.lr).collect::<Vec<_>>(), &expected_lr);
        close(
            &got.iter().map(|h| h.momentum).collect::<Vec<_>>(),
            &expected_m,
        );
        assert!(
            (got[0].lr - 0.04).abs() < 1e-12
                && (got[2].lr - 1.0).abs() < 1e-12
                && (got[9].lr - 4e-6).abs() < 1e-15
        );
        assert!((got[2].momentum - 0.85).abs() < 1e-12 && (got[9].momentum - 0.95).abs() < 1e-12);
    }

    #[test]
    fn omitted_lr_and_momentum_come_from_the_task() {
        let got = run(
            "cosine",
            2,
            Hyperparams {
                lr: 0.3,
                momentum: 0.5,
            },
        );
        assert_eq!(
            got[0],
            Hyperparams {
                lr: 0.3,
                momentum: 0.5
            }
        );
        let got = run(
            "onecycle:cycle_momentum=0",
            10,
            Hyperparams {
                lr: 0.25,
                momentum: 0.4,
            },
        );
        assert!((got[2].lr - 0.25).abs() < 1e-12 && got[5].momentum == 0.4);
        let err =
            Schedule::from_spec(&ControllerSpec::parse("step:step_size=0.5").unwrap()).unwrap_err();
        assert!(err.to_string().contains("step_size=0.5"), "{err}");
    }
}
