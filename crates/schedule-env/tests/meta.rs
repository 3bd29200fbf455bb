//! Meta-training plumbing: a task-cycling env, and PPO running on real schedule environments.

use burn::tensor::Device;
use hyperctl_env_core::{Env, Resumable};
use hyperctl_ppo::{Ppo, PpoConfig};
use hyperctl_schedule_env::{EnvConfig, TaskCycleEnv};
use hyperctl_tasks::{Backend, DatasetSource, ModelSpec, TaskSpec, TaskType};

fn tiny_tasks() -> Vec<TaskSpec> {
    ["gen:gauss-mix:n=120,d=3", "gen:teacher-reg:n=120,d=3"]
        .iter()
        .zip([TaskType::Classification, TaskType::Regression])
        .map(|(src, tt)| {
            let mut t = TaskSpec::new(
                DatasetSource::parse(src).unwrap(),
                tt,
                ModelSpec::parse("mlp:8x1").unwrap(),
                3,
                16,
                0,
            );
            t.id = src.to_string();
            t
        })
        .collect()
}

#[test]
fn resets_cycle_through_every_task_in_a_seeded_order() {
    let mut env = TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let mut seen = Vec::new();
    let (obs, info) = env.reset(Some(5));
    assert!(env.observation_space().contains(&obs));
    seen.push(info["task_index"] as usize);
    for _ in 0..3 {
        seen.push(env.reset(None).1["task_index"] as usize);
    }
    // Each pass visits both tasks once.
    assert_ne!(seen[0], seen[1]);
    assert_ne!(seen[2], seen[3]);
    let mut again = TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let replay: Vec<usize> = std::iter::once(again.reset(Some(5)).1["task_index"] as usize)
        .chain((0..3).map(|_| again.reset(None).1["task_index"] as usize))
        .collect();
    assert_eq!(seen, replay, "the order should depend only on the seed");
    assert!(TaskCycleEnv::new(vec![], EnvConfig::defaults(), Backend::Flex).is_err());
}

#[test]
fn an_episodes_successor_is_known_before_it_ends_whatever_happens_in_it() {
    use hyperctl_schedule_env::Handoff;
    // Two envs from the same state: one diverges at once (lr at its maximum), one runs its
    // budget; both leave the handoff `successor()` predicted at the episode's start.
    for (i, action) in [[1.0f32, 0.0], [-0.3, 0.2]].into_iter().enumerate() {
        let mut env =
            TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap();
        env.reset(Some(3 + i as u64));
        let mut expected: Handoff = env.episode_start().unwrap().successor();
        for _ in 0..5 {
            let mut steps = 0;
            loop {
                steps += 1;
                if env.step(&action).done() {
                    break;
                }
            }
            assert!(steps <= 3, "an episode is at most its budget (3 epochs)");
            assert_eq!(env.handoff(), expected, "env {i}");
            env.reset(None);
            assert_eq!(env.episode_start().unwrap(), expected);
            expected = expected.successor();
        }
        let seeded = Handoff::seeded(2, 3 + i as u64);
        assert_eq!(
            seeded.next_task(),
            TaskCycleEnv::start_from(
                std::sync::Arc::new(
                    hyperctl_schedule_env::TaskPool::new(
                        tiny_tasks(),
                        EnvConfig::defaults(),
                        Backend::Flex
                    )
                    .unwrap()
                ),
                seeded.clone()
            )
            .unwrap()
            .0
            .episode_start()
            .unwrap()
            .next_task()
        );
    }
}

#[test]
fn a_restored_snapshot_continues_exactly_like_the_original() {
    let mut env = TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap();
    env.reset(Some(9));
    // Finish one episode and go two steps into the next, so the snapshot is mid-episode.
    let actions = [
        [0.5f32, -0.2],
        [-1.0, 1.0],
        [0.1, 0.3],
        [0.9, -0.9],
        [0.0, 0.0],
    ];
    for a in &actions[..3] {
        if env.step(a).done() {
            env.reset(None);
        }
    }
    let last = env.step(&actions[3]).obs;
    let snap = env.snapshot();
    let json = serde_json::to_string(&snap).unwrap();

    let mut fresh = TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let obs = fresh.restore(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(obs, last);
    let (a, b) = (env.step(&actions[4]), fresh.step(&actions[4]));
    assert_eq!(
        (a.obs, a.reward, a.terminated, a.truncated),
        (b.obs, b.reward, b.terminated, b.truncated)
    );
    // Later episodes follow the same task order too.
    assert_eq!(
        env.reset(None).1["task_index"],
        fresh.reset(None).1["task_index"]
    );

    // Another task list refuses the snapshot with a reason.
    let mut other = TaskCycleEnv::new(
        tiny_tasks()[..1].to_vec(),
        EnvConfig::defaults(),
        Backend::Flex,
    )
    .unwrap();
    let err = other
        .restore(serde_json::from_str(&json).unwrap())
        .unwrap_err();
    assert!(err.contains("not the same task list"), "{err}");
}

#[test]
fn ppo_runs_on_schedule_environments() {
    let mut envs: Vec<TaskCycleEnv> = (0..2)
        .map(|_| TaskCycleEnv::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex).unwrap())
        .collect();
    let config = PpoConfig {
        num_steps: 6,
        num_minibatches: 2,
        update_epochs: 2,
        total_timesteps: 24,
        ..PpoConfig::cleanrl()
    };
    let mut ppo = Ppo::new(config, &mut envs, &Device::flex());
    let mut returns = Vec::new();
    for _ in 0..ppo.num_iterations(envs.len()) {
        let m = ppo.iterate(&mut envs);
        assert!(m.value_loss.is_finite() && m.approx_kl.is_finite(), "{m:?}");
        returns.extend(m.episodic_returns);
    }
    // 3-epoch episodes over 2 envs × 12 steps: 8 finished episodes, each return finite.
    assert_eq!(returns.len(), 8);
    assert!(
        returns.iter().all(|r| r.is_finite() && *r >= -10.0),
        "{returns:?}"
    );
    let action = ppo.policy().act(&[0.0; hyperctl_schedule_env::N_FEATURES]);
    assert_eq!(action.len(), 2);
}

#[test]
fn episode_starts_draw_a_start_per_episode_from_its_seed_alone() {
    use hyperctl_schedule_env::{EpisodeStarts, FEATURES, TaskPool};
    use std::sync::Arc;
    let lr_feature = FEATURES
        .iter()
        .position(|f| f.0 == "log10_lr")
        .expect("the lr feature");
    let starts = EpisodeStarts {
        lr: [1e-3, 0.5],
        momentum: vec![0.0, 0.9],
    };
    let pool = |starts: Option<EpisodeStarts>| {
        Arc::new(
            TaskPool::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex)
                .unwrap()
                .with_starts(starts)
                .unwrap(),
        )
    };
    let first_lrs = |pool: Arc<TaskPool>| -> Vec<f32> {
        let mut env = TaskCycleEnv::from_pool(pool);
        let mut lrs = vec![env.reset(Some(11)).0[lr_feature]];
        lrs.extend((0..7).map(|_| env.reset(None).0[lr_feature]));
        lrs
    };
    let drawn = first_lrs(pool(Some(starts.clone())));
    let own = first_lrs(pool(None));
    // Without starts every episode begins at the tasks' own init (0.01); with them, each episode
    // draws its own, inside the range, and the same seed gives the same draws.
    assert!(own.iter().all(|&l| (l - (-2.0)).abs() < 1e-6), "{own:?}");
    assert!(
        drawn
            .iter()
            .all(|&l| (1e-3f32.log10() - 1e-6..=0.5f32.log10() + 1e-6).contains(&l)),
        "{drawn:?}"
    );
    let mut distinct = drawn.clone();
    distinct.sort_by(f32::total_cmp);
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        drawn.len(),
        "a new start per episode: {drawn:?}"
    );
    assert_eq!(drawn, first_lrs(pool(Some(starts.clone()))));
    // An episode started elsewhere from a handoff (a worker) starts where a reset would.
    let mut env = TaskCycleEnv::from_pool(pool(Some(starts.clone())));
    env.reset(Some(11));
    let handoff = env.handoff();
    let here = env.reset(None).0;
    let (_, there) = TaskCycleEnv::start_from(pool(Some(starts.clone())), handoff).unwrap();
    assert_eq!(here, there);
    // Momenta come from the list; a bad range is refused with its field.
    let hp = starts.draw(5);
    assert!(starts.momentum.contains(&hp.momentum));
    let err = TaskPool::new(tiny_tasks(), EnvConfig::defaults(), Backend::Flex)
        .unwrap()
        .with_starts(Some(EpisodeStarts {
            lr: [1e-7, 1.0],
            momentum: vec![0.9],
        }))
        .err()
        .expect("a start below lr_min is refused")
        .to_string();
    assert!(err.contains("episode_starts.lr"), "{err}");
}
