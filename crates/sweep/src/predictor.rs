//! [`CurvePredictor`]: a learning-curve predictor for early stopping. From a trial's curve prefix
//! (the validation loss after each of its first `e` epochs, the untrained loss, its budget and the
//! lr the controller chose) it predicts the trial's final validation loss, in logs, with an
//! uncertainty: `ln V_T ≈ ln V_e + μ(x) ± σ(e/T)`.
//!
//! - Features are scale-free (ratios of losses, the fraction of the budget, the lr's log), so one
//!   predictor serves classification and regression and any loss scale.
//! - μ is a ridge regression on those features; σ is the residuals' standard deviation in
//!   [`SIGMA_BINS`] bins of the budget fraction (the prediction is sharper late in a run).
//! - It is fitted on the curves of completed trials (`fit`), typically sweeps on the meta-train
//!   collection under the same controller the sweep will use, and saved as a JSON file
//!   (`hyperctl-curve-predictor/1`).

use serde::{Deserialize, Serialize};

use crate::search::TrialRecord;

/// The file format tag.
pub const FORMAT: &str = "hyperctl-curve-predictor/1";
/// Bins of the budget fraction for σ.
pub const SIGMA_BINS: usize = 10;
/// Feature names, in order (the first is the intercept).
pub const FEATURES: &[&str] = &[
    "intercept",
    "ln(V_e / V_0)",
    "ln(V_e / V_e-1)",
    "ln(V_e / V_e-2) / 2",
    "ln(min V / V_e)",
    "e / T",
    "(1 - e/T) ln(V_e / V_e-1)",
    "(1 - e/T) ln(V_e / V_0)",
    "ln T",
    "ln lr_e",
    "ln(lr_e / lr_1)",
];

/// A fitted predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePredictor {
    /// [`FORMAT`].
    pub format: String,
    /// What it was fitted on (free text).
    #[serde(default)]
    pub source: String,
    /// Feature names (must equal [`FEATURES`]).
    pub features: Vec<String>,
    /// Ridge weights, one per feature.
    pub weights: Vec<f64>,
    /// Residual standard deviation per budget-fraction bin.
    pub sigma: Vec<f64>,
    /// The ridge penalty used.
    pub ridge: f64,
    /// Prefixes fitted on.
    pub samples: usize,
}

/// One prediction: the final validation loss's log, its mean and standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Predicted ln(final validation loss).
    pub mean: f64,
    /// Its standard deviation.
    pub std: f64,
}

/// The features of a prefix of `e ≥ 1` epochs: `val` holds the validation losses of epochs
/// 1..=e (finite, positive), `v0` the untrained loss, `budget` the trial's epochs, `lr` the lr of
/// epochs 1..=e. `None` when a loss is not finite and positive.
pub fn features(v0: f64, val: &[f64], budget: usize, lr: &[f64]) -> Option<Vec<f64>> {
    let e = val.len();
    if e == 0 || lr.len() < e || budget == 0 {
        return None;
    }
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !ok(v0) || !val.iter().all(|&v| ok(v)) || !lr[..e].iter().all(|&l| ok(l)) {
        return None;
    }
    let cur = val[e - 1];
    let prev = if e >= 2 { val[e - 2] } else { v0 };
    let prev2 = if e >= 3 { val[e - 3] } else { v0 };
    let min = val.iter().copied().fold(f64::INFINITY, f64::min);
    let f = e as f64 / budget as f64;
    let slope = (cur / prev).ln();
    let total = (cur / v0).ln();
    Some(vec![
        1.0,
        total,
        slope,
        (cur / prev2).ln() / 2.0,
        (min / cur).ln(),
        f,
        (1.0 - f) * slope,
        (1.0 - f) * total,
        (budget as f64).ln(),
        lr[e - 1].ln(),
        (lr[e - 1] / lr[0]).ln(),
    ])
}

fn sigma_bin(e: usize, budget: usize) -> usize {
    ((e as f64 / budget as f64) * SIGMA_BINS as f64)
        .floor()
        .clamp(0.0, (SIGMA_BINS - 1) as f64) as usize
}

/// One prefix: its features, the target ln(V_T / V_e) and its σ bin.
type Sample = (Vec<f64>, f64, usize);

/// The prefixes of a completed trial, for e = 1..T−1.
fn samples(t: &TrialRecord) -> Vec<Sample> {
    let v0 = t.initial_val_loss;
    if !t.completed() || t.epochs < 2 {
        return Vec::new();
    }
    let val: Option<Vec<f64>> = t.val_loss.iter().copied().collect();
    let Some(val) = val else {
        return Vec::new();
    };
    let last = val[val.len() - 1];
    (1..val.len())
        .filter_map(|e| {
            let x = features(v0, &val[..e], t.budget_epochs, &t.lr)?;
            Some((x, (last / val[e - 1]).ln(), sigma_bin(e, t.budget_epochs)))
        })
        .filter(|(_, y, _)| y.is_finite())
        .collect()
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky); `None` if it is not.
fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][j] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

impl CurvePredictor {
    /// Fits on the completed trials of `sweeps` (one list per sweep; stopped and diverged trials
    /// have no final loss) with ridge penalty `ridge`.
    ///
    /// What early stopping needs is the *order* of trials within a sweep, not the level of a
    /// task's losses, so the weights are fitted **within sweeps**: features and targets are
    /// centred over the trials of one sweep at the same epoch (a fixed-effects regression), and
    /// cross-task differences in how much any curve still drops do not drive them. The intercept
    /// is then the mean remaining drop, and σ per budget-fraction bin the spread of the
    /// within-sweep residuals. Errors when there are too few prefixes (fewer than 10 per feature).
    pub fn fit(sweeps: &[Vec<TrialRecord>], ridge: f64, source: &str) -> Result<Self, String> {
        let p = FEATURES.len();
        // Per sweep and epoch, the prefixes of its trials.
        let mut groups: Vec<Vec<Sample>> = Vec::new();
        for trials in sweeps {
            let mut by_epoch: std::collections::BTreeMap<(usize, usize), Vec<Sample>> =
                Default::default();
            for t in trials {
                for (e, sample) in samples(t).into_iter().enumerate() {
                    by_epoch
                        .entry((t.budget_epochs, e))
                        .or_default()
                        .push(sample);
                }
            }
            groups.extend(by_epoch.into_values().filter(|g| g.len() >= 2));
        }
        let n: usize = groups.iter().map(Vec::len).sum();
        if n < 10 * p {
            return Err(format!(
                "{n} curve prefixes in groups of 2+ trials of one sweep at one epoch: at least {} are needed (completed trials of 2+ epochs, several per sweep)",
                10 * p
            ));
        }
        let mut a = vec![vec![0.0; p - 1]; p - 1];
        let mut b = vec![0.0; p - 1];
        let centred = |g: &[Sample]| {
            let m = g.len() as f64;
            let mx: Vec<f64> = (1..p)
                .map(|i| g.iter().map(|s| s.0[i]).sum::<f64>() / m)
                .collect();
            let my = g.iter().map(|s| s.1).sum::<f64>() / m;
            g.iter()
                .map(|(x, y, bin)| {
                    let xc: Vec<f64> = (1..p).map(|i| x[i] - mx[i - 1]).collect();
                    (xc, y - my, *bin)
                })
                .collect::<Vec<_>>()
        };
        for g in &groups {
            for (x, y, _) in centred(g) {
                for i in 0..p - 1 {
                    b[i] += x[i] * y;
                    for j in 0..p - 1 {
                        a[i][j] += x[i] * x[j];
                    }
                }
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            // The penalty scales with the sample count.
            row[i] += ridge * n as f64 + 1e-12;
        }
        let w = solve_spd(&a, &b).ok_or("the features are degenerate on these curves")?;
        let slope = |x: &[f64]| (1..p).map(|i| w[i - 1] * x[i]).sum::<f64>();
        let intercept = groups
            .iter()
            .flatten()
            .map(|(x, y, _)| y - slope(x))
            .sum::<f64>()
            / n as f64;
        let mut weights = vec![intercept];
        weights.extend(&w);
        let mut sums = [(0.0, 0usize); SIGMA_BINS];
        let mut all = (0.0, 0usize);
        for g in &groups {
            for (x, y, bin) in centred(g) {
                let r = y - w.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
                sums[bin].0 += r * r;
                sums[bin].1 += 1;
                all.0 += r * r;
                all.1 += 1;
            }
        }
        let overall = (all.0 / all.1 as f64).sqrt();
        let sigma = sums
            .iter()
            .map(|&(s, c)| {
                if c >= 10 {
                    (s / c as f64).sqrt()
                } else {
                    overall
                }
            })
            .collect();
        Ok(Self {
            format: FORMAT.into(),
            source: source.into(),
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            weights,
            sigma,
            ridge,
            samples: n,
        })
    }

    /// [`CurvePredictor::fit`] with the ridge penalty chosen from `grid` by `folds`-fold
    /// cross-validation over sweeps (sweep `k` is in fold `k mod folds`): the penalty whose
    /// predictors rank the held-out folds' trials best (mean Spearman's ρ at 10%, 25% and 50% of
    /// the budget). Returns the predictor fitted on all sweeps and each penalty's score.
    pub fn fit_cv(
        sweeps: &[Vec<TrialRecord>],
        grid: &[f64],
        folds: usize,
        source: &str,
    ) -> Result<(Self, Vec<(f64, f64)>), String> {
        if grid.is_empty() || folds < 2 || sweeps.len() < folds {
            return Err(format!(
                "cross-validation needs a penalty grid, 2+ folds and at least as many sweeps ({} sweeps, {folds} folds)",
                sweeps.len()
            ));
        }
        let mut scores = Vec::new();
        for &ridge in grid {
            let mut total = 0.0;
            for k in 0..folds {
                let (test, train): (Vec<_>, Vec<_>) =
                    sweeps.iter().enumerate().partition(|(i, _)| i % folds == k);
                let train: Vec<Vec<TrialRecord>> =
                    train.into_iter().map(|(_, s)| s.clone()).collect();
                let test: Vec<Vec<TrialRecord>> =
                    test.into_iter().map(|(_, s)| s.clone()).collect();
                let p = Self::fit(&train, ridge, source)?;
                total += [0.1, 0.25, 0.5]
                    .iter()
                    .map(|&f| rank_accuracy(&p, &test, f).predicted)
                    .filter(|v| v.is_finite())
                    .sum::<f64>()
                    / 3.0;
            }
            scores.push((ridge, total / folds as f64));
        }
        let best = scores
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("a non-empty grid")
            .0;
        Ok((Self::fit(sweeps, best, source)?, scores))
    }

    /// Reads a predictor file, naming what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let p: Self =
            serde_json::from_str(text).map_err(|e| format!("not a curve predictor: {e}"))?;
        if p.format != FORMAT {
            return Err(format!("`format` is `{}`, expected `{FORMAT}`", p.format));
        }
        if p.features != FEATURES {
            return Err(format!(
                "`features` are not this version's ({})",
                FEATURES.join(", ")
            ));
        }
        if p.weights.len() != FEATURES.len() || !p.weights.iter().all(|w| w.is_finite()) {
            return Err(format!("`weights` needs {} finite numbers", FEATURES.len()));
        }
        if p.sigma.len() != SIGMA_BINS || !p.sigma.iter().all(|s| s.is_finite() && *s >= 0.0) {
            return Err(format!("`sigma` needs {SIGMA_BINS} non-negative numbers"));
        }
        Ok(p)
    }

    /// Predicts the final validation loss from a prefix (see [`features`]); `None` when the prefix
    /// has a non-finite loss (a diverged trial).
    pub fn predict(&self, v0: f64, val: &[f64], budget: usize, lr: &[f64]) -> Option<Prediction> {
        let e = val.len();
        if e >= budget {
            return Some(Prediction {
                mean: val.last()?.ln(),
                std: 0.0,
            });
        }
        let x = features(v0, val, budget, lr)?;
        Some(Prediction {
            mean: val[e - 1].ln() + dot(&self.weights, &x),
            std: self.sigma[sigma_bin(e, budget)],
        })
    }
}

fn dot(w: &[f64], x: &[f64]) -> f64 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Spearman's rank correlation of two equally long samples (average ranks for ties); `None`
/// when either is constant or there are fewer than 3 values.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    use hyperctl_compare::summary::average_ranks as ranks;
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&ra), mean(&rb));
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// How well prefixes rank trials, for one budget fraction, over several sweeps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankAccuracy {
    /// The fraction of each trial's budget seen (the prefix is ⌈f·T⌉ epochs, at least 1, below T).
    pub fraction: f64,
    /// Sweeps with at least 3 completed trials (and a non-constant ranking).
    pub sweeps: usize,
    /// Mean over sweeps of Spearman's ρ between the predicted and the final validation loss.
    pub predicted: f64,
    /// The same for the prefix's last validation loss (what ASHA ranks by).
    pub current: f64,
    /// Mean over sweeps of ρ(predicted) − ρ(current), with a 95% percentile-bootstrap interval
    /// over sweeps (2,000 resamples, fixed seed): an interval containing 0 is a tie.
    pub gain: [f64; 3],
    /// Sweeps where the predictor ranked better than the current loss, and worse.
    pub better: usize,
    /// See `better`.
    pub worse: usize,
}

/// Rank accuracy of `predictor` (and of the current loss) on the completed trials of each sweep
/// in `sweeps`, at budget fraction `fraction`.
pub fn rank_accuracy(
    predictor: &CurvePredictor,
    sweeps: &[Vec<TrialRecord>],
    fraction: f64,
) -> RankAccuracy {
    let (mut pred_sum, mut cur_sum, mut n, mut better, mut worse) = (0.0, 0.0, 0, 0, 0);
    let mut diffs = Vec::new();
    for trials in sweeps {
        let (mut pred, mut cur, mut fin) = (Vec::new(), Vec::new(), Vec::new());
        for t in trials.iter().filter(|t| t.completed()) {
            let Some(val) = t.val_loss.iter().copied().collect::<Option<Vec<f64>>>() else {
                continue;
            };
            let e = ((fraction * t.budget_epochs as f64).ceil() as usize)
                .clamp(1, t.budget_epochs.saturating_sub(1).max(1));
            let Some(p) = predictor.predict(t.initial_val_loss, &val[..e], t.budget_epochs, &t.lr)
            else {
                continue;
            };
            pred.push(p.mean);
            cur.push(val[e - 1].ln());
            fin.push(val[val.len() - 1].ln());
        }
        if let (Some(p), Some(c)) = (spearman(&pred, &fin), spearman(&cur, &fin)) {
            pred_sum += p;
            cur_sum += c;
            diffs.push(p - c);
            n += 1;
            if p > c {
                better += 1;
            } else if p < c {
                worse += 1;
            }
        }
    }
    let mean = |s: f64| if n > 0 { s / n as f64 } else { f64::NAN };
    RankAccuracy {
        fraction,
        sweeps: n,
        predicted: mean(pred_sum),
        current: mean(cur_sum),
        gain: bootstrap_mean(&diffs),
        better,
        worse,
    }
}

/// Mean and 95% percentile-bootstrap interval of `v` (2,000 resamples, fixed seed); NaN when empty.
fn bootstrap_mean(v: &[f64]) -> [f64; 3] {
    use rand::{RngExt, SeedableRng};
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xB00757A9);
    let mut means: Vec<f64> = (0..2000)
        .map(|_| {
            let s: Vec<f64> = (0..v.len())
                .map(|_| v[rng.random_range(0..v.len())])
                .collect();
            mean(&s)
        })
        .collect();
    means.sort_by(f64::total_cmp);
    [mean(v), means[49], means[1949]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(curve: &[f64], budget: usize) -> TrialRecord {
        TrialRecord {
            trial: 0,
            config: Default::default(),
            model: "mlp:8x1".into(),
            batch_size: 32,
            weight_decay: 0.0,
            optimizer: "sgd".into(),
            init_lr: 0.1,
            init_momentum: 0.0,
            controller: "constant".into(),
            seed: 0,
            initial_val_loss: 2.0,
            epochs: curve.len(),
            budget_epochs: budget,
            stopped: false,
            diverged: false,
            val_loss: curve.iter().map(|&v| Some(v)).collect(),
            lr: vec![0.1; curve.len()],
            momentum: vec![0.0; curve.len()],
            final_val_loss: curve.last().copied(),
            test_loss: curve.last().copied(),
            test_metric: None,
            epochs_spent: curve.len(),
            rollbacks: 0,
            wall_secs: 0.0,
            version: "test".into(),
            backend: "flex".into(),
        }
    }

    #[test]
    fn spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[3.0, 2.0, 1.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn a_predictor_fitted_on_geometric_curves_extrapolates_them_and_round_trips() {
        // Curves that shrink by a per-trial factor each epoch: the remaining log-drop is
        // (T − e) × the last log-slope, which the feature (1 − e/T)·slope carries exactly.
        let mut trials = Vec::new();
        for k in 0..60 {
            let rate = 0.6 + 0.35 * (k as f64 / 59.0);
            let budget = 8 + k % 5;
            let curve: Vec<f64> = (1..=budget).map(|e| 2.0 * rate.powi(e as i32)).collect();
            trials.push(trial(&curve, budget));
        }
        // Two sweeps (fits read the order within a sweep).
        let sweeps = vec![trials[..30].to_vec(), trials[30..].to_vec()];
        let p = CurvePredictor::fit(&sweeps, 1e-6, "geometric").unwrap();
        let t = &trials[30];
        let val: Vec<f64> = t.val_loss.iter().map(|v| v.unwrap()).collect();
        let q = p.predict(2.0, &val[..3], t.budget_epochs, &t.lr).unwrap();
        let truth = val.last().unwrap().ln();
        let naive = val[2].ln();
        assert!(
            (q.mean - truth).abs() < 0.25 * (naive - truth).abs(),
            "{q:?} vs {truth}"
        );
        let acc = rank_accuracy(&p, &[trials.clone()], 0.25);
        assert!(acc.predicted > 0.9, "{acc:?}");
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(CurvePredictor::from_json(&text).unwrap(), p);
        let bad = text.replace(FORMAT, "other/1");
        assert!(
            CurvePredictor::from_json(&bad)
                .unwrap_err()
                .contains("`format`")
        );
        // Too little data is an error, not a fit.
        assert!(CurvePredictor::fit(&[trials[..2].to_vec()], 1e-3, "x").is_err());
        let (q, scores) = CurvePredictor::fit_cv(&sweeps, &[1e-6, 1.0], 2, "geometric").unwrap();
        assert_eq!(scores.len(), 2);
        assert!(q.ridge == 1e-6 || q.ridge == 1.0);
    }
}
