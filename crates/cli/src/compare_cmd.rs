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

/// Runs `controllers` on `tasks` into `dir` with a progress bar.
fn phase(
    label: &str,
    tasks: &[hyperctl_collections::CollectionTask],
    controllers: &[String],
    config: &RunConfig,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<hyperctl_compare::RunRecord>> {
    let total = tasks.len() * controllers.len() * config.seeds;
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {bar:40} {pos}/{len} runs (eta {eta}) {msg}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(label.to_string());
    let config = RunConfig {
        controllers: controllers.to_vec(),
        ..config.clone()
    };
    let records = run_all(tasks, &config, dir, &|done, total, record| {
        bar.set_position(done as u64);
        bar.set_message(format!("{} / {}", record.task_id, record.controller));
        tracing::info!(phase = label, done, total, task = %record.task_id,
            controller = %record.controller, seed = record.seed, "run finished");
    })?;
    bar.finish_and_clear();
    Ok(records)
}

/// Runs `hyperctl compare`.
pub fn run(args: CompareArgs, backend: Backend) -> anyhow::Result<()> {
    // `rollback(SPEC)`: SPEC with the deployment guard (undo a divergence, halve the lr).
    let inner: Vec<String> = args
        .controllers
        .iter()
        .map(|c| hyperctl_compare::run::guarded(c).0.to_string())
        .collect();
    for c in &inner {
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
    if args.tune_on.is_some() && args.tune_on == args.split {
        bail!("--tune-on and --split name the same split: never tune on the tasks you report");
    }
    if args.tune_lrs < 2 {
        bail!("--tune-lrs must be at least 2");
    }
    if args.tune_seeds == Some(0) || args.tune_max_tasks == Some(0) {
        bail!("--tune-seeds and --tune-max-tasks must be at least 1");
    }
    for spec in args.tune.iter().chain(&args.oracle_from) {
        if !hyperctl_compare::tune::is_tunable(spec) {
            bail!(
                "`{spec}` has no learning rate to tune (--tune and --oracle-from take schedule SPECs)"
            );
        }
    }
    let env = crate::train::env_config_for(args.env_config.as_ref(), &inner)?;
    for c in &inner {
        hyperctl_controllers::check_env(c, &env)?;
    }
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
    for r in &args.replay {
        if !args.controllers.contains(r) {
            bail!("--replay `{r}` is not one of the --controller SPECs");
        }
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut config = RunConfig {
        controllers: inner.clone(),
        seeds: args.seeds,
        jobs,
        backend,
        env: env.clone(),
        replays: Default::default(),
        starts: starts.clone(),
        datasets: Default::default(),
    };
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
    // Everything that can fail is checked before anything is written: every task loads and
    // builds, every controller builds.
    hyperctl_compare::check_tasks(&tasks, &config)?;
    hyperctl_compare::check_tasks(
        &tune_tasks,
        &RunConfig {
            controllers: Vec::new(),
            ..config.clone()
        },
    )?;
    config.controllers.clear();

    // The out directory belongs to one comparison, made from the same inputs: refuse to mix two.
    let mut policies = serde_json::Map::new();
    for c in &inner {
        if let Some(dir) = hyperctl_controllers::Spec::parse(c)?.policy_dir() {
            policies.insert(
                c.clone(),
                hyperctl_controllers::policy::fingerprint(dir)?.into(),
            );
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
    let identity = serde_json::json!({
        "collection": args.tasks, "split": args.split, "max_tasks": args.max_tasks, "spread": args.spread,
        "controllers": args.controllers, "seeds": args.seeds, "env_config": env, "backend": backend.name(),
        "task_ids": tasks.iter().map(|t| &t.task.id).collect::<Vec<_>>(),
        "tasks": task_defs(&tasks), "tune_tasks": task_defs(&tune_tasks), "policies": policies,
        "tune_on": args.tune_on, "tune_lrs": args.tune_lrs, "oracle": args.oracle, "replay": args.replay,
        "tune": args.tune, "tune_max_tasks": args.tune_max_tasks, "tune_seeds": args.tune_seeds,
        "oracle_from": args.oracle_from,
        "starts": starts,
    });
    let _lock = crate::output::lock_dir(&args.out)?;
    let config_path = args.out.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config_path) {
        let previous: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", config_path.display()))?;
        let previous = previous.get("comparison").cloned().unwrap_or_default();
        if previous != identity {
            bail!(
                "{} holds a comparison made from other inputs, so its runs cannot be resumed here: {}; use another --out",
                args.out.display(),
                crate::output::describe_changes(&previous, &identity)
            );
        }
    }
    let meta = RunMeta::new(backend.name(), 0);
    let config_json = serde_json::json!({ "comparison": identity, "meta": meta });
    crate::output::write_atomic(
        &config_path,
        serde_json::to_string_pretty(&config_json)?.as_bytes(),
    )?;

    // The grids: of the SPECs to tune, and of the oracle.
    let lrs = hyperctl_compare::tune::log_grid(1e-4, 1.0, args.tune_lrs);
    let tunable: Vec<String> = args
        .controllers
        .iter()
        .filter(|c| hyperctl_compare::tune::is_tunable(c))
        .cloned()
        .collect();
    let grids_of = |specs: &[String]| -> anyhow::Result<Vec<(String, Vec<String>)>> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for c in specs {
            if out.iter().all(|(b, _)| b != c) {
                out.push((
                    c.clone(),
                    hyperctl_compare::tune::grid_variants(c, &lrs, &[0.0, 0.9])?,
                ));
            }
        }
        Ok(out)
    };
    let variants = grids_of(if args.tune.is_empty() {
        &tunable
    } else {
        &args.tune
    })?;
    let oracle_bases: Vec<String> = if args.oracle_from.is_empty() {
        tunable.iter().chain(&args.tune).cloned().collect()
    } else {
        args.oracle_from.clone()
    };
    let grid: Vec<String> = grids_of(&oracle_bases)?
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();

    // Tune on another split, then evaluate the chosen settings.
    let mut controllers = args.controllers.clone();
    let mut reference = reference;
    let mut notes: Vec<String> = Vec::new();
    if let (Some(d), Some(lr)) = (&starts, args.start_lr) {
        notes.push(format!(
            "Every task × seed started from lr {lr} and momentum {}; SPECs without lr/momentum start there.",
            d.momenta[0]
        ));
    } else if let Some(d) = &starts {
        notes.push(format!(
            "Untuned-start protocol: each task × seed started from an lr drawn log-uniformly over [{}, {}] and a momentum from {:?}, the same point for every controller (each record's `init_lr`, `init_momentum`); SPECs without lr/momentum start there.",
            d.lr_min, d.lr_max, d.momenta
        ));
    }
    if let Some(tune_split) = &args.tune_on {
        let tune_grid: Vec<String> = variants
            .iter()
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        let tune_seeds = args.tune_seeds.unwrap_or(args.seeds);
        let tune_config = RunConfig {
            seeds: tune_seeds,
            ..config.clone()
        };
        let tune_records = phase(
            "tune",
            &tune_tasks,
            &tune_grid,
            &tune_config,
            &args.out.join("tune"),
        )?;
        let chosen = hyperctl_compare::tune::choose(&tune_records, &variants);
        let best_single = chosen
            .iter()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .map(|c| c.1.clone());
        for (base, pick, score) in &chosen {
            let note = format!(
                "`{base}` tuned on `{tune_split}` ({} tasks × {tune_seeds} seeds, grid of {} lrs × momentum {{0, 0.9}}): `{pick}` (mean ln(loss/best) there {score:.3})",
                tune_tasks.len(),
                args.tune_lrs
            );
            println!("{note}");
            notes.push(note);
            if args.tune.is_empty() {
                for c in controllers.iter_mut().filter(|c| *c == base) {
                    *c = pick.clone();
                }
                if reference == *base {
                    reference = pick.clone();
                }
            } else if !controllers.contains(pick) {
                controllers.push(pick.clone());
            }
        }
        if let Some(best) = &best_single
            && chosen.len() > 1
        {
            let note = format!(
                "Best single fixed schedule on `{tune_split}` (of {} configurations): `{best}`",
                tune_grid.len()
            );
            println!("{note}");
            notes.push(note);
        }
        let chosen_json: Vec<_> = chosen
            .iter()
            .map(|(b, p, s)| {
                serde_json::json!({"controller": b, "chosen": p, "tune_score": s,
                    "best_single": Some(p) == best_single.as_ref()})
            })
            .collect();
        let path = args.out.join("tune").join("chosen.json");
        crate::output::write_atomic(
            &path,
            serde_json::to_string_pretty(&chosen_json)?.as_bytes(),
        )?;
    }
    let mut records = phase("compare", &tasks, &controllers, &config, &args.out)?;
    for (given, used) in args.controllers.iter().zip(controllers.clone()) {
        if !args.replay.contains(given) {
            continue;
        }
        let name = format!("replay({used})");
        let mut per_task = std::collections::HashMap::new();
        for t in &tasks {
            let runs: Vec<(Vec<f64>, Vec<f64>)> = records
                .iter()
                .filter(|r| r.controller == used && r.task_id == t.task.id)
                .map(|r| (r.lr.clone(), r.momentum.clone()))
                .collect();
            if let Some(replay) = hyperctl_controllers::Replay::mean_of(name.clone(), &runs) {
                per_task.insert(t.task.id.clone(), replay);
            }
        }
        config.replays.insert(name.clone(), per_task);
        let dir = args.out.join(format!(
            "replay-{}",
            controllers.iter().position(|c| *c == used).unwrap_or(0)
        ));
        records.extend(phase(
            "replay",
            &tasks,
            std::slice::from_ref(&name),
            &config,
            &dir,
        )?);
        notes.push(format!("`{name}`: open-loop playback, per task, of the mean lr/momentum trajectory `{used}` chose over the seeds"));
        controllers.push(name);
    }
    if args.oracle {
        if grid.is_empty() {
            bail!("--oracle needs at least one tunable controller to take the grid from");
        }
        let grid_records = phase("oracle", &tasks, &grid, &config, &args.out.join("oracle"))?;
        records.extend(hyperctl_compare::tune::oracle_records(&grid_records));
        controllers.push("oracle".into());
        let note = format!(
            "`oracle`: per task and seed, the best of {} grid configurations on the evaluated tasks themselves ({}× the compute of one controller; its wall time is the grid's)",
            grid.len(),
            grid.len()
        );
        println!("{note}");
        notes.push(note);
    }

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
