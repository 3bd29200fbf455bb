//! `hyperctl`: learned, reactive hyperparameter control of DNN training.
//!
//! This crate is glue: it parses argv (the only crate that does), sets up logging, picks the
//! backend, reads and writes files, and calls the library crates. See `../shared/INTERFACE.md` and
//! the README for the commands.

#![warn(missing_docs)]

mod compare_cmd;
mod meta_train_cmd;
mod output;
mod plot;
mod serve;
mod sweep_cmd;
mod tasks_cmd;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: training steps allocate and free multi-MB tensors, which glibc
/// returns to the OS and page-faults back in every step (experiments/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Learned, reactive hyperparameter control of deep-network training.
#[derive(Debug, Parser)]
#[command(name = "hyperctl", version, about, long_about = None)]
struct Cli {
    /// Compute backend: `flex` (CPU, default) or `wgpu` (GPU; needs a build with `--features gpu`).
    #[arg(long, global = true, default_value = "flex", value_parser = parse_backend)]
    backend: hyperctl_tasks::Backend,
    /// Worker threads for the CPU backend's kernels (default: all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one task under one controller, printing one line (or JSON object) per epoch.
    Train(train::TrainArgs),
    /// Compare controllers on a task collection: every controller × task × seed, same budget.
    Compare(compare_cmd::CompareArgs),
    /// Meta-train a policy with PPO across a task collection (checkpointed; resumable).
    MetaTrain(meta_train_cmd::MetaTrainArgs),
    /// The shipped policy against the main baselines from untuned starts on held-out generated
    /// tasks: a table and a report, offline, in a few minutes.
    Demo(compare_cmd::DemoArgs),
    /// Graybox search over what the controller does not set (width, depth, weight decay, batch
    /// size, optimizer, ...): a controller runs every trial's lr and momentum, hopeless trials stop
    /// early at rungs; resumable.
    Sweep(sweep_cmd::SweepArgs),
    /// Fit or evaluate the learning-curve predictor of `sweep --method predicted`.
    #[command(subcommand)]
    CurvePredictor(sweep_cmd::CurvePredictorCommand),
    /// Serve a policy's decisions to training loops in any framework (JSON lines over TCP).
    Serve(serve::ServeArgs),
    /// List or validate task collections.
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCommand),
    /// A worker process of `compare --workers N` and `meta-train --workers N`: requests on
    /// stdin, answers on stdout (JSON lines; started by hyperctl itself).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Arguments of `hyperctl worker`.
#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Serve a learner at HOST:PORT (`meta-train --listen`) instead of stdin/stdout; the token
    /// comes from HYPERCTL_WORKER_TOKEN or --token-file.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// The file holding the run's token (`meta-train --listen` writes OUT/worker.token).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`hyperctl tasks list generated | head`) like other Unix tools,
    // instead of panicking in `println!`.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // `compare` and `meta-train` run many trainings in parallel: one kernel thread each unless
    // told otherwise.
    let threads = cli.threads.or(matches!(
        cli.command,
        Command::Compare(_) | Command::MetaTrain(_) | Command::Sweep(_) | Command::Worker(_)
    )
    .then_some(1));
    if let Some(threads) = threads {
        // SAFETY: nothing else runs yet (no threads have been spawned), so changing the process
        // environment cannot race with a reader.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string()) };
    }
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Train(args) => train::run(args, cli.backend),
        Command::Tasks(command) => tasks_cmd::run(command),
        Command::Compare(args) => compare_cmd::run(args, cli.backend),
        Command::Sweep(args) => sweep_cmd::run(args, cli.backend),
        Command::CurvePredictor(command) => sweep_cmd::curve_predictor(command),
        Command::Worker(args) => connected_worker(args),
        Command::MetaTrain(args) => meta_train_cmd::run(args, cli.backend),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => compare_cmd::demo(args, cli.backend),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Before starting worker processes: a write to a worker that died must be an error the pool
/// handles (it restarts the worker or names it), not SIGPIPE ending this process silently. The
/// default disposition (set in `main` for `| head`) stays for every command without workers.
fn ignore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: changing a signal's disposition to SIG_IGN has no handler that could race.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// `hyperctl worker [--connect HOST:PORT]`.
fn connected_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let Some(addr) = args.connect else {
        return worker(std::io::stdin().lock(), std::io::stdout().lock())
            .map_err(|e| anyhow::anyhow!("worker: {e}"));
    };
    let token = match (&args.token_file, std::env::var("HYPERCTL_WORKER_TOKEN")) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?
            .trim()
            .to_string(),
        (None, Ok(token)) => token,
        (None, Err(_)) => anyhow::bail!(
            "--connect needs the run's token: set HYPERCTL_WORKER_TOKEN or pass --token-file"
        ),
    };
    let stream = hyperctl_pool::process::connect(&addr, &token, std::time::Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("worker: {e}"))?;
    let output = stream.try_clone()?;
    // The learner closing the connection ends the worker, as stdin's end does.
    worker(std::io::BufReader::new(stream), output).map_err(|e| anyhow::anyhow!("worker: {e}"))
}

/// `hyperctl worker`: one answer line per request line until stdin ends. A line tagged `"meta"`
/// is meta-train's (environments, evaluations), any other a comparison's run.
fn worker(input: impl std::io::BufRead, mut output: impl std::io::Write) -> std::io::Result<()> {
    let mut compare = hyperctl_compare::worker::Server::default();
    let mut meta = hyperctl_meta::worker::Server::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let is_meta = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .is_some_and(|v| v.get("meta").is_some());
        let mut answer = if is_meta {
            meta.handle_line(&line)
        } else {
            compare.handle_line(&line)
        };
        answer.push('\n');
        output.write_all(answer.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// `--backend`: checked by clap, so a bad name is a usage error like any other flag's.
fn parse_backend(s: &str) -> Result<hyperctl_tasks::Backend, hyperctl_tasks::Error> {
    s.parse()
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: a log redirected to a file stays plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
