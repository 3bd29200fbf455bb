//! [`DecisionLoop`]: the one decision loop that every way of running a controller goes through —
//! `run_schedule` (hyperctl-schedule-env) (train, compare, meta-val), the library's
//! [`LiveSession`](crate::LiveSession) and, through it, `hyperctl serve`.
//!
//! The loop does not train: whoever trains (our trainer in `ScheduleEnv`,
//! or a user's own loop) reports each interval's [`EpochStats`] to [`DecisionLoop::observe`] and
//! asks [`DecisionLoop::decide`] for the next interval's hyperparameters. In between, the loop
//! owns everything that decides:
//!
//! - the [`Featurizer`] (statistics → observation),
//! - the action mapping ([`apply_action`]) and the bounds ([`clamp_hparams`]),
//! - divergence: a diverged interval ends the run (unless the guard undoes it),
//! - the deployment guard ([`Rollback`]): an interval that diverged, or whose validation loss
//!   exceeds `blowup_factor` × the best so far, is undone — the trainer goes back to the state
//!   after the last good interval ([`Observed::RolledBack`] names it), the lr that failed is
//!   multiplied by `lr_factor`, and no later interval runs above that reduced lr (the ceiling);
//!   explicit choices of schedules ([`Decision::Set`]) are scaled by every factor applied so far,
//!   so a schedule keeps its shape at a safer scale.
//!
//! Controllers see `current` in their own scale: a schedule or reactive heuristic that reads
//! back the lr it runs at gets it divided by the guard's scale, so the scale is applied once,
//! not again at every later interval.

use crate::stats::{EpochStats, Hyperparams};

use crate::action::action_space;
use crate::action::{apply_action, clamp_hparams};
use crate::config::EnvConfig;
use crate::controller::{Controller, Decision, DecisionInput, EpisodeContext, Rollback};
use crate::features::Featurizer;
use hyperctl_env_core::Obs;

/// What the loop made of an interval's statistics.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The interval stands. `good`: it may be returned to by a later rollback (the guard is on
    /// and the interval neither diverged nor blew up). `diverged`: the run diverged and is over.
    Kept {
        /// The observation for the next decision.
        obs: Obs,
        /// A state to keep for later rollbacks (only with the guard).
        good: bool,
        /// The interval diverged: the run has ended.
        diverged: bool,
    },
    /// The guard undid the interval: restore the trainer to the state saved after interval
    /// `restore_epoch` (0: the initial state) and train on with the reduced lr.
    RolledBack {
        /// The observation for the next decision (the restored state's, with the reduced lr).
        obs: Obs,
        /// The interval whose end state to restore (1-based; 0 is the state before training).
        restore_epoch: usize,
    },
}

/// The last state a rollback returns to.
#[derive(Debug, Clone)]
struct GoodPoint {
    epoch: usize,
    featurizer: Featurizer,
    last: Option<EpochStats>,
}

/// One run's decision state (see the module docs).
#[derive(Debug, Clone)]
pub struct DecisionLoop {
    env: EnvConfig,
    budget: usize,
    guard: Option<Rollback>,
    featurizer: Featurizer,
    /// The hyperparameters of the next interval (clamped), or of the one that just ran.
    hp: Hyperparams,
    /// The lr asked for before clamping (to tell how much a clamp already lowered it).
    requested_lr: f64,
    /// Statistics of the last interval that stands.
    last: Option<EpochStats>,
    /// Intervals observed, rolled-back ones included.
    intervals: usize,
    lr_scale: f64,
    lr_ceiling: f64,
    rollbacks: usize,
    best_val: f64,
    good: Option<GoodPoint>,
    ended: bool,
}

impl DecisionLoop {
    /// A loop for a run of `budget` intervals starting at `init` (clamped into `env`'s bounds),
    /// whose untrained model has validation loss `initial_val_loss`; `guard` turns on the
    /// deployment guard.
    pub fn new(
        env: EnvConfig,
        budget: usize,
        init: Hyperparams,
        initial_val_loss: f64,
        guard: Option<Rollback>,
    ) -> Self {
        let featurizer = Featurizer::with_version(env.feature_version, initial_val_loss, budget);
        let hp = clamp_hparams(init, &env);
        let good = guard.map(|_| GoodPoint {
            epoch: 0,
            featurizer: featurizer.clone(),
            last: None,
        });
        Self {
            env,
            budget,
            guard,
            featurizer,
            hp,
            requested_lr: hp.lr,
            last: None,
            intervals: 0,
            lr_scale: 1.0,
            lr_ceiling: f64::INFINITY,
            rollbacks: 0,
            best_val: initial_val_loss,
            good,
            ended: false,
        }
    }

    /// Replaces the untrained model's validation loss before the first interval is observed
    /// (a live loop that did not know it uses its first minibatch loss instead).
    pub fn set_initial_val_loss(&mut self, initial_val_loss: f64) {
        assert_eq!(self.intervals, 0, "only before the first interval");
        let requested_lr = self.requested_lr;
        *self = Self::new(
            self.env.clone(),
            self.budget,
            self.hp,
            initial_val_loss,
            self.guard,
        );
        // The first decision stands, as it was asked for.
        self.requested_lr = requested_lr;
    }

    /// The context a controller is reset with at the start of this run.
    pub fn context(&self, steps_per_epoch: usize, steps_per_interval: usize) -> EpisodeContext {
        EpisodeContext {
            epochs: self.budget,
            init: self.hp,
            steps_per_epoch,
            steps_per_interval,
        }
    }

    /// The observation before the first interval.
    pub fn initial_obs(&self) -> Obs {
        self.featurizer.initial(self.hp)
    }

    /// Asks `controller` for the next interval's hyperparameters, given the observation `obs`
    /// (from [`DecisionLoop::initial_obs`] or [`DecisionLoop::observe`]), and maps, scales,
    /// caps and clamps its decision.
    pub fn decide(&mut self, controller: &mut dyn Controller, obs: &[f32]) -> Hyperparams {
        let current = Hyperparams {
            lr: self.hp.lr / self.lr_scale,
            momentum: self.hp.momentum,
        };
        let decision = controller.decide(&DecisionInput {
            interval: self.intervals,
            obs,
            last: self.last.as_ref(),
            current,
        });
        let mut hp = match decision {
            Decision::Action(action) => {
                apply_action(self.hp, &action_space().clip(&action), &self.env)
            }
            Decision::Set(hp) => Hyperparams {
                lr: hp.lr * self.lr_scale,
                momentum: hp.momentum,
            },
        };
        hp.lr = hp.lr.min(self.lr_ceiling);
        self.requested_lr = hp.lr;
        self.hp = clamp_hparams(hp, &self.env);
        self.hp
    }

    /// Takes in the statistics of the interval just run (at [`DecisionLoop::current`]).
    pub fn observe(&mut self, stats: EpochStats) -> Observed {
        assert!(!self.ended, "observe called after the run ended");
        self.intervals += 1;
        let mut blew_up = false;
        if let Some(guard) = self.guard {
            blew_up = !stats.diverged && stats.val_loss > guard.blowup_factor * self.best_val;
            if !stats.diverged {
                self.best_val = self.best_val.min(stats.val_loss);
            }
            if (stats.diverged || blew_up) && self.rollbacks < guard.max_rollbacks {
                return self.roll_back(guard, &stats);
            }
        }
        let obs = self.featurizer.observe(&stats, self.hp);
        let diverged = stats.diverged;
        // A wrecked state (blown up, the guard's rollbacks spent) is never one to return to.
        let good = self.guard.is_some() && !diverged && !blew_up;
        self.last = Some(stats);
        if good {
            self.good = Some(GoodPoint {
                epoch: self.intervals,
                featurizer: self.featurizer.clone(),
                last: self.last.clone(),
            });
        }
        self.ended = diverged || self.intervals >= self.budget;
        Observed::Kept {
            obs,
            good,
            diverged,
        }
    }

    fn roll_back(&mut self, guard: Rollback, stats: &EpochStats) -> Observed {
        self.rollbacks += 1;
        // Relative to the lr actually used (the request may have been clamped).
        let clamped = (stats.lr / self.requested_lr).min(1.0);
        self.lr_scale *= guard.lr_factor * clamped;
        self.lr_ceiling = self.lr_ceiling.min(stats.lr * guard.lr_factor);
        let good = self
            .good
            .clone()
            .expect("the guard always holds a good point");
        self.featurizer = good.featurizer;
        self.last = good.last;
        self.hp = clamp_hparams(
            Hyperparams {
                lr: self.hp.lr * guard.lr_factor,
                momentum: self.hp.momentum,
            },
            &self.env,
        );
        let obs = self.featurizer.after_rollback(self.hp);
        // The restored state, one interval further into the budget, is the new good point.
        self.good = Some(GoodPoint {
            epoch: good.epoch,
            featurizer: self.featurizer.clone(),
            last: self.last.clone(),
        });
        self.ended = self.intervals >= self.budget;
        Observed::RolledBack {
            obs,
            restore_epoch: good.epoch,
        }
    }

    /// The hyperparameters of the next interval (or of the one that just ran).
    pub fn current(&self) -> Hyperparams {
        self.hp
    }

    /// Statistics of the last interval that stands (`None` before the first, or when every
    /// interval so far was rolled back).
    pub fn last(&self) -> Option<&EpochStats> {
        self.last.as_ref()
    }

    /// Intervals observed so far, rolled-back ones included.
    pub fn intervals(&self) -> usize {
        self.intervals
    }

    /// The budget in intervals.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Intervals undone by the guard so far.
    pub fn rollbacks(&self) -> usize {
        self.rollbacks
    }

    /// The run is over: its budget is spent or it diverged (and the guard did not undo it).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The guard, if on.
    pub fn guard(&self) -> Option<Rollback> {
        self.guard
    }
}
