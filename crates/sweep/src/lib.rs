//! Graybox hyperparameter search, `hyperctl sweep` (issue 20): trials draw what the controller does
//! not set (width, depth, activation, weight decay, batch size, optimizer; [`space`]), a controller
//! (by default the shipped policy under its guard) runs every trial's learning rate and momentum,
//! and a [`Method`] stops hopeless trials at rungs from their curves, until an epoch budget is spent.
//!
//! - [`space`]: the SPACE file (TOML) and how a configuration changes the base task.
//! - [`search`]: the deterministic, resumable search loop.
//! - [`prior`]: starting configurations from other tasks' sweeps, matched by dataset.
//! - [`summary`]: the best trial and the anytime curve (best test loss found vs epochs spent).
//!
//! # Architecture invariants
//! - Trials train through `run_schedule_while`, the same decision loop as `train`, `compare`
//!   and the server: a controller inside a trial behaves exactly as it does anywhere else.
//! - Results depend on the sweep seed only, never on the thread count or timing: trial `i`'s
//!   configuration and decisions read nothing but trials `0..=i`.
//! - The test split is read once per trial that trained its whole budget, and never to choose: the
//!   incumbent is chosen by final validation loss.

#![warn(missing_docs)]

pub mod predictor;
pub mod prior;
pub mod search;
pub mod space;
pub mod summary;

use std::path::PathBuf;

pub use predictor::{CurvePredictor, Prediction};
pub use search::{Method, Sweep, TrialRecord, read_trials, run};
pub use space::{Config, Space};
pub use summary::{AnytimePoint, Summary, summarize};

/// What can go wrong in a sweep.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The space does not fit the task.
    #[error("space: {0}")]
    Space(String),
    /// A trial could not be built.
    #[error("trial {trial}: {reason}")]
    Trial {
        /// The trial's index.
        trial: usize,
        /// What was wrong.
        reason: String,
    },
    /// A results file that cannot be resumed.
    #[error("{}: {reason}", path.display())]
    Results {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}
