//! The inner optimizers in PyTorch semantics: SGD with momentum ([`ControlledSgd`]) and AdamW
//! ([`ControlledAdamW`]), with a momentum (beta1 for AdamW) that may change between any two steps.
//!
//! Per parameter tensor, with gradient `g`, learning rate `lr` (passed at every step) and momentum
//! `μ` (read from a shared cell at every step):
//! ```text
//! g ← g + weight_decay · w                 (if weight_decay > 0)
//! v ← g                 on the first step   (PyTorch: the buffer starts as the gradient)
//! v ← μ · v + g         afterwards           (dampening 0)
//! d ← g + μ · v  if nesterov, else d ← v
//! w ← w − lr · d
//! ```
//! The velocity `v` is optimizer state kept by burn's `ModuleOptimizer`, so changing `lr` or `μ`
//! keeps it: a change of momentum takes effect on the next step, on the existing velocity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::optim::{Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// The optimizer; cheap to clone (clones share the momentum cell).
#[derive(Clone, Debug)]
pub struct ControlledSgd {
    momentum: Arc<AtomicU64>,
    weight_decay: f64,
    nesterov: bool,
}

/// A handle to change the momentum of a [`ControlledSgd`] between steps.
#[derive(Clone, Debug)]
pub struct MomentumHandle(Arc<AtomicU64>);

impl MomentumHandle {
    /// Sets the momentum used from the next step on.
    pub fn set(&self, momentum: f64) {
        self.0.store(momentum.to_bits(), Ordering::Relaxed);
    }

    /// The momentum in use.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl ControlledSgd {
    /// A new optimizer with initial `momentum`, L2 `weight_decay` (0 for none) and Nesterov flag.
    pub fn new(momentum: f64, weight_decay: f64, nesterov: bool) -> Self {
        Self {
            momentum: Arc::new(AtomicU64::new(momentum.to_bits())),
            weight_decay,
            nesterov,
        }
    }

    /// The handle through which the momentum can be changed at any time.
    pub fn momentum_handle(&self) -> MomentumHandle {
        MomentumHandle(self.momentum.clone())
    }
}

/// The per-parameter state: the momentum buffer.
#[derive(Clone, Debug)]
pub struct Velocity<const D: usize> {
    /// The momentum buffer `v`.
    pub velocity: Tensor<D>,
}

impl<const D: usize> RecordState for Velocity<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "velocity", self.velocity.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            velocity: Tensor::from_data(src.take_tensor(prefix, "velocity")?, device),
        })
    }
}

impl Optimizer for ControlledSgd {
    type State<const D: usize> = Velocity<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Velocity<D>>,
    ) -> (Tensor<D>, Option<Velocity<D>>) {
        let mu = f64::from_bits(self.momentum.load(Ordering::Relaxed));
        let grad = if self.weight_decay > 0.0 {
            grad + tensor.clone().mul_scalar(self.weight_decay)
        } else {
            grad
        };
        // Keep no needless clone of `grad` alive: burn updates uniquely held buffers in place.
        let velocity = match state {
            Some(s) => grad.clone().add(s.velocity.mul_scalar(mu)),
            None => grad.clone(),
        };
        let direction = if self.nesterov {
            grad.add(velocity.clone().mul_scalar(mu))
        } else {
            drop(grad);
            velocity.clone()
        };
        (
            tensor - direction.mul_scalar(lr),
            Some(Velocity { velocity }),
        )
    }

    fn to_device<const D: usize>(mut state: Velocity<D>, device: &Device) -> Velocity<D> {
        state.velocity = state.velocity.to_device(device);
        state
    }
}

/// AdamW in PyTorch semantics (`torch.optim.AdamW`, amsgrad off), with a beta1 that may change
/// between any two steps (read from a shared cell, like [`ControlledSgd`]'s momentum). Per
/// parameter tensor, at step `t = 1, 2, …`:
/// ```text
/// w ← w · (1 − lr · weight_decay)            (decoupled weight decay)
/// m ← β1 · m + (1 − β1) · g
/// v ← β2 · v + (1 − β2) · g²
/// w ← w − lr / (1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
/// ```
/// with β2 = [`ADAMW_BETA2`](hyperctl_stats::ADAMW_BETA2) and eps =
/// [`ADAMW_EPS`](hyperctl_stats::ADAMW_EPS). As in PyTorch, the bias correction uses the β1 of
/// the current step.
#[derive(Clone, Debug)]
pub struct ControlledAdamW {
    beta1: Arc<AtomicU64>,
    weight_decay: f64,
}

impl ControlledAdamW {
    /// A new optimizer with initial `beta1` and decoupled `weight_decay` (0 for none).
    pub fn new(beta1: f64, weight_decay: f64) -> Self {
        Self {
            beta1: Arc::new(AtomicU64::new(beta1.to_bits())),
            weight_decay,
        }
    }

    /// The handle through which beta1 (the controller's "momentum") can be changed at any time.
    pub fn momentum_handle(&self) -> MomentumHandle {
        MomentumHandle(self.beta1.clone())
    }
}

/// AdamW's per-parameter state.
#[derive(Clone, Debug)]
pub struct AdamMoments<const D: usize> {
    /// Steps taken.
    pub time: usize,
    /// First moment `m`.
    pub moment_1: Tensor<D>,
    /// Second moment `v`.
    pub moment_2: Tensor<D>,
}

impl<const D: usize> RecordState for AdamMoments<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        let time = burn::tensor::TensorData::new(vec![self.time as i64], [1]);
        out.push_tensor(prefix, "time", time);
        out.push_tensor(prefix, "moment_1", self.moment_1.to_data());
        out.push_tensor(prefix, "moment_2", self.moment_2.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let time = src.take_tensor(prefix, "time")?.convert::<i64>();
        Some(Self {
            time: *time.as_slice::<i64>().ok()?.first()? as usize,
            moment_1: Tensor::from_data(src.take_tensor(prefix, "moment_1")?, device),
            moment_2: Tensor::from_data(src.take_tensor(prefix, "moment_2")?, device),
        })
    }
}

impl Optimizer for ControlledAdamW {
    type State<const D: usize> = AdamMoments<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamMoments<D>>,
    ) -> (Tensor<D>, Option<AdamMoments<D>>) {
        use hyperctl_stats::{ADAMW_BETA2 as BETA2, ADAMW_EPS as EPS};
        let beta1 = f64::from_bits(self.beta1.load(Ordering::Relaxed));
        let tensor = if self.weight_decay > 0.0 {
            tensor.mul_scalar(1.0 - lr * self.weight_decay)
        } else {
            tensor
        };
        let (time, m, v) = match state {
            Some(s) => (
                s.time + 1,
                s.moment_1.mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1),
                s.moment_2.mul_scalar(BETA2) + grad.square().mul_scalar(1.0 - BETA2),
            ),
            None => (
                1,
                grad.clone().mul_scalar(1.0 - beta1),
                grad.square().mul_scalar(1.0 - BETA2),
            ),
        };
        let bias_correction1 = 1.0 - beta1.powi(time as i32);
        let bias_correction2_sqrt = (1.0 - BETA2.powi(time as i32)).sqrt();
        let denom = v
            .clone()
            .sqrt()
            .div_scalar(bias_correction2_sqrt)
            .add_scalar(EPS);
        let update = (m.clone() / denom).mul_scalar(lr / bias_correction1);
        (
            tensor - update,
            Some(AdamMoments {
                time,
                moment_1: m,
                moment_2: v,
            }),
        )
    }

    fn to_device<const D: usize>(mut state: AdamMoments<D>, device: &Device) -> AdamMoments<D> {
        state.moment_1 = state.moment_1.to_device(device);
        state.moment_2 = state.moment_2.to_device(device);
        state
    }
}

/// The global L2 norm of all gradients of `module` (torch's `clip_grad_norm_` total norm), in one
/// host sync: what a training loop reports per minibatch to a controller (`grad_norms` of
/// `hyperctl_schedule_env::EpochReport`).
pub use hyperctl_burn_util::global_grad_norm;

/// Every float parameter of `module`, flattened into one host vector (one host sync): take it
/// before and after an epoch and pass both to [`param_norms`] for the epoch's update ratio.
pub fn flat_params<M: burn::module::Module>(module: &M) -> Vec<f32> {
    struct Collector {
        parts: Vec<Tensor<1>>,
    }
    impl burn::module::ModuleVisitor for Collector {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let value = param.val().detach();
            let n = value.shape().num_elements();
            self.parts.push(value.reshape([n]));
        }
    }
    let mut collector = Collector { parts: Vec::new() };
    module.visit(&mut collector);
    if collector.parts.is_empty() {
        return Vec::new();
    }
    Tensor::cat(collector.parts, 0)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a converted tensor should hold f32 values")
}

/// `(‖after‖, ‖after − before‖ / ‖before‖)` of two flattened parameter vectors: the weight norm
/// and the update-to-weight ratio our trainer reports for an epoch (`weight_norm`,
/// `update_ratio` of [`EpochStats`](crate::EpochStats)).
pub fn param_norms(before: &[f32], after: &[f32]) -> (f64, f64) {
    let (weight_sq, delta_sq, before_sq) =
        after
            .iter()
            .zip(before)
            .fold((0f64, 0f64, 0f64), |(w, d, b), (&after, &before)| {
                (
                    w + (after as f64).powi(2),
                    d + (after as f64 - before as f64).powi(2),
                    b + (before as f64).powi(2),
                )
            });
    (
        weight_sq.sqrt(),
        delta_sq.sqrt() / before_sq.sqrt().max(1e-12),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_floats(v, &Device::flex())
    }

    fn vals(x: &Tensor<1>) -> Vec<f32> {
        x.to_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn changing_momentum_mid_run_keeps_the_velocity() {
        let opt = ControlledSgd::new(0.9, 0.0, false);
        let handle = opt.momentum_handle();
        let (w1, s1) = opt.step(0.1, t(&[1.0]), t(&[2.0]), None);
        assert_eq!(vals(&s1.as_ref().unwrap().velocity), vec![2.0]); // v1 = g1
        assert!((vals(&w1)[0] - 0.8).abs() < 1e-6); // w1 = 1 - 0.1*2
        handle.set(0.5);
        let (w2, s2) = opt.step(0.1, w1, t(&[4.0]), s1);
        // v2 = 0.5*2 + 4 = 5 (a rebuilt optimizer without state would give 4; μ=0.9 would give 5.8).
        assert!((vals(&s2.unwrap().velocity)[0] - 5.0).abs() < 1e-6);
        assert!((vals(&w2)[0] - (0.8 - 0.5)).abs() < 1e-6);
        assert_eq!(handle.get(), 0.5);
    }

    #[test]
    fn nesterov_and_weight_decay_follow_pytorch() {
        let opt = ControlledSgd::new(0.9, 0.1, true);
        // g' = 2 + 0.1*1 = 2.1; v = 2.1; d = g' + 0.9 v = 3.99; w = 1 - 0.1*3.99.
        let (w1, s1) = opt.step(0.1, t(&[1.0]), t(&[2.0]), None);
        assert!((vals(&w1)[0] - (1.0 - 0.399)).abs() < 1e-6);
        assert!((vals(&s1.unwrap().velocity)[0] - 2.1).abs() < 1e-6);
    }

    #[test]
    fn adamw_follows_pytorch_with_a_changing_beta1() {
        // By hand, w0 = 1, lr 0.1, wd 0.5, β2 0.999, eps 1e-8; g1 = 2 (β1 0.9), g2 = -1 (β1 0.5).
        let opt = ControlledAdamW::new(0.9, 0.5);
        let handle = opt.momentum_handle();
        let (w1, s1) = opt.step(0.1, t(&[1.0]), t(&[2.0]), None);
        let (beta2, eps) = (0.999f64, 1e-8);
        let w = 1.0 * (1.0 - 0.1 * 0.5);
        let (m, v) = (0.1 * 2.0, (1.0 - beta2) * 4.0);
        let w_1 = w - 0.1 / (1.0 - 0.9) * m / (v.sqrt() / (1.0 - beta2).sqrt() + eps);
        assert!(
            (vals(&w1)[0] as f64 - w_1).abs() < 1e-6,
            "{:?} vs {w_1}",
            vals(&w1)
        );
        handle.set(0.5);
        let (w2, s2) = opt.step(0.1, w1, t(&[-1.0]), s1);
        let w = w_1 * (1.0 - 0.05);
        let (m, v) = (0.5 * m - 0.5, beta2 * v + (1.0 - beta2) * 1.0);
        let bc2 = (1.0 - beta2.powi(2)).sqrt();
        let w_2 = w - 0.1 / (1.0 - 0.25) * m / (v.sqrt() / bc2 + eps);
        assert!(
            (vals(&w2)[0] as f64 - w_2).abs() < 1e-6,
            "{:?} vs {w_2}",
            vals(&w2)
        );
        let s2 = s2.unwrap();
        assert_eq!(s2.time, 2);
        assert!((vals(&s2.moment_1)[0] as f64 - m).abs() < 1e-6);
    }

    #[test]
    fn global_grad_norm_covers_every_parameter() {
        use burn::module::Param;
        use burn::tensor::TensorData;
        let device = Device::flex().autodiff();
        let mut layer = burn::nn::LinearConfig::new(2, 1).init(&device);
        layer.weight = Param::from_data(TensorData::new(vec![1f32, 2.0], [2, 1]), &device);
        layer.bias = Some(Param::from_data(TensorData::new(vec![0f32], [1]), &device));
        let x = Tensor::<2>::from_data(TensorData::new(vec![3f32, 4.0], [1, 2]), &device);
        let loss = layer.forward(x).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &layer);
        // d/dw = x = (3, 4), d/db = 1.
        assert!((global_grad_norm(&layer, &grads) - 26f64.sqrt()).abs() < 1e-6);
    }
}
