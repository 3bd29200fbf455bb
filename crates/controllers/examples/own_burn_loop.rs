//! Your own burn training loop, steered epoch by epoch by a hyperctl controller: a trained policy
//! (`policy:DIR`) or any baseline SPEC.
//!
//! ```sh
//! cargo run -p hyperctl-controllers --example own_burn_loop -- policy:policies/NAME
//! cargo run -p hyperctl-controllers --example own_burn_loop -- simple-reactive
//! ```
//!
//! The loop is ordinary burn code (model, loss, optimizer, minibatches). The only hyperctl pieces:
//! [`LiveSession::open`] before training with the deployment guard on (it answers the first
//! epoch's lr and momentum), [`ControlledSgd`] so momentum can change between epochs without
//! losing the velocity, [`global_grad_norm`] per minibatch, [`flat_params`] before and after each
//! epoch for the update ratio, and [`LiveSession::observe`] after each epoch with an
//! [`EpochReport`] (it answers the next epoch's lr and momentum). When the guard undoes an epoch
//! (it diverged, or its validation loss jumped above 4× the best), the answer names the epoch
//! whose state to restore: the loop keeps a copy of the model and optimizer at each epoch the
//! answer marks `keep`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use hyperctl_schedule_env::{EpochReport, LiveSession, Rollback};
use hyperctl_tasks::Hyperparams;
use hyperctl_tasks::optim::{ControlledSgd, flat_params, global_grad_norm, param_norms};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Module, Debug)]
struct Net {
    hidden: Linear,
    act: Relu,
    out: Linear,
}

impl Net {
    /// # Shapes: `[batch, 10] -> [batch, 3]`
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.hidden.forward(x)); // [batch, 64]
        self.out.forward(x) // [batch, 3]
    }
}

fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let batch = labels.dims()[0];
    let log_probs = burn::tensor::activation::log_softmax(logits, 1); // [batch, 3]
    log_probs.gather(1, labels.reshape([batch, 1])).mean().neg() // [1]
}

/// Three Gaussian blobs in 10 dimensions: (features, labels).
fn blobs(n: usize, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<i64>) {
    let centers: Vec<f32> = (0..30).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let mut x = Vec::with_capacity(n * 10);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..3usize);
        y.push(c as i64);
        x.extend((0..10).map(|d| centers[c * 10 + d] + rng.random_range(-1.5f32..1.5)));
    }
    (x, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "simple-reactive".into());
    // A policy runs under the env settings it was trained with; baselines under the defaults.
    let env = hyperctl_controllers::default_env(&spec)?;
    let controller = hyperctl_controllers::build(&spec)?;

    let device = Device::flex().autodiff();
    device.seed(7); // burn's own initializers draw from the device's RNG
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (x, y) = blobs(1500, &mut rng);
    let (n_train, n_val, batch, epochs) = (1200, 300, 32, 15);
    let x_train: Tensor<2> = Tensor::from_data(
        TensorData::new(x[..n_train * 10].to_vec(), [n_train, 10]),
        &device,
    );
    let y_train: Tensor<1, Int> =
        Tensor::from_data(TensorData::new(y[..n_train].to_vec(), [n_train]), &device);
    let x_val: Tensor<2> = Tensor::from_data(
        TensorData::new(x[n_train * 10..].to_vec(), [n_val, 10]),
        &device,
    );
    let y_val: Tensor<1, Int> =
        Tensor::from_data(TensorData::new(y[n_train..].to_vec(), [n_val]), &device);

    let mut model = Net {
        hidden: LinearConfig::new(10, 64).init(&device),
        act: Relu::new(),
        out: LinearConfig::new(64, 3).init(&device),
    };
    let sgd = ControlledSgd::new(0.0, 0.0, false);
    let momentum = sgd.momentum_handle();
    let mut optim = ModuleOptimizer::from(sgd);
    let val_loss = |model: &Net| -> f64 {
        cross_entropy(
            model.valid().forward(x_val.clone().inner()),
            y_val.clone().inner(),
        )
        .into_scalar::<f32>() as f64
    };

    // An untuned start; the controller takes it from here.
    let start = Hyperparams {
        lr: 0.003,
        momentum: 0.0,
    };
    let steps_per_epoch = n_train.div_ceil(batch);
    // The guard of `hyperctl train --rollback` and `serve`: undo a diverged or blown-up epoch,
    // halve its lr, at most 5 times.
    let guard = Rollback {
        lr_factor: 0.5,
        max_rollbacks: 5,
        blowup_factor: 4.0,
    };
    let (mut session, mut hp) = LiveSession::open(
        controller,
        env,
        epochs,
        start,
        Some(val_loss(&model)),
        steps_per_epoch,
        Some(guard),
    )?;
    println!("controller {spec}");
    // The state to go back to when the guard undoes an epoch: (epoch, model, optimizer).
    let mut good = (0, model.clone(), optim.clone());
    for epoch in 1..=epochs {
        momentum.set(hp.momentum);
        let before = flat_params(&model);
        let (mut losses, mut grad_norms) = (Vec::new(), Vec::new());
        let mut order: Vec<i64> = (0..n_train as i64).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for chunk in order.chunks(batch) {
            let idx: Tensor<1, Int> =
                Tensor::from_data(TensorData::new(chunk.to_vec(), [chunk.len()]), &device);
            let loss = cross_entropy(
                model.forward(x_train.clone().select(0, idx.clone())),
                y_train.clone().select(0, idx),
            );
            losses.push(loss.clone().into_scalar::<f32>() as f64);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            grad_norms.push(global_grad_norm(&model, &grads));
            model = optim.step(hp.lr, model, grads);
        }
        let (_, update_ratio) = param_norms(&before, &flat_params(&model));
        let val = val_loss(&model);
        println!(
            "epoch {epoch:2}  lr {:.5}  momentum {:.3}  train {:.4}  val {val:.4}",
            hp.lr,
            hp.momentum,
            losses.iter().sum::<f64>() / losses.len() as f64
        );
        let decision = session.observe(&EpochReport {
            train_losses: losses,
            val_loss: val,
            grad_norms,
            update_ratio: Some(update_ratio),
            val_metric: None,
        })?;
        for warning in &decision.warnings {
            eprintln!("warning: {warning}");
        }
        if let Some(restore) = decision.restore_epoch {
            assert_eq!(restore, good.0, "the guard returns to the last kept state");
            println!("epoch {epoch:2}  undone: back to the state after epoch {restore}");
            (model, optim) = (good.1.clone(), good.2.clone());
        } else if decision.keep {
            good = (epoch, model.clone(), optim.clone());
        }
        if decision.diverged {
            println!("diverged");
            break;
        }
        hp = decision.hp;
    }
    Ok(())
}
