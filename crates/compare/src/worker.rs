//! `compare --workers N`: a comparison's runs in worker processes (`hyperctl worker`), one run
//! per request line, one [`RunRecord`] per answer line (JSON). Independent processes scale
//! where threads of one process do not (`hyperctl_pool::process`).
//!
//! A request names the collection (path or embedded name, and data root) and the task by id,
//! so a worker loads the same collection the caller did (expansion is deterministic) and keeps
//! it, and its datasets, for later requests. Each run depends only on its task, controller,
//! seed, env settings and start, so the records are the same whatever the worker count; the
//! caller writes them in its fixed order as in-process runs. Replays (`replay(NAME)`) carry
//! trajectories from earlier phases and run in the caller's process.
//!
//! The protocol is versioned: a worker refuses a request from another protocol or another
//! hyperctl version with an error answer, and the caller stops with that error.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use hyperctl_collections::Collection;
use hyperctl_pool::process::{ProcessPool, WorkerError};
use hyperctl_schedule_env::EnvConfig;
use hyperctl_tasks::Backend;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::run::{DatasetCache, RunConfig, RunRecord, StartDistribution};

/// The request/answer protocol's version.
pub const PROTOCOL: u32 = 1;

/// One run to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The caller's hyperctl version (a worker of another version refuses).
    pub version: String,
    /// The collection (a path or an embedded name).
    pub collection: String,
    /// Its data root.
    pub data_dir: Option<PathBuf>,
    /// The task's id in the collection.
    pub task_id: String,
    /// The controller SPEC.
    pub controller: String,
    /// The run seed.
    pub seed: u64,
    /// Env settings.
    pub env: EnvConfig,
    /// The untuned-start protocol, if any.
    pub starts: Option<StartDistribution>,
    /// Backend.
    pub backend: Backend,
}

/// A worker's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// The run's record.
    Ok(Box<RunRecord>),
    /// Why the run could not be done.
    Error(String),
}

/// The worker processes of a comparison, and the collection their requests name.
pub struct Workers {
    pool: ProcessPool,
    collection: String,
    data_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Workers({} processes, {})",
            self.pool.len(),
            self.collection
        )
    }
}

impl Workers {
    /// Workers for the tasks of `collection` (as the caller loaded it, from `data_dir`).
    pub fn new(pool: ProcessPool, collection: String, data_dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            collection,
            data_dir,
        })
    }

    /// Number of worker processes.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether there are none (never: a pool starts at least one).
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Runs `jobs` (task id, controller, seed) in the workers, the costliest first; `done` gets
    /// each record as it arrives, with the job's index.
    pub(crate) fn run(
        &self,
        jobs: &[(&str, &str, u64, f64)],
        config: &RunConfig,
        done: impl Fn(usize, RunRecord) -> Result<(), Error> + Sync,
    ) -> Result<(), Error> {
        let requests: Vec<String> = jobs
            .iter()
            .map(|&(task_id, controller, seed, _)| {
                serde_json::to_string(&RunRequest {
                    protocol: PROTOCOL,
                    version: env!("CARGO_PKG_VERSION").into(),
                    collection: self.collection.clone(),
                    data_dir: self.data_dir.clone(),
                    task_id: task_id.into(),
                    controller: controller.into(),
                    seed,
                    env: config.env.clone(),
                    starts: config.starts.clone(),
                    backend: config.backend,
                })
                .expect("a request serializes")
            })
            .collect();
        let cost: Vec<f64> = jobs.iter().map(|j| j.3).collect();
        self.pool.run(&requests, &cost, |i, line| {
            match serde_json::from_str::<Answer>(&line) {
                Ok(Answer::Ok(record)) => done(i, *record),
                Ok(Answer::Error(reason)) => Err(Error::Worker(reason)),
                Err(e) => Err(Error::Worker(format!(
                    "a worker answered something that is not a run record ({e}): {}",
                    line.chars().take(200).collect::<String>()
                ))),
            }
        })
    }
}

impl From<WorkerError> for Error {
    fn from(e: WorkerError) -> Self {
        Error::Worker(e.to_string())
    }
}

/// The worker's loop (`hyperctl worker`): one [`RunRequest`] per line of `input`, one
/// [`Answer`] per line of `output`, until `input` ends.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut server = Server::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut text = server.handle_line(&line);
        text.push('\n');
        output.write_all(text.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// A comparison worker's state between requests: the collections and datasets loaded so far.
#[derive(Default)]
pub struct Server {
    collections: HashMap<(String, Option<PathBuf>), Collection>,
    datasets: Arc<DatasetCache>,
}

impl Server {
    /// Answers one request line (one answer line, without its newline).
    pub fn handle_line(&mut self, line: &str) -> String {
        let answer = match serde_json::from_str::<RunRequest>(line) {
            Ok(request) => handle(&request, &mut self.collections, &self.datasets),
            Err(e) => Answer::Error(format!("worker: not a run request ({e})")),
        };
        serde_json::to_string(&answer).expect("an answer serializes")
    }
}

fn handle(
    request: &RunRequest,
    collections: &mut HashMap<(String, Option<PathBuf>), Collection>,
    datasets: &Arc<DatasetCache>,
) -> Answer {
    if request.protocol != PROTOCOL || request.version != env!("CARGO_PKG_VERSION") {
        return Answer::Error(format!(
            "worker: protocol {} of hyperctl {} cannot serve a request of protocol {} from hyperctl {}",
            PROTOCOL,
            env!("CARGO_PKG_VERSION"),
            request.protocol,
            request.version
        ));
    }
    let key = (request.collection.clone(), request.data_dir.clone());
    if !collections.contains_key(&key) {
        match hyperctl_collections::load(&request.collection, request.data_dir.as_deref()) {
            Ok(c) => {
                collections.insert(key.clone(), c);
            }
            Err(p) => {
                return Answer::Error(format!("worker: collection `{}`: {p}", request.collection));
            }
        }
    }
    let collection = &collections[&key];
    let Some(task) = collection
        .tasks
        .iter()
        .find(|t| t.task.id == request.task_id)
    else {
        return Answer::Error(format!(
            "worker: collection `{}` has no task `{}`",
            request.collection, request.task_id
        ));
    };
    let config = RunConfig {
        controllers: vec![request.controller.clone()],
        seeds: 1,
        jobs: 1,
        backend: request.backend,
        env: request.env.clone(),
        replays: Default::default(),
        starts: request.starts.clone(),
        datasets: datasets.clone(),
        workers: None,
    };
    match crate::run::run_one(task, &request.controller, request.seed, &config) {
        Ok(record) => Answer::Ok(Box::new(record)),
        Err(e) => Answer::Error(e.to_string()),
    }
}
