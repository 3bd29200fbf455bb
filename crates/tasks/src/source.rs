//! Dataset sources as written on the command line and in collections:
//! `csv:PATH`, `idx:DIR` and `gen:FAMILY[:k=v,...]` (see [`crate::generated`] for the families).

use std::path::{Path, PathBuf};

use crate::data::{Dataset, TaskType};
use crate::{Error, Result, csv_data, generated, idx};

/// Where a dataset comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// A CSV file (`.csv` or `.csv.gz`), last column the target.
    Csv(PathBuf),
    /// A directory of MNIST-format IDX files.
    Idx(PathBuf),
    /// A generated family with `k=v` parameter overrides.
    Generated {
        /// The family name.
        family: String,
        /// Parameter overrides in the order given.
        args: Vec<(String, String)>,
    },
}

impl DatasetSource {
    /// Parses `csv:PATH`, `idx:DIR` or `gen:FAMILY[:k=v,...]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidSource {
            source_spec: spec.into(),
            reason: reason.into(),
        };
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| invalid("expected `csv:PATH`, `idx:DIR` or `gen:FAMILY[:k=v,...]`"))?;
        match kind {
            "csv" if !rest.is_empty() => Ok(DatasetSource::Csv(rest.into())),
            "idx" if !rest.is_empty() => Ok(DatasetSource::Idx(rest.into())),
            "gen" => {
                let (family, params) = rest.split_once(':').unwrap_or((rest, ""));
                if family.is_empty() {
                    return Err(invalid("expected a family name after `gen:`"));
                }
                let mut args = Vec::new();
                for pair in params.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        invalid(&format!("parameter `{pair}` is not of the form k=v"))
                    })?;
                    args.push((k.trim().to_string(), v.trim().to_string()));
                }
                Ok(DatasetSource::Generated {
                    family: family.into(),
                    args,
                })
            }
            "csv" | "idx" => Err(invalid("expected a path after the colon")),
            other => Err(invalid(&format!(
                "unknown source kind `{other}`; expected csv, idx or gen"
            ))),
        }
    }

    /// The same source with relative file paths resolved against `root`.
    pub fn resolved(&self, root: &Path) -> Self {
        match self {
            DatasetSource::Csv(p) => DatasetSource::Csv(root.join(p)),
            DatasetSource::Idx(p) => DatasetSource::Idx(root.join(p)),
            generated => generated.clone(),
        }
    }

    /// A short name: the file or directory name without `.gz`/`.csv` for file sources, the
    /// whole source string for generated ones.
    pub fn short_name(&self) -> String {
        match self {
            DatasetSource::Csv(p) | DatasetSource::Idx(p) => p
                .file_name()
                .map(|f| {
                    f.to_string_lossy()
                        .trim_end_matches(".gz")
                        .trim_end_matches(".csv")
                        .to_string()
                })
                .unwrap_or_else(|| self.to_string()),
            DatasetSource::Generated { .. } => self.to_string(),
        }
    }

    /// The task type the source implies, if any (generated families and IDX images fix it).
    pub fn implied_task_type(&self) -> Option<TaskType> {
        match self {
            DatasetSource::Csv(_) => None,
            DatasetSource::Idx(_) => Some(TaskType::Classification),
            DatasetSource::Generated { family, .. } => Some(if family == "teacher-reg" {
                TaskType::Regression
            } else {
                TaskType::Classification
            }),
        }
    }

    /// Loads (or generates) the dataset. `task_type` must agree with the source's implied type.
    pub fn load(&self, task_type: TaskType) -> Result<Dataset> {
        if let Some(implied) = self.implied_task_type()
            && implied != task_type
        {
            return Err(Error::InvalidSource {
                source_spec: self.to_string(),
                reason: format!(
                    "this source is a {} dataset, not {}",
                    implied.name(),
                    task_type.name()
                ),
            });
        }
        match self {
            DatasetSource::Csv(path) => csv_data::load_csv(path, task_type),
            DatasetSource::Idx(dir) => idx::load_idx_dir(dir),
            DatasetSource::Generated { family, args } => {
                generated::generate(&self.to_string(), family, args)
            }
        }
    }
}

impl std::fmt::Display for DatasetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatasetSource::Csv(p) => write!(f, "csv:{}", p.display()),
            DatasetSource::Idx(p) => write!(f, "idx:{}", p.display()),
            DatasetSource::Generated { family, args } => {
                write!(f, "gen:{family}")?;
                for (i, (k, v)) in args.iter().enumerate() {
                    write!(f, "{}{k}={v}", if i == 0 { ':' } else { ',' })?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for DatasetSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for spec in [
            "csv:data/a.csv.gz",
            "idx:../mnist",
            "gen:spirals",
            "gen:gauss-mix:n=100,d=4",
        ] {
            assert_eq!(DatasetSource::parse(spec).unwrap().to_string(), spec);
        }
        for bad in ["foo", "csv:", "zip:a", "gen:", "gen:spirals:n"] {
            let err = DatasetSource::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn task_type_must_match_the_source() {
        let src = DatasetSource::parse("gen:teacher-reg:n=20").unwrap();
        let err = src.load(TaskType::Classification).unwrap_err().to_string();
        assert!(err.contains("regression dataset"), "{err}");
        assert_eq!(
            src.load(TaskType::Regression).unwrap().task_type,
            TaskType::Regression
        );
    }
}
