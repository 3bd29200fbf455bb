//! `hyperctl meta-train --config FILE --out POLICY_DIR [--resume]`: PPO meta-training across a
//! task collection (crate `hyperctl-meta`), with a progress bar on a terminal and one log line
//! per iteration otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use hyperctl_meta::{MetaTrainConfig, Progress, Provenance, RunOptions};
use hyperctl_tasks::Backend;

use crate::output::RunMeta;

/// Arguments of `hyperctl meta-train`.
#[derive(Debug, Args)]
pub struct MetaTrainArgs {
    /// The run's config (TOML; see `experiments/smoke/meta_train.toml`).
    #[arg(long)]
    config: PathBuf,
    /// Output folder: the best policy, checkpoint, metrics, plot and card.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after N iterations of this invocation (continue later with --resume).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Run the environments and evaluations in N worker processes (`hyperctl worker`), placed
    /// by estimated cost; 0: threads of this process. Default: the number of cores, at most the
    /// config's `num_envs`. The policy is the same for any N.
    #[arg(long)]
    workers: Option<usize>,
}

/// Runs `hyperctl meta-train`.
pub fn run(args: MetaTrainArgs, backend: Backend) -> anyhow::Result<()> {
    let mut resolved = MetaTrainConfig::load(&args.config)?;
    // The config's `data_dir`, else the environment's HYPERCTL_DATA (the library reads none).
    if resolved.data_dir.is_none() {
        resolved.data_dir = crate::tasks_cmd::data_dir(None);
    }
    let meta = RunMeta::new(backend.name(), resolved.config.seed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = match args
        .workers
        .unwrap_or_else(|| cores.min(resolved.config.num_envs))
    {
        0 => None,
        count if count > 1024 => {
            anyhow::bail!("--workers {count}: at most 1024 worker processes on one machine")
        }
        count => Some({
            crate::ignore_sigpipe();
            hyperctl_meta::WorkerProgram {
                count,
                program: std::env::current_exe().map_err(|e| {
                    anyhow::anyhow!("cannot find this program to start workers: {e}")
                })?,
                args: vec!["worker".into()],
            }
        }),
    };
    let options = RunOptions {
        resume: args.resume,
        stop_after: args.stop_after,
        backend,
        // The policy network is tiny: its PPO updates run on the CPU whatever trains the tasks.
        ppo_backend: Backend::Flex,
        eval_threads: cores,
        workers,
        provenance: Provenance {
            version: meta.version.into(),
            git_commit: meta.git_commit.into(),
            command: meta.command.clone(),
            started_unix: meta.started_unix,
        },
    };
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} meta-train [{elapsed_precise}] {bar:30} {pos}/{len} iterations (eta {eta}) {msg}",
            )
            .expect("a valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut on_progress = |p: &Progress| {
        bar.set_length(p.num_iterations as u64);
        bar.set_position(p.iteration as u64);
        let eval = p
            .eval
            .map_or(String::new(), |e| format!(", eval {:.3}", e.mean_return));
        let msg = format!(
            "train return {}{eval}, best eval {}",
            fmt(p.row.mean_return),
            fmt(p.best.map(|b| b.mean_return))
        );
        if terminal {
            bar.set_message(msg);
        } else {
            eprintln!(
                "iteration {}/{} (step {}, {:.0} steps/s): {msg}",
                p.iteration, p.num_iterations, p.row.global_step, p.row.sps
            );
        }
    };
    if !terminal {
        eprintln!(
            "meta-train: loading tasks and {} ({})",
            if args.resume {
                "restoring the checkpoint"
            } else {
                "evaluating the untrained policy"
            },
            args.config.display()
        );
    }
    let state = hyperctl_meta::run(&resolved, &args.out, &options, &mut on_progress)?;
    bar.finish_and_clear();
    let untrained = state.evals.first().map(|e| e.mean_return);
    let best = state.best.as_ref().map(|b| &b.eval);
    println!(
        "{} {} ({} iterations): selected iteration {} with {} return {} (untrained policy: {}; {}/{} diverged)",
        if state.finished {
            "finished"
        } else {
            "stopped; continue with --resume:"
        },
        args.out.display(),
        state.rows.len(),
        best.map_or(0, |b| b.iteration),
        state.config.eval_split,
        fmt(best.map(|b| b.mean_return)),
        fmt(untrained),
        best.map_or(0, |b| b.diverged),
        best.map_or(0, |b| b.episodes),
    );
    Ok(())
}
