//! Decision latency of a trained policy: the library call ([`LiveSession::observe`]) and a round
//! trip to `hyperctl serve` over loopback TCP, each per decision, p50/p99/mean in microseconds.
//!
//! ```sh
//! cargo build --release -p hyperctl --examples
//! ./target/release/examples/decision_latency [POLICY_DIR] [HYPERCTL_BINARY] [SESSIONS] [EPOCHS]
//! ```
//! Defaults: `experiments/meta-train-generated/run`, `target/release/hyperctl`, 100 sessions,
//! 20 epochs; every report carries 50 minibatch losses and gradient norms.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use hyperctl_controllers::{PolicyController, PolicyFolder};
use hyperctl_schedule_env::{EpochReport, LiveSession};
use hyperctl_tasks::Hyperparams;

fn report(session: usize, epoch: usize) -> EpochReport {
    let base = 2.0 / (1.0 + epoch as f64 * 0.3 + session as f64 * 0.01);
    EpochReport {
        train_losses: (0..50).map(|k| base * (1.0 + 0.01 * k as f64)).collect(),
        val_loss: base * 1.05,
        grad_norms: (0..50).map(|k| 1.0 + 0.02 * k as f64).collect(),
        ..Default::default()
    }
}

fn summary(mut us: Vec<f64>) -> serde_json::Value {
    us.sort_by(f64::total_cmp);
    let pick = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({
        "n": us.len(),
        "p50_us": pick(0.5),
        "p99_us": pick(0.99),
        "mean_us": us.iter().sum::<f64>() / us.len() as f64,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let policy = PathBuf::from(
        args.get(1)
            .map_or("experiments/meta-train-generated/run", |s| s),
    );
    let binary = PathBuf::from(args.get(2).map_or("target/release/hyperctl", |s| s));
    let sessions: usize = args.get(3).map_or(Ok(100), |s| s.parse())?;
    let epochs: usize = args.get(4).map_or(Ok(20), |s| s.parse())?;
    let folder = PolicyFolder::load(&policy)?;
    let start = Hyperparams {
        lr: 0.01,
        momentum: 0.9,
    };

    // Library: one LiveSession per run, each observe timed.
    let mut library = Vec::new();
    let mut library_decisions = Vec::new();
    for s in 0..sessions {
        let controller = PolicyController::new("p", folder.policy.clone());
        let (mut live, _) = LiveSession::open(
            Box::new(controller),
            folder.config.action_mapping.env.clone(),
            epochs,
            start,
            None,
            50,
            Some(hyperctl_schedule_env::Rollback::DEPLOYED),
        )?;
        for e in 1..=epochs {
            let r = report(s, e);
            let t = Instant::now();
            let hp = live.observe(&r)?.hp;
            library.push(t.elapsed().as_secs_f64() * 1e6);
            library_decisions.push(hp);
        }
    }

    // Server: the same sessions over one loopback connection, each request/reply timed.
    let mut child = Command::new(&binary)
        .args([
            "serve",
            "--policy",
            policy.to_str().unwrap_or("."),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it with cargo build --release -p hyperctl)",
                binary.display()
            )
        })?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line)?;
    let port: u16 = line.trim().rsplit(':').next().unwrap_or("").parse()?;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut ask =
        |request: String| -> Result<(serde_json::Value, f64), Box<dyn std::error::Error>> {
            let t = Instant::now();
            writer.write_all(request.as_bytes())?;
            writer.write_all(b"\n")?;
            let mut reply = String::new();
            reader.read_line(&mut reply)?;
            Ok((
                serde_json::from_str(&reply)?,
                t.elapsed().as_secs_f64() * 1e6,
            ))
        };
    let mut server = Vec::new();
    let mut same = true;
    for s in 0..sessions {
        ask(format!(
            r#"{{"op":"open","session":"b{s}","epochs":{epochs},"lr":{},"momentum":{},"steps_per_epoch":50}}"#,
            start.lr, start.momentum
        ))?;
        for e in 1..=epochs {
            let r = report(s, e);
            let request = serde_json::json!({"op": "observe", "session": format!("b{s}"), "epoch": e,
                "train_losses": r.train_losses, "val_loss": r.val_loss, "grad_norms": r.grad_norms});
            let (reply, us) = ask(request.to_string())?;
            server.push(us);
            let hp = library_decisions[s * epochs + e - 1];
            same &= reply["lr"].as_f64() == Some(hp.lr)
                && reply["momentum"].as_f64() == Some(hp.momentum);
        }
        ask(format!(r#"{{"op":"close","session":"b{s}"}}"#))?;
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}",
        serde_json::json!({
            "policy": policy,
            "sessions": sessions,
            "epochs": epochs,
            "minibatches_per_report": 50,
            "library": summary(library),
            "server_round_trip": summary(server),
            "server_equals_library": same,
        })
    );
    Ok(())
}
