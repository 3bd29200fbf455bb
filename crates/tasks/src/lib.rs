//! Training tasks for hyperctl: datasets, small models, and a [`Trainer`] that runs one epoch
//! (or one decision interval) at a time under hyperparameters chosen from outside.
//!
//! - [`data`]: the in-memory [`Dataset`], its deterministic stratified
//!   train/validation/test [`split`](data::split) and standardization with train statistics only.
//! - [`source`]: dataset sources `csv:PATH`, `idx:DIR` and `gen:FAMILY[:k=v,...]`, and their loaders
//!   ([`csv_data`], [`idx`], [`generated`]).
//! - [`model`]: MLPs for flat inputs and a small CNN for images, initialised from a seeded RNG.
//! - [`optim`]: SGD with momentum in PyTorch semantics whose learning rate and momentum may change
//!   between any two steps, the velocity kept.
//! - [`task`]: [`TaskSpec`], one training run: dataset × architecture × budget × seed.
//! - [`trainer`]: [`Trainer::run_epoch`] → [`EpochStats`] (loss statistics, gradient norms, weight
//!   norm, update ratio, divergence flag).
//!
//! # Architecture invariants
//! - This crate knows nothing of reinforcement learning: no rewards, observations or policies.
//! - It parses no argv and picks no backend by itself: the caller hands it a [`Backend`].
//! - Bad input (files, specs, configs) gives a typed [`Error`] naming the file/field; never a panic.

#![warn(missing_docs)]

pub mod csv_data;
pub mod data;
pub mod generated;
pub mod idx;
mod kernels;
#[doc(hidden)]
pub use kernels::tanh_slice; // for examples/tanh_speed.rs
pub mod model;
pub mod optim;
mod rules;
pub mod source;
pub mod task;
pub mod trainer;

pub use data::{Dataset, SplitData, TaskType};
pub use model::{Activation, ModelSpec};
pub use source::DatasetSource;
pub use task::TaskSpec;
pub use trainer::{
    Averaging, EpochStats, EvalStats, Hyperparams, LrRangeOutcome, LrRangeTest, Method,
    OptimizerKind, StepRule, Trainer, TrainerConfig, TrainerSnapshot,
};

use std::path::PathBuf;

/// Errors of the tasks crate. Every variant names what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not chained, so it prints once).
        error: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("{path}: line {line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What was expected.
        reason: String,
    },
    /// An IDX (MNIST-format) file is malformed.
    #[error("{path}: byte offset {offset}: {reason}")]
    Idx {
        /// The file.
        path: PathBuf,
        /// Byte offset (in the decompressed stream) where the problem was found.
        offset: u64,
        /// What was expected.
        reason: String,
    },
    /// A dataset source string (`csv:`, `idx:`, `gen:`) is invalid.
    #[error("dataset source `{source_spec}`: {reason}")]
    InvalidSource {
        /// The source as given.
        source_spec: String,
        /// What was expected.
        reason: String,
    },
    /// A model spec (`mlp:WxD`, `cnn:small`) is invalid or does not fit the data.
    #[error("model `{spec}`: {reason}")]
    InvalidModel {
        /// The model spec as given.
        spec: String,
        /// What was expected.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The dataset does not fit the task (too few rows, wrong target type, ...).
    #[error("dataset {name}: {reason}")]
    InvalidData {
        /// The dataset name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The requested backend is not compiled into this build.
    #[error("backend `{0}` is not available in this build (rebuild with `--features gpu`)")]
    BackendUnavailable(String),
}

impl From<hyperctl_stats::InvalidValue> for Error {
    fn from(e: hyperctl_stats::InvalidValue) -> Self {
        Error::InvalidConfig {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The compute backend a [`Trainer`] runs on. The CPU default is burn's flex backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex, the pure-Rust CPU backend (default; bit-reproducible).
    Flex,
    /// burn-wgpu (GPU through Vulkan/Metal/DX12); only with the `gpu` feature.
    Wgpu,
}

impl Backend {
    /// The name used on the command line and in result files.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The plain (non-autodiff) burn device of this backend, picked explicitly
    /// (`Device::default()` would prefer wgpu whenever it is compiled in).
    pub fn device(self) -> Result<burn::tensor::Device> {
        match self {
            Backend::Flex => Ok(burn::tensor::Device::flex()),
            #[cfg(feature = "gpu")]
            Backend::Wgpu => Ok(burn::tensor::Device::wgpu(Default::default())),
            #[cfg(not(feature = "gpu"))]
            Backend::Wgpu => Err(Error::BackendUnavailable("wgpu".into())),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "flex" | "cpu" => Ok(Backend::Flex),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            other => Err(Error::InvalidConfig {
                field: "backend",
                reason: format!("`{other}` is not a backend; expected `flex` or `wgpu`"),
            }),
        }
    }
}
