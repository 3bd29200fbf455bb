//! The [`Featurizer`]: per-interval [`EpochStats`] → a scale-free observation vector.
//!
//! Every feature is a log-ratio, a normalized noise level, a log of a hyperparameter or the
//! progress, so the same policy can read tasks whose losses and gradients differ by orders of
//! magnitude. `V₀` is the untrained model's validation loss, `G₁` the first interval's mean
//! gradient norm. Every value is clipped into its bounds; a value that cannot be computed (NaN)
//! takes its neutral value. Before the first interval only lr, momentum and progress are known;
//! the other features are neutral.
//!
//! | # | name | definition | bounds | neutral |
//! |---|---|---|---|---|
//! | 0 | `train_loss_rel` | ln(train_loss_mean / V₀) | [−10, 5] | 0 |
//! | 1 | `val_loss_rel` | ln(val_loss / V₀) | [−10, 5] | 0 |
//! | 2 | `val_vs_best` | ln(val_loss / best earlier val loss, V₀ included) | [−5, 5] | 0 |
//! | 3 | `gen_gap` | ln(val_loss / train_loss_mean) | [−5, 5] | 0 |
//! | 4 | `val_slope` | least-squares slope per interval of ln(val loss) over the last 4 points (V₀ included) | [−5, 5] | 0 |
//! | 5 | `train_noise` | ln(1 + train_loss_std / train_loss_mean) | [0, 5] | 0 |
//! | 6 | `train_trend` | ln(train_loss_last / train_loss_first) | [−10, 10] | 0 |
//! | 7 | `grad_norm_rel` | ln(grad_norm_mean / G₁) | [−10, 10] | 0 |
//! | 8 | `grad_noise` | ln(1 + grad_norm_std / grad_norm_mean) | [0, 5] | 0 |
//! | 9 | `log10_update_ratio` | log10(‖Δw‖ / ‖w‖) over the interval | [−8, 2] | −8 |
//! | 10 | `log10_lr` | log10(lr) of the next interval | [−5, 1] | — |
//! | 11 | `log10_one_minus_momentum` | log10(1 − μ) of the next interval | [−2, 0] | — |
//! | 12 | `progress` | intervals done / budget | [0, 1] | — |
//!
//! Version 2 (`EnvConfig::feature_version = 2`) appends what a feed-forward policy needs to read
//! the loss's response to its own last moves (a memory of two intervals):
//!
//! | # | name | definition | bounds | neutral |
//! |---|---|---|---|---|
//! | 13 | `last_lr_step` | log₂(lr of the interval just run / lr of the one before) | [−10, 10] | 0 |
//! | 14 | `prev_lr_step` | the same one interval earlier | [−10, 10] | 0 |
//! | 15 | `last_val_change` | ln(val loss / the previous interval's val loss, V₀ before the first) | [−5, 5] | 0 |
//! | 16 | `prev_val_change` | the same one interval earlier | [−5, 5] | 0 |
//! | 17 | `last_train_change` | ln(train_loss_mean / the previous interval's) | [−5, 5] | 0 |
//! | 18 | `log10_interval_steps` | log10(minibatch steps in the interval just run) | [0, 5] | 0 |

use crate::stats::{EpochStats, Hyperparams};
use hyperctl_env_core::{BoxSpace, Obs};

/// Name, lower bound, upper bound and neutral value of each feature of version 1, in order.
pub const FEATURES: [(&str, f32, f32, f32); 13] = [
    ("train_loss_rel", -10.0, 5.0, 0.0),
    ("val_loss_rel", -10.0, 5.0, 0.0),
    ("val_vs_best", -5.0, 5.0, 0.0),
    ("gen_gap", -5.0, 5.0, 0.0),
    ("val_slope", -5.0, 5.0, 0.0),
    ("train_noise", 0.0, 5.0, 0.0),
    ("train_trend", -10.0, 10.0, 0.0),
    ("grad_norm_rel", -10.0, 10.0, 0.0),
    ("grad_noise", 0.0, 5.0, 0.0),
    ("log10_update_ratio", -8.0, 2.0, -8.0),
    ("log10_lr", -5.0, 1.0, -2.0),
    ("log10_one_minus_momentum", -2.0, 0.0, 0.0),
    ("progress", 0.0, 1.0, 0.0),
];

/// Version 2's features: version 1's, then the two-interval memory (module docs).
pub const FEATURES_V2: [(&str, f32, f32, f32); 19] = [
    FEATURES[0],
    FEATURES[1],
    FEATURES[2],
    FEATURES[3],
    FEATURES[4],
    FEATURES[5],
    FEATURES[6],
    FEATURES[7],
    FEATURES[8],
    FEATURES[9],
    FEATURES[10],
    FEATURES[11],
    FEATURES[12],
    ("last_lr_step", -10.0, 10.0, 0.0),
    ("prev_lr_step", -10.0, 10.0, 0.0),
    ("last_val_change", -5.0, 5.0, 0.0),
    ("prev_val_change", -5.0, 5.0, 0.0),
    ("last_train_change", -5.0, 5.0, 0.0),
    ("log10_interval_steps", 0.0, 5.0, 0.0),
];

/// Number of features of version 1 (the default).
pub const N_FEATURES: usize = FEATURES.len();

/// Most features of any version.
const MAX_FEATURES: usize = FEATURES_V2.len();

/// The default version of the feature definitions (the one `EnvConfig::defaults` selects).
/// Versions are never changed once released: a new definition, bound or order is a new version.
/// Saved policies record theirs and run only under it.
pub const FEATURIZER_VERSION: u32 = 1;

/// Every feature version this build computes.
pub const FEATURIZER_VERSIONS: [u32; 2] = [1, 2];

/// The features of `version` (name, lower bound, upper bound, neutral value), or `None` for a
/// version this build does not know.
pub fn feature_table(version: u32) -> Option<&'static [(&'static str, f32, f32, f32)]> {
    match version {
        1 => Some(&FEATURES),
        2 => Some(&FEATURES_V2),
        _ => None,
    }
}

fn table(version: u32) -> &'static [(&'static str, f32, f32, f32)] {
    feature_table(version).expect("EnvConfig::validate accepts only known feature versions")
}

/// Points used for the validation-loss slope.
const SLOPE_WINDOW: usize = 4;

/// The observation space of feature version 1.
pub fn observation_space() -> BoxSpace {
    observation_space_of(FEATURIZER_VERSION)
}

/// The observation space of feature version `version` (a known one: see [`feature_table`]).
pub fn observation_space_of(version: u32) -> BoxSpace {
    let t = table(version);
    BoxSpace::new(
        t.iter().map(|f| f.1).collect(),
        t.iter().map(|f| f.2).collect(),
    )
    .expect("the feature bounds should be valid")
}

/// Turns a stream of interval statistics into observations (see the module docs).
#[derive(Debug, Clone)]
pub struct Featurizer {
    version: u32,
    initial_val_loss: f64,
    budget: usize,
    best_val: f64,
    ln_val_history: Vec<f64>,
    first_grad_norm: Option<f64>,
    intervals_done: usize,
    last_raw: [f64; MAX_FEATURES],
    /// Version 2's memory: the last two intervals' lrs, the last two ln-val changes, and the
    /// previous interval's val and train losses.
    lr_history: [f64; 2],
    val_change_history: [f64; 2],
    prev_val: f64,
    prev_train: f64,
}

impl Featurizer {
    /// A featurizer of feature version 1 for an episode whose untrained validation loss is
    /// `initial_val_loss` and whose budget is `budget` intervals.
    pub fn new(initial_val_loss: f64, budget: usize) -> Self {
        Self::with_version(FEATURIZER_VERSION, initial_val_loss, budget)
    }

    /// [`Featurizer::new`] for feature version `version` (a known one: see [`feature_table`]).
    pub fn with_version(version: u32, initial_val_loss: f64, budget: usize) -> Self {
        table(version);
        let v0 = floor_loss(initial_val_loss);
        Self {
            version,
            initial_val_loss: v0,
            budget: budget.max(1),
            best_val: v0,
            ln_val_history: vec![v0.ln()],
            first_grad_norm: None,
            intervals_done: 0,
            last_raw: [f64::NAN; MAX_FEATURES],
            lr_history: [f64::NAN; 2],
            val_change_history: [f64::NAN; 2],
            prev_val: v0,
            prev_train: f64::NAN,
        }
    }

    /// The feature version this featurizer computes.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The observation before any interval has run.
    pub fn initial(&self, next: Hyperparams) -> Obs {
        let mut raw = [f64::NAN; MAX_FEATURES];
        self.fill_hparams(&mut raw, next);
        self.finish(raw)
    }

    /// Takes in the statistics of the interval just finished and returns the observation for the
    /// decision about the next interval, which would run under `next` unless changed.
    pub fn observe(&mut self, stats: &EpochStats, next: Hyperparams) -> Obs {
        self.intervals_done += 1;
        let v0 = self.initial_val_loss;
        let val = stats.val_loss;
        let train = stats.train_loss_mean;
        let mut raw = [f64::NAN; MAX_FEATURES];
        if self.version >= 2 {
            // The lr step into the interval just run, and the one before it.
            let [older, last] = self.lr_history;
            raw[13] = (stats.lr / last).log2();
            raw[14] = (last / older).log2();
            self.lr_history = [last, stats.lr];
            let change = ln_ratio(val, self.prev_val);
            raw[15] = change;
            raw[16] = self.val_change_history[1];
            self.val_change_history = [self.val_change_history[1], change];
            raw[17] = ln_ratio(train, self.prev_train);
            raw[18] = (stats.steps as f64).log10();
            if val.is_finite() {
                self.prev_val = val;
            }
            if train.is_finite() {
                self.prev_train = train;
            }
        }
        raw[0] = ln_ratio(train, v0);
        raw[1] = ln_ratio(val, v0);
        raw[2] = ln_ratio(val, self.best_val);
        raw[3] = ln_ratio(val, train);
        if val.is_finite() {
            // Only the slope's window is ever read: keep memory constant over any budget.
            if self.ln_val_history.len() == SLOPE_WINDOW {
                self.ln_val_history.remove(0);
            }
            self.ln_val_history.push(floor_loss(val).ln());
            self.best_val = self.best_val.min(floor_loss(val));
        }
        raw[4] =
            slope(&self.ln_val_history[self.ln_val_history.len().saturating_sub(SLOPE_WINDOW)..]);
        raw[5] = (stats.train_loss_std / train).ln_1p();
        raw[6] = ln_ratio(stats.train_loss_last, stats.train_loss_first);
        let g1 = *self.first_grad_norm.get_or_insert(stats.grad_norm_mean);
        raw[7] = ln_ratio(stats.grad_norm_mean, g1);
        raw[8] = (stats.grad_norm_std / stats.grad_norm_mean).ln_1p();
        raw[9] = stats.update_ratio.log10();
        self.fill_hparams(&mut raw, next);
        self.last_raw = raw;
        self.finish(raw)
    }

    /// After a rolled-back interval (training went back to the state this featurizer last
    /// observed): the interval still counts against the budget, the statistics are those of the
    /// restored state, and `next` holds the reduced learning rate.
    pub fn after_rollback(&mut self, next: Hyperparams) -> Obs {
        self.intervals_done += 1;
        let mut raw = self.last_raw;
        self.fill_hparams(&mut raw, next);
        self.last_raw = raw;
        self.finish(raw)
    }

    /// Maps NaN to the neutral value and clips into bounds (the version's features only).
    fn finish(&self, raw: [f64; MAX_FEATURES]) -> Obs {
        finish(&raw, table(self.version))
    }

    fn fill_hparams(&self, raw: &mut [f64; MAX_FEATURES], next: Hyperparams) {
        raw[10] = next.lr.log10();
        raw[11] = (1.0 - next.momentum).log10();
        raw[12] = self.intervals_done as f64 / self.budget as f64;
    }
}

/// Loss floor so logarithms stay finite.
fn floor_loss(loss: f64) -> f64 {
    if loss.is_nan() { loss } else { loss.max(1e-12) }
}

fn ln_ratio(a: f64, b: f64) -> f64 {
    (floor_loss(a) / floor_loss(b)).ln()
}

/// Least-squares slope of `ys` against 0, 1, 2, ...
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return 0.0;
    }
    let x_mean = (n - 1.0) / 2.0;
    let y_mean = ys.iter().sum::<f64>() / n;
    let (num, den) = ys
        .iter()
        .enumerate()
        .fold((0.0, 0.0), |(num, den), (i, y)| {
            let dx = i as f64 - x_mean;
            (num + dx * (y - y_mean), den + dx * dx)
        });
    num / den
}

/// Maps NaN to the neutral value and clips into bounds.
fn finish(raw: &[f64], features: &[(&str, f32, f32, f32)]) -> Obs {
    raw.iter()
        .zip(features.iter())
        .map(|(&v, &(_, lo, hi, neutral))| {
            if v.is_nan() {
                neutral
            } else {
                (v as f32).clamp(lo, hi)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(train: f64, val: f64, grad: f64) -> EpochStats {
        EpochStats {
            epoch: 1,
            epochs_done: 1.0,
            steps: 10,
            lr: 0.1,
            momentum: 0.9,
            train_loss_mean: train,
            train_loss_std: 0.1 * train,
            train_loss_first: 1.2 * train,
            train_loss_last: 0.9 * train,
            val_loss: val,
            val_metric: 0.5,
            grad_norm_mean: grad,
            grad_norm_std: 0.5 * grad,
            grad_norm_max: 2.0 * grad,
            layer_grad_norms: vec![],
            grad_cos_mean: 0.0,
            weight_norm: 3.0,
            update_ratio: 0.01,
            wall_secs: 0.0,
            diverged: false,
        }
    }

    #[test]
    fn features_are_scale_free() {
        let hp = Hyperparams {
            lr: 0.1,
            momentum: 0.9,
        };
        let run = |scale: f64| {
            let mut f = Featurizer::new(2.0 * scale, 10);
            f.observe(&stats(1.5 * scale, 1.6 * scale, 3.0), hp);
            f.observe(&stats(1.0 * scale, 1.2 * scale, 6.0), hp)
        };
        let (a, b) = (run(1.0), run(1000.0));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() < 1e-5,
                "feature {} differs: {x} vs {y}",
                FEATURES[i].0
            );
        }
        assert!((a[1] - (1.2f32 / 2.0).ln()).abs() < 1e-6);
        assert!((a[7] - 2f32.ln()).abs() < 1e-6);
        assert!((a[10] + 1.0).abs() < 1e-6 && (a[11] + 1.0).abs() < 1e-6);
        assert!((a[12] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn nonfinite_statistics_stay_inside_the_space() {
        let space = observation_space();
        let hp = Hyperparams {
            lr: 1e3,
            momentum: 0.0,
        };
        let mut f = Featurizer::new(f64::NAN, 3);
        assert!(space.contains(&f.initial(hp)));
        for (t, v) in [
            (f64::NAN, f64::INFINITY),
            (f64::INFINITY, 0.0),
            (0.0, f64::NAN),
            (1e300, 1e-300),
        ] {
            let mut s = stats(t, v, f64::NAN);
            s.update_ratio = f64::INFINITY;
            s.train_loss_first = 0.0;
            let obs = f.observe(&s, hp);
            assert!(space.contains(&obs), "{obs:?}");
        }
    }

    #[test]
    fn version_2_is_version_1_with_a_memory_of_lr_steps_and_loss_changes() {
        assert_eq!(&FEATURES_V2[..N_FEATURES], &FEATURES[..]);
        assert!(feature_table(3).is_none());
        let space = observation_space_of(2);
        let hp = |lr: f64| Hyperparams { lr, momentum: 0.9 };
        let mut v1 = Featurizer::new(2.0, 10);
        let mut v2 = Featurizer::with_version(2, 2.0, 10);
        assert_eq!(v2.version(), 2);
        let init = v2.initial(hp(0.01));
        assert_eq!(init.len(), 19);
        assert_eq!(&init[..N_FEATURES], &v1.initial(hp(0.01))[..]);
        assert!(
            init[13..18].iter().all(|&x| x == 0.0),
            "neutral before any interval"
        );
        // Three intervals at lr 0.01, 0.04, 0.02 with val losses 1.6, 1.2, 1.5.
        let mut run = |lr: f64, train: f64, val: f64| {
            let mut s = stats(train, val, 3.0);
            s.lr = lr;
            s.steps = 100;
            let a = v1.observe(&s, hp(lr));
            let b = v2.observe(&s, hp(lr));
            assert_eq!(&b[..N_FEATURES], &a[..], "the first 13 are version 1's");
            assert!(space.contains(&b), "{b:?}");
            b
        };
        let o1 = run(0.01, 1.5, 1.6);
        assert_eq!(
            (o1[13], o1[14], o1[16]),
            (0.0, 0.0, 0.0),
            "no earlier interval yet"
        );
        assert!((o1[15] - (1.6f32 / 2.0).ln()).abs() < 1e-6, "against V0");
        assert_eq!(o1[17], 0.0);
        assert!((o1[18] - 2.0).abs() < 1e-6, "log10(100 steps)");
        let o2 = run(0.04, 1.0, 1.2);
        assert!((o2[13] - 2.0).abs() < 1e-6 && o2[14] == 0.0, "{o2:?}");
        assert!((o2[15] - (1.2f32 / 1.6).ln()).abs() < 1e-6);
        assert!((o2[16] - (1.6f32 / 2.0).ln()).abs() < 1e-6);
        assert!((o2[17] - (1.0f32 / 1.5).ln()).abs() < 1e-6);
        let o3 = run(0.02, 1.1, 1.5);
        assert!((o3[13] + 1.0).abs() < 1e-6 && (o3[14] - 2.0).abs() < 1e-6);
        assert!((o3[15] - (1.5f32 / 1.2).ln()).abs() < 1e-6);
        assert!((o3[16] - (1.2f32 / 1.6).ln()).abs() < 1e-6);
        // A diverged interval's NaNs stay inside the space.
        let mut bad = stats(f64::NAN, f64::INFINITY, f64::NAN);
        bad.lr = 5.0;
        assert!(space.contains(&v2.observe(&bad, hp(5.0))));
    }

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        assert!((slope(&[1.0, 0.5, 0.0, -0.5]) + 0.5).abs() < 1e-12);
        assert_eq!(slope(&[3.0]), 0.0);
    }
}
