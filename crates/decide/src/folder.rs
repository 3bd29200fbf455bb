//! `policy:DIR`: a learned policy, loaded from its folder, acting deterministically (the mean
//! action) through the env's ONE action mapping.
//!
//! # Policy folder (`../shared/INTERFACE.md`)
//! - `config.json` ([`PolicyConfig`]): format, architecture, featurizer version and feature names,
//!   observation normalization, action mapping and env settings, the weights file's CRC-32, and
//!   free-form training provenance.
//! - `weights.json` ([`PolicyWeights`]): the actor's dense layers (row-major `[inputs][outputs]`)
//!   and the exploration log-std at export.
//! - `CARD.md`: written by `hyperctl meta-train` (data, command, budget, metrics).
//!
//! A folder loads from itself alone; anything missing, damaged or made for another featurizer is
//! a [`PolicyError`] naming the file and what was expected.

use std::path::{Path, PathBuf};

use crate::policy::{Dense, Policy, RunningMeanStd};
use crate::{
    Controller, Decision, DecisionInput, EnvConfig, EpisodeContext, FEATURIZER_VERSIONS,
    feature_table,
};

/// Format version of the policy folder.
pub const POLICY_FORMAT: u32 = 1;
/// The weights file in a policy folder.
pub const WEIGHTS_FILE: &str = "weights.json";
/// The config file in a policy folder.
pub const CONFIG_FILE: &str = "config.json";

/// A policy folder that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("policy {}: {reason}", path.display())]
pub struct PolicyError {
    /// The file (or folder) at fault.
    pub path: PathBuf,
    /// What was wrong and what was expected.
    pub reason: String,
}

/// The network: what it reads and how it is built.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Always `gaussian-mlp`: a Gaussian policy whose mean is a tanh MLP; deployed as the mean.
    pub kind: String,
    /// Observation width.
    pub obs_dim: usize,
    /// Action width.
    pub act_dim: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Hidden activation (`tanh`).
    pub activation: String,
}

/// Which observation the policy reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturizerInfo {
    /// The feature version it was trained on (its env settings' `feature_version`; one of
    /// [`FEATURIZER_VERSIONS`]).
    pub version: u32,
    /// Feature names, in order.
    pub features: Vec<String>,
}

/// How raw observations are normalized before the network.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Per-feature mean.
    pub mean: Vec<f64>,
    /// Per-feature variance.
    pub var: Vec<f64>,
    /// Observations the statistics were taken from.
    pub count: f64,
    /// Added to the variance before the square root.
    pub epsilon: f64,
    /// Normalized values are clipped to ±clip.
    pub clip: f64,
}

/// How actions become hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionMapping {
    /// The mapping in words.
    pub description: String,
    /// The env settings the policy was trained under (bounds, action scale, crash penalty).
    pub env: EnvConfig,
}

/// `config.json` of a policy folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// [`POLICY_FORMAT`].
    pub format: u32,
    /// The network.
    pub architecture: Architecture,
    /// The observation.
    pub featurizer: FeaturizerInfo,
    /// Observation normalization (`null`: raw observations).
    pub normalization: Option<Normalization>,
    /// The action mapping.
    pub action_mapping: ActionMapping,
    /// The weights file name and its CRC-32.
    pub weights: WeightsRef,
    /// Where the policy came from (collection, split, steps, selection); free-form.
    pub training: serde_json::Value,
}

/// The weights file a config belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsRef {
    /// File name inside the folder.
    pub file: String,
    /// CRC-32 of its bytes.
    pub crc32: u32,
}

/// `weights.json` of a policy folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWeights {
    /// The actor's layers (tanh between them).
    pub layers: Vec<Dense>,
    /// Exploration log-std at export (information only).
    pub log_std: Vec<f32>,
}

/// Encodes a policy as the files of its folder, in the order to write them (`weights.json`
/// before `config.json`, which names the weights' checksum, so a half-written folder is detected).
pub fn encode_folder(
    policy: &Policy,
    env: &EnvConfig,
    training: serde_json::Value,
) -> Vec<(&'static str, Vec<u8>)> {
    let weights = serde_json::to_vec(&PolicyWeights {
        layers: policy.layers.clone(),
        log_std: policy.log_std.clone(),
    })
    .expect("weights serialize");
    let config = PolicyConfig {
        format: POLICY_FORMAT,
        architecture: Architecture {
            kind: "gaussian-mlp".into(),
            obs_dim: policy.obs_dim(),
            act_dim: policy.act_dim(),
            hidden: policy.layers[..policy.layers.len() - 1]
                .iter()
                .map(|l| l.outputs)
                .collect(),
            activation: "tanh".into(),
        },
        featurizer: FeaturizerInfo {
            version: env.feature_version,
            features: feature_table(env.feature_version)
                .expect("the env settings were validated")
                .iter()
                .map(|f| f.0.to_string())
                .collect(),
        },
        normalization: policy.obs_norm.as_ref().map(|n| Normalization {
            mean: n.mean.clone(),
            var: n.var.clone(),
            count: n.count,
            epsilon: 1e-8,
            clip: 10.0,
        }),
        action_mapping: ActionMapping {
            description: format!(
                "actions are clipped to [-1, 1]; lr <- lr * 2^(sign(a0) * |a0|^{} * {} (a0 >= 0) or {} (a0 < 0)), (1 - momentum) <- (1 - momentum) * 10^(-a1 * {}), then clamped to lr in [{}, {}], momentum in [{}, {}]",
                env.lr_action_power,
                env.lr_log2_step,
                env.lr_step_for(-1.0),
                env.momentum_log10_step,
                env.lr_min,
                env.lr_max,
                env.momentum_min,
                env.momentum_max
            ),
            env: env.clone(),
        },
        weights: WeightsRef {
            file: WEIGHTS_FILE.into(),
            crc32: crc32fast::hash(&weights),
        },
        training,
    };
    let config = serde_json::to_vec_pretty(&config).expect("config serializes");
    vec![(WEIGHTS_FILE, weights), (CONFIG_FILE, config)]
}

impl PolicyConfig {
    /// The inner optimizer the policy was trained driving (`training.optimizer`; policies from
    /// before AdamW existed say nothing and were trained on SGD).
    pub fn trained_optimizer(&self) -> Result<crate::stats::OptimizerKind, String> {
        match self.training.get("optimizer") {
            None | Some(serde_json::Value::Null) => Ok(crate::stats::OptimizerKind::Sgd),
            Some(serde_json::Value::String(name)) => name.parse(),
            Some(other) => Err(format!(
                "`training.optimizer` is {other}; expected \"sgd\" or \"adamw\""
            )),
        }
    }
}

/// A loaded policy folder.
#[derive(Debug, Clone)]
pub struct PolicyFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: PolicyConfig,
    /// The policy, ready to act.
    pub policy: Policy,
}

/// What a policy folder holds, in one short string: the CRC-32 and size of its `config.json`
/// and `weights.json`. Two folders with the same fingerprint act identically; a comparison
/// records it so that a resume refuses results made by a policy since replaced.
pub fn fingerprint(dir: &Path) -> Result<String, PolicyError> {
    let mut parts = Vec::new();
    for name in [CONFIG_FILE, WEIGHTS_FILE] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| PolicyError {
            path: path.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        parts.push(format!(
            "{name}:{:08x}:{}",
            crc32fast::hash(&bytes),
            bytes.len()
        ));
    }
    Ok(parts.join(","))
}

impl PolicyFolder {
    /// Loads and checks a policy folder.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let err = |path: PathBuf, reason: String| PolicyError { path, reason };
        if !dir.is_dir() {
            return Err(err(dir.into(), "is not a folder".into()));
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| err(path.into(), format!("cannot read: {e}")))
        };
        let config = Self::read_config(dir, &read(&dir.join(CONFIG_FILE))?)?;
        let weight_bytes = read(&dir.join(&config.weights.file))?;
        Self::assemble(dir, config, &weight_bytes)
    }

    /// A policy folder from its two files' bytes (an embedded policy); `dir` names it in errors.
    /// The same checks as [`PolicyFolder::load`].
    pub fn from_bytes(dir: &Path, config: &[u8], weights: &[u8]) -> Result<Self, PolicyError> {
        let config = Self::read_config(dir, config)?;
        Self::assemble(dir, config, weights)
    }

    /// Parses and checks `config.json`.
    fn read_config(dir: &Path, bytes: &[u8]) -> Result<PolicyConfig, PolicyError> {
        let config_path = dir.join(CONFIG_FILE);
        let err = |path: PathBuf, reason: String| PolicyError { path, reason };
        let config: PolicyConfig = serde_json::from_slice(bytes)
            .map_err(|e| err(config_path.clone(), format!("invalid config: {e}")))?;
        let bad = |reason: String| err(config_path.clone(), reason);
        if config.format != POLICY_FORMAT {
            return Err(bad(format!(
                "format {} (this build reads format {POLICY_FORMAT})",
                config.format
            )));
        }
        let version = config.featurizer.version;
        let Some(table) = feature_table(version) else {
            return Err(bad(format!(
                "trained on featurizer version {version}, this build computes versions {FEATURIZER_VERSIONS:?}"
            )));
        };
        if config.action_mapping.env.feature_version != version {
            return Err(bad(format!(
                "featurizer version {version} but action_mapping.env.feature_version {} (they must agree)",
                config.action_mapping.env.feature_version
            )));
        }
        let names: Vec<&str> = table.iter().map(|f| f.0).collect();
        if config.featurizer.features != names {
            return Err(bad(format!(
                "feature list {:?} differs from this build's {names:?}",
                config.featurizer.features
            )));
        }
        let a = &config.architecture;
        if a.kind != "gaussian-mlp" || a.activation != "tanh" {
            return Err(bad(format!(
                "architecture {} with {} (expected gaussian-mlp with tanh)",
                a.kind, a.activation
            )));
        }
        if a.obs_dim != names.len() || a.act_dim != 2 {
            return Err(bad(format!(
                "the network maps {} features to {} actions; the schedule env has {} and 2",
                a.obs_dim,
                a.act_dim,
                names.len()
            )));
        }
        config
            .action_mapping
            .env
            .validate()
            .map_err(|e| bad(e.to_string()))?;
        if config.weights.file.contains(['/', '\\']) {
            return Err(bad(format!(
                "weights file `{}` must be a plain name inside the folder",
                config.weights.file
            )));
        }
        Ok(config)
    }

    /// Checks the weights against the config and builds the policy.
    fn assemble(
        dir: &Path,
        config: PolicyConfig,
        weight_bytes: &[u8],
    ) -> Result<Self, PolicyError> {
        let err = |path: PathBuf, reason: String| PolicyError { path, reason };
        let a = &config.architecture;
        let weights_path = dir.join(&config.weights.file);
        if crc32fast::hash(weight_bytes) != config.weights.crc32 {
            return Err(err(
                weights_path,
                format!(
                    "its checksum does not match {CONFIG_FILE} (damaged, or from another policy)"
                ),
            ));
        }
        let weights: PolicyWeights = serde_json::from_slice(weight_bytes)
            .map_err(|e| err(weights_path.clone(), format!("invalid weights: {e}")))?;
        let policy = Policy {
            obs_norm: config.normalization.as_ref().map(|n| RunningMeanStd {
                mean: n.mean.clone(),
                var: n.var.clone(),
                count: n.count,
            }),
            layers: weights.layers,
            log_std: weights.log_std,
        };
        policy
            .validate()
            .map_err(|reason| err(weights_path.clone(), reason))?;
        let widths: Vec<usize> = policy.layers[..policy.layers.len() - 1]
            .iter()
            .map(|l| l.outputs)
            .collect();
        if policy.obs_dim() != a.obs_dim || policy.act_dim() != a.act_dim || widths != a.hidden {
            return Err(err(
                weights_path,
                format!(
                    "the layers ({}→{:?}→{}) do not match the architecture in {CONFIG_FILE}",
                    policy.obs_dim(),
                    widths,
                    policy.act_dim()
                ),
            ));
        }
        Ok(Self {
            dir: dir.into(),
            config,
            policy,
        })
    }
}

/// The learned controller: the policy's mean action on each observation.
#[derive(Debug, Clone)]
pub struct PolicyController {
    spec: String,
    policy: std::sync::Arc<Policy>,
}

impl PolicyController {
    /// A controller named `spec` acting with `policy` (shared, e.g. by a server's sessions).
    pub fn new(spec: impl Into<String>, policy: impl Into<std::sync::Arc<Policy>>) -> Self {
        Self {
            spec: spec.into(),
            policy: policy.into(),
        }
    }

    /// Loads `policy:DIR`.
    pub fn load(spec: &str, dir: &Path) -> Result<Self, PolicyError> {
        Ok(Self::new(spec, PolicyFolder::load(dir)?.policy))
    }
}

impl Controller for PolicyController {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, _context: &EpisodeContext) {}

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        Decision::Action(self.policy.act(input.obs))
    }

    fn reads_observation(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::N_FEATURES;

    fn toy_policy() -> Policy {
        toy_policy_of(N_FEATURES)
    }

    fn toy_policy_of(n_features: usize) -> Policy {
        let dense = |inputs: usize, outputs: usize, scale: f32| Dense {
            inputs,
            outputs,
            weight: (0..inputs * outputs)
                .map(|i| ((i as f32 * 0.37).sin()) * scale)
                .collect(),
            bias: (0..outputs).map(|j| j as f32 * 0.01).collect(),
        };
        Policy {
            obs_norm: Some(RunningMeanStd {
                mean: vec![0.5; n_features],
                var: vec![2.0; n_features],
                count: 10.0,
            }),
            layers: vec![dense(n_features, 4, 0.5), dense(4, 2, 0.3)],
            log_std: vec![-0.5, -0.7],
        }
    }

    fn write(dir: &Path, files: &[(&str, Vec<u8>)]) {
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn a_version_2_policy_records_its_features_and_refuses_a_mismatched_env() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvConfig {
            feature_version: 2,
            ..EnvConfig::defaults()
        };
        let policy = toy_policy_of(crate::FEATURES_V2.len());
        let files = encode_folder(&policy, &env, serde_json::json!({}));
        write(dir.path(), &files);
        let loaded = PolicyFolder::load(dir.path()).unwrap();
        assert_eq!(loaded.config.featurizer.version, 2);
        assert_eq!(loaded.config.featurizer.features.len(), 19);
        assert_eq!(loaded.config.featurizer.features[13], "last_lr_step");
        assert_eq!(loaded.config.action_mapping.env, env);
        // The featurizer section and the env settings must agree.
        let config = dir.path().join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["action_mapping"]["env"]
            .as_object_mut()
            .unwrap()
            .remove("feature_version");
        std::fs::write(&config, serde_json::to_vec(&value).unwrap()).unwrap();
        let err = PolicyFolder::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("must agree"), "{err}");
        value["featurizer"]["version"] = serde_json::json!(9);
        std::fs::write(&config, serde_json::to_vec(&value).unwrap()).unwrap();
        let err = PolicyFolder::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("featurizer version 9"), "{err}");
    }

    #[test]
    fn a_saved_policy_loads_and_acts_exactly_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let policy = toy_policy();
        let files = encode_folder(
            &policy,
            &EnvConfig::defaults(),
            serde_json::json!({"collection": "toy"}),
        );
        write(dir.path(), &files);
        let loaded = PolicyFolder::load(dir.path()).unwrap();
        assert_eq!(loaded.policy, policy);
        assert_eq!(loaded.config.architecture.hidden, vec![4]);
        let obs: Vec<f32> = (0..N_FEATURES).map(|i| i as f32 * 0.1 - 0.4).collect();
        let spec = format!("policy:{}", dir.path().display());
        let mut ctl = PolicyController::load(&spec, dir.path()).unwrap();
        assert_eq!(ctl.spec(), spec);
        let decision = ctl.decide(&DecisionInput {
            interval: 0,
            obs: &obs,
            last: None,
            current: crate::Hyperparams {
                lr: 0.1,
                momentum: 0.9,
            },
        });
        assert_eq!(decision, Decision::Action(policy.act(&obs)));
    }

    #[test]
    fn damaged_or_mismatched_folders_are_refused_with_the_file_named() {
        let files = encode_folder(
            &toy_policy(),
            &EnvConfig::defaults(),
            serde_json::Value::Null,
        );
        let expect_err = |mutate: &dyn Fn(&Path), expected: &str| {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), &files);
            mutate(dir.path());
            let err = PolicyFolder::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "expected `{expected}` in: {err}");
        };
        expect_err(
            &|d| std::fs::remove_file(d.join(CONFIG_FILE)).unwrap(),
            "config.json: cannot read",
        );
        expect_err(
            &|d| {
                let mut w = std::fs::read(d.join(WEIGHTS_FILE)).unwrap();
                let n = w.len();
                w.truncate(n / 2);
                std::fs::write(d.join(WEIGHTS_FILE), w).unwrap();
            },
            "weights.json: its checksum does not match",
        );
        expect_err(
            &|d| {
                let p = d.join(CONFIG_FILE);
                let s = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"version\": 1", "\"version\": 999");
                std::fs::write(p, s).unwrap();
            },
            "featurizer version 999",
        );
        expect_err(
            &|d| std::fs::write(d.join(CONFIG_FILE), "{\"format\": 1}").unwrap(),
            "invalid config: missing field",
        );
    }
}
