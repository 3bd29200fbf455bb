//! [`MetaTrainConfig`]: the TOML file that defines a meta-training run (kept under
//! `experiments/`). Every field is documented here; unknown fields are errors.
//!
//! ```toml
//! collection = "generated"        # embedded name, or a TOML file relative to this config's folder
//! split = "meta-train"            # tasks the agent trains on
//! eval_split = "meta-val"         # tasks that select the policy (never trained on)
//! seed = 1
//! total_timesteps = 100000        # environment steps (one step = one decision interval)
//! num_envs = 8                    # parallel environments, each cycling through the split
//! eval_interval = 5               # evaluate the deterministic policy every N iterations
//! eval_seeds = 1                  # seeds per meta-val task (task seed + 0..N, as `compare`)
//! select = "mean"                 # keep the evaluation with the best "mean" (over episodes) or
//!                                 # "median" (over tasks) return; the median ignores outlier tasks
//! # max_tasks = 40                # optional: N tasks evenly spaced over the split
//! # eval_max_tasks = 24           # optional: the same for the eval split
//! # data_dir = "../../../shared/data"   # optional: data root for file datasets
//! [ppo]                           # optional: any PpoConfig field except seed/total_timesteps
//! num_steps = 64
//! [env]                           # optional: EnvConfig fields (bounds, action scale, penalty)
//! [episode_starts]                # optional: every training episode draws its own start
//! lr = [1e-4, 1.0]                # log-uniform starting lr (within the env's lr bounds)
//! momentum = [0.0, 0.5, 0.9]      # starting momentum, uniformly (evaluation keeps the tasks')
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyperctl_ppo::{PpoConfig, RolloutMode};
use hyperctl_schedule_env::{EnvConfig, EpisodeStarts};
use serde::{Deserialize, Serialize};

use crate::Error;

fn meta_train() -> String {
    "meta-train".into()
}
fn meta_val() -> String {
    "meta-val".into()
}
fn one() -> usize {
    1
}

/// A meta-training run (see the module docs for the file format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaTrainConfig {
    /// Task collection: an embedded name (`generated`), or a `.toml` file relative to the config
    /// file's folder.
    pub collection: String,
    /// Split the agent trains on.
    #[serde(default = "meta_train")]
    pub split: String,
    /// Split the deterministic policy is evaluated on to select the best one.
    #[serde(default = "meta_val")]
    pub eval_split: String,
    /// Only N training tasks, evenly spaced over the split.
    #[serde(default)]
    pub max_tasks: Option<usize>,
    /// Only N evaluation tasks, evenly spaced over the split.
    #[serde(default)]
    pub eval_max_tasks: Option<usize>,
    /// Data root for file datasets, relative to the config file's folder.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Seed of the agent, the task orders and the episodes.
    pub seed: u64,
    /// Environment steps in all (one step is one decision interval of one task).
    pub total_timesteps: usize,
    /// Parallel environments.
    pub num_envs: usize,
    /// Evaluate every N iterations (and after the last).
    pub eval_interval: usize,
    /// Seeds per evaluation task.
    #[serde(default = "one")]
    pub eval_seeds: usize,
    /// Which evaluation is kept as the policy.
    #[serde(default)]
    pub select: Select,
    /// PPO settings that differ from CleanRL's defaults (any `PpoConfig` field except `seed`
    /// and `total_timesteps`, which are set above), except `rollout`, which defaults to
    /// `"segments"` here (CleanRL's is `"lockstep"`).
    #[serde(default)]
    pub ppo: BTreeMap<String, serde_json::Value>,
    /// Environment settings (defaults: `envs/schedule_env.toml`).
    #[serde(default = "EnvConfig::defaults")]
    pub env: EnvConfig,
    /// Per-episode starts of the training episodes (none: each task's own `init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode_starts: Option<EpisodeStarts>,
}

/// How the kept policy is selected among the evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// The highest mean episode return over all tasks × seeds.
    #[default]
    Mean,
    /// The highest median over tasks of the per-task mean return (ties: the higher mean).
    Median,
}

impl Select {
    /// Whether evaluation `a` is better than `b` under this rule.
    pub fn better(self, a: &crate::eval::EvalRecord, b: &crate::eval::EvalRecord) -> bool {
        match self {
            Select::Mean => a.mean_return > b.mean_return,
            Select::Median => (a.median_return, a.mean_return) > (b.median_return, b.mean_return),
        }
    }
}

/// A config with its file's location, checked and resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The config as written (defaults filled in).
    pub config: MetaTrainConfig,
    /// The config file.
    pub path: PathBuf,
    /// The PPO settings in full.
    pub ppo: PpoConfig,
    /// The collection to load (a path or an embedded name).
    pub collection: String,
    /// The data root, if given.
    pub data_dir: Option<PathBuf>,
}

impl MetaTrainConfig {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Resolved, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.into(),
            reason: format!("cannot read: {e}"),
        })?;
        let config: MetaTrainConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        config.resolve(path)
    }

    /// Checks the config and fills in everything derived from it.
    pub fn resolve(self, path: &Path) -> Result<Resolved, Error> {
        let bad = |reason: String| Error::Config {
            path: path.into(),
            reason,
        };
        let ppo = self.ppo_config().map_err(bad)?;
        let checks: [(bool, String); 9] = [
            (
                ppo.target_kl.is_none_or(|kl| kl.is_finite() && kl > 0.0),
                format!(
                    "ppo.target_kl must be a positive finite number (or left out), got {}",
                    ppo.target_kl.unwrap_or(f64::NAN)
                ),
            ),
            (self.num_envs >= 1, "num_envs must be at least 1".into()),
            (self.eval_interval >= 1, "eval_interval must be at least 1".into()),
            (self.eval_seeds >= 1, "eval_seeds must be at least 1".into()),
            (
                self.split != self.eval_split,
                format!(
                    "split and eval_split are both `{}`: select the policy on tasks it never trained on",
                    self.split
                ),
            ),
            (
                self.total_timesteps >= ppo.num_steps * self.num_envs,
                format!(
                    "total_timesteps = {} is less than one iteration (ppo.num_steps {} × num_envs {})",
                    self.total_timesteps, ppo.num_steps, self.num_envs
                ),
            ),
            (
                ppo.num_steps >= 1 && ppo.update_epochs >= 1 && ppo.hidden >= 1,
                "ppo.num_steps, ppo.update_epochs and ppo.hidden must be at least 1".into(),
            ),
            (
                ppo.num_minibatches >= 1 && ppo.num_minibatches <= ppo.num_steps * self.num_envs,
                format!(
                    "ppo.num_minibatches must be in [1, num_steps × num_envs = {}]",
                    ppo.num_steps * self.num_envs
                ),
            ),
            (
                ppo.learning_rate > 0.0
                    && (0.0..=1.0).contains(&ppo.gamma)
                    && (0.0..=1.0).contains(&ppo.gae_lambda)
                    && ppo.clip_coef > 0.0
                    && ppo.max_grad_norm > 0.0,
                "ppo: learning_rate, clip_coef and max_grad_norm must be positive, gamma and gae_lambda in [0, 1]".into(),
            ),
        ];
        if let Some((_, reason)) = checks.into_iter().find(|(ok, _)| !ok) {
            return Err(bad(reason));
        }
        if self.max_tasks == Some(0) || self.eval_max_tasks == Some(0) {
            return Err(bad("max_tasks and eval_max_tasks must be at least 1".into()));
        }
        self.env
            .validate()
            .map_err(|e| bad(format!("[env]: {e}")))?;
        if let Some(starts) = &self.episode_starts {
            starts.validate(&self.env).map_err(|e| bad(e.to_string()))?;
        }
        let folder = path.parent().unwrap_or(Path::new(""));
        let collection = if self.collection.ends_with(".toml") || self.collection.contains('/') {
            folder.join(&self.collection).to_string_lossy().into_owned()
        } else {
            self.collection.clone()
        };
        let data_dir = self.data_dir.as_ref().map(|d| folder.join(d));
        Ok(Resolved {
            ppo,
            collection,
            data_dir,
            path: path.into(),
            config: self,
        })
    }

    /// CleanRL's defaults with the `[ppo]` table applied, the seed and step budget from the top.
    fn ppo_config(&self) -> Result<PpoConfig, String> {
        // meta-train's own default rollout is segments (2.00× with 2 workers against lockstep's
        // 1.24×; the shipped policy v6 was trained with it and ties v5 on fresh meta-val seeds:
        // experiments/default-policy-v6-segments). CleanRL's lockstep stays `rollout = "lockstep"`.
        let base = PpoConfig {
            seed: self.seed,
            total_timesteps: self.total_timesteps,
            rollout: RolloutMode::Segments,
            ..PpoConfig::cleanrl()
        };
        let mut value = serde_json::to_value(&base).expect("PpoConfig serializes");
        let fields = value.as_object_mut().expect("PpoConfig is an object");
        for (key, v) in &self.ppo {
            if key == "seed" || key == "total_timesteps" {
                return Err(format!(
                    "[ppo] {key}: set `{key}` at the top level of the config"
                ));
            }
            if !fields.contains_key(key) {
                let mut known: Vec<&str> = fields.keys().map(String::as_str).collect();
                known.retain(|k| *k != "seed" && *k != "total_timesteps");
                return Err(format!(
                    "[ppo] unknown setting `{key}`; expected one of: {}",
                    known.join(", ")
                ));
            }
            // TOML has no null: a null here was a nan or inf float, which JSON cannot hold.
            if v.is_null() {
                return Err(format!(
                    "[ppo] {key}: expected a finite number, got nan or inf"
                ));
            }
            // Each setting on its own first, so that a type error names its key.
            let mut one = serde_json::to_value(&base).expect("PpoConfig serializes");
            one.as_object_mut()
                .expect("PpoConfig is an object")
                .insert(key.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<PpoConfig>(one) {
                return Err(format!("[ppo] {key}: {e}"));
            }
            fields.insert(key.clone(), v.clone());
        }
        serde_json::from_value(value).map_err(|e| format!("[ppo]: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_median_ignores_an_outlier_task_that_the_mean_follows() {
        let eval = |per_task: &[f64]| {
            let mut sorted = per_task.to_vec();
            sorted.sort_by(f64::total_cmp);
            crate::eval::EvalRecord {
                iteration: 0,
                global_step: 0,
                mean_return: per_task.iter().sum::<f64>() / per_task.len() as f64,
                median_return: sorted[sorted.len() / 2],
                diverged: 0,
                episodes: per_task.len(),
                per_task: per_task.to_vec(),
                wall_secs: 0.0,
            }
        };
        let steady = eval(&[0.8, 0.9, 1.0]);
        let outlier = eval(&[0.1, 0.2, 28.0]);
        assert!(Select::Mean.better(&outlier, &steady));
        assert!(Select::Median.better(&steady, &outlier));
        assert!(
            !Select::Median.better(&steady, &steady),
            "ties keep the earlier one"
        );
        let c: MetaTrainConfig = toml::from_str(
            "collection = \"generated\"\nseed = 1\ntotal_timesteps = 10\nnum_envs = 1\neval_interval = 1\nselect = \"median\"\n",
        )
        .unwrap();
        assert_eq!(c.select, Select::Median);
        let bad = toml::from_str::<MetaTrainConfig>(
            "collection = \"generated\"\nseed = 1\ntotal_timesteps = 10\nnum_envs = 1\neval_interval = 1\nselect = \"best\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("select") || bad.contains("mean"), "{bad}");
    }

    fn parse(text: &str) -> Result<Resolved, String> {
        toml::from_str::<MetaTrainConfig>(text)
            .map_err(|e| e.to_string())?
            .resolve(Path::new("experiments/x/meta_train.toml"))
            .map_err(|e| e.to_string())
    }

    const BASE: &str = "collection = \"tasks.toml\"\nseed = 3\ntotal_timesteps = 8192\nnum_envs = 2\neval_interval = 1\n";

    #[test]
    fn defaults_fill_in_and_ppo_overrides_apply() {
        let r = parse(&format!("{BASE}[ppo]\nnum_steps = 16\nent_coef = 0.01\n")).unwrap();
        assert_eq!(r.ppo.num_steps, 16);
        assert_eq!(r.ppo.ent_coef, 0.01);
        assert_eq!((r.ppo.seed, r.ppo.total_timesteps), (3, 8192));
        assert_eq!(r.ppo.clip_coef, 0.2, "CleanRL default");
        assert_eq!(
            r.ppo.rollout,
            RolloutMode::Segments,
            "meta-train's own default"
        );
        let lockstep = parse(&format!("{BASE}[ppo]\nrollout = \"lockstep\"\n")).unwrap();
        assert_eq!(lockstep.ppo.rollout, RolloutMode::Lockstep);
        assert_eq!(r.collection, "experiments/x/tasks.toml");
        assert_eq!(r.config.split, "meta-train");
        assert_eq!(r.config.env, EnvConfig::defaults());
        assert_eq!(r.config.episode_starts, None);
        let starts = parse(&format!(
            "{BASE}[episode_starts]\nlr = [1e-4, 1.0]\nmomentum = [0.0, 0.5, 0.9]\n"
        ))
        .unwrap();
        assert_eq!(
            starts.config.episode_starts,
            Some(EpisodeStarts {
                lr: [1e-4, 1.0],
                momentum: vec![0.0, 0.5, 0.9]
            })
        );
        assert_eq!(
            parse(&BASE.replace("tasks.toml", "generated"))
                .unwrap()
                .collection,
            "generated"
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (text, expected) in [
            (
                format!("{BASE}[ppo]\nnum_step = 16\n"),
                "unknown setting `num_step`",
            ),
            (format!("{BASE}[ppo]\nseed = 1\n"), "at the top level"),
            (
                format!("{BASE}[ppo]\nnum_steps = \"x\"\n"),
                "[ppo] num_steps: invalid type",
            ),
            (
                format!("{BASE}[ppo]\ntarget_kl = nan\n"),
                "[ppo] target_kl: expected a finite number",
            ),
            (format!("{BASE}[ppo]\nent_coef = inf\n"), "[ppo] ent_coef"),
            (
                format!("{BASE}[ppo]\ntarget_kl = -1.0\n"),
                "target_kl must be",
            ),
            (
                format!("{BASE}eval_split = \"meta-train\"\n"),
                "never trained on",
            ),
            (BASE.replace("8192", "10"), "less than one iteration"),
            (format!("{BASE}bogus = 1\n"), "unknown field `bogus`"),
            (BASE.replace("seed = 3\n", ""), "missing field `seed`"),
            (format!("{BASE}[env]\nlr_min = -1.0\n"), "lr_min"),
            (
                format!("{BASE}[episode_starts]\nlr = [1.0, 0.1]\nmomentum = [0.9]\n"),
                "episode_starts.lr",
            ),
            (
                format!("{BASE}[episode_starts]\nlr = [1e-4, 100.0]\nmomentum = [0.9]\n"),
                "leaves the env's lr bounds",
            ),
            (
                format!("{BASE}[episode_starts]\nlr = [1e-4, 1.0]\nmomentum = []\n"),
                "episode_starts.momentum",
            ),
            (
                format!("{BASE}[episode_starts]\nlr = [1e-4, 1.0]\nmomentum = [1.5]\n"),
                "momentum bounds",
            ),
            (
                format!("{BASE}[episode_starts]\nlr = [1e-4, 1.0]\nmomentum = [0.9]\nbeta = 1\n"),
                "unknown field `beta`",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "expected `{expected}` in: {err}");
        }
    }
}
