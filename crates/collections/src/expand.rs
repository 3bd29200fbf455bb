//! Parsing a collection file and expanding its tasks, templates and includes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyperctl_tasks::generated::FAMILIES;
use hyperctl_tasks::task::{MAX_BATCH_SIZE, MAX_EPOCHS};
use hyperctl_tasks::{DatasetSource, Hyperparams, ModelSpec, TaskSpec, TaskType};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::info::DatasetInfo;
use crate::sample::{Sampled, as_f64, as_text, as_usize};
use crate::{Collection, CollectionTask, Problem, Problems, did_you_mean, fnv1a as fnv};

const TOP_KEYS: &[&str] = &["name", "description", "seed", "task", "template", "include"];
/// Fields that make a task, shared by explicit tasks and templates.
const TASK_FIELDS: &[&str] = &[
    "dataset",
    "task_type",
    "model",
    "epochs",
    "batch_size",
    "group",
    "init_lr",
    "init_momentum",
    "seed",
    "val_fraction",
    "test_fraction",
    "train_fraction",
    "max_train_rows",
    "weight_decay",
    "nesterov",
    "steps_per_decision",
];
const TASK_ONLY_KEYS: &[&str] = &["id", "split"];
/// The most tasks one template may make.
pub const MAX_TEMPLATE_COUNT: usize = 100_000;

/// The most tasks a collection may hold, includes counted (a task takes a few hundred bytes).
pub const MAX_COLLECTION_TASKS: usize = 1_000_000;

const TEMPLATE_ONLY_KEYS: &[&str] = &["name", "split", "splits", "count", "models"];
const DATASET_KEYS: &[&str] = &[
    "generated",
    "files",
    "manifest",
    "task",
    "min_rows",
    "max_rows",
    "min_features",
    "max_features",
    "exclude",
];
const MODEL_KEYS: &[&str] = &["widths", "depths", "activations"];
const INCLUDE_KEYS: &[&str] = &["collection", "splits", "prefix", "as_split", "templates"];
const MAX_INCLUDE_DEPTH: usize = 4;

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,

    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn problem(&mut self, line: Option<usize>, message: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            message,
        });
    }

    /// Reports keys of `table` that are not in `allowed`, with a suggestion.
    fn check_keys(&mut self, table: &DeTable, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let line = self.line(key.span().start);
                let msg = format!(
                    "{context}: unknown field `{}`{}",
                    key.get_ref(),
                    did_you_mean(key.get_ref(), allowed)
                );
                self.problem(Some(line), msg);
            }
        }
    }
}

/// The entries of an array of tables with their lines (empty when the key is absent).
fn entries<'t>(doc: &'t DeTable, key: &str) -> Vec<(&'t DeTable<'t>, usize)> {
    let Some(value) = doc.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v) else {
        return Vec::new();
    };
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item: &Spanned<DeValue>| match item.get_ref() {
                DeValue::Table(t) => Some((t, item.span().start)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn subtable<'t>(table: &'t DeTable, key: &str) -> Option<(&'t DeTable<'t>, usize)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .and_then(|(k, v)| match v.get_ref() {
            DeValue::Table(t) => Some((t, k.span().start)),
            _ => None,
        })
}

pub(crate) fn expand(
    file: &Path,
    text: &str,
    root: &Path,
    data_dir: Option<&Path>,
    depth: usize,
) -> Result<Collection, Problems> {
    let mut ctx = Ctx {
        file,
        text,
        problems: Vec::new(),
    };
    let spanned = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| ctx.line(s.start));
            ctx.problem(line, format!("not valid TOML: {}", e.message()));
            return Err(Problems(ctx.problems));
        }
    };
    let doc: toml::Table = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.span().map(|s| ctx.line(s.start));
            ctx.problem(line, format!("not valid TOML: {}", e.message()));
            return Err(Problems(ctx.problems));
        }
    };
    let det = spanned.get_ref();
    ctx.check_keys(det, TOP_KEYS, "collection");
    let name = doc
        .get("name")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let seed = match doc.get("seed") {
        None => 0,
        Some(v) => as_usize(v).map(|s| s as u64).unwrap_or_else(|| {
            ctx.problem(None, "`seed` must be a whole number ≥ 0".into());
            0
        }),
    };
    let mut collection = Collection {
        name,
        file: file.to_path_buf(),
        data_root: root.to_path_buf(),
        seed,
        tasks: Vec::new(),
        declared_splits: Vec::new(),
        known_info: BTreeMap::new(),
    };

    for key in ["task", "template", "include"] {
        let is_array_of_tables = |v: &toml::Value| {
            v.as_array()
                .is_some_and(|a| a.iter().all(toml::Value::is_table))
        };
        if doc.get(key).is_some_and(|v| !is_array_of_tables(v)) {
            let line = det
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(k, _)| ctx.line(k.span().start));
            ctx.problem(line, format!("`{key}` must be written as [[{key}]] tables"));
        }
    }
    explicit_tasks(&mut ctx, det, &doc, root, &mut collection);
    template_tasks(&mut ctx, det, &doc, seed, root, &mut collection);
    included_tasks(&mut ctx, det, &doc, data_dir, depth, &mut collection);
    duplicate_ids(&mut ctx, &collection);
    if ctx.problems.is_empty() {
        Ok(collection)
    } else {
        Err(Problems(ctx.problems))
    }
}

/// The explicit `[[task]]` entries.
fn explicit_tasks(
    ctx: &mut Ctx,
    det: &DeTable,
    doc: &toml::Table,
    root: &Path,
    collection: &mut Collection,
) {
    let file = ctx.file;
    let task_values = doc
        .get("task")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for ((entry_det, offset), value) in entries(det, "task").into_iter().zip(task_values) {
        let line = ctx.line(offset);
        let allowed: Vec<&str> = TASK_FIELDS.iter().chain(TASK_ONLY_KEYS).copied().collect();
        ctx.check_keys(entry_det, &allowed, "task");
        let Some(table) = value.as_table() else {
            continue;
        };
        let id = table
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let context = format!("task `{id}`");
        if id.is_empty() {
            ctx.problem(Some(line), "task: `id` (a string) is required".into());
            continue;
        }
        let Some(split) = table.get("split").and_then(|v| v.as_str()) else {
            ctx.problem(
                Some(line),
                format!("{context}: `split` (a string) is required"),
            );
            continue;
        };
        match build_task(table, id.clone(), root) {
            Ok((task, group)) => {
                push_declared(&mut collection.declared_splits, split);
                collection.tasks.push(CollectionTask {
                    task,
                    split: split.to_string(),
                    group,
                    line: Some(line),
                    file: file.to_path_buf(),
                    template: None,
                });
            }
            Err(msg) => ctx.problem(Some(line), format!("{context}: {msg}")),
        }
    }
}

/// The `[[template]]` entries, each expanded from the collection's seed and its own name.
fn template_tasks(
    ctx: &mut Ctx,
    det: &DeTable,
    doc: &toml::Table,
    seed: u64,
    root: &Path,
    collection: &mut Collection,
) {
    let file = ctx.file;
    let template_values = doc
        .get("template")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for ((entry_det, offset), value) in entries(det, "template").into_iter().zip(template_values) {
        let line = ctx.line(offset);
        let Some(table) = value.as_table() else {
            continue;
        };
        let tname = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let context = format!("template `{tname}`");
        let allowed: Vec<&str> = TASK_FIELDS
            .iter()
            .chain(TEMPLATE_ONLY_KEYS)
            .copied()
            .collect();
        ctx.check_keys(entry_det, &allowed, &context);
        if let Some((model_det, _)) = subtable(entry_det, "model") {
            ctx.check_keys(model_det, MODEL_KEYS, &format!("{context}.model"));
        }
        if let Some((ds_det, _)) = subtable(entry_det, "dataset") {
            let mut allowed: Vec<&str> = DATASET_KEYS.to_vec();
            if let Some(family) = table
                .get("dataset")
                .and_then(|d| d.get("generated"))
                .and_then(|f| f.as_str())
                && let Some((_, params)) = FAMILIES.iter().find(|(n, _)| *n == family)
            {
                allowed.extend(params.iter().map(|(p, _)| *p));
            }
            ctx.check_keys(ds_det, &allowed, &format!("{context}.dataset"));
        }
        if tname.is_empty() {
            ctx.problem(Some(line), "template: `name` (a string) is required".into());
            continue;
        }
        match expand_template(table, &tname, seed, root, collection) {
            Ok(tasks) => collection
                .tasks
                .extend(
                    tasks
                        .into_iter()
                        .map(|(task, split, group)| CollectionTask {
                            task,
                            split,
                            group,
                            line: Some(line),
                            file: file.to_path_buf(),
                            template: Some(tname.clone()),
                        }),
                ),
            Err(msg) => ctx.problem(Some(line), format!("{context}: {msg}")),
        }
    }
}

/// The `[[include]]` entries: other collections' tasks, filtered by split and template,
/// prefixed, optionally relabelled.
fn included_tasks(
    ctx: &mut Ctx,
    det: &DeTable,
    doc: &toml::Table,
    data_dir: Option<&Path>,
    depth: usize,
    collection: &mut Collection,
) {
    let file = ctx.file;
    let include_values = doc
        .get("include")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for ((entry_det, offset), value) in entries(det, "include").into_iter().zip(include_values) {
        let line = ctx.line(offset);
        ctx.check_keys(entry_det, INCLUDE_KEYS, "include");
        let Some(table) = value.as_table() else {
            continue;
        };
        let Some(target) = table.get("collection").and_then(|v| v.as_str()) else {
            ctx.problem(
                Some(line),
                "include: `collection` (a path or embedded name) is required".into(),
            );
            continue;
        };
        if depth >= MAX_INCLUDE_DEPTH {
            ctx.problem(
                Some(line),
                format!("include `{target}`: includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            );
            continue;
        }
        let splits: Option<Vec<String>> = table.get("splits").and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        });
        let as_split = table
            .get("as_split")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let templates: Option<Vec<String>> =
            table.get("templates").and_then(|v| v.as_array()).map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            });
        // Each task knows the template that made it (whatever the template's id scheme).
        let from_templates = |t: &CollectionTask| {
            templates.as_ref().is_none_or(|ts| {
                t.template
                    .as_ref()
                    .is_some_and(|name| ts.iter().any(|wanted| wanted == name))
            })
        };
        let beside = file.parent().map(|p| p.join(target)).filter(|p| p.exists());
        let spec = beside
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| target.to_string());
        let included = match crate::read_collection(&spec) {
            Ok((inc_file, inc_text)) => {
                let inc_root = crate::data_root(&inc_file, data_dir);
                expand(&inc_file, &inc_text, &inc_root, data_dir, depth + 1)
            }
            // The included file cannot be read: say so where the include is written.
            Err(Problems(inner)) => {
                for p in inner {
                    ctx.problem(
                        Some(line),
                        format!("include `{target}`: {}: {}", p.file.display(), p.message),
                    );
                }
                continue;
            }
        };
        match included {
            Ok(inc) => {
                let prefix = table
                    .get("prefix")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .unwrap_or(inc.name.clone());
                for split in &inc.declared_splits {
                    if splits.as_ref().is_none_or(|s| s.contains(split)) {
                        let split = as_split.as_ref().unwrap_or(split);
                        push_declared(&mut collection.declared_splits, split);
                    }
                }
                collection.known_info.extend(inc.known_info);
                if let Some(ts) = &templates {
                    for wanted in ts {
                        if !inc
                            .tasks
                            .iter()
                            .any(|t| t.template.as_ref() == Some(wanted))
                        {
                            ctx.problem(
                                Some(line),
                                format!("include `{target}`: no template `{wanted}` made any of its tasks"),
                            );
                        }
                    }
                }
                for mut t in inc.tasks {
                    if splits.as_ref().is_none_or(|s| s.contains(&t.split)) && from_templates(&t) {
                        t.task.id = format!("{prefix}/{}", t.task.id);
                        if let Some(split) = &as_split {
                            t.split = split.clone();
                        }
                        collection.tasks.push(t);
                    }
                }
            }
            Err(Problems(mut inner)) => ctx.problems.append(&mut inner),
        }
    }
}

/// Every task id used more than once.
fn duplicate_ids(ctx: &mut Ctx, collection: &Collection) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for t in &collection.tasks {
        *seen.entry(&t.task.id).or_default() += 1;
        if seen[t.task.id.as_str()] == 2 {
            duplicates.push((t.line, t.task.id.clone()));
        }
    }
    for (line, id) in duplicates {
        ctx.problem(line, format!("task id `{id}` is used more than once"));
    }
}

fn push_declared(declared: &mut Vec<String>, split: &str) {
    if !declared.iter().any(|s| s == split) {
        declared.push(split.to_string());
    }
}

/// Builds a task from concrete field values (an explicit `[[task]]` or a template's draw).
/// Returns the task and its group.
fn build_task(fields: &toml::Table, id: String, root: &Path) -> Result<(TaskSpec, String), String> {
    let text = |key: &str| fields.get(key).map(as_text);
    let number = |key: &str| -> Result<Option<f64>, String> {
        fields
            .get(key)
            .map(|v| as_f64(v).ok_or_else(|| format!("`{key}` must be a number")))
            .transpose()
    };
    let whole = |key: &str| -> Result<Option<usize>, String> {
        fields
            .get(key)
            .map(|v| as_usize(v).ok_or_else(|| format!("`{key}` must be a whole number ≥ 0")))
            .transpose()
    };
    let dataset = text("dataset").ok_or("`dataset` is required")?;
    let source = DatasetSource::parse(&dataset).map_err(|e| e.to_string())?;
    let task_type = match (text("task_type"), source.implied_task_type()) {
        (Some(t), _) => t.parse::<TaskType>().map_err(|e| e.to_string())?,
        (None, Some(implied)) => implied,
        (None, None) => return Err(format!("`task_type` is required for `{dataset}`")),
    };
    let model = ModelSpec::parse(&text("model").ok_or("`model` is required")?)
        .map_err(|e| e.to_string())?;
    let epochs = whole("epochs")?.ok_or("`epochs` is required")?;
    let batch_size = whole("batch_size")?.ok_or("`batch_size` is required")?;
    if !(1..=MAX_EPOCHS).contains(&epochs) {
        return Err(format!("`epochs` = {epochs} is outside 1..={MAX_EPOCHS}"));
    }
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        return Err(format!(
            "`batch_size` = {batch_size} is outside 1..={MAX_BATCH_SIZE}"
        ));
    }
    let group = text("group").unwrap_or_else(|| source.short_name());
    let mut task = TaskSpec::new(
        source.resolved(root),
        task_type,
        model,
        epochs,
        batch_size,
        whole("seed")?.unwrap_or(0) as u64,
    );
    task.id = id;
    task.init = Hyperparams {
        lr: number("init_lr")?.unwrap_or(task.init.lr),
        momentum: number("init_momentum")?.unwrap_or(task.init.momentum),
    };
    if !(task.init.lr > 0.0 && task.init.lr <= 10.0) {
        return Err(format!("`init_lr` = {} is outside (0, 10]", task.init.lr));
    }
    if !(0.0..1.0).contains(&task.init.momentum) {
        return Err(format!(
            "`init_momentum` = {} is outside [0, 1)",
            task.init.momentum
        ));
    }
    let fraction = |key: &str, default: f64, lo: f64, hi: f64| -> Result<f64, String> {
        let v = number(key)?.unwrap_or(default);
        if v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(format!("`{key}` = {v} is outside [{lo}, {hi}]"))
        }
    };
    task.val_fraction = fraction("val_fraction", task.val_fraction, 0.01, 0.5)?;
    task.test_fraction = fraction("test_fraction", task.test_fraction, 0.0, 0.49)?;
    task.train_fraction = fraction("train_fraction", 1.0, 0.001, 1.0)?;
    task.weight_decay = fraction("weight_decay", 0.0, 0.0, 1.0)?;
    task.max_train_rows = whole("max_train_rows")?;
    task.steps_per_decision = whole("steps_per_decision")?;
    if task.max_train_rows == Some(0) || task.steps_per_decision == Some(0) {
        return Err("`max_train_rows` and `steps_per_decision` must be at least 1".into());
    }
    task.nesterov = match fields.get("nesterov") {
        None => false,
        Some(v) => v.as_bool().ok_or("`nesterov` must be true or false")?,
    };
    Ok((task, group))
}

/// One dataset a template can draw: its source string, group, and known facts.
struct Candidate {
    dataset: String,
    task_type: Option<String>,
    group: String,
    info: Option<DatasetInfo>,
    label: String,
}

fn expand_template(
    table: &toml::Table,
    name: &str,
    seed: u64,
    root: &Path,
    collection: &mut Collection,
) -> Result<Vec<(TaskSpec, String, String)>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv(name));
    let count = table
        .get("count")
        .and_then(as_usize)
        .ok_or("`count` (a whole number ≥ 1) is required")?;
    if !(1..=MAX_TEMPLATE_COUNT).contains(&count) {
        return Err(format!(
            "`count` = {count} is outside 1..={MAX_TEMPLATE_COUNT}"
        ));
    }
    if collection.tasks.len() + count > MAX_COLLECTION_TASKS {
        return Err(format!(
            "`count` = {count} would take the collection past {MAX_COLLECTION_TASKS} tasks"
        ));
    }
    let splits: Vec<(String, f64)> = match (table.get("split"), table.get("splits")) {
        (Some(s), None) => vec![(
            s.as_str().ok_or("`split` must be a string")?.to_string(),
            1.0,
        )],
        (None, Some(toml::Value::Table(t))) => t
            .iter()
            .map(|(k, v)| {
                as_f64(v)
                    .filter(|f| *f > 0.0)
                    .map(|f| (k.clone(), f))
                    .ok_or(format!("`splits.{k}` must be a fraction > 0"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(
                "give exactly one of `split = \"...\"` or `splits = { name = fraction, ... }`"
                    .into(),
            );
        }
    };
    for (s, _) in &splits {
        push_declared(&mut collection.declared_splits, s);
    }
    let dataset = table
        .get("dataset")
        .and_then(|d| d.as_table())
        .ok_or("`dataset` (a table) is required")?;

    // Sampled task fields (everything but dataset/model).
    let mut sampled: Vec<(&str, Sampled)> = Vec::new();
    for key in TASK_FIELDS
        .iter()
        .filter(|k| !matches!(**k, "dataset" | "model" | "group" | "task_type"))
    {
        if let Some(v) = table.get(*key) {
            let s = Sampled::parse(v).map_err(|e| format!("`{key}`: {e}"))?;
            let range = match *key {
                "init_lr" => Some((1e-8, 10.0)),
                "init_momentum" => Some((0.0, 0.999)),
                "epochs" | "batch_size" => Some((1.0, 1e6)),
                "train_fraction" => Some((0.001, 1.0)),
                _ => None,
            };
            if let Some((lo, hi)) = range {
                s.check_range(lo, hi).map_err(|e| format!("`{key}`: {e}"))?;
            }
            sampled.push((key, s));
        }
    }
    let models = model_sampler(table)?;

    // Candidates and how many tasks each gets, then every task drawn.
    let per_candidate = candidates(table, dataset, count, root, &mut rng)?;
    let drawn = draw_tasks(
        &per_candidate,
        &sampled,
        &models,
        name,
        root,
        &mut rng,
        collection,
    )?;
    let assigned = assign_splits(&drawn, &splits, &mut rng);
    Ok(drawn
        .into_iter()
        .zip(assigned)
        .map(|((task, group), split)| (task, split, group))
        .collect())
}

/// A template's dataset candidates and how many tasks each gets: `count` generated datasets
/// drawn from the family's ranges, `count` draws from a list of files, or every dataset of a
/// manifest matching the filters, `count` tasks each.
fn candidates(
    table: &toml::Table,
    dataset: &toml::Table,
    count: usize,
    root: &Path,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<(Candidate, usize)>, String> {
    let per_candidate: Vec<(Candidate, usize)> = if let Some(family) = dataset.get("generated") {
        let family = family
            .as_str()
            .ok_or("`dataset.generated` must be a family name")?;
        let (_, defaults) = FAMILIES.iter().find(|(n, _)| *n == family).ok_or_else(|| {
            let names: Vec<&str> = FAMILIES.iter().map(|(n, _)| *n).collect();
            format!("unknown family `{family}`{}", did_you_mean(family, &names))
        })?;
        let params: Vec<(&str, Sampled)> = defaults
            .iter()
            .filter_map(|(p, _)| {
                dataset.get(*p).map(|v| {
                    Sampled::parse(v)
                        .map(|s| (*p, s))
                        .map_err(|e| format!("`dataset.{p}`: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        (0..count)
            .map(|_| {
                let mut args = Vec::new();
                let mut values: BTreeMap<&str, f64> = defaults.iter().copied().collect();
                for (p, s) in &params {
                    let v = s.draw(rng);
                    values.insert(p, as_f64(&v).unwrap_or(f64::NAN));
                    args.push(format!("{p}={}", as_text(&v)));
                }
                if !params.iter().any(|(p, _)| *p == "seed") {
                    let data_seed = rand::RngExt::random_range(rng, 0..1_000_000u32);
                    values.insert("seed", data_seed as f64);
                    args.push(format!("seed={data_seed}"));
                }
                let source = format!("gen:{family}:{}", args.join(","));
                let info = generated_info(family, &values);
                (
                    Candidate {
                        group: source.clone(),
                        dataset: source,
                        task_type: None,
                        info: Some(info),
                        label: String::new(),
                    },
                    1,
                )
            })
            .collect()
    } else if let Some(files) = dataset.get("files") {
        let files: Vec<String> = files
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or("`dataset.files` must be a non-empty list of sources")?
            .iter()
            .map(|f| {
                f.as_str()
                    .map(str::to_string)
                    .ok_or("`dataset.files` entries must be strings")
            })
            .collect::<Result<_, _>>()?;
        let group = table
            .get("group")
            .and_then(|g| g.as_str())
            .map(str::to_string);
        let task_type = table
            .get("task_type")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        (0..count)
            .map(|_| {
                let f = files[rand::RngExt::random_range(rng, 0..files.len())].clone();
                let source = DatasetSource::parse(&f).map_err(|e| e.to_string())?;
                let group = group.clone().unwrap_or_else(|| source.short_name());
                Ok((
                    Candidate {
                        dataset: f,
                        task_type: task_type.clone(),
                        group,
                        info: None,
                        label: String::new(),
                    },
                    1,
                ))
            })
            .collect::<Result<_, String>>()?
    } else if let Some(manifest) = dataset.get("manifest") {
        let manifest = manifest
            .as_str()
            .ok_or("`dataset.manifest` must be a path")?;
        manifest_candidates(root, Path::new(manifest), dataset)?
            .into_iter()
            .map(|c| (c, count))
            .collect()
    } else {
        return Err("`dataset` needs one of `generated`, `files` or `manifest`".into());
    };

    Ok(per_candidate)
}

/// Draws each candidate's tasks: model and sampled fields from the template's stream, ids
/// `{name}-{index}` (or `{name}-{label}-{variant}` for manifest datasets).
fn draw_tasks(
    per_candidate: &[(Candidate, usize)],
    sampled: &[(&str, Sampled)],
    models: &ModelSampler,
    name: &str,
    root: &Path,
    rng: &mut ChaCha8Rng,
    collection: &mut Collection,
) -> Result<Vec<(TaskSpec, String)>, String> {
    let mut drawn = Vec::new();
    for (candidate, variants) in per_candidate {
        for v in 0..*variants {
            let mut fields = toml::Table::new();
            fields.insert(
                "dataset".into(),
                toml::Value::String(candidate.dataset.clone()),
            );
            if let Some(t) = &candidate.task_type {
                fields.insert("task_type".into(), toml::Value::String(t.clone()));
            }
            fields.insert("group".into(), toml::Value::String(candidate.group.clone()));
            fields.insert("model".into(), toml::Value::String(models.draw(rng)));
            for (key, s) in sampled {
                fields.insert(key.to_string(), s.draw(rng));
            }
            if !fields.contains_key("seed") {
                fields.insert(
                    "seed".into(),
                    toml::Value::Integer(rand::RngExt::random_range(rng, 0..1_000_000i64)),
                );
            }
            let id = if candidate.label.is_empty() {
                format!("{name}-{:03}", drawn.len())
            } else {
                format!("{name}-{}-{v}", candidate.label)
            };
            let (task, group) =
                build_task(&fields, id.clone(), root).map_err(|e| format!("task `{id}`: {e}"))?;
            if let Some(info) = candidate.info {
                collection
                    .known_info
                    .entry(task.source.to_string())
                    .or_insert(info);
            }
            drawn.push((task, group));
        }
    }
    Ok(drawn)
}

/// Partitions the distinct groups (sorted, then shuffled) among the splits by their fractions.
fn assign_splits(
    drawn: &[(TaskSpec, String)],
    splits: &[(String, f64)],
    rng: &mut ChaCha8Rng,
) -> Vec<String> {
    if splits.len() == 1 {
        return vec![splits[0].0.clone(); drawn.len()];
    }
    let mut groups: Vec<&str> = drawn.iter().map(|(_, g)| g.as_str()).collect();
    groups.sort();
    groups.dedup();
    groups.shuffle(rng);
    let total: f64 = splits.iter().map(|(_, f)| f).sum();
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut start = 0usize;
    for (i, (split, fraction)) in splits.iter().enumerate() {
        let end = if i + 1 == splits.len() {
            groups.len()
        } else {
            (start + (groups.len() as f64 * fraction / total).round() as usize).min(groups.len())
        };
        for g in &groups[start..end] {
            owner.insert(g, split);
        }
        start = end;
    }
    drawn
        .iter()
        .map(|(_, g)| owner[g.as_str()].to_string())
        .collect()
}

/// `model = { widths, depths, activations }` or `models = [...]`.
enum ModelSampler {
    Structured(Vec<usize>, Vec<usize>, Vec<String>),
    Choice(Vec<String>),
}

impl ModelSampler {
    fn draw(&self, rng: &mut ChaCha8Rng) -> String {
        use rand::RngExt;
        match self {
            ModelSampler::Structured(widths, depths, acts) => {
                let (w, d, a) = (
                    widths[rng.random_range(0..widths.len())],
                    depths[rng.random_range(0..depths.len())],
                    &acts[rng.random_range(0..acts.len())],
                );
                if d == 0 {
                    "linear".into()
                } else {
                    format!("mlp:{w}x{d}:{a}")
                }
            }
            ModelSampler::Choice(specs) => specs[rng.random_range(0..specs.len())].clone(),
        }
    }
}

fn model_sampler(table: &toml::Table) -> Result<ModelSampler, String> {
    match (table.get("model"), table.get("models")) {
        (Some(toml::Value::Table(m)), None) => {
            let list = |key: &str| -> Result<Vec<toml::Value>, String> {
                m.get(key).and_then(|v| v.as_array()).filter(|a| !a.is_empty()).cloned().ok_or(format!("`model.{key}` must be a non-empty list"))
            };
            let widths: Vec<usize> = list("widths")?.iter().map(as_usize).collect::<Option<_>>().ok_or("`model.widths` must be whole numbers")?;
            let depths: Vec<usize> = list("depths")?.iter().map(as_usize).collect::<Option<_>>().ok_or("`model.depths` must be whole numbers")?;
            let acts: Vec<String> = match m.get("activations") {
                None => vec!["relu".into()],
                Some(_) => list("activations")?.iter().map(|a| a.as_str().map(str::to_string)).collect::<Option<_>>().ok_or("`model.activations` must be strings")?,
            };
            for w in &widths {
                for d in depths.iter().filter(|d| **d > 0) {
                    for a in &acts {
                        ModelSpec::parse(&format!("mlp:{w}x{d}:{a}")).map_err(|e| e.to_string())?;
                    }
                }
            }
            Ok(ModelSampler::Structured(widths, depths, acts))
        }
        (Some(toml::Value::String(s)), None) => Ok(ModelSampler::Choice(vec![s.clone()])),
        (None, Some(toml::Value::Array(a))) if !a.is_empty() => {
            let specs: Vec<String> = a.iter().map(|s| s.as_str().map(str::to_string)).collect::<Option<_>>().ok_or("`models` must be a list of model specs")?;
            for s in &specs {
                ModelSpec::parse(s).map_err(|e| e.to_string())?;
            }
            Ok(ModelSampler::Choice(specs))
        }
        _ => Err("give exactly one of `model = \"SPEC\"`, `model = { widths, depths, activations }` or `models = [SPEC, ...]`".into()),
    }
}

/// Facts of a generated dataset from its (drawn) parameters.
fn generated_info(family: &str, v: &BTreeMap<&str, f64>) -> DatasetInfo {
    let get = |k: &str| v.get(k).copied().unwrap_or(0.0) as usize;
    let (n_features, image_shape) = match family {
        "shapes" => (
            get("side") * get("side"),
            Some([1, get("side"), get("side")]),
        ),
        _ => (get("d"), None),
    };
    let n_outputs = if family == "teacher-reg" {
        1
    } else {
        get("classes")
    };
    DatasetInfo {
        n_rows: get("n"),
        n_features,
        n_outputs,
        image_shape,
        has_test_part: false,
    }
}

/// Every dataset of a manifest (at `manifest`, relative to the data root) matching the filters.
/// Dataset paths stay relative to the data root, like every other source in a collection.
fn manifest_candidates(
    root: &Path,
    manifest: &Path,
    filters: &toml::Table,
) -> Result<Vec<Candidate>, String> {
    let path = &root.join(manifest);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read manifest {}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("manifest {}: not valid JSON: {e}", path.display()))?;
    let datasets = doc
        .get("datasets")
        .and_then(|d| d.as_array())
        .ok_or_else(|| format!("manifest {}: expected a `datasets` list", path.display()))?;
    let base: PathBuf = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
    let want_task = filters.get("task").and_then(|v| v.as_str());
    let bound = |key: &str| filters.get(key).and_then(as_usize);
    let exclude: Vec<&str> = filters
        .get("exclude")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, d) in datasets.iter().enumerate() {
        let field = |k: &str| {
            d.get(k)
                .ok_or_else(|| format!("manifest {}: dataset {i} has no `{k}`", path.display()))
        };
        let name = field("name")?.as_str().unwrap_or_default().to_string();
        let task = field("task")?.as_str().unwrap_or_default().to_string();
        let rows = field("n_rows")?.as_u64().unwrap_or(0) as usize;
        let features = field("n_features")?.as_u64().unwrap_or(0) as usize;
        let classes = d.get("n_classes").and_then(|c| c.as_u64()).unwrap_or(1) as usize;
        let keep = want_task.is_none_or(|t| t == task)
            && bound("min_rows").is_none_or(|m| rows >= m)
            && bound("max_rows").is_none_or(|m| rows <= m)
            && bound("min_features").is_none_or(|m| features >= m)
            && bound("max_features").is_none_or(|m| features <= m)
            && !exclude.contains(&name.as_str());
        if !keep {
            continue;
        }
        let file = base.join(field("file")?.as_str().unwrap_or_default());
        let dataset = format!("csv:{}", file.display());
        let info = DatasetInfo {
            n_rows: rows,
            n_features: features,
            n_outputs: if task == "regression" { 1 } else { classes },
            image_shape: None,
            has_test_part: false,
        };
        out.push(Candidate {
            dataset,
            task_type: Some(task),
            group: d
                .get("group")
                .and_then(|g| g.as_str())
                .unwrap_or(&name)
                .to_string(),
            info: Some(info),
            label: name,
        });
    }
    if out.is_empty() {
        return Err(format!(
            "no dataset of manifest {} matches the filters",
            path.display()
        ));
    }
    Ok(out)
}
