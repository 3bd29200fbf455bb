//! Meta-training end to end on the smoke config (experiments/smoke): a loadable policy that is the
//! one evaluated; stop after k iterations + resume = the uninterrupted run; damaged or foreign
//! checkpoints are refused with a reason.

use std::path::{Path, PathBuf};

use hyperctl_controllers::{PolicyController, PolicyFolder};
use hyperctl_meta::{MetaState, MetaTrainConfig, Provenance, Resolved, RunOptions, run};
use hyperctl_schedule_env::{EnvConfig, ScheduleEnv, run_schedule};
use hyperctl_tasks::Backend;

fn smoke_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke/meta_train.toml")
}

fn smoke() -> Resolved {
    MetaTrainConfig::load(&smoke_path()).unwrap()
}

fn options(resume: bool, stop_after: Option<usize>, threads: usize) -> RunOptions {
    RunOptions {
        resume,
        stop_after,
        backend: Backend::Flex,
        ppo_backend: Backend::Flex,
        eval_threads: threads,
        workers: None,
        provenance: Provenance {
            version: "test".into(),
            git_commit: "test".into(),
            command: vec!["test".into()],
            started_unix: 0,
        },
    }
}

fn go(
    resolved: &Resolved,
    out: &Path,
    resume: bool,
    stop: Option<usize>,
) -> Result<MetaState, String> {
    // Interrupted runs evaluate on 1 thread, whole runs on 2: results must not depend on it.
    let threads = if stop.is_some() { 1 } else { 2 };
    run(resolved, out, &options(resume, stop, threads), &mut |_| {}).map_err(|e| e.to_string())
}

#[test]
fn the_smoke_run_writes_a_loadable_policy_that_is_the_one_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let resolved = smoke();
    let state = go(&resolved, dir.path(), false, None).unwrap();
    assert!(state.finished);
    assert_eq!(state.rows.len(), 4);
    // Evaluations: the untrained policy, iterations 2 and 4.
    let iterations: Vec<usize> = state.evals.iter().map(|e| e.iteration).collect();
    assert_eq!(iterations, vec![0, 2, 4]);
    for name in [
        "config.json",
        "weights.json",
        "CARD.md",
        "checkpoint.bin",
        "metrics.csv",
        "eval.jsonl",
        "learning_curve.svg",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 iterations:\n{csv}");
    // The time breakdown: every iteration rolls out and updates; the inner training is a part
    // of the env time; only the evaluating iterations (2 and 4) have evaluation time.
    assert!(csv.lines().next().unwrap().ends_with(
        "rollout_secs,update_secs,eval_secs,env_secs,train_secs,reset_secs,straggler_secs"
    ));
    for r in &state.rows {
        let t = r.timing;
        assert!(t.rollout_secs > 0.0 && t.update_secs > 0.0, "{t:?}");
        assert!(t.train_secs > 0.0 && t.train_secs <= t.env_secs, "{t:?}");
        assert!(t.train_secs + t.reset_secs <= t.env_secs + 1e-9, "{t:?}");
        assert_eq!(t.eval_secs > 0.0, r.iteration % 2 == 0, "{t:?}");
    }
    let card = std::fs::read_to_string(dir.path().join("CARD.md")).unwrap();
    assert!(card.contains("inner training"), "{card}");

    // The folder's policy, run again through run_schedule on the eval tasks with the same
    // seeds, reproduces the selected evaluation exactly.
    let folder = PolicyFolder::load(dir.path()).unwrap();
    let best = state.best.as_ref().unwrap();
    assert_eq!(folder.policy, best.policy);
    let selected = &folder.config.training["selected"];
    assert_eq!(
        selected["iteration"].as_u64().unwrap() as usize,
        best.eval.iteration
    );
    let collection = hyperctl_collections::load(&resolved.collection, None).unwrap();
    let mut returns = Vec::new();
    for t in collection.split(Some("meta-val")) {
        for s in 0..resolved.config.eval_seeds as u64 {
            let mut env =
                ScheduleEnv::new(t.task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
            let mut ctl = PolicyController::new("p", folder.policy.clone());
            returns.push(run_schedule(&mut env, &mut ctl, t.task.seed + s, |_| {}).episode_return);
        }
    }
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    assert_eq!(mean, best.eval.mean_return);
    assert_eq!(selected["eval_mean_return"].as_f64().unwrap(), mean);
}

#[test]
fn stopping_and_resuming_ends_with_exactly_the_uninterrupted_policy() {
    let resolved = smoke();
    let whole = tempfile::tempdir().unwrap();
    let full = go(&resolved, whole.path(), false, None).unwrap();

    let parts = tempfile::tempdir().unwrap();
    let first = go(&resolved, parts.path(), false, Some(1)).unwrap();
    assert!(!first.finished);
    assert_eq!(first.rows.len(), 1);
    let card = std::fs::read_to_string(parts.path().join("CARD.md")).unwrap();
    assert!(card.contains("unfinished"), "{card}");
    // Without --resume an existing run is never overwritten.
    let err = go(&resolved, parts.path(), false, None).unwrap_err();
    assert!(err.contains("--resume"), "{err}");
    go(&resolved, parts.path(), true, Some(2)).unwrap();
    let resumed = go(&resolved, parts.path(), true, None).unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.invocations.len(), 3);

    for name in ["config.json", "weights.json", "eval.jsonl"] {
        let read = |d: &Path| {
            let text = std::fs::read_to_string(d.join(name)).unwrap();
            // Evaluation wall times differ; everything else must not.
            text.lines()
                .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                    Ok(mut v) if v.get("wall_secs").is_some() => {
                        v["wall_secs"] = 0.into();
                        v.to_string()
                    }
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(read(whole.path()), read(parts.path()), "{name} differs");
    }
    let strip = |s: &MetaState| {
        s.rows
            .iter()
            .map(|r| {
                (
                    r.global_step,
                    r.mean_return,
                    r.value_loss,
                    r.approx_kl,
                    r.explained_variance,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&full), strip(&resumed));
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused_with_a_reason() {
    let resolved = smoke();
    let dir = tempfile::tempdir().unwrap();
    let err = go(&resolved, dir.path(), true, None).unwrap_err();
    assert!(
        err.contains("cannot read") && err.contains("checkpoint.bin"),
        "{err}"
    );
    go(&resolved, dir.path(), false, Some(1)).unwrap();
    let path = dir.path().join("checkpoint.bin");
    let bytes = std::fs::read(&path).unwrap();

    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = go(&resolved, dir.path(), true, None).unwrap_err();
    assert!(
        err.contains("checkpoint.bin") && err.contains("truncated"),
        "{err}"
    );

    let mut flipped = bytes.clone();
    let k = flipped.len() / 3;
    flipped[k] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let err = go(&resolved, dir.path(), true, None).unwrap_err();
    assert!(err.contains("damaged"), "{err}");

    std::fs::write(&path, &bytes).unwrap();
    let mut other = smoke();
    other.config.eval_seeds = 1;
    let err = go(&other, dir.path(), true, None).unwrap_err();
    assert!(
        err.contains("differs from the config the run was started with"),
        "{err}"
    );
    // The intact checkpoint still resumes after all the refusals.
    assert!(go(&resolved, dir.path(), true, None).unwrap().finished);
}
