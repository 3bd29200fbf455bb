//! Inner-training throughput: steps/s of the Trainer on an MLP 784-128-10, batch 64, on random
//! MNIST-shaped data (784 features, 10 classes), with everything a real run does each step
//! (minibatch gather, forward, backward, per-step loss and global + per-layer gradient norms read
//! back to the host, SGD-momentum update).
//!
//! Run (1 thread, as recorded in experiments/bench/README.md):
//! `RAYON_NUM_THREADS=1 cargo run --release -p hyperctl-tasks --example bench_train -- [STEPS] [REPEATS]`
//! Prints one JSON object.

use hyperctl_tasks::data::{SplitData, Standardization, Table, TaskType};
use hyperctl_tasks::{Hyperparams, ModelSpec, Trainer, TrainerConfig};
use rand::{RngExt, SeedableRng};

fn random_table(n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Table {
    Table {
        x: (0..n * 784)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect(),
        y: (0..n).map(|_| rng.random_range(0..10) as f32).collect(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let steps: usize = args
        .next()
        .map(|s| s.parse().expect("STEPS should be a number"))
        .unwrap_or(2000);
    let repeats: usize = args
        .next()
        .map(|s| s.parse().expect("REPEATS should be a number"))
        .unwrap_or(3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let data = SplitData {
        task_type: TaskType::Classification,
        n_features: 784,
        n_classes: 10,
        image_shape: None,
        train: random_table(12_800, &mut rng),
        val: random_table(64, &mut rng),
        test: random_table(64, &mut rng),
        standardization: Standardization {
            x_mean: vec![0.0],
            x_std: vec![1.0],
            y_mean_std: (0.0, 1.0),
        },
    };
    let config = TrainerConfig {
        steps_per_decision: Some(steps),
        ..TrainerConfig::new(ModelSpec::parse("mlp:128x1").expect("valid spec"), 64, 0)
    };
    let mut trainer = Trainer::new(&data, &config).expect("the benchmark task should build");
    let hp = Hyperparams {
        lr: 0.01,
        momentum: 0.9,
    };
    // Warm-up: allocator pools, first-touch pages.
    let warm = TrainerConfig {
        steps_per_decision: Some(200),
        ..config.clone()
    };
    Trainer::new(&data, &warm)
        .expect("builds")
        .run_epoch(hp)
        .expect("runs");
    let mut rates = Vec::new();
    for _ in 0..repeats {
        let stats = trainer
            .run_epoch(hp)
            .expect("the benchmark interval should run");
        assert!(!stats.diverged, "the benchmark run should not diverge");
        rates.push(stats.steps as f64 / stats.wall_secs);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "trainer_mlp_784_128_10_b64",
            "steps_per_repeat": steps,
            "repeats": repeats,
            "steps_per_s_median": rates[rates.len() / 2],
            "steps_per_s_all": rates,
            "threads_env": std::env::var("RAYON_NUM_THREADS").ok(),
            "backend": "flex",
            "version": env!("CARGO_PKG_VERSION"),
        })
    );
}
