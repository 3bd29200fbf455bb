//! `hyperctl serve --policy POLICY_DIR --listen ADDR`: decisions for training loops in any
//! framework, as newline-delimited JSON over TCP (`../shared/INTERFACE.md`, README "Server").
//!
//! - Every request line gets exactly one reply line. Anything malformed (bad JSON, unknown op or
//!   field, wrong types, unknown session, an epoch out of order, a line over the size limit) gets
//!   `{"ok":false,"error":"..."}` and changes nothing; the connection and every other session go on.
//! - Sessions are global (a loop may reconnect) and independent: each is a [`LiveSession`] with
//!   its own featurizer state, all sharing one loaded policy.
//! - Memory is bounded: request lines are limited (`--max-line-bytes`), so are open sessions
//!   (`--max-sessions`), and sessions idle longer than `--idle-timeout` are closed.
//! - SIGINT or SIGTERM stops accepting connections and exits cleanly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hyperctl_controllers::{PolicyController, PolicyFolder};
use hyperctl_ppo::Policy;
use hyperctl_schedule_env::{EnvConfig, EpochReport, LiveSession};
use hyperctl_tasks::Hyperparams;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Arguments of `hyperctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The policy folder to serve.
    #[arg(long)]
    policy: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Close sessions idle for longer than this many seconds.
    #[arg(long, default_value_t = 3600)]
    idle_timeout: u64,
    /// Longest request line accepted, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_line_bytes: usize,
    /// Most sessions open at once.
    #[arg(long, default_value_t = 10_000)]
    max_sessions: usize,
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
}

/// Replies are structs so their keys keep the documented order (`ok` first).
#[derive(serde::Serialize)]
struct Decision {
    ok: bool,
    lr: f64,
    momentum: f64,
}

#[derive(serde::Serialize)]
struct Failure {
    ok: bool,
    error: String,
}

fn reply(hp: Hyperparams) -> String {
    serde_json::to_string(&Decision {
        ok: true,
        lr: hp.lr,
        momentum: hp.momentum,
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
            Err(e) => return error(format!("invalid request: {e}")),
        };
        let mut sessions = self.sessions.lock().expect("no poisoned lock");
        match request {
            Request::Open {
                session,
                epochs,
                lr,
                momentum,
                initial_val_loss,
                steps_per_epoch,
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
                match LiveSession::open(
                    Box::new(controller),
                    self.env.clone(),
                    epochs,
                    Hyperparams { lr, momentum },
                    initial_val_loss,
                    steps_per_epoch.unwrap_or(1),
                ) {
                    Ok((live, hp)) => {
                        sessions.insert(
                            session,
                            Entry {
                                live,
                                last_used: Instant::now(),
                            },
                        );
                        reply(hp)
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
                    Ok(hp) => reply(hp),
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
    if args.max_line_bytes < 64 {
        anyhow::bail!("--max-line-bytes must be at least 64");
    }
    let server = Arc::new(Server {
        spec: format!("policy:{}", args.policy.display()),
        env: folder.config.action_mapping.env.clone(),
        policy: Arc::new(folder.policy),
        sessions: Mutex::new(HashMap::new()),
        max_sessions: args.max_sessions.max(1),
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
        tracing::info!(%addr, policy = %args.policy.display(), "serving");
        let timeout = Duration::from_secs(args.idle_timeout.max(1));
        let janitor = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((timeout / 4).min(Duration::from_secs(30)));
            loop {
                tick.tick().await;
                let n = janitor.expire(timeout);
                if n > 0 {
                    tracing::info!(closed = n, "idle sessions expired");
                }
            }
        });
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let server = server.clone();
                        let max_line = args.max_line_bytes;
                        tokio::spawn(async move {
                            if let Err(e) = connection(stream, server, max_line).await {
                                tracing::debug!(%peer, "connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => tracing::warn!("accept failed: {e}"),
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
