//! The output folder's files, all rewritten from the [`MetaState`] a checkpoint holds: the best
//! policy (`config.json`, `weights.json`), `CARD.md`, `metrics.csv`, `eval.jsonl` and
//! `learning_curve.svg`.

use std::fmt::Write as _;
use std::path::Path;

use hyperctl_files::write_atomic;
use plotters::prelude::*;
use serde_json::json;

use crate::{Error, MetaState, Resolved};

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Output(format!("plotting the learning curve failed: {e:?}"))
}

/// What the policy's `config.json` records about its training (deterministic: no timings).
pub fn training_record(resolved: &Resolved, state: &MetaState) -> serde_json::Value {
    let first = state.invocations.first();
    let best = state.best.as_ref().map(|b| &b.eval);
    let mut record = json!({
        "collection": state.config.collection,
        "split": state.config.split,
        "eval_split": state.config.eval_split,
        "train_tasks": state.tasks.0.len(),
        "eval_tasks": state.tasks.1.len(),
        "eval_seeds": state.config.eval_seeds,
        "seed": state.config.seed,
        "total_timesteps": state.config.total_timesteps,
        "num_envs": state.config.num_envs,
        "selected": best.map(|e| json!({
            "iteration": e.iteration,
            "global_step": e.global_step,
            "eval_mean_return": e.mean_return,
            "eval_median_return": e.median_return,
            "eval_diverged": e.diverged,
            "eval_episodes": e.episodes,
        })),
        "untrained_eval_mean_return": state.evals.first().map(|e| e.mean_return),
        "ppo": resolved.ppo,
        "backend": state.backend,
        "optimizer": state.optimizer,
        "version": first.map(|p| p.version.clone()),
        "git_commit": first.map(|p| p.git_commit.clone()),
    });
    // Written only when set, so earlier policies' records read as before.
    if let Some(starts) = &state.config.episode_starts {
        record["episode_starts"] = json!(starts);
    }
    record
}

/// Rewrites every output file from `state`.
pub fn write_outputs(
    out: &Path,
    resolved: &Resolved,
    state: &MetaState,
    num_iterations: usize,
) -> Result<(), Error> {
    if let Some(best) = &state.best {
        for (name, bytes) in hyperctl_controllers::policy::encode_folder(
            &best.policy,
            &state.config.env,
            training_record(resolved, state),
        ) {
            write_atomic(&out.join(name), &bytes)?;
        }
    }
    write_atomic(&out.join("metrics.csv"), &metrics_csv(state)?)?;
    let mut evals = String::new();
    for e in &state.evals {
        evals.push_str(&serde_json::to_string(e).expect("an eval serializes"));
        evals.push('\n');
    }
    write_atomic(&out.join("eval.jsonl"), evals.as_bytes())?;
    write_atomic(
        &out.join("learning_curve.svg"),
        learning_curve(state)?.as_bytes(),
    )?;
    write_atomic(
        &out.join("CARD.md"),
        card(resolved, state, num_iterations).as_bytes(),
    )?;
    Ok(())
}

fn metrics_csv(state: &MetaState) -> Result<Vec<u8>, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Output(format!("metrics.csv: {e}"));
    w.write_record([
        "iteration",
        "global_step",
        "wall_secs",
        "learning_rate",
        "episodes",
        "mean_return",
        "diverged",
        "value_loss",
        "policy_loss",
        "entropy",
        "approx_kl",
        "clipfrac",
        "explained_variance",
        "sps",
        "eval_mean_return",
        "eval_median_return",
        "eval_diverged",
        "rollout_secs",
        "update_secs",
        "eval_secs",
        "env_secs",
        "train_secs",
        "reset_secs",
        "straggler_secs",
    ])
    .map_err(csv_err)?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &state.rows {
        let e = state.evals.iter().find(|e| e.iteration == r.iteration);
        w.write_record([
            r.iteration.to_string(),
            r.global_step.to_string(),
            format!("{:.3}", r.wall_secs),
            r.learning_rate.to_string(),
            r.episodes.to_string(),
            opt(r.mean_return),
            r.diverged.to_string(),
            r.value_loss.to_string(),
            r.policy_loss.to_string(),
            r.entropy.to_string(),
            r.approx_kl.to_string(),
            r.clipfrac.to_string(),
            opt(r.explained_variance),
            format!("{:.1}", r.sps),
            opt(e.map(|e| e.mean_return)),
            opt(e.map(|e| e.median_return)),
            e.map(|e| e.diverged.to_string()).unwrap_or_default(),
            format!("{:.4}", r.timing.rollout_secs),
            format!("{:.4}", r.timing.update_secs),
            format!("{:.4}", r.timing.eval_secs),
            format!("{:.4}", r.timing.env_secs),
            format!("{:.4}", r.timing.train_secs),
            format!("{:.4}", r.timing.reset_secs),
            format!("{:.4}", r.timing.straggler_secs),
        ])
        .map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Output(format!("metrics.csv: {e}")))
}

/// Training return (mean of the episodes finished in each iteration, and a moving average) and
/// eval return against environment steps, with the untrained policy's eval as a reference line.
pub fn learning_curve(state: &MetaState) -> Result<String, Error> {
    let train: Vec<(f64, f64)> = state
        .rows
        .iter()
        .filter_map(|r| r.mean_return.map(|m| (r.global_step as f64, m)))
        .collect();
    let window = (train.len() / 10).max(1);
    let smooth: Vec<(f64, f64)> = (0..train.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let part = &train[lo..=i];
            (
                train[i].0,
                part.iter().map(|p| p.1).sum::<f64>() / part.len() as f64,
            )
        })
        .collect();
    let evals: Vec<(f64, f64)> = state
        .evals
        .iter()
        .map(|e| (e.global_step as f64, e.mean_return))
        .collect();
    let untrained = state.evals.first().map(|e| e.mean_return);
    let ys: Vec<f64> = train
        .iter()
        .chain(&evals)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo.is_finite() {
        let pad = ((hi - lo) * 0.1).max(0.05);
        (lo - pad, hi + pad)
    } else {
        (-1.0, 1.0)
    };
    let x_max = state
        .rows
        .last()
        .map_or(1.0, |r| r.global_step as f64)
        .max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "meta-training on {} ({} tasks); evaluated on {} ({} tasks)",
                    state.config.split,
                    state.tasks.0.len(),
                    state.config.eval_split,
                    state.tasks.1.len()
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max * 1.02, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("environment steps (decision intervals)")
            .x_label_formatter(&|v| {
                if *v >= 1000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.0}")
                }
            })
            .y_desc("episode return  ln(V0 / V_T)")
            .draw()
            .map_err(plot_err)?;
        let faint = RGBColor(160, 190, 230);
        chart
            .draw_series(LineSeries::new(
                train.iter().copied(),
                faint.stroke_width(1),
            ))
            .map_err(plot_err)?
            .label("training episodes (mean per iteration)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], faint));
        chart
            .draw_series(LineSeries::new(smooth, BLUE.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("training, moving average of {window}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        if let Some(u) = untrained {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, u), (x_max * 1.02, u)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?
                .label("eval: untrained policy (keeps the start lr)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        chart
            .draw_series(LineSeries::new(evals.iter().copied(), RED.stroke_width(2)))
            .map_err(plot_err)?
            .label("eval: deterministic policy (mean return)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(evals.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(plot_err)?;
        if let Some(b) = &state.best {
            let p = (b.eval.global_step as f64, b.eval.mean_return);
            chart
                .draw_series([Circle::new(p, 7, GREEN.stroke_width(3))])
                .map_err(plot_err)?
                .label("selected policy")
                .legend(|(x, y)| Circle::new((x + 10, y), 5, GREEN.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn card(resolved: &Resolved, state: &MetaState, num_iterations: usize) -> String {
    let c = &state.config;
    let mut s = String::new();
    let last = state.rows.last();
    let _ = writeln!(s, "# Policy card\n");
    let _ = writeln!(
        s,
        "PPO meta-trained learning-rate and momentum controller (hyperctl {}, commit {}, backend {}).\n",
        state
            .invocations
            .first()
            .map_or("?", |p| p.version.as_str()),
        state
            .invocations
            .first()
            .map_or("?", |p| p.git_commit.as_str()),
        state.backend
    );
    let _ = writeln!(s, "## Data\n");
    let _ = writeln!(
        s,
        "- collection: `{}`\n- trained on split `{}`: {} tasks\n- selected on split `{}` by its {} return: {} tasks × {} seed(s) (never trained on)\n- config: `{}`",
        c.collection,
        c.split,
        state.tasks.0.len(),
        c.eval_split,
        match c.select {
            crate::Select::Mean => "mean",
            crate::Select::Median => "median",
        },
        state.tasks.1.len(),
        c.eval_seeds,
        resolved.path.display()
    );
    let _ = writeln!(s, "\n## Budget\n");
    let _ = writeln!(
        s,
        "- {} of {} iterations, {} of {} environment steps, {} parallel environments{}\n- wall time: {} (training and evaluations)",
        last.map_or(0, |r| r.iteration),
        num_iterations,
        last.map_or(0, |r| r.global_step),
        c.total_timesteps,
        c.num_envs,
        if state.finished {
            ""
        } else {
            " (**unfinished**: resume with `--resume`)"
        },
        duration(last.map_or(0.0, |r| r.wall_secs))
    );
    let _ = writeln!(s, "\n## Metrics\n");
    let _ = writeln!(
        s,
        "Eval return = mean over eval episodes of ln(V₀/V_T) on validation loss (−{} for a diverged run).\n",
        c.env.crash_penalty
    );
    let _ = writeln!(
        s,
        "| policy | iteration | env steps | eval mean return | eval median | diverged |\n|---|---:|---:|---:|---:|---:|"
    );
    let mut line = |label: &str, e: &crate::EvalRecord| {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {:.4} | {:.4} | {}/{} |",
            e.iteration, e.global_step, e.mean_return, e.median_return, e.diverged, e.episodes
        );
    };
    if let Some(e) = state.evals.first() {
        line("untrained (keeps the start lr)", e);
    }
    if let Some(b) = &state.best {
        line("**selected** (this folder)", &b.eval);
    }
    if let Some(e) = state.evals.last() {
        line("latest", e);
    }
    if let Some(r) = last {
        let _ = writeln!(
            s,
            "\nLast iteration: approx_kl {:.4}, clipfrac {:.3}, explained variance {}, entropy {:.3}, {:.0} env steps/s.",
            r.approx_kl,
            r.clipfrac,
            r.explained_variance
                .map_or("n/a".into(), |v| format!("{v:.3}")),
            r.entropy,
            r.sps
        );
    }
    let total = |f: fn(&crate::IterationTiming) -> f64| -> f64 {
        state.rows.iter().map(|r| f(&r.timing)).sum()
    };
    let (rollout, update, eval) = (
        total(|t| t.rollout_secs),
        total(|t| t.update_secs),
        total(|t| t.eval_secs),
    );
    if rollout > 0.0 {
        let (env, train, reset) = (
            total(|t| t.env_secs),
            total(|t| t.train_secs),
            total(|t| t.reset_secs),
        );
        let _ = writeln!(
            s,
            "
Time (recorded iterations): rollout {rollout:.1} s, PPO update {update:.1} s, evaluations {eval:.1} s. \
             Summed over the envs (which step in parallel): {env:.1} s in env steps and resets, of which \
             {train:.1} s inner training ({:.1}% of env time) and {reset:.1} s starting episodes.",
            100.0 * train / env.max(1e-12)
        );
    }
    let _ = writeln!(
        s,
        "\nFiles: `metrics.csv` (per iteration), `eval.jsonl` (per evaluation and task), `learning_curve.svg`, `checkpoint.bin` (latest state, for `--resume`)."
    );
    let _ = writeln!(s, "\n## Commands\n");
    // As a user runs it: `hyperctl`, not the path of the binary on the machine that made it.
    for p in &state.invocations {
        let args: Vec<&str> = std::iter::once("hyperctl")
            .chain(p.command.iter().skip(1).map(String::as_str))
            .collect();
        let _ = writeln!(s, "    {}", args.join(" "));
    }
    let _ = writeln!(s, "\n## Config\n\n```toml");
    let _ = write!(
        s,
        "{}",
        toml::to_string(c).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    );
    let _ = writeln!(s, "```\n\nResolved PPO settings:\n\n```json");
    let _ = writeln!(
        s,
        "{}",
        serde_json::to_string_pretty(&resolved.ppo).expect("PPO settings serialize")
    );
    let _ = writeln!(s, "```");
    s
}

/// `42.0 s`, `12.5 min`, `3.2 h`.
fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
