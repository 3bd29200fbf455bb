//! A whole comparison as a library call: the tuning protocol, the compared controllers, the
//! replay ablation and the grid oracle, in that order, each a phase of [`run_all`] in its own
//! folder of `out`. The binary only turns argv into a [`Plan`] and shows [`Progress`].
//!
//! 1. **Tune** (with [`TunePlan`]): every tunable SPEC's grid (lr × momentum, see
//!    [`tune`]) runs on the tuning split; the best setting of each is chosen there
//!    and either replaces the SPEC (`add` empty) or joins the compared controllers beside it.
//! 2. **Compare**: every controller on every task and seed.
//! 3. **Replay** (for each SPEC in `replay`): `replay(SPEC)` plays back, open loop, the mean
//!    lr/momentum trajectory SPEC chose on each task over the seeds.
//! 4. **Oracle** (with `oracle`): per task and seed, the best of the whole grid on the evaluated
//!    tasks themselves.

use std::collections::HashMap;
use std::path::Path;

use hyperctl_collections::CollectionTask;

use crate::Error;
use crate::run::{RunConfig, RunRecord, run_all};
use crate::tune;

/// Tuning on another split (the fair "best single fixed schedule").
#[derive(Debug, Clone)]
pub struct TunePlan {
    /// The tuning split's name (for the notes).
    pub split: String,
    /// Its tasks (never the evaluated ones).
    pub tasks: Vec<CollectionTask>,
    /// Seeds per tuning task.
    pub seeds: usize,
    /// SPECs to tune and add beside the compared ones; empty: every tunable compared SPEC is
    /// replaced by its tuned setting.
    pub add: Vec<String>,
}

/// Everything a comparison runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The evaluated tasks.
    pub tasks: Vec<CollectionTask>,
    /// The controller SPECs as given, in report order.
    pub controllers: Vec<String>,
    /// The reference of win rates (one of `controllers`).
    pub reference: String,
    /// Seeds, jobs, backend, env settings, starts, the dataset cache (its `controllers` and
    /// `replays` are the plan's to fill).
    pub config: RunConfig,
    /// Tune on another split first.
    pub tune: Option<TunePlan>,
    /// SPECs (of `controllers`) whose mean trajectories to replay.
    pub replay: Vec<String>,
    /// Log-spaced learning rates over [1e-4, 1] in the tuning and oracle grids (at least 2).
    pub n_lrs: usize,
    /// Add the oracle over the grids of these SPECs (empty: every tunable compared and tuned
    /// SPEC); `None`: no oracle.
    pub oracle: Option<Vec<String>>,
}

/// What a comparison produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every run, in a fixed order.
    pub records: Vec<RunRecord>,
    /// The controllers as reported (tuned settings, replays and the oracle included).
    pub controllers: Vec<String>,
    /// The reference of win rates (its tuned setting, if it was tuned).
    pub reference: String,
    /// Sentences for the report: how starts were drawn, what tuning chose, what the extra
    /// controllers are.
    pub notes: Vec<String>,
}

/// What a comparison tells its caller while it runs (all methods default to nothing).
pub trait Progress: Sync {
    /// A phase (`tune`, `compare`, `replay`, `oracle`) starts with `total` runs.
    fn phase_started(&self, _label: &str, _total: usize) {}
    /// A run finished; `done` of `total` are recorded.
    fn run_finished(&self, _label: &str, _done: usize, _total: usize, _record: &RunRecord) {}
    /// The phase is over.
    fn phase_finished(&self, _label: &str) {}
    /// A note was made (see [`Outcome::notes`]).
    fn note(&self, _note: &str) {}
}

/// A tunable SPEC and its grid variants.
type Grid = (String, Vec<String>);

/// A [`Progress`] that says nothing.
pub struct Quiet;

impl Progress for Quiet {}

impl Plan {
    /// The grids of the SPECs to tune and of the oracle, each `(SPEC, variants)`, SPECs once.
    fn grids(&self) -> Result<(Vec<Grid>, Vec<String>), Error> {
        let lrs = tune::log_grid(1e-4, 1.0, self.n_lrs);
        let tunable: Vec<String> = self
            .controllers
            .iter()
            .filter(|c| tune::is_tunable(c))
            .cloned()
            .collect();
        let grids_of = |specs: &[String]| -> Result<Vec<Grid>, Error> {
            let mut out: Vec<Grid> = Vec::new();
            for c in specs {
                if out.iter().all(|(b, _)| b != c) {
                    let variants = tune::grid_variants(c, &lrs, &[0.0, 0.9])
                        .map_err(|e| Error::Controller(e.to_string()))?;
                    out.push((c.clone(), variants));
                }
            }
            Ok(out)
        };
        let added = self.tune.as_ref().map_or(&[][..], |t| &t.add[..]);
        let variants = grids_of(if added.is_empty() { &tunable } else { added })?;
        let oracle_bases: Vec<String> = match &self.oracle {
            Some(from) if !from.is_empty() => from.clone(),
            _ => tunable.iter().chain(added).cloned().collect(),
        };
        let grid = grids_of(&oracle_bases)?
            .into_iter()
            .flat_map(|(_, v)| v)
            .collect();
        Ok((variants, grid))
    }

    /// Checks what can be checked without running anything: the reference and replays are
    /// compared SPECs, the tuned and oracle SPECs have a learning rate, the oracle has a grid.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Controller(m));
        if self.n_lrs < 2 {
            return bad("--tune-lrs must be at least 2".into());
        }
        if !self.controllers.contains(&self.reference) {
            return bad(format!(
                "the reference `{}` is not one of the compared SPECs",
                self.reference
            ));
        }
        for r in &self.replay {
            if !self.controllers.contains(r) {
                return bad(format!(
                    "--replay `{r}` is not one of the --controller SPECs"
                ));
            }
        }
        let added = self.tune.as_ref().map_or(&[][..], |t| &t.add[..]);
        for spec in added.iter().chain(self.oracle.iter().flatten()) {
            if !tune::is_tunable(spec) {
                return bad(format!(
                    "`{spec}` has no learning rate to tune (--tune and --oracle-from take schedule SPECs)"
                ));
            }
        }
        let (_, grid) = self.grids()?;
        if self.oracle.is_some() && grid.is_empty() {
            return bad(
                "--oracle needs at least one tunable controller to take the grid from".into(),
            );
        }
        if let Some(t) = &self.tune
            && t.tasks.is_empty()
        {
            return bad(format!("the tuning split `{}` has no tasks", t.split));
        }
        Ok(())
    }
}

/// Runs the plan into `out` (resumable: recorded runs are kept), telling `progress`.
pub fn run_plan(plan: &Plan, out: &Path, progress: &dyn Progress) -> Result<Outcome, Error> {
    plan.check()?;
    let (variants, grid) = plan.grids()?;
    let mut config = plan.config.clone();
    let mut controllers = plan.controllers.clone();
    let mut reference = plan.reference.clone();
    let mut notes: Vec<String> = Vec::new();
    let note = |n: String, notes: &mut Vec<String>| {
        progress.note(&n);
        notes.push(n);
    };
    let phase = |label: &str,
                 tasks: &[CollectionTask],
                 specs: &[String],
                 config: &RunConfig,
                 dir: &Path|
     -> Result<Vec<RunRecord>, Error> {
        progress.phase_started(label, tasks.len() * specs.len() * config.seeds);
        let config = RunConfig {
            controllers: specs.to_vec(),
            ..config.clone()
        };
        let records = run_all(tasks, &config, dir, &|done, total, record| {
            progress.run_finished(label, done, total, record);
        })?;
        progress.phase_finished(label);
        Ok(records)
    };

    // How training started.
    let adamw = plan
        .tasks
        .iter()
        .any(|t| t.task.optimizer == hyperctl_tasks::OptimizerKind::Adamw);
    if let Some(d) = &config.starts {
        if d.lr_min == d.lr_max && d.momenta.len() == 1 {
            notes.push(format!(
                "Every task × seed started from lr {} and momentum {}; SPECs without lr/momentum start there.",
                d.lr_min, d.momenta[0]
            ));
        } else {
            notes.push(format!(
                "Untuned-start protocol: each task × seed started from an lr drawn log-uniformly over [{}, {}]{} and a momentum from {:?}, the same point for every controller (each record's `init_lr`, `init_momentum`); SPECs without lr/momentum start there.",
                d.lr_min,
                d.lr_max,
                if adamw {
                    format!(
                        " (AdamW tasks: [{}, {}])",
                        d.lr_min * crate::run::ADAMW_UNTUNED_LR_SCALE,
                        d.lr_max * crate::run::ADAMW_UNTUNED_LR_SCALE
                    )
                } else {
                    String::new()
                },
                d.momenta
            ));
        }
    }

    // 1. Tune on another split, then evaluate the chosen settings.
    if let Some(t) = &plan.tune {
        let tune_grid: Vec<String> = variants
            .iter()
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        let tune_config = RunConfig {
            seeds: t.seeds,
            ..config.clone()
        };
        let tune_records = phase(
            "tune",
            &t.tasks,
            &tune_grid,
            &tune_config,
            &out.join("tune"),
        )?;
        let chosen = tune::choose(&tune_records, &variants);
        let best_single = chosen
            .iter()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .map(|c| c.1.clone());
        for (base, pick, score) in &chosen {
            note(
                format!(
                    "`{base}` tuned on `{}` ({} tasks × {} seeds, grid of {} lrs × momentum {{0, 0.9}}): `{pick}` (mean ln(loss/best) there {score:.3})",
                    t.split,
                    t.tasks.len(),
                    t.seeds,
                    plan.n_lrs
                ),
                &mut notes,
            );
            if t.add.is_empty() {
                for c in controllers.iter_mut().filter(|c| *c == base) {
                    *c = pick.clone();
                }
                if reference == *base {
                    reference = pick.clone();
                }
            } else if !controllers.contains(pick) {
                controllers.push(pick.clone());
            }
        }
        if let Some(best) = &best_single
            && chosen.len() > 1
        {
            note(
                format!(
                    "Best single fixed schedule on `{}` (of {} configurations): `{best}`",
                    t.split,
                    tune_grid.len()
                ),
                &mut notes,
            );
        }
        let chosen_json: Vec<_> = chosen
            .iter()
            .map(|(b, p, s)| {
                serde_json::json!({"controller": b, "chosen": p, "tune_score": s,
                    "best_single": Some(p) == best_single.as_ref()})
            })
            .collect();
        crate::run::write_atomic(
            &out.join("tune").join("chosen.json"),
            serde_json::to_string_pretty(&chosen_json)
                .expect("JSON values serialize")
                .as_bytes(),
        )?;
    }

    // 2. Every controller on every task and seed.
    let mut records = phase("compare", &plan.tasks, &controllers, &config, out)?;

    // 3. Replays of the mean trajectories, open loop.
    for (given, used) in plan.controllers.iter().zip(controllers.clone()) {
        if !plan.replay.contains(given) {
            continue;
        }
        let name = format!("replay({used})");
        let mut per_task = HashMap::new();
        for t in &plan.tasks {
            let runs: Vec<(Vec<f64>, Vec<f64>)> = records
                .iter()
                .filter(|r| r.controller == used && r.task_id == t.task.id)
                .map(|r| (r.lr.clone(), r.momentum.clone()))
                .collect();
            if let Some(replay) = hyperctl_controllers::Replay::mean_of(name.clone(), &runs) {
                per_task.insert(t.task.id.clone(), replay);
            }
        }
        config.replays.insert(name.clone(), per_task);
        let dir = out.join(format!(
            "replay-{}",
            controllers.iter().position(|c| *c == used).unwrap_or(0)
        ));
        records.extend(phase(
            "replay",
            &plan.tasks,
            std::slice::from_ref(&name),
            &config,
            &dir,
        )?);
        notes.push(format!("`{name}`: open-loop playback, per task, of the mean lr/momentum trajectory `{used}` chose over the seeds"));
        controllers.push(name);
    }

    // 4. The per-task oracle over the whole grid.
    if plan.oracle.is_some() {
        let grid_records = phase("oracle", &plan.tasks, &grid, &config, &out.join("oracle"))?;
        records.extend(tune::oracle_records(&grid_records));
        controllers.push("oracle".into());
        note(
            format!(
                "`oracle`: per task and seed, the best of {} grid configurations on the evaluated tasks themselves ({}× the compute of one controller; its wall time is the grid's)",
                grid.len(),
                grid.len()
            ),
            &mut notes,
        );
        let cross = tune::cross_seed_oracle_records(&grid_records);
        if !cross.is_empty() {
            records.extend(cross);
            controllers.push("oracle-cross-seed".into());
            note(
                "`oracle-cross-seed`: per task, the grid configuration best on one seed evaluated on another (each seed judged by the next seed's choice): the per-task headroom a controller could honestly reach; `oracle` sees the run it is judged on".to_string(),
                &mut notes,
            );
        }
    }
    Ok(Outcome {
        records,
        controllers,
        reference,
        notes,
    })
}
