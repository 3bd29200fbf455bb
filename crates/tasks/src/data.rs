//! In-memory datasets, the deterministic stratified split, and standardization.
//!
//! A [`Dataset`] holds rows of `f32` features and one target per row (a class index stored as
//! `f32` for classification, a value for regression), plus an optional predefined test part (MNIST's
//! `t10k` files). [`split`] turns it into train/validation/test parts by seed:
//! - classification splits are stratified: each class's rows are shuffled and divided in the same
//!   proportions, so every split keeps the class balance;
//! - a predefined test part is used as the test split, and the rest is divided into train/val;
//! - `max_train_rows` subsamples the (already shuffled) train part;
//! - features are standardized with the train part's statistics only (per feature for tabular data,
//!   one global mean/std for images), and regression targets likewise.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Whether the target is a class index or a real value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Integer class targets `0..K-1`; cross-entropy loss; metric: accuracy.
    Classification,
    /// Real targets; MSE loss on standardized targets; metric: R².
    Regression,
}

impl TaskType {
    /// `classification` or `regression`.
    pub fn name(self) -> &'static str {
        match self {
            TaskType::Classification => "classification",
            TaskType::Regression => "regression",
        }
    }
}

impl std::str::FromStr for TaskType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "classification" => Ok(TaskType::Classification),
            "regression" => Ok(TaskType::Regression),
            other => Err(Error::InvalidConfig {
                field: "task_type",
                reason: format!("`{other}`; expected `classification` or `regression`"),
            }),
        }
    }
}

/// Rows of features with one target each.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Row-major features, `n_rows * n_features` values.
    pub x: Vec<f32>,
    /// One target per row.
    pub y: Vec<f32>,
}

impl Table {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.y.len()
    }

    fn gather(&self, rows: &[usize], n_features: usize) -> Table {
        let mut x = Vec::with_capacity(rows.len() * n_features);
        for &r in rows {
            x.extend_from_slice(&self.x[r * n_features..(r + 1) * n_features]);
        }
        Table {
            x,
            y: rows.iter().map(|&r| self.y[r]).collect(),
        }
    }
}

/// A loaded dataset, before splitting.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name for logs and result files.
    pub name: String,
    /// Classification or regression.
    pub task_type: TaskType,
    /// Features per row.
    pub n_features: usize,
    /// Number of classes (classification), 1 for regression.
    pub n_classes: usize,
    /// `[channels, height, width]` when rows are images (`n_features = c*h*w`).
    pub image_shape: Option<[usize; 3]>,
    /// All rows, or the rows to split into train/val when `test` is given.
    pub rows: Table,
    /// A predefined test part, used as the test split when present.
    pub test: Option<Table>,
}

/// How to split a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitConfig {
    /// Split seed (shuffles rows within each class).
    pub seed: u64,
    /// Fraction of rows for validation, in (0, 0.5].
    pub val_fraction: f64,
    /// Fraction of rows for test, in [0, 0.5) (ignored when the dataset has a predefined test part).
    pub test_fraction: f64,
    /// Keep this fraction of the train rows (after shuffling), in (0, 1].
    pub train_fraction: f64,
    /// Keep at most this many train rows (after shuffling and `train_fraction`); `None` keeps all.
    pub max_train_rows: Option<usize>,
}

/// Standardization statistics (computed on train only), kept to report and to apply to new data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Standardization {
    /// Per-feature (or, for images, one global) mean.
    pub x_mean: Vec<f32>,
    /// Per-feature (or one global) standard deviation, never 0.
    pub x_std: Vec<f32>,
    /// Regression target mean and std (`(0, 1)` for classification).
    pub y_mean_std: (f32, f32),
}

/// The standardized train/validation/test parts of a dataset.
#[derive(Debug, Clone)]
pub struct SplitData {
    /// Classification or regression.
    pub task_type: TaskType,
    /// Features per row.
    pub n_features: usize,
    /// Number of classes (1 for regression).
    pub n_classes: usize,
    /// `[c, h, w]` when rows are images.
    pub image_shape: Option<[usize; 3]>,
    /// Training rows.
    pub train: Table,
    /// Validation rows (the only held-back data an environment may look at).
    pub val: Table,
    /// Test rows (reported after training, never used for decisions).
    pub test: Table,
    /// The statistics used.
    pub standardization: Standardization,
}

/// Splits and standardizes `data` deterministically from `config.seed`.
pub fn split(data: &Dataset, config: &SplitConfig) -> Result<SplitData> {
    if !(config.val_fraction > 0.0 && config.val_fraction <= 0.5) {
        return Err(Error::InvalidConfig {
            field: "val_fraction",
            reason: format!("{} is outside (0, 0.5]", config.val_fraction),
        });
    }
    if !(config.test_fraction >= 0.0 && config.test_fraction < 0.5) {
        return Err(Error::InvalidConfig {
            field: "test_fraction",
            reason: format!("{} is outside [0, 0.5)", config.test_fraction),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5b1_7da7a);
    let test_fraction = if data.test.is_some() {
        0.0
    } else {
        config.test_fraction
    };

    // Group row indices by stratum (class, or one stratum for regression), shuffle each.
    let n_strata = match data.task_type {
        TaskType::Classification => data.n_classes,
        TaskType::Regression => 1,
    };
    let mut strata: Vec<Vec<usize>> = vec![Vec::new(); n_strata];
    for (row, &y) in data.rows.y.iter().enumerate() {
        let s = if n_strata == 1 { 0 } else { y as usize };
        strata[s].push(row);
    }
    let (mut train_rows, mut val_rows, mut test_rows) = (Vec::new(), Vec::new(), Vec::new());
    for rows in &mut strata {
        rows.shuffle(&mut rng);
        let n = rows.len();
        let n_test = (test_fraction * n as f64).round() as usize;
        let n_val = ((config.val_fraction * n as f64).round() as usize).min(n - n_test);
        test_rows.extend_from_slice(&rows[..n_test]);
        val_rows.extend_from_slice(&rows[n_test..n_test + n_val]);
        train_rows.extend_from_slice(&rows[n_test + n_val..]);
    }
    train_rows.shuffle(&mut rng);
    val_rows.shuffle(&mut rng);
    test_rows.shuffle(&mut rng);
    if !(config.train_fraction > 0.0 && config.train_fraction <= 1.0) {
        return Err(Error::InvalidConfig {
            field: "train_fraction",
            reason: format!("{} is outside (0, 1]", config.train_fraction),
        });
    }
    let keep = ((train_rows.len() as f64 * config.train_fraction).ceil() as usize).max(1);
    train_rows.truncate(keep);
    if let Some(max) = config.max_train_rows {
        if max == 0 {
            return Err(Error::InvalidConfig {
                field: "max_train_rows",
                reason: "must be at least 1".into(),
            });
        }
        train_rows.truncate(max);
    }
    let too_small = |part: &str| Error::InvalidData {
        name: data.name.clone(),
        reason: format!(
            "{} rows leave the {part} split empty (val_fraction {}, test_fraction {})",
            data.rows.n_rows(),
            config.val_fraction,
            test_fraction
        ),
    };
    if train_rows.is_empty() {
        return Err(too_small("train"));
    }
    if val_rows.is_empty() {
        return Err(too_small("validation"));
    }
    let nf = data.n_features;
    let mut train = data.rows.gather(&train_rows, nf);
    let mut val = data.rows.gather(&val_rows, nf);
    let mut test = match &data.test {
        Some(t) => t.clone(),
        None => data.rows.gather(&test_rows, nf),
    };
    if test.n_rows() == 0 {
        return Err(too_small("test"));
    }

    // Standardize with train statistics only.
    let standardization =
        standardization_of(&train, nf, data.image_shape.is_some(), data.task_type);
    for table in [&mut train, &mut val, &mut test] {
        apply_standardization(table, nf, &standardization);
    }
    Ok(SplitData {
        task_type: data.task_type,
        n_features: nf,
        n_classes: data.n_classes,
        image_shape: data.image_shape,
        train,
        val,
        test,
        standardization,
    })
}

/// Standardization statistics of a column: mean and std (a constant column, std 1).
fn mean_std(values: impl Iterator<Item = f32> + Clone) -> (f32, f32) {
    let (mean, std) = crate::trainer::mean_std_of(values.map(f64::from));
    (mean as f32, if std > 1e-8 { std as f32 } else { 1.0 })
}

fn standardization_of(
    train: &Table,
    nf: usize,
    global: bool,
    task_type: TaskType,
) -> Standardization {
    let (x_mean, x_std) = if global {
        let (m, s) = mean_std(train.x.iter().copied());
        (vec![m], vec![s])
    } else {
        (0..nf)
            .map(|j| mean_std(train.x.iter().skip(j).step_by(nf).copied()))
            .unzip()
    };
    let y_mean_std = match task_type {
        TaskType::Classification => (0.0, 1.0),
        TaskType::Regression => mean_std(train.y.iter().copied()),
    };
    Standardization {
        x_mean,
        x_std,
        y_mean_std,
    }
}

fn apply_standardization(table: &mut Table, nf: usize, st: &Standardization) {
    let global = st.x_mean.len() == 1 && nf != 1;
    for (i, v) in table.x.iter_mut().enumerate() {
        let j = if global { 0 } else { i % nf };
        *v = (*v - st.x_mean[j]) / st.x_std[j];
    }
    let (m, s) = st.y_mean_std;
    if (m, s) != (0.0, 1.0) {
        for y in &mut table.y {
            *y = (*y - m) / s;
        }
    }
}

/// Checks classification targets (non-negative integers) and returns the number of classes.
pub(crate) fn count_classes(name: &str, ys: &[f32]) -> Result<usize> {
    let mut max = 0usize;
    for (row, &y) in ys.iter().enumerate() {
        if !(y >= 0.0 && y.fract() == 0.0 && y < 1e6) {
            return Err(Error::InvalidData {
                name: name.into(),
                reason: format!(
                    "data row {}: classification target {y} is not a class index 0..K-1",
                    row + 1
                ),
            });
        }
        max = max.max(y as usize);
    }
    if max < 1 {
        return Err(Error::InvalidData {
            name: name.into(),
            reason: format!("classification needs at least 2 classes; every target is {max}"),
        });
    }
    // A class index with no example (a stray label 200 among 0..9) would silently grow the
    // model's output layer to 201 classes: the classes must be exactly 0..K-1, each present.
    let mut seen = vec![false; max + 1];
    for &y in ys {
        seen[y as usize] = true;
    }
    let missing: Vec<usize> = (0..=max).filter(|&c| !seen[c]).collect();
    if !missing.is_empty() {
        let (first_row, _) = ys
            .iter()
            .enumerate()
            .find(|(_, y)| **y as usize == max)
            .expect("the maximum occurs");
        let shown: Vec<String> = missing.iter().take(5).map(|c| c.to_string()).collect();
        return Err(Error::InvalidData {
            name: name.into(),
            reason: format!(
                "classification targets must be the class indices 0..K-1 with every class present: data row {} has class {max}, but {} of the classes below it never occur ({}{})",
                first_row + 1,
                missing.len(),
                shown.join(", "),
                if missing.len() > 5 { ", ..." } else { "" }
            ),
        });
    }
    Ok(max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, classes: usize) -> Dataset {
        let x: Vec<f32> = (0..n * 2).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % classes) as f32).collect();
        Dataset {
            name: "toy".into(),
            task_type: TaskType::Classification,
            n_features: 2,
            n_classes: classes,
            image_shape: None,
            rows: Table { x, y },
            test: None,
        }
    }

    fn cfg(seed: u64) -> SplitConfig {
        SplitConfig {
            seed,
            val_fraction: 0.2,
            test_fraction: 0.2,
            train_fraction: 1.0,
            max_train_rows: None,
        }
    }

    #[test]
    fn split_is_deterministic_stratified_and_disjoint() {
        let data = toy(100, 4);
        let a = split(&data, &cfg(7)).unwrap();
        let b = split(&data, &cfg(7)).unwrap();
        let c = split(&data, &cfg(8)).unwrap();
        assert_eq!(a.train, b.train);
        assert_eq!(a.val, b.val);
        assert_ne!(a.train, c.train);
        assert_eq!(
            (a.train.n_rows(), a.val.n_rows(), a.test.n_rows()),
            (60, 20, 20)
        );
        for part in [&a.train, &a.val, &a.test] {
            for class in 0..4 {
                let count = part.y.iter().filter(|&&y| y == class as f32).count();
                assert_eq!(
                    count * 4,
                    part.n_rows(),
                    "class {class} should keep its share"
                );
            }
        }
        // Standardized features: the raw first feature 2*row identifies the row uniquely.
        let st = &a.standardization;
        let raw = |t: &Table| -> Vec<i64> {
            t.x.iter()
                .step_by(2)
                .map(|v| (v * st.x_std[0] + st.x_mean[0]).round() as i64)
                .collect()
        };
        let mut all: Vec<i64> = [raw(&a.train), raw(&a.val), raw(&a.test)].concat();
        all.sort();
        all.dedup();
        assert_eq!(
            all.len(),
            100,
            "splits should be disjoint and cover every row"
        );
    }

    #[test]
    fn standardization_uses_train_statistics_only() {
        let a = split(&toy(100, 2), &cfg(1)).unwrap();
        let nf = 2;
        for j in 0..nf {
            let col: Vec<f32> = a.train.x.iter().skip(j).step_by(nf).copied().collect();
            let mean = col.iter().sum::<f32>() / col.len() as f32;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / col.len() as f32;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "train column {j}: {mean} {var}"
            );
        }
    }

    #[test]
    fn too_small_dataset_is_an_error_not_a_panic() {
        let err = split(&toy(2, 2), &cfg(0)).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = split(
            &toy(100, 2),
            &SplitConfig {
                val_fraction: 0.9,
                ..cfg(0)
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("val_fraction"), "{err}");
    }

    #[test]
    fn max_train_rows_subsamples_train_only() {
        let a = split(
            &toy(100, 2),
            &SplitConfig {
                max_train_rows: Some(10),
                ..cfg(3)
            },
        )
        .unwrap();
        assert_eq!((a.train.n_rows(), a.val.n_rows()), (10, 20));
        let b = split(
            &toy(100, 2),
            &SplitConfig {
                train_fraction: 0.25,
                ..cfg(3)
            },
        )
        .unwrap();
        assert_eq!((b.train.n_rows(), b.val.n_rows()), (15, 20));
    }
}
