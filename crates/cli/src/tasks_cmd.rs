//! `hyperctl tasks list|validate COLLECTION`: expand a collection, show its tasks and cost, or
//! report every problem in it. `hyperctl tasks export COLLECTION#ID`: one run's data split, as
//! the trainer sees it, for training the same task in another framework.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use hyperctl_collections::{Collection, dataset_infos, model_params, validate};
use serde_json::json;

/// `hyperctl tasks ...`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Expand a collection and list its tasks with their approximate cost.
    List(ListArgs),
    /// Check a collection: files exist and parse, fields are known, no group spans two splits,
    /// no split is empty, budgets are sane. Reports every problem; exit 2 if any.
    Validate(ValidateArgs),
    /// Write one run's standardized train/validation/test split (`.npy`, float32) and the task's
    /// definition (`task.json`), exactly as hyperctl's trainer sees them for that seed: for
    /// training the same task in another framework (experiments/pytorch-transfer).
    Export(ExportArgs),
}

/// Arguments of `tasks export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The task, as COLLECTION#TASK_ID.
    task: String,
    /// The run seed (the split and the initialisation depend on it; default: the task's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Data root for relative paths (default: $HYPERCTL_DATA, else the collection's folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output folder (created; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `tasks list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// A collection file (TOML) or an embedded collection name (`generated`).
    collection: String,
    /// Only this split (e.g. meta-train, meta-val, test).
    #[arg(long)]
    split: Option<String>,
    /// Data root for relative paths (default: $HYPERCTL_DATA, else the collection's folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// One JSON object per task, then a summary object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tasks validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A collection file (TOML) or an embedded collection name (`generated`).
    collection: String,
    /// Data root for relative paths (default: $HYPERCTL_DATA, else the collection's folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only check that data files exist; do not load them.
    #[arg(long)]
    no_load: bool,
}

/// The data root the user asked for: `--data-dir`, else the environment's `HYPERCTL_DATA`.
pub fn data_dir(flag: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    flag.map(std::path::Path::to_path_buf).or_else(|| {
        std::env::var_os("HYPERCTL_DATA")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    })
}

/// Loads a collection, turning its problems into one error listing them all. `data_dir` is
/// `--data-dir` (else `HYPERCTL_DATA` is used).
pub fn load(collection: &str, data_dir: Option<&std::path::Path>) -> anyhow::Result<Collection> {
    let data_dir = self::data_dir(data_dir);
    hyperctl_collections::load(collection, data_dir.as_deref()).map_err(|problems| {
        anyhow::anyhow!(
            "collection `{collection}` has {} problem(s):\n{problems}",
            problems.0.len()
        )
    })
}

/// Runs `hyperctl tasks ...`.
pub fn run(command: TasksCommand) -> anyhow::Result<()> {
    match command {
        TasksCommand::List(args) => list(args),
        TasksCommand::Export(args) => export(args),
        TasksCommand::Validate(args) => {
            let collection = load(&args.collection, args.data_dir.as_deref())?;
            let problems = validate(&collection, !args.no_load);
            if !problems.is_empty() {
                let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                bail!(
                    "collection `{}` has {} problem(s):\n{}",
                    args.collection,
                    problems.len(),
                    text.join("\n")
                );
            }
            let mut per_split: Vec<(String, usize)> = Vec::new();
            for t in &collection.tasks {
                match per_split.iter_mut().find(|(s, _)| *s == t.split) {
                    Some((_, n)) => *n += 1,
                    None => per_split.push((t.split.clone(), 1)),
                }
            }
            let splits: Vec<String> = per_split.iter().map(|(s, n)| format!("{s} {n}")).collect();
            println!(
                "ok: {} tasks in `{}` ({})",
                collection.tasks.len(),
                collection.name,
                splits.join(", ")
            );
            Ok(())
        }
    }
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let collection = load(&args.collection, args.data_dir.as_deref())?;
    let infos = dataset_infos(&collection);
    let tasks: Vec<_> = collection.split(args.split.as_deref()).collect();
    if tasks.is_empty() {
        bail!(
            "collection `{}` has no tasks in split `{}`",
            args.collection,
            args.split.unwrap_or_default()
        );
    }
    if !args.json {
        println!(
            "{:<28} {:<10} {:<44} {:<14} {:>5} {:>6} {:>8} {:>5} {:>8} {:>8} {:>9}",
            "id",
            "split",
            "dataset",
            "model",
            "batch",
            "epochs",
            "init_lr",
            "mom",
            "steps",
            "params",
            "cost"
        );
    }
    let (mut total_cost, mut total_steps, mut unknown) = (0f64, 0usize, 0usize);
    for t in &tasks {
        let info = infos
            .get(&t.task.source.to_string())
            .and_then(|i| i.as_ref().ok());
        let (steps, params) = match info {
            Some(info) => (
                Some(info.steps(&t.task)),
                Some(model_params(&t.task.model, info)),
            ),
            None => (None, None),
        };
        let cost = steps.zip(params).map(|(s, p)| s as f64 * p as f64);
        match cost {
            Some(c) => {
                total_cost += c;
                total_steps += steps.unwrap_or(0);
            }
            None => unknown += 1,
        }
        let dataset = t.task.source.to_string();
        if args.json {
            let mut line = json!({
                "id": t.task.id, "split": t.split, "group": t.group, "dataset": dataset,
                "task_type": t.task.task_type, "model": t.task.model.to_string(), "batch_size": t.task.batch_size,
                "epochs": t.task.epochs, "init_lr": t.task.init.lr, "init_momentum": t.task.init.momentum,
                "train_fraction": t.task.train_fraction, "seed": t.task.seed,
                "steps": steps, "params": params, "cost": cost,
            });
            // Only when not SGD, so SGD tasks' lines read as before.
            if t.task.optimizer != hyperctl_tasks::OptimizerKind::Sgd {
                line["optimizer"] = json!(t.task.optimizer);
                line["weight_decay"] = json!(t.task.weight_decay);
            }
            println!("{line}");
        } else {
            let short = if dataset.chars().count() > 44 {
                format!("{}…", dataset.chars().take(43).collect::<String>())
            } else {
                dataset
            };
            let opt = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
            println!(
                "{:<28} {:<10} {:<44} {:<14} {:>5} {:>6} {:>8.1e} {:>5.2} {:>8} {:>8} {:>9}",
                t.task.id,
                t.split,
                short,
                t.task.model.to_string(),
                t.task.batch_size,
                t.task.epochs,
                t.task.init.lr,
                t.task.init.momentum,
                opt(steps),
                opt(params),
                cost.map_or("?".into(), |c| format!("{c:.2e}")),
            );
        }
    }
    let summary = format!(
        "{} tasks, {} minibatch steps, total cost {:.3e} (steps × parameters){}",
        tasks.len(),
        total_steps,
        total_cost,
        if unknown > 0 {
            format!("; {unknown} task(s) of unknown cost (data not loadable)")
        } else {
            String::new()
        }
    );
    if args.json {
        println!(
            "{}",
            json!({ "summary": true, "tasks": tasks.len(), "steps": total_steps, "cost": total_cost, "unknown_cost": unknown })
        );
    } else {
        println!("{summary}");
    }
    Ok(())
}

/// `.npy` (format 1.0) bytes of a little-endian float32 array of `shape`.
fn npy_f32(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let Some((collection, id)) = hyperctl_collections::split_task_ref(&args.task) else {
        bail!("task `{}`: expected COLLECTION#TASK_ID", args.task);
    };
    let collection = load(collection, args.data_dir.as_deref())?;
    let Some(found) = collection.get(id) else {
        bail!(
            "collection `{}` has no task `{id}` (see `hyperctl tasks list`)",
            collection.name
        );
    };
    let task = &found.task;
    let seed = args.seed.unwrap_or(task.seed);
    let data = task.load()?;
    let split = task.split(&data, seed)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, table) in [
        ("train", &split.train),
        ("val", &split.val),
        ("test", &split.test),
    ] {
        files.push((
            format!("{name}_x.npy"),
            npy_f32(&table.x, &[table.n_rows(), split.n_features]),
        ));
        files.push((
            format!("{name}_y.npy"),
            npy_f32(&table.y, &[table.n_rows()]),
        ));
    }
    let meta = json!({
        "task": task,
        "split": found.split,
        "seed": seed,
        "task_type": split.task_type.name(),
        "n_features": split.n_features,
        "n_classes": split.n_classes,
        "image_shape": split.image_shape,
        "standardization": split.standardization,
        "rows": {"train": split.train.n_rows(), "val": split.val.n_rows(), "test": split.test.n_rows()},
        "provenance": crate::output::RunMeta::new("flex", seed),
    });
    files.push((
        "task.json".into(),
        serde_json::to_vec_pretty(&meta).expect("the export's metadata serializes"),
    ));
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    for (name, bytes) in &files {
        hyperctl_files::write_atomic(&args.out.join(name), bytes)?;
    }
    println!(
        "exported `{}` seed {seed}: {} train, {} val, {} test rows to {}",
        task.id,
        split.train.n_rows(),
        split.val.n_rows(),
        split.test.n_rows(),
        args.out.display()
    );
    Ok(())
}
