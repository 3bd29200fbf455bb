//! What a sweep found: the incumbent (the completed trial with the lowest final validation loss)
//! and the anytime curve — after each trial, the epochs spent and the incumbent's test loss.

use serde::Serialize;

use crate::search::TrialRecord;

/// One point of the anytime curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnytimePoint {
    /// After this trial.
    pub trial: usize,
    /// Epochs spent by it and every trial before it.
    pub epochs_spent: usize,
    /// The incumbent's trial index, if any trial has completed.
    pub best_trial: Option<usize>,
    /// The incumbent's final validation loss.
    pub best_val_loss: Option<f64>,
    /// The incumbent's test loss.
    pub best_test_loss: Option<f64>,
}

/// A sweep's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Trials run.
    pub trials: usize,
    /// Trials that trained their whole budget without diverging.
    pub completed: usize,
    /// Trials stopped early.
    pub stopped: usize,
    /// Trials that diverged.
    pub diverged: usize,
    /// Epochs trained in all.
    pub epochs_spent: usize,
    /// The incumbent at the end.
    pub best: Option<TrialRecord>,
    /// After each trial.
    pub anytime: Vec<AnytimePoint>,
}

/// Summarizes the trials of one sweep (in trial order).
pub fn summarize(trials: &[TrialRecord]) -> Summary {
    let mut best: Option<&TrialRecord> = None;
    let mut anytime = Vec::with_capacity(trials.len());
    for t in trials {
        if t.completed()
            && best.is_none_or(|b| {
                t.final_val_loss.unwrap_or(f64::INFINITY)
                    < b.final_val_loss.unwrap_or(f64::INFINITY)
            })
        {
            best = Some(t);
        }
        anytime.push(AnytimePoint {
            trial: t.trial,
            epochs_spent: t.epochs_spent,
            best_trial: best.map(|b| b.trial),
            best_val_loss: best.and_then(|b| b.final_val_loss),
            best_test_loss: best.and_then(|b| b.test_loss),
        });
    }
    Summary {
        trials: trials.len(),
        completed: trials.iter().filter(|t| t.completed()).count(),
        stopped: trials.iter().filter(|t| t.stopped).count(),
        diverged: trials.iter().filter(|t| t.diverged).count(),
        epochs_spent: trials.last().map_or(0, |t| t.epochs_spent),
        best: best.cloned(),
        anytime,
    }
}
