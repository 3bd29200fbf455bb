//! The decisions the shipped policy makes for a fixed set of scripted runs, kept in
//! `crates/python/tests/fixtures/decisions.json`: this test checks that the library still makes
//! exactly them, and the Python package's tests check that it makes exactly them too (decision
//! parity between Rust and Python, bit for bit). After an intended change of the decision path,
//! regenerate with `HYPERCTL_UPDATE_FIXTURES=1 cargo test -p hyperctl-decide --test decision_fixture`.

use std::path::Path;

use hyperctl_decide::{
    EpochReport, Hyperparams, LiveSession, PolicyController, PolicyFolder, Rollback,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    name: String,
    epochs: usize,
    lr: f64,
    momentum: f64,
    steps_per_epoch: usize,
    guard: bool,
    first: [f64; 2],
    epochs_reported: Vec<Epoch>,
}

/// One report and the answer to it. Non-finite values are `null` (JSON has no NaN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Epoch {
    train_losses: Vec<Option<f64>>,
    val_loss: Option<f64>,
    grad_norms: Vec<f64>,
    update_ratio: Option<f64>,
    lr: f64,
    momentum: f64,
    restore_epoch: Option<usize>,
    keep: bool,
    diverged: bool,
    done: bool,
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// What happens to a scripted run in one epoch.
#[derive(Clone, Copy)]
struct Script {
    /// This epoch reports a non-finite loss.
    nan_at: Option<usize>,
    /// This epoch reports a wrecked model (validation loss × 50).
    blowup_at: Option<usize>,
    /// Reports carry grad norms and the update ratio.
    full: bool,
}

/// A training run's statistics, scripted: the loss falls faster at a higher lr, and climbs when
/// the lr is too high.
fn report(epoch: usize, hp: Hyperparams, s: Script) -> EpochReport {
    let progress = (hp.lr.ln() + 8.0).clamp(0.0, 10.0) / 10.0;
    let base = 2.0 * (-(epoch as f64) * (0.05 + 0.2 * progress)).exp() + 0.1;
    let base = if hp.lr > 0.5 {
        base * (1.0 + hp.lr)
    } else {
        base
    };
    let mut train: Vec<f64> = (0..8)
        .map(|k| base * (1.0 + 0.03 * ((k * 7 + epoch) % 5) as f64))
        .collect();
    let mut val = base * 1.1;
    if s.nan_at == Some(epoch) {
        train[5] = f64::NAN;
        val = f64::NAN;
    }
    if s.blowup_at == Some(epoch) {
        val *= 50.0;
    }
    EpochReport {
        train_losses: train,
        val_loss: val,
        grad_norms: if s.full {
            (0..8)
                .map(|k| 1.5 / (1.0 + epoch as f64) + 0.01 * k as f64)
                .collect()
        } else {
            Vec::new()
        },
        update_ratio: s.full.then(|| 0.02 * hp.lr.sqrt() / (1.0 + epoch as f64)),
        val_metric: None,
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn run(
    folder: &PolicyFolder,
    name: &str,
    epochs: usize,
    start: Hyperparams,
    guard: bool,
    s: Script,
) -> Run {
    let controller = PolicyController::new("policy:default", folder.policy.clone());
    let (mut session, first) = LiveSession::open(
        Box::new(controller),
        folder.config.action_mapping.env.clone(),
        epochs,
        start,
        None,
        8,
        guard.then_some(Rollback::DEPLOYED),
    )
    .unwrap();
    let mut hp = first;
    let mut out = Vec::new();
    for epoch in 1..=epochs + 10 {
        let r = report(epoch, hp, s);
        let d = session.observe(&r).unwrap();
        out.push(Epoch {
            train_losses: r.train_losses.iter().map(|&v| finite(v)).collect(),
            val_loss: finite(r.val_loss),
            grad_norms: r.grad_norms.clone(),
            update_ratio: r.update_ratio,
            lr: d.hp.lr,
            momentum: d.hp.momentum,
            restore_epoch: d.restore_epoch,
            keep: d.keep,
            diverged: d.diverged,
            done: d.done,
        });
        hp = d.hp;
        if d.done {
            break;
        }
    }
    Run {
        name: name.into(),
        epochs,
        lr: start.lr,
        momentum: start.momentum,
        steps_per_epoch: 8,
        guard,
        first: [first.lr, first.momentum],
        epochs_reported: out,
    }
}

#[test]
fn the_shipped_policy_makes_the_recorded_decisions() {
    let folder = PolicyFolder::load(&root().join("policies/default")).unwrap();
    let hp = |lr, momentum| Hyperparams { lr, momentum };
    let plain = Script {
        nan_at: None,
        blowup_at: None,
        full: true,
    };
    let runs = vec![
        run(&folder, "smooth", 12, hp(0.01, 0.9), false, plain),
        run(&folder, "low-start", 10, hp(1e-4, 0.0), false, plain),
        run(
            &folder,
            "no-grad-stats",
            8,
            hp(0.05, 0.9),
            false,
            Script {
                full: false,
                ..plain
            },
        ),
        run(
            &folder,
            "diverges",
            10,
            hp(0.1, 0.9),
            false,
            Script {
                nan_at: Some(4),
                ..plain
            },
        ),
        run(
            &folder,
            "guarded",
            12,
            hp(0.1, 0.9),
            true,
            Script {
                nan_at: Some(4),
                blowup_at: Some(7),
                full: true,
            },
        ),
    ];
    assert!(
        runs[4]
            .epochs_reported
            .iter()
            .filter(|e| e.restore_epoch.is_some())
            .count()
            == 2,
        "the guarded run rolls back twice"
    );
    assert!(runs[3].epochs_reported.last().unwrap().diverged);
    let path = root().join("crates/python/tests/fixtures/decisions.json");
    let text = serde_json::to_string_pretty(&runs).unwrap() + "\n";
    if std::env::var_os("HYPERCTL_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let recorded: Vec<Run> = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("the fixture exists (HYPERCTL_UPDATE_FIXTURES=1)"),
    )
    .unwrap();
    assert_eq!(
        recorded, runs,
        "the library's decisions changed; if intended, regenerate the fixture (module docs)"
    );
}
