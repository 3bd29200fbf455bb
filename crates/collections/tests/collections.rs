//! Collections: deterministic expansion, honest splits, and problems reported with file and line.

use std::path::{Path, PathBuf};

use hyperctl_collections::{Collection, load, validate};

fn envs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../envs")
}

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.join("tabular/manifest.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} not found (../shared/data is optional)",
            dir.display()
        );
        None
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn problems_of(spec: &str, data_dir: Option<&Path>) -> Vec<String> {
    match load(spec, data_dir) {
        Ok(c) => validate(&c, true).iter().map(|p| p.to_string()).collect(),
        Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn embedded_generated_collection_is_large_deterministic_and_honestly_split() {
    let a = load("generated", None).unwrap();
    let b = load("generated", None).unwrap();
    assert_eq!(a, b, "expansion should be deterministic");
    assert!(a.tasks.len() >= 300, "{} tasks", a.tasks.len());
    let file = load(envs().join("generated.toml").to_str().unwrap(), None).unwrap();
    assert_eq!(
        a.tasks.iter().map(|t| &t.task.id).collect::<Vec<_>>(),
        file.tasks.iter().map(|t| &t.task.id).collect::<Vec<_>>(),
        "the embedded copy should be the file in envs/"
    );
    assert!(validate(&a, true).is_empty(), "{:?}", validate(&a, true));
    let in_split = |c: &Collection, split: &str, needle: &str| {
        c.split(Some(split))
            .any(|t| t.task.source.to_string().contains(needle))
    };
    for split in ["meta-train", "meta-val", "test"] {
        assert!(a.split(Some(split)).count() > 0, "split {split} is empty");
    }
    // Held out: the spirals family and deeper regression teachers appear only in test.
    assert!(in_split(&a, "test", "gen:spirals") && !in_split(&a, "meta-train", "gen:spirals"));
    for deep in ["depth=3", "depth=4"] {
        assert!(
            in_split(&a, "test", deep)
                && !in_split(&a, "meta-train", deep)
                && !in_split(&a, "meta-val", deep),
            "{deep}"
        );
    }
    let wide = |c: &Collection, split: &str| {
        c.split(Some(split)).any(|t| {
            t.task.source.to_string().contains("teacher-cls")
                && ["classes=7", "classes=8", "classes=9", "classes=10"]
                    .iter()
                    .any(|k| t.task.source.to_string().contains(k))
        })
    };
    assert!(
        wide(&a, "test") && !wide(&a, "meta-train"),
        "7-10 class teachers are held out"
    );
    // Every family appears somewhere, several models and budgets too.
    for family in [
        "gauss-mix",
        "teacher-cls",
        "spirals",
        "teacher-reg",
        "shapes",
    ] {
        assert!(
            a.tasks
                .iter()
                .any(|t| t.task.source.to_string().contains(family)),
            "{family}"
        );
    }
    let models: std::collections::BTreeSet<String> =
        a.tasks.iter().map(|t| t.task.model.to_string()).collect();
    let epochs: std::collections::BTreeSet<usize> = a.tasks.iter().map(|t| t.task.epochs).collect();
    assert!(
        models.len() >= 10 && epochs.len() >= 4,
        "{models:?} {epochs:?}"
    );
    let lrs: Vec<f64> = a.tasks.iter().map(|t| t.task.init.lr).collect();
    let (lo, hi) = (
        lrs.iter().cloned().fold(1.0, f64::min),
        lrs.iter().cloned().fold(0.0, f64::max),
    );
    assert!(
        lo < 3e-4 && hi > 0.3,
        "initial lrs should span a wide log range: {lo}..{hi}"
    );
}

#[test]
fn changing_the_seed_changes_draws_and_adding_a_template_leaves_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let one = r#"
seed = 1
[[template]]
name = "a"
split = "meta-train"
count = 5
dataset = { generated = "gauss-mix", n = { int = [100, 500] } }
models = ["mlp:8x1"]
epochs = 2
batch_size = 16
init_lr = { log_uniform = [1e-4, 1.0] }
"#;
    let two = format!(
        "{one}\n[[template]]\nname = \"b\"\nsplit = \"meta-val\"\ncount = 2\ndataset = {{ generated = \"spirals\" }}\nmodels = [\"linear\"]\nepochs = 1\nbatch_size = 8\n"
    );
    let a = load(&write(dir.path(), "one.toml", one), None).unwrap();
    let b = load(&write(dir.path(), "two.toml", &two), None).unwrap();
    assert_eq!(
        a.tasks[..],
        b.tasks[..5]
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.file = a.tasks[0].file.clone();
                t
            })
            .collect::<Vec<_>>()[..]
    );
    let c = load(
        &write(
            dir.path(),
            "three.toml",
            &one.replace("seed = 1", "seed = 2"),
        ),
        None,
    )
    .unwrap();
    assert_ne!(a.tasks[0].task.init.lr, c.tasks[0].task.init.lr);
}

#[test]
fn every_entry_reports_its_first_invalid_value_with_field_and_line() {
    // Each entry is read on its own: a broken one does not hide the others' problems.
    let dir = tempfile::tempdir().unwrap();
    let text = r#"name = "bad2"
seed = -3

[[task]]
id = "a"
dataset = "gen:spirals"
model = "linear"
epochs = "ten"
batch_size = 4
split = "x"

[[task]]
id = "b"
dataset = "gen:spirals"
model = "linear"
epochs = 2
batch_size = 4.5
split = "x"
nesterov = "yes"

[[template]]
name = "t"
splits = {}
count = 2
dataset = { generated = "spirals", turns = { uniform = [3, 1] } }
model = "linear"
epochs = 2
batch_size = 8

[[template]]
name = "u"
splits = {}
count = 2
dataset = { generated = "spirals" }
model = { widths = [8, "x"], depths = [1] }
epochs = 2
batch_size = 8

[[template]]
name = "v"
splits = {}
count = 2
dataset = { generated = "spirals" }
model = "linear"
epochs = 2
batch_size = 8

[[include]]
collection = 5
"#;
    let problems = problems_of(&write(dir.path(), "bad2.toml", text), None);
    let expected = [
        "bad2.toml:2: collection: `seed`: invalid value: integer `-3`, expected u64",
        "bad2.toml:8: task `a`: `epochs`: invalid type: string \"ten\", expected usize",
        "bad2.toml:17: task `b`: `batch_size`: invalid type: floating point `4.5`, expected usize",
        "bad2.toml:25: template `t`: `dataset.turns`: `uniform` expects two numbers lo <= hi",
        "bad2.toml:35: template `u`: `model.widths[1]`: invalid type: string \"x\", expected usize",
        // An empty `splits` table used to panic while assigning groups.
        "bad2.toml:39: template `v`: give exactly one of `split",
        "bad2.toml:49: include: `collection`: invalid type: integer `5`, expected a string",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (got, want) in problems.iter().zip(expected) {
        assert!(got.contains(want), "expected `{want}`, got `{got}`");
    }
}

#[test]
fn every_problem_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"name = "broken"
sed = 3

[[task]]
id = "t1"
dataset = "csv:missing.csv"
task_type = "classification"
model = "mlp:8x1"
epoch = 3
batch_size = 8
split = "meta-train"

[[task]]
id = "t2"
dataset = "gen:gauss-mix:n=100"
model = "mlp:8x1"
epochs = 2
batch_size = 8
split = "meta-train"
group = "shared"

[[task]]
id = "t3"
dataset = "gen:gauss-mix:n=120"
model = "mlp:8x1"
epochs = 2
batch_size = 8
split = "meta-val"
group = "shared"

[[template]]
name = "tpl"
split = "test"
count = 2
dataset = { generated = "spirals", turn = 2 }
model = { widths = [8], depth = [1] }
epochs = 2
batch_size = 8
"#;
    let problems = problems_of(&write(dir.path(), "broken.toml", text), Some(dir.path()));
    let joined = problems.join("\n");
    for expected in [
        "broken.toml:2: collection: unknown field `sed`, did you mean `seed`?",
        "broken.toml:9: task: unknown field `epoch`, did you mean `epochs`?",
        "template `tpl`.dataset: unknown field `turn`, did you mean `turns`?",
        "template `tpl`.model: unknown field `depth`, did you mean `depths`?",
    ] {
        assert!(
            joined.contains(expected),
            "expected `{expected}` in:\n{joined}"
        );
    }
    // Once the structure is fixed, the semantic checks report every remaining problem.
    let fixed = text
        .replace("sed = 3", "seed = 3")
        .replace("epoch = 3", "epochs = 3")
        .replace("turn = 2", "turns = 2")
        .replace("depth = [1]", "depths = [1]");
    let problems = problems_of(&write(dir.path(), "fixed.toml", &fixed), Some(dir.path()));
    let joined = problems.join("\n");
    assert!(
        joined.contains("fixed.toml:4: task `t1`: missing data file")
            && joined.contains("missing.csv"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "group `shared` spans splits: `meta-train` (task `t2`) and `meta-val` (task `t3`)"
        ),
        "{joined}"
    );
    assert_eq!(problems.len(), 2, "{joined}");

    let not_tables = problems_of(
        &write(dir.path(), "flat.toml", "name = \"x\"\ntask = 5\n"),
        None,
    );
    assert!(
        not_tables
            .iter()
            .any(|p| p.contains("flat.toml:2: `task` must be written as [[task]] tables")),
        "{not_tables:?}"
    );
    let syntax = problems_of(
        &write(dir.path(), "syntax.toml", "name = \"x\"\n[[task]\nid = 1\n"),
        None,
    );
    assert!(
        syntax[0].contains("syntax.toml:2: not valid TOML"),
        "{syntax:?}"
    );
    let empty_split = problems_of(
        &write(
            dir.path(),
            "empty.toml",
            "[[template]]\nname = \"t\"\nsplits = { meta-train = 1.0, test = 0.0001 }\ncount = 1\ndataset = { generated = \"spirals\" }\nmodels = [\"linear\"]\nepochs = 1\nbatch_size = 4\n",
        ),
        None,
    );
    assert!(
        empty_split
            .iter()
            .any(|p| p.contains("split `test` is declared but has no tasks")),
        "{empty_split:?}"
    );
    let duplicate = problems_of(
        &write(
            dir.path(),
            "dup.toml",
            "[[task]]\nid = \"a\"\ndataset = \"gen:spirals\"\nmodel = \"linear\"\nepochs = 1\nbatch_size = 4\nsplit = \"x\"\n\n[[task]]\nid = \"a\"\ndataset = \"gen:spirals:n=50\"\nmodel = \"linear\"\nepochs = 1\nbatch_size = 4\nsplit = \"x\"\n",
        ),
        None,
    );
    assert!(
        duplicate
            .iter()
            .any(|p| p.contains("dup.toml:9: task id `a` is used more than once")),
        "{duplicate:?}"
    );
    let bad_values = problems_of(
        &write(
            dir.path(),
            "values.toml",
            "[[task]]\nid = \"a\"\ndataset = \"gen:spirals\"\nmodel = \"mlp:8\"\nepochs = 0\nbatch_size = 4\nsplit = \"x\"\n",
        ),
        None,
    );
    assert!(
        bad_values[0].contains("values.toml:1: task `a`: model `mlp:8`"),
        "{bad_values:?}"
    );
}

#[test]
fn shipped_collections_validate_and_never_leak_a_group_across_splits() {
    let Some(data) = shared_data() else { return };
    for name in ["generated", "tabular", "mnist", "default", "default-v1"] {
        let path = envs().join(format!("{name}.toml"));
        let c = load(path.to_str().unwrap(), Some(&data)).unwrap_or_else(|p| panic!("{name}: {p}"));
        let problems = validate(&c, !name.starts_with("default"));
        assert!(problems.is_empty(), "{name}: {problems:?}");
    }
    let tabular = load(envs().join("tabular.toml").to_str().unwrap(), Some(&data)).unwrap();
    let datasets: std::collections::BTreeSet<String> = tabular
        .tasks
        .iter()
        .map(|t| t.task.source.to_string())
        .collect();
    assert_eq!(datasets.len(), 86, "every manifest dataset should be used");
    let sgd = tabular.split(Some("meta-train")).count() + tabular.split(Some("meta-val")).count();
    let train = tabular.split(Some("meta-train")).count() as f64 / sgd as f64;
    assert!((0.6..0.8).contains(&train), "meta-train share {train}");
    let default = load(envs().join("default.toml").to_str().unwrap(), Some(&data)).unwrap();
    assert!(
        default.split(Some("test")).count() == 0,
        "the shipped policy never trains on test tasks"
    );
    // The shipped policy's splits are SGD only; the AdamW variants live in their own splits.
    for split in ["meta-train", "meta-val"] {
        assert!(
            default
                .split(Some(split))
                .all(|t| t.task.optimizer == hyperctl_tasks::OptimizerKind::Sgd),
            "{split}"
        );
    }
    assert!(
        default
            .split(Some("adamw-meta-train"))
            .all(|t| t.task.optimizer == hyperctl_tasks::OptimizerKind::Adamw)
            && default.split(Some("adamw-meta-train")).count() > 0
    );
    // MNIST enters meta-train through its own template only; the held-out MNIST tasks never do.
    let mnist: Vec<_> = default
        .tasks
        .iter()
        .filter(|t| t.task.id.starts_with("mnist/"))
        .collect();
    assert!(!mnist.is_empty());
    assert!(
        mnist
            .iter()
            .all(|t| t.split == "meta-train" && t.task.id.starts_with("mnist/mnist-mlp-train-")),
        "{:?}",
        mnist.iter().map(|t| &t.task.id).collect::<Vec<_>>()
    );
    // default-v1 is default without the MNIST tasks, task for task.
    let v1 = load(
        envs().join("default-v1.toml").to_str().unwrap(),
        Some(&data),
    )
    .unwrap();
    let ids = |c: &Collection| {
        c.tasks
            .iter()
            .map(|t| t.task.id.clone())
            .collect::<Vec<_>>()
    };
    let without_mnist: Vec<String> = ids(&default)
        .into_iter()
        .filter(|id| !id.starts_with("mnist/"))
        .collect();
    assert_eq!(ids(&v1), without_mnist);
}

#[test]
fn include_as_split_moves_the_chosen_splits_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let generated = envs().join("generated.toml");
    let spec = write(
        dir.path(),
        "mixed.toml",
        &format!(
            "name = \"mixed\"\n\
             [[include]]\ncollection = {g:?}\nsplits = [\"meta-train\"]\n\
             [[include]]\ncollection = {g:?}\nsplits = [\"meta-val\", \"test\"]\nas_split = \"held-out\"\nprefix = \"out\"\n\
             [[include]]\ncollection = {g:?}\ntemplates = [\"sp-test\"]\nprefix = \"spirals\"\n",
            g = generated.to_string_lossy()
        ),
    );
    let mixed = load(&spec, None).unwrap();
    let full = load("generated", None).unwrap();
    let count = |c: &Collection, s: &str| c.split(Some(s)).count();
    assert_eq!(count(&mixed, "meta-train"), count(&full, "meta-train"));
    assert_eq!(
        count(&mixed, "held-out"),
        count(&full, "meta-val") + count(&full, "test")
    );
    assert_eq!(count(&mixed, "meta-val"), 0);
    assert_eq!(
        count(&mixed, "test"),
        full.tasks
            .iter()
            .filter(|t| t.task.id.starts_with("sp-test-"))
            .count(),
        "only the `templates` include keeps a test split"
    );
    assert!(
        mixed
            .split(Some("held-out"))
            .all(|t| t.task.id.starts_with("out/")),
        "prefix applies"
    );
    let spirals: Vec<_> = mixed
        .tasks
        .iter()
        .filter(|t| t.task.id.starts_with("spirals/"))
        .collect();
    assert!(!spirals.is_empty());
    assert!(
        spirals
            .iter()
            .all(|t| t.task.id.starts_with("spirals/sp-test-") && t.split == "test"),
        "templates keeps only that template's tasks, in their own split"
    );
}

#[test]
fn an_include_filtered_by_template_keeps_a_manifest_templates_tasks() {
    // Manifest templates name tasks `{template}-{dataset}-{variant}`: the `templates` filter
    // used to match only `{template}-{digits}` and silently kept none of them.
    let Some(data) = shared_data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "tab-only.toml",
        &format!(
            "name = \"tab-only\"\n[[include]]\ncollection = {:?}\ntemplates = [\"tab\"]\n",
            envs().join("tabular.toml").to_string_lossy()
        ),
    );
    let only = load(&spec, Some(&data)).unwrap();
    let full = load(&envs().join("tabular.toml").to_string_lossy(), Some(&data)).unwrap();
    let from_tab = full
        .tasks
        .iter()
        .filter(|t| t.template.as_deref() == Some("tab"))
        .count();
    assert!(from_tab > 0);
    assert_eq!(only.tasks.len(), from_tab);
    assert!(
        only.tasks
            .iter()
            .all(|t| t.task.id.starts_with("tabular/tab-"))
    );
    // A template name that made no task is a problem, not an empty selection.
    let typo = write(
        dir.path(),
        "typo.toml",
        &format!(
            "name = \"typo\"\n[[include]]\ncollection = {:?}\ntemplates = [\"tabb\"]\n",
            envs().join("tabular.toml").to_string_lossy()
        ),
    );
    let problems = problems_of(&typo, Some(&data)).join("\n");
    assert!(
        problems.contains("typo.toml:") && problems.contains("no template `tabb`"),
        "{problems}"
    );
}

#[test]
fn the_optimizer_field_is_checked_and_groups_leak_only_within_one_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let task = |id: &str, split: &str, extra: &str| {
        format!(
            "[[task]]\nid = \"{id}\"\ndataset = \"gen:spirals:n=100\"\nmodel = \"linear\"\nepochs = 1\nbatch_size = 4\nsplit = \"{split}\"\ngroup = \"g\"\n{extra}\n"
        )
    };
    // The same group in two splits: fine across optimizers, a leak within one.
    let ok = write(
        dir.path(),
        "ok.toml",
        &(task("a", "train", "") + &task("b", "adamw", "optimizer = \"adamw\"")),
    );
    assert!(
        problems_of(&ok, None).is_empty(),
        "{:?}",
        problems_of(&ok, None)
    );
    let c = load(&ok, None).unwrap();
    assert_eq!(
        c.tasks[1].task.optimizer,
        hyperctl_tasks::OptimizerKind::Adamw
    );
    let leak = write(
        dir.path(),
        "leak.toml",
        &(task("a", "train", "optimizer = \"adamw\"") + &task("b", "val", "optimizer = \"adamw\"")),
    );
    assert!(
        problems_of(&leak, None)
            .iter()
            .any(|p| p.contains("group `g` spans splits")),
        "{:?}",
        problems_of(&leak, None)
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        &(task("a", "x", "optimizer = \"adam\"")
            + &task("b", "x", "optimizer = \"adamw\"\nnesterov = true")),
    );
    let problems = problems_of(&bad, None);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`optimizer`: unknown optimizer `adam`"))
            && problems
                .iter()
                .any(|p| p.contains("`nesterov` is an SGD option")),
        "{problems:?}"
    );
}
