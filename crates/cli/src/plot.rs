//! SVG plots of a training trace: losses and the learning rate per epoch (log scales).

use std::path::Path;

use anyhow::Context;
use hyperctl_schedule_env::IntervalRecord;
use plotters::prelude::*;

/// Picks one value per interval for a line.
type Pick = fn(&IntervalRecord) -> f64;

/// Draws train/validation loss (top) and lr and 1 − momentum (bottom) against the epoch.
pub fn trace_svg(records: &[IntervalRecord], title: &str, path: &Path) -> anyhow::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, bottom) = root.split_vertically(340);
        let losses: [(&str, RGBColor, Pick); 2] = [
            ("train loss", BLUE, |r| r.stats.train_loss_mean),
            ("val loss", RED, |r| r.stats.val_loss),
        ];
        panel(&top, records, Some(title), "loss", &losses)?;
        let hparams: [(&str, RGBColor, Pick); 2] = [
            ("lr", GREEN, |r| r.stats.lr),
            ("1 - momentum", MAGENTA, |r| 1.0 - r.stats.momentum),
        ];
        panel(&bottom, records, None, "lr, 1 - momentum", &hparams)?;
        root.present().map_err(plot_err)?;
    }
    crate::output::write_atomic(path, svg.as_bytes()).context("cannot write the trace plot")
}

/// One log-scale panel with a line per `(label, color, pick)` against the epoch.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    records: &[IntervalRecord],
    caption: Option<&str>,
    y_desc: &str,
    lines: &[(&str, RGBColor, Pick)],
) -> anyhow::Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let values: Vec<f64> = records
        .iter()
        .flat_map(|r| lines.iter().map(move |(_, _, pick)| pick(r)))
        .filter(|&v| positive(v))
        .collect();
    let (lo, hi) = bounds(&values);
    let epochs = records.len().max(1) as f64;
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, ("sans-serif", 16));
    }
    let mut chart = builder
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..epochs + 0.5, (lo..hi).log_scale())
        .map_err(plot_err)?;
    configure(&mut chart, y_desc)?;
    for &(label, color, pick) in lines {
        let points = records
            .iter()
            .map(|r| (r.stats.epoch as f64, pick(r)))
            .filter(|p| positive(p.1));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_err)
}

type LogChart<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// Light mesh, integer epochs, compact log-axis labels.
fn configure(chart: &mut LogChart, y_desc: &str) -> anyhow::Result<()> {
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_labels(8)
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(plot_err)
}

/// `0.25`, `3.1`, `1e-4`: short labels for log axes.
fn compact(v: f64) -> String {
    if (0.01..1000.0).contains(&v.abs()) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// A log-scale range around the values (a decade either way when there are none).
fn bounds(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.1, 10.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}
