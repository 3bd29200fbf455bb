//! burn helpers that more than one crate needs: the one home of the global gradient norm, used
//! by the trainer's public helper (`hyperctl_tasks::optim::global_grad_norm`) and by PPO's
//! gradient clipping.
//!
//! # Architecture invariants
//! - Knows nothing of tasks, learning rates or reinforcement learning: modules and gradients in,
//!   numbers out.

#![warn(missing_docs)]

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The global L2 norm of all gradients of `module` (torch's `clip_grad_norm_` total norm), in
/// one host sync; 0 when no parameter has a gradient.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Squares<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Squares<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
    let mut squares = Squares {
        grads,
        parts: Vec::new(),
    };
    module.visit(&mut squares);
    if squares.parts.is_empty() {
        return 0.0;
    }
    (Tensor::cat(squares.parts, 0).sum().into_scalar::<f32>() as f64).sqrt()
}
