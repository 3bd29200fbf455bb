//! PPO learns: GAE against a hand-computed case, and near-optimal return on an env whose optimum
//! is known, independent of DNN training.

use burn::tensor::Device;
use hyperctl_env_core::{BoxSpace, Env, Info, Obs, Step};
use hyperctl_ppo::{Ppo, PpoConfig, gae};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn gae_matches_a_hand_computed_case() {
    // One env, 3 steps, γ = 0.5, λ = 0.5; the episode ends after step 1 (dones[2] = 1).
    let rewards = [1.0, 2.0, 3.0];
    let values = [0.5, 1.0, 2.0];
    let dones = [0.0, 0.0, 1.0];
    let (adv, ret) = gae(&rewards, &values, &dones, &[4.0], &[0.0], 3, 1, 0.5, 0.5);
    // t=2: δ = 3 + 0.5·4 − 2 = 3; A2 = 3.
    // t=1: next is a new episode: δ = 2 − 1 = 1; A1 = 1.
    // t=0: δ = 1 + 0.5·1 − 0.5 = 1; A0 = 1 + 0.25·1 = 1.25.
    assert_eq!(adv, vec![1.25, 1.0, 3.0]);
    assert_eq!(ret, vec![1.75, 2.0, 5.0]);
}

/// A contextual bandit: obs x ~ U[-1, 1]², reward −‖a − x/2‖², one step per episode. The best
/// return is 0; the initial policy (σ = 1, actions clipped to [−1, 1] by the env) gets about −1.1.
struct Bandit {
    rng: ChaCha8Rng,
    x: Vec<f32>,
    obs_space: BoxSpace,
    act_space: BoxSpace,
}

impl Bandit {
    fn new() -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(0),
            x: vec![0.0; 2],
            obs_space: BoxSpace::uniform(2, -1.0, 1.0).unwrap(),
            act_space: BoxSpace::uniform(2, -1.0, 1.0).unwrap(),
        }
    }
    fn draw(&mut self) -> Obs {
        self.x = (0..2)
            .map(|_| self.rng.random_range(-1.0f32..1.0))
            .collect();
        self.x.clone()
    }
}

impl Env for Bandit {
    fn observation_space(&self) -> &BoxSpace {
        &self.obs_space
    }
    fn action_space(&self) -> &BoxSpace {
        &self.act_space
    }
    fn reset(&mut self, seed: Option<u64>) -> (Obs, Info) {
        if let Some(s) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(s);
        }
        (self.draw(), Info::new())
    }
    fn step(&mut self, action: &[f32]) -> Step {
        let a = self.act_space.clip(action);
        let reward = -a
            .iter()
            .zip(&self.x)
            .map(|(a, x)| ((a - x / 2.0) as f64).powi(2))
            .sum::<f64>();
        Step {
            obs: self.x.clone(),
            reward,
            terminated: true,
            truncated: false,
            info: Info::new(),
        }
    }
}

fn config() -> PpoConfig {
    PpoConfig {
        seed: 3,
        total_timesteps: 40 * 4 * 128,
        learning_rate: 3e-3,
        num_steps: 128,
        num_minibatches: 4,
        update_epochs: 4,
        parallel_envs: false,
        ..PpoConfig::cleanrl()
    }
}

fn train(config: PpoConfig) -> (Ppo, Vec<f64>) {
    let mut envs: Vec<Bandit> = (0..4).map(|_| Bandit::new()).collect();
    let mut ppo = Ppo::new(config, &mut envs, &Device::flex());
    let mut curve = Vec::new();
    for _ in 0..ppo.num_iterations(envs.len()) {
        let m = ppo.iterate(&mut envs);
        curve.push(m.episodic_returns.iter().sum::<f64>() / m.episodic_returns.len() as f64);
    }
    (ppo, curve)
}

#[test]
fn ppo_reaches_near_optimal_return_on_a_bandit_with_a_known_optimum() {
    let (ppo, curve) = train(config());
    eprintln!(
        "curve: {:?}",
        curve
            .iter()
            .map(|v| (v * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    let first = curve[0];
    let last = curve.last().copied().unwrap();
    assert!(first < -1.0, "a fresh policy should be poor: {first}");
    assert!(
        last > -0.3,
        "the stochastic policy should approach 0: {curve:?}"
    );
    // The deterministic policy (mean action) is near the optimum a = x/2.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut regret = 0.0;
    for _ in 0..200 {
        let x: Vec<f32> = (0..2).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let a = ppo.act_deterministic(&x);
        regret += a
            .iter()
            .zip(&x)
            .map(|(a, x)| ((a - x / 2.0) as f64).powi(2))
            .sum::<f64>()
            / 200.0;
    }
    eprintln!("regret {regret}");
    assert!(regret < 0.02, "deterministic policy regret {regret}");
}

#[test]
fn same_seed_gives_the_same_learning_curve_serial_or_parallel() {
    let small = PpoConfig {
        total_timesteps: 3 * 4 * 128,
        ..config()
    };
    let (_, serial) = train(small.clone());
    let (_, parallel) = train(PpoConfig {
        parallel_envs: true,
        ..small
    });
    assert_eq!(serial, parallel);
}
