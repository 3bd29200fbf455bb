//! `hyperctl._native.ScheduleEnv` (feature `gym`): the Rust `ScheduleEnv` — a training run as
//! an RL environment — for Python's Gymnasium wrapper (`hyperctl.gym`).

use std::path::Path;

use hyperctl_env_core::Env;
use hyperctl_schedule_env::{EnvConfig, N_FEATURES, ScheduleEnv};
use hyperctl_tasks::Backend;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// An env's diagnostics, as (key, value) pairs.
type Info = Vec<(String, f64)>;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One task's training run as an environment: `reset(seed)` builds a fresh model and split,
/// `step(action)` trains one interval at the hyperparameters the action maps to.
#[pyclass(module = "hyperctl._native", name = "ScheduleEnv")]
pub struct PyScheduleEnv {
    env: std::sync::Mutex<ScheduleEnv>,
    task_id: String,
}

#[pymethods]
impl PyScheduleEnv {
    /// `task` is `COLLECTION#TASK_ID` (a collection file or the embedded `generated`);
    /// `data_dir` the data root for its relative paths; `env_config` a TOML file of env settings
    /// (default: the built-in ones, as `envs/schedule_env.toml`).
    #[new]
    #[pyo3(signature = (task, *, data_dir = None, env_config = None))]
    fn new(task: &str, data_dir: Option<&str>, env_config: Option<&str>) -> PyResult<Self> {
        let Some((collection, id)) = hyperctl_collections::split_task_ref(task) else {
            return Err(value_error(format!(
                "task `{task}`: expected COLLECTION#TASK_ID"
            )));
        };
        let collection = hyperctl_collections::load(collection, data_dir.map(Path::new))
            .map_err(|p| value_error(format!("collection `{collection}`:\n{p}")))?;
        let found = collection.get(id).ok_or_else(|| {
            value_error(format!(
                "collection `{}` has no task `{id}`",
                collection.name
            ))
        })?;
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
        let env = ScheduleEnv::new(found.task.clone(), config, Backend::Flex)
            .map_err(|e| value_error(format!("cannot set up task `{id}`: {e}")))?;
        Ok(Self {
            env: std::sync::Mutex::new(env),
            task_id: found.task.id.clone(),
        })
    }

    /// Observation width (the featurizer's features).
    #[classattr]
    fn obs_dim() -> usize {
        N_FEATURES
    }

    /// The observation space's bounds, per feature: (low, high).
    #[classattr]
    fn obs_bounds() -> (Vec<f32>, Vec<f32>) {
        let space = hyperctl_schedule_env::features::observation_space();
        (space.low.clone(), space.high.clone())
    }

    /// The task's id.
    #[getter]
    fn task_id(&self) -> String {
        self.task_id.clone()
    }

    /// Starts an episode (`seed`: the run seed; None: the env's next one). Returns (obs, info).
    #[pyo3(signature = (seed = None))]
    fn reset(&self, py: Python<'_>, seed: Option<u64>) -> PyResult<(Vec<f32>, Info)> {
        let mut guard = self.env.lock().map_err(value_error)?;
        let env: &mut ScheduleEnv = &mut guard;
        // Training runs without the interpreter lock: other Python threads go on meanwhile.
        let (obs, info) = py.detach(|| env.reset(seed));
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
        let env: &mut ScheduleEnv = &mut guard;
        let step = py.detach(|| env.step(&action));
        Ok((
            step.obs,
            step.reward,
            step.terminated,
            step.truncated,
            step.info.into_iter().collect(),
        ))
    }
}
