//! `hyperctl compare`: every controller on every task and seed, same budget; writes
//! results.jsonl, summary.md, summary.json and plots into `--out`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use hyperctl_compare::{ReportMeta, RunConfig, summarize, write_reports};
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
    /// A controller SPEC; repeat the flag for each controller. `rollback(SPEC)` runs SPEC with
    /// the deployment guard of `train --rollback` (on divergence or a validation loss above 4×
    /// the best so far: back to the last good epoch, lr × 0.5, at most 5 times).
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
    /// With max_tasks: N tasks evenly spaced over the split instead of the first N (for `demo`).
    #[arg(skip)]
    spread: bool,
    /// Parallel runs (default: all cores; each run then uses one kernel thread).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run in N worker processes (`hyperctl worker`) instead of `--jobs` threads: processes
    /// scale where threads of one process do not. Results are the same for any N.
    #[arg(long)]
    workers: Option<usize>,
    /// Data root for the collection's relative paths.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Environment config (TOML, see envs/schedule_env.toml); default: the settings a `policy:DIR`
    /// controller was trained under, else envs/schedule_env.toml's.
    #[arg(long)]
    env_config: Option<PathBuf>,
    /// Tune each baseline's lr (and momentum {0, 0.9}) on this split, then evaluate the chosen
    /// setting on --split (which must differ). Without --tune, every tunable --controller is
    /// replaced by its tuned setting.
    #[arg(long)]
    tune_on: Option<String>,
    /// With --tune-on: tune this SPEC and ADD the chosen setting as a controller, leaving the
    /// --controller SPECs as given (untuned and tuned side by side). Repeatable; the best of them
    /// on the tuning split is named in the report as the best single fixed schedule.
    #[arg(long = "tune", requires = "tune_on")]
    tune: Vec<String>,
    /// Tune on only N tasks, evenly spaced over the tuning split.
    #[arg(long, requires = "tune_on")]
    tune_max_tasks: Option<usize>,
    /// Seeds per tuning task (default: --seeds).
    #[arg(long, requires = "tune_on")]
    tune_seeds: Option<usize>,
    /// Number of log-spaced learning rates over [1e-4, 1] in the tuning grid.
    #[arg(long, default_value_t = 10)]
    tune_lrs: usize,
    /// Add the `oracle`: per task and seed, the best of the whole grid on the evaluated tasks
    /// themselves (costs the grid's size in compute).
    #[arg(long)]
    oracle: bool,
    /// The oracle's grid: the grids of these SPECs (repeatable; default: every tunable
    /// --controller and --tune SPEC).
    #[arg(long, requires = "oracle")]
    oracle_from: Vec<String>,
    /// Untuned-start protocol: each task × seed starts from an lr drawn log-uniformly over
    /// [1e-4, 1] and a momentum from {0, 0.9} (the same point for every controller) instead of
    /// the task's own start; controllers that leave out lr/momentum start there.
    #[arg(long, conflicts_with = "start_lr")]
    untuned_starts: bool,
    /// Every task × seed starts from this lr (and --start-momentum) instead of the task's own
    /// start: for sweeps of the starting point.
    #[arg(long)]
    start_lr: Option<f64>,
    /// Starting momentum with --start-lr.
    #[arg(long, default_value_t = 0.0, requires = "start_lr")]
    start_momentum: f64,
    /// Replay ablation: add `replay(CONTROLLER)`, which plays back, open loop, the mean lr/momentum
    /// trajectory CONTROLLER chose on each task (over seeds). Repeatable.
    #[arg(long)]
    replay: Vec<String>,
}

/// Shows a comparison's progress: a bar per phase, its notes printed as they come.
struct Bars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl hyperctl_compare::Progress for Bars {
    fn phase_started(&self, label: &str, total: usize) {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] {bar:40} {pos}/{len} runs (eta {eta}) {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(label.to_string());
        *self.bar.lock().expect("no poisoned lock") = Some(bar);
    }

    fn run_finished(
        &self,
        label: &str,
        done: usize,
        total: usize,
        record: &hyperctl_compare::RunRecord,
    ) {
        if let Some(bar) = self.bar.lock().expect("no poisoned lock").as_ref() {
            bar.set_position(done as u64);
            bar.set_message(format!("{} / {}", record.task_id, record.controller));
        }
        tracing::info!(phase = label, done, total, task = %record.task_id,
            controller = %record.controller, seed = record.seed, "run finished");
    }

    fn phase_finished(&self, _label: &str) {
        if let Some(bar) = self.bar.lock().expect("no poisoned lock").take() {
            bar.finish_and_clear();
        }
    }

    fn note(&self, note: &str) {
        println!("{note}");
    }
}

/// Runs `hyperctl compare`: check every input, claim the out folder, run the plan, report.
pub fn run(args: CompareArgs, backend: Backend) -> anyhow::Result<()> {
    // Check every input before anything is written.
    let plan = plan_of(&args, backend)?;
    let identity = identity_of(&args, &plan, backend)?;

    // Claim the out folder: one comparison, made from the same inputs.
    let _lock = crate::output::lock_dir(&args.out)?;
    let meta = RunMeta::new(backend.name(), 0);
    crate::output::claim(&args.out, "comparison", &identity, &meta)?;

    // Run: tune, compare, replay, oracle.
    let outcome = hyperctl_compare::run_plan(
        &plan,
        &args.out,
        &Bars {
            bar: std::sync::Mutex::new(None),
        },
    )?;
    let (records, controllers, reference, notes) = (
        outcome.records,
        outcome.controllers,
        outcome.reference,
        outcome.notes,
    );

    // Report.
    let summary = summarize(&records, &controllers, &reference);
    let report_meta = ReportMeta {
        collection: args.tasks.clone(),
        split: args.split.clone(),
        version: meta.version.into(),
        git_commit: meta.git_commit.into(),
        backend: backend.name().into(),
        command: meta.command.clone(),
        notes,
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

/// Turns the arguments into a checked [`Plan`](hyperctl_compare::Plan): SPECs build and fit the
/// env settings, the splits exist, every task loads and builds.
fn plan_of(args: &CompareArgs, backend: Backend) -> anyhow::Result<hyperctl_compare::Plan> {
    // `rollback(SPEC)`: SPEC with the deployment guard (undo a divergence, halve the lr).
    let inner = unguarded(&args.controllers);
    for c in &inner {
        hyperctl_controllers::build(c)?;
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if args.tune_on.is_some() && args.tune_on == args.split {
        bail!("--tune-on and --split name the same split: never tune on the tasks you report");
    }
    if args.tune_seeds == Some(0) || args.tune_max_tasks == Some(0) {
        bail!("--tune-seeds and --tune-max-tasks must be at least 1");
    }
    let env = crate::train::env_config_for(args.env_config.as_ref(), &inner)?;
    for c in &inner {
        hyperctl_controllers::check_env(c, &env)?;
    }

    // The tasks: the evaluated split, and the tuning split.
    let collection = crate::tasks_cmd::load(&args.tasks, args.data_dir.as_deref())?;
    let mut tasks: Vec<_> = collection.split(args.split.as_deref()).cloned().collect();
    if let Some(n) = args.max_tasks {
        if args.spread {
            tasks = hyperctl_collections::evenly_spaced(tasks.len(), Some(n))
                .into_iter()
                .map(|i| tasks[i].clone())
                .collect();
        } else {
            tasks.truncate(n);
        }
    }
    if tasks.is_empty() {
        bail!(
            "collection `{}` has no tasks in split `{}`",
            args.tasks,
            args.split.clone().unwrap_or_default()
        );
    }
    let tune_tasks: Vec<_> = match &args.tune_on {
        Some(tune_split) => {
            let mut tune_tasks: Vec<_> = collection.split(Some(tune_split)).cloned().collect();
            if let Some(n) = args.tune_max_tasks {
                tune_tasks = hyperctl_collections::evenly_spaced(tune_tasks.len(), Some(n))
                    .into_iter()
                    .map(|i| tune_tasks[i].clone())
                    .collect();
            } else if let Some(n) = args.max_tasks {
                tune_tasks.truncate(n);
            }
            if tune_tasks.is_empty() {
                bail!(
                    "collection `{}` has no tasks in split `{tune_split}` to tune on",
                    args.tasks
                );
            }
            tune_tasks
        }
        None => Vec::new(),
    };

    // A policy drives only the inner optimizer it was trained with.
    let optimizers: std::collections::BTreeSet<_> = tasks
        .iter()
        .chain(&tune_tasks)
        .map(|t| t.task.optimizer)
        .collect();
    for c in &inner {
        for optimizer in &optimizers {
            hyperctl_controllers::check_optimizer(c, *optimizer)?;
        }
    }

    // Where training starts, and how the runs go.
    if let Some(lr) = args.start_lr
        && !(lr.is_finite() && lr > 0.0 && (0.0..1.0).contains(&args.start_momentum))
    {
        bail!(
            "--start-lr must be positive and --start-momentum in [0, 1), got {lr} and {}",
            args.start_momentum
        );
    }
    let starts = match args.start_lr {
        Some(lr) => Some(hyperctl_compare::StartDistribution::fixed(
            lr,
            args.start_momentum,
        )),
        None => args
            .untuned_starts
            .then(hyperctl_compare::StartDistribution::untuned),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let config = RunConfig {
        controllers: inner,
        seeds: args.seeds,
        jobs,
        backend,
        env,
        replays: Default::default(),
        starts,
        datasets: Default::default(),
        workers: match args.workers {
            None => None,
            Some(0) => bail!("--workers must be at least 1"),
            Some(n) => {
                let exe = std::env::current_exe().map_err(|e| {
                    anyhow::anyhow!("cannot find this program to start workers: {e}")
                })?;
                crate::ignore_sigpipe();
                let pool = hyperctl_pool::process::ProcessPool::spawn(n, &exe, &["worker"])
                    .map_err(|e| anyhow::anyhow!("cannot start {n} worker processes: {e}"))?;
                Some(hyperctl_compare::worker::Workers::new(
                    pool,
                    args.tasks.clone(),
                    crate::tasks_cmd::data_dir(args.data_dir.as_deref()),
                ))
            }
        },
    };

    // Every task loads and builds (on both splits), every controller builds.
    hyperctl_compare::check_tasks(&tasks, &config)?;
    hyperctl_compare::check_tasks(
        &tune_tasks,
        &RunConfig {
            controllers: Vec::new(),
            ..config.clone()
        },
    )?;
    let plan = hyperctl_compare::Plan {
        tasks,
        controllers: args.controllers.clone(),
        reference: args
            .reference
            .clone()
            .unwrap_or_else(|| args.controllers[0].clone()),
        config: RunConfig {
            controllers: Vec::new(),
            ..config
        },
        tune: args
            .tune_on
            .clone()
            .map(|split| hyperctl_compare::TunePlan {
                split,
                tasks: tune_tasks,
                seeds: args.tune_seeds.unwrap_or(args.seeds),
                add: args.tune.clone(),
            }),
        replay: args.replay.clone(),
        n_lrs: args.tune_lrs,
        oracle: args.oracle.then(|| args.oracle_from.clone()),
    };
    plan.check()?;
    Ok(plan)
}

/// The SPECs without their `rollback(..)` guard.
fn unguarded(specs: &[String]) -> Vec<String> {
    specs
        .iter()
        .map(|c| hyperctl_controllers::unguarded_text(c).0.to_string())
        .collect()
}

/// What a comparison is made from: the arguments, every task's definition, every policy
/// folder's fingerprint. Two runs into one folder must agree on all of it.
fn identity_of(
    args: &CompareArgs,
    plan: &hyperctl_compare::Plan,
    backend: Backend,
) -> anyhow::Result<serde_json::Value> {
    let mut policies = serde_json::Map::new();
    for c in &unguarded(&args.controllers) {
        let spec = hyperctl_controllers::Spec::parse(c)?;
        if let Some(dir) = spec.policy_dir() {
            policies.insert(
                c.clone(),
                hyperctl_controllers::policy::fingerprint(dir)?.into(),
            );
        }
        // An open-loop schedule is its file: a resume with another file's content is refused.
        if let hyperctl_controllers::Spec::OpenLoop(file) = spec {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the open-loop file", file.display()))?;
            policies.insert(c.clone(), text.into());
        }
    }
    let task_defs = |ts: &[hyperctl_collections::CollectionTask]| -> serde_json::Map<String, serde_json::Value> {
        ts.iter()
            .map(|t| {
                (
                    t.task.id.clone(),
                    serde_json::json!({"task": t.task, "split": t.split, "group": t.group}),
                )
            })
            .collect()
    };
    let tune_tasks = plan.tune.as_ref().map_or(&[][..], |t| &t.tasks[..]);
    Ok(serde_json::json!({
        "collection": args.tasks, "split": args.split, "max_tasks": args.max_tasks, "spread": args.spread,
        "controllers": args.controllers, "seeds": args.seeds, "env_config": plan.config.env, "backend": backend.name(),
        "task_ids": plan.tasks.iter().map(|t| &t.task.id).collect::<Vec<_>>(),
        "tasks": task_defs(&plan.tasks), "tune_tasks": task_defs(tune_tasks), "policies": policies,
        "tune_on": args.tune_on, "tune_lrs": args.tune_lrs, "oracle": args.oracle, "replay": args.replay,
        "tune": args.tune, "tune_max_tasks": args.tune_max_tasks, "tune_seeds": args.tune_seeds,
        "oracle_from": args.oracle_from,
        "starts": plan.config.starts,
    }))
}

/// The best single fixed schedule of the shipped headline (warmup-cosine tuned over 176
/// configurations on the policy's meta-train tasks, never on the held-out ones): the reference a
/// newcomer should read the policy against.
pub const TUNED_BEST: &str = "warmup-cosine:lr=8.577e-2,momentum=0.9";

/// Arguments of `hyperctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The policy to show.
    #[arg(long, default_value = "policies/default")]
    policy: PathBuf,
    /// Folder for the report (an existing demo report there is reused); default
    /// `experiments/runs/demo-<UTC timestamp>/`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Test tasks, evenly spaced over the generated collection's held-out `test` split.
    #[arg(long, default_value_t = 24)]
    tasks: usize,
    /// Seeds per task.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
}

/// Runs `hyperctl demo`: the policy against the main baselines from untuned starts on generated
/// held-out tasks (no data files, no GPU).
pub fn demo(args: DemoArgs, backend: Backend) -> anyhow::Result<()> {
    if !args.policy.join("config.json").is_file() {
        bail!(
            "no policy at {} (run from the repository root, or pass --policy DIR with a folder `hyperctl meta-train` wrote)",
            args.policy.display()
        );
    }
    if args.tasks == 0 || args.seeds == 0 {
        bail!("--tasks and --seeds must be at least 1");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("experiments/runs").join(format!(
            "demo-{}",
            utc_timestamp(std::time::SystemTime::now())
        ))
    });
    let policy = format!("policy:{}", args.policy.display());
    println!(
        "hyperctl demo: `{policy}` against fixed schedules and reactive heuristics on {} held-out generated tasks × {} seeds.\n\
         Every run of a task × seed starts from the same untuned point (lr log-uniform in [1e-4, 1], momentum 0 or 0.9), as a user who has not tuned would.\n\
         The honest reference beside them: `{TUNED_BEST}`, the best single schedule tuned on the shipped policy's meta-train tasks (experiments/headline/); it ignores the untuned start.\n",
        args.tasks, args.seeds
    );
    let compare = CompareArgs {
        tasks: "generated".into(),
        split: Some("test".into()),
        controllers: vec![
            policy,
            "constant".into(),
            "cosine".into(),
            "onecycle".into(),
            "plateau".into(),
            "simple-reactive".into(),
            TUNED_BEST.into(),
        ],
        seeds: args.seeds,
        out,
        reference: None,
        max_tasks: Some(args.tasks),
        spread: true,
        jobs: None,
        workers: None,
        data_dir: None,
        env_config: None,
        tune_on: None,
        tune: Vec::new(),
        tune_max_tasks: None,
        tune_seeds: None,
        tune_lrs: 10,
        oracle: false,
        oracle_from: Vec::new(),
        replay: Vec::new(),
        untuned_starts: true,
        start_lr: None,
        start_momentum: 0.0,
    };
    run(compare, backend)
}

/// `YYYYMMDD-HHMMSS` in UTC (the proleptic Gregorian calendar from Unix time).
fn utc_timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_timestamps_match_known_dates() {
        let at = |s: u64| {
            super::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        };
        assert_eq!(at(0), "19700101-000000");
        assert_eq!(at(951_782_400), "20000229-000000");
        assert_eq!(at(1_795_556_045), "20261124-213405");
    }
}
