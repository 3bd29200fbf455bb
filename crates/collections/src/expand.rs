//! Expanding a collection file: its tasks, templates and includes. The file's schema (serde
//! types) and the reader that reports every problem with its line are in `schema`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyperctl_tasks::generated::FAMILIES;
use hyperctl_tasks::task::{MAX_BATCH_SIZE, MAX_EPOCHS};
use hyperctl_tasks::{DatasetSource, Hyperparams, ModelSpec, TaskSpec, TaskType};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::info::DatasetInfo;
use crate::sample::{Sampled, as_f64, as_text};
use crate::schema::{
    DatasetDraw, ENTRY_KEYS, Header, IncludeEntry, Invalid, KeyPath, ModelDraw, ModelGrid, Read,
    TaskFields, TemplateEntry, fields_of, lookup, raw_str, read,
};
use crate::{Collection, CollectionTask, Problem, Problems, did_you_mean, fnv1a as fnv};

/// The most tasks one template may make.
pub const MAX_TEMPLATE_COUNT: usize = 100_000;

/// The most tasks a collection may hold, includes counted (a task takes a few hundred bytes).
pub const MAX_COLLECTION_TASKS: usize = 1_000_000;

const MAX_INCLUDE_DEPTH: usize = 4;

/// A file's subtree: the whole document, or one entry of it.
type Tree<'de> = Spanned<DeValue<'de>>;

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

    /// Reads `T` from `tree`, reporting its first invalid value; also returns the keys no field
    /// took (the caller reports them, see [`Ctx::unknown`]).
    fn read<'de, T: Deserialize<'de>>(
        &mut self,
        tree: &Tree<'de>,
        context: &str,
    ) -> (Option<T>, Vec<KeyPath>) {
        let Read { value, unknown } = read::<T>(tree);
        let value = value.map_err(|bad| self.invalid(tree, &bad, context)).ok();
        (value, unknown)
    }

    /// Reports an invalid value at its own line (else its key's, else the entry's).
    fn invalid(&mut self, tree: &Tree, bad: &Invalid, context: &str) {
        let offset = bad
            .span
            .as_ref()
            .map(|s| s.start)
            .or_else(|| lookup(tree, &bad.segments).map(|(_, offset)| offset))
            .unwrap_or(tree.span().start);
        let message = if bad.path.is_empty() {
            format!("{context}: {}", bad.message)
        } else {
            format!("{context}: `{}`: {}", bad.path, bad.message)
        };
        self.problem(Some(self.line(offset)), message);
    }

    /// Reports unknown keys in file order, each at its line, suggesting a name among those
    /// `known` gives for the table that holds the key.
    fn unknown(
        &mut self,
        tree: &Tree,
        paths: &[KeyPath],
        context: &str,
        known: impl Fn(&[String]) -> Vec<&'static str>,
    ) {
        let mut located: Vec<(Option<usize>, &KeyPath)> = paths
            .iter()
            .map(|path| (lookup(tree, path).map(|(_, offset)| offset), path))
            .collect();
        located.sort_by_key(|(offset, _)| *offset);
        for (offset, path) in located {
            let Some((key, parent)) = path.split_last() else {
                continue;
            };
            let within: String = parent.iter().map(|p| format!(".{p}")).collect();
            let line = offset.map(|offset| self.line(offset));
            let message = format!(
                "{context}{within}: unknown field `{key}`{}",
                did_you_mean(key, &known(parent))
            );
            self.problem(line, message);
        }
    }
}

/// The entries of `[[key]]`, each its own subtree (empty when the key is absent).
fn entries<'t, 'de>(ctx: &mut Ctx, doc: &'t Tree<'de>, key: &str) -> Vec<&'t Tree<'de>> {
    let Some((value, offset)) = lookup(doc, &[key.to_string()]) else {
        return Vec::new();
    };
    match value.get_ref() {
        DeValue::Array(items)
            if items
                .iter()
                .all(|item| matches!(item.get_ref(), DeValue::Table(_))) =>
        {
            items.iter().collect()
        }
        _ => {
            let line = ctx.line(offset);
            ctx.problem(
                Some(line),
                format!("`{key}` must be written as [[{key}]] tables"),
            );
            Vec::new()
        }
    }
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
    let doc = match DeTable::parse(text) {
        Ok(doc) => {
            let span = doc.span();
            Spanned::new(span, DeValue::Table(doc.into_inner()))
        }
        Err(e) => {
            let line = e.span().map(|s| ctx.line(s.start));
            ctx.problem(line, format!("not valid TOML: {}", e.message()));
            return Err(Problems(ctx.problems));
        }
    };
    let header = header(&mut ctx, &doc);
    let name = header.name.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let seed = header.seed.unwrap_or(0);
    let mut collection = Collection {
        name,
        file: file.to_path_buf(),
        data_root: root.to_path_buf(),
        seed,
        tasks: Vec::new(),
        declared_splits: Vec::new(),
        known_info: BTreeMap::new(),
    };
    explicit_tasks(&mut ctx, &doc, root, &mut collection);
    template_tasks(&mut ctx, &doc, seed, root, &mut collection);
    included_tasks(&mut ctx, &doc, data_dir, depth, &mut collection);
    duplicate_ids(&mut ctx, &collection);
    if ctx.problems.is_empty() {
        Ok(collection)
    } else {
        Err(Problems(ctx.problems))
    }
}

/// The top-level keys. What the entries hold is theirs to report (see [`entries`]).
fn header(ctx: &mut Ctx, doc: &Tree) -> Header {
    let in_entries = |path: &[String]| {
        path.first()
            .is_some_and(|k| ENTRY_KEYS.contains(&k.as_str()))
    };
    let Read { value, unknown } = read::<Header>(doc);
    let unknown: Vec<KeyPath> = unknown.into_iter().filter(|p| !in_entries(p)).collect();
    ctx.unknown(doc, &unknown, "collection", |_| fields_of::<Header>());
    match value {
        Ok(header) => header,
        Err(bad) => {
            if !in_entries(&bad.segments) {
                ctx.invalid(doc, &bad, "collection");
            }
            Header::default()
        }
    }
}

/// The explicit `[[task]]` entries.
fn explicit_tasks(ctx: &mut Ctx, doc: &Tree, root: &Path, collection: &mut Collection) {
    let file = ctx.file;
    for entry in entries(ctx, doc, "task") {
        let line = ctx.line(entry.span().start);
        let id = raw_str(entry, &["id"]).unwrap_or("").to_string();
        let context = format!("task `{id}`");
        let (fields, unknown) = ctx.read::<TaskFields>(entry, &context);
        ctx.unknown(entry, &unknown, "task", |_| fields_of::<TaskFields>());
        let Some(fields) = fields else {
            continue;
        };
        let Some(id) = fields.id.clone().filter(|id| !id.is_empty()) else {
            ctx.problem(Some(line), "task: `id` (a string) is required".into());
            continue;
        };
        let Some(split) = fields.split.clone() else {
            ctx.problem(
                Some(line),
                format!("{context}: `split` (a string) is required"),
            );
            continue;
        };
        match build_task(&fields, id, root) {
            Ok((task, group)) => {
                push_declared(&mut collection.declared_splits, &split);
                collection.tasks.push(CollectionTask {
                    task,
                    split,
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
fn template_tasks(ctx: &mut Ctx, doc: &Tree, seed: u64, root: &Path, collection: &mut Collection) {
    let file = ctx.file;
    for entry in entries(ctx, doc, "template") {
        let line = ctx.line(entry.span().start);
        let tname = raw_str(entry, &["name"]).unwrap_or("").to_string();
        let context = format!("template `{tname}`");
        let (template, unknown) = ctx.read::<TemplateEntry>(entry, &context);
        // A generated family's parameters are the dataset keys its fields did not take.
        let family: Vec<&str> = raw_str(entry, &["dataset", "generated"])
            .and_then(|f| FAMILIES.iter().find(|(n, _)| *n == f))
            .map(|(_, params)| params.iter().map(|(p, _)| *p).collect())
            .unwrap_or_default();
        let (param_paths, unknown): (Vec<KeyPath>, Vec<KeyPath>) = unknown
            .into_iter()
            .partition(|p| p.len() == 2 && p[0] == "dataset" && family.contains(&p[1].as_str()));
        ctx.unknown(entry, &unknown, &context, |parent| match parent {
            [] => fields_of::<TemplateEntry>(),
            [t] if t == "dataset" => {
                let mut known = fields_of::<DatasetDraw>();
                known.extend(&family);
                known
            }
            [t] if t == "model" => fields_of::<ModelGrid>(),
            _ => Vec::new(),
        });
        let params = family_params(ctx, entry, &param_paths, &context);
        let (Some(template), Some(params)) = (template, params) else {
            continue;
        };
        let Some(tname) = template.name.clone().filter(|n| !n.is_empty()) else {
            ctx.problem(Some(line), "template: `name` (a string) is required".into());
            continue;
        };
        match expand_template(&template, &params, &tname, seed, root, collection) {
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

/// A template's generated-family parameters (`dataset.n`, ...), each a value or a distribution;
/// `None` when one is invalid (reported).
fn family_params(
    ctx: &mut Ctx,
    entry: &Tree,
    paths: &[KeyPath],
    context: &str,
) -> Option<BTreeMap<String, Sampled>> {
    let mut params = BTreeMap::new();
    let mut valid = true;
    for path in paths {
        let Some((value, _)) = lookup(entry, path) else {
            continue;
        };
        match read::<Sampled>(value).value {
            Ok(s) => {
                params.insert(path[1].clone(), s);
            }
            Err(bad) => {
                let bad = Invalid {
                    path: path.join("."),
                    segments: path.clone(),
                    ..bad
                };
                ctx.invalid(entry, &bad, context);
                valid = false;
            }
        }
    }
    valid.then_some(params)
}

/// The `[[include]]` entries: other collections' tasks, filtered by split and template,
/// prefixed, optionally relabelled.
fn included_tasks(
    ctx: &mut Ctx,
    doc: &Tree,
    data_dir: Option<&Path>,
    depth: usize,
    collection: &mut Collection,
) {
    let file = ctx.file;
    for entry in entries(ctx, doc, "include") {
        let line = ctx.line(entry.span().start);
        let (include, unknown) = ctx.read::<IncludeEntry>(entry, "include");
        ctx.unknown(entry, &unknown, "include", |_| fields_of::<IncludeEntry>());
        let Some(include) = include else {
            continue;
        };
        let Some(target) = include.collection.as_deref() else {
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
        let splits = &include.splits;
        let as_split = &include.as_split;
        let templates = &include.templates;
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
                let prefix = include.prefix.clone().unwrap_or(inc.name.clone());
                for split in &inc.declared_splits {
                    if splits.as_ref().is_none_or(|s| s.contains(split)) {
                        let split = as_split.as_ref().unwrap_or(split);
                        push_declared(&mut collection.declared_splits, split);
                    }
                }
                collection.known_info.extend(inc.known_info);
                if let Some(ts) = templates {
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
                        if let Some(split) = as_split {
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

/// Builds a task from its fields (an explicit `[[task]]` or a template's draw).
/// Returns the task and its group.
fn build_task(fields: &TaskFields, id: String, root: &Path) -> Result<(TaskSpec, String), String> {
    let dataset = fields.dataset.as_deref().ok_or("`dataset` is required")?;
    let source = DatasetSource::parse(dataset).map_err(|e| e.to_string())?;
    let task_type = match (&fields.task_type, source.implied_task_type()) {
        (Some(t), _) => t.parse::<TaskType>().map_err(|e| e.to_string())?,
        (None, Some(implied)) => implied,
        (None, None) => return Err(format!("`task_type` is required for `{dataset}`")),
    };
    let model = ModelSpec::parse(fields.model.as_deref().ok_or("`model` is required")?)
        .map_err(|e| e.to_string())?;
    let epochs = fields.epochs.ok_or("`epochs` is required")?;
    let batch_size = fields.batch_size.ok_or("`batch_size` is required")?;
    if !(1..=MAX_EPOCHS).contains(&epochs) {
        return Err(format!("`epochs` = {epochs} is outside 1..={MAX_EPOCHS}"));
    }
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        return Err(format!(
            "`batch_size` = {batch_size} is outside 1..={MAX_BATCH_SIZE}"
        ));
    }
    let group = fields.group.clone().unwrap_or_else(|| source.short_name());
    let mut task = TaskSpec::new(
        source.resolved(root),
        task_type,
        model,
        epochs,
        batch_size,
        fields.seed.unwrap_or(0),
    );
    task.id = id;
    task.init = Hyperparams {
        lr: fields.init_lr.unwrap_or(task.init.lr),
        momentum: fields.init_momentum.unwrap_or(task.init.momentum),
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
    let fraction = |key: &str, value: Option<f64>, default: f64, lo: f64, hi: f64| {
        let v = value.unwrap_or(default);
        if v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(format!("`{key}` = {v} is outside [{lo}, {hi}]"))
        }
    };
    task.val_fraction = fraction(
        "val_fraction",
        fields.val_fraction,
        task.val_fraction,
        0.01,
        0.5,
    )?;
    task.test_fraction = fraction(
        "test_fraction",
        fields.test_fraction,
        task.test_fraction,
        0.0,
        0.49,
    )?;
    task.train_fraction = fraction("train_fraction", fields.train_fraction, 1.0, 0.001, 1.0)?;
    task.weight_decay = fraction("weight_decay", fields.weight_decay, 0.0, 0.0, 1.0)?;
    task.max_train_rows = fields.max_train_rows;
    task.steps_per_decision = fields.steps_per_decision;
    if task.max_train_rows == Some(0) || task.steps_per_decision == Some(0) {
        return Err("`max_train_rows` and `steps_per_decision` must be at least 1".into());
    }
    task.nesterov = fields.nesterov.unwrap_or(false);
    if let Some(optimizer) = &fields.optimizer {
        task.optimizer = optimizer.parse().map_err(|e| format!("`optimizer`: {e}"))?;
    }
    if task.nesterov && task.optimizer != hyperctl_tasks::OptimizerKind::Sgd {
        return Err(format!(
            "`nesterov` is an SGD option; the optimizer is {}",
            task.optimizer
        ));
    }
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
    template: &TemplateEntry,
    params: &BTreeMap<String, Sampled>,
    name: &str,
    seed: u64,
    root: &Path,
    collection: &mut Collection,
) -> Result<Vec<(TaskSpec, String, String)>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv(name));
    let count = template
        .count
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
    let splits: Vec<(String, f64)> = match (&template.split, &template.splits) {
        (Some(s), None) => vec![(s.clone(), 1.0)],
        (None, Some(fractions)) if !fractions.is_empty() => fractions
            .iter()
            .map(|(k, f)| {
                if *f > 0.0 && f.is_finite() {
                    Ok((k.clone(), *f))
                } else {
                    Err(format!("`splits.{k}` must be a fraction > 0"))
                }
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
    let dataset = template
        .dataset
        .as_ref()
        .ok_or("`dataset` (a table) is required")?;

    // Sampled task fields (everything but dataset/model/group/task_type).
    let mut sampled: Vec<(&str, Sampled)> = Vec::new();
    for (key, s) in template.sampled() {
        let Some(s) = s else {
            continue;
        };
        let range = match key {
            "init_lr" => Some((1e-8, 10.0)),
            "init_momentum" => Some((0.0, 0.999)),
            "epochs" | "batch_size" => Some((1.0, 1e6)),
            "train_fraction" => Some((0.001, 1.0)),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            s.check_range(lo, hi).map_err(|e| format!("`{key}`: {e}"))?;
        }
        sampled.push((key, s.clone()));
    }
    let models = model_sampler(template)?;

    // Candidates and how many tasks each gets, then every task drawn.
    let per_candidate = candidates(template, dataset, params, count, root, &mut rng)?;
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
    template: &TemplateEntry,
    dataset: &DatasetDraw,
    params: &BTreeMap<String, Sampled>,
    count: usize,
    root: &Path,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<(Candidate, usize)>, String> {
    let per_candidate: Vec<(Candidate, usize)> = if let Some(family) = &dataset.generated {
        let (_, defaults) = FAMILIES.iter().find(|(n, _)| *n == family).ok_or_else(|| {
            let names: Vec<&str> = FAMILIES.iter().map(|(n, _)| *n).collect();
            format!("unknown family `{family}`{}", did_you_mean(family, &names))
        })?;
        // In the family's order of parameters, whatever the file's order.
        let params: Vec<(&str, &Sampled)> = defaults
            .iter()
            .filter_map(|(p, _)| params.get(*p).map(|s| (*p, s)))
            .collect();
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
    } else if let Some(files) = &dataset.files {
        if files.is_empty() {
            return Err("`dataset.files` must be a non-empty list of sources".into());
        }
        (0..count)
            .map(|_| {
                let f = files[rand::RngExt::random_range(rng, 0..files.len())].clone();
                let source = DatasetSource::parse(&f).map_err(|e| e.to_string())?;
                let group = template
                    .group
                    .clone()
                    .unwrap_or_else(|| source.short_name());
                Ok((
                    Candidate {
                        dataset: f,
                        task_type: template.task_type.clone(),
                        group,
                        info: None,
                        label: String::new(),
                    },
                    1,
                ))
            })
            .collect::<Result<_, String>>()?
    } else if let Some(manifest) = &dataset.manifest {
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
            // The drawn values become a task exactly as an explicit `[[task]]`'s do.
            let fields: TaskFields =
                serde_path_to_error::deserialize(toml::Value::Table(fields))
                    .map_err(|e| format!("task `{id}`: `{}`: {}", e.path(), e.inner().message()))?;
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

/// `model = "SPEC"`, `model = { widths, depths, activations }` or `models = [...]`.
fn model_sampler(template: &TemplateEntry) -> Result<ModelSampler, String> {
    match (&template.model, &template.models) {
        (Some(ModelDraw::Grid(grid)), None) => {
            let list = |key: &str, v: &Option<Vec<usize>>| {
                v.clone()
                    .filter(|l| !l.is_empty())
                    .ok_or(format!("`model.{key}` must be a non-empty list"))
            };
            let widths = list("widths", &grid.widths)?;
            let depths = list("depths", &grid.depths)?;
            let acts = match &grid.activations {
                None => vec!["relu".to_string()],
                Some(a) if !a.is_empty() => a.clone(),
                Some(_) => return Err("`model.activations` must be a non-empty list".into()),
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
        (Some(ModelDraw::Spec(s)), None) => {
            ModelSpec::parse(s).map_err(|e| e.to_string())?;
            Ok(ModelSampler::Choice(vec![s.clone()]))
        }
        (None, Some(specs)) if !specs.is_empty() => {
            for s in specs {
                ModelSpec::parse(s).map_err(|e| e.to_string())?;
            }
            Ok(ModelSampler::Choice(specs.clone()))
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
    filters: &DatasetDraw,
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
    let exclude = filters.exclude.as_deref().unwrap_or_default();
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
        let keep = filters.task.as_ref().is_none_or(|t| *t == task)
            && filters.min_rows.is_none_or(|m| rows >= m)
            && filters.max_rows.is_none_or(|m| rows <= m)
            && filters.min_features.is_none_or(|m| features >= m)
            && filters.max_features.is_none_or(|m| features <= m)
            && !exclude.contains(&name);
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
