//! Inner-training throughput: steps/s of the Trainer on the benchmark cases of
//! experiments/bench/README.md, on random data of the case's shape, with everything a real run
//! does each step (minibatch gather, forward, backward, per-step loss and global + per-layer
//! gradient norms read back to the host, SGD-momentum update).
//!
//! Cases (the same in `experiments/bench/torch_bench.py`):
//! - `mlp`: MLP 784-128-10, batch 64 (MNIST shape)
//! - `tabular`: MLP 30-64-64-2, batch 32
//! - `cnn`: the small CNN (`cnn:small`) on 1×28×28 images, 10 classes, batch 64
//!
//! Run (1 thread, as recorded in experiments/bench/README.md):
//! `RAYON_NUM_THREADS=1 cargo run --release -p hyperctl-tasks --example bench_train -- CASE [STEPS] [REPEATS]`
//! Prints one JSON object.

/// The allocator the `hyperctl` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hyperctl_tasks::data::{SplitData, Standardization, Table, TaskType};
use hyperctl_tasks::{Hyperparams, ModelSpec, Trainer, TrainerConfig};
use rand::{RngExt, SeedableRng};

/// One benchmark case: the model, the data's shape and the batch size.
struct Case {
    name: &'static str,
    model: &'static str,
    n_features: usize,
    n_classes: usize,
    image_shape: Option<[usize; 3]>,
    batch: usize,
}

const CASES: [Case; 3] = [
    Case {
        name: "mlp",
        model: "mlp:128x1",
        n_features: 784,
        n_classes: 10,
        image_shape: None,
        batch: 64,
    },
    Case {
        name: "tabular",
        model: "mlp:64x2",
        n_features: 30,
        n_classes: 2,
        image_shape: None,
        batch: 32,
    },
    Case {
        name: "cnn",
        model: "cnn:small",
        n_features: 784,
        n_classes: 10,
        image_shape: Some([1, 28, 28]),
        batch: 64,
    },
];

fn random_table(n: usize, case: &Case, rng: &mut rand_chacha::ChaCha8Rng) -> Table {
    Table {
        x: (0..n * case.n_features)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect(),
        y: (0..n)
            .map(|_| rng.random_range(0..case.n_classes) as f32)
            .collect(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_train CASE [STEPS] [REPEATS] (CASE: mlp, tabular or cnn)";
    let name = args.next().expect(usage);
    let case = CASES.iter().find(|c| c.name == name).expect(usage);
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
        n_features: case.n_features,
        n_classes: case.n_classes,
        image_shape: case.image_shape,
        train: random_table(12_800, case, &mut rng),
        val: random_table(64, case, &mut rng),
        test: random_table(64, case, &mut rng),
        standardization: Standardization {
            x_mean: vec![0.0],
            x_std: vec![1.0],
            y_mean_std: (0.0, 1.0),
        },
    };
    let config = TrainerConfig {
        steps_per_decision: Some(steps),
        ..TrainerConfig::new(
            ModelSpec::parse(case.model).expect("valid spec"),
            case.batch,
            0,
        )
    };
    let mut trainer = Trainer::new(&data, &config).expect("the benchmark task should build");
    let hp = Hyperparams {
        lr: 0.01,
        momentum: 0.9,
    };
    // Warm-up: allocator pools, first-touch pages.
    let warm = TrainerConfig {
        steps_per_decision: Some((steps / 10).max(1)),
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
            "benchmark": format!("trainer_{}", case.name),
            "case": case.name,
            "model": case.model,
            "batch": case.batch,
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
