//! `hyperctl compare`: every controller on every task and seed, same budget; writes
//! results.jsonl, summary.md, summary.json and plots into `--out`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use hyperctl_compare::{ReportMeta, RunConfig, run_all, summarize, write_reports};
use hyperctl_tasks::Backend;

use crate::output::RunMeta;

/// Arguments of `hyperctl compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The task collection (file or embedded name, e.g. `generated`).
    #[arg(long)]
    tasks: String,
    /// Only this split.
    #[arg(long)]
    split: Option<String>,
    /// A controller SPEC; repeat the flag for each controller.
    #[arg(long = "controller", required = true)]
    controllers: Vec<String>,
    /// Seeds per task (run seeds: the task's seed + 0..N).
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Output directory (an existing one with the same comparison is resumed).
    #[arg(long)]
    out: PathBuf,
    /// Reference controller for win rates (default: the first --controller).
    #[arg(long)]
    reference: Option<String>,
    /// Only the first N tasks of the split.
    #[arg(long)]
    max_tasks: Option<usize>,
    /// Parallel runs (default: all cores; each run then uses one kernel thread).
    #[arg(long)]
    jobs: Option<usize>,
    /// Data root for the collection's relative paths.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Environment config (TOML); defaults otherwise.
    #[arg(long)]
    env_config: Option<PathBuf>,
}

/// Runs `hyperctl compare`.
pub fn run(args: CompareArgs, backend: &str) -> anyhow::Result<()> {
    let backend: Backend = backend.parse()?;
    for c in &args.controllers {
        hyperctl_controllers::build(c)?;
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let reference = args
        .reference
        .clone()
        .unwrap_or_else(|| args.controllers[0].clone());
    if !args.controllers.contains(&reference) {
        bail!("--reference `{reference}` is not one of the --controller SPECs");
    }
    let env = crate::train::load_env_config(args.env_config.as_ref())?;
    let collection = crate::tasks_cmd::load(&args.tasks, args.data_dir.as_deref())?;
    let mut tasks: Vec<_> = collection.split(args.split.as_deref()).cloned().collect();
    if let Some(n) = args.max_tasks {
        tasks.truncate(n);
    }
    if tasks.is_empty() {
        bail!(
            "collection `{}` has no tasks in split `{}`",
            args.tasks,
            args.split.clone().unwrap_or_default()
        );
    }

    // The out directory belongs to one comparison: refuse to mix two.
    let identity = serde_json::json!({
        "collection": args.tasks, "split": args.split, "max_tasks": args.max_tasks,
        "controllers": args.controllers, "seeds": args.seeds, "env_config": env, "backend": backend.name(),
        "task_ids": tasks.iter().map(|t| &t.task.id).collect::<Vec<_>>(),
    });
    let config_path = args.out.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config_path) {
        let previous: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", config_path.display()))?;
        if previous.get("comparison") != Some(&identity) {
            bail!(
                "{} holds a different comparison (other tasks, controllers, seeds or config); use another --out",
                args.out.display()
            );
        }
    }
    let meta = RunMeta::new(backend.name(), 0);
    let config_json = serde_json::json!({ "comparison": identity, "meta": meta });
    crate::output::write_atomic(
        &config_path,
        serde_json::to_string_pretty(&config_json)?.as_bytes(),
    )?;

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let total = tasks.len() * args.controllers.len() * args.seeds;
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs (eta {eta}) {msg}",
        )
        .expect("a valid template"),
    );
    let config = RunConfig {
        controllers: args.controllers.clone(),
        seeds: args.seeds,
        jobs,
        backend,
        env,
    };
    let records = run_all(&tasks, &config, &args.out, &|done, total, record| {
        bar.set_position(done as u64);
        bar.set_message(format!("{} / {}", record.task_id, record.controller));
        tracing::info!(done, total, task = %record.task_id, controller = %record.controller, seed = record.seed, "run finished");
    })?;
    bar.finish_and_clear();

    let summary = summarize(&records, &args.controllers, &reference);
    let report_meta = ReportMeta {
        collection: args.tasks.clone(),
        split: args.split.clone(),
        version: meta.version.into(),
        git_commit: meta.git_commit.into(),
        backend: backend.name().into(),
        command: meta.command.clone(),
    };
    write_reports(&args.out, &summary, &records, &report_meta)?;
    let md = hyperctl_compare::report::markdown(&summary, &report_meta);
    let head: Vec<&str> = md.lines().take_while(|l| !l.starts_with("## ")).collect();
    println!("{}", head.join("\n").trim_end());
    println!(
        "\nwrote {}/{{results.jsonl, summary.md, summary.json, profile.svg, curves-*.svg}}",
        args.out.display()
    );
    Ok(())
}
