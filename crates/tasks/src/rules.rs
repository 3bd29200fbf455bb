//! The parameter-free step rules and iterate averaging ([`StepRule`], [`Averaging`]): each a
//! transcription of its reference implementation (named on the variant), working on the model's
//! parameter tensors flattened in model order, so that the rules' global quantities (DoG's
//! distance, Prodigy's and D-Adaptation's estimates) span every parameter as the references' do.
//!
//! A rule's state is plain tensors and numbers: cloning it (a trainer snapshot for the guard) is
//! cheap and going back to it is exact. Every step costs at most one host sync beyond the
//! trainer's own (the rules' scalar sums leave the device together).

use burn::tensor::Tensor;

pub use hyperctl_stats::{Averaging, StepRule};

/// DoG's eps (added to the sum of squared gradient norms).
const DOG_EPS: f64 = 1e-8;
/// Prodigy's beta1 (its reference's default); beta2 and eps are AdamW's (the same defaults).
const ADAM_BETA1: f64 = 0.9;
use hyperctl_stats::{ADAMW_BETA2 as ADAM_BETA2, ADAMW_EPS as ADAM_EPS};

/// Scalars of one step on the host, in one sync.
fn host(parts: Vec<Tensor<1>>) -> Vec<f64> {
    if parts.is_empty() {
        return Vec::new();
    }
    crate::trainer::to_host(Tensor::cat(parts, 0))
        .into_iter()
        .map(f64::from)
        .collect()
}

fn sq_sum(t: &Tensor<1>) -> Tensor<1> {
    t.clone().square().sum()
}

fn dot(a: &Tensor<1>, b: &Tensor<1>) -> Tensor<1> {
    (a.clone() * b.clone()).sum()
}

/// `a + w·(b − a)` (torch's `lerp`).
fn lerp(a: Tensor<1>, b: &Tensor<1>, w: f64) -> Tensor<1> {
    let diff = b.clone() - a.clone();
    a + diff.mul_scalar(w)
}

/// The state of a parameter-free rule.
#[derive(Clone)]
pub(crate) enum RuleState {
    Dog(Dog),
    ScheduleFree(ScheduleFree),
    Prodigy(Prodigy),
    DAdapt(DAdapt),
}

impl RuleState {
    /// The state before the first step of `rule` (`None` for the inner optimizer). `adam`: the
    /// task's inner optimizer is AdamW (Schedule-Free takes its AdamW form); `budget_steps`:
    /// the run's minibatch steps (for Schedule-Free's warmup).
    pub(crate) fn new(
        rule: StepRule,
        weight_decay: f64,
        adam: bool,
        budget_steps: usize,
    ) -> Option<Self> {
        Some(match rule {
            StepRule::Inner => return None,
            StepRule::Dog {
                reps_rel,
                layerwise,
            } => RuleState::Dog(Dog {
                reps_rel,
                layerwise,
                weight_decay,
                x0: Vec::new(),
                rbar: Vec::new(),
                g_sum: Vec::new(),
            }),
            StepRule::ScheduleFree {
                beta,
                warmup_fraction,
                weight_lr_power,
            } => RuleState::ScheduleFree(ScheduleFree {
                beta,
                warmup_steps: (warmup_fraction * budget_steps as f64).round() as usize,
                weight_lr_power,
                weight_decay,
                adam,
                k: 0,
                lr_max: -1.0,
                weight_sum: 0.0,
                z: Vec::new(),
                exp_avg_sq: Vec::new(),
            }),
            StepRule::Prodigy { d0 } => RuleState::Prodigy(Prodigy {
                weight_decay,
                d0,
                d: d0,
                d_max: d0,
                d_numerator: 0.0,
                p0: Vec::new(),
                s: Vec::new(),
                exp_avg: Vec::new(),
                exp_avg_sq: Vec::new(),
            }),
            StepRule::DAdaptSgd { d0, momentum } => RuleState::DAdapt(DAdapt {
                weight_decay,
                momentum,
                d: d0,
                k: 0,
                g0_norm: f64::NAN,
                numerator_weighted: 0.0,
                x0: Vec::new(),
                s: Vec::new(),
            }),
        })
    }

    /// One step: the new parameters from the parameters `x` and gradients `g` (flattened, in
    /// model order). `lr` is the controller's (read only by the rules that have one).
    pub(crate) fn step(&mut self, lr: f64, x: Vec<Tensor<1>>, g: Vec<Tensor<1>>) -> Vec<Tensor<1>> {
        match self {
            RuleState::Dog(s) => s.step(x, g),
            RuleState::ScheduleFree(s) => s.step(lr, x, g),
            RuleState::Prodigy(s) => s.step(x, g),
            RuleState::DAdapt(s) => s.step(x, g),
        }
    }

    /// Where the model is evaluated, when that is not the trained iterate: Schedule-Free's
    /// average `x = y + (1 − 1/β)(z − y)` (what its `optimizer.eval()` swaps in).
    pub(crate) fn eval_point(&self, y: &[Tensor<1>]) -> Option<Vec<Tensor<1>>> {
        match self {
            RuleState::ScheduleFree(s) if !s.z.is_empty() => Some(
                y.iter()
                    .zip(&s.z)
                    .map(|(y, z)| lerp(y.clone(), z, 1.0 - 1.0 / s.beta))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// DoG / L-DoG (`dog-optimizer` 1.0.3, `DoG.step` and `LDoG._update_group_state`).
#[derive(Clone)]
pub(crate) struct Dog {
    reps_rel: f64,
    layerwise: bool,
    weight_decay: f64,
    x0: Vec<Tensor<1>>,
    /// max distance so far (one entry, or one per tensor for L-DoG).
    rbar: Vec<f64>,
    /// Σ‖g‖² + eps (likewise).
    g_sum: Vec<f64>,
}

impl Dog {
    fn step(&mut self, x: Vec<Tensor<1>>, g: Vec<Tensor<1>>) -> Vec<Tensor<1>> {
        let first = self.x0.is_empty();
        if first {
            self.x0 = x.clone();
        }
        // The reference adds the L2 term to the gradient before measuring it.
        let g: Vec<Tensor<1>> = if self.weight_decay > 0.0 {
            g.into_iter()
                .zip(&x)
                .map(|(g, x)| g + x.clone().mul_scalar(self.weight_decay))
                .collect()
        } else {
            g
        };
        let n = x.len();
        // Per tensor: ‖x‖² (first step) or ‖x − x₀‖², then ‖g‖².
        let mut parts: Vec<Tensor<1>> = Vec::with_capacity(2 * n);
        for (x, x0) in x.iter().zip(&self.x0) {
            parts.push(if first {
                sq_sum(x)
            } else {
                sq_sum(&(x.clone() - x0.clone()))
            });
        }
        parts.extend(g.iter().map(sq_sum));
        let sums = host(parts);
        let (dist_sq, g_sq) = sums.split_at(n);
        let (dist, gs): (Vec<f64>, Vec<f64>) = if self.layerwise {
            (dist_sq.iter().map(|d| d.sqrt()).collect(), g_sq.to_vec())
        } else {
            (
                vec![dist_sq.iter().sum::<f64>().sqrt()],
                vec![g_sq.iter().sum::<f64>()],
            )
        };
        if first {
            self.rbar = dist.iter().map(|d| self.reps_rel * (1.0 + d)).collect();
            self.g_sum = gs.iter().map(|g| g + DOG_EPS).collect();
        } else {
            for (r, d) in self.rbar.iter_mut().zip(&dist) {
                *r = r.max(*d);
            }
            for (sum, g) in self.g_sum.iter_mut().zip(&gs) {
                *sum += g;
            }
        }
        let eta: Vec<f64> = self
            .rbar
            .iter()
            .zip(&self.g_sum)
            .map(|(r, g)| r / g.sqrt())
            .collect();
        x.into_iter()
            .zip(g)
            .enumerate()
            .map(|(i, (x, g))| x - g.mul_scalar(eta[if self.layerwise { i } else { 0 }]))
            .collect()
    }
}

/// Schedule-Free SGD / AdamW (`schedulefree` 1.4.1, `SGDScheduleFree.step`,
/// `AdamWScheduleFree.step`, `r = 0`). The model holds `y`; `z` is the base sequence.
#[derive(Clone)]
pub(crate) struct ScheduleFree {
    beta: f64,
    warmup_steps: usize,
    weight_lr_power: f64,
    weight_decay: f64,
    adam: bool,
    k: usize,
    lr_max: f64,
    weight_sum: f64,
    z: Vec<Tensor<1>>,
    exp_avg_sq: Vec<Tensor<1>>,
}

impl ScheduleFree {
    fn step(&mut self, lr: f64, y: Vec<Tensor<1>>, g: Vec<Tensor<1>>) -> Vec<Tensor<1>> {
        let k = self.k;
        let sched = if k < self.warmup_steps {
            (k + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        let lr = lr * sched;
        self.lr_max = self.lr_max.max(lr);
        let weight = self.lr_max.powf(self.weight_lr_power);
        self.weight_sum += weight;
        let ckp1 = if self.weight_sum == 0.0 {
            0.0
        } else {
            weight / self.weight_sum
        };
        if self.z.is_empty() {
            self.z = y.clone();
            if self.adam {
                self.exp_avg_sq = y.iter().map(|y| y.zeros_like()).collect();
            }
        }
        let bias_correction2 = 1.0 - ADAM_BETA2.powi(k as i32 + 1);
        let mut out = Vec::with_capacity(y.len());
        for (i, (y, g)) in y.into_iter().zip(g).enumerate() {
            let direction = if self.adam {
                let v = self.exp_avg_sq[i].clone().mul_scalar(ADAM_BETA2)
                    + g.clone().square().mul_scalar(1.0 - ADAM_BETA2);
                self.exp_avg_sq[i] = v.clone();
                let denom = v.div_scalar(bias_correction2).sqrt().add_scalar(ADAM_EPS);
                let normalized = g / denom;
                if self.weight_decay != 0.0 {
                    normalized + y.clone().mul_scalar(self.weight_decay)
                } else {
                    normalized
                }
            } else if self.weight_decay != 0.0 {
                g + y.clone().mul_scalar(self.weight_decay)
            } else {
                g
            };
            let y = lerp(y, &self.z[i], ckp1)
                + direction
                    .clone()
                    .mul_scalar(lr * (self.beta * (1.0 - ckp1) - 1.0));
            self.z[i] = self.z[i].clone() - direction.mul_scalar(lr);
            out.push(y);
        }
        self.k += 1;
        out
    }
}

/// Prodigy (`prodigyopt` 1.1.2, `Prodigy.step`: betas (0.9, 0.999), β3 = √β2, eps 1e-8,
/// decoupled weight decay, `use_bias_correction=False`, `safeguard_warmup=False`,
/// `d_coef=1`, `growth_rate=inf`, lr 1).
#[derive(Clone)]
pub(crate) struct Prodigy {
    weight_decay: f64,
    d0: f64,
    d: f64,
    d_max: f64,
    d_numerator: f64,
    p0: Vec<Tensor<1>>,
    s: Vec<Tensor<1>>,
    exp_avg: Vec<Tensor<1>>,
    exp_avg_sq: Vec<Tensor<1>>,
}

impl Prodigy {
    fn step(&mut self, x: Vec<Tensor<1>>, g: Vec<Tensor<1>>) -> Vec<Tensor<1>> {
        let beta3 = ADAM_BETA2.sqrt();
        let d = self.d;
        let dlr = d; // d · lr · bias_correction, with lr = 1 and no bias correction.
        if self.p0.is_empty() {
            self.p0 = x.clone();
            self.s = x.iter().map(|x| x.zeros_like()).collect();
            self.exp_avg = self.s.clone();
            self.exp_avg_sq = self.s.clone();
        }
        let n = x.len();
        let mut parts = Vec::with_capacity(2 * n);
        for i in 0..n {
            // delta_numerator += (d/d0)·dlr·⟨g, p0 − x⟩ (the host scales the sum).
            parts.push(dot(&g[i], &(self.p0[i].clone() - x[i].clone())));
            self.exp_avg[i] = self.exp_avg[i].clone().mul_scalar(ADAM_BETA1)
                + g[i].clone().mul_scalar(d * (1.0 - ADAM_BETA1));
            self.exp_avg_sq[i] = self.exp_avg_sq[i].clone().mul_scalar(ADAM_BETA2)
                + g[i].clone().square().mul_scalar(d * d * (1.0 - ADAM_BETA2));
            self.s[i] =
                self.s[i].clone().mul_scalar(beta3) + g[i].clone().mul_scalar((d / self.d0) * dlr);
            parts.push(self.s[i].clone().abs().sum());
        }
        let sums = host(parts);
        let delta_numerator: f64 = (d / self.d0) * dlr * sums.iter().step_by(2).sum::<f64>();
        let d_denom: f64 = sums.iter().skip(1).step_by(2).sum();
        let d_numerator = self.d_numerator * beta3;
        if d_denom == 0.0 {
            // The reference returns here without a step (and without keeping the numerator).
            return x;
        }
        let global_numerator = d_numerator + delta_numerator;
        let d_hat = global_numerator / d_denom;
        // The reference: `if d == d0: d = max(d, d_hat)`, `d_max = max(d_max, d_hat)`,
        // `d = min(d_max, d · growth_rate)`; with growth_rate = ∞ that is d_max.
        self.d_max = self.d_max.max(d_hat);
        self.d = self.d_max;
        self.d_numerator = global_numerator;
        let d = self.d;
        x.into_iter()
            .enumerate()
            .map(|(i, x)| {
                let denom = self.exp_avg_sq[i].clone().sqrt().add_scalar(d * ADAM_EPS);
                let x = if self.weight_decay != 0.0 {
                    x.clone() - x.mul_scalar(self.weight_decay * dlr)
                } else {
                    x
                };
                x - (self.exp_avg[i].clone() / denom).mul_scalar(dlr)
            })
            .collect()
    }
}

/// D-Adaptation SGD (`dadaptation` 3.2, `DAdaptSGD.step`: lr 1, `growth_rate=inf`).
#[derive(Clone)]
pub(crate) struct DAdapt {
    weight_decay: f64,
    momentum: f64,
    d: f64,
    k: usize,
    g0_norm: f64,
    numerator_weighted: f64,
    x0: Vec<Tensor<1>>,
    s: Vec<Tensor<1>>,
}

impl DAdapt {
    fn step(&mut self, x: Vec<Tensor<1>>, g: Vec<Tensor<1>>) -> Vec<Tensor<1>> {
        if self.k == 0 {
            // The reference's first-step norm leaves the L2 term out (`grad.add`, not `add_`).
            self.g0_norm = host(g.iter().map(sq_sum).collect())
                .iter()
                .sum::<f64>()
                .sqrt();
        }
        if self.x0.is_empty() {
            self.x0 = x.clone();
            self.s = x.iter().map(|x| x.zeros_like()).collect();
        }
        let dlr = self.d / self.g0_norm;
        let n = x.len();
        let mut parts = Vec::with_capacity(2 * n);
        for i in 0..n {
            let g = if self.weight_decay != 0.0 {
                g[i].clone() + x[i].clone().mul_scalar(self.weight_decay)
            } else {
                g[i].clone()
            };
            parts.push(dot(&g, &self.s[i]));
            self.s[i] = self.s[i].clone() + g.mul_scalar(dlr);
            parts.push(sq_sum(&self.s[i]));
        }
        let sums = host(parts);
        let numerator_weighted =
            self.numerator_weighted + dlr * sums.iter().step_by(2).sum::<f64>();
        let sk_sq: f64 = sums.iter().skip(1).step_by(2).sum();
        let d_hat = 2.0 * numerator_weighted / sk_sq.sqrt();
        let d = self.d.max(d_hat);
        if sk_sq == 0.0 {
            return x;
        }
        self.numerator_weighted = numerator_weighted;
        self.d = d;
        let ck = 1.0 - self.momentum;
        let out = x
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let z = self.x0[i].clone() - self.s[i].clone();
                x.mul_scalar(1.0 - ck) + z.mul_scalar(ck)
            })
            .collect();
        self.k += 1;
        out
    }
}

/// Iterate averaging over flattened parameters (see [`Averaging`]).
#[derive(Clone)]
pub(crate) struct Averager {
    kind: Averaging,
    /// Steps averaged so far.
    t: usize,
    avg: Vec<Tensor<1>>,
}

impl Averager {
    /// An averager starting from the initial weights `x0`.
    pub(crate) fn new(kind: Averaging, x0: Vec<Tensor<1>>) -> Self {
        Self {
            kind,
            t: 0,
            avg: x0,
        }
    }

    /// Takes in the point after a step.
    pub(crate) fn update(&mut self, x: &[Tensor<1>]) {
        self.t += 1;
        let keep = match self.kind {
            Averaging::PolyDecay { gamma } => 1.0 - (gamma + 1.0) / (gamma + self.t as f64),
            Averaging::Ema { decay } => decay,
        };
        for (a, x) in self.avg.iter_mut().zip(x) {
            *a = a.clone().mul_scalar(keep) + x.clone().mul_scalar(1.0 - keep);
        }
    }

    /// The averaged weights.
    pub(crate) fn weights(&self) -> &[Tensor<1>] {
        &self.avg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_floats(v, &Device::flex())
    }

    fn vals(x: &[Tensor<1>]) -> Vec<Vec<f64>> {
        x.iter()
            .map(|x| {
                x.to_data()
                    .try_to_vec::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
            .collect()
    }

    fn close(a: &[Vec<f64>], b: &[Vec<f64>]) {
        for (a, b) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn dog_steps_by_distance_over_gradients_globally_or_per_tensor() {
        // Two tensors: x0 = ([3], [4]) (‖x0‖ = 5), g0 = ([1], [2]), reps_rel 0.1.
        for layerwise in [false, true] {
            let mut rule = RuleState::new(
                StepRule::Dog {
                    reps_rel: 0.1,
                    layerwise,
                },
                0.0,
                false,
                10,
            )
            .unwrap();
            let x1 = rule.step(0.0, vec![t(&[3.0]), t(&[4.0])], vec![t(&[1.0]), t(&[2.0])]);
            let eta: Vec<f64> = if layerwise {
                // Per tensor: r = 0.1·(1 + |x|), G = g² + eps.
                vec![
                    0.1 * 4.0 / (1.0f64 + 1e-8).sqrt(),
                    0.1 * 5.0 / (4.0f64 + 1e-8).sqrt(),
                ]
            } else {
                let e = 0.1 * 6.0 / (5.0f64 + 1e-8).sqrt();
                vec![e, e]
            };
            let expected = vec![vec![3.0 - eta[0]], vec![4.0 - 2.0 * eta[1]]];
            close(&vals(&x1), &expected);
            // Second step, g1 = ([1], [0]): r = max(r, distance travelled), G += ‖g1‖².
            let x1v = vals(&x1);
            let x2 = rule.step(0.0, x1, vec![t(&[1.0]), t(&[0.0])]);
            let d = [(x1v[0][0] - 3.0).abs(), (x1v[1][0] - 4.0).abs()];
            let expected = if layerwise {
                let r = [(0.4f64).max(d[0]), (0.5f64).max(d[1])];
                let g: [f64; 2] = [1.0 + 1e-8 + 1.0, 4.0 + 1e-8];
                vec![vec![x1v[0][0] - r[0] / g[0].sqrt()], vec![x1v[1][0]]]
            } else {
                let r = (0.6f64).max((d[0] * d[0] + d[1] * d[1]).sqrt());
                let e = r / (5.0f64 + 1e-8 + 1.0).sqrt();
                vec![vec![x1v[0][0] - e], vec![x1v[1][0]]]
            };
            close(&vals(&x2), &expected);
        }
    }

    #[test]
    fn schedule_free_sgd_follows_its_reference_and_evaluates_at_the_average() {
        // lr 0.1, β 0.5, warmup 2 of 10 steps (fraction 0.2); y0 = z0 = 1; g = 2 then 1.
        let mut rule = RuleState::new(
            StepRule::ScheduleFree {
                beta: 0.5,
                warmup_fraction: 0.2,
                weight_lr_power: 2.0,
            },
            0.0,
            false,
            10,
        )
        .unwrap();
        let y1 = rule.step(0.1, vec![t(&[1.0])], vec![t(&[2.0])]);
        // Step k=0: lr 0.05, weight 0.05², ckp1 = 1; y = z0 + 0.05·(0.5·0 − 1)·2 = 0.9; z = 0.9.
        close(&vals(&y1), &[vec![0.9]]);
        let y2 = rule.step(0.1, y1, vec![t(&[1.0])]);
        // k=1: lr 0.1, lr_max 0.1, weight 0.01, sum 0.0125, ckp1 0.8;
        // y = 0.9 + 0.8·(0.9 − 0.9) + 0.1·(0.5·0.2 − 1)·1 = 0.81; z = 0.9 − 0.1 = 0.8.
        close(&vals(&y2), &[vec![0.81]]);
        // x = y + (1 − 1/β)(z − y) = 0.81 − (0.8 − 0.81) = 0.82.
        close(&vals(&rule.eval_point(&y2).unwrap()), &[vec![0.82]]);
    }

    #[test]
    fn d_adaptation_sgd_grows_its_estimate_from_d0() {
        // One tensor, x0 = 0, g = 1 every step, d0 = 1 (lr 1, no momentum): g0 = 1, so
        // step 1: dlr = 1, s = 1, numerator 0 → d_hat 0, d stays 1, x = x0 − s = −1;
        // step 2: dlr = 1, numerator += 1·⟨1, 1⟩ = 1, s = 2, d_hat = 2·1/2 = 1 → x = −2.
        let mut rule = RuleState::new(
            StepRule::DAdaptSgd {
                d0: 1.0,
                momentum: 0.0,
            },
            0.0,
            false,
            10,
        )
        .unwrap();
        let x1 = rule.step(0.0, vec![t(&[0.0])], vec![t(&[1.0])]);
        close(&vals(&x1), &[vec![-1.0]]);
        let x2 = rule.step(0.0, x1, vec![t(&[1.0])]);
        close(&vals(&x2), &[vec![-2.0]]);
        // step 3: numerator 1 + 1·⟨1, 2⟩ = 3, s = 3, d_hat = 2 → d = 2, dlr was 1: x = −3.
        let x3 = rule.step(0.0, x2, vec![t(&[1.0])]);
        close(&vals(&x3), &[vec![-3.0]]);
        let RuleState::DAdapt(state) = &rule else {
            unreachable!()
        };
        assert_eq!(state.d, 2.0);
    }

    #[test]
    fn averagers_follow_their_recurrences() {
        let mut poly = Averager::new(Averaging::PolyDecay { gamma: 8.0 }, vec![t(&[0.0])]);
        poly.update(&[t(&[1.0])]); // c1 = 1: the average is x1.
        close(&vals(poly.weights()), &[vec![1.0]]);
        poly.update(&[t(&[2.0])]); // c2 = 9/10.
        close(&vals(poly.weights()), &[vec![0.1 * 1.0 + 0.9 * 2.0]]);
        let mut ema = Averager::new(Averaging::Ema { decay: 0.75 }, vec![t(&[4.0])]);
        ema.update(&[t(&[0.0])]);
        close(&vals(ema.weights()), &[vec![3.0]]);
    }
}
