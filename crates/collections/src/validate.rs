//! Checks a loaded collection: data files, group leakage across splits, empty splits, models
//! that do not fit their data. Every problem is reported, not just the first.

use std::collections::BTreeMap;

use crate::info::{DatasetInfo, model_params};
use crate::{Collection, Problem};

/// Facts of every dataset the collection uses, by source string: known ones without I/O, the
/// others by loading the file once (`Err` holds why it could not be loaded).
pub fn dataset_infos(collection: &Collection) -> BTreeMap<String, Result<DatasetInfo, String>> {
    let mut infos: BTreeMap<String, Result<DatasetInfo, String>> = BTreeMap::new();
    for t in &collection.tasks {
        let key = t.task.source.to_string();
        if infos.contains_key(&key) {
            continue;
        }
        let info = match collection.known_info.get(&key) {
            Some(info) => Ok(*info),
            None => t
                .task
                .load()
                .map(|d| DatasetInfo::of(&d))
                .map_err(|e| e.to_string()),
        };
        infos.insert(key, info);
    }
    infos
}

/// Every problem of the collection. With `load_data`, each file dataset is loaded once (parse
/// errors are found); without it, only existence is checked.
pub fn validate(collection: &Collection, load_data: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let problem = |t: &crate::CollectionTask, message: String| Problem {
        file: t.file.clone(),
        line: t.line,
        message,
    };
    if collection.tasks.is_empty() {
        problems.push(Problem {
            file: collection.file.clone(),
            line: None,
            message: "the collection has no tasks".into(),
        });
    }
    for split in &collection.declared_splits {
        if !collection.tasks.iter().any(|t| &t.split == split) {
            problems.push(Problem {
                file: collection.file.clone(),
                line: None,
                message: format!("split `{split}` is declared but has no tasks"),
            });
        }
    }

    // A group must live in one split among the tasks of one inner optimizer: a policy drives
    // one optimizer (it refuses the others), so the leakage that could flatter it is between its
    // own optimizer's splits; SGD and AdamW variants of one dataset may sit in different splits.
    let mut first_seen: BTreeMap<(&str, hyperctl_tasks::OptimizerKind), &crate::CollectionTask> =
        BTreeMap::new();
    let mut reported: Vec<(&str, &str, &str)> = Vec::new();
    for t in &collection.tasks {
        match first_seen.get(&(t.group.as_str(), t.task.optimizer)) {
            None => {
                first_seen.insert((&t.group, t.task.optimizer), t);
            }
            Some(first) if first.split != t.split => {
                let key = (t.group.as_str(), first.split.as_str(), t.split.as_str());
                if !reported.contains(&key) {
                    reported.push(key);
                    problems.push(problem(
                        t,
                        format!(
                            "group `{}` spans splits: `{}` (task `{}`) and `{}` (task `{}`)",
                            t.group, first.split, first.task.id, t.split, t.task.id
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }

    // Data files exist (and load), and models fit their data.
    let mut checked: BTreeMap<String, Option<DatasetInfo>> = BTreeMap::new();
    for t in &collection.tasks {
        let key = t.task.source.to_string();
        if !checked.contains_key(&key) {
            let info = if let Some(path) = t.task.data_path().filter(|p| !p.exists()) {
                problems.push(problem(
                    t,
                    format!("task `{}`: missing data file {}", t.task.id, path.display()),
                ));
                None
            } else if let Some(info) = collection
                .known_info
                .get(&key)
                .filter(|_| !load_data || t.task.data_path().is_none())
            {
                Some(*info)
            } else if load_data || t.task.data_path().is_none() {
                match t.task.load() {
                    Ok(d) => Some(DatasetInfo::of(&d)),
                    Err(e) => {
                        problems.push(problem(
                            t,
                            format!("task `{}`: cannot load data: {e}", t.task.id),
                        ));
                        None
                    }
                }
            } else {
                collection.known_info.get(&key).copied()
            };
            checked.insert(key.clone(), info);
        }
        if let Some(info) = checked[&key]
            && model_params(&t.task.model, &info) == 0
        {
            problems.push(problem(
                t,
                format!(
                    "task `{}`: model `{}` does not fit this data",
                    t.task.id, t.task.model
                ),
            ));
        }
    }
    problems
}
