//! [`TaskSpec`]: one training run — dataset × architecture × budget × seed — and how to build it.

use std::path::PathBuf;

use crate::data::{Dataset, SplitConfig, SplitData, TaskType, split};
use crate::model::ModelSpec;
use crate::source::DatasetSource;
use crate::trainer::{Hyperparams, OptimizerKind, Trainer, TrainerConfig};
use crate::{Backend, Error, Result};

/// Default learning rate a task starts from when none is given.
pub const DEFAULT_INIT_LR: f64 = 0.01;
/// Default momentum a task starts from when none is given.
pub const DEFAULT_INIT_MOMENTUM: f64 = 0.0;

pub use hyperctl_stats::MAX_EPOCHS;

/// The largest minibatch a task may ask for.
pub const MAX_BATCH_SIZE: usize = 1_000_000;

/// Everything that defines one training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskSpec {
    /// A short identifier (collections give one; inline tasks get one from their parts).
    pub id: String,
    /// Where the data comes from.
    #[serde(serialize_with = "display")]
    pub source: DatasetSource,
    /// Classification or regression.
    pub task_type: TaskType,
    /// The architecture.
    #[serde(serialize_with = "display")]
    pub model: ModelSpec,
    /// Budget: number of decision intervals (epochs by default).
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Seed of the split, the initialisation and the shuffling.
    pub seed: u64,
    /// Where training starts: learning rate and momentum before any decision.
    pub init: Hyperparams,
    /// Fraction of rows held out for validation.
    pub val_fraction: f64,
    /// Fraction of rows held out for test (unless the data has its own test part).
    pub test_fraction: f64,
    /// Fraction of the train split kept, in (0, 1].
    pub train_fraction: f64,
    /// Cap on train rows.
    pub max_train_rows: Option<usize>,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Minibatches per decision (`None`: one epoch).
    pub steps_per_decision: Option<usize>,
    /// The inner optimizer (SGD with momentum unless the task says `adamw`; written out only
    /// when it is not SGD, so SGD tasks' records read as before).
    #[serde(skip_serializing_if = "is_sgd")]
    pub optimizer: OptimizerKind,
}

fn is_sgd(optimizer: &OptimizerKind) -> bool {
    *optimizer == OptimizerKind::Sgd
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl TaskSpec {
    /// A task with documented defaults for the optional parts (init lr 0.01, momentum 0,
    /// val 0.2, test 0.2, all train rows, no weight decay, one decision per epoch).
    pub fn new(
        source: DatasetSource,
        task_type: TaskType,
        model: ModelSpec,
        epochs: usize,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        let id = format!("{source}|{model}|e{epochs}|b{batch_size}");
        Self {
            id,
            source,
            task_type,
            model,
            epochs,
            batch_size,
            seed,
            init: Hyperparams {
                lr: DEFAULT_INIT_LR,
                momentum: DEFAULT_INIT_MOMENTUM,
            },
            val_fraction: 0.2,
            test_fraction: 0.2,
            train_fraction: 1.0,
            max_train_rows: None,
            weight_decay: 0.0,
            nesterov: false,
            steps_per_decision: None,
            optimizer: OptimizerKind::Sgd,
        }
    }

    /// Checks the values that do not need the data.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return Err(Error::InvalidConfig {
                field: "epochs",
                reason: format!("{} is outside 1..={MAX_EPOCHS}", self.epochs),
            });
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(Error::InvalidConfig {
                field: "batch_size",
                reason: format!("{} is outside 1..={MAX_BATCH_SIZE}", self.batch_size),
            });
        }
        Ok(self.init.validate()?)
    }

    /// Loads (or generates) the dataset.
    pub fn load(&self) -> Result<Dataset> {
        self.validate()?;
        self.source.load(self.task_type)
    }

    /// Splits `data` with `seed` (normally [`TaskSpec::seed`]).
    pub fn split(&self, data: &Dataset, seed: u64) -> Result<SplitData> {
        split(
            data,
            &SplitConfig {
                seed,
                val_fraction: self.val_fraction,
                test_fraction: self.test_fraction,
                train_fraction: self.train_fraction,
                max_train_rows: self.max_train_rows,
            },
        )
    }

    /// The trainer config for `seed` on `backend`.
    pub fn trainer_config(&self, seed: u64, backend: Backend) -> TrainerConfig {
        TrainerConfig {
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
            steps_per_decision: self.steps_per_decision,
            optimizer: self.optimizer,
            backend,
            ..TrainerConfig::new(self.model, self.batch_size, seed)
        }
    }

    /// Splits `data` and builds a fresh trainer, both from `seed`.
    pub fn build(&self, data: &Dataset, seed: u64, backend: Backend) -> Result<Trainer> {
        Trainer::new(
            &self.split(data, seed)?,
            &self.trainer_config(seed, backend),
        )
    }

    /// The data file or directory this task reads, if any.
    pub fn data_path(&self) -> Option<PathBuf> {
        match &self.source {
            DatasetSource::Csv(p) | DatasetSource::Idx(p) => Some(p.clone()),
            DatasetSource::Generated { .. } => None,
        }
    }
}
