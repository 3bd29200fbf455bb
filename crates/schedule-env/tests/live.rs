//! The live path (a user's own loop reporting epochs) chooses exactly what `run_schedule` chooses.

use hyperctl_schedule_env::{
    Controller, Decision, DecisionInput, EnvConfig, EpisodeContext, EpochReport, LiveSession,
    Rollback, ScheduleEnv, run_schedule, run_schedule_with,
};
use hyperctl_tasks::{Backend, DatasetSource, Hyperparams, ModelSpec, TaskSpec, TaskType};

/// A controller whose actions depend on the whole observation, like a policy's.
#[derive(Clone)]
struct Reader;

impl Controller for Reader {
    fn spec(&self) -> String {
        "reader".into()
    }
    fn reset(&mut self, _: &EpisodeContext) {}
    fn decide(&mut self, input: &DecisionInput) -> Decision {
        let o = input.obs;
        Decision::Action(vec![
            (o[1] * 0.7 - o[4] + 0.3 * o[12]).tanh() * 1.3,
            (o[0] * 0.5 + o[7] * 0.2 - o[10] * 0.1).tanh(),
        ])
    }
}

#[test]
fn a_live_session_fed_the_trainers_statistics_chooses_what_run_schedule_chose() {
    let mut task = TaskSpec::new(
        DatasetSource::parse("gen:teacher-cls:n=300,d=5").unwrap(),
        TaskType::Classification,
        ModelSpec::parse("mlp:16x1").unwrap(),
        6,
        32,
        3,
    );
    task.init = Hyperparams {
        lr: 0.05,
        momentum: 0.5,
    };
    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let result = run_schedule(&mut env, &mut Reader, 11, |_| {});
    let (mut live, first) = LiveSession::open(
        Box::new(Reader),
        EnvConfig::defaults(),
        task.epochs,
        task.init,
        Some(result.initial_val.loss),
        10,
        None,
    )
    .unwrap();
    let mut chosen = vec![first];
    for r in &result.intervals {
        chosen.push(live.observe_stats(r.stats.clone()).unwrap().hp);
    }
    let used: Vec<(f64, f64)> = result
        .intervals
        .iter()
        .map(|r| (r.stats.lr, r.stats.momentum))
        .collect();
    let live_used: Vec<(f64, f64)> = chosen[..used.len()]
        .iter()
        .map(|h| (h.lr, h.momentum))
        .collect();
    assert_eq!(used, live_used);
    assert!(
        used.windows(2).any(|w| w[0] != w[1]),
        "the controller should move: {used:?}"
    );
}

#[test]
fn reports_become_the_trainers_statistics_and_bad_ones_are_refused() {
    let report = EpochReport {
        train_losses: vec![2.0, 1.0, 3.0],
        val_loss: 1.5,
        grad_norms: vec![1.0, 3.0, 2.0],
        update_ratio: Some(0.01),
        val_metric: None,
    };
    let hp = Hyperparams {
        lr: 0.1,
        momentum: 0.9,
    };
    let s = report.to_stats(1, hp).unwrap();
    assert_eq!(
        (s.train_loss_mean, s.train_loss_first, s.train_loss_last),
        (2.0, 2.0, 3.0)
    );
    assert!((s.train_loss_std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!((s.grad_norm_mean, s.grad_norm_max), (2.0, 3.0));
    assert!((s.grad_norm_std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert!(!s.diverged);
    let diverged = EpochReport {
        val_loss: f64::NAN,
        ..report.clone()
    }
    .to_stats(2, hp)
    .unwrap();
    assert!(diverged.diverged);
    let empty = EpochReport {
        train_losses: vec![],
        ..report.clone()
    };
    assert_eq!(empty.to_stats(1, hp).unwrap_err().field, "train_losses");
    let negative = EpochReport {
        grad_norms: vec![-1.0, 1.0, 1.0],
        ..report.clone()
    };
    assert_eq!(negative.to_stats(1, hp).unwrap_err().field, "grad_norms");
    // Three losses and one gradient norm: not one norm per minibatch.
    let mismatched = EpochReport {
        grad_norms: vec![1.0],
        ..report.clone()
    };
    let err = mismatched.to_stats(1, hp).unwrap_err();
    assert_eq!(err.field, "grad_norms");
    assert!(
        err.reason
            .contains("1 gradient norms for 3 minibatch losses"),
        "{err}"
    );
    let bad_ratio = EpochReport {
        update_ratio: Some(-0.1),
        ..report
    };
    assert_eq!(bad_ratio.to_stats(1, hp).unwrap_err().field, "update_ratio");
    let bad = LiveSession::open(
        Box::new(Reader),
        EnvConfig::defaults(),
        0,
        hp,
        None,
        1,
        None,
    );
    assert_eq!(bad.err().unwrap().field, "epochs");
    let bad = LiveSession::open(
        Box::new(Reader),
        EnvConfig::defaults(),
        3,
        Hyperparams {
            lr: -1.0,
            momentum: 0.0,
        },
        None,
        1,
        None,
    );
    assert_eq!(bad.err().unwrap().field, "lr");
    // A controller that needs hyperctl's trainer (a parameter-free rule) is refused.
    struct Dog;
    impl Controller for Dog {
        fn spec(&self) -> String {
            "dog".into()
        }
        fn reset(&mut self, _: &EpisodeContext) {}
        fn decide(&mut self, input: &DecisionInput) -> Decision {
            Decision::Set(input.current)
        }
        fn method(&self) -> hyperctl_tasks::Method {
            hyperctl_tasks::Method {
                rule: hyperctl_tasks::StepRule::Dog {
                    reps_rel: 1e-6,
                    layerwise: false,
                },
                ..hyperctl_tasks::Method::INNER
            }
        }
    }
    let err = LiveSession::open(Box::new(Dog), EnvConfig::defaults(), 3, hp, None, 1, None)
        .err()
        .unwrap();
    assert_eq!(err.field, "controller");
    assert!(err.reason.contains("inside hyperctl's trainer"), "{err}");
}

/// Always asks for the same (too large) learning rate.
struct Fixed(f64);

impl Controller for Fixed {
    fn spec(&self) -> String {
        format!("fixed:{}", self.0)
    }
    fn reset(&mut self, _: &EpisodeContext) {}
    fn decide(&mut self, _: &DecisionInput) -> Decision {
        Decision::Set(Hyperparams {
            lr: self.0,
            momentum: 0.9,
        })
    }
}

#[test]
fn rollback_recovers_a_run_forced_to_diverge() {
    let task = TaskSpec::new(
        DatasetSource::parse("gen:gauss-mix:n=600,d=6").unwrap(),
        TaskType::Classification,
        ModelSpec::parse("mlp:32x2").unwrap(),
        8,
        32,
        0,
    );
    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let plain = run_schedule(&mut env, &mut Fixed(30.0), 0, |_| {});
    assert!(plain.diverged && plain.intervals.len() == 1 && plain.episode_return == -10.0);
    assert!(
        env.restore_good(task.init).is_none(),
        "rollback was not enabled"
    );

    let rollback = Some(Rollback {
        lr_factor: 0.1,
        max_rollbacks: 5,
        blowup_factor: f64::INFINITY,
    });
    let mut env = ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap();
    let r = run_schedule_with(&mut env, &mut Fixed(30.0), 0, rollback, |_| {});
    assert!(
        !r.diverged,
        "{:?}",
        r.intervals
            .iter()
            .map(|i| (i.stats.lr, i.stats.val_loss))
            .collect::<Vec<_>>()
    );
    assert!(r.rollbacks >= 1);
    assert_eq!(
        r.intervals.len(),
        8,
        "rolled-back epochs count against the budget"
    );
    assert!(
        r.intervals
            .iter()
            .filter(|i| i.rolled_back)
            .all(|i| i.stats.diverged && i.reward == 0.0)
    );
    let last = r.intervals.last().unwrap();
    assert!(!last.stats.diverged && last.stats.val_loss.is_finite());
    assert!(r.test.loss.is_finite());
    // The return is still ln(V0 / V_T), summed over the kept intervals.
    let expected = (r.initial_val.loss / last.stats.val_loss).ln();
    assert!(
        (r.episode_return - expected).abs() < 1e-9,
        "{} vs {expected}",
        r.episode_return
    );
    // Every lr after the first rollback is at most the diverged lr × factor.
    let first = r.intervals.iter().position(|i| i.rolled_back).unwrap();
    let cap = r.intervals[first].stats.lr * 0.1 + 1e-12;
    assert!(r.intervals[first + 1..].iter().all(|i| i.stats.lr <= cap));
}

/// Always asks to multiply the lr by the largest step (a policy that keeps raising it).
struct AlwaysUp;

impl Controller for AlwaysUp {
    fn spec(&self) -> String {
        "always-up".into()
    }
    fn reset(&mut self, _: &EpisodeContext) {}
    fn decide(&mut self, _: &DecisionInput) -> Decision {
        Decision::Action(vec![1.0, 0.0])
    }
}

#[test]
fn after_a_rollback_no_controller_climbs_back_above_the_lr_that_diverged() {
    let mut task = teacher_reg(12);
    task.init = Hyperparams {
        lr: 0.05,
        momentum: 0.9,
    };
    let rollback = Some(Rollback {
        lr_factor: 0.5,
        max_rollbacks: 5,
        blowup_factor: f64::INFINITY,
    });
    let mut env = ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap();
    let r = run_schedule_with(&mut env, &mut AlwaysUp, 0, rollback, |_| {});
    let lrs: Vec<(f64, bool)> = r
        .intervals
        .iter()
        .map(|i| (i.stats.lr, i.rolled_back))
        .collect();
    assert!(r.rollbacks >= 1, "{lrs:?}");
    assert!(!r.diverged, "the ceiling stops the climb: {lrs:?}");
    let mut ceiling = f64::INFINITY;
    for i in &r.intervals {
        assert!(i.stats.lr <= ceiling * (1.0 + 1e-12), "{lrs:?}");
        if i.rolled_back {
            ceiling = ceiling.min(i.stats.lr * 0.5);
        }
    }
}

/// A small regression task (teacher MLP data, a 32×2 MLP, batch 32, seed 0) of `epochs` epochs.
fn teacher_reg(epochs: usize) -> TaskSpec {
    TaskSpec::new(
        DatasetSource::parse("gen:teacher-reg:n=600,d=6").unwrap(),
        TaskType::Regression,
        ModelSpec::parse("mlp:32x2").unwrap(),
        epochs,
        32,
        0,
    )
}

/// Plays a list of learning rates (momentum 0.9), then repeats the last.
struct Script(Vec<f64>, usize);

impl Controller for Script {
    fn spec(&self) -> String {
        "script".into()
    }
    fn reset(&mut self, _: &EpisodeContext) {
        self.1 = 0;
    }
    fn decide(&mut self, _: &DecisionInput) -> Decision {
        let lr = self.0[self.1.min(self.0.len() - 1)];
        self.1 += 1;
        Decision::Set(Hyperparams { lr, momentum: 0.9 })
    }
}

#[test]
fn a_mid_run_rollback_resumes_exactly_from_the_last_good_epoch() {
    let task = teacher_reg(6);
    let rollback = Some(Rollback {
        lr_factor: 0.5,
        max_rollbacks: 5,
        blowup_factor: f64::INFINITY,
    });
    // A: three good epochs, one that diverges, then the schedule at half scale.
    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let a = run_schedule_with(
        &mut env,
        &mut Script(vec![0.02, 0.02, 0.02, 8.0, 0.02], 0),
        0,
        rollback,
        |_| {},
    );
    // B: the same three epochs, then what A runs after its rollback (0.02 × 0.5).
    let mut env = ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap();
    let b = run_schedule(
        &mut env,
        &mut Script(vec![0.02, 0.02, 0.02, 0.01], 0),
        0,
        |_| {},
    );
    let val = |r: &hyperctl_schedule_env::EpisodeResult| {
        r.intervals
            .iter()
            .map(|i| (i.stats.lr, i.stats.val_loss, i.rolled_back))
            .collect::<Vec<_>>()
    };
    assert_eq!(a.rollbacks, 1, "{:?}", val(&a));
    assert!(a.intervals[3].rolled_back);
    // After the rollback A continues exactly as B from epoch 4 on (weights, velocity, data order).
    assert_eq!(
        a.intervals[4].stats.val_loss,
        b.intervals[3].stats.val_loss,
        "A {:?}\nB {:?}",
        val(&a),
        val(&b)
    );
    assert_eq!(a.intervals[5].stats.val_loss, b.intervals[4].stats.val_loss);
}

#[test]
fn a_blown_up_epoch_that_passes_the_divergence_test_is_rolled_back_too() {
    let task = teacher_reg(6);
    // lr 0.5 at epoch 4 wrecks the model (validation loss ×4.6 over the best; the ReLUs die and it
    // stays there) while the mean training loss stays under the divergence test's threshold.
    let script = || Script(vec![0.02, 0.02, 0.02, 0.5, 0.02], 0);
    let guard = |blowup_factor| {
        Some(Rollback {
            lr_factor: 0.5,
            max_rollbacks: 5,
            blowup_factor,
        })
    };
    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let unguarded = run_schedule_with(&mut env, &mut script(), 0, guard(f64::INFINITY), |_| {});
    let val = |r: &hyperctl_schedule_env::EpisodeResult| {
        r.intervals
            .iter()
            .map(|i| (i.stats.lr, i.stats.val_loss, i.rolled_back))
            .collect::<Vec<_>>()
    };
    assert_eq!(unguarded.rollbacks, 0, "{:?}", val(&unguarded));
    let wrecked = unguarded.intervals[3].stats.val_loss;
    assert!(
        !unguarded.intervals[3].stats.diverged
            && wrecked > 4.0 * unguarded.intervals[2].stats.val_loss
    );

    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let guarded = run_schedule_with(&mut env, &mut script(), 0, guard(4.0), |_| {});
    assert_eq!(guarded.rollbacks, 1, "{:?}", val(&guarded));
    assert!(guarded.intervals[3].rolled_back && guarded.intervals[3].reward == 0.0);
    assert!(!guarded.diverged);
    // The wrecked state was not kept: the run continues exactly as one that ran 0.02 × 0.5 at
    // epoch 4 after the same three epochs.
    let mut env = ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap();
    let clean = run_schedule(
        &mut env,
        &mut Script(vec![0.02, 0.02, 0.02, 0.01], 0),
        0,
        |_| {},
    );
    assert_eq!(
        guarded.intervals[4].stats.val_loss,
        clean.intervals[3].stats.val_loss
    );
    assert_eq!(
        guarded.intervals[5].stats.val_loss,
        clean.intervals[4].stats.val_loss
    );
    let last = guarded.intervals.last().unwrap().stats.val_loss;
    assert!(last < 0.5 * unguarded.intervals.last().unwrap().stats.val_loss);
    let expected = (guarded.initial_val.loss / last).ln();
    assert!((guarded.episode_return - expected).abs() < 1e-9);
}

/// A guarded live session fed the statistics of `train --rollback`'s run (run_schedule_with
/// under the deployed guard) decides exactly what that run decided, before and after each
/// rollback, and names the state to restore.
fn assert_live_matches_guarded_run(
    task: TaskSpec,
    make: &dyn Fn() -> Box<dyn Controller + Send>,
    guard: Rollback,
) -> hyperctl_schedule_env::EpisodeResult {
    let mut env = ScheduleEnv::new(task.clone(), EnvConfig::defaults(), Backend::Flex).unwrap();
    let mut controller = make();
    let run = run_schedule_with(&mut env, controller.as_mut(), 0, Some(guard), |_| {});
    let steps = env.trainer().steps_per_epoch();
    let (mut live, first) = LiveSession::open(
        make(),
        EnvConfig::defaults(),
        task.epochs,
        task.init,
        Some(run.initial_val.loss),
        steps,
        Some(guard),
    )
    .unwrap();
    let mut next = first;
    let mut kept = 0;
    for (i, r) in run.intervals.iter().enumerate() {
        assert_eq!(
            (next.lr, next.momentum),
            (r.stats.lr, r.stats.momentum),
            "interval {} of {:?}",
            i + 1,
            run.intervals
                .iter()
                .map(|r| (r.stats.lr, r.rolled_back))
                .collect::<Vec<_>>()
        );
        let d = live.observe_stats(r.stats.clone()).unwrap();
        assert_eq!(
            d.restore_epoch.is_some(),
            r.rolled_back,
            "interval {}",
            i + 1
        );
        if let Some(k) = d.restore_epoch {
            assert_eq!(k, kept, "the state to restore is the last one marked keep");
        }
        if d.keep {
            kept = i + 1;
        }
        assert_eq!(d.done, i + 1 == run.intervals.len());
        next = d.hp;
    }
    assert_eq!(live.rollbacks(), run.rollbacks);
    assert!(
        live.observe_stats(run.intervals[0].stats.clone()).is_err(),
        "the run is over"
    );
    run
}

#[test]
fn a_guarded_live_session_decides_what_train_rollback_decides_before_and_after_rollbacks() {
    // A policy-like controller that climbs into divergence, rolls back, and climbs again.
    let mut task = teacher_reg(12);
    task.init = Hyperparams {
        lr: 0.05,
        momentum: 0.9,
    };
    let run = assert_live_matches_guarded_run(task, &|| Box::new(AlwaysUp), Rollback::DEPLOYED);
    assert!(run.rollbacks >= 1);
    // A schedule that blows up mid-run (validation ×4.6 without tripping the divergence test).
    let run = assert_live_matches_guarded_run(
        teacher_reg(6),
        &|| Box::new(Script(vec![0.02, 0.02, 0.02, 0.5, 0.02], 0)),
        Rollback::DEPLOYED,
    );
    assert_eq!(run.rollbacks, 1);
    // Rollbacks run out: the run ends diverged, and the session says so.
    let run = assert_live_matches_guarded_run(
        teacher_reg(8),
        &|| Box::new(Fixed(1e3)),
        Rollback {
            lr_factor: 0.9,
            max_rollbacks: 2,
            blowup_factor: 4.0,
        },
    );
    assert!(
        run.diverged && run.rollbacks == 2,
        "{:?}",
        run.intervals.len()
    );
}

/// Plateau-like: keeps the lr it is told it runs at (what the reactive baselines do).
struct KeepsCurrent;

impl Controller for KeepsCurrent {
    fn spec(&self) -> String {
        "keeps-current".into()
    }
    fn reset(&mut self, _: &EpisodeContext) {}
    fn decide(&mut self, input: &DecisionInput) -> Decision {
        // 0.02, then 8 (which diverges), then whatever it is told it runs at.
        Decision::Set(match input.interval {
            0 => Hyperparams {
                lr: 0.02,
                momentum: 0.9,
            },
            1 => Hyperparams {
                lr: 8.0,
                momentum: 0.9,
            },
            _ => input.current,
        })
    }
}

#[test]
fn after_a_rollback_a_reactive_controller_runs_at_the_reduced_lr_not_reduced_again_every_epoch() {
    let task = teacher_reg(6);
    let mut env = ScheduleEnv::new(task, EnvConfig::defaults(), Backend::Flex).unwrap();
    let guard = Rollback {
        lr_factor: 0.01,
        ..Rollback::DEPLOYED
    };
    let r = run_schedule_with(&mut env, &mut KeepsCurrent, 0, Some(guard), |_| {});
    let lrs: Vec<(f64, bool)> = r
        .intervals
        .iter()
        .map(|i| (i.stats.lr, i.rolled_back))
        .collect();
    assert!(r.rollbacks >= 1, "{lrs:?}");
    // After the last rollback the lr stays where the guard put it (it was multiplied by the
    // rollback factor again at every later epoch: 8 → 0.08 → 0.0008 → ...).
    let last_rollback = r.intervals.iter().rposition(|i| i.rolled_back).unwrap();
    let after: Vec<f64> = r.intervals[last_rollback + 1..]
        .iter()
        .map(|i| i.stats.lr)
        .collect();
    assert!(after.len() >= 2, "{lrs:?}");
    assert!(after.windows(2).all(|w| w[0] == w[1]), "{lrs:?}");
    assert_eq!(
        after[0],
        r.intervals[last_rollback].stats.lr * 0.01,
        "{lrs:?}"
    );
}
