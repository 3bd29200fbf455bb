//! `hyperctl train`: one task under one controller, one line (or JSON object) per epoch.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use hyperctl_schedule_env::{
    EnvConfig, EpisodeResult, IntervalRecord, Rollback, ScheduleEnv, run_schedule_with,
};
use hyperctl_tasks::{Backend, DatasetSource, Hyperparams, ModelSpec, TaskSpec, TaskType};
use serde_json::json;

use crate::output::{RunMeta, write_atomic};

/// Arguments of `hyperctl train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// The controller SPEC, e.g. `constant:lr=0.1,momentum=0.9`.
    #[arg(long)]
    controller: String,
    /// Environment config (TOML, see envs/schedule_env.toml); default: the settings a `policy:DIR`
    /// controller was trained under, else envs/schedule_env.toml's.
    #[arg(long)]
    env_config: Option<PathBuf>,
    /// Print one JSON object per epoch, then a final object with the test loss and metric.
    #[arg(long)]
    json: bool,
    /// When an epoch diverges, or its validation loss exceeds --blowup-factor × the run's best so
    /// far, go back to the last good weights, multiply that epoch's learning rate by
    /// --rollback-factor and continue (at most --max-rollbacks times).
    #[arg(long)]
    rollback: bool,
    /// Learning-rate factor applied at each rollback, in (0, 1).
    #[arg(long, default_value_t = 0.5, requires = "rollback")]
    rollback_factor: f64,
    /// Most rollbacks in one run; the next divergence ends it.
    #[arg(long, default_value_t = 5, requires = "rollback")]
    max_rollbacks: usize,
    /// Validation loss above this × the run's best so far counts as a blow-up to roll back
    /// (> 1; `inf` rolls back divergences only).
    #[arg(long, default_value_t = 4.0, requires = "rollback")]
    blowup_factor: f64,
    /// Write trace.jsonl, result.json and trace.svg into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The flags that define one training run (TASK in INTERFACE.md): `COLLECTION#TASK_ID`, or the
/// inline --dataset ... flags. Shared by `train` and `sweep`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// A task from a collection, `COLLECTION#TASK_ID` (instead of the inline --dataset ... flags).
    pub task: Option<String>,
    /// Data root for the collection's relative paths (default: $HYPERCTL_DATA, else its folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Dataset source: `csv:PATH` (.csv/.csv.gz, last column the target), `idx:DIR` (MNIST format)
    /// or `gen:FAMILY[:k=v,...]` (gauss-mix, teacher-cls, spirals, teacher-reg, shapes).
    #[arg(long, required_unless_present = "task", conflicts_with = "task", value_parser = DatasetSource::parse)]
    dataset: Option<DatasetSource>,
    /// `classification` or `regression` (generated and IDX sources imply it).
    #[arg(long, value_parser = parse_task_type)]
    task_type: Option<TaskType>,
    /// Model: `mlp:WIDTHxDEPTH[:relu|tanh|gelu]`, `linear` or `cnn:small` [default: mlp:64x2].
    #[arg(long, value_parser = ModelSpec::parse)]
    model: Option<ModelSpec>,
    /// Budget in epochs (decision intervals) [default: 20].
    #[arg(long)]
    epochs: Option<usize>,
    /// Minibatch size [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed of the split, initialisation and shuffling [default: 0; with TASK, the task's seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Learning rate training starts from, what controllers leaving `lr` out use [default: 0.01].
    #[arg(long)]
    init_lr: Option<f64>,
    /// Momentum training starts from [default: 0].
    #[arg(long)]
    init_momentum: Option<f64>,
    /// Fraction of rows for validation [default: 0.2].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Fraction of rows for test, ignored when the data has its own test part [default: 0.2].
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Keep this fraction of the train split, in (0, 1] [default: 1].
    #[arg(long)]
    train_fraction: Option<f64>,
    /// Keep at most this many train rows.
    #[arg(long)]
    max_train_rows: Option<usize>,
    /// Weight decay [default: 0]: L2 for SGD, decoupled for AdamW (as PyTorch's optimizers).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// The inner optimizer the controller drives: `sgd` (momentum) or `adamw` (the momentum is
    /// beta1; beta2 0.999, eps 1e-8 kept) [default: sgd].
    #[arg(long)]
    optimizer: Option<hyperctl_tasks::OptimizerKind>,
    /// Use Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    /// Decide every K minibatches instead of every epoch (for large datasets).
    #[arg(long)]
    steps_per_decision: Option<usize>,
}

/// The env settings a run uses: the file given; else the settings the `policy:DIR` controllers
/// among `specs` were trained under (a policy's actions only mean something under its own action
/// mapping; several policies must agree); else the defaults.
pub fn env_config_for(path: Option<&PathBuf>, specs: &[String]) -> anyhow::Result<EnvConfig> {
    if path.is_some() {
        return load_env_config(path);
    }
    let mut chosen: Option<(String, EnvConfig)> = None;
    for spec in specs {
        if hyperctl_controllers::Spec::parse(spec)?
            .unguarded()
            .0
            .policy_dir()
            .is_none()
        {
            continue;
        }
        let env = hyperctl_controllers::default_env(spec)?;
        match &chosen {
            Some((first, e)) if *e != env => anyhow::bail!(
                "`{first}` and `{spec}` were trained under different env settings; \
                 compare them in separate runs or pass --env-config"
            ),
            Some(_) => {}
            None => chosen = Some((spec.clone(), env)),
        }
    }
    Ok(chosen.map_or_else(EnvConfig::defaults, |(_, e)| e))
}

/// Reads an environment config file (TOML), naming the file on error.
pub fn load_env_config(path: Option<&PathBuf>) -> anyhow::Result<EnvConfig> {
    let Some(path) = path else {
        return Ok(EnvConfig::defaults());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: EnvConfig =
        toml::from_str(&text).with_context(|| format!("{}: invalid env config", path.display()))?;
    config
        .validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(config)
}

fn parse_task_type(s: &str) -> Result<TaskType, hyperctl_tasks::Error> {
    s.parse()
}

/// The task the flags define.
pub fn task_from_args(args: &TaskArgs) -> anyhow::Result<TaskSpec> {
    if let Some(reference) = &args.task {
        let Some((collection, id)) = hyperctl_collections::split_task_ref(reference) else {
            bail!(
                "task `{reference}`: expected COLLECTION#TASK_ID (or the inline --dataset ... flags)"
            );
        };
        let collection = crate::tasks_cmd::load(collection, args.data_dir.as_deref())?;
        let Some(found) = collection.get(id) else {
            bail!(
                "collection `{}` has no task `{id}` (see `hyperctl tasks list`)",
                collection.name
            );
        };
        let inline = [
            ("--task-type", args.task_type.is_some()),
            ("--model", args.model.is_some()),
            ("--epochs", args.epochs.is_some()),
            ("--batch-size", args.batch_size.is_some()),
            ("--init-lr", args.init_lr.is_some()),
            ("--init-momentum", args.init_momentum.is_some()),
            ("--val-fraction", args.val_fraction.is_some()),
            ("--test-fraction", args.test_fraction.is_some()),
            ("--train-fraction", args.train_fraction.is_some()),
            ("--max-train-rows", args.max_train_rows.is_some()),
            ("--weight-decay", args.weight_decay.is_some()),
            ("--nesterov", args.nesterov),
            ("--steps-per-decision", args.steps_per_decision.is_some()),
            ("--optimizer", args.optimizer.is_some()),
        ];
        if let Some((flag, _)) = inline.iter().find(|(_, given)| *given) {
            bail!(
                "{flag} describes an inline task; `{reference}` is defined by its collection (only --seed may override it)"
            );
        }
        let mut task = found.task.clone();
        task.seed = args.seed.unwrap_or(task.seed);
        return Ok(task);
    }
    let source = args
        .dataset
        .clone()
        .expect("clap requires --dataset without a TASK");
    let task_type = match (args.task_type, source.implied_task_type()) {
        (Some(t), _) => t,
        (None, Some(implied)) => implied,
        (None, None) => {
            bail!("--task-type is required for `{source}` (classification or regression)")
        }
    };
    let model = match args.model {
        Some(m) => m,
        None => ModelSpec::parse("mlp:64x2")?,
    };
    let mut task = TaskSpec::new(
        source,
        task_type,
        model,
        args.epochs.unwrap_or(20),
        args.batch_size.unwrap_or(32),
        args.seed.unwrap_or(0),
    );
    task.init = Hyperparams {
        lr: args.init_lr.unwrap_or(task.init.lr),
        momentum: args.init_momentum.unwrap_or(task.init.momentum),
    };
    task.val_fraction = args.val_fraction.unwrap_or(task.val_fraction);
    task.test_fraction = args.test_fraction.unwrap_or(task.test_fraction);
    task.train_fraction = args.train_fraction.unwrap_or(task.train_fraction);
    task.max_train_rows = args.max_train_rows;
    task.weight_decay = args.weight_decay.unwrap_or(task.weight_decay);
    task.nesterov = args.nesterov;
    task.steps_per_decision = args.steps_per_decision;
    task.optimizer = args.optimizer.unwrap_or_default();
    if task.nesterov && task.optimizer != hyperctl_tasks::OptimizerKind::Sgd {
        bail!(
            "--nesterov is an SGD option; the optimizer is {}",
            task.optimizer
        );
    }
    task.validate()?;
    Ok(task)
}

/// One epoch as a JSON object (the `--json` line and the trace file's line).
fn interval_json(record: &IntervalRecord) -> serde_json::Value {
    let s = &record.stats;
    json!({
        "epoch": s.epoch,
        "lr": s.lr,
        "momentum": s.momentum,
        "train_loss": s.train_loss_mean,
        "train_loss_std": s.train_loss_std,
        "val_loss": s.val_loss,
        "val_metric": s.val_metric,
        "grad_norm": s.grad_norm_mean,
        "grad_norm_max": s.grad_norm_max,
        "weight_norm": s.weight_norm,
        "update_ratio": s.update_ratio,
        "steps": s.steps,
        "wall_secs": s.wall_secs,
        "diverged": s.diverged,
        "rolled_back": record.rolled_back,
        "reward": record.reward,
    })
}

fn metric_name(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::Classification => "accuracy",
        TaskType::Regression => "r2",
    }
}

fn final_json(
    result: &EpisodeResult,
    task: &TaskSpec,
    env_config: &EnvConfig,
    meta: &RunMeta,
) -> serde_json::Value {
    json!({
        "final": true,
        "test_loss": result.test.loss,
        "test_metric": result.test.metric,
        "metric": metric_name(task.task_type),
        "diverged": result.diverged,
        "rollbacks": result.rollbacks,
        "episode_return": result.episode_return,
        "epochs_run": result.intervals.len(),
        "initial_val_loss": result.initial_val.loss,
        "final_val_loss": result.intervals.last().map(|r| r.stats.val_loss),
        "wall_secs": result.wall_secs,
        "controller": result.controller,
        "seed": result.seed,
        "task": task,
        "env_config": env_config,
        "meta": meta,
    })
}

/// Runs `hyperctl train`.
pub fn run(args: TrainArgs, backend: Backend) -> anyhow::Result<()> {
    let task = task_from_args(&args.task)?;
    let env_config = env_config_for(
        args.env_config.as_ref(),
        std::slice::from_ref(&args.controller),
    )?;
    hyperctl_controllers::check_env(&args.controller, &env_config)?;
    hyperctl_controllers::check_optimizer(
        hyperctl_controllers::unguarded_text(&args.controller).0,
        task.optimizer,
    )?;
    let mut controller = hyperctl_controllers::build(&args.controller)?;
    let mut env = ScheduleEnv::new(task.clone(), env_config.clone(), backend)
        .with_context(|| format!("cannot set up task `{}`", task.id))?;
    if let Some(batch) = args.task.batch_size
        && batch > env.train_rows()
    {
        bail!(
            "--batch-size {batch} is larger than the training split ({} rows): every step would see the whole split; use at most {}",
            env.train_rows(),
            env.train_rows()
        );
    }
    let meta = RunMeta::new(backend.name(), task.seed);
    tracing::info!(task = %task.id, controller = %args.controller, backend = backend.name(), "training");

    let metric = metric_name(task.task_type);
    let short_metric = if metric == "accuracy" { "acc" } else { "r2" };
    let mut lines: Vec<String> = Vec::new();
    let epochs = task.epochs;
    let json_mode = args.json;
    if args.rollback && !(args.rollback_factor > 0.0 && args.rollback_factor < 1.0) {
        anyhow::bail!(
            "--rollback-factor must be in (0, 1), got {}",
            args.rollback_factor
        );
    }
    if args.rollback && (args.blowup_factor.is_nan() || args.blowup_factor <= 1.0) {
        anyhow::bail!(
            "--blowup-factor must be > 1 (or inf), got {}",
            args.blowup_factor
        );
    }
    // `--controller rollback(SPEC)` means what it means in `compare`: SPEC under the guard.
    let guarded = hyperctl_controllers::Spec::parse(&args.controller)?
        .unguarded()
        .1
        .is_some();
    let rollback = (args.rollback || guarded).then_some(Rollback {
        lr_factor: args.rollback_factor,
        max_rollbacks: args.max_rollbacks,
        blowup_factor: args.blowup_factor,
    });
    let result = run_schedule_with(
        &mut env,
        controller.as_mut(),
        task.seed,
        rollback,
        |record| {
            let line = interval_json(record).to_string();
            if json_mode {
                println!("{line}");
            } else {
                let s = &record.stats;
                println!(
                    "epoch {:>4}/{epochs}  lr {:.3e}  mom {:.3}  train {:.4}  val {:.4}  {short_metric} {:.4}  |g| {:.3e}  {:.2}s{}",
                    s.epoch,
                    s.lr,
                    s.momentum,
                    s.train_loss_mean,
                    s.val_loss,
                    s.val_metric,
                    s.grad_norm_mean,
                    s.wall_secs,
                    match (s.diverged, record.rolled_back) {
                        (true, true) => "  DIVERGED: rolled back, lr reduced",
                        (true, false) => "  DIVERGED",
                        _ => "",
                    }
                );
            }
            lines.push(line);
        },
    );
    let final_value = final_json(&result, &task, &env_config, &meta);
    if json_mode {
        println!("{final_value}");
    } else {
        println!(
            "test loss {:.4}  test {metric} {:.4}  return {:.4}{}  ({} epochs, {:.1}s, seed {}, {})",
            result.test.loss,
            result.test.metric,
            result.episode_return,
            if result.diverged { "  DIVERGED" } else { "" },
            result.intervals.len(),
            result.wall_secs,
            result.seed,
            backend.name(),
        );
    }
    if let Some(dir) = &args.out {
        let mut trace = lines.join("\n");
        trace.push('\n');
        write_atomic(&dir.join("trace.jsonl"), trace.as_bytes())?;
        write_atomic(
            &dir.join("result.json"),
            serde_json::to_string_pretty(&final_value)?.as_bytes(),
        )?;
        let title = format!("{} — {}", task.id, result.controller);
        crate::plot::trace_svg(&result.intervals, &title, &dir.join("trace.svg"))?;
        tracing::info!(dir = %dir.display(), "wrote trace.jsonl, result.json, trace.svg");
    }
    Ok(())
}
