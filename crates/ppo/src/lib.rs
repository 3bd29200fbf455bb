//! PPO for any [`Env`] with box observations and actions, following CleanRL's
//! `ppo_continuous_action.py`: separate actor and critic MLPs (tanh, orthogonal init), a Gaussian
//! policy with a learned state-independent log-std, GAE(γ, λ), the clipped surrogate objective,
//! the clipped value loss, an entropy bonus, per-minibatch advantage normalization, Adam with a
//! linearly annealed learning rate, global gradient-norm clipping, and running observation
//! normalization (clipped to ±10) whose statistics belong to the policy.
//!
//! [`Ppo::iterate`] runs one iteration (rollout of `num_steps` × `num_envs`, then the update) and
//! returns its metrics, so callers can log, evaluate and checkpoint between iterations.
//!
//! # Architecture invariants
//! - This crate knows nothing of learning rates of DNN training, momentum or datasets: it sees
//!   only `Env` observations, actions and rewards.
//! - Rollouts happen on the host with seeded RNGs; environments are stepped in index order or in
//!   parallel with results gathered by index, so results do not depend on thread count.

#![warn(missing_docs)]

pub mod checkpoint;

pub use checkpoint::{CheckpointError, decode, encode};
pub use hyperctl_policy::{Dense, Policy, RunningMeanStd};

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use hyperctl_env_core::{Env, ThreadedEnvs, VecEnv};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// All PPO options, CleanRL's names and defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PpoConfig {
    /// Seed of initialisation, sampling and minibatch shuffling.
    pub seed: u64,
    /// Total environment steps of the run.
    pub total_timesteps: usize,
    /// Adam learning rate (annealed linearly to 0 when `anneal_lr`).
    pub learning_rate: f64,
    /// Steps per environment per rollout.
    pub num_steps: usize,
    /// Anneal the learning rate linearly over the iterations.
    pub anneal_lr: bool,
    /// Discount factor γ.
    pub gamma: f64,
    /// GAE λ.
    pub gae_lambda: f64,
    /// Minibatches per update epoch.
    pub num_minibatches: usize,
    /// Passes over the rollout per iteration.
    pub update_epochs: usize,
    /// Normalize advantages per minibatch.
    pub norm_adv: bool,
    /// Surrogate clipping coefficient ε.
    pub clip_coef: f64,
    /// Clip the value loss too.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Stop an iteration's update epochs early when approx_kl exceeds this.
    pub target_kl: Option<f64>,
    /// Hidden units of the actor and critic MLPs (two hidden layers each).
    pub hidden: usize,
    /// Normalize observations with running statistics.
    pub norm_obs: bool,
    /// Scale rewards by the running std of the discounted return, then clip them to ±10
    /// (CleanRL's `NormalizeReward` + `TransformReward` wrappers). Reported returns stay raw.
    pub norm_reward: bool,
    /// Step environments on parallel threads.
    pub parallel_envs: bool,
    /// How a rollout steps the envs (see [`RolloutMode`]); absent in older configs: lockstep.
    #[serde(default)]
    pub rollout: RolloutMode,
}

/// How a rollout steps its envs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMode {
    /// CleanRL's: every env steps once per step, actions sampled from the current observation
    /// normalizer (updated after every step), so each step waits for the slowest env.
    #[default]
    Lockstep,
    /// Each env runs its `num_steps` decisions of the iteration on its own, acting with the
    /// iteration's policy and normalizer frozen at its start ([`segment_action`]; the normalizer
    /// is then updated step by step as in lockstep), so envs wait for each other once per
    /// iteration instead of once per step. The Gaussian noise of a decision is a function of the
    /// iteration's noise seed (drawn on the learner), the env, which of the iteration's episodes
    /// of that env it belongs to and its place in it ([`SegmentNoise`]), so results do not depend
    /// on where or when envs run, and an episode can be run before the one it follows is over
    /// (its first decision's place in the iteration is not needed). They differ from lockstep's
    /// through the frozen normalizer and the noise.
    Segments,
}

/// The action a [`RolloutMode::Segments`] rollout takes: the policy's mean for `obs` (its own
/// frozen normalizer applied) plus `exp(log_std) * eps`. Every place that runs segments (threads,
/// worker processes) calls this one function, so they act identically.
pub fn segment_action(policy: &Policy, obs: &[f32], eps: &[f32]) -> Vec<f32> {
    policy
        .act(obs)
        .iter()
        .zip(&policy.log_std)
        .zip(eps)
        .map(|((&m, &ls), &e)| (m as f64 + (ls as f64).exp() * e as f64) as f32)
        .collect()
}

/// The Gaussian noise of one [`RolloutMode::Segments`] iteration: row `p` of
/// [`SegmentNoise::episode`]`(env, j)` is the noise of the `p`-th decision (in this iteration) of
/// env `env`'s `j`-th episode of the iteration (`j = 0`: the episode under way when the
/// iteration began). Drawn from a stream of its own per `(env, j)`, so any process can draw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentNoise {
    /// The iteration's seed (drawn from the learner's RNG).
    pub seed: u64,
    /// Decisions per env per iteration (the most rows an episode can need).
    pub num_steps: usize,
    /// Action dimensions (values per row).
    pub act_dim: usize,
}

impl SegmentNoise {
    /// The noise rows (`num_steps × act_dim` standard normals) of env `env`'s `j`-th episode.
    pub fn episode(&self, env: usize, j: usize) -> Vec<f32> {
        let mut h = self.seed ^ 0x5E6_0015E;
        for x in [env as u64, j as u64] {
            // splitmix64 over (seed, env, j): distinct streams for distinct pairs.
            h = (h ^ x).wrapping_add(0x9E37_79B9_7F4A_7C15);
            h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            h ^= h >> 31;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(h);
        (0..self.num_steps * self.act_dim)
            .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
            .collect()
    }
}

/// One step of a segment: the action taken, the step, and the next episode's first observation
/// when the episode ended (autoreset).
pub type SegmentStep = (Vec<f32>, hyperctl_env_core::Step, Option<Vec<f32>>);

/// A [`VecEnv`] that can also run [`RolloutMode::Segments`] rollouts.
pub trait SegmentEnv: VecEnv {
    /// Runs env `i` for `noise.num_steps` steps from its current observation `obs[i]`, acting
    /// with [`segment_action`] on `policy` and the noise of [`SegmentNoise::episode`], resetting
    /// it (unseeded) when an episode ends; returns each env's steps in order.
    fn run_segments(
        &mut self,
        policy: &Policy,
        obs: &[Vec<f32>],
        noise: &SegmentNoise,
    ) -> Result<Vec<Vec<SegmentStep>>, String>;
}

/// Steps one episode of a segment from `obs` for at most `rows.len() / act_dim` decisions,
/// acting with [`segment_action`] on `policy` and `rows` (the episode's noise from its `p`-th
/// decision of the iteration on), and stops after the step that ends the episode (no reset).
/// Returns `(action, step)` per decision. Threads and worker processes both run segments with
/// this one loop.
pub fn run_episode_piece<E: Env + ?Sized>(
    env: &mut E,
    policy: &Policy,
    obs: &[f32],
    rows: &[f32],
) -> Vec<(Vec<f32>, hyperctl_env_core::Step)> {
    let act_dim = policy.log_std.len().max(1);
    let mut obs = obs.to_vec();
    let mut out = Vec::with_capacity(rows.len() / act_dim);
    for e in rows.chunks(act_dim) {
        let action = segment_action(policy, &obs, e);
        let step = env.step(&action);
        let done = step.done();
        obs.clone_from(&step.obs);
        out.push((action, step));
        if done {
            break;
        }
    }
    out
}

/// Env `i`'s segment of `noise.num_steps` decisions, stepped here: its episodes' pieces
/// ([`run_episode_piece`]) one after another, resetting the env (unseeded) after each that ends.
pub fn run_segment<E: Env + ?Sized>(
    env: &mut E,
    policy: &Policy,
    obs: &[f32],
    noise: &SegmentNoise,
    i: usize,
) -> Vec<SegmentStep> {
    let act_dim = noise.act_dim.max(1);
    let mut obs = obs.to_vec();
    let mut out: Vec<SegmentStep> = Vec::with_capacity(noise.num_steps);
    let mut j = 0;
    while out.len() < noise.num_steps {
        let rows = noise.episode(i, j);
        let left = noise.num_steps - out.len();
        let piece = run_episode_piece(env, policy, &obs, &rows[..left * act_dim]);
        for (action, step) in piece {
            obs.clone_from(&step.obs);
            let reset = step.done().then(|| env.reset(None).0);
            if let Some(first) = &reset {
                obs.clone_from(first);
                j += 1;
            }
            out.push((action, step, reset));
        }
    }
    out
}

/// Where each step of a segment sits: `(episode j, its place p in the episode's rows)`, from
/// which steps ended an episode (what the learner needs to find each step's noise again).
pub fn segment_places(segment: &[SegmentStep]) -> Vec<(usize, usize)> {
    let (mut j, mut p) = (0, 0);
    segment
        .iter()
        .map(|(_, _, reset)| {
            let here = (j, p);
            p += 1;
            if reset.is_some() {
                j += 1;
                p = 0;
            }
            here
        })
        .collect()
}

impl<E: Env + Send> SegmentEnv for ThreadedEnvs<'_, E> {
    fn run_segments(
        &mut self,
        policy: &Policy,
        obs: &[Vec<f32>],
        noise: &SegmentNoise,
    ) -> Result<Vec<Vec<SegmentStep>>, String> {
        let threads = self.threads();
        Ok(hyperctl_pool::map_mut(
            self.envs_mut(),
            threads,
            |i, env| run_segment(env, policy, &obs[i], noise, i),
        ))
    }
}

impl PpoConfig {
    /// CleanRL's `ppo_continuous_action.py` defaults (with 1M total steps).
    pub fn cleanrl() -> Self {
        Self {
            seed: 1,
            total_timesteps: 1_000_000,
            learning_rate: 3e-4,
            num_steps: 2048,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 32,
            update_epochs: 10,
            norm_adv: true,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: None,
            hidden: 64,
            norm_obs: true,
            norm_reward: true,
            parallel_envs: true,
            rollout: RolloutMode::Lockstep,
        }
    }
}

/// The actor-critic: two tanh MLPs and a state-independent log-std.
#[derive(Module, Debug)]
pub struct Agent {
    critic: Vec<Linear>,
    actor_mean: Vec<Linear>,
    actor_logstd: Param<Tensor<2>>,
}

/// Orthogonal matrix `[rows, cols]` × gain (torch.nn.init.orthogonal_), drawn on the host.
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    // Gram-Schmidt on the columns of a tall Gaussian matrix, transposed back when wide.
    let (tall, short) = (rows.max(cols), rows.min(cols));
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(short);
    while q.len() < short {
        let mut v: Vec<f64> = (0..tall)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        for u in &q {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-8 {
            q.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows >= cols { q[c][r] } else { q[r][c] };
            out[r * cols + c] = (v * gain) as f32;
        }
    }
    out
}

fn layer(d_in: usize, d_out: usize, gain: f64, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).init(device);
    l.weight = Param::from_data(
        TensorData::new(orthogonal(d_in, d_out, gain, rng), [d_in, d_out]),
        device,
    );
    l.bias = Some(Param::from_data(
        TensorData::new(vec![0f32; d_out], [d_out]),
        device,
    ));
    l
}

impl Agent {
    /// A fresh agent (CleanRL's init: hidden gain √2, actor head 0.01, critic head 1, bias 0).
    pub fn new(obs_dim: usize, act_dim: usize, hidden: usize, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA6E7);
        let s2 = 2f64.sqrt();
        Self {
            critic: vec![
                layer(obs_dim, hidden, s2, &mut rng, device),
                layer(hidden, hidden, s2, &mut rng, device),
                layer(hidden, 1, 1.0, &mut rng, device),
            ],
            actor_mean: vec![
                layer(obs_dim, hidden, s2, &mut rng, device),
                layer(hidden, hidden, s2, &mut rng, device),
                layer(hidden, act_dim, 0.01, &mut rng, device),
            ],
            actor_logstd: Param::from_data(
                TensorData::new(vec![0f32; act_dim], [1, act_dim]),
                device,
            ),
        }
    }

    fn mlp(layers: &[Linear], x: Tensor<2>) -> Tensor<2> {
        let last = layers.len() - 1;
        layers.iter().enumerate().fold(x, |x, (i, l)| {
            let y = l.forward(x);
            if i < last { y.tanh() } else { y }
        })
    }

    /// V(s). # Shapes: `[batch, obs] -> [batch, 1]`.
    pub fn get_value(&self, obs: Tensor<2>) -> Tensor<2> {
        Self::mlp(&self.critic, obs)
    }

    /// The Gaussian's mean and log-std. # Shapes: `[batch, obs] -> ([batch, act], [1, act])`.
    pub fn get_action_mean(&self, obs: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (Self::mlp(&self.actor_mean, obs), self.actor_logstd.val())
    }
}

/// GAE over a rollout stored `[step][env]`: returns (advantages, returns), same layout.
/// `dones[t]` marks that the observation at step t started a new episode (CleanRL's `dones`).
#[allow(clippy::too_many_arguments)]
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    dones: &[f32],
    next_value: &[f32],
    next_done: &[f32],
    num_steps: usize,
    num_envs: usize,
    gamma: f64,
    gae_lambda: f64,
) -> (Vec<f32>, Vec<f32>) {
    let mut advantages = vec![0f32; num_steps * num_envs];
    for e in 0..num_envs {
        let mut lastgaelam = 0f64;
        for t in (0..num_steps).rev() {
            let (nextnonterminal, nextvalues) = if t == num_steps - 1 {
                (1.0 - next_done[e] as f64, next_value[e] as f64)
            } else {
                (
                    1.0 - dones[(t + 1) * num_envs + e] as f64,
                    values[(t + 1) * num_envs + e] as f64,
                )
            };
            let i = t * num_envs + e;
            let delta = rewards[i] as f64 + gamma * nextvalues * nextnonterminal - values[i] as f64;
            lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam;
            advantages[i] = lastgaelam as f32;
        }
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Metrics of one iteration (CleanRL's logged keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IterationMetrics {
    /// 1-based iteration.
    pub iteration: usize,
    /// Environment steps so far.
    pub global_step: usize,
    /// The learning rate used (`charts/learning_rate`).
    pub learning_rate: f64,
    /// Returns of the episodes that ended in this iteration (`charts/episodic_return`).
    pub episodic_returns: Vec<f64>,
    /// `losses/value_loss` of the last minibatch.
    pub value_loss: f64,
    /// `losses/policy_loss` of the last minibatch.
    pub policy_loss: f64,
    /// `losses/entropy` of the last minibatch.
    pub entropy: f64,
    /// `losses/approx_kl` of the last minibatch.
    pub approx_kl: f64,
    /// `losses/clipfrac`: mean over the iteration's minibatches.
    pub clipfrac: f64,
    /// `losses/explained_variance` of the rollout.
    pub explained_variance: f64,
    /// `charts/SPS`: environment steps per second in this iteration.
    pub sps: f64,
    /// Wall seconds of the rollout (policy forward passes, env steps and resets).
    pub rollout_secs: f64,
    /// Wall seconds of the rest: GAE and the minibatch updates.
    pub update_secs: f64,
}

/// The learner's whole state: agent, optimizer, normalizer, RNG, counters, rollout cursor.
pub struct Ppo {
    /// The options.
    pub config: PpoConfig,
    device: Device,
    agent: Option<Agent>,
    optim: ModuleOptimizer,
    /// Observation statistics (part of the policy).
    pub obs_rms: RunningMeanStd,
    rng: ChaCha8Rng,
    /// Environment steps taken.
    pub global_step: usize,
    /// Iterations done.
    pub iteration: usize,
    /// Discounted-return statistics that scale rewards (`norm_reward`).
    pub return_rms: RunningMeanStd,
    next_obs: Vec<Vec<f32>>,
    next_done: Vec<f32>,
    running_returns: Vec<f64>,
    discounted_returns: Vec<f64>,
    obs_dim: usize,
    act_dim: usize,
}

impl Ppo {
    /// A learner for `envs` (all of one observation and action dimension); resets env i with
    /// seed `config.seed + i`.
    pub fn new<E: Env + Send>(config: PpoConfig, envs: &mut [E], device: &Device) -> Self {
        Self::new_vec(config, &mut ThreadedEnvs::new(envs, 1), device)
            .expect("envs of this process cannot be lost")
    }

    /// [`Ppo::new`] for any [`VecEnv`] (envs in worker processes, say).
    pub fn new_vec(
        config: PpoConfig,
        envs: &mut dyn VecEnv,
        device: &Device,
    ) -> Result<Self, String> {
        assert!(envs.num_envs() > 0, "PPO needs at least one environment");
        let num_envs = envs.num_envs();
        let obs_dim = envs.observation_space().dim();
        let act_dim = envs.action_space().dim();
        // TRY NOT TO MODIFY: seeding.
        let agent = Agent::new(
            obs_dim,
            act_dim,
            config.hidden,
            config.seed,
            &device.clone().autodiff(),
        );
        let optim = AdamConfig::new().with_epsilon(1e-5).init();
        let seeds: Vec<u64> = (0..num_envs)
            .map(|i| config.seed.wrapping_add(i as u64))
            .collect();
        let next_obs = envs.reset_each(&seeds)?;
        let mut obs_rms = RunningMeanStd::new(obs_dim);
        if config.norm_obs {
            obs_rms.update(&next_obs);
        }
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            next_done: vec![0.0; num_envs],
            running_returns: vec![0.0; num_envs],
            discounted_returns: vec![0.0; num_envs],
            return_rms: RunningMeanStd::new(1),
            config,
            device: device.clone(),
            agent: Some(agent),
            optim,
            obs_rms,
            global_step: 0,
            iteration: 0,
            next_obs,
            obs_dim,
            act_dim,
        })
    }

    /// Iterations the configured total of steps allows.
    pub fn num_iterations(&self, num_envs: usize) -> usize {
        self.config.total_timesteps / (self.config.num_steps * num_envs).max(1)
    }

    fn agent(&self) -> &Agent {
        self.agent
            .as_ref()
            .expect("the agent should be present between updates")
    }

    fn normalized(&self, obs: &[f32]) -> Vec<f32> {
        if self.config.norm_obs {
            self.obs_rms.normalize(obs)
        } else {
            obs.to_vec()
        }
    }

    /// The current deterministic policy (normalizer + actor mean network) as host data: what a
    /// trained policy is saved as, and what evaluation and deployment act with.
    pub fn policy(&self) -> Policy {
        let agent = self.agent();
        let layers = agent
            .actor_mean
            .iter()
            .map(|l| {
                let [inputs, outputs] = l.weight.val().dims();
                let host = |t: Tensor<2>| -> Vec<f32> {
                    t.into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .expect("f32 data")
                };
                Dense {
                    inputs,
                    outputs,
                    weight: host(l.weight.val()),
                    bias: host(
                        l.bias
                            .as_ref()
                            .expect("actor layers have a bias")
                            .val()
                            .reshape([1, outputs]),
                    ),
                }
            })
            .collect();
        let log_std = agent
            .actor_logstd
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data");
        Policy {
            obs_norm: self.config.norm_obs.then(|| self.obs_rms.clone()),
            layers,
            log_std,
        }
    }

    /// One iteration: rollout, GAE, minibatch updates. Returns its metrics. The envs step on
    /// parallel threads when `parallel_envs`.
    pub fn iterate<E: Env + Send>(&mut self, envs: &mut [E]) -> IterationMetrics {
        let threads = if self.config.parallel_envs {
            envs.len()
        } else {
            1
        };
        self.iterate_segments(&mut ThreadedEnvs::new(envs, threads))
            .expect("envs of this process cannot be lost")
    }

    /// [`Ppo::iterate`] for any [`SegmentEnv`], in the configured [`RolloutMode`]. After an
    /// error (an env could not be reached) the learner is mid-iteration: drop it and resume from
    /// the last checkpoint.
    pub fn iterate_segments(
        &mut self,
        envs: &mut dyn SegmentEnv,
    ) -> Result<IterationMetrics, String> {
        let segments = self.config.rollout == RolloutMode::Segments;
        let num_envs = envs.num_envs();
        self.iterate_with(num_envs, |ppo, policy| {
            if segments {
                ppo.rollout_segments(envs, policy)
            } else {
                ppo.rollout(envs, policy)
            }
        })
    }

    /// [`Ppo::iterate`] for any [`VecEnv`] (lockstep rollouts only: a config asking for
    /// segments needs a [`SegmentEnv`]). After an error (an env could not be reached) the
    /// learner is mid-iteration: drop it and resume from the last checkpoint.
    pub fn iterate_vec(&mut self, envs: &mut dyn VecEnv) -> Result<IterationMetrics, String> {
        if self.config.rollout != RolloutMode::Lockstep {
            return Err("segment rollouts need envs that can run segments (SegmentEnv)".into());
        }
        let num_envs = envs.num_envs();
        self.iterate_with(num_envs, |ppo, policy| ppo.rollout(envs, policy))
    }

    fn iterate_with(
        &mut self,
        num_envs: usize,
        rollout: impl FnOnce(&mut Self, &Agent) -> Result<Rollout, String>,
    ) -> Result<IterationMetrics, String> {
        let start = std::time::Instant::now();
        let c = self.config.clone();
        let batch_size = num_envs * c.num_steps;
        let num_iterations = self.num_iterations(num_envs).max(1);
        self.iteration += 1;

        // Annealing the rate if instructed to do so.
        let frac = 1.0 - (self.iteration - 1) as f64 / num_iterations as f64;
        let lr_now = if c.anneal_lr {
            (frac * c.learning_rate).max(0.0)
        } else {
            c.learning_rate
        };

        // ALGO LOGIC: rollout (storage laid out [step][env]).
        let policy = self.agent().valid();
        let b = rollout(self, &policy)?;
        let rollout_secs = start.elapsed().as_secs_f64();

        // Bootstrap value if not done, then GAE.
        let (advantages, returns) = self.advantages(&policy, &b);

        // Optimizing the policy and value network.
        let u = self.update(&b, &advantages, &returns, lr_now);

        // Log.
        let var_y = variance(&returns);
        let residual: Vec<f32> = returns.iter().zip(&b.values).map(|(r, v)| r - v).collect();
        let explained_variance = if var_y == 0.0 {
            f64::NAN
        } else {
            1.0 - variance(&residual) / var_y
        };
        let metrics = IterationMetrics {
            iteration: self.iteration,
            global_step: self.global_step,
            learning_rate: lr_now,
            episodic_returns: b.episodic_returns,
            value_loss: u.v_loss,
            policy_loss: u.pg_loss,
            entropy: u.entropy,
            approx_kl: u.approx_kl,
            clipfrac: u.clipfrac,
            explained_variance,
            sps: batch_size as f64 / start.elapsed().as_secs_f64(),
            rollout_secs,
            update_secs: start.elapsed().as_secs_f64() - rollout_secs,
        };
        let n = metrics.episodic_returns.len();
        tracing::info!(
            global_step = metrics.global_step,
            episodic_return =
                (n > 0).then(|| metrics.episodic_returns.iter().sum::<f64>() / n as f64),
            approx_kl = metrics.approx_kl,
            clipfrac = metrics.clipfrac,
            explained_variance = metrics.explained_variance,
            sps = metrics.sps,
            "ppo iteration {}",
            metrics.iteration
        );
        Ok(metrics)
    }

    /// Steps every env `num_steps` times under the current policy (sampling its Gaussian),
    /// resetting envs whose episode ended, and keeps the batch.
    fn rollout(&mut self, envs: &mut dyn VecEnv, policy: &Agent) -> Result<Rollout, String> {
        let c = self.config.clone();
        let (num_envs, num_steps, obs_dim, act_dim) =
            (envs.num_envs(), c.num_steps, self.obs_dim, self.act_dim);
        let batch_size = num_envs * num_steps;
        let log2pi = (2.0 * std::f64::consts::PI).ln();
        let mut obs = vec![0f32; batch_size * obs_dim];
        let mut actions = vec![0f32; batch_size * act_dim];
        let mut logprobs = vec![0f32; batch_size];
        let mut rewards = vec![0f32; batch_size];
        let mut dones = vec![0f32; batch_size];
        let mut values = vec![0f32; batch_size];
        let mut episodic_returns = Vec::new();
        for step in 0..num_steps {
            self.global_step += num_envs;
            let normed: Vec<f32> = self
                .next_obs
                .iter()
                .flat_map(|o| self.normalized(o))
                .collect();
            obs[step * num_envs * obs_dim..(step + 1) * num_envs * obs_dim]
                .copy_from_slice(&normed);
            dones[step * num_envs..(step + 1) * num_envs].copy_from_slice(&self.next_done);
            let x = Tensor::from_data(TensorData::new(normed, [num_envs, obs_dim]), &self.device);
            let (mean, logstd) = policy.get_action_mean(x.clone());
            let value = policy.get_value(x);
            let host = Tensor::cat(
                vec![
                    mean.reshape([num_envs * act_dim]),
                    logstd.reshape([act_dim]),
                    value.reshape([num_envs]),
                ],
                0,
            )
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data");
            let (mean, rest) = host.split_at(num_envs * act_dim);
            let (logstd, value) = rest.split_at(act_dim);
            let mut step_actions = Vec::with_capacity(num_envs);
            for e in 0..num_envs {
                let i = step * num_envs + e;
                values[i] = value[e];
                let mut logp = 0f64;
                let mut a = Vec::with_capacity(act_dim);
                for d in 0..act_dim {
                    let eps: f64 = self.rng.sample(StandardNormal);
                    let std = (logstd[d] as f64).exp();
                    let ad = mean[e * act_dim + d] as f64 + std * eps;
                    logp += -0.5 * eps * eps - logstd[d] as f64 - 0.5 * log2pi;
                    actions[i * act_dim + d] = ad as f32;
                    a.push(ad as f32);
                }
                logprobs[i] = logp as f32;
                step_actions.push(a);
            }

            // TRY NOT TO MODIFY: execute the game (envs clip actions into their space; an env
            // whose episode ended is reset in the same step).
            let steps = envs.step_each(&step_actions)?;
            self.record_step(
                steps,
                &mut rewards[step * num_envs..(step + 1) * num_envs],
                &mut episodic_returns,
            );
        }

        Ok(Rollout {
            obs,
            actions,
            logprobs,
            rewards,
            dones,
            values,
            episodic_returns,
        })
    }

    /// After one step of every env: reward scaling (its running statistics), episode returns,
    /// the next observations and dones, the observation statistics. `rewards` gets the step's
    /// (scaled) rewards in env order.
    fn record_step(
        &mut self,
        steps: Vec<(hyperctl_env_core::Step, Option<Vec<f32>>)>,
        rewards: &mut [f32],
        episodic_returns: &mut Vec<f64>,
    ) {
        let c = &self.config;
        if c.norm_reward {
            for (e, (st, _)) in steps.iter().enumerate() {
                self.discounted_returns[e] = self.discounted_returns[e] * c.gamma + st.reward;
            }
            let batch: Vec<Vec<f32>> = self
                .discounted_returns
                .iter()
                .map(|&r| vec![r as f32])
                .collect();
            self.return_rms.update(&batch);
        }
        let reward_scale = 1.0 / (self.return_rms.var[0] + 1e-8).sqrt();
        for (e, (st, reset_obs)) in steps.into_iter().enumerate() {
            rewards[e] = if c.norm_reward {
                (st.reward * reward_scale).clamp(-10.0, 10.0) as f32
            } else {
                st.reward as f32
            };
            self.running_returns[e] += st.reward;
            let done = st.done();
            if done {
                self.discounted_returns[e] = 0.0;
            }
            self.next_done[e] = if done { 1.0 } else { 0.0 };
            self.next_obs[e] = match reset_obs {
                Some(obs) => {
                    episodic_returns.push(self.running_returns[e]);
                    self.running_returns[e] = 0.0;
                    obs
                }
                None => st.obs,
            };
        }
        if c.norm_obs {
            let batch = self.next_obs.clone();
            self.obs_rms.update(&batch);
        }
    }

    /// A [`RolloutMode::Segments`] rollout: the noise drawn here in lockstep's order, every
    /// env's `num_steps` decisions run by `envs` under the policy frozen now, then the batch
    /// assembled step by step exactly as lockstep's bookkeeping does, the values in one pass.
    fn rollout_segments(
        &mut self,
        envs: &mut dyn SegmentEnv,
        policy: &Agent,
    ) -> Result<Rollout, String> {
        let c = self.config.clone();
        let (num_envs, num_steps, obs_dim, act_dim) =
            (envs.num_envs(), c.num_steps, self.obs_dim, self.act_dim);
        let batch_size = num_envs * num_steps;
        let log2pi = (2.0 * std::f64::consts::PI).ln();
        let frozen = self.policy();
        let noise = SegmentNoise {
            seed: self.rng.random::<u64>(),
            num_steps,
            act_dim,
        };
        let segments = envs.run_segments(&frozen, &self.next_obs, &noise)?;
        if segments.len() != num_envs || segments.iter().any(|s| s.len() != num_steps) {
            return Err(format!(
                "the envs ran segments of {:?} steps, expected {num_envs} of {num_steps}",
                segments.iter().map(Vec::len).collect::<Vec<_>>()
            ));
        }
        // Each step's noise again, from where it sits in its env's episodes.
        let eps: Vec<Vec<f32>> = segments
            .iter()
            .enumerate()
            .map(|(e, segment)| {
                let mut rows: Vec<Option<Vec<f32>>> = Vec::new();
                let mut eps = Vec::with_capacity(num_steps * act_dim);
                for (j, p) in segment_places(segment) {
                    if rows.len() <= j {
                        rows.resize(j + 1, None);
                    }
                    let r = rows[j].get_or_insert_with(|| noise.episode(e, j));
                    eps.extend_from_slice(&r[p * act_dim..(p + 1) * act_dim]);
                }
                eps
            })
            .collect();
        let mut columns: Vec<std::vec::IntoIter<SegmentStep>> =
            segments.into_iter().map(Vec::into_iter).collect();
        let mut obs = vec![0f32; batch_size * obs_dim];
        let mut actions = vec![0f32; batch_size * act_dim];
        let mut logprobs = vec![0f32; batch_size];
        let mut rewards = vec![0f32; batch_size];
        let mut dones = vec![0f32; batch_size];
        let mut episodic_returns = Vec::new();
        let normalize = |o: &[f32]| match &frozen.obs_norm {
            Some(n) => n.normalize(o),
            None => o.to_vec(),
        };
        for step in 0..num_steps {
            self.global_step += num_envs;
            let mut steps = Vec::with_capacity(num_envs);
            for (e, column) in columns.iter_mut().enumerate() {
                let i = step * num_envs + e;
                obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(&normalize(&self.next_obs[e]));
                dones[i] = self.next_done[e];
                let (action, st, reset) = column.next().expect("num_steps steps per env");
                if action.len() != act_dim {
                    return Err(format!("env {e} took an action of {} values", action.len()));
                }
                let mut logp = 0f64;
                for d in 0..act_dim {
                    let z = eps[e][step * act_dim + d] as f64;
                    logp += -0.5 * z * z - frozen.log_std[d] as f64 - 0.5 * log2pi;
                }
                logprobs[i] = logp as f32;
                actions[i * act_dim..(i + 1) * act_dim].copy_from_slice(&action);
                steps.push((st, reset));
            }
            self.record_step(
                steps,
                &mut rewards[step * num_envs..(step + 1) * num_envs],
                &mut episodic_returns,
            );
        }
        // The critic on the whole batch at once (values only enter GAE, not the actions).
        let values = policy
            .get_value(Tensor::from_data(
                TensorData::new(obs.clone(), [batch_size, obs_dim]),
                &self.device,
            ))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data");
        Ok(Rollout {
            obs,
            actions,
            logprobs,
            rewards,
            dones,
            values,
            episodic_returns,
        })
    }

    /// Bootstraps the value of the last observation if its episode is not done, and computes
    /// GAE advantages and returns over the batch.
    fn advantages(&self, policy: &Agent, b: &Rollout) -> (Vec<f32>, Vec<f32>) {
        let c = &self.config;
        let (num_envs, num_steps, obs_dim) = (self.next_obs.len(), c.num_steps, self.obs_dim);
        let normed: Vec<f32> = self
            .next_obs
            .iter()
            .flat_map(|o| self.normalized(o))
            .collect();
        let next_value: Vec<f32> = policy
            .get_value(Tensor::from_data(
                TensorData::new(normed, [num_envs, obs_dim]),
                &self.device,
            ))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data");
        gae(
            &b.rewards,
            &b.values,
            &b.dones,
            &next_value,
            &self.next_done,
            num_steps,
            num_envs,
            c.gamma,
            c.gae_lambda,
        )
    }

    /// `update_epochs` passes of minibatch updates of the clipped PPO objective over the batch
    /// (early stop at `target_kl`); returns the last minibatch's losses and the mean clip fraction.
    fn update(&mut self, b: &Rollout, advantages: &[f32], returns: &[f32], lr_now: f64) -> Update {
        let c = self.config.clone();
        let (obs_dim, act_dim) = (self.obs_dim, self.act_dim);
        let batch_size = b.rewards.len();
        let minibatch_size = (batch_size / c.num_minibatches.max(1)).max(1);
        let log2pi = (2.0 * std::f64::consts::PI).ln();
        let ad = self.device.clone().autodiff();
        let mut b_inds: Vec<usize> = (0..batch_size).collect();
        let (mut v_loss_last, mut pg_loss_last, mut entropy_last, mut approx_kl_last) =
            (0.0, 0.0, 0.0, 0.0);
        let mut clipfracs = Vec::new();
        'epochs: for _ in 0..c.update_epochs {
            use rand::seq::SliceRandom;
            b_inds.shuffle(&mut self.rng);
            for mb_inds in b_inds.chunks(minibatch_size) {
                let m = mb_inds.len();
                let gather = |src: &[f32], width: usize| -> Vec<f32> {
                    mb_inds
                        .iter()
                        .flat_map(|&i| src[i * width..(i + 1) * width].iter().copied())
                        .collect()
                };
                let mut mb_adv = gather(advantages, 1);
                if c.norm_adv && m > 1 {
                    let mean = mb_adv.iter().map(|&a| a as f64).sum::<f64>() / m as f64;
                    let std = (mb_adv
                        .iter()
                        .map(|&a| (a as f64 - mean).powi(2))
                        .sum::<f64>()
                        / (m - 1) as f64)
                        .sqrt();
                    mb_adv
                        .iter_mut()
                        .for_each(|a| *a = ((*a as f64 - mean) / (std + 1e-8)) as f32);
                }
                let t1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [m]), &ad);
                let b_obs = Tensor::<2>::from_data(
                    TensorData::new(gather(&b.obs, obs_dim), [m, obs_dim]),
                    &ad,
                );
                let b_actions = Tensor::<2>::from_data(
                    TensorData::new(gather(&b.actions, act_dim), [m, act_dim]),
                    &ad,
                );
                let (mb_logp_old, mb_returns, mb_values) = (
                    t1(gather(&b.logprobs, 1)),
                    t1(gather(returns, 1)),
                    t1(gather(&b.values, 1)),
                );
                let mb_adv = t1(mb_adv);

                let agent = self
                    .agent
                    .take()
                    .expect("the agent should be present between updates");
                let (mean, logstd) = agent.get_action_mean(b_obs.clone()); // [m, act], [1, act]
                let std = logstd.clone().exp();
                let z = (b_actions - mean) / std.expand([m, act_dim]);
                let newlogprob = (z.square().mul_scalar(-0.5)
                    - logstd.clone().expand([m, act_dim]))
                .sum_dim(1)
                .reshape([m])
                .sub_scalar(0.5 * log2pi * act_dim as f64); // [m]
                let entropy = logstd
                    .sum()
                    .add_scalar((0.5 + 0.5 * log2pi) * act_dim as f64); // [1]
                let logratio = newlogprob - mb_logp_old;
                let ratio = logratio.clone().exp();

                // Policy loss.
                let pg_loss1 = -mb_adv.clone() * ratio.clone();
                let pg_loss2 = -mb_adv * ratio.clone().clamp(1.0 - c.clip_coef, 1.0 + c.clip_coef);
                let pg_loss = pg_loss1.max_pair(pg_loss2).mean();

                // Value loss.
                let newvalue = agent.get_value(b_obs).reshape([m]);
                let v_loss = if c.clip_vloss {
                    let v_loss_unclipped = (newvalue.clone() - mb_returns.clone()).square();
                    let v_clipped =
                        mb_values.clone() + (newvalue - mb_values).clamp(-c.clip_coef, c.clip_coef);
                    let v_loss_clipped = (v_clipped - mb_returns).square();
                    v_loss_unclipped
                        .max_pair(v_loss_clipped)
                        .mean()
                        .mul_scalar(0.5)
                } else {
                    (newvalue - mb_returns).square().mean().mul_scalar(0.5)
                };
                let loss = pg_loss.clone() - entropy.clone().mul_scalar(c.ent_coef)
                    + v_loss.clone().mul_scalar(c.vf_coef);

                // Diagnostics leave the device together: one sync.
                let approx_kl = ((ratio.clone() - 1.0) - logratio).mean();
                let clipfrac = (ratio - 1.0).abs().greater_elem(c.clip_coef).float().mean();
                let diag = Tensor::cat(
                    vec![
                        pg_loss.inner(),
                        v_loss.inner(),
                        entropy.inner(),
                        approx_kl.inner(),
                        clipfrac.inner(),
                    ],
                    0,
                )
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 data");
                (pg_loss_last, v_loss_last, entropy_last, approx_kl_last) = (
                    diag[0] as f64,
                    diag[1] as f64,
                    diag[2] as f64,
                    diag[3] as f64,
                );
                clipfracs.push(diag[4] as f64);

                let mut grads = GradientsParams::from_grads(loss.backward(), &agent);
                clip_global_norm(&agent, &mut grads, c.max_grad_norm);
                self.agent = Some(self.optim.step(lr_now, agent, grads));
            }
            if c.target_kl.is_some_and(|kl| approx_kl_last > kl) {
                break 'epochs;
            }
        }

        Update {
            v_loss: v_loss_last,
            pg_loss: pg_loss_last,
            entropy: entropy_last,
            approx_kl: approx_kl_last,
            clipfrac: clipfracs.iter().sum::<f64>() / clipfracs.len().max(1) as f64,
        }
    }
}

/// One iteration's rollout batch, laid out `[step][env]` (CleanRL's storage).
struct Rollout {
    obs: Vec<f32>,
    actions: Vec<f32>,
    logprobs: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
    values: Vec<f32>,
    episodic_returns: Vec<f64>,
}

/// What the update phase reports.
struct Update {
    v_loss: f64,
    pg_loss: f64,
    entropy: f64,
    approx_kl: f64,
    clipfrac: f64,
}

fn variance(v: &[f32]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch's `clip_grad_norm_`;
/// burn's own clipping is per tensor).
fn clip_global_norm(agent: &Agent, grads: &mut GradientsParams, max_norm: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl burn::module::ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(p.id) {
                self.grads.register::<D>(p.id, g.mul_scalar(self.factor));
            }
        }
    }
    let norm = hyperctl_burn_util::global_grad_norm(agent, grads);
    if norm > max_norm {
        agent.visit(&mut Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
        });
    }
}
