//! End-to-end tests of `hyperctl sweep`: a search a user runs, resumes, extends, and breaks.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::hyperctl;

fn policy() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
    format!("rollback(policy:{})", dir.display())
}

fn space(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("space.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const SPACE: &str = "width = { choice = [8, 32] }\ndepth = { int = [1, 2] }\nweight_decay = { log_uniform = [1e-6, 1e-2] }\nbatch_size = { choice = [16, 32] }\n";

/// `hyperctl sweep --dataset DATASET --epochs EPOCHS --space SPACE --out OUT EXTRA...`.
fn sweep_on(
    dataset: &str,
    epochs: &str,
    space: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "sweep",
        "--dataset",
        dataset,
        "--epochs",
        epochs,
        "--space",
        space.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    hyperctl(&args)
}

/// A sweep of the shipped policy on the small generated task.
fn sweep(space: &Path, out: &Path, budget: &str, extra: &[&str]) -> std::process::Output {
    let controller = policy();
    let mut args = vec!["--budget", budget, "--controller", &controller];
    args.extend_from_slice(extra);
    sweep_on("gen:gauss-mix:n=300,d=4", "4", space, out, &args)
}

fn trials(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("wall_secs");
            v
        })
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_sweep_runs_with_the_policy_inside_resumes_and_extends_to_a_larger_budget() {
    let dir = tempfile::tempdir().unwrap();
    let space = space(dir.path(), SPACE);
    let a = dir.path().join("a");
    let md = ok(&sweep(&space, &a, "24", &["--jobs", "2"]));
    assert!(md.contains("**best**"), "{md}");
    for f in [
        "results.jsonl",
        "summary.json",
        "summary.md",
        "anytime.svg",
        "config.json",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    let first = trials(&a);
    assert!(first.len() >= 6, "{} trials", first.len());
    // The policy set the lr: it moves within a trial that trained its whole budget.
    let full = first
        .iter()
        .find(|t| t["stopped"] == false && t["diverged"] == false)
        .unwrap();
    let lrs: Vec<f64> = full["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(lrs.len(), 4);
    assert!(lrs.windows(2).any(|w| w[0] != w[1]), "{lrs:?}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["anytime"].as_array().unwrap().len(),
        first.len()
    );
    assert!(summary["meta"]["git_commit"].is_string() && summary["sweep"]["search_seed"] == 0);
    // Rerun: nothing new; the same trials.
    ok(&sweep(&space, &a, "24", &["--jobs", "1"]));
    assert_eq!(trials(&a), first);
    // A larger budget continues the same sweep: its first trials are the ones already run, and a
    // fresh sweep with that budget (on one thread) gives the same file.
    ok(&sweep(&space, &a, "40", &["--jobs", "2"]));
    let extended = trials(&a);
    assert!(extended.len() > first.len());
    assert_eq!(&extended[..first.len()], &first[..]);
    let b = dir.path().join("b");
    ok(&sweep(&space, &b, "40", &["--jobs", "1"]));
    assert_eq!(trials(&b), extended);
    // A smaller budget than the folder already spent is refused, naming what would fit.
    let out = sweep(&space, &a, "10", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("use a budget of at least"),
        "{err}"
    );
    // Another search seed is another sweep: refused in this folder.
    let out = sweep(&space, &a, "40", &["--search-seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`search_seed` was"));
}

#[test]
fn bad_spaces_and_arguments_are_one_error_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (text, extra, expected) in [
        (
            "widht = 8\n",
            &[][..],
            "unknown key `widht`, did you mean `width`?",
        ),
        (
            "depth = { int = [1, 99] }\n",
            &[],
            "`depth`: expected integers in 0..=64",
        ),
        (
            "batch_size = { choice = [16, 100000] }\n",
            &[],
            "more than the task's",
        ),
        (
            "lr = { log_uniform = [0.0, 1.0] }\n",
            &[],
            "`log_uniform` needs lo > 0",
        ),
        ("width = 8\n", &["--budget", "0"], "--budget 0 is outside"),
        ("width = 8\n", &["--method", "asha:eta=1"], "needs eta >= 2"),
    ] {
        let case = dir.path().join(format!("case{}", text.len() + extra.len()));
        std::fs::create_dir_all(&case).unwrap();
        let space = space(&case, text);
        let out_dir = case.join("out");
        let mut args = extra.to_vec();
        let budget = if args.first() == Some(&"--budget") {
            args.remove(1)
        } else {
            "8"
        };
        if args.first() == Some(&"--budget") {
            args.remove(0);
        }
        let out = sweep(&space, &out_dir, budget, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.starts_with("error:") && err.contains(expected),
            "{text}: {err}"
        );
        assert!(!err.contains("panicked"));
        assert!(
            !out_dir.join("results.jsonl").exists(),
            "{text}: results were written"
        );
    }
}

#[test]
fn a_curve_predictor_fitted_on_random_sweeps_drives_predicted_early_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let space = space(
        dir.path(),
        "width = { choice = [4, 32] }\nweight_decay = { log_uniform = [1e-6, 1e-1] }\nlr = { log_uniform = [1e-3, 1.0] }\n",
    );
    let run = |out: &Path, method: &str, extra: &[&str]| {
        let mut args = vec!["--controller", "warmup-cosine", "--method", method];
        args.extend_from_slice(extra);
        sweep_on("gen:teacher-cls:n=300,d=4", "8", &space, out, &args)
    };
    let random = dir.path().join("random");
    ok(&run(
        &random,
        "random",
        &["--budget", "160", "--search-seed", "3"],
    ));
    assert_eq!(trials(&random).len(), 20);
    let file = dir.path().join("predictor.json");
    let results = random.join("results.jsonl");
    let fit = hyperctl(&[
        "curve-predictor",
        "fit",
        results.to_str().unwrap(),
        "--ridge",
        "0.1",
        "--out",
        file.to_str().unwrap(),
    ]);
    // Cross-validation (the default) needs several sweeps: one is a clear error.
    let one = hyperctl(&[
        "curve-predictor",
        "fit",
        results.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("--ridge"));
    ok(&fit);
    let eval = hyperctl(&[
        "curve-predictor",
        "eval",
        results.to_str().unwrap(),
        "--predictor",
        file.to_str().unwrap(),
    ]);
    let table = ok(&eval);
    assert!(table.contains("| 25% | 1 |"), "{table}");
    // Predicted stopping: deterministic for any --jobs, and it stops trials.
    let p1 = dir.path().join("p1");
    let p2 = dir.path().join("p2");
    let f = file.to_str().unwrap();
    ok(&run(
        &p1,
        "predicted:eta=2,z=0.5",
        &["--budget", "60", "--predictor", f, "--jobs", "1"],
    ));
    ok(&run(
        &p2,
        "predicted:eta=2,z=0.5",
        &["--budget", "60", "--predictor", f, "--jobs", "2"],
    ));
    let a = trials(&p1);
    assert_eq!(a, trials(&p2));
    assert!(
        a.iter().any(|t| t["stopped"] == true),
        "nothing was stopped"
    );
    // Errors: no predictor; a damaged one; a predictor without the method that reads it.
    let out = run(&dir.path().join("e1"), "predicted", &["--budget", "20"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --predictor FILE"));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"format\": \"hyperctl-curve-predictor/1\"}").unwrap();
    let out = run(
        &dir.path().join("e2"),
        "predicted",
        &["--budget", "20", "--predictor", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:")
            && err.contains("bad.json")
            && err.contains("not a curve predictor"),
        "{err}"
    );
    let out = run(
        &dir.path().join("e3"),
        "asha",
        &["--budget", "20", "--predictor", f],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read by --method predicted only"));
}

#[test]
fn a_prior_from_earlier_sweeps_starts_from_the_nearest_tasks_best_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let space = space(dir.path(), SPACE);
    let prior = dir.path().join("prior");
    let controller = policy();
    let run = |dataset: &str, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--budget",
            "18",
            "--method",
            "random",
            "--controller",
            &controller,
        ];
        args.extend_from_slice(extra);
        sweep_on(dataset, "3", &space, out, &args)
    };
    // Two earlier sweeps: one on a dataset like the new one (300 rows, 4 features), one unlike it.
    ok(&run("gen:gauss-mix:n=320,d=4", &prior.join("near"), &[]));
    ok(&run("gen:gauss-mix:n=3000,d=30", &prior.join("far"), &[]));
    let near = trials(&prior.join("near"));
    let best = near
        .iter()
        .filter(|t| t["final_val_loss"].is_number())
        .min_by(|a, b| {
            a["final_val_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["final_val_loss"].as_f64().unwrap())
        })
        .unwrap();
    let new = dir.path().join("new");
    let p = prior.to_str().unwrap();
    ok(&run(
        "gen:gauss-mix:n=300,d=4",
        &new,
        &["--prior", p, "--prior-k", "1", "--jobs", "2"],
    ));
    let got = trials(&new);
    assert_eq!(
        got[0]["config"], best["config"],
        "the first trial is the nearest sweep's best"
    );
    // Deterministic, and resumable with the same prior.
    let again = dir.path().join("again");
    ok(&run(
        "gen:gauss-mix:n=300,d=4",
        &again,
        &["--prior", p, "--prior-k", "1", "--jobs", "1"],
    ));
    assert_eq!(trials(&again), got);
    // A prior folder without sweeps is an error naming it.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(
        "gen:gauss-mix:n=300,d=4",
        &dir.path().join("x"),
        &["--prior", empty.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no finished sweeps"));
}
