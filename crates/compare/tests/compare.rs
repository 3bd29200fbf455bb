//! End-to-end comparisons on tiny generated tasks: summary, reproducibility, resume.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyperctl_collections::CollectionTask;
use hyperctl_compare::{
    ReportMeta, RunConfig, RunRecord, read_results, run_all, summarize, write_reports,
};
use hyperctl_schedule_env::EnvConfig;
use hyperctl_tasks::Backend;

fn tasks() -> Vec<CollectionTask> {
    let collection = hyperctl_collections::load("generated", None).unwrap();
    // Three cheap meta-val tasks, shortened to 3 epochs to keep the test fast.
    collection
        .split(Some("meta-val"))
        .filter(|t| t.task.model.to_string() != "cnn:small")
        .take(3)
        .cloned()
        .map(|mut t| {
            t.task.epochs = 3;
            t
        })
        .collect()
}

fn config() -> RunConfig {
    RunConfig {
        controllers: vec![
            "constant".into(),
            "cosine:lr=0.1,momentum=0.9".into(),
            "plateau:lr=0.1".into(),
        ],
        seeds: 2,
        jobs: 2,
        backend: Backend::Flex,
        env: EnvConfig::defaults(),
        replays: Default::default(),
        starts: None,
        datasets: Default::default(),
        workers: None,
    }
}

fn without_time(records: &[RunRecord]) -> Vec<RunRecord> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            r.wall_secs = 0.0;
            r
        })
        .collect()
}

fn run(out: &Path, calls: &AtomicUsize) -> Vec<RunRecord> {
    run_all(&tasks(), &config(), out, &|_, _, _| {
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap()
}

#[test]
fn a_small_comparison_is_summarized_reproducible_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let calls = AtomicUsize::new(0);
    let first = run(&a, &calls);
    assert_eq!(first.len(), 3 * 3 * 2);
    assert_eq!(calls.load(Ordering::Relaxed), 18);
    let second = run(&b, &AtomicUsize::new(0));
    assert_eq!(
        without_time(&first),
        without_time(&second),
        "same seeds should give the same results"
    );
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("results.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("wall_secs");
                v.to_string()
            })
            .collect()
    };
    assert_eq!(
        strip(&a),
        strip(&b),
        "results.jsonl should be identical apart from timings"
    );

    // Interrupt: keep 5 complete lines and a torn sixth, as a kill mid-write would leave.
    let path = a.join("results.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}",
        lines[..5].join("\n"),
        &lines[5][..lines[5].len() / 2]
    );
    std::fs::write(&path, torn).unwrap();
    assert_eq!(read_results(&path).unwrap().len(), 5);
    let calls = AtomicUsize::new(0);
    let resumed = run(&a, &calls);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        13,
        "only the missing runs should run"
    );
    assert_eq!(without_time(&resumed), without_time(&first));
    assert_eq!(strip(&a), strip(&b));

    // A summary with every controller, and the report files.
    let controllers = config().controllers;
    let summary = summarize(&resumed, &controllers, "constant");
    assert_eq!(
        (summary.n_tasks, summary.n_seeds, summary.controllers.len()),
        (3, 2, 3)
    );
    assert!(
        summary
            .controllers
            .iter()
            .all(|c| c.runs == 6 && c.log_loss_ratio.mean >= 0.0)
    );
    let best_rank = summary
        .controllers
        .iter()
        .map(|c| c.mean_rank.mean)
        .fold(f64::INFINITY, f64::min);
    assert!((1.0..=2.0).contains(&best_rank));
    let meta = ReportMeta {
        collection: "generated".into(),
        split: Some("meta-val".into()),
        version: "test".into(),
        git_commit: "test".into(),
        backend: "flex".into(),
        command: vec![],
        notes: vec![],
    };
    write_reports(&a, &summary, &resumed, &meta).unwrap();
    for f in ["summary.md", "summary.json", "profile.svg"] {
        assert!(a.join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(
        md.contains("| `cosine:lr=0.1,momentum=0.9` |") && md.contains("## Per task"),
        "{md}"
    );
}

#[test]
fn untuned_starts_are_shared_by_every_controller_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig {
        starts: Some(hyperctl_compare::StartDistribution::untuned()),
        ..config()
    };
    let records = run_all(&tasks(), &config, dir.path(), &|_, _, _| {}).unwrap();
    let mut by_run: std::collections::HashMap<(String, u64), Vec<(f64, f64)>> = Default::default();
    for r in &records {
        let (lr, m) = (r.init_lr.unwrap(), r.init_momentum.unwrap());
        assert!(
            (1e-4..=1.0).contains(&lr) && (m == 0.0 || m == 0.9),
            "{lr} {m}"
        );
        // Constant without lr/momentum starts (and stays) at the drawn point.
        if r.controller == "constant" {
            assert!(r.lr.iter().all(|&x| x == lr), "{:?} vs {lr}", r.lr);
        }
        by_run
            .entry((r.task_id.clone(), r.seed))
            .or_default()
            .push((lr, m));
    }
    for (run, starts) in &by_run {
        assert_eq!(starts.len(), 3, "{run:?}");
        assert!(
            starts.windows(2).all(|w| w[0] == w[1]),
            "{run:?}: {starts:?}"
        );
    }
    let distinct: std::collections::HashSet<u64> =
        by_run.values().map(|s| s[0].0.to_bits()).collect();
    assert!(
        distinct.len() >= 4,
        "starts should differ across tasks and seeds: {distinct:?}"
    );
    // A draw depends only on (task, seed).
    let d = hyperctl_compare::StartDistribution::untuned();
    assert_eq!(d.draw("a", 1), d.draw("a", 1));
    assert_ne!(d.draw("a", 1), d.draw("a", 2));
    let fixed = hyperctl_compare::StartDistribution::fixed(0.05, 0.9).draw("t", 3);
    assert_eq!((fixed.lr, fixed.momentum), (0.05, 0.9));
}

#[test]
fn a_worker_answers_run_requests_and_refuses_another_version() {
    use hyperctl_compare::worker::{Answer, PROTOCOL, RunRequest, serve};
    let task = &tasks()[0];
    // The worker loads the collection itself: ask for an unshortened task of it.
    let request = RunRequest {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").into(),
        collection: "generated".into(),
        data_dir: None,
        task_id: task.task.id.clone(),
        controller: "cosine:lr=0.1,momentum=0.9".into(),
        seed: 5,
        env: EnvConfig::defaults(),
        starts: None,
        backend: Backend::Flex,
    };
    let other = RunRequest {
        version: "0.0.0".into(),
        ..request.clone()
    };
    let missing = RunRequest {
        task_id: "no-such-task".into(),
        ..request.clone()
    };
    let input = [&request, &other, &missing]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .chain(["not json".to_string()])
        .collect::<Vec<_>>()
        .join("\n");
    let mut output = Vec::new();
    serve(std::io::Cursor::new(input), &mut output).unwrap();
    let answers: Vec<Answer> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4);
    let Answer::Ok(record) = &answers[0] else {
        panic!("{:?}", answers[0])
    };
    assert_eq!(
        (record.task_id.as_str(), record.seed),
        (task.task.id.as_str(), 5)
    );
    assert!(record.test_loss.is_some_and(f64::is_finite));
    for (answer, expected) in answers[1..].iter().zip([
        "cannot serve a request of protocol",
        "has no task `no-such-task`",
        "not a run request",
    ]) {
        let Answer::Error(reason) = answer else {
            panic!("{answer:?}")
        };
        assert!(reason.contains(expected), "{reason}");
    }
}
