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
    /// Instead of starting the workers, listen on HOST:PORT or PORT (HOST default 127.0.0.1: loopback
    /// unless told otherwise) for --workers N of them to connect (`hyperctl worker --connect`,
    /// started by a cluster manager such as Ray). They must present the run's token: the
    /// environment's HYPERCTL_WORKER_TOKEN, else a fresh one written to OUT/worker.token.
    #[arg(long, value_name = "[HOST:]PORT")]
    listen: Option<String>,
}

/// How long a listening learner waits for each worker (and for each replacement).
const WORKER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `--workers N` child processes (None for 0: threads).
fn spawned(count: usize) -> anyhow::Result<Option<hyperctl_meta::WorkerProgram>> {
    match count {
        0 => Ok(None),
        count if count > 1024 => {
            anyhow::bail!("--workers {count}: at most 1024 worker processes on one machine")
        }
        count => {
            crate::ignore_sigpipe();
            Ok(Some(hyperctl_meta::WorkerProgram::Spawn {
                count,
                program: std::env::current_exe().map_err(|e| {
                    anyhow::anyhow!("cannot find this program to start workers: {e}")
                })?,
                args: vec!["worker".into()],
            }))
        }
    }
}

/// `--listen [HOST:]PORT` for `--workers N` connecting workers, with the run's token.
fn listen_for(
    listen: &str,
    count: Option<usize>,
    out: &std::path::Path,
) -> anyhow::Result<hyperctl_meta::WorkerProgram> {
    let count = match count {
        Some(n) if (1..=65536).contains(&n) => n,
        _ => anyhow::bail!("--listen needs --workers N (1 to 65536): how many workers to wait for"),
    };
    let addr = if listen.contains(':') {
        listen.to_string()
    } else {
        format!("127.0.0.1:{listen}")
    };
    let listener = std::net::TcpListener::bind(&addr)
        .map_err(|e| anyhow::anyhow!("--listen {listen}: cannot listen on {addr}: {e}"))?;
    let token = match std::env::var("HYPERCTL_WORKER_TOKEN") {
        Ok(t) if t.len() >= 16 && !t.contains(char::is_whitespace) => t,
        Ok(_) => {
            anyhow::bail!("HYPERCTL_WORKER_TOKEN must be at least 16 characters without spaces")
        }
        Err(_) => {
            use rand::RngExt;
            let token = format!("{:032x}", rand::rng().random::<u128>());
            std::fs::create_dir_all(out)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
            let path = out.join("worker.token");
            write_private(&path, &token)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            token
        }
    };
    crate::ignore_sigpipe();
    let bound = listener.local_addr()?;
    eprintln!(
        "meta-train: waiting for {count} workers on {bound}: hyperctl worker --connect {bound} \
         (token: HYPERCTL_WORKER_TOKEN, or --token-file {})",
        out.join("worker.token").display()
    );
    Ok(hyperctl_meta::WorkerProgram::Listen {
        count,
        listener: std::sync::Arc::new(listener),
        token,
        wait: WORKER_WAIT,
    })
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
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
    let workers = match (&args.listen, args.workers) {
        (Some(listen), count) => Some(listen_for(listen, count, &args.out)?),
        (None, count) => spawned(count.unwrap_or_else(|| cores.min(resolved.config.num_envs)))?,
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
