//! Comparison of controllers: every controller × task × seed with identical seeds, data and
//! budget, run in parallel and resumably ([`run`]); statistics with bootstrap intervals
//! ([`summary`]); markdown/JSON reports and plots ([`report`]); the tuning protocol and the grid
//! oracle ([`tune`]).
//!
//! # Architecture invariants
//! - Every controller, learned or fixed, runs through `hyperctl_schedule_env::run_schedule` on
//!   the same `ScheduleEnv`; nothing here trains a model differently for one controller.
//! - The test split is read only through the episode's final test evaluation.

#![warn(missing_docs)]

pub mod protocol;
pub mod report;
pub mod run;
pub mod summary;
pub mod tune;
pub mod worker;

pub use protocol::{Outcome, Plan, Progress, Quiet, TunePlan, run_plan};
pub use report::{ReportMeta, write_reports};
pub use run::{
    DatasetCache, RunConfig, RunRecord, StartDistribution, check_tasks, read_results, run_all,
    write_atomic,
};
pub use summary::{Summary, summarize};

use std::path::PathBuf;

/// Errors of a comparison.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A line of an existing results file is not a run record.
    #[error("{path}: line {line}: not a run record ({reason}); move the file away to start afresh")]
    Results {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parse error.
        reason: String,
    },
    /// A task could not be set up.
    #[error("task `{task}`: {reason}")]
    Task {
        /// The task id.
        task: String,
        /// Why.
        reason: String,
    },
    /// A controller SPEC is invalid.
    #[error("{0}")]
    Controller(String),
    /// Drawing a plot failed.
    #[error("plotting failed: {0}")]
    Plot(String),
    /// A worker process failed or refused a run.
    #[error("{0}")]
    Worker(String),
}
