//! Traces hyperctl's inner optimizers, parameter-free step rules and averagers on one tiny task,
//! for `experiments/param-free-crosscheck/crosscheck.py` to replay with the reference PyTorch
//! packages: writes the task's train and validation data, the model's initial weights and, for
//! each method, the train and validation loss after every step.
//!
//! Full-batch steps (the batch is the whole train split), so the minibatch order cannot differ.
//!
//! Usage: `cargo run -p hyperctl-tasks --example rule_trace -- OUT.json [STEPS]`

use hyperctl_tasks::{
    Averaging, DatasetSource, Hyperparams, Method, ModelSpec, OptimizerKind, StepRule, TaskSpec,
    TaskType, Trainer, TrainerConfig,
};

struct Case {
    name: &'static str,
    optimizer: OptimizerKind,
    weight_decay: f64,
    method: Method,
    /// lr and momentum (beta1) at a step.
    hp: fn(usize) -> Hyperparams,
}

fn hp(lr: f64, momentum: f64) -> Hyperparams {
    Hyperparams { lr, momentum }
}

fn rule(rule: StepRule) -> Method {
    Method {
        rule,
        average: None,
        lr_range_test: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).expect("usage: rule_trace OUT.json [STEPS]");
    let steps: usize = args.get(2).map_or(50, |s| s.parse().expect("STEPS"));
    let dog = StepRule::Dog {
        reps_rel: 1e-6,
        layerwise: false,
    };
    let poly = Some(Averaging::PolyDecay { gamma: 8.0 });
    let cases = [
        Case {
            name: "sgd",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.01,
            method: Method::INNER,
            hp: |t| hp(0.3, if t < 25 { 0.9 } else { 0.5 }),
        },
        Case {
            name: "adamw",
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.01,
            method: Method::INNER,
            hp: |t| {
                hp(
                    if t < 25 { 0.01 } else { 0.005 },
                    if t < 25 { 0.9 } else { 0.5 },
                )
            },
        },
        Case {
            name: "dog",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.0,
            method: rule(dog),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "dog-wd",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.01,
            method: rule(dog),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "ldog",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.0,
            method: rule(StepRule::Dog {
                reps_rel: 1e-6,
                layerwise: true,
            }),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "dog+poly8",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.0,
            method: Method {
                rule: dog,
                average: poly,
                lr_range_test: None,
            },
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "sgd+ema0.9",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.0,
            method: Method {
                rule: StepRule::Inner,
                average: Some(Averaging::Ema { decay: 0.9 }),
                lr_range_test: None,
            },
            hp: |_| hp(0.3, 0.9),
        },
        Case {
            name: "schedule-free-sgd",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.001,
            method: rule(StepRule::ScheduleFree {
                beta: 0.9,
                warmup_fraction: 0.1,
                weight_lr_power: 2.0,
            }),
            hp: |_| hp(0.5, 0.0),
        },
        Case {
            name: "schedule-free-adamw",
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.01,
            method: rule(StepRule::ScheduleFree {
                beta: 0.9,
                warmup_fraction: 0.1,
                weight_lr_power: 2.0,
            }),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "prodigy",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.01,
            method: rule(StepRule::Prodigy { d0: 1e-6 }),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "d-adapt",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.0,
            method: rule(StepRule::DAdaptSgd {
                d0: 1e-6,
                momentum: 0.0,
            }),
            hp: |_| hp(0.01, 0.0),
        },
        Case {
            name: "d-adapt-m0.9-wd",
            optimizer: OptimizerKind::Sgd,
            weight_decay: 0.001,
            method: rule(StepRule::DAdaptSgd {
                d0: 1e-6,
                momentum: 0.9,
            }),
            hp: |_| hp(0.01, 0.0),
        },
    ];

    let task = TaskSpec::new(
        DatasetSource::parse("gen:gauss-mix:n=250,d=5,classes=3").expect("source"),
        TaskType::Classification,
        ModelSpec::parse("mlp:8x1:tanh").expect("model"),
        steps,
        1_000_000,
        0,
    );
    let data = task.load().expect("data");
    let split = task.split(&data, task.seed).expect("split");
    let n_train = split.train.n_rows();
    let mut runs = serde_json::Map::new();
    let mut params = serde_json::Value::Null;
    for case in &cases {
        let config = TrainerConfig {
            weight_decay: case.weight_decay,
            optimizer: case.optimizer,
            steps_per_decision: Some(1),
            ..TrainerConfig::new(task.model, n_train, task.seed)
        };
        let mut trainer = Trainer::new(&split, &config).expect("trainer");
        if params.is_null() {
            params = trainer
                .named_parameters()
                .into_iter()
                .map(|(name, shape, values)| {
                    serde_json::json!({"name": name, "shape": shape, "values": values})
                })
                .collect();
        }
        trainer.set_method(case.method, steps).expect("method");
        let (mut train, mut val, mut lrs, mut momenta) = (vec![], vec![], vec![], vec![]);
        for t in 0..steps {
            let hp = (case.hp)(t);
            let stats = trainer.run_epoch(hp).expect("step");
            train.push(stats.train_loss_mean);
            val.push(stats.val_loss);
            lrs.push(hp.lr);
            momenta.push(hp.momentum);
        }
        runs.insert(
            case.name.into(),
            serde_json::json!({
                "optimizer": case.optimizer,
                "weight_decay": case.weight_decay,
                "method": case.method,
                "lr": lrs,
                "momentum": momenta,
                "train_loss": train,
                "val_loss": val,
            }),
        );
    }
    let table = |t: &hyperctl_tasks::data::Table| serde_json::json!({"x": t.x, "y": t.y, "rows": t.n_rows()});
    let doc = serde_json::json!({
        "task": task,
        "steps": steps,
        "n_features": split.n_features,
        "n_classes": split.n_classes,
        "train": table(&split.train),
        "val": table(&split.val),
        "params": params,
        "runs": runs,
    });
    std::fs::write(out, serde_json::to_vec(&doc).expect("json")).expect("write");
    eprintln!("wrote {out}: {} methods × {steps} steps", cases.len());
}
