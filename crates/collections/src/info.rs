//! Dataset facts for cost estimates: rows, features, classes, without training anything.

use hyperctl_tasks::data::TaskType;
use hyperctl_tasks::model::ModelSpec;
use hyperctl_tasks::{Dataset, TaskSpec};

/// What a cost estimate needs to know about a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DatasetInfo {
    /// Rows available to split into train/val (and test, unless `has_test_part`).
    pub n_rows: usize,
    /// Features per row.
    pub n_features: usize,
    /// Outputs of the model (classes, or 1 for regression).
    pub n_outputs: usize,
    /// `[c, h, w]` for images.
    pub image_shape: Option<[usize; 3]>,
    /// The dataset brings its own test part (so `test_fraction` is not taken from `n_rows`).
    pub has_test_part: bool,
}

impl DatasetInfo {
    /// Facts of a loaded dataset.
    pub fn of(data: &Dataset) -> Self {
        Self {
            n_rows: data.rows.n_rows(),
            n_features: data.n_features,
            n_outputs: match data.task_type {
                TaskType::Classification => data.n_classes,
                TaskType::Regression => 1,
            },
            image_shape: data.image_shape,
            has_test_part: data.test.is_some(),
        }
    }

    /// Train rows the task will use (same rounding as the split, up to class-wise rounding).
    pub fn train_rows(&self, task: &TaskSpec) -> usize {
        let n = self.n_rows as f64;
        let test = if self.has_test_part {
            0.0
        } else {
            (task.test_fraction * n).round()
        };
        let val = (task.val_fraction * n).round();
        let train = ((n - test - val).max(1.0) * task.train_fraction).ceil() as usize;
        task.max_train_rows.map_or(train, |m| train.min(m)).max(1)
    }

    /// Minibatch steps over the whole budget.
    pub fn steps(&self, task: &TaskSpec) -> usize {
        let per_interval = task
            .steps_per_decision
            .unwrap_or_else(|| self.train_rows(task).div_ceil(task.batch_size.max(1)));
        per_interval * task.epochs
    }

    /// The cost estimate: minibatch steps × trainable parameters.
    pub fn cost(&self, task: &TaskSpec) -> f64 {
        self.steps(task) as f64 * model_params(&task.model, self) as f64
    }
}

/// Trainable parameters of `model` on this data (0 when the model does not fit it).
pub fn model_params(model: &ModelSpec, info: &DatasetInfo) -> usize {
    match *model {
        ModelSpec::Mlp { width, depth, .. } => {
            let mut fan_in = info.n_features;
            let mut total = 0;
            for _ in 0..depth {
                total += fan_in * width + width;
                fan_in = width;
            }
            total + fan_in * info.n_outputs + info.n_outputs
        }
        ModelSpec::CnnSmall => match info.image_shape {
            Some([c, h, w]) if h >= 10 && w >= 10 => {
                let side = |s: usize| ((s - 2) / 2 - 2) / 2;
                let flat = 32 * side(h) * side(w);
                (16 * c * 9 + 16) + (32 * 16 * 9 + 32) + (flat * info.n_outputs + info.n_outputs)
            }
            _ => 0,
        },
    }
}
