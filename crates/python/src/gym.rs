//! `hyperctl._native.ScheduleEnv` (feature `gym`): the Rust `ScheduleEnv` — a training run as
//! an RL environment — for Python's Gymnasium wrapper (`hyperctl.gym`).

use std::path::Path;

use hyperctl_env_core::Env;
use hyperctl_schedule_env::{EnvConfig, N_FEATURES, ScheduleEnv, TaskCycleEnv};
use hyperctl_tasks::Backend;
use pyo3::prelude::*;

use crate::value_error;

/// An env's diagnostics, as (key, value) pairs.
type Info = Vec<(String, f64)>;

/// A training run as an environment: `reset(seed)` builds a fresh model and split (of one task,
/// or of the next task of a collection's split), `step(action)` trains one interval at the
/// hyperparameters the action maps to.
#[pyclass(module = "hyperctl._native", name = "ScheduleEnv")]
pub struct PyScheduleEnv {
    env: std::sync::Mutex<Episode>,
    task_id: String,
}

/// The env and where its episode stands (`Env::step` after the end is a programming error).
struct Episode {
    env: Box<dyn Env + Send>,
    running: bool,
}

#[pymethods]
impl PyScheduleEnv {
    /// `task` is `COLLECTION#TASK_ID` (a collection file or the embedded `generated`), or a
    /// collection with `split`: every reset then draws the next of that split's tasks;
    /// `data_dir` the data root for relative paths; `env_config` a TOML file of env settings
    /// (default: the built-in ones, as `envs/schedule_env.toml`).
    #[new]
    #[pyo3(signature = (task, *, split = None, data_dir = None, env_config = None))]
    fn new(
        task: &str,
        split: Option<&str>,
        data_dir: Option<&str>,
        env_config: Option<&str>,
    ) -> PyResult<Self> {
        let (name, id) = match (hyperctl_collections::split_task_ref(task), split) {
            (Some((name, id)), None) => (name, Some(id)),
            (None, Some(_)) => (task, None),
            (Some(_), Some(_)) => {
                return Err(value_error(format!(
                    "task `{task}`: give COLLECTION#TASK_ID or a collection with split=, not both"
                )));
            }
            (None, None) => {
                return Err(value_error(format!(
                    "task `{task}`: expected COLLECTION#TASK_ID (or a collection with split=)"
                )));
            }
        };
        let collection = hyperctl_collections::load(name, data_dir.map(Path::new))
            .map_err(|p| value_error(format!("collection `{name}`:\n{p}")))?;
        let config = match env_config {
            None => EnvConfig::defaults(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| value_error(format!("cannot read {path}: {e}")))?;
                let config: EnvConfig = toml::from_str(&text)
                    .map_err(|e| value_error(format!("{path}: invalid env config: {e}")))?;
                config.validate().map_err(value_error)?;
                config
            }
        };
        let (env, task_id): (Box<dyn Env + Send>, String) = match id {
            Some(id) => {
                let found = collection.get(id).ok_or_else(|| {
                    value_error(format!(
                        "collection `{}` has no task `{id}`",
                        collection.name
                    ))
                })?;
                let env = ScheduleEnv::new(found.task.clone(), config, Backend::Flex)
                    .map_err(|e| value_error(format!("cannot set up task `{id}`: {e}")))?;
                (Box::new(env), found.task.id.clone())
            }
            None => {
                let split = split.expect("a cycle has a split");
                let tasks: Vec<_> = collection
                    .split(Some(split))
                    .map(|t| t.task.clone())
                    .collect();
                if tasks.is_empty() {
                    return Err(value_error(format!(
                        "collection `{}` has no task in split `{split}`",
                        collection.name
                    )));
                }
                let env = TaskCycleEnv::new(tasks, config, Backend::Flex)
                    .map_err(|e| value_error(format!("cannot set up `{name}` {split}: {e}")))?;
                (Box::new(env), format!("{}:{split}", collection.name))
            }
        };
        Ok(Self {
            env: std::sync::Mutex::new(Episode {
                env,
                running: false,
            }),
            task_id,
        })
    }

    /// Observation width of feature version 1, the default (an env made with another
    /// `feature_version` reports its own in `observation_bounds`).
    #[classattr]
    fn obs_dim() -> usize {
        N_FEATURES
    }

    /// The bounds of feature version 1's observation space, per feature: (low, high).
    #[classattr]
    fn obs_bounds() -> (Vec<f32>, Vec<f32>) {
        let space = hyperctl_schedule_env::features::observation_space();
        (space.low.clone(), space.high.clone())
    }

    /// This env's observation bounds, per feature: (low, high) (its env config's
    /// `feature_version`).
    #[getter]
    fn observation_bounds(&self) -> (Vec<f32>, Vec<f32>) {
        let episode = self.env.lock().unwrap_or_else(|e| e.into_inner());
        let space = episode.env.observation_space();
        (space.low.clone(), space.high.clone())
    }

    /// The task's id (for a cycle: `COLLECTION:SPLIT`).
    #[getter]
    fn task_id(&self) -> String {
        self.task_id.clone()
    }

    /// Starts an episode (`seed`: the run seed; None: the env's next one). Returns (obs, info).
    #[pyo3(signature = (seed = None))]
    fn reset(&self, py: Python<'_>, seed: Option<u64>) -> PyResult<(Vec<f32>, Info)> {
        let mut guard = self.env.lock().map_err(value_error)?;
        let episode: &mut Episode = &mut guard;
        // Training runs without the interpreter lock: other Python threads go on meanwhile.
        let (obs, info) = py.detach(|| episode.env.reset(seed));
        episode.running = true;
        Ok((obs, info.into_iter().collect()))
    }

    /// Trains one interval. Returns (obs, reward, terminated, truncated, info).
    fn step(
        &self,
        py: Python<'_>,
        action: Vec<f32>,
    ) -> PyResult<(Vec<f32>, f64, bool, bool, Info)> {
        if action.len() != 2 || action.iter().any(|a| !a.is_finite()) {
            return Err(value_error(format!(
                "action: expected 2 finite values, got {action:?}"
            )));
        }
        let mut guard = self.env.lock().map_err(value_error)?;
        let episode: &mut Episode = &mut guard;
        if !episode.running {
            return Err(value_error(
                "step: no episode is running (call reset() first, and again after the end)",
            ));
        }
        let step = py.detach(|| episode.env.step(&action));
        episode.running = !step.done();
        Ok((
            step.obs,
            step.reward,
            step.terminated,
            step.truncated,
            step.info.into_iter().collect(),
        ))
    }
}
