//! PPO learns: GAE against a hand-computed case, and near-optimal return on an env whose optimum
//! is known, independent of DNN training.

use burn::tensor::Device;
use hyperctl_env_core::{BoxSpace, Env, Info, Obs, Resumable, Step};
use hyperctl_ppo::{CheckpointError, Ppo, PpoConfig, decode, encode, gae};
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

impl Resumable for Bandit {
    type Snapshot = (ChaCha8Rng, Vec<f32>);
    fn snapshot(&self) -> Self::Snapshot {
        (self.rng.clone(), self.x.clone())
    }
    fn restore(&mut self, (rng, x): Self::Snapshot) -> Result<Obs, String> {
        self.rng = rng;
        self.x = x;
        Ok(self.x.clone())
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
    let policy = ppo.policy();
    policy.validate().unwrap();
    for _ in 0..200 {
        let x: Vec<f32> = (0..2).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let a = policy.act(&x);
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

fn checkpoint_after(config: &PpoConfig, k: usize) -> Vec<u8> {
    let mut envs: Vec<Bandit> = (0..4).map(|_| Bandit::new()).collect();
    let mut ppo = Ppo::new(config.clone(), &mut envs, &Device::flex());
    for _ in 0..k {
        ppo.iterate(&mut envs);
    }
    encode(&ppo.checkpoint_sections(&envs).unwrap())
}

#[test]
fn stopping_after_k_iterations_and_resuming_gives_the_identical_policy() {
    let config = PpoConfig {
        total_timesteps: 5 * 4 * 128,
        ..config()
    };
    let (uninterrupted, curve) = train(config.clone());
    let bytes = checkpoint_after(&config, 2);
    // A new process: fresh envs, everything else from the file.
    let mut envs: Vec<Bandit> = (0..4).map(|_| Bandit::new()).collect();
    let mut ppo = Ppo::resume(
        &config,
        &decode(&bytes).unwrap(),
        &mut envs,
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(ppo.iteration, 2);
    let mut rest = Vec::new();
    while ppo.iteration < ppo.num_iterations(envs.len()) {
        let m = ppo.iterate(&mut envs);
        rest.push(m.episodic_returns.iter().sum::<f64>() / m.episodic_returns.len() as f64);
    }
    assert_eq!(rest, curve[2..]);
    assert_eq!(ppo.policy(), uninterrupted.policy());
    assert_eq!(ppo.obs_rms, uninterrupted.obs_rms);
}

#[test]
fn damaged_or_foreign_checkpoints_are_rejected_with_a_reason() {
    let config = PpoConfig {
        total_timesteps: 2 * 4 * 128,
        ..config()
    };
    let bytes = checkpoint_after(&config, 1);
    for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
        let err = decode(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::Truncated(_) | CheckpointError::NotACheckpoint
            ),
            "cut at {cut}: {err}"
        );
        assert!(!err.to_string().is_empty());
    }
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(matches!(decode(&flipped), Err(CheckpointError::Checksum)));

    let sections = decode(&bytes).unwrap();
    let mut envs: Vec<Bandit> = (0..4).map(|_| Bandit::new()).collect();
    let other = PpoConfig {
        learning_rate: 1e-3,
        ..config.clone()
    };
    let err = Ppo::resume(&other, &sections, &mut envs, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("learning_rate"), "{err}");
    let mut three: Vec<Bandit> = (0..3).map(|_| Bandit::new()).collect();
    let err = Ppo::resume(&config, &sections, &mut three, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("4 environments"), "{err}");
    let mut missing = sections.clone();
    missing.remove("optim.bpk");
    let err = Ppo::resume(&config, &missing, &mut envs, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("optim.bpk"), "{err}");
}

#[test]
fn segment_rollouts_learn_the_bandit_too_and_do_not_depend_on_threads() {
    use hyperctl_ppo::RolloutMode;
    let segments = PpoConfig {
        rollout: RolloutMode::Segments,
        ..config()
    };
    let (ppo, curve) = train(segments.clone());
    let last = curve.last().copied().unwrap();
    assert!(curve[0] < -1.0 && last > -0.3, "{curve:?}");
    let policy = ppo.policy();
    let x = [0.6f32, -0.4];
    let a = policy.act(&x);
    assert!(
        (a[0] - 0.3).abs() < 0.15 && (a[1] + 0.2).abs() < 0.15,
        "mean action {a:?} for {x:?}"
    );
    let small = PpoConfig {
        total_timesteps: 3 * 4 * 128,
        ..segments
    };
    let (_, serial) = train(small.clone());
    let (_, parallel) = train(PpoConfig {
        parallel_envs: true,
        ..small.clone()
    });
    assert_eq!(serial, parallel);
    let (_, lockstep) = train(PpoConfig {
        rollout: RolloutMode::Lockstep,
        ..small
    });
    assert_ne!(serial, lockstep, "segments act on a frozen normalizer");
}
