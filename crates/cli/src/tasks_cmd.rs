//! `hyperctl tasks list|validate COLLECTION`: expand a collection, show its tasks and cost, or
//! report every problem in it.

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
            println!(
                "{}",
                json!({
                    "id": t.task.id, "split": t.split, "group": t.group, "dataset": dataset,
                    "task_type": t.task.task_type, "model": t.task.model.to_string(), "batch_size": t.task.batch_size,
                    "epochs": t.task.epochs, "init_lr": t.task.init.lr, "init_momentum": t.task.init.momentum,
                    "train_fraction": t.task.train_fraction, "seed": t.task.seed,
                    "steps": steps, "params": params, "cost": cost,
                })
            );
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
