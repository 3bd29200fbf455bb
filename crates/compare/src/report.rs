//! Reports of a comparison: `summary.md`, `summary.json`, and SVG plots (schedules and validation
//! curves for a few tasks, and a performance profile across tasks).

use std::path::Path;

use plotters::prelude::*;
use serde_json::json;

use crate::Error;
use crate::run::{RunRecord, write_atomic};
use crate::summary::{Summary, effective_loss};

/// Context printed at the top of the reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportMeta {
    /// The collection (file or name).
    pub collection: String,
    /// The split compared (None: all).
    pub split: Option<String>,
    /// hyperctl version.
    pub version: String,
    /// git commit of the build.
    pub git_commit: String,
    /// Backend.
    pub backend: String,
    /// The command line.
    pub command: Vec<String>,
    /// Notes printed under the main table (tuning choices, the oracle's grid size, replays).
    pub notes: Vec<String>,
}

fn fmt_ci(c: &crate::summary::Ci, digits: usize) -> String {
    format!("{:.d$} [{:.d$}, {:.d$}]", c.mean, c.lo, c.hi, d = digits)
}

/// The markdown report.
pub fn markdown(summary: &Summary, meta: &ReportMeta) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "# Comparison on `{}`{}\n\n{} tasks × {} seeds per controller, same tasks, seeds, data and budget for every controller. \
         hyperctl {} ({}), backend {}.\n\n",
        meta.collection,
        meta.split.as_ref().map(|s| format!(" (split `{s}`)")).unwrap_or_default(),
        summary.n_tasks,
        summary.n_seeds,
        meta.version,
        meta.git_commit,
        meta.backend,
    ));
    md.push_str(&format!(
        "| controller | ln(loss / best) ↓ | win rate vs `{}` ↑ | mean rank ↓ | diverged | mean test metric | runs | wall s |\n|---|---|---|---|---|---|---|---|\n",
        summary.reference
    ));
    for c in &summary.controllers {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            c.controller,
            fmt_ci(&c.log_loss_ratio, 3),
            c.win_rate.as_ref().map_or("—".into(), |w| fmt_ci(w, 2)),
            fmt_ci(&c.mean_rank, 2),
            c.diverged,
            c.mean_test_metric.map_or("—".into(), |m| format!("{m:.3}")),
            c.runs,
            c.wall_secs,
        ));
    }
    for note in &meta.notes {
        md.push_str(&format!("\n- {note}"));
    }
    md.push_str(
        "\nloss = final test loss (a diverged run counts as the untrained model's validation loss); best = the lowest loss \
         any compared controller reached on that task and seed; [95% bootstrap interval over tasks].\n\n## Per task: mean test loss over seeds\n\n",
    );
    md.push_str("| task |");
    for c in &summary.controllers {
        md.push_str(&format!(" `{}` |", c.controller));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(summary.controllers.len()));
    md.push('\n');
    for t in &summary.tasks {
        let best = t.mean_loss.iter().copied().fold(f64::INFINITY, f64::min);
        md.push_str(&format!("| {} |", t.task_id));
        for (loss, div) in t.mean_loss.iter().zip(&t.diverged) {
            let cell = format!(
                "{loss:.4}{}",
                if *div > 0 {
                    format!(" ({div} div.)")
                } else {
                    String::new()
                }
            );
            md.push_str(&if *loss == best {
                format!(" **{cell}** |")
            } else {
                format!(" {cell} |")
            });
        }
        md.push('\n');
    }
    md
}

/// Writes summary.md, summary.json and the plots into `out`.
pub fn write_reports(
    out: &Path,
    summary: &Summary,
    records: &[RunRecord],
    meta: &ReportMeta,
) -> Result<(), Error> {
    write_atomic(&out.join("summary.md"), markdown(summary, meta).as_bytes())?;
    let json = json!({ "meta": meta, "summary": summary });
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&json)
            .expect("serializes")
            .as_bytes(),
    )?;
    write_atomic(
        &out.join("profile.svg"),
        performance_profile(summary, records)?.as_bytes(),
    )?;
    let controllers: Vec<&str> = summary
        .controllers
        .iter()
        .map(|c| c.controller.as_str())
        .collect();
    for task in summary.tasks.iter().take(3) {
        let svg = curves(&task.task_id, &controllers, records)?;
        let name: String = task
            .task_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        write_atomic(&out.join(format!("curves-{name}.svg")), svg.as_bytes())?;
    }
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Plot(format!("{e:?}"))
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Fraction of (task, seed) cells where a controller's loss is within τ × the best.
fn performance_profile(summary: &Summary, records: &[RunRecord]) -> Result<String, Error> {
    let controllers: Vec<&str> = summary
        .controllers
        .iter()
        .map(|c| c.controller.as_str())
        .collect();
    let mut cells: std::collections::BTreeMap<(&str, u64), Vec<Option<f64>>> =
        std::collections::BTreeMap::new();
    for r in records {
        if let Some(ci) = controllers.iter().position(|c| *c == r.controller) {
            cells
                .entry((&r.task_id, r.seed))
                .or_insert_with(|| vec![None; controllers.len()])[ci] = Some(effective_loss(r));
        }
    }
    let ratios: Vec<Vec<f64>> = (0..controllers.len())
        .map(|ci| {
            cells
                .values()
                .filter(|v| v.iter().all(Option::is_some))
                .map(|v| {
                    let best = v.iter().flatten().copied().fold(f64::INFINITY, f64::min);
                    v[ci].expect("complete") / best
                })
                .collect()
        })
        .collect();
    let n = ratios.first().map_or(0, Vec::len).max(1) as f64;
    let worst = ratios.iter().flatten().copied().fold(1.0, f64::max);
    let tau_max = (worst * 1.05).clamp(1.2, 10.0);
    let taus: Vec<f64> = (0..=200)
        .map(|i| 1.0 + (tau_max - 1.0) * i as f64 / 200.0)
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Performance profile: share of task-seeds within τ × the best loss",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(1.0..tau_max, 0.0..1.02)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("τ (loss / best)")
            .y_desc("share of task-seeds")
            .draw()
            .map_err(plot_err)?;
        for (ci, c) in controllers.iter().enumerate() {
            let col = color(ci);
            let points = taus.iter().map(|&t| {
                (
                    t,
                    ratios[ci].iter().filter(|&&r| r <= t + 1e-12).count() as f64 / n,
                )
            });
            chart
                .draw_series(LineSeries::new(points, col.stroke_width(2)))
                .map_err(plot_err)?
                .label(*c)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// One line of an epoch panel: label, color, (epoch, value) points.
pub type EpochSeries = (String, RGBColor, Vec<(f64, f64)>);

/// One panel: values on a log scale against the epoch (1-based), a line per series, a legend.
/// Non-positive and non-finite values are left out.
pub fn epoch_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: Option<&str>,
    y_desc: &str,
    series: &[EpochSeries],
) -> Result<(), Error> {
    let keep = |v: f64| v.is_finite() && v > 0.0;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(_, v)| v))
        .filter(|&v| keep(v))
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    };
    let epochs = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(e, _)| e))
        .fold(1.0, f64::max);
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
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_labels(6)
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(plot_err)?;
    for (label, col, points) in series {
        let col = *col;
        let points = points.iter().copied().filter(|&(_, v)| keep(v));
        chart
            .draw_series(LineSeries::new(points, col.stroke_width(2)))
            .map_err(plot_err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
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

/// For one task (first seed): lr and validation loss per epoch for every controller.
fn curves(task: &str, controllers: &[&str], records: &[RunRecord]) -> Result<String, Error> {
    let seed = records
        .iter()
        .filter(|r| r.task_id == task)
        .map(|r| r.seed)
        .min()
        .unwrap_or(0);
    let runs: Vec<(usize, &RunRecord)> = controllers
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| {
            records
                .iter()
                .find(|r| r.task_id == task && r.controller == *c && r.seed == seed)
                .map(|r| (ci, r))
        })
        .collect();
    let series = |pick: &dyn Fn(&RunRecord) -> Vec<Option<f64>>| -> Vec<EpochSeries> {
        runs.iter()
            .map(|(ci, r)| {
                let points = pick(r)
                    .iter()
                    .enumerate()
                    .filter_map(|(e, v)| v.map(|v| (e as f64 + 1.0, v)))
                    .collect();
                (r.controller.clone(), color(*ci), points)
            })
            .collect()
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, bottom) = root.split_vertically(350);
        let caption = format!("{task} (seed {seed})");
        epoch_panel(
            &top,
            Some(&caption),
            "learning rate",
            &series(&|r| r.lr.iter().map(|&v| Some(v)).collect()),
        )?;
        epoch_panel(
            &bottom,
            None,
            "validation loss",
            &series(&|r| r.val_loss.clone()),
        )?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
