//! The [`Trainer`]: minibatch SGD on one task, one decision interval at a time.
//!
//! [`Trainer::run_epoch`] trains for one decision interval (a full pass over the shuffled train
//! split by default, or `steps_per_decision` minibatches) under the given [`Hyperparams`], then
//! evaluates on the validation split and returns [`EpochStats`]. Learning rate and momentum may
//! change between any two calls; the momentum buffers are kept (see [`crate::optim`]).
//!
//! # Divergence rule
//! An interval is marked `diverged` when any of these holds:
//! 1. a minibatch loss is not finite (the interval stops at that minibatch);
//! 2. a parameter is not finite after the interval;
//! 3. the validation loss is not finite;
//! 4. the interval's mean training loss exceeds `explode_factor` (default 20) times the reference
//!    loss, which is the untrained model's validation loss (floored at 0.01).
//!
//! After divergence the trainer does no more work: later calls return a diverged, zero-step stats.
//!
//! # Reproducibility
//! Initialisation and shuffling come from seeded ChaCha RNGs on the host, never from a global
//! RNG, so the same config and seed give the same numbers on the CPU backend.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use hyperctl_stats::{
    Averaging, EpochStats, EvalStats, Hyperparams, LayerGradNorm, LrRangeTest, Method,
    OptimizerKind, StepRule, mean_std, mean_std_of,
};

use crate::data::{SplitData, Table, TaskType};
use crate::model::{ModelSpec, Net};
use crate::optim::{ControlledAdamW, ControlledSgd, MomentumHandle};
use crate::rules::{Averager, RuleState};
use crate::{Backend, Error, Result};

/// How to train a task (the data split is configured separately).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainerConfig {
    /// The architecture.
    #[serde(serialize_with = "serialize_display")]
    pub model: ModelSpec,
    /// Minibatch size. One larger than the training split takes the whole split at every step
    /// (templates draw batch sizes without looking at each dataset's size); `hyperctl train`
    /// refuses such a `--batch-size`.
    pub batch_size: usize,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// L2 weight decay added to the gradient (0 for none).
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Minibatches per decision interval; `None` means one full pass (an epoch).
    pub steps_per_decision: Option<usize>,
    /// Divergence when the interval's mean train loss exceeds this factor times the initial loss.
    pub explode_factor: f64,
    /// Backend to run on.
    pub backend: Backend,
    /// Measure the cosine between consecutive minibatch gradients (`grad_cos_mean`; NaN when
    /// off). It costs a copy of every gradient and a dot product per step, and only the
    /// hypergradient controller reads it, so it is off unless asked for.
    pub grad_cosines: bool,
    /// The inner optimizer (what the controller's lr and momentum drive).
    pub optimizer: OptimizerKind,
}

fn serialize_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl TrainerConfig {
    /// A config with the documented defaults for the optional fields.
    pub fn new(model: ModelSpec, batch_size: usize, seed: u64) -> Self {
        Self {
            model,
            batch_size,
            seed,
            weight_decay: 0.0,
            nesterov: false,
            steps_per_decision: None,
            explode_factor: 20.0,
            backend: Backend::Flex,
            grad_cosines: false,
            optimizer: OptimizerKind::Sgd,
        }
    }
}

enum Targets {
    Classes(Tensor<1, Int>),
    Values(Tensor<2>),
}

struct DeviceTable {
    x: Tensor<2>,
    y: Targets,
    n_rows: usize,
    /// Σ (y − ȳ)² of the (standardized) targets, for R².
    total_sum_squares: f64,
}

impl DeviceTable {
    /// Takes the table's buffers (no copy of the features: `TensorData` keeps the `Vec`).
    fn new(table: Table, n_features: usize, task_type: TaskType, device: &Device) -> Self {
        let n = table.n_rows();
        let mean = table.y.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64;
        let total_sum_squares = table.y.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        let x = Tensor::from_data(TensorData::new(table.x, [n, n_features]), device);
        let y = match task_type {
            TaskType::Classification => {
                let labels: Vec<i64> = table.y.iter().map(|&v| v as i64).collect();
                Targets::Classes(Tensor::from_data(TensorData::new(labels, [n]), device))
            }
            TaskType::Regression => {
                Targets::Values(Tensor::from_data(TensorData::new(table.y, [n, 1]), device))
            }
        };
        Self {
            x,
            y,
            n_rows: n,
            total_sum_squares,
        }
    }
}

/// Trains one task; see the module docs.
pub struct Trainer {
    config: TrainerConfig,
    task_type: TaskType,
    device: Device,
    model: Option<Net>,
    optim: ModuleOptimizer,
    momentum: MomentumHandle,
    train: DeviceTable,
    val: DeviceTable,
    test: DeviceTable,
    rng: ChaCha8Rng,
    permutation: Vec<usize>,
    cursor: usize,
    n_intervals: usize,
    total_steps: usize,
    initial_val: EvalStats,
    params_before: Vec<f32>,
    /// The previous step's gradients (flattened, model order) and their global norm.
    prev_grads: Option<(Vec<Tensor<1>>, f64)>,
    diverged: bool,
    /// The layers' names and, for each parameter tensor in model order, its layer (read from
    /// the module tree at the first step; the tree never changes).
    layers: Option<(Vec<String>, Vec<usize>)>,
    /// What the controller asked for beyond lr and momentum ([`Trainer::set_method`]).
    method: Method,
    /// The parameter-free rule's state, when the method has one (in place of `optim`).
    rule: Option<RuleState>,
    /// The averaged weights, when the method averages.
    averager: Option<Averager>,
    /// Steps an LR range test took from the budget, still to be taken off the next intervals.
    step_debt: usize,
}

/// What an LR range test ([`Trainer::lr_range_test`]) measured and picked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LrRangeOutcome {
    /// The lr of each step taken.
    pub lrs: Vec<f64>,
    /// The smoothed loss after each step (EMA 0.98, debiased, as fastai's recorder).
    pub smoothed_losses: Vec<f64>,
    /// The picked lr (`None`: the curve had no usable part; the caller keeps its lr).
    pub picked: Option<f64>,
}

/// The trainer's learning state at one moment (weights, optimizer velocity, data order), to go
/// back to with [`Trainer::restore`]. Cheap: tensors are shared, not copied.
#[derive(Clone)]
pub struct TrainerSnapshot {
    model: Net,
    optim: ModuleOptimizer,
    rng: ChaCha8Rng,
    permutation: Vec<usize>,
    cursor: usize,
    params_before: Vec<f32>,
    prev_grads: Option<(Vec<Tensor<1>>, f64)>,
    rule: Option<RuleState>,
    averager: Option<Averager>,
}

/// What one SGD step reports.
struct StepOut {
    loss: f64,
    global_norm: f64,
    layer_norms: Vec<f64>,
    /// Cosine with the previous step's gradient, when there was one.
    grad_cos: Option<f64>,
}

impl Trainer {
    /// Builds the model and puts a copy of the split's data on the backend's device.
    pub fn new(data: &SplitData, config: &TrainerConfig) -> Result<Self> {
        Self::from_split(data.clone(), config)
    }

    /// [`Trainer::new`] taking the split itself: its buffers become the device tables without a
    /// copy (an episode start of meta-training builds a fresh split and hands it over).
    pub fn from_split(data: SplitData, config: &TrainerConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::InvalidConfig {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if config.steps_per_decision == Some(0) {
            return Err(Error::InvalidConfig {
                field: "steps_per_decision",
                reason: "must be at least 1".into(),
            });
        }
        if config.explode_factor.is_nan() || config.explode_factor <= 1.0 {
            return Err(Error::InvalidConfig {
                field: "explode_factor",
                reason: "must be greater than 1".into(),
            });
        }
        if !(config.weight_decay >= 0.0 && config.weight_decay.is_finite()) {
            return Err(Error::InvalidConfig {
                field: "weight_decay",
                reason: "must be a finite value ≥ 0".into(),
            });
        }
        if config.nesterov && config.optimizer != OptimizerKind::Sgd {
            return Err(Error::InvalidConfig {
                field: "nesterov",
                reason: format!("is an SGD option; the optimizer is {}", config.optimizer),
            });
        }
        let device = config.backend.device()?;
        let n_outputs = match data.task_type {
            TaskType::Classification => data.n_classes,
            TaskType::Regression => 1,
        };
        let model = config.model.init(
            data.n_features,
            data.image_shape,
            n_outputs,
            config.seed,
            &device.clone().autodiff(),
        )?;
        let (optim, momentum) = match config.optimizer {
            OptimizerKind::Sgd => {
                let sgd = ControlledSgd::new(0.0, config.weight_decay, config.nesterov);
                let handle = sgd.momentum_handle();
                (ModuleOptimizer::from(sgd), handle)
            }
            OptimizerKind::Adamw => {
                let adamw = ControlledAdamW::new(0.0, config.weight_decay);
                let handle = adamw.momentum_handle();
                (ModuleOptimizer::from(adamw), handle)
            }
        };
        let (n_features, task_type) = (data.n_features, data.task_type);
        let train = DeviceTable::new(data.train, n_features, task_type, &device);
        let val = DeviceTable::new(data.val, n_features, task_type, &device);
        let test = DeviceTable::new(data.test, n_features, task_type, &device);
        let mut trainer = Self {
            config: config.clone(),
            task_type: data.task_type,
            device,
            model: Some(model),
            optim,
            momentum,
            permutation: (0..train.n_rows).collect(),
            train,
            val,
            test,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_5487_f1e5),
            cursor: usize::MAX, // Shuffle before the first step.
            n_intervals: 0,
            total_steps: 0,
            initial_val: EvalStats {
                loss: f64::NAN,
                metric: f64::NAN,
            },
            params_before: Vec::new(),
            prev_grads: None,
            diverged: false,
            layers: None,
            method: Method::INNER,
            rule: None,
            averager: None,
            step_debt: 0,
        };
        trainer.initial_val = trainer.evaluate(&trainer.val);
        trainer.params_before = trainer.flat_params();
        Ok(trainer)
    }

    /// The validation loss and metric of the untrained model.
    pub fn initial_val(&self) -> EvalStats {
        self.initial_val
    }

    /// Rows of the training split.
    pub fn train_rows(&self) -> usize {
        self.train.n_rows
    }

    /// Minibatches in one full pass over the train split.
    pub fn steps_per_epoch(&self) -> usize {
        self.train.n_rows.div_ceil(self.config.batch_size)
    }

    /// Rows in the train split.
    pub fn n_train(&self) -> usize {
        self.train.n_rows
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.model().num_params()
    }

    /// Whether the run has diverged.
    pub fn diverged(&self) -> bool {
        self.diverged
    }

    /// The config this trainer was built from.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains with `method` from now on: a parameter-free step rule in place of the inner
    /// optimizer, iterate averaging (validation and test losses then measured at the averaged
    /// weights). Only before the first step; `budget_steps` is the run's minibatch steps (for
    /// Schedule-Free's warmup).
    pub fn set_method(&mut self, method: Method, budget_steps: usize) -> Result<()> {
        if self.total_steps > 0 {
            return Err(Error::InvalidConfig {
                field: "method",
                reason: "can only be set before the first step".into(),
            });
        }
        check_method(&method)?;
        self.rule = RuleState::new(
            method.rule,
            self.config.weight_decay,
            self.config.optimizer == OptimizerKind::Adamw,
            budget_steps,
        );
        self.averager = method
            .average
            .map(|kind| Averager::new(kind, flat_values(self.model())));
        self.method = method;
        Ok(())
    }

    /// Every float parameter of the trained model, in model order: its module path (e.g.
    /// `hidden.0.weight`; burn's `Linear` weight is `[inputs, outputs]`), shape and values. For
    /// exporting a model's initial weights to another framework (the cross-checks in
    /// `experiments/param-free-crosscheck`).
    pub fn named_parameters(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        struct Named {
            path: Vec<String>,
            out: Vec<(String, Vec<usize>, Vec<f32>)>,
        }
        impl ModuleVisitor for Named {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val().inner();
                let shape = value.shape().dims::<D>().to_vec();
                let n = value.shape().num_elements();
                self.out
                    .push((self.path.join("."), shape, to_host(value.reshape([n]))));
            }
        }
        let mut named = Named {
            path: Vec::new(),
            out: Vec::new(),
        };
        self.model().visit(&mut named);
        named.out
    }

    /// Runs an LR range test (see [`hyperctl_stats::LrRangeTest`]) at `momentum` before the
    /// first interval: the sweep's steps, then everything back as it was except the step count
    /// (the next intervals are shortened by the sweep's steps, each keeping at least one).
    pub fn lr_range_test(
        &mut self,
        test: &hyperctl_stats::LrRangeTest,
        momentum: f64,
    ) -> Result<LrRangeOutcome> {
        if self.total_steps > 0 {
            return Err(Error::InvalidConfig {
                field: "lr_range_test",
                reason: "can only run before the first step".into(),
            });
        }
        check_lr_range_test(test)?;
        Hyperparams {
            lr: test.end_lr,
            momentum,
        }
        .validate()?;
        let snapshot = self.snapshot();
        self.momentum.set(momentum);
        let (mut lrs, mut smoothed) = (Vec::new(), Vec::new());
        let (mut avg, mut best) = (0f64, f64::INFINITY);
        for i in 0..test.steps {
            // fastai's SchedExp at pos = i / num_it.
            let lr =
                test.start_lr * (test.end_lr / test.start_lr).powf(i as f64 / test.steps as f64);
            let indices = self.next_batch();
            let loss = self.train_step(lr, &indices).loss;
            avg = 0.98 * avg + 0.02 * loss;
            let smooth = avg / (1.0 - 0.98f64.powi(i as i32 + 1));
            lrs.push(lr);
            smoothed.push(smooth);
            if !smooth.is_finite() || smooth > 4.0 * best {
                break;
            }
            best = best.min(smooth);
        }
        let taken = lrs.len();
        self.restore(&snapshot);
        self.total_steps += taken;
        self.step_debt += taken;
        let picked = valley(&lrs, &smoothed, test.steps);
        Ok(LrRangeOutcome {
            lrs,
            smoothed_losses: smoothed,
            picked,
        })
    }

    /// The method in use ([`Trainer::set_method`]).
    pub fn method(&self) -> Method {
        self.method
    }

    fn model(&self) -> &Net {
        self.model
            .as_ref()
            .expect("the model should be present between steps")
    }

    /// The learning state now (see [`TrainerSnapshot`]).
    pub fn snapshot(&self) -> TrainerSnapshot {
        TrainerSnapshot {
            model: self.model().clone(),
            optim: self.optim.clone(),
            rng: self.rng.clone(),
            permutation: self.permutation.clone(),
            cursor: self.cursor,
            params_before: self.params_before.clone(),
            prev_grads: self.prev_grads.clone(),
            rule: self.rule.clone(),
            averager: self.averager.clone(),
        }
    }

    /// Goes back to a snapshot of this trainer: weights, velocity and data order as they were,
    /// divergence cleared. Interval and step counters keep counting (the budget was spent).
    pub fn restore(&mut self, snapshot: &TrainerSnapshot) {
        let s = snapshot.clone();
        self.model = Some(s.model);
        self.optim = s.optim;
        self.rng = s.rng;
        self.permutation = s.permutation;
        self.cursor = s.cursor;
        self.params_before = s.params_before;
        self.prev_grads = s.prev_grads;
        self.rule = s.rule;
        self.averager = s.averager;
        self.diverged = false;
    }

    /// Trains one decision interval under `hp`, then evaluates on the validation split.
    pub fn run_epoch(&mut self, hp: Hyperparams) -> Result<EpochStats> {
        hp.validate()?;
        let start = Instant::now();
        self.n_intervals += 1;
        let mut stats = EpochStats {
            epoch: self.n_intervals,
            epochs_done: self.total_steps as f64 / self.steps_per_epoch() as f64,
            steps: 0,
            lr: hp.lr,
            momentum: hp.momentum,
            train_loss_mean: f64::NAN,
            train_loss_std: f64::NAN,
            train_loss_first: f64::NAN,
            train_loss_last: f64::NAN,
            val_loss: f64::NAN,
            val_metric: f64::NAN,
            grad_norm_mean: f64::NAN,
            grad_norm_std: f64::NAN,
            grad_norm_max: f64::NAN,
            layer_grad_norms: Vec::new(),
            grad_cos_mean: f64::NAN,
            weight_norm: f64::NAN,
            update_ratio: f64::NAN,
            wall_secs: 0.0,
            diverged: true,
        };
        if self.diverged {
            return Ok(stats);
        }
        self.momentum.set(hp.momentum);
        let n_steps = self
            .config
            .steps_per_decision
            .unwrap_or_else(|| self.steps_per_epoch());
        // An LR range test's steps come off the first intervals (each keeps one).
        let paid = self.step_debt.min(n_steps - 1);
        self.step_debt -= paid;
        let n_steps = n_steps - paid;
        let mut losses = Vec::with_capacity(n_steps);
        let mut norms = Vec::with_capacity(n_steps);
        let mut layer_sums: Vec<f64> = Vec::new();
        let mut cosines = Vec::with_capacity(n_steps);
        let mut nonfinite = false;
        for _ in 0..n_steps {
            let indices = self.next_batch();
            let StepOut {
                loss,
                global_norm,
                layer_norms,
                grad_cos,
            } = self.train_step(hp.lr, &indices);
            if layer_sums.is_empty() {
                layer_sums = vec![0.0; layer_norms.len()];
            }
            losses.push(loss);
            norms.push(global_norm);
            cosines.extend(grad_cos);
            for (sum, n) in layer_sums.iter_mut().zip(&layer_norms) {
                *sum += n;
            }
            if !loss.is_finite() || !global_norm.is_finite() {
                nonfinite = true;
                break;
            }
        }
        self.total_steps += losses.len();
        stats.steps = losses.len();
        stats.epochs_done = self.total_steps as f64 / self.steps_per_epoch() as f64;
        (stats.train_loss_mean, stats.train_loss_std) = mean_std(&losses);
        stats.train_loss_first = losses.first().copied().unwrap_or(f64::NAN);
        stats.train_loss_last = losses.last().copied().unwrap_or(f64::NAN);
        (stats.grad_norm_mean, stats.grad_norm_std) = mean_std(&norms);
        stats.grad_norm_max = norms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        stats.grad_cos_mean = mean_std(&cosines).0;
        let layer_names = self.layers.as_ref().map_or(&[][..], |l| &l.0[..]);
        stats.layer_grad_norms = layer_names
            .iter()
            .zip(&layer_sums)
            .map(|(layer, sum)| LayerGradNorm {
                layer: layer.clone(),
                mean: sum / losses.len() as f64,
            })
            .collect();

        let params = self.flat_params();
        let params_finite = params.iter().all(|v| v.is_finite());
        (stats.weight_norm, stats.update_ratio) =
            crate::optim::param_norms(&self.params_before, &params);
        self.params_before = params;

        if !nonfinite && params_finite {
            let val = self.evaluate(&self.val);
            stats.val_loss = val.loss;
            stats.val_metric = val.metric;
        }
        let reference = self.initial_val.loss.max(0.01);
        stats.diverged = nonfinite
            || !params_finite
            || !stats.val_loss.is_finite()
            || stats.train_loss_mean > self.config.explode_factor * reference;
        self.diverged = stats.diverged;
        stats.wall_secs = start.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Loss and metric on the test split (for reporting after training only).
    pub fn evaluate_test(&self) -> EvalStats {
        if self.diverged {
            return EvalStats {
                loss: f64::NAN,
                metric: f64::NAN,
            };
        }
        self.evaluate(&self.test)
    }

    fn next_batch(&mut self) -> Vec<i64> {
        if self.cursor >= self.permutation.len() {
            self.permutation.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let end = (self.cursor + self.config.batch_size).min(self.permutation.len());
        let batch = self.permutation[self.cursor..end]
            .iter()
            .map(|&i| i as i64)
            .collect();
        self.cursor = end;
        batch
    }

    /// One SGD step.
    fn train_step(&mut self, lr: f64, indices: &[i64]) -> StepOut {
        let batch = indices.len();
        let idx: Tensor<1, Int> =
            Tensor::from_data(TensorData::new(indices.to_vec(), [batch]), &self.device);
        let model = self
            .model
            .take()
            .expect("the model should be present between steps");
        let x = self.train.x.clone().select(0, idx.clone()); // [batch, n_features]
        let output = model.forward(x); // [batch, n_outputs]
        let loss = match &self.train.y {
            Targets::Classes(y) => cross_entropy(output, y.clone().select(0, idx)),
            Targets::Values(y) => (output - y.clone().select(0, idx)).square().mean(),
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);

        // The loss, the gradient norms and the dot product with the previous step's gradient
        // leave the device together: one host sync per step.
        let GradSquares {
            names,
            squares,
            flat,
            ..
        } = grad_squares(
            &model,
            &grads,
            self.layers.is_none(),
            self.config.grad_cosines,
        );
        let n_params = squares.len();
        let mut parts = Vec::with_capacity(n_params + 2);
        parts.push(loss.inner().reshape([1]));
        parts.extend(squares);
        let prev_norm = match self.prev_grads.take() {
            Some((prev, norm)) if prev.len() == flat.len() => {
                let dots: Vec<Tensor<1>> = flat
                    .iter()
                    .zip(prev)
                    .map(|(g, p)| (g.clone() * p).sum())
                    .collect();
                parts.push(Tensor::cat(dots, 0).sum().reshape([1]));
                Some(norm)
            }
            _ => None,
        };
        let host = to_host(Tensor::cat(parts, 0));
        let loss_value = host[0] as f64;
        let (layer_names, layer_of) = self.layers.get_or_insert_with(|| {
            // Parameters of one layer are consecutive: group them by their module path.
            let mut layer_names: Vec<String> = Vec::new();
            let mut layer_of = Vec::with_capacity(names.len());
            for name in &names {
                let layer = name
                    .rsplit_once('.')
                    .map_or(name.as_str(), |(layer, _)| layer);
                if layer_names.last().map(String::as_str) != Some(layer) {
                    layer_names.push(layer.to_string());
                }
                layer_of.push(layer_names.len() - 1);
            }
            (layer_names, layer_of)
        });
        let mut layer_sq = vec![0f64; layer_names.len()];
        for (&layer, &sq) in layer_of.iter().zip(&host[1..=n_params]) {
            layer_sq[layer] += sq as f64;
        }

        let global_norm = layer_sq.iter().sum::<f64>().sqrt();
        let layer_norms = layer_sq.iter().map(|s| s.sqrt()).collect();
        let grad_cos =
            prev_norm.map(|prev| host[n_params + 1] as f64 / (global_norm * prev).max(1e-30));
        if self.config.grad_cosines {
            self.prev_grads = Some((flat, global_norm));
        }

        let model = match &mut self.rule {
            None => self.optim.step(lr, model, grads),
            Some(rule) => {
                let (x, g) = flat_values_and_grads(&model, &grads);
                drop(grads);
                let new = rule.step(lr, x, g);
                set_flat(model, new, true)
            }
        };
        if let Some(averager) = &mut self.averager {
            let y = flat_values(&model);
            let x = self
                .rule
                .as_ref()
                .and_then(|rule| rule.eval_point(&y))
                .unwrap_or(y);
            averager.update(&x);
        }
        self.model = Some(model);
        StepOut {
            loss: loss_value,
            global_norm,
            layer_norms,
            grad_cos,
        }
    }

    // burn slices a tensor's first dimension with a one-element array of ranges.
    #[allow(clippy::single_range_in_vec_init)]
    fn evaluate(&self, table: &DeviceTable) -> EvalStats {
        const CHUNK: usize = 4096;
        let model = self.eval_net();
        let (mut loss_sum, mut metric_sum) = (0f64, 0f64);
        for start in (0..table.n_rows).step_by(CHUNK) {
            let end = (start + CHUNK).min(table.n_rows);
            let x = table.x.clone().slice([start..end]); // [chunk, n_features]
            let output = model.forward(x); // [chunk, n_outputs]
            let sums = match &table.y {
                Targets::Classes(y) => {
                    let y = y.clone().slice([start..end]); // [chunk]
                    let n = end - start;
                    let log_probs = burn::tensor::activation::log_softmax(output.clone(), 1);
                    let nll = log_probs.gather(1, y.clone().reshape([n, 1])).sum().neg(); // [1]
                    let correct = output.argmax(1).reshape([n]).equal(y).int().sum().float(); // [1]
                    Tensor::cat(vec![nll, correct], 0)
                }
                Targets::Values(y) => {
                    let sse = (output - y.clone().slice([start..end])).square().sum(); // [1]
                    Tensor::cat(vec![sse.clone(), sse], 0)
                }
            };
            let host = to_host(sums);
            loss_sum += host[0] as f64;
            metric_sum += host[1] as f64;
        }
        let n = table.n_rows as f64;
        match self.task_type {
            TaskType::Classification => EvalStats {
                loss: loss_sum / n,
                metric: metric_sum / n,
            },
            TaskType::Regression => EvalStats {
                loss: loss_sum / n,
                metric: 1.0 - metric_sum / table.total_sum_squares.max(1e-12),
            },
        }
    }

    /// The network validation and test losses are measured on (without autodiff): the averaged
    /// weights when averaging, Schedule-Free's average `x`, else the trained iterate.
    fn eval_net(&self) -> Net {
        let model = self.model().valid();
        if let Some(averager) = &self.averager {
            return set_flat(model, averager.weights().to_vec(), false);
        }
        match self
            .rule
            .as_ref()
            .and_then(|rule| rule.eval_point(&flat_values(&model)))
        {
            Some(x) => set_flat(model, x, false),
            None => model,
        }
    }

    /// All parameters, flattened in model order, on the host.
    fn flat_params(&self) -> Vec<f32> {
        to_host(Tensor::cat(flat_values(self.model()), 0))
    }
}

/// fastai's `valley` suggestion (fastai 2.7, `callback/schedule.py`) on the curve without its
/// first tenth of `num_it` and its last 5 points, cut at the first non-finite loss: the lr a
/// third and a half of a third along the longest strictly descending run of losses.
fn valley(lrs: &[f64], losses: &[f64], num_it: usize) -> Option<f64> {
    let lo = num_it / 10;
    let hi = losses.len().saturating_sub(5);
    if hi <= lo {
        return None;
    }
    let (mut lrs, mut losses) = (&lrs[lo..hi], &losses[lo..hi]);
    if let Some(first_bad) = losses.iter().position(|l| !l.is_finite()) {
        (lrs, losses) = (&lrs[..first_bad], &losses[..first_bad]);
    }
    let n = losses.len();
    if n == 0 {
        return None;
    }
    // fastai's arithmetic, Python's negative indices included (a valley starting at the first
    // point gives max_start = −1).
    let (mut max_start, mut max_end) = (0isize, 0usize);
    let mut lds = vec![1isize; n];
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as isize - lds[max_end];
            }
        }
    }
    let sections = (max_end as isize - max_start) as f64 / 3.0;
    let idx = max_start + sections as isize + (sections / 2.0) as isize;
    let idx = if idx < 0 { idx + n as isize } else { idx };
    lrs.get(usize::try_from(idx).ok()?).copied()
}

fn check_lr_range_test(test: &hyperctl_stats::LrRangeTest) -> Result<()> {
    if !(test.start_lr > 0.0 && test.end_lr > test.start_lr && test.end_lr.is_finite()) {
        return Err(Error::InvalidConfig {
            field: "lr_range_test",
            reason: format!(
                "needs 0 < start_lr < end_lr (finite); got {} and {}",
                test.start_lr, test.end_lr
            ),
        });
    }
    if test.steps == 0 {
        return Err(Error::InvalidConfig {
            field: "lr_range_test",
            reason: "needs at least one step".into(),
        });
    }
    Ok(())
}

/// Checks a method's numbers, naming the bad one (what [`Trainer::set_method`] refuses).
pub fn check_method(method: &Method) -> Result<()> {
    if let Some(test) = &method.lr_range_test {
        check_lr_range_test(test)?;
    }
    let bad = |field: &'static str, reason: &str| {
        Err(Error::InvalidConfig {
            field,
            reason: reason.into(),
        })
    };
    let positive = |v: f64| v.is_finite() && v > 0.0;
    match method.rule {
        StepRule::Inner => {}
        StepRule::Dog { reps_rel, .. } if !positive(reps_rel) => {
            return bad("reps_rel", "must be a finite value > 0");
        }
        StepRule::ScheduleFree {
            beta,
            warmup_fraction,
            weight_lr_power,
        } => {
            if !(beta > 0.0 && beta < 1.0) {
                return bad("beta", "must be in (0, 1)");
            }
            if !(0.0..=1.0).contains(&warmup_fraction) {
                return bad("warmup", "must be a fraction in [0, 1]");
            }
            if !(weight_lr_power.is_finite() && weight_lr_power >= 0.0) {
                return bad("weight_lr_power", "must be a finite value ≥ 0");
            }
        }
        StepRule::Prodigy { d0 } if !positive(d0) => {
            return bad("d0", "must be a finite value > 0");
        }
        StepRule::DAdaptSgd { d0, momentum } => {
            if !positive(d0) {
                return bad("d0", "must be a finite value > 0");
            }
            if !(0.0..1.0).contains(&momentum) {
                return bad("momentum", "must be in [0, 1)");
            }
        }
        _ => {}
    }
    match method.average {
        Some(Averaging::PolyDecay { gamma }) if !(gamma.is_finite() && gamma >= 0.0) => {
            bad("gamma", "must be a finite value ≥ 0")
        }
        Some(Averaging::Ema { decay }) if !(decay > 0.0 && decay < 1.0) => {
            bad("ema", "must be a decay in (0, 1)")
        }
        _ => Ok(()),
    }
}

/// Every float parameter's value (off the autodiff tape), flattened, in model order.
fn flat_values(model: &Net) -> Vec<Tensor<1>> {
    flat_values_and_grads_inner(model, None).0
}

/// Every float parameter's value and gradient (zeros where it has none), flattened, in model
/// order: what a [`RuleState`] steps.
fn flat_values_and_grads(model: &Net, grads: &GradientsParams) -> (Vec<Tensor<1>>, Vec<Tensor<1>>) {
    flat_values_and_grads_inner(model, Some(grads))
}

fn flat_values_and_grads_inner(
    model: &Net,
    grads: Option<&GradientsParams>,
) -> (Vec<Tensor<1>>, Vec<Tensor<1>>) {
    struct Flat<'a> {
        grads: Option<&'a GradientsParams>,
        values: Vec<Tensor<1>>,
        flat_grads: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val().inner();
            let n = value.shape().num_elements();
            if let Some(grads) = self.grads {
                let grad = grads
                    .get::<D>(param.id)
                    .unwrap_or_else(|| value.zeros_like());
                self.flat_grads.push(grad.reshape([n]));
            }
            self.values.push(value.reshape([n]));
        }
    }
    let mut flat = Flat {
        grads,
        values: Vec::new(),
        flat_grads: Vec::new(),
    };
    model.visit(&mut flat);
    (flat.values, flat.flat_grads)
}

/// `model` with its float parameters replaced, in model order, by `values` (flattened);
/// `trainable`: lift them back onto the autodiff tape (the trained model) or not (an eval copy).
fn set_flat(model: Net, values: Vec<Tensor<1>>, trainable: bool) -> Net {
    struct SetFlat {
        values: std::vec::IntoIter<Tensor<1>>,
        trainable: bool,
    }
    impl burn::module::ModuleMapper for SetFlat {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, old, mapper) = param.consume();
            let new = self
                .values
                .next()
                .expect("one value per parameter")
                .reshape(old.shape());
            let new = if self.trainable {
                let lifted = Tensor::from_inner(new);
                if old.is_require_grad() {
                    lifted.require_grad()
                } else {
                    lifted
                }
            } else {
                new
            };
            Param::from_mapped_value(id, new, mapper)
        }
    }
    model.map(&mut SetFlat {
        values: values.into_iter(),
        trainable,
    })
}

/// Mean cross-entropy of logits `[batch, classes]` against labels `[batch]`.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let batch = labels.dims()[0];
    let log_probs = burn::tensor::activation::log_softmax(logits, 1); // [batch, classes]
    log_probs.gather(1, labels.reshape([batch, 1])).mean().neg() // [1]
}

/// Copies a small vector to the host (one sync).
pub(crate) fn to_host(tensor: Tensor<1>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a converted tensor should hold f32 values")
}

/// Σg² of every parameter tensor that has a gradient (on the device), with its module path and
/// the flattened gradient.
fn grad_squares<'a>(
    model: &Net,
    grads: &'a GradientsParams,
    with_names: bool,
    with_flat: bool,
) -> GradSquares<'a> {
    let mut visitor = GradSquares {
        grads,
        with_names,
        with_flat,
        path: Vec::new(),
        names: Vec::new(),
        squares: Vec::new(),
        flat: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor
}

/// Collects Σg² per parameter tensor, with the parameter's module path.
struct GradSquares<'a> {
    grads: &'a GradientsParams,
    /// Record each parameter's module path (needed once per trainer).
    with_names: bool,
    /// Keep each flattened gradient (for the next step's cosine).
    with_flat: bool,
    path: Vec<String>,
    names: Vec<String>,
    squares: Vec<Tensor<1>>,
    flat: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradSquares<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        if self.with_names {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        if self.with_names {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            if self.with_names {
                self.names.push(self.path.join("."));
            }
            if self.with_flat {
                let n = grad.shape().num_elements();
                self.flat.push(grad.clone().reshape([n]));
            }
            self.squares.push(grad.square().sum());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{SplitConfig, split};
    use crate::source::DatasetSource;

    fn task(source: &str, task_type: TaskType, seed: u64) -> SplitData {
        let data = DatasetSource::parse(source)
            .unwrap()
            .load(task_type)
            .unwrap();
        split(
            &data,
            &SplitConfig {
                seed,
                val_fraction: 0.2,
                test_fraction: 0.2,
                train_fraction: 1.0,
                max_train_rows: None,
            },
        )
        .unwrap()
    }

    fn hp(lr: f64, momentum: f64) -> Hyperparams {
        Hyperparams { lr, momentum }
    }

    #[test]
    fn loss_falls_on_a_generated_task() {
        let data = task("gen:gauss-mix:n=600,d=6", TaskType::Classification, 0);
        let mut trainer = Trainer::new(
            &data,
            &TrainerConfig::new(ModelSpec::parse("mlp:32x2").unwrap(), 32, 0),
        )
        .unwrap();
        let initial = trainer.initial_val();
        let mut last = None;
        for _ in 0..5 {
            last = Some(trainer.run_epoch(hp(0.05, 0.9)).unwrap());
        }
        let last = last.unwrap();
        assert!(!last.diverged);
        assert_eq!(last.steps, trainer.steps_per_epoch());
        assert!(
            last.val_loss < 0.7 * initial.loss,
            "val loss {} vs initial {}",
            last.val_loss,
            initial.loss
        );
        assert!(last.val_metric > 0.6, "accuracy {}", last.val_metric);
        let test = trainer.evaluate_test();
        assert!(test.loss.is_finite() && test.metric > 0.5);
        assert_eq!(last.layer_grad_norms.len(), 3);
        assert!(last.weight_norm > 0.0 && last.update_ratio > 0.0);
    }

    #[test]
    fn same_seed_gives_bit_identical_stats() {
        let data = task("gen:spirals:n=300,d=4", TaskType::Classification, 3);
        let run = |grad_cosines: bool| {
            let config = TrainerConfig {
                grad_cosines,
                ..TrainerConfig::new(ModelSpec::parse("mlp:16x2:tanh").unwrap(), 16, 3)
            };
            let mut trainer = Trainer::new(&data, &config).unwrap();
            let mut out = Vec::new();
            for (lr, mu) in [(0.1, 0.0), (0.3, 0.9), (0.05, 0.5)] {
                let mut s = trainer.run_epoch(hp(lr, mu)).unwrap();
                s.wall_secs = 0.0;
                out.push(s);
            }
            out
        };
        let with = run(true);
        assert_eq!(with, run(true));
        assert!(with.iter().all(|s| s.grad_cos_mean.abs() <= 1.0));
        // Without the cosines everything else is the same, bit for bit.
        let without = run(false);
        for (a, b) in with.iter().zip(&without) {
            assert!(b.grad_cos_mean.is_nan());
            let b = EpochStats {
                grad_cos_mean: a.grad_cos_mean,
                ..b.clone()
            };
            assert_eq!(*a, b);
        }
    }

    #[test]
    fn huge_learning_rate_diverges_without_panic() {
        let data = task("gen:teacher-reg:n=200,d=4", TaskType::Regression, 0);
        let mut trainer = Trainer::new(
            &data,
            &TrainerConfig::new(ModelSpec::parse("mlp:16x1").unwrap(), 16, 0),
        )
        .unwrap();
        let stats = trainer.run_epoch(hp(1e6, 0.9)).unwrap();
        assert!(stats.diverged, "{stats:?}");
        assert!(trainer.diverged());
        let again = trainer.run_epoch(hp(0.01, 0.0)).unwrap();
        assert!(again.diverged && again.steps == 0);
        assert!(trainer.evaluate_test().loss.is_nan());
    }

    #[test]
    fn invalid_hyperparameters_are_errors() {
        let data = task("gen:gauss-mix:n=100,d=2", TaskType::Classification, 0);
        let mut trainer = Trainer::new(
            &data,
            &TrainerConfig::new(ModelSpec::parse("linear").unwrap(), 8, 0),
        )
        .unwrap();
        assert!(
            trainer
                .run_epoch(hp(f64::NAN, 0.0))
                .unwrap_err()
                .to_string()
                .contains("lr")
        );
        assert!(
            trainer
                .run_epoch(hp(0.1, 1.0))
                .unwrap_err()
                .to_string()
                .contains("momentum")
        );
        let bad = TrainerConfig {
            batch_size: 0,
            ..TrainerConfig::new(ModelSpec::parse("linear").unwrap(), 8, 0)
        };
        assert!(Trainer::new(&data, &bad).is_err());
    }

    #[test]
    fn averaging_changes_where_the_model_is_evaluated_not_how_it_trains() {
        let data = task("gen:gauss-mix:n=300,d=4", TaskType::Classification, 0);
        let config = TrainerConfig::new(ModelSpec::parse("mlp:16x1").unwrap(), 16, 0);
        let run = |method: Method| {
            let mut trainer = Trainer::new(&data, &config).unwrap();
            trainer
                .set_method(method, 3 * trainer.steps_per_epoch())
                .unwrap();
            let stats: Vec<EpochStats> = (0..3)
                .map(|_| trainer.run_epoch(hp(0.2, 0.9)).unwrap())
                .collect();
            (stats, trainer.evaluate_test())
        };
        let (plain, plain_test) = run(Method::INNER);
        let (avg, avg_test) = run(Method {
            rule: StepRule::Inner,
            average: Some(Averaging::PolyDecay { gamma: 8.0 }),
            lr_range_test: None,
        });
        for (p, a) in plain.iter().zip(&avg) {
            assert_eq!(p.train_loss_mean, a.train_loss_mean);
            assert_eq!(p.update_ratio, a.update_ratio);
            assert_ne!(p.val_loss, a.val_loss);
        }
        assert_ne!(plain_test.loss, avg_test.loss);
        assert!(avg_test.loss.is_finite());
    }

    #[test]
    fn a_rule_and_its_average_go_back_with_a_snapshot() {
        let data = task("gen:gauss-mix:n=200,d=3", TaskType::Classification, 1);
        let config = TrainerConfig::new(ModelSpec::parse("mlp:8x1").unwrap(), 20, 1);
        for rule in [
            StepRule::Dog {
                reps_rel: 1e-4,
                layerwise: false,
            },
            StepRule::ScheduleFree {
                beta: 0.9,
                warmup_fraction: 0.1,
                weight_lr_power: 2.0,
            },
            StepRule::Prodigy { d0: 1e-6 },
            StepRule::DAdaptSgd {
                d0: 1e-6,
                momentum: 0.9,
            },
        ] {
            let mut trainer = Trainer::new(&data, &config).unwrap();
            let method = Method {
                rule,
                average: Some(Averaging::Ema { decay: 0.9 }),
                lr_range_test: None,
            };
            trainer.set_method(method, 40).unwrap();
            trainer.run_epoch(hp(0.1, 0.0)).unwrap();
            let snapshot = trainer.snapshot();
            let strip = |mut s: EpochStats| {
                s.wall_secs = 0.0;
                s.epoch = 0;
                s.epochs_done = 0.0;
                s.grad_cos_mean = 0.0; // NaN (not measured) would never compare equal.
                s
            };
            let first = strip(trainer.run_epoch(hp(0.1, 0.0)).unwrap());
            trainer.restore(&snapshot);
            let again = strip(trainer.run_epoch(hp(0.1, 0.0)).unwrap());
            assert_eq!(first, again, "{rule:?}");
            assert!(!first.diverged && first.val_loss.is_finite(), "{rule:?}");
            let err = trainer.set_method(method, 40).unwrap_err().to_string();
            assert!(err.contains("before the first step"), "{err}");
        }
    }

    #[test]
    fn bad_methods_and_optimizer_options_are_errors() {
        let data = task("gen:gauss-mix:n=100,d=2", TaskType::Classification, 0);
        let config = TrainerConfig::new(ModelSpec::parse("linear").unwrap(), 8, 0);
        let mut trainer = Trainer::new(&data, &config).unwrap();
        for (method, field) in [
            (
                Method {
                    rule: StepRule::ScheduleFree {
                        beta: 1.0,
                        warmup_fraction: 0.0,
                        weight_lr_power: 2.0,
                    },
                    average: None,
                    lr_range_test: None,
                },
                "beta",
            ),
            (
                Method {
                    rule: StepRule::Inner,
                    average: Some(Averaging::Ema { decay: 1.5 }),
                    lr_range_test: None,
                },
                "ema",
            ),
            (
                Method {
                    rule: StepRule::Prodigy { d0: 0.0 },
                    average: None,
                    lr_range_test: None,
                },
                "d0",
            ),
        ] {
            let err = trainer.set_method(method, 10).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let adamw_nesterov = TrainerConfig {
            optimizer: OptimizerKind::Adamw,
            nesterov: true,
            ..config
        };
        let err = Trainer::new(&data, &adamw_nesterov)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nesterov"), "{err}");
    }

    #[test]
    fn adamw_trains_and_reads_beta1_from_the_momentum() {
        let data = task("gen:gauss-mix:n=400,d=5", TaskType::Classification, 2);
        let config = TrainerConfig {
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.01,
            ..TrainerConfig::new(ModelSpec::parse("mlp:16x1").unwrap(), 32, 2)
        };
        let run = |beta1: f64| {
            let mut trainer = Trainer::new(&data, &config).unwrap();
            let initial = trainer.initial_val().loss;
            let last = (0..4)
                .map(|_| trainer.run_epoch(hp(0.01, beta1)).unwrap())
                .last()
                .unwrap();
            (initial, last)
        };
        let (initial, a) = run(0.9);
        assert!(
            !a.diverged && a.val_loss < 0.7 * initial,
            "{} vs {initial}",
            a.val_loss
        );
        let (_, b) = run(0.5);
        assert_ne!(a.val_loss, b.val_loss);
    }

    #[test]
    fn valley_picks_two_thirds_down_the_longest_descent_as_fastai() {
        // 20 points (num_it 20: the first 2 and the last 5 are dropped): losses fall over the
        // kept indices 0..=8 (lrs 2..=10 of the full list), then rise.
        let lrs: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let losses: Vec<f64> = (0..20)
            .map(|i| if i <= 10 { 10.0 - i as f64 } else { i as f64 })
            .collect();
        // Kept: lrs 2..=14, losses 8, 7, ..., 0, 11, 12, 13, 14. The longest valley ends at
        // kept index 8 (9 points), so fastai's max_start = 8 − 9 = −1, sections = 3 and
        // idx = −1 + 3 + 1 = 3: lr 5.
        assert_eq!(valley(&lrs, &losses, 20), Some(5.0));
        assert_eq!(
            valley(&lrs[..6], &losses[..6], 20),
            None,
            "too short a curve"
        );
    }

    #[test]
    fn an_lr_range_test_resets_the_weights_and_takes_its_steps_from_the_budget() {
        let data = task("gen:gauss-mix:n=500,d=4", TaskType::Classification, 0);
        let config = TrainerConfig::new(ModelSpec::parse("mlp:16x1").unwrap(), 10, 0);
        let mut trainer = Trainer::new(&data, &config).unwrap();
        let before = trainer.flat_params();
        let test = hyperctl_stats::LrRangeTest {
            start_lr: 1e-5,
            end_lr: 10.0,
            steps: 50,
        };
        let outcome = trainer.lr_range_test(&test, 0.9).unwrap();
        assert_eq!(trainer.flat_params(), before, "the weights go back");
        let picked = outcome.picked.unwrap();
        assert!((1e-5..10.0).contains(&picked), "{picked}");
        assert!(outcome.lrs.len() <= 50 && outcome.lrs.len() > 10);
        assert_eq!(outcome.lrs[0], 1e-5);
        let per_epoch = trainer.steps_per_epoch();
        let taken = outcome.lrs.len();
        let first = trainer.run_epoch(hp(picked, 0.9)).unwrap();
        assert_eq!(first.steps, per_epoch - taken.min(per_epoch - 1));
        assert!(
            (first.epochs_done - (taken + first.steps) as f64 / per_epoch as f64).abs() < 1e-12
        );
        let err = trainer.lr_range_test(&test, 0.9).unwrap_err().to_string();
        assert!(err.contains("before the first step"), "{err}");
    }

    #[test]
    fn decision_interval_of_k_minibatches() {
        let data = task("gen:gauss-mix:n=500,d=3", TaskType::Classification, 0);
        let config = TrainerConfig {
            steps_per_decision: Some(4),
            ..TrainerConfig::new(ModelSpec::parse("linear").unwrap(), 10, 0)
        };
        let mut trainer = Trainer::new(&data, &config).unwrap();
        let s = trainer.run_epoch(hp(0.1, 0.0)).unwrap();
        assert_eq!(s.steps, 4);
        assert!((s.epochs_done - 4.0 / trainer.steps_per_epoch() as f64).abs() < 1e-12);
    }

    #[test]
    fn gradient_norm_matches_a_hand_computed_case() {
        // A linear softmax classifier on the full train split in one minibatch: the gradient of the
        // mean cross-entropy is W: Xᵀ(P − Y)/n and b: Σ(P − Y)/n, computed here on the host.
        let data = task(
            "gen:gauss-mix:n=60,d=3,classes=3",
            TaskType::Classification,
            1,
        );
        let n = data.train.n_rows();
        let config = TrainerConfig::new(ModelSpec::parse("linear").unwrap(), n, 1);
        let mut trainer = Trainer::new(&data, &config).unwrap();
        let (d, k) = (3, 3);
        let params: Vec<f64> = trainer.params_before.iter().map(|&v| v as f64).collect();
        let (w, b) = params.split_at(d * k); // weight [d, k] row-major, then bias [k]
        let (mut gw, mut gb) = (vec![0f64; d * k], vec![0f64; k]);
        for r in 0..n {
            let x = &data.train.x[r * d..(r + 1) * d];
            let logits: Vec<f64> = (0..k)
                .map(|j| b[j] + (0..d).map(|i| x[i] as f64 * w[i * k + j]).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for j in 0..k {
                let p = (logits[j] - max).exp() / z
                    - if data.train.y[r] as usize == j {
                        1.0
                    } else {
                        0.0
                    };
                gb[j] += p / n as f64;
                for i in 0..d {
                    gw[i * k + j] += x[i] as f64 * p / n as f64;
                }
            }
        }
        let expected = gw.iter().chain(&gb).map(|g| g * g).sum::<f64>().sqrt();
        let stats = trainer.run_epoch(hp(0.1, 0.0)).unwrap();
        assert_eq!(stats.steps, 1);
        assert!(
            (stats.grad_norm_mean - expected).abs() < 1e-5 * expected,
            "{} vs {expected}",
            stats.grad_norm_mean
        );
        let per_layer = stats.layer_grad_norms[0].mean;
        assert!((per_layer - expected).abs() < 1e-5 * expected);
        // One plain SGD step: the update is lr·‖g‖.
        let update = stats.update_ratio * params.iter().map(|p| p * p).sum::<f64>().sqrt();
        assert!(
            (update - 0.1 * expected).abs() < 1e-4 * expected,
            "{update} vs {}",
            0.1 * expected
        );
    }
}
