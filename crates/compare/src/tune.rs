//! The tuning protocol: each baseline's learning rate (and momentum) is tuned on one split over
//! a grid, and the chosen setting is evaluated on another, which gives the fair "best single fixed
//! schedule". The `oracle` is the per-(task, seed) best of the whole grid on the evaluated tasks
//! themselves: an upper bound that costs the grid's size in compute.
//!
//! Grid: `n_lr` log-spaced learning rates over [1e-4, 1] (for `onecycle`: `max_lr`) × momentum
//! {0, 0.9} (schedules that cycle momentum themselves, `onecycle`, get the lr grid only).

use std::collections::BTreeMap;

use hyperctl_controllers::ControllerSpec;

use crate::run::RunRecord;
use crate::summary::effective_loss;

/// `n` log-spaced values over [lo, hi].
pub fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n.max(2) - 1) as f64).exp())
        .collect()
}

/// Whether a controller SPEC has a learning rate to tune (learned policies do not).
pub fn is_tunable(spec: &str) -> bool {
    hyperctl_controllers::Spec::parse(spec).is_ok_and(|s| s.is_tunable())
}

/// The grid variants of a tunable SPEC: its other parameters kept, lr (max_lr) and momentum set.
pub fn grid_variants(
    spec: &str,
    lrs: &[f64],
    momenta: &[f64],
) -> Result<Vec<String>, hyperctl_controllers::SpecError> {
    let parsed = ControllerSpec::parse(spec)?;
    let (lr_key, momenta): (&str, &[f64]) = if parsed.name == "onecycle" {
        ("max_lr", &[])
    } else {
        ("lr", momenta)
    };
    let others: Vec<String> = parsed
        .params
        .iter()
        .filter(|(k, _)| k.as_str() != lr_key && k.as_str() != "momentum")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = Vec::new();
    for &lr in lrs {
        let momentum_options: Vec<Option<f64>> = if momenta.is_empty() {
            vec![None]
        } else {
            momenta.iter().map(|&m| Some(m)).collect()
        };
        for m in momentum_options {
            let mut params = vec![format!("{lr_key}={lr:.3e}")];
            if let Some(m) = m {
                params.push(format!("momentum={m}"));
            }
            params.extend(others.iter().cloned());
            out.push(format!("{}:{}", parsed.name, params.join(",")));
        }
    }
    // Each variant must build.
    for v in &out {
        hyperctl_controllers::build(v)?;
    }
    Ok(out)
}

/// For each base SPEC, the variant with the lowest mean ln(loss / best) over the (task, seed)
/// cells of `records`, where best is the lowest loss of any variant in the cell. Ties: the first.
pub fn choose(
    records: &[RunRecord],
    variants: &[(String, Vec<String>)],
) -> Vec<(String, String, f64)> {
    let mut best_in_cell: BTreeMap<(&str, u64), f64> = BTreeMap::new();
    for r in records {
        let e = best_in_cell
            .entry((&r.task_id, r.seed))
            .or_insert(f64::INFINITY);
        *e = e.min(effective_loss(r));
    }
    variants
        .iter()
        .map(|(base, vs)| {
            let score = |v: &String| {
                let ratios: Vec<f64> = records
                    .iter()
                    .filter(|r| &r.controller == v)
                    .map(|r| (effective_loss(r) / best_in_cell[&(r.task_id.as_str(), r.seed)]).ln())
                    .collect();
                ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
            };
            let (chosen, value) =
                vs.iter()
                    .map(|v| (v, score(v)))
                    .fold((&vs[0], f64::INFINITY), |acc, (v, s)| {
                        if s < acc.1 { (v, s) } else { acc }
                    });
            (base.clone(), chosen.clone(), value)
        })
        .collect()
}

/// The oracle: per (task, seed), a copy of the best grid run, named `oracle`, whose wall time is
/// the whole grid's on that cell (its real cost).
pub fn oracle_records(grid_records: &[RunRecord]) -> Vec<RunRecord> {
    let mut cells: BTreeMap<(String, u64), (RunRecord, f64)> = BTreeMap::new();
    for r in grid_records {
        let key = (r.task_id.clone(), r.seed);
        match cells.get_mut(&key) {
            Some((best, wall)) => {
                *wall += r.wall_secs;
                if effective_loss(r) < effective_loss(best) {
                    *best = r.clone();
                }
            }
            None => {
                cells.insert(key, (r.clone(), r.wall_secs));
            }
        }
    }
    cells
        .into_values()
        .map(|(mut r, wall)| {
            r.controller = "oracle".into();
            r.wall_secs = wall;
            r
        })
        .collect()
}

/// The cross-seed oracle: per task, the grid configuration best on one seed, evaluated on
/// another (seeds in order, each chosen on the next, the last on the first), named
/// `oracle-cross-seed`. The honest per-task headroom: what choosing per task could gain without
/// seeing the run it is judged on. Its wall time is the grid's on the choosing seed plus the
/// evaluated run. Tasks with one seed give none.
pub fn cross_seed_oracle_records(grid_records: &[RunRecord]) -> Vec<RunRecord> {
    // Per task, per seed: the runs in record order (the grid's order).
    let mut cells: BTreeMap<&str, BTreeMap<u64, Vec<&RunRecord>>> = BTreeMap::new();
    for r in grid_records {
        cells
            .entry(&r.task_id)
            .or_default()
            .entry(r.seed)
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for seeds in cells.values() {
        if seeds.len() < 2 {
            continue;
        }
        let order: Vec<u64> = seeds.keys().copied().collect();
        for (i, seed) in order.iter().enumerate() {
            let chooser = &seeds[&order[(i + 1) % order.len()]];
            let Some(pick) = chooser
                .iter()
                .min_by(|a, b| effective_loss(a).total_cmp(&effective_loss(b)))
            else {
                continue;
            };
            let Some(run) = seeds[seed].iter().find(|r| r.controller == pick.controller) else {
                continue;
            };
            let mut r = (*run).clone();
            r.controller = "oracle-cross-seed".into();
            r.wall_secs = run.wall_secs + chooser.iter().map(|c| c.wall_secs).sum::<f64>();
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task: &str, controller: &str, loss: f64, wall: f64) -> RunRecord {
        RunRecord {
            wall_secs: wall,
            ..crate::run::test_record(task, controller, 0, Some(loss))
        }
    }

    #[test]
    fn the_cross_seed_oracle_chooses_on_the_next_seed_and_reports_the_other() {
        let run = |controller: &str, seed: u64, loss: f64| RunRecord {
            wall_secs: 1.0,
            ..crate::run::test_record("t", controller, seed, Some(loss))
        };
        // Seed 0 prefers `a`, seed 1 prefers `b`: each is judged by the other's choice.
        let records = vec![
            run("a", 0, 1.0),
            run("b", 0, 2.0),
            run("a", 1, 3.0),
            run("b", 1, 0.5),
            crate::run::test_record("single", "a", 0, Some(1.0)),
        ];
        let cross = cross_seed_oracle_records(&records);
        assert_eq!(cross.len(), 2, "the one-seed task gives none");
        assert_eq!((cross[0].seed, cross[0].test_loss), (0, Some(2.0)));
        assert_eq!((cross[1].seed, cross[1].test_loss), (1, Some(3.0)));
        assert!(cross.iter().all(|r| r.controller == "oracle-cross-seed"));
        assert_eq!(cross[0].wall_secs, 3.0);
        // The in-sample oracle takes each seed's own best.
        let oracle = oracle_records(&records[..4]);
        assert_eq!(
            oracle.iter().map(|r| r.test_loss).collect::<Vec<_>>(),
            vec![Some(1.0), Some(0.5)]
        );
    }

    #[test]
    fn choose_picks_the_lowest_mean_log_ratio_and_the_oracle_the_cell_best() {
        let records = vec![
            record("t1", "a1", 1.0, 1.0),
            record("t1", "a2", 0.5, 2.0),
            record("t2", "a1", 1.0, 1.0),
            record("t2", "a2", 1.5, 2.0),
        ];
        // a1: (ln 2 + 0)/2 = 0.347; a2: (0 + ln 1.5)/2 = 0.203.
        let chosen = choose(&records, &[("a".into(), vec!["a1".into(), "a2".into()])]);
        assert_eq!(chosen[0].1, "a2");
        assert!((chosen[0].2 - 1.5f64.ln() / 2.0).abs() < 1e-12);
        let oracle = oracle_records(&records);
        assert_eq!(oracle.len(), 2);
        assert_eq!((oracle[0].test_loss, oracle[0].wall_secs), (Some(0.5), 3.0));
        assert_eq!(
            (oracle[1].test_loss, oracle[1].controller.as_str()),
            (Some(1.0), "oracle")
        );
    }

    #[test]
    fn grid_covers_four_decades_with_ten_values() {
        let g = log_grid(1e-4, 1.0, 10);
        assert_eq!(g.len(), 10);
        assert!((g[0] - 1e-4).abs() < 1e-15 && (g[9] - 1.0).abs() < 1e-12);
        assert!((g[1] / g[0] - 10f64.powf(4.0 / 9.0)).abs() < 1e-9);
    }

    #[test]
    fn variants_keep_other_parameters_and_skip_momentum_for_onecycle() {
        let v = grid_variants("step:gamma=0.5", &[0.1, 1.0], &[0.0, 0.9]).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], "step:lr=1.000e-1,momentum=0,gamma=0.5");
        let v = grid_variants("onecycle:pct_start=0.25", &[0.1, 1.0], &[0.0, 0.9]).unwrap();
        assert_eq!(
            v,
            vec![
                "onecycle:max_lr=1.000e-1,pct_start=0.25",
                "onecycle:max_lr=1.000e0,pct_start=0.25"
            ]
        );
        assert!(!is_tunable("policy:policies/default"));
    }
}
