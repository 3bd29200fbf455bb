//! `hyperctl sweep`: graybox search over what the controller does not set (issue 20). Glue over
//! [`hyperctl_sweep`]: the task from the TASK flags, the space file, the output folder (locked,
//! claimed by its inputs so a rerun resumes), progress on stderr, and the report files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use hyperctl_sweep::{Method, Space, Summary, Sweep, TrialRecord};
use hyperctl_tasks::Backend;
use plotters::prelude::*;

use crate::output::{RunMeta, write_atomic};
use crate::train::{TaskArgs, env_config_for};

/// The most epochs one sweep may spend.
const MAX_BUDGET: usize = 10_000_000;
/// The most trials one sweep may run.
const MAX_TRIALS: usize = 100_000;

/// Arguments of `hyperctl sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// The search space (TOML: width, depth, activation, weight_decay, batch_size, optimizer, lr,
    /// momentum; each a value or a distribution, INTERFACE.md).
    #[arg(long)]
    space: PathBuf,
    /// Epochs all trials together may train (stopped trials count what they trained); each trial's
    /// own budget is the task's epochs.
    #[arg(long)]
    budget: usize,
    /// The controller that sets every trial's lr and momentum.
    #[arg(long, default_value = "rollback(policy:policies/default)")]
    controller: String,
    /// Early stopping: `asha[:eta=3,min_epochs=1]` (successive halving at rungs on the current
    /// validation loss), `predicted[:eta=3,min_epochs=1,z=1]` (the same rungs on a learned
    /// prediction of the final loss, --predictor) or `random` (every trial trains its budget).
    #[arg(long, default_value = "asha", value_parser = Method::parse)]
    method: Method,
    /// The curve predictor of `--method predicted` (a file of `hyperctl curve-predictor fit`).
    #[arg(long)]
    predictor: Option<PathBuf>,
    /// A data-driven prior: a folder of earlier sweeps (one per subfolder, e.g. on meta-train
    /// tasks, as experiments/sweep/curves.sh writes them). The first trials are the best
    /// configurations of the --prior-k sweeps whose datasets are most like this one's (rows,
    /// features, outputs, task type); later trials search around them half of the time.
    #[arg(long)]
    prior: Option<PathBuf>,
    /// How many nearest sweeps the prior starts from.
    #[arg(long, default_value_t = 4, requires = "prior")]
    prior_k: usize,
    /// The search seed: which configurations are drawn, and every trial's run seed (task seed + it).
    #[arg(long, default_value_t = 0)]
    search_seed: u64,
    /// At most this many trials.
    #[arg(long, default_value_t = 1000)]
    max_trials: usize,
    /// Trials trained in parallel (default: all cores; each then uses one kernel thread). Results
    /// do not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Environment config (TOML); default: the settings a `policy:DIR` controller was trained under.
    #[arg(long)]
    env_config: Option<PathBuf>,
    /// Output folder: results.jsonl, summary.json, summary.md, anytime.svg, config.json. An
    /// existing folder with the same sweep is resumed.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `hyperctl sweep`.
pub fn run(args: SweepArgs, backend: Backend) -> anyhow::Result<()> {
    if !(1..=MAX_BUDGET).contains(&args.budget) {
        anyhow::bail!(
            "--budget {} is outside 1..={MAX_BUDGET} epochs",
            args.budget
        );
    }
    if !(1..=MAX_TRIALS).contains(&args.max_trials) {
        anyhow::bail!(
            "--max-trials {} is outside 1..={MAX_TRIALS}",
            args.max_trials
        );
    }
    let task = crate::train::task_from_args(&args.task)?;
    let space_text = std::fs::read_to_string(&args.space)
        .with_context(|| format!("cannot read the space file {}", args.space.display()))?;
    let space =
        Space::parse(&space_text).map_err(|e| anyhow::anyhow!("{}: {e}", args.space.display()))?;
    space
        .check_task(&task)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.space.display()))?;
    let env = env_config_for(
        args.env_config.as_ref(),
        std::slice::from_ref(&args.controller),
    )?;
    hyperctl_controllers::check_env(&args.controller, &env)?;
    let data = Arc::new(
        task.load()
            .with_context(|| format!("cannot load the data of task `{}`", task.id))?,
    );
    let predictor = match (&args.method, &args.predictor) {
        (Method::Predicted { .. }, Some(path)) => Some(Arc::new(load_predictor(path)?)),
        (Method::Predicted { .. }, None) => {
            anyhow::bail!(
                "--method predicted needs --predictor FILE (from `hyperctl curve-predictor fit`)"
            )
        }
        (_, Some(_)) => anyhow::bail!("--predictor is read by --method predicted only"),
        (_, None) => None,
    };
    let info = hyperctl_collections::DatasetInfo::of(&data);
    let meta_features = hyperctl_sweep::prior::MetaFeatures {
        rows: info.n_rows,
        features: info.n_features,
        outputs: info.n_outputs,
        classification: task.task_type == hyperctl_tasks::TaskType::Classification,
    };
    let prior = match &args.prior {
        Some(dir) => {
            let entries = load_prior(dir)?;
            let configs = hyperctl_sweep::prior::starting_configs(
                &entries,
                &meta_features,
                &task.id,
                &space,
                args.prior_k,
            );
            if configs.is_empty() {
                anyhow::bail!(
                    "--prior {}: none of its {} sweeps has a completed configuration this space could draw",
                    dir.display(),
                    entries.len()
                );
            }
            configs
        }
        None => Vec::new(),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let sweep = Sweep {
        task,
        space,
        budget: args.budget,
        max_trials: args.max_trials,
        method: args.method,
        predictor,
        prior,
        controller: args.controller.clone(),
        env,
        backend,
        seed: args.search_seed,
        jobs,
    };
    hyperctl_sweep::search::check(&sweep, &data).map_err(|e| match e {
        hyperctl_sweep::Error::Space(m) => anyhow::anyhow!("{}: {m}", args.space.display()),
        e => e.into(),
    })?;
    let _lock = crate::output::lock_dir(&args.out)?;
    let identity = identity_of(&args, &sweep, &space_text, backend)?;
    let meta = RunMeta::new(backend.name(), args.search_seed);
    crate::output::claim(&args.out, "sweep", &identity, &meta)?;
    hyperctl_sweep::search::resumable(&sweep, &args.out)?;
    eprintln!(
        "sweep: task `{}`, {} epochs each, budget {} epochs, {} ({}), controller `{}`, {jobs} in parallel",
        sweep.task.id,
        sweep.task.epochs,
        sweep.budget,
        method_name(&sweep.method),
        rungs_text(&sweep),
        sweep.controller,
    );
    let best = std::sync::Mutex::new(None::<(f64, usize)>);
    let on_trial = |t: &TrialRecord| {
        let mut best = best.lock().unwrap_or_else(|p| p.into_inner());
        if t.completed()
            && let Some(v) = t.final_val_loss
            && best.is_none_or(|(b, _)| v < b)
        {
            *best = Some((v, t.trial));
        }
        let outcome = if t.diverged {
            format!("diverged at epoch {}", t.epochs)
        } else if t.stopped {
            format!(
                "stopped at epoch {} (val {})",
                t.epochs,
                fmt(t.val_loss.last().copied().flatten())
            )
        } else {
            format!("val {}, test {}", fmt(t.final_val_loss), fmt(t.test_loss))
        };
        let incumbent = best.map_or("none yet".to_string(), |(v, i)| {
            format!("{} (trial {i})", fmt(Some(v)))
        });
        eprintln!(
            "trial {:>3}  epochs {:>6}/{}  {}  -> {outcome}  | best val {incumbent}",
            t.trial,
            t.epochs_spent,
            sweep.budget,
            hyperctl_sweep::space::describe(&t.config),
        );
    };
    let trials = hyperctl_sweep::run(&sweep, data.clone(), &args.out, &on_trial)?;
    let summary = hyperctl_sweep::summarize(&trials);
    write_atomic(
        &args.out.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "summary": summary,
            "meta_features": meta_features,
            "sweep": identity,
            "meta": meta,
        }))?
        .as_bytes(),
    )?;
    let md = summary_md(&sweep, &summary, &trials);
    write_atomic(&args.out.join("summary.md"), md.as_bytes())?;
    anytime_svg(
        &summary,
        &trials,
        &sweep.task.id,
        &args.out.join("anytime.svg"),
    )?;
    print!("{md}");
    eprintln!(
        "wrote {}/{{results.jsonl, summary.md, summary.json, anytime.svg}}",
        args.out.display()
    );
    Ok(())
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Random => "random search".into(),
        Method::Asha { eta, min_epochs } => format!("ASHA eta={eta}, min_epochs={min_epochs}"),
        Method::Predicted { eta, min_epochs, z } => {
            format!("predicted ASHA eta={eta}, min_epochs={min_epochs}, z={z}")
        }
    }
}

fn rungs_text(sweep: &Sweep) -> String {
    let rungs = sweep.method.rungs(sweep.task.epochs);
    if rungs.is_empty() {
        "no rungs".into()
    } else {
        format!(
            "rungs at epochs {}",
            rungs
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// What a sweep is made from: a rerun into the same folder must agree on all of it. The budget and
/// --max-trials are not part of it: a rerun with more of either continues the sweep.
fn identity_of(
    args: &SweepArgs,
    sweep: &Sweep,
    space_text: &str,
    backend: Backend,
) -> anyhow::Result<serde_json::Value> {
    let spec = hyperctl_controllers::Spec::parse(&args.controller)?;
    let policy = match spec.unguarded().0.policy_dir() {
        Some(dir) => Some(hyperctl_controllers::policy::fingerprint(dir)?),
        None => None,
    };
    let mut identity = serde_json::json!({
        "task": sweep.task,
        "space": space_text,
        "method": sweep.method,
        "controller": sweep.controller,
        "policy": policy,
        "predictor": sweep.predictor.as_deref(),
        "search_seed": sweep.seed,
        "env_config": sweep.env,
        "backend": backend.name(),
    });
    // Recorded only when there is one, so sweeps from before priors existed still resume.
    if !sweep.prior.is_empty() {
        identity["prior"] = serde_json::to_value(&sweep.prior)?;
    }
    Ok(identity)
}

fn summary_md(sweep: &Sweep, summary: &Summary, trials: &[TrialRecord]) -> String {
    let mut md = format!(
        "# Sweep on `{}`\n\n{} trials, {} epochs spent of a {}-epoch budget ({}; {}), controller `{}`, search seed {}. hyperctl {} ({}), backend {}.\n\n",
        sweep.task.id,
        summary.trials,
        summary.epochs_spent,
        sweep.budget,
        method_name(&sweep.method),
        rungs_text(sweep),
        sweep.controller,
        sweep.seed,
        env!("CARGO_PKG_VERSION"),
        env!("HYPERCTL_GIT_COMMIT"),
        sweep.backend.name(),
    );
    md.push_str(&format!(
        "- completed (whole budget): {}; stopped early: {}; diverged: {}\n",
        summary.completed, summary.stopped, summary.diverged
    ));
    if !sweep.prior.is_empty() {
        md.push_str(&format!(
            "- prior: the first {} trials are the best configurations of the nearest earlier sweeps (by dataset)\n",
            sweep.prior.len()
        ));
    }
    match &summary.best {
        Some(b) => md.push_str(&format!(
            "- **best** (lowest final validation loss): trial {}: `{}` — val {}, test {} (metric {})\n\n",
            b.trial,
            hyperctl_sweep::space::describe(&b.config),
            fmt(b.final_val_loss),
            fmt(b.test_loss),
            fmt(b.test_metric),
        )),
        None => md.push_str("- no trial trained its whole budget\n\n"),
    }
    let mut done: Vec<&TrialRecord> = trials.iter().filter(|t| t.completed()).collect();
    done.sort_by(|a, b| {
        a.final_val_loss
            .partial_cmp(&b.final_val_loss)
            .expect("finite")
    });
    md.push_str("| rank | trial | configuration | final val loss | test loss | epochs spent before |\n|---:|---:|---|---:|---:|---:|\n");
    for (rank, t) in done.iter().take(10).enumerate() {
        md.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {} |\n",
            rank + 1,
            t.trial,
            hyperctl_sweep::space::describe(&t.config),
            fmt(t.final_val_loss),
            fmt(t.test_loss),
            t.epochs_spent - t.epochs,
        ));
    }
    md.push_str("\nAnytime (after each trial: epochs spent, the incumbent's test loss): `summary.json` `anytime`, plotted in `anytime.svg`.\n");
    md
}

/// Each completed trial's final validation loss and the incumbent's test loss against the epochs
/// spent.
fn anytime_svg(
    summary: &Summary,
    trials: &[TrialRecord],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let err = |e| anyhow::anyhow!("plotting failed: {e:?}");
    let steps: Vec<(f64, f64)> = summary
        .anytime
        .iter()
        .filter_map(|p| p.best_test_loss.map(|v| (p.epochs_spent as f64, v)))
        .collect();
    let dots: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| t.final_val_loss.map(|v| (t.epochs_spent as f64, v)))
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .collect();
    let values: Vec<f64> = steps
        .iter()
        .chain(&dots)
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo / 1.2, hi * 1.2)
    } else {
        (0.1, 10.0)
    };
    let x_hi = summary.epochs_spent.max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("sweep on {title}"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_hi * 1.02, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("epochs spent")
            .y_desc("loss")
            .draw()
            .map_err(err)?;
        let mut stair = Vec::new();
        for (i, &(x, y)) in steps.iter().enumerate() {
            if i > 0 {
                stair.push((x, steps[i - 1].1));
            }
            stair.push((x, y));
        }
        if let Some(&(_, y)) = steps.last() {
            stair.push((x_hi, y));
        }
        chart
            .draw_series(LineSeries::new(stair, RED.stroke_width(2)))
            .map_err(err)?
            .label("incumbent's test loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(dots.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
            .map_err(err)?
            .label("completed trial's final val loss")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    write_atomic(path, svg.as_bytes()).context("cannot write the anytime plot")
}

/// `hyperctl curve-predictor`: fit or evaluate the learning-curve predictor of
/// `sweep --method predicted` on the trials of earlier sweeps.
#[derive(Debug, clap::Subcommand)]
pub enum CurvePredictorCommand {
    /// Fit on the completed trials of sweeps (their results.jsonl files) and write the predictor.
    Fit {
        /// Sweep results files (results.jsonl of `hyperctl sweep`, normally `--method random` on
        /// meta-train tasks, under the controller the predictor will serve).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// The ridge penalty (per sample); default: chosen by 5-fold cross-validation over the
        /// sweeps from 1e-4, 1e-3, 1e-2, 1e-1, 1 (the one that ranks held-out sweeps' trials best).
        #[arg(long)]
        ridge: Option<f64>,
        /// Where to write the predictor (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rank accuracy on sweeps: per sweep, Spearman's ρ between the predicted (from 10/25/50% of
    /// each trial's budget) and the final validation loss of its completed trials, next to the
    /// current loss's ρ.
    Eval {
        /// Sweep results files.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// The predictor file.
        #[arg(long)]
        predictor: PathBuf,
        /// Also write the table as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn read_sweeps(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<TrialRecord>>> {
    paths
        .iter()
        .map(|p| {
            if !p.is_file() {
                anyhow::bail!("{}: no such results file", p.display());
            }
            Ok(hyperctl_sweep::read_trials(p)?)
        })
        .collect()
}

/// The prior's entries: every subfolder of `dir` that holds a finished sweep (summary.json with
/// its dataset's meta-features, config.json, results.jsonl or results.jsonl.gz), in name order.
fn load_prior(dir: &Path) -> anyhow::Result<Vec<hyperctl_sweep::prior::PriorEntry>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--prior {}: cannot read the folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    folders.sort();
    if folders.is_empty() {
        anyhow::bail!(
            "--prior {}: no finished sweeps in it (subfolders with summary.json)",
            dir.display()
        );
    }
    let mut entries = Vec::new();
    for f in folders {
        let read = |name: &str| -> anyhow::Result<serde_json::Value> {
            let path = f.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
        };
        let summary = read("summary.json")?;
        let meta: hyperctl_sweep::prior::MetaFeatures =
            serde_json::from_value(summary["meta_features"].clone()).with_context(|| {
                format!(
                    "{}: no `meta_features` (a sweep from before they were recorded: rerun it into its folder)",
                    f.join("summary.json").display()
                )
            })?;
        let task = read("config.json")?["sweep"]["task"]["id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: no `sweep.task.id`", f.join("config.json").display()))?;
        let results = if f.join("results.jsonl").is_file() {
            f.join("results.jsonl")
        } else {
            f.join("results.jsonl.gz")
        };
        let trials = hyperctl_sweep::read_trials(&results)?;
        entries.push(hyperctl_sweep::prior::PriorEntry::from_trials(
            &task, meta, &trials,
        ));
    }
    Ok(entries)
}

/// Reads a predictor file, naming it on error.
pub fn load_predictor(path: &Path) -> anyhow::Result<hyperctl_sweep::CurvePredictor> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the predictor {}", path.display()))?;
    hyperctl_sweep::CurvePredictor::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Runs `hyperctl curve-predictor`.
pub fn curve_predictor(command: CurvePredictorCommand) -> anyhow::Result<()> {
    match command {
        CurvePredictorCommand::Fit {
            results,
            ridge,
            out,
        } => {
            if let Some(r) = ridge
                && !(r.is_finite() && r >= 0.0)
            {
                anyhow::bail!("--ridge {r}: expected a number >= 0");
            }
            let sweeps = read_sweeps(&results)?;
            let trials: usize = sweeps.iter().map(Vec::len).sum();
            let source = format!("{trials} trials of {} sweeps", sweeps.len());
            if ridge.is_none() && sweeps.len() < 2 {
                anyhow::bail!(
                    "choosing the ridge penalty by cross-validation needs 2+ sweeps ({} given); pass --ridge",
                    sweeps.len()
                );
            }
            let p = match ridge {
                Some(r) => hyperctl_sweep::CurvePredictor::fit(&sweeps, r, &source),
                None => hyperctl_sweep::CurvePredictor::fit_cv(
                    &sweeps,
                    &[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                    5.min(sweeps.len()).max(2),
                    &source,
                )
                .map(|(p, scores)| {
                    for (r, score) in scores {
                        eprintln!("ridge {r:e}: cross-validated mean rho {score:.3}");
                    }
                    p
                }),
            }
            .map_err(|e| anyhow::anyhow!("cannot fit: {e}"))?;
            write_atomic(&out, serde_json::to_string_pretty(&p)?.as_bytes())?;
            eprintln!(
                "fitted on {} prefixes of {trials} trials (ridge {:e}); wrote {}",
                p.samples,
                p.ridge,
                out.display()
            );
            Ok(())
        }
        CurvePredictorCommand::Eval {
            results,
            predictor,
            out,
        } => {
            let p = load_predictor(&predictor)?;
            let sweeps = read_sweeps(&results)?;
            let rows: Vec<_> = [0.1, 0.25, 0.5]
                .iter()
                .map(|&f| hyperctl_sweep::predictor::rank_accuracy(&p, &sweeps, f))
                .collect();
            println!(
                "| budget seen | sweeps | rho(predicted, final) | rho(current loss, final) | difference [95% CI] | predictor better / worse |"
            );
            println!("|---|---:|---:|---:|---|---|");
            for r in &rows {
                println!(
                    "| {:.0}% | {} | {:.3} | {:.3} | {:+.3} [{:+.3}, {:+.3}] | {} / {} |",
                    r.fraction * 100.0,
                    r.sweeps,
                    r.predicted,
                    r.current,
                    r.gain[0],
                    r.gain[1],
                    r.gain[2],
                    r.better,
                    r.worse
                );
            }
            if let Some(out) = out {
                write_atomic(&out, serde_json::to_string_pretty(&rows)?.as_bytes())?;
            }
            Ok(())
        }
    }
}
