//! `hyperctl serve --policy POLICY_DIR --listen ADDR`: decisions for training loops in any
//! framework, as newline-delimited JSON over TCP (`../shared/INTERFACE.md`, README "Server").
//!
//! - Every request line gets exactly one reply line. Anything malformed (bad JSON, unknown op or
//!   field, wrong types, unknown session, an epoch out of order, a line over the size limit) gets
//!   `{"ok":false,"error":"..."}` and changes nothing; the connection and every other session go on.
//! - Sessions are global (a loop may reconnect) and independent: each is a [`LiveSession`] with
//!   its own featurizer state, all sharing one loaded policy.
//! - Every session runs the deployment guard by default (as `train --rollback`; `--no-guard` or
//!   `"guard": false` at open turns it off): an observe whose epoch diverged or blew up gets
//!   `"restore_epoch": K` — restore the model and optimizer state saved after epoch K, which an
//!   earlier reply marked `"keep": true` (0: the initial state) — and the reduced lr.
//! - Memory is bounded: request lines are limited (`--max-line-bytes`), session ids to
//!   [`MAX_SESSION_ID_BYTES`], open sessions (`--max-sessions`) and connections
//!   (`--max-connections`) are limited, a session's state does not grow with its epochs, and
//!   sessions idle longer than `--idle-timeout` are closed. No reply echoes unbounded input.
//! - Out of file handles (EMFILE/ENFILE), the accept loop backs off (up to 1 s) and logs the
//!   condition at most once every 10 s, instead of spinning.
//! - SIGINT or SIGTERM stops accepting connections and exits cleanly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hyperctl_controllers::{PolicyController, PolicyFolder};
use hyperctl_ppo::Policy;
use hyperctl_schedule_env::{EnvConfig, EpochReport, LiveDecision, LiveSession, Rollback};
use hyperctl_tasks::Hyperparams;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest session id accepted, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// The guard every session runs unless turned off (`train --rollback`'s defaults).
const GUARD: Rollback = Rollback::DEPLOYED;

/// Arguments of `hyperctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The policy folder to serve.
    #[arg(long)]
    policy: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Close sessions idle for longer than this many seconds (at least 1).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Longest request line accepted, in bytes (at least 64).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(64..=(1 << 30)))]
    max_line_bytes: u64,
    /// Most sessions open at once (at least 1).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_sessions: u64,
    /// Most connections open at once (at least 1); a client beyond it gets one error line.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Run sessions without the deployment guard (no rollbacks; a diverged epoch ends the run).
    #[arg(long)]
    no_guard: bool,
}

/// One request line. Losses may be `null` where the loop saw a non-finite value.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Open {
        session: String,
        epochs: usize,
        lr: f64,
        momentum: f64,
        #[serde(default)]
        initial_val_loss: Option<f64>,
        #[serde(default)]
        steps_per_epoch: Option<usize>,
        #[serde(default)]
        guard: Option<bool>,
    },
    Observe {
        session: String,
        epoch: usize,
        train_losses: Vec<Option<f64>>,
        val_loss: Option<f64>,
        #[serde(default)]
        grad_norms: Vec<Option<f64>>,
        #[serde(default)]
        update_ratio: Option<f64>,
        #[serde(default)]
        val_metric: Option<f64>,
    },
    Close {
        session: String,
    },
}

struct Entry {
    live: LiveSession,
    last_used: Instant,
}

/// The server's state: the policy and the open sessions.
pub struct Server {
    spec: String,
    policy: Arc<Policy>,
    env: EnvConfig,
    sessions: Mutex<HashMap<String, Entry>>,
    max_sessions: usize,
    guard: bool,
}

/// Replies are structs so their keys keep the documented order (`ok` first).
#[derive(serde::Serialize)]
struct Reply<'a> {
    ok: bool,
    lr: f64,
    momentum: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    guard: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send: Option<[&'static str; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_epoch: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keep: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    diverged: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    done: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(serde::Serialize)]
struct Failure {
    ok: bool,
    error: String,
}

/// The fields an observe should carry for the policy to see what it saw in training.
const SEND: [&str; 4] = ["train_losses", "val_loss", "grad_norms", "update_ratio"];

fn reply_open(hp: Hyperparams, guard: bool) -> String {
    serde_json::to_string(&Reply {
        ok: true,
        lr: hp.lr,
        momentum: hp.momentum,
        guard: Some(guard),
        send: Some(SEND),
        restore_epoch: None,
        keep: false,
        diverged: false,
        done: false,
        warnings: &[],
    })
    .expect("a decision serializes")
}

fn reply_observe(d: &LiveDecision) -> String {
    serde_json::to_string(&Reply {
        ok: true,
        lr: d.hp.lr,
        momentum: d.hp.momentum,
        guard: None,
        send: None,
        restore_epoch: d.restore_epoch,
        keep: d.keep,
        diverged: d.diverged,
        done: d.done,
        warnings: &d.warnings,
    })
    .expect("a decision serializes")
}

fn error(message: impl std::fmt::Display) -> String {
    serde_json::to_string(&Failure {
        ok: false,
        error: message.to_string(),
    })
    .expect("an error serializes")
}

/// Checks a session id before it is stored or echoed.
fn check_id(session: &str) -> Result<(), String> {
    if session.is_empty() {
        return Err("session: expected a non-empty id".into());
    }
    if session.len() > MAX_SESSION_ID_BYTES {
        return Err(format!(
            "session: the id is {} bytes; at most {MAX_SESSION_ID_BYTES} are allowed",
            session.len()
        ));
    }
    Ok(())
}

/// A serde error message without the offending input: serde_json quotes unknown strings (a
/// multi-megabyte op or field name would come back whole), so anything quoted is cut short.
fn bounded(message: String) -> String {
    const MAX: usize = 200;
    if message.len() <= MAX {
        return message;
    }
    let mut cut = MAX;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes in all)", &message[..cut], message.len())
}

impl Server {
    /// Answers one request line.
    pub fn handle_line(&self, line: &[u8]) -> String {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim(),
            Err(_) => return error("the request is not UTF-8"),
        };
        if text.is_empty() {
            return error("empty request: expected one JSON object per line");
        }
        let request: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => return error(bounded(format!("invalid request: {e}"))),
        };
        let (Request::Open { session, .. }
        | Request::Observe { session, .. }
        | Request::Close { session }) = &request;
        if let Err(e) = check_id(session) {
            return error(e);
        }
        let mut sessions = self.sessions.lock().expect("no poisoned lock");
        match request {
            Request::Open {
                session,
                epochs,
                lr,
                momentum,
                initial_val_loss,
                steps_per_epoch,
                guard,
            } => {
                if sessions.contains_key(&session) {
                    return error(format!("session `{session}` is already open"));
                }
                if sessions.len() >= self.max_sessions {
                    return error(format!(
                        "{} sessions are open, the most this server allows; close some",
                        sessions.len()
                    ));
                }
                let controller = PolicyController::new(self.spec.clone(), self.policy.clone());
                let guarded = guard.unwrap_or(self.guard);
                match LiveSession::open(
                    Box::new(controller),
                    self.env.clone(),
                    epochs,
                    Hyperparams { lr, momentum },
                    initial_val_loss,
                    steps_per_epoch.unwrap_or(1),
                    guarded.then_some(GUARD),
                ) {
                    Ok((live, hp)) => {
                        sessions.insert(
                            session,
                            Entry {
                                live,
                                last_used: Instant::now(),
                            },
                        );
                        reply_open(hp, guarded)
                    }
                    Err(e) => error(e),
                }
            }
            Request::Observe {
                session,
                epoch,
                train_losses,
                val_loss,
                grad_norms,
                update_ratio,
                val_metric,
            } => {
                let Some(entry) = sessions.get_mut(&session) else {
                    return error(format!("no open session `{session}` (open it first)"));
                };
                let expected = entry.live.epochs_done() + 1;
                if epoch != expected {
                    return error(format!(
                        "session `{session}`: epoch {epoch} out of order; expected epoch {expected}"
                    ));
                }
                if epoch > entry.live.epochs() {
                    return error(format!(
                        "session `{session}`: epoch {epoch} is beyond its budget of {} epochs",
                        entry.live.epochs()
                    ));
                }
                let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
                let report = EpochReport {
                    train_losses: train_losses.into_iter().map(nan).collect(),
                    val_loss: nan(val_loss),
                    grad_norms: grad_norms.into_iter().map(nan).collect(),
                    update_ratio,
                    val_metric,
                };
                entry.last_used = Instant::now();
                match entry.live.observe(&report) {
                    Ok(decision) => {
                        for w in &decision.warnings {
                            tracing::warn!(session = %session, "{w}");
                        }
                        if let Some(k) = decision.restore_epoch {
                            tracing::info!(session = %session, epoch, restore_epoch = k,
                                lr = decision.hp.lr, "epoch undone by the guard");
                        }
                        reply_observe(&decision)
                    }
                    Err(e) => error(format!("session `{session}`: {e}")),
                }
            }
            Request::Close { session } => match sessions.remove(&session) {
                Some(_) => r#"{"ok":true}"#.to_string(),
                None => error(format!("no open session `{session}`")),
            },
        }
    }

    /// Closes sessions idle for longer than `timeout`; returns how many.
    fn expire(&self, timeout: Duration) -> usize {
        let mut sessions = self.sessions.lock().expect("no poisoned lock");
        let before = sessions.len();
        sessions.retain(|_, e| e.last_used.elapsed() <= timeout);
        before - sessions.len()
    }
}

/// Serves one connection until it closes.
async fn connection(
    stream: tokio::net::TcpStream,
    server: Arc<Server>,
    max_line: usize,
) -> std::io::Result<()> {
    // One small reply per request: send it at once (no Nagle delay waiting for an ACK).
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() > max_line && line.last() != Some(&b'\n') {
            // Drop the rest of the oversized line without holding it.
            loop {
                let chunk = reader.fill_buf().await?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = chunk.len();
                        reader.consume(len);
                    }
                }
            }
            error(format!("request line longer than {max_line} bytes"))
        } else {
            server.handle_line(&line)
        };
        let mut answer = answer.into_bytes();
        answer.push(b'\n');
        write.write_all(&answer).await?;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `hyperctl serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let folder = PolicyFolder::load(&args.policy)?;
    let server = Arc::new(Server {
        spec: format!("policy:{}", args.policy.display()),
        env: folder.config.action_mapping.env.clone(),
        policy: Arc::new(folder.policy),
        sessions: Mutex::new(HashMap::new()),
        max_sessions: args.max_sessions as usize,
        guard: !args.no_guard,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        tracing::info!(%addr, policy = %args.policy.display(), guard = !args.no_guard, "serving");
        let timeout = Duration::from_secs(args.idle_timeout);
        let janitor = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(
                (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30)),
            );
            loop {
                tick.tick().await;
                let n = janitor.expire(timeout);
                if n > 0 {
                    tracing::info!(closed = n, "idle sessions expired");
                }
            }
        });
        let connections = Arc::new(tokio::sync::Semaphore::new(args.max_connections as usize));
        let max_line = args.max_line_bytes as usize;
        let mut backoff = AcceptBackoff::default();
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff.succeeded();
                        let Ok(permit) = connections.clone().try_acquire_owned() else {
                            // Over the limit: say so and close, without holding the client.
                            tokio::spawn(refuse(stream, args.max_connections));
                            continue;
                        };
                        let server = server.clone();
                        tokio::spawn(async move {
                            if let Err(e) = connection(stream, server, max_line).await {
                                tracing::debug!(%peer, "connection ended: {e}");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        let pause = backoff.failed(&e);
                        tokio::time::sleep(pause).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        let open = server.sessions.lock().expect("no poisoned lock").len();
        eprintln!("shutting down ({open} session(s) open)");
        Ok::<(), anyhow::Error>(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Tells a client beyond `--max-connections` why it is closed.
async fn refuse(mut stream: tokio::net::TcpStream, max: u64) {
    let line = error(format!(
        "the server has {max} connections open, the most it allows; try again later"
    )) + "\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
}

/// The accept loop's pause after a failed accept (out of file handles above all): doubling from
/// 10 ms up to 1 s while failures go on, so a full descriptor table does not spin a core; the
/// warning is logged at most once every 10 s, with the count of failures since.
#[derive(Default)]
struct AcceptBackoff {
    pause: Duration,
    failures: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            // EMFILE (24) / ENFILE (23): the process or system is out of file handles.
            let hint = match e.raw_os_error() {
                Some(23 | 24) => {
                    " (out of file handles: raise `ulimit -n` or lower --max-connections)"
                }
                _ => "",
            };
            tracing::warn!(
                failures = self.failures,
                "accept failed: {e}{hint}; pausing new connections for up to 1 s"
            );
            self.last_log = Some(Instant::now());
            self.failures = 0;
        }
        self.pause
    }

    fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }
}
