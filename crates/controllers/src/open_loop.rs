//! `open-loop:FILE`: a task-agnostic open-loop schedule read from a JSON file — per start-lr
//! decade, the lr and momentum as functions of the fraction of the run done. Issue 19's
//! task-agnostic replay ablation: a learned controller's mean trajectory over *all* meta-train
//! tasks from starts in each decade (`experiments/headline/agnostic_replay.py` fits it from a
//! comparison's results), played back on any task without looking at it. If the controller beats
//! it, reacting to the task paid; if not, what was learned is a start-dependent schedule.
//!
//! The file (`hyperctl-open-loop/1`):
//!
//! ```json
//! {"format": "hyperctl-open-loop/1", "source": "policy:policies/default on meta-train",
//!  "decades": [{"log10_lr": -4, "runs": 190, "lr": [0.0004, ...], "momentum": [0.7, ...]}, ...]}
//! ```
//!
//! Each decade `d` covers start lrs in [10^d, 10^(d+1)); its `lr` and `momentum` arrays (one
//! length, ≥ 1 bin, the same in every decade) split the run into equal bins of relative time.
//! Interval `i` of a run of `T` intervals plays bin ⌊(i + ½)·B / T⌋. A start outside every
//! decade uses the nearest one.

use std::path::Path;

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::Hyperparams;
use serde::Deserialize;

/// The file's format tag.
pub const FORMAT: &str = "hyperctl-open-loop/1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    #[serde(default)]
    source: Option<String>,
    decades: Vec<Decade>,
}

/// One start decade's schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decade {
    /// The decade: starts in [10^log10_lr, 10^(log10_lr + 1)).
    pub log10_lr: i32,
    /// How many runs the schedule was fitted from (for the record).
    #[serde(default)]
    pub runs: Option<usize>,
    /// Learning rate per bin of relative time.
    pub lr: Vec<f64>,
    /// Momentum per bin.
    pub momentum: Vec<f64>,
}

/// The open-loop controller.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    name: String,
    decades: Vec<Decade>,
    /// The decade of the current episode (index into `decades`) and its length.
    current: usize,
    epochs: usize,
}

impl OpenLoop {
    /// Loads `path`; every error names the file and what was expected.
    pub fn load(name: &str, path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the open-loop file: {e}", path.display()))?;
        Self::from_json(name, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the file's text.
    pub fn from_json(name: &str, text: &str) -> Result<Self, String> {
        let file: File = serde_json::from_str(text)
            .map_err(|e| format!("expected a `{FORMAT}` JSON file: {e}"))?;
        if file.format != FORMAT {
            return Err(format!(
                "`format` is `{}`; expected `{FORMAT}`",
                file.format
            ));
        }
        let _ = file.source;
        Self::new(name, file.decades)
    }

    /// A controller over `decades` (checked: at least one, distinct, equal non-empty lengths,
    /// finite positive lrs, momenta in [0, 1)).
    pub fn new(name: &str, mut decades: Vec<Decade>) -> Result<Self, String> {
        let Some(first) = decades.first() else {
            return Err("`decades` is empty; expected at least one start decade".into());
        };
        let bins = first.lr.len();
        decades.sort_by_key(|d| d.log10_lr);
        for (i, d) in decades.iter().enumerate() {
            let at = format!("decades[log10_lr = {}]", d.log10_lr);
            if i > 0 && decades[i - 1].log10_lr == d.log10_lr {
                return Err(format!("{at}: the decade appears twice"));
            }
            if d.lr.is_empty() || d.lr.len() != bins || d.momentum.len() != bins {
                return Err(format!(
                    "{at}: `lr` has {} and `momentum` {} bins; expected the same number (≥ 1) in every decade ({bins})",
                    d.lr.len(),
                    d.momentum.len()
                ));
            }
            if let Some(bad) = d.lr.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(format!("{at}: lr {bad}; expected finite positive values"));
            }
            if let Some(bad) = d.momentum.iter().find(|v| !(0.0..1.0).contains(*v)) {
                return Err(format!("{at}: momentum {bad}; expected values in [0, 1)"));
            }
        }
        Ok(Self {
            name: name.into(),
            decades,
            current: 0,
            epochs: 1,
        })
    }

    /// The index of the decade a start lr plays (the nearest one when none covers it).
    fn decade_of(&self, lr: f64) -> usize {
        let d = lr.max(1e-300).log10().floor() as i32;
        (0..self.decades.len())
            .min_by_key(|&i| (self.decades[i].log10_lr - d).abs())
            .unwrap_or(0)
    }

    /// The bin interval `i` of a `epochs`-interval run plays.
    fn bin(&self, interval: usize) -> usize {
        let bins = self.decades[0].lr.len();
        let t = (interval as f64 + 0.5) * bins as f64 / self.epochs.max(1) as f64;
        (t.floor() as usize).min(bins - 1)
    }
}

impl Controller for OpenLoop {
    fn spec(&self) -> String {
        self.name.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.current = self.decade_of(context.init.lr);
        self.epochs = context.epochs.max(1);
    }

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        let d = &self.decades[self.current];
        let b = self.bin(input.interval);
        Decision::Set(Hyperparams {
            lr: d.lr[b],
            momentum: d.momentum[b],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: &mut OpenLoop, interval: usize) -> Hyperparams {
        match c.decide(&DecisionInput {
            interval,
            obs: &[],
            last: None,
            current: Hyperparams {
                lr: 1.0,
                momentum: 0.0,
            },
        }) {
            Decision::Set(hp) => hp,
            Decision::Action(_) => unreachable!(),
        }
    }

    fn reset(c: &mut OpenLoop, lr: f64, epochs: usize) {
        c.reset(&EpisodeContext {
            epochs,
            init: Hyperparams { lr, momentum: 0.9 },
            steps_per_epoch: 10,
            steps_per_interval: 10,
        });
    }

    const FILE: &str = r#"{"format": "hyperctl-open-loop/1", "decades": [
        {"log10_lr": -1, "lr": [0.1, 0.2, 0.3, 0.4], "momentum": [0.9, 0.9, 0.5, 0.0]},
        {"log10_lr": -3, "runs": 7, "lr": [0.001, 0.01, 0.02, 0.005], "momentum": [0.0, 0.1, 0.2, 0.3]}
    ]}"#;

    #[test]
    fn plays_the_start_decade_in_relative_time() {
        let mut c = OpenLoop::from_json("open-loop:f.json", FILE).unwrap();
        assert_eq!(c.spec(), "open-loop:f.json");
        // A start of 0.5 is in decade -1; 2 intervals over 4 bins play bins 1 and 3.
        reset(&mut c, 0.5, 2);
        assert_eq!(set(&mut c, 0).lr, 0.2);
        assert_eq!(set(&mut c, 1).lr, 0.4);
        assert_eq!(set(&mut c, 1).momentum, 0.0);
        // 8 intervals: two per bin; past the end the last bin holds.
        reset(&mut c, 0.002, 8);
        let lrs: Vec<f64> = (0..10).map(|i| set(&mut c, i).lr).collect();
        assert_eq!(
            lrs,
            [
                0.001, 0.001, 0.01, 0.01, 0.02, 0.02, 0.005, 0.005, 0.005, 0.005
            ]
        );
        // Decade -2 is absent: -1 and -3 are equally near, the lower wins; 1e-6 plays -3,
        // 5.0 plays -1.
        reset(&mut c, 0.05, 4);
        assert_eq!(set(&mut c, 0).lr, 0.001);
        reset(&mut c, 1e-6, 4);
        assert_eq!(set(&mut c, 0).lr, 0.001);
        reset(&mut c, 5.0, 4);
        assert_eq!(set(&mut c, 0).lr, 0.1);
    }

    #[test]
    fn bad_files_are_named_errors() {
        for (text, expect) in [
            ("{", "expected a `hyperctl-open-loop/1` JSON file"),
            (
                r#"{"format": "x", "decades": []}"#,
                "`format` is `x`; expected `hyperctl-open-loop/1`",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": []}"#,
                "`decades` is empty",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [0.1], "momentum": [0.9, 0.9]}]}"#,
                "decades[log10_lr = 0]: `lr` has 1 and `momentum` 2 bins",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [0.1], "momentum": [0.9]}, {"log10_lr": 1, "lr": [0.1, 0.2], "momentum": [0.9, 0.9]}]}"#,
                "decades[log10_lr = 1]: `lr` has 2",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [0.1], "momentum": [0.9]}, {"log10_lr": 0, "lr": [0.1], "momentum": [0.9]}]}"#,
                "appears twice",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [-0.1], "momentum": [0.9]}]}"#,
                "lr -0.1; expected finite positive values",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [0.1], "momentum": [1.0]}]}"#,
                "momentum 1; expected values in [0, 1)",
            ),
            (
                r#"{"format": "hyperctl-open-loop/1", "decades": [{"log10_lr": 0, "lr": [0.1], "momentum": [0.5], "extra": 1}]}"#,
                "unknown field `extra`",
            ),
        ] {
            let err = OpenLoop::from_json("open-loop:f", text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
        let err = OpenLoop::load("open-loop:/no/such", Path::new("/no/such.json")).unwrap_err();
        assert!(err.starts_with("/no/such.json: cannot read"), "{err}");
    }
}
