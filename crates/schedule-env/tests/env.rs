//! End-to-end tests of the schedule environment on tiny generated tasks.

use hyperctl_env_core::Env;
use hyperctl_schedule_env::{
    Controller, Decision, DecisionInput, EnvConfig, EpisodeContext, ScheduleEnv, run_schedule,
};
use hyperctl_tasks::{Backend, DatasetSource, Hyperparams, ModelSpec, TaskSpec, TaskType};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn task(source: &str, task_type: TaskType, model: &str, epochs: usize) -> TaskSpec {
    TaskSpec::new(
        DatasetSource::parse(source).unwrap(),
        task_type,
        ModelSpec::parse(model).unwrap(),
        epochs,
        16,
        0,
    )
}

fn env(task: TaskSpec) -> ScheduleEnv {
    ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap()
}

struct Fixed(Hyperparams);

impl Controller for Fixed {
    fn spec(&self) -> String {
        format!("constant:lr={},momentum={}", self.0.lr, self.0.momentum)
    }
    fn reset(&mut self, _: &EpisodeContext) {}
    fn decide(&mut self, _: &DecisionInput) -> Decision {
        Decision::Set(self.0)
    }
}

#[test]
fn diverged_episode_terminates_with_exactly_the_crash_penalty() {
    let mut env = env(task(
        "gen:teacher-reg:n=200,d=4",
        TaskType::Regression,
        "mlp:16x1",
        5,
    ));
    // lr is clamped to lr_max = 10 by the env; 1e6 as asked and 10 both blow up this task.
    let mut fixed = Fixed(Hyperparams {
        lr: 1e6,
        momentum: 0.9,
    });
    let result = run_schedule(&mut env, &mut fixed, 0, |_| {});
    assert!(result.diverged);
    assert!(result.intervals.len() < 5);
    assert!(
        (result.episode_return + EnvConfig::defaults().crash_penalty).abs() < 1e-9,
        "{}",
        result.episode_return
    );
    assert!(result.test.loss.is_nan());

    // Through the raw Env API: raising a large starting lr terminates with the penalty too.
    let mut t = task(
        "gen:teacher-reg:n=200,d=4",
        TaskType::Regression,
        "mlp:16x1",
        20,
    );
    t.init = Hyperparams {
        lr: 2.0,
        momentum: 0.9,
    };
    let mut env = self::env(t);
    let (_, _) = env.reset(Some(1));
    let mut total = 0.0;
    loop {
        let step = env.step(&[1.0, 1.0]);
        total += step.reward;
        assert!(env.observation_space().contains(&step.obs));
        if step.done() {
            assert!(step.terminated && !step.truncated);
            break;
        }
    }
    assert!((total + 10.0).abs() < 1e-9, "{total}");
}

#[test]
fn return_is_log_ratio_of_initial_to_final_validation_loss() {
    let mut env = env(task(
        "gen:gauss-mix:n=300,d=4",
        TaskType::Classification,
        "mlp:16x1",
        4,
    ));
    let mut fixed = Fixed(Hyperparams {
        lr: 0.05,
        momentum: 0.9,
    });
    let result = run_schedule(&mut env, &mut fixed, 3, |_| {});
    assert!(!result.diverged);
    assert_eq!(result.intervals.len(), 4);
    let last = result.intervals.last().unwrap().stats.val_loss;
    let expected = (result.initial_val.loss / last).ln();
    assert!((result.episode_return - expected).abs() < 1e-9);
    assert!(result.episode_return > 0.0, "loss should fall: {result:?}");
    assert!(result.test.loss.is_finite());
}

#[test]
fn observations_stay_in_bounds_under_random_actions() {
    let tasks = [
        task(
            "gen:spirals:n=200,d=3",
            TaskType::Classification,
            "mlp:8x2:tanh",
            6,
        ),
        task(
            "gen:teacher-reg:n=200,d=3",
            TaskType::Regression,
            "mlp:8x1",
            6,
        ),
        task(
            "gen:shapes:n=120,side=10,classes=2",
            TaskType::Classification,
            "cnn:small",
            3,
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for t in tasks {
        let mut env = env(t);
        for episode in 0..3 {
            let (obs, _) = env.reset(Some(episode));
            assert!(env.observation_space().contains(&obs), "{obs:?}");
            loop {
                let action: Vec<f32> = if rng.random::<f32>() < 0.2 {
                    vec![3.0 * (rng.random::<f32>() - 0.5), f32::NAN]
                } else {
                    vec![rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0)]
                };
                let step = env.step(&action);
                assert!(
                    env.observation_space().contains(&step.obs),
                    "{:?}",
                    step.obs
                );
                assert!(step.reward.is_finite());
                let hp = env.current_hparams();
                assert!((1e-5..=10.0).contains(&hp.lr) && (0.0..=0.99).contains(&hp.momentum));
                if step.done() {
                    break;
                }
            }
        }
    }
}

#[test]
fn same_task_seed_and_actions_give_bit_identical_observations_and_rewards() {
    let run = || {
        let mut env = env(task(
            "gen:teacher-cls:n=300,d=5",
            TaskType::Classification,
            "mlp:16x2",
            4,
        ));
        let mut trace = Vec::new();
        let (obs, _) = env.reset(Some(42));
        trace.push((obs, 0.0));
        for a in [[0.5f32, -0.2], [1.0, 1.0], [-0.3, 0.0], [0.0, -1.0]] {
            let step = env.step(&a);
            trace.push((step.obs, step.reward));
        }
        trace
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), b.len());
    for ((oa, ra), (ob, rb)) in a.iter().zip(&b) {
        assert_eq!(ra.to_bits(), rb.to_bits());
        assert!(oa.iter().zip(ob).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn budget_truncates_the_episode() {
    let mut env = env(task(
        "gen:gauss-mix:n=100,d=2",
        TaskType::Classification,
        "linear",
        2,
    ));
    env.reset(Some(0));
    let first = env.step(&[0.0, 0.0]);
    assert!(!first.done());
    let second = env.step(&[0.0, 0.0]);
    assert!(second.truncated && !second.terminated);
    assert!(
        (second.obs[12] - 1.0).abs() < 1e-6,
        "progress should reach 1"
    );
}

#[test]
fn shipped_env_defaults_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envs/schedule_env.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let from_file: EnvConfig = toml::from_str(&text).unwrap();
    assert_eq!(from_file, EnvConfig::defaults());
}

#[test]
fn bad_tasks_are_errors_at_construction() {
    let err = ScheduleEnv::new(
        task(
            "gen:gauss-mix:n=100,d=2",
            TaskType::Classification,
            "cnn:small",
            2,
        ),
        EnvConfig::defaults(),
        Backend::Flex,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("needs image data"), "{err}");
    let bad = EnvConfig {
        lr_min: 0.0,
        ..EnvConfig::defaults()
    };
    let err = ScheduleEnv::new(
        task(
            "gen:gauss-mix:n=100,d=2",
            TaskType::Classification,
            "linear",
            2,
        ),
        bad,
        Backend::Flex,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("lr_min"), "{err}");
}
