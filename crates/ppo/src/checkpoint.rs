//! Checkpoints: the learner's whole state (agent, Adam state, normalizers, RNG, counters, the
//! rollout cursor) and its environments' snapshots in ONE file, so a resumed run continues exactly
//! where the checkpoint was taken.
//!
//! # File format
//! `HYPERCTL-CKPT\0`, a little-endian `u32` format version, a `u32` section count, then per
//! section a `u32` name length, the UTF-8 name, a `u64` length and the bytes; last a CRC-32 of
//! everything before it. A truncated or altered file is therefore always detected. Sections:
//! `ppo.json` (state), `agent.bpk` and `optim.bpk` (burnpack records), `envs.json`
//! (environment snapshots), plus any the caller adds.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use hyperctl_env_core::Resumable;
use rand_chacha::ChaCha8Rng;

use crate::{Agent, Ppo, PpoConfig, RunningMeanStd};

const MAGIC: &[u8] = b"HYPERCTL-CKPT\0";
const VERSION: u32 = 1;

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes do not start with the checkpoint magic.
    #[error("not a hyperctl checkpoint (the file does not start with the checkpoint header)")]
    NotACheckpoint,
    /// Written by a format version this build cannot read.
    #[error("checkpoint format version {found}; this build reads version {VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// The file ends early.
    #[error("the checkpoint is truncated: {0}")]
    Truncated(String),
    /// The checksum does not match.
    #[error("the checkpoint is damaged: its checksum does not match its contents")]
    Checksum,
    /// A section the reader needs is absent.
    #[error("the checkpoint has no `{0}` section")]
    Missing(String),
    /// A section could not be decoded.
    #[error("checkpoint section `{section}` is invalid: {reason}")]
    Section {
        /// The section.
        section: String,
        /// What failed.
        reason: String,
    },
    /// The checkpoint belongs to another setup (other config, env count or spaces).
    #[error("the checkpoint does not match this run: {0}")]
    Mismatch(String),
    /// An environment could not be restored.
    #[error("environment {index} could not be restored: {reason}")]
    Env {
        /// The env's index.
        index: usize,
        /// Its reason.
        reason: String,
    },
}

/// Encodes named sections into the checkpoint file format.
pub fn encode(sections: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + sections.iter().map(|s| s.1.len() + 16).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (name, bytes) in sections {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a checkpoint front to back, naming what is missing when it ends early.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CheckpointError> {
        if self.bytes.len() - self.at < n {
            return Err(CheckpointError::Truncated(format!(
                "{what} needs {n} bytes at offset {}, the file has {} in all",
                self.at,
                self.bytes.len()
            )));
        }
        self.at += n;
        Ok(&self.bytes[self.at - n..self.at])
    }

    fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
}

/// Decodes the checkpoint file format into its sections (by name).
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, CheckpointError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::NotACheckpoint);
    }
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    let version = r.u32("the version")?;
    if version != VERSION {
        return Err(CheckpointError::Version { found: version });
    }
    let count = r.u32("the section count")?;
    let mut sections = BTreeMap::new();
    for k in 0..count {
        let name_len = r.u32("a section name length")? as usize;
        let name = String::from_utf8(r.take(name_len, "a section name")?.to_vec())
            .map_err(|_| invalid(&format!("#{k}"), "its name is not UTF-8"))?;
        let len = u64::from_le_bytes(r.take(8, "a section length")?.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| {
            CheckpointError::Truncated(format!("section `{name}` declares {len} bytes"))
        })?;
        let body = r.take(len, &format!("section `{name}`"))?.to_vec();
        sections.insert(name, body);
    }
    let body_end = r.at;
    let crc = r.u32("the checksum")?;
    if r.at != bytes.len() {
        return Err(invalid(
            "(end)",
            format!("{} unexpected bytes after the checksum", bytes.len() - r.at),
        ));
    }
    if crc32fast::hash(&bytes[..body_end]) != crc {
        return Err(CheckpointError::Checksum);
    }
    Ok(sections)
}

/// The learner's host state, stored as JSON (floats round-trip exactly).
#[derive(serde::Serialize, serde::Deserialize)]
struct PpoState {
    config: PpoConfig,
    obs_rms: RunningMeanStd,
    return_rms: RunningMeanStd,
    rng: ChaCha8Rng,
    global_step: usize,
    iteration: usize,
    next_obs: Vec<Vec<f32>>,
    next_done: Vec<f32>,
    running_returns: Vec<f64>,
    discounted_returns: Vec<f64>,
    obs_dim: usize,
    act_dim: usize,
}

fn section<'a>(
    sections: &'a BTreeMap<String, Vec<u8>>,
    name: &str,
) -> Result<&'a [u8], CheckpointError> {
    sections
        .get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| CheckpointError::Missing(name.into()))
}

fn invalid(section: &str, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Section {
        section: section.into(),
        reason: reason.to_string(),
    }
}

impl Ppo {
    /// The learner's and the environments' state as checkpoint sections (see the module docs);
    /// call between iterations. Pass the result, with any sections of your own, to [`encode`].
    pub fn checkpoint_sections<E: Resumable>(
        &self,
        envs: &[E],
    ) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
        let snapshots: Vec<E::Snapshot> = envs.iter().map(Resumable::snapshot).collect();
        self.checkpoint_sections_from(&snapshots)
    }

    /// [`Ppo::checkpoint_sections`] with the envs' snapshots already taken (one per env, in env
    /// order: envs in worker processes, say).
    pub fn checkpoint_sections_from<S: serde::Serialize>(
        &self,
        snapshots: &[S],
    ) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
        if snapshots.len() != self.next_obs.len() {
            return Err(invalid(
                "envs.json",
                format!(
                    "{} snapshots for {} environments",
                    snapshots.len(),
                    self.next_obs.len()
                ),
            ));
        }
        let state = PpoState {
            config: self.config.clone(),
            obs_rms: self.obs_rms.clone(),
            return_rms: self.return_rms.clone(),
            rng: self.rng.clone(),
            global_step: self.global_step,
            iteration: self.iteration,
            next_obs: self.next_obs.clone(),
            next_done: self.next_done.clone(),
            running_returns: self.running_returns.clone(),
            discounted_returns: self.discounted_returns.clone(),
            obs_dim: self.obs_dim,
            act_dim: self.act_dim,
        };
        let json = |name: &str, r: serde_json::Result<Vec<u8>>| r.map_err(|e| invalid(name, e));
        let agent = self
            .agent()
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| invalid("agent.bpk", e))?;
        let optim = self
            .optim
            .into_bytes()
            .map_err(|e| invalid("optim.bpk", e))?;
        Ok(vec![
            (
                "ppo.json".into(),
                json("ppo.json", serde_json::to_vec(&state))?,
            ),
            ("agent.bpk".into(), agent.to_vec()),
            ("optim.bpk".into(), optim.to_vec()),
            (
                "envs.json".into(),
                json("envs.json", serde_json::to_vec(&snapshots))?,
            ),
        ])
    }

    /// Rebuilds a learner from checkpoint sections and restores `envs` (built exactly as for the
    /// original run) to their checkpointed state. `config` must equal the checkpoint's.
    pub fn resume<E: Resumable>(
        config: &PpoConfig,
        sections: &BTreeMap<String, Vec<u8>>,
        envs: &mut [E],
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        if envs.is_empty() {
            return Err(CheckpointError::Mismatch(
                "this run has no environments".into(),
            ));
        }
        let spaces = (
            envs[0].observation_space().dim(),
            envs[0].action_space().dim(),
        );
        let n = envs.len();
        Self::resume_from(
            config,
            sections,
            n,
            spaces,
            device,
            |snapshots: Vec<E::Snapshot>| {
                envs.iter_mut()
                    .zip(snapshots)
                    .enumerate()
                    .map(|(index, (env, snap))| {
                        env.restore(snap)
                            .map_err(|reason| CheckpointError::Env { index, reason })
                    })
                    .collect()
            },
        )
    }

    /// [`Ppo::resume`] for envs restored by the caller (in worker processes, say): `num_envs`
    /// envs of `(observation, action)` dimensions `spaces`; `restore` gets the checkpoint's
    /// snapshots in env order and returns each restored env's observation, which must equal the
    /// learner's record bit for bit.
    pub fn resume_from<S: serde::de::DeserializeOwned>(
        config: &PpoConfig,
        sections: &BTreeMap<String, Vec<u8>>,
        num_envs: usize,
        spaces: (usize, usize),
        device: &Device,
        restore: impl FnOnce(Vec<S>) -> Result<Vec<Vec<f32>>, CheckpointError>,
    ) -> Result<Self, CheckpointError> {
        let state: PpoState = serde_json::from_slice(section(sections, "ppo.json")?)
            .map_err(|e| invalid("ppo.json", e))?;
        if &state.config != config {
            return Err(CheckpointError::Mismatch(format!(
                "the PPO settings differ from the checkpoint's ({})",
                config_diff(&state.config, config)
            )));
        }
        if num_envs != state.next_obs.len() {
            return Err(CheckpointError::Mismatch(format!(
                "the checkpoint has {} environments, this run {num_envs}",
                state.next_obs.len(),
            )));
        }
        let (obs_dim, act_dim) = spaces;
        if (obs_dim, act_dim) != (state.obs_dim, state.act_dim) {
            return Err(CheckpointError::Mismatch(format!(
                "the checkpoint's spaces are {}→{}, this run's {obs_dim}→{act_dim}",
                state.obs_dim, state.act_dim
            )));
        }
        let n = num_envs;
        if state.next_done.len() != n
            || state.running_returns.len() != n
            || state.discounted_returns.len() != n
            || state.obs_rms.mean.len() != obs_dim
            || state.return_rms.mean.len() != 1
        {
            return Err(invalid("ppo.json", "its vectors have inconsistent lengths"));
        }

        let ad = device.clone().autodiff();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(
            section(sections, "agent.bpk")?.to_vec(),
        ))
        .map_err(|e| invalid("agent.bpk", e))?;
        let agent = Agent::new(obs_dim, act_dim, config.hidden, config.seed, &ad)
            .try_load_record(record)
            .map_err(|e| invalid("agent.bpk", e))?;
        let optim_bytes = section(sections, "optim.bpk")?.to_vec();
        let expected =
            burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(optim_bytes.clone()))
                .map_err(|e| invalid("optim.bpk", e))?
                .len();
        let optim = AdamConfig::new()
            .with_epsilon(1e-5)
            .init()
            .from_bytes(Bytes::from_bytes_vec(optim_bytes))
            .map_err(|e| invalid("optim.bpk", e))?;
        let loaded = optim.to_record().len();
        if loaded != expected {
            return Err(invalid(
                "optim.bpk",
                format!("{expected} state tensors recorded but only {loaded} loaded"),
            ));
        }

        let snapshots: Vec<S> = serde_json::from_slice(section(sections, "envs.json")?)
            .map_err(|e| invalid("envs.json", e))?;
        if snapshots.len() != n {
            return Err(invalid(
                "envs.json",
                format!("{} snapshots for {n} environments", snapshots.len()),
            ));
        }
        let restored = restore(snapshots)?;
        if restored.len() != n {
            return Err(CheckpointError::Mismatch(format!(
                "{} environments restored of {n}",
                restored.len()
            )));
        }
        for (index, (obs, expected)) in restored.iter().zip(&state.next_obs).enumerate() {
            if obs
                .iter()
                .map(|v| v.to_bits())
                .ne(expected.iter().map(|v| v.to_bits()))
            {
                return Err(CheckpointError::Env {
                    index,
                    reason: "its restored observation differs from the learner's record".into(),
                });
            }
        }

        Ok(Self {
            config: state.config,
            device: device.clone(),
            agent: Some(agent),
            optim,
            obs_rms: state.obs_rms,
            return_rms: state.return_rms,
            rng: state.rng,
            global_step: state.global_step,
            iteration: state.iteration,
            next_obs: state.next_obs,
            next_done: state.next_done,
            running_returns: state.running_returns,
            discounted_returns: state.discounted_returns,
            obs_dim,
            act_dim,
        })
    }
}

/// The names of the settings that differ (for error messages).
fn config_diff(a: &PpoConfig, b: &PpoConfig) -> String {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: checkpoint {v}, now {}", b.get(k).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}
