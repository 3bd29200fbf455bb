//! SVG plot of a training trace: losses and the hyperparameters per epoch (log scales).

use std::path::Path;

use anyhow::Context;
use hyperctl_compare::report::{EpochSeries, epoch_panel};
use hyperctl_schedule_env::IntervalRecord;
use plotters::prelude::*;

/// Draws train/validation loss (top) and lr and 1 − momentum (bottom) against the epoch.
pub fn trace_svg(records: &[IntervalRecord], title: &str, path: &Path) -> anyhow::Result<()> {
    let line = |label: &str, color: RGBColor, pick: fn(&IntervalRecord) -> f64| -> EpochSeries {
        (
            label.to_string(),
            color,
            records
                .iter()
                .map(|r| (r.stats.epoch as f64, pick(r)))
                .collect(),
        )
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 600)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("plotting failed: {e:?}"))?;
        let (top, bottom) = root.split_vertically(340);
        let losses = [
            line("train loss", BLUE, |r| r.stats.train_loss_mean),
            line("val loss", RED, |r| r.stats.val_loss),
        ];
        epoch_panel(&top, Some(title), "loss", &losses)?;
        let hparams = [
            line("lr", GREEN, |r| r.stats.lr),
            line("1 - momentum", MAGENTA, |r| 1.0 - r.stats.momentum),
        ];
        epoch_panel(&bottom, None, "lr, 1 - momentum", &hparams)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("plotting failed: {e:?}"))?;
    }
    crate::output::write_atomic(path, svg.as_bytes()).context("cannot write the trace plot")
}
