//! Issue 15's hostile-user cases, end to end: every one ends with one `error:` line and exit 2
//! (no panic, no abort, nothing half-written), or is handled as documented.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::hyperctl;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Exit 2, one `error:` line naming everything in `expected`, no panic.
fn assert_refused(out: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected `{e}` in: {stderr}");
    }
}

/// `hyperctl train` on a tiny generated task; `extra` adds flags or overrides the defaults.
fn train(extra: &[&str]) -> Output {
    let mut args = vec!["train"];
    for (flag, value) in [
        ("--dataset", "gen:gauss-mix:n=200,d=4"),
        ("--model", "mlp:8x1"),
        ("--batch-size", "16"),
    ] {
        if !extra.contains(&flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    args.extend_from_slice(extra);
    hyperctl(&args)
}

/// A collection of `n` tiny generated tasks of `epochs` epochs.
fn tiny_collection(dir: &Path, n: usize, epochs: usize) -> PathBuf {
    let mut text = String::new();
    let rows = if epochs > 10 { 3000 } else { 300 };
    for i in 0..n {
        text.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\ndataset = \"gen:gauss-mix:n={rows},d=4\"\ntask_type = \"classification\"\nmodel = \"mlp:8x1\"\nepochs = {epochs}\nbatch_size = 32\nsplit = \"test\"\nseed = {i}\n\n"
        ));
    }
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn compare(collection: &Path, out: &Path, controllers: &[&str], extra: &[&str]) -> Output {
    let mut args = vec![
        "compare".to_string(),
        "--tasks".into(),
        collection.display().to_string(),
        "--seeds".into(),
        "2".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for c in controllers {
        args.push("--controller".into());
        args.push(c.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    hyperctl(&args)
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = (0x0800u32 | dims.len() as u32).to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// A valid 4×4-pixel MNIST-format folder of `n` images per part with these train labels.
fn idx_folder(dir: &Path, labels: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let n = labels.len() as u32;
    let pixels: Vec<u8> = (0..n as usize * 16).map(|i| (i * 7 % 256) as u8).collect();
    for (prefix, labels) in [("train", labels.to_vec()), ("t10k", labels.to_vec())] {
        write_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte")),
            &[n, 4, 4],
            &pixels,
        );
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte")),
            &[n],
            &labels,
        );
    }
    dir.to_path_buf()
}

#[test]
fn an_idx_header_claiming_absurd_sizes_is_an_error_in_train_validate_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let idx = idx_folder(&dir.path().join("idx"), &[0, 1, 0, 1]);
    write_idx(
        &idx.join("train-images-idx3-ubyte"),
        &[u32::MAX, u32::MAX, u32::MAX],
        &[1, 2, 3],
    );
    let source = format!("idx:{}", idx.display());
    assert_refused(
        &train(&[
            "--dataset",
            &source,
            "--epochs",
            "1",
            "--controller",
            "constant",
        ]),
        &["train-images-idx3-ubyte", "claim more than"],
    );
    let collection = dir.path().join("c.toml");
    std::fs::write(
        &collection,
        format!(
            "[[task]]\nid = \"m\"\ndataset = \"idx:{}\"\ntask_type = \"classification\"\nmodel = \"mlp:8x1\"\nepochs = 1\nbatch_size = 2\nsplit = \"test\"\n",
            idx.display()
        ),
    )
    .unwrap();
    let out = hyperctl(&["tasks", "validate", collection.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claim more than"));
    let out_dir = dir.path().join("cmp");
    assert_refused(
        &compare(&collection, &out_dir, &["constant"], &[]),
        &["claim more than"],
    );
    assert!(
        !out_dir.exists(),
        "nothing may be written before the inputs check out"
    );
}

#[test]
fn absurd_budgets_and_counts_are_refused_before_anything_is_allocated() {
    for epochs in ["18446744073709551615", "1000000000", "0"] {
        assert_refused(
            &train(&["--epochs", epochs, "--controller", "constant"]),
            &["epochs", "outside 1..=100000"],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    std::fs::write(
        &path,
        "[[template]]\nname = \"huge\"\ncount = 100000000\nsplit = \"test\"\ntask_type = \"classification\"\nepochs = 2\nbatch_size = 32\nmodel = \"mlp:8x1\"\ndataset = { generated = \"gauss-mix\" }\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = hyperctl(&["tasks", "list", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`count` = 100000000 is outside 1..=100000"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // A batch larger than the training split.
    assert_refused(
        &train(&[
            "--epochs",
            "1",
            "--batch-size",
            "100000",
            "--controller",
            "constant",
        ]),
        &["--batch-size 100000", "larger than the training split"],
    );
}

#[test]
fn bad_values_are_refused_with_messages_a_person_can_read() {
    for (controller, expected) in [
        ("constant:,,,", "an empty parameter"),
        ("constant:lr=-1", "lr=-1 must be at least 0"),
    ] {
        let out = train(&["--epochs", "1", "--controller", controller]);
        assert_refused(&out, &[expected]);
        assert!(
            String::from_utf8_lossy(&out.stderr).len() < 300,
            "no 309-digit bounds: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // An MNIST label 200 among 0..1: not a 201-class model.
    let idx = idx_folder(&dir.path().join("idx"), &[0, 1, 200, 1, 0, 1, 0, 1]);
    assert_refused(
        &train(&[
            "--dataset",
            &format!("idx:{}", idx.display()),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--controller",
            "constant",
        ]),
        &["class 200", "never occur"],
    );
    // A binary file as CSV, and a one-class CSV.
    let train_csv = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        train(&[
            "--dataset",
            &format!("csv:{}", path.display()),
            "--task-type",
            "classification",
            "--epochs",
            "1",
            "--controller",
            "constant",
        ])
    };
    let out = train_csv("binary.csv", b"a,b\n\xff\xfe\x00\x01,2\n");
    assert_refused(&out, &["binary.csv", "not UTF-8"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Utf8"),
        "no debug dump"
    );
    let out = train_csv("one.csv", b"a,y\n1,0\n2,0\n3,0\n");
    assert_refused(&out, &["one.csv", "at least 2 classes"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("line 0"));
    // PPO settings: nan, and a type error that names its key.
    let config = dir.path().join("meta.toml");
    let base = std::fs::read_to_string(repo().join("experiments/smoke/meta_train.toml")).unwrap();
    let smoke_tasks = repo().join("experiments/smoke/tasks.toml");
    let base = base.replace(
        "\"tasks.toml\"",
        &format!("{:?}", smoke_tasks.display().to_string()),
    );
    for (extra, expected) in [
        (
            "target_kl = nan\n",
            "[ppo] target_kl: expected a finite number",
        ),
        ("clip_coef = \"x\"\n", "[ppo] clip_coef: invalid type"),
    ] {
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        let out = hyperctl(&[
            "meta-train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            dir.path().join("p").to_str().unwrap(),
        ]);
        assert_refused(&out, &[expected]);
    }
    // A missing include names the file and line that include it.
    let including = dir.path().join("inc.toml");
    std::fs::write(
        &including,
        "name = \"inc\"\n\n[[include]]\ncollection = \"missing.toml\"\n",
    )
    .unwrap();
    let out = hyperctl(&["tasks", "list", including.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("inc.toml:3") && stderr.contains("include `missing.toml`"),
        "{stderr}"
    );
    // serve's limits.
    for (flag, value) in [
        ("--max-sessions", "0"),
        ("--idle-timeout", "0"),
        ("--max-connections", "0"),
    ] {
        let out = hyperctl(&[
            "serve",
            "--policy",
            repo().join("policies/default").to_str().unwrap(),
            flag,
            value,
        ]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag));
    }
}

#[test]
fn warnings_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let status = Command::new(env!("CARGO_BIN_EXE_hyperctl"))
        .args([
            "train",
            "--dataset",
            "gen:gauss-mix:n=200,d=4",
            "--model",
            "mlp:8x1",
            "--epochs",
            "1",
            "--controller",
            "constant",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG") || text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in a log file: {text:?}"
    );
}

#[test]
fn a_refused_compare_writes_nothing_and_the_corrected_command_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let collection = tiny_collection(dir.path(), 1, 2);
    let out_dir = dir.path().join("cmp");
    assert_refused(
        &compare(
            &collection,
            &out_dir,
            &["constant"],
            &["--replay", "cosine"],
        ),
        &["--replay `cosine` is not one of the --controller SPECs"],
    );
    assert!(!out_dir.exists());
    let out = compare(
        &collection,
        &out_dir,
        &["constant", "cosine"],
        &["--replay", "cosine"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_second_compare_on_the_same_out_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let collection = tiny_collection(dir.path(), 6, 40);
    let out_dir = dir.path().join("cmp");
    let args = |c: &str| {
        vec![
            "compare".to_string(),
            "--tasks".into(),
            collection.display().to_string(),
            "--seeds".into(),
            "3".into(),
            "--jobs".into(),
            "1".into(),
            "--controller".into(),
            c.into(),
            "--out".into(),
            out_dir.display().to_string(),
        ]
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_hyperctl"))
        .args(args("constant"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = out_dir.join(".hyperctl.lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first compare never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Command::new(env!("CARGO_BIN_EXE_hyperctl"))
        .args(args("constant"))
        .output()
        .unwrap();
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first compare should still be running; make it longer"
    );
    assert!(first.wait().unwrap().success());
    assert_refused(
        &second,
        &[
            "is in use by another hyperctl",
            &format!("pid {}", first.id()),
        ],
    );
    // Every run of the first is kept.
    let lines = std::fs::read_to_string(out_dir.join("results.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6 * 3);
}

#[test]
fn a_resume_refuses_results_made_from_other_inputs_and_says_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let collection = tiny_collection(dir.path(), 1, 2);
    let policy = dir.path().join("pol");
    let copy = |from: &str| {
        std::fs::create_dir_all(&policy).unwrap();
        for f in ["config.json", "weights.json"] {
            std::fs::copy(repo().join(from).join(f), policy.join(f)).unwrap();
        }
    };
    copy("policies/default");
    let spec = format!("policy:{}", policy.display());
    let out_dir = dir.path().join("cmp");
    let out = compare(&collection, &out_dir, &[&spec], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = compare(&collection, &out_dir, &[&spec], &[]);
    assert!(again.status.success(), "the same inputs resume");
    // Another policy behind the same folder.
    copy("policies/default-v1");
    assert_refused(
        &compare(&collection, &out_dir, &[&spec], &[]),
        &["other inputs", "policies", "weights.json"],
    );
    copy("policies/default");
    // A task's budget edited in the collection.
    let text = std::fs::read_to_string(&collection).unwrap();
    std::fs::write(&collection, text.replace("epochs = 2", "epochs = 3")).unwrap();
    assert_refused(
        &compare(&collection, &out_dir, &[&spec], &[]),
        &["other inputs", "tasks.t0.task.epochs", "was 2, now 3"],
    );
}

/// `hyperctl serve` on a free port with its stderr in a file, killed when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(prefix: &[&str], extra: &[&str], log: PathBuf) -> Self {
        let policy = repo().join("policies/default");
        let mut command = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(env!("CARGO_BIN_EXE_hyperctl")),
        );
        if !prefix.is_empty() {
            command
                .args(&prefix[1..])
                .arg(env!("CARGO_BIN_EXE_hyperctl"));
        }
        let mut child = command
            .args([
                "serve",
                "--policy",
                policy.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let port = common::listening_port(&mut child);
        Self { child, port, log }
    }

    fn ask(&self, lines: &[String]) -> Vec<Value> {
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        lines
            .iter()
            .map(|l| {
                writer.write_all(l.as_bytes()).unwrap();
                writer.write_all(b"\n").unwrap();
                let mut reply = String::new();
                reader.read_line(&mut reply).unwrap();
                serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"))
            })
            .collect()
    }

    /// CPU seconds the server process has used (Linux).
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open(id: &str) -> String {
    format!(r#"{{"op":"open","session":"{id}","epochs":4,"lr":0.01,"momentum":0.0}}"#)
}

#[test]
fn serve_bounds_ids_echoes_nothing_unbounded_and_refuses_malformed_observes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[], &[], dir.path().join("log"));
    let long = "x".repeat(1 << 20);
    let replies = server.ask(&[
        open(&long),
        open(""),
        open("a"),
        open("a"),
        format!(r#"{{"op":"{long}","session":"a"}}"#),
        r#"{"op":"observe","session":"a","epoch":1,"train_losses":[1.0,0.9,0.8],"val_loss":0.9,"grad_norms":[1.0]}"#.into(),
        r#"{"op":"observe","session":"a","epoch":1,"train_losses":[1.0,0.9,0.8],"val_loss":0.9}"#.into(),
    ]);
    for r in &replies {
        assert!(
            r.to_string().len() < 600,
            "a reply echoes its input: {} bytes",
            r.to_string().len()
        );
    }
    assert!(
        replies[0]["error"]
            .as_str()
            .unwrap()
            .contains("at most 256"),
        "{}",
        replies[0]
    );
    assert!(
        replies[1]["error"].as_str().unwrap().contains("non-empty"),
        "{}",
        replies[1]
    );
    assert_eq!(replies[2]["ok"], true);
    assert_eq!(replies[2]["guard"], true, "the guard is on by default");
    assert!(
        replies[3]["error"]
            .as_str()
            .unwrap()
            .contains("already open")
    );
    assert_eq!(replies[4]["ok"], false);
    assert!(
        replies[5]["error"]
            .as_str()
            .unwrap()
            .contains("1 gradient norms for 3 minibatch losses"),
        "{}",
        replies[5]
    );
    // Missing grad_norms and update_ratio: answered, with a warning naming them (once).
    assert_eq!(replies[6]["ok"], true);
    let warnings = replies[6]["warnings"].to_string();
    assert!(
        warnings.contains("grad_norms") && warnings.contains("update_ratio"),
        "{warnings}"
    );
}

#[test]
fn serve_tells_the_client_which_epoch_to_restore_after_a_diverged_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[], &[], dir.path().join("log"));
    let epoch = |e: usize, val: &str| {
        format!(
            r#"{{"op":"observe","session":"g","epoch":{e},"train_losses":[1.0,0.9],"val_loss":{val},"grad_norms":[1.0,1.1],"update_ratio":0.01}}"#
        )
    };
    let replies = server.ask(&[
        open("g"),
        epoch(1, "0.9"),
        epoch(2, "null"),
        epoch(3, "0.8"),
    ]);
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    assert_eq!(replies[1]["keep"], true, "{}", replies[1]);
    assert_eq!(replies[2]["restore_epoch"], 1, "{}", replies[2]);
    let (before, after) = (
        replies[1]["lr"].as_f64().unwrap(),
        replies[2]["lr"].as_f64().unwrap(),
    );
    assert!(after <= before * 0.5 * (1.0 + 1e-12), "{before} -> {after}");
    // Without the guard a diverged epoch ends the run.
    let replies = server.ask(&[
        r#"{"op":"open","session":"n","epochs":4,"lr":0.01,"momentum":0.0,"guard":false}"#.into(),
        epoch(1, "null").replace("\"g\"", "\"n\""),
        epoch(2, "0.5").replace("\"g\"", "\"n\""),
    ]);
    assert_eq!(replies[1]["diverged"], true, "{}", replies[1]);
    assert_eq!(replies[1]["done"], true);
    assert!(
        replies[2]["error"]
            .as_str()
            .unwrap()
            .contains("diverged at epoch 1"),
        "{}",
        replies[2]
    );
}

#[test]
fn serve_out_of_file_handles_backs_off_instead_of_spinning_and_limits_connections() {
    if !Path::new("/usr/bin/prlimit").exists() {
        eprintln!("SKIP: prlimit not found (util-linux); cannot cap the server's file handles");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = Server::start(&["/usr/bin/prlimit", "--nofile=64"], &[], log.clone());
    let cpu_before = server.cpu_secs();
    // 100 idle connections: most cannot be accepted (64 descriptors in all).
    let idle: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = server.cpu_secs() - cpu_before;
    let log_bytes = std::fs::metadata(&server.log).unwrap().len();
    assert!(cpu < 1.0, "the accept loop spins: {cpu:.2} CPU s in 3 s");
    assert!(
        log_bytes < 20_000,
        "the log floods: {log_bytes} bytes in 3 s"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("out of file handles"), "{text}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.ask(&[open("after")])[0]["ok"],
        true,
        "served again once handles free"
    );
    drop(server);

    // --max-connections: a client beyond it gets one error line and is closed.
    let server = Server::start(&[], &["--max-connections", "2"], dir.path().join("log2"));
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    third.read_to_string(&mut reply).unwrap();
    assert!(
        reply.contains("connections open, the most it allows"),
        "{reply}"
    );
    drop(held);
}

#[test]
fn a_damaged_checkpoint_is_reported_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = repo().join("experiments/smoke/meta_train.toml");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "meta-train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--stop-after",
            "1",
        ];
        args.extend_from_slice(extra);
        hyperctl(&args)
    };
    assert!(run(&[]).status.success());
    let ckpt = out.join("checkpoint.bin");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&ckpt, bytes).unwrap();
    let failed = run(&["--resume"]);
    assert_refused(&failed, &["checkpoint.bin", "checksum"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(
        stderr.matches("checksum").count(),
        1,
        "the reason prints once: {stderr}"
    );
}
