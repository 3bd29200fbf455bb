//! [`TaskCycleEnv`]: one environment over many tasks. Each reset moves to the next task of a
//! seeded shuffled order (a new order every pass), so meta-training sees every task equally often.
//! Datasets are loaded once, up front, and shared between tasks that use the same source.

use std::collections::HashMap;
use std::sync::Arc;

use hyperctl_env_core::{BoxSpace, Env, Info, Obs, Step};
use hyperctl_tasks::{Backend, Dataset, TaskSpec};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Error;
use crate::config::EnvConfig;
use crate::env::ScheduleEnv;
use crate::features::observation_space;

/// A [`ScheduleEnv`] that switches task at every reset.
pub struct TaskCycleEnv {
    tasks: Vec<TaskSpec>,
    data: Vec<Arc<Dataset>>,
    config: EnvConfig,
    backend: Backend,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
    current: Option<ScheduleEnv>,
    observation_space: BoxSpace,
    action_space: BoxSpace,
}

impl TaskCycleEnv {
    /// An env over `tasks` (at least one); every task is checked by building it once.
    pub fn new(tasks: Vec<TaskSpec>, config: EnvConfig, backend: Backend) -> Result<Self, Error> {
        if tasks.is_empty() {
            return Err(Error::InvalidConfig {
                field: "tasks",
                reason: "a task cycle needs at least one task".into(),
            });
        }
        let mut cache: HashMap<String, Arc<Dataset>> = HashMap::new();
        let mut data = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let key = task.source.to_string();
            let dataset = match cache.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = Arc::new(task.load()?);
                    cache.insert(key, d.clone());
                    d
                }
            };
            ScheduleEnv::with_data(task.clone(), dataset.clone(), config.clone(), backend)?;
            data.push(dataset);
        }
        Ok(Self {
            order: (0..tasks.len()).collect(),
            cursor: usize::MAX,
            tasks,
            data,
            config,
            backend,
            rng: ChaCha8Rng::seed_from_u64(0),
            current: None,
            observation_space: observation_space(),
            action_space: BoxSpace::uniform(2, -1.0, 1.0).expect("[-1, 1]^2 is a valid box"),
        })
    }

    /// The task of the current episode.
    pub fn current_task(&self) -> Option<&TaskSpec> {
        self.current.as_ref().map(|e| e.task())
    }
}

impl Env for TaskCycleEnv {
    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> (Obs, Info) {
        if let Some(seed) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC1C1E);
            self.cursor = usize::MAX;
        }
        if self.cursor >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let index = self.order[self.cursor];
        self.cursor += 1;
        // Every task was built once in TaskCycleEnv::new.
        let mut env = ScheduleEnv::prevalidated(
            self.tasks[index].clone(),
            self.data[index].clone(),
            self.config.clone(),
            self.backend,
        );
        let episode_seed = self.rng.random::<u64>();
        let (obs, mut info) = env.reset(Some(episode_seed));
        info.insert("task_index".into(), index as f64);
        self.current = Some(env);
        (obs, info)
    }

    fn step(&mut self, action: &[f32]) -> Step {
        self.current
            .as_mut()
            .expect("reset should be called before step")
            .step(action)
    }
}
