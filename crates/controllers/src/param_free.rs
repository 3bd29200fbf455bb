//! The parameter-free methods as controllers: each asks the trainer for its step rule
//! ([`StepRule`]) and keeps the task's start hyperparameters, which only Schedule-Free reads
//! (its lr; an untuned start stays untuned). `average(SPEC)` adds iterate averaging to any
//! controller ([`Averaged`]).
//!
//! | SPEC | method (reference defaults unless set) |
//! |---|---|
//! | `dog[:reps_rel=R]` | DoG, one global step size (`reps_rel` 1e-6) |
//! | `ldog[:reps_rel=R]` | L-DoG, one step size per parameter tensor |
//! | `schedule-free[:beta=B,warmup=F]` | Schedule-Free SGD (AdamW form on AdamW tasks) at the task's start lr, β 0.9, linear warmup over a fraction F of the run's steps (0.05; the reference's default is 0 steps, its authors recommend warmup) |
//! | `prodigy[:d0=D]` | Prodigy (Adam form; d0 1e-6) |
//! | `d-adapt[:d0=D,momentum=M]` | D-Adaptation SGD (d0 1e-6, momentum 0) |
//! | `lr-range-test[:start_lr=S,end_lr=E,steps=N]` | fastai's `lr_find` then `fit_one_cycle`: an exponential lr sweep from 1e-7 to 10 over 100 minibatches (at most a quarter of the budget; its steps come off the budget), the `valley` pick, weights reset, then one-cycle at the picked max lr with fastai's shape (pct_start 0.25, div 25, final div 1e5, momentum 0.95 → 0.85 → 0.95), stepped per interval |
//! | `average[:gamma=G\|:ema=D](SPEC)` | SPEC with its validation and test losses measured at averaged weights: polynomial decay with γ = 8 unless `gamma` or `ema` says otherwise |
//!
//! D-Adaptation's and Prodigy's d0 stay at their references' 1e-6 rather than coming from the
//! start's lr: their estimate only grows, so a start above the right scale could never be undone.

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::{Averaging, Hyperparams, LrRangeTest, Method, StepRule};

use crate::spec::{ControllerSpec, SpecError};

/// Schedule-Free's default warmup, as a fraction of the run's minibatch steps.
pub const SCHEDULE_FREE_WARMUP: f64 = 0.05;
/// The polynomial-decay averager's γ (the DoG authors' prescription).
pub const AVERAGE_GAMMA: f64 = 8.0;

/// A parameter that must be > 0 (and at most `hi`), if given.
fn positive(spec: &ControllerSpec, key: &str, hi: f64) -> Result<Option<f64>, SpecError> {
    let value = spec.get_in(key, 0.0, hi)?;
    if value == Some(0.0) {
        return Err(SpecError::new(
            &spec.raw,
            format!("`{key}` must be greater than 0"),
        ));
    }
    Ok(value)
}

/// A parameter-free method: the trainer's step rule at the task's start hyperparameters.
#[derive(Debug, Clone)]
pub struct ParameterFree {
    spec: String,
    rule: StepRule,
    start: Option<Hyperparams>,
}

impl ParameterFree {
    /// From a parsed SPEC named `dog`, `ldog`, `schedule-free`, `prodigy` or `d-adapt`.
    pub fn from_spec(spec: &ControllerSpec) -> Result<Self, SpecError> {
        let rule = match spec.name.as_str() {
            "dog" | "ldog" => {
                spec.only(&["reps_rel"])?;
                StepRule::Dog {
                    reps_rel: positive(spec, "reps_rel", 1.0)?.unwrap_or(1e-6),
                    layerwise: spec.name == "ldog",
                }
            }
            "schedule-free" => {
                spec.only(&["beta", "warmup"])?;
                let beta = spec.get_in("beta", 0.0, 1.0)?.unwrap_or(0.9);
                if !(beta > 0.0 && beta < 1.0) {
                    return Err(SpecError::new(&spec.raw, "`beta` must be in (0, 1)"));
                }
                StepRule::ScheduleFree {
                    beta,
                    warmup_fraction: spec
                        .get_in("warmup", 0.0, 1.0)?
                        .unwrap_or(SCHEDULE_FREE_WARMUP),
                    weight_lr_power: 2.0,
                }
            }
            "prodigy" => {
                spec.only(&["d0"])?;
                StepRule::Prodigy {
                    d0: positive(spec, "d0", f64::MAX)?.unwrap_or(1e-6),
                }
            }
            "d-adapt" => {
                spec.only(&["d0", "momentum"])?;
                StepRule::DAdaptSgd {
                    d0: positive(spec, "d0", f64::MAX)?.unwrap_or(1e-6),
                    momentum: spec.get_in("momentum", 0.0, 0.999_999)?.unwrap_or(0.0),
                }
            }
            other => {
                return Err(SpecError::new(
                    &spec.raw,
                    format!("`{other}` is not a parameter-free method"),
                ));
            }
        };
        Ok(Self {
            spec: spec.raw.clone(),
            rule,
            start: None,
        })
    }

    /// The step rule it asks for.
    pub fn rule(&self) -> StepRule {
        self.rule
    }
}

impl Controller for ParameterFree {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.start = Some(context.init);
    }

    fn decide(&mut self, _input: &DecisionInput) -> Decision {
        Decision::Set(self.start.expect("reset should be called before decide"))
    }

    fn method(&self) -> Method {
        Method {
            rule: self.rule,
            average: None,
            lr_range_test: None,
        }
    }
}

/// `lr-range-test`: the trainer's LR range test, whose pick becomes the start lr, then one-cycle
/// from it (the `max_lr` of a `onecycle` left without one is the start's).
pub struct LrRangeTestThenOneCycle {
    spec: String,
    test: LrRangeTest,
    one_cycle: crate::Schedule,
}

/// fastai's `fit_one_cycle` defaults, as a `onecycle` SPEC without `max_lr`.
pub const FASTAI_ONE_CYCLE: &str = "onecycle:pct_start=0.25,div_factor=25,final_div_factor=1e5,base_momentum=0.85,max_momentum=0.95";

impl LrRangeTestThenOneCycle {
    /// From a parsed `lr-range-test[:start_lr,end_lr,steps]` SPEC.
    pub fn from_spec(spec: &ControllerSpec) -> Result<Self, SpecError> {
        spec.only(&["start_lr", "end_lr", "steps"])?;
        let start_lr = positive(spec, "start_lr", 1e6)?.unwrap_or(1e-7);
        let end_lr = positive(spec, "end_lr", 1e6)?.unwrap_or(10.0);
        if end_lr <= start_lr {
            return Err(SpecError::new(&spec.raw, "`end_lr` must exceed `start_lr`"));
        }
        let steps = spec.get_in("steps", 1.0, 1e6)?.unwrap_or(100.0);
        if steps.fract() != 0.0 {
            return Err(SpecError::new(&spec.raw, "`steps` must be a whole number"));
        }
        Ok(Self {
            spec: spec.raw.clone(),
            test: LrRangeTest {
                start_lr,
                end_lr,
                steps: steps as usize,
            },
            one_cycle: crate::Schedule::from_spec(&ControllerSpec::parse(FASTAI_ONE_CYCLE)?)?,
        })
    }
}

impl Controller for LrRangeTestThenOneCycle {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.one_cycle.reset(context);
    }

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        self.one_cycle.decide(input)
    }

    fn method(&self) -> Method {
        Method {
            lr_range_test: Some(self.test),
            ..Method::INNER
        }
    }
}

/// The averaging of `average[:gamma=G|:ema=D]`, from the parameters of its wrapper (`None`:
/// the default polynomial decay).
pub fn averaging_from(params: Option<&ControllerSpec>) -> Result<Averaging, SpecError> {
    let Some(p) = params else {
        return Ok(Averaging::PolyDecay {
            gamma: AVERAGE_GAMMA,
        });
    };
    p.only(&["gamma", "ema"])?;
    match (p.get_in("gamma", 0.0, 1e12)?, p.get_in("ema", 0.0, 1.0)?) {
        (Some(_), Some(_)) => Err(SpecError::new(
            &p.raw,
            "give `gamma` (polynomial decay) or `ema`, not both",
        )),
        (_, Some(decay)) if !(decay > 0.0 && decay < 1.0) => {
            Err(SpecError::new(&p.raw, "`ema` must be a decay in (0, 1)"))
        }
        (_, Some(decay)) => Ok(Averaging::Ema { decay }),
        (gamma, None) => Ok(Averaging::PolyDecay {
            gamma: gamma.unwrap_or(AVERAGE_GAMMA),
        }),
    }
}

/// Any controller with iterate averaging: it decides as the inner one does; validation and test
/// losses are measured at the averaged weights.
pub struct Averaged {
    spec: String,
    inner: Box<dyn Controller + Send>,
    average: Averaging,
}

impl Averaged {
    /// `inner` averaged; `spec` is the whole SPEC (`average(...)`), the controller's name.
    pub fn new(spec: &str, inner: Box<dyn Controller + Send>, average: Averaging) -> Self {
        Self {
            spec: spec.to_string(),
            inner,
            average,
        }
    }
}

impl Controller for Averaged {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.inner.reset(context);
    }

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        self.inner.decide(input)
    }

    fn reads_observation(&self) -> bool {
        self.inner.reads_observation()
    }

    fn reads_grad_cosine(&self) -> bool {
        self.inner.reads_grad_cosine()
    }

    fn method(&self) -> Method {
        Method {
            average: Some(self.average),
            ..self.inner.method()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Spec, build};

    #[test]
    fn specs_name_their_rule_with_the_references_defaults() {
        let method = |spec: &str| build(spec).unwrap().method();
        assert_eq!(
            method("dog").rule,
            StepRule::Dog {
                reps_rel: 1e-6,
                layerwise: false
            }
        );
        assert_eq!(
            method("ldog:reps_rel=1e-4").rule,
            StepRule::Dog {
                reps_rel: 1e-4,
                layerwise: true
            }
        );
        assert_eq!(
            method("schedule-free").rule,
            StepRule::ScheduleFree {
                beta: 0.9,
                warmup_fraction: SCHEDULE_FREE_WARMUP,
                weight_lr_power: 2.0
            }
        );
        assert_eq!(method("prodigy").rule, StepRule::Prodigy { d0: 1e-6 });
        assert_eq!(
            method("d-adapt:momentum=0.9").rule,
            StepRule::DAdaptSgd {
                d0: 1e-6,
                momentum: 0.9
            }
        );
        assert_eq!(method("cosine"), Method::INNER);
    }

    #[test]
    fn average_wraps_any_controller_and_keeps_its_decisions_and_name() {
        let avg = build("average(dog)").unwrap();
        assert_eq!(avg.spec(), "average(dog)");
        assert_eq!(
            avg.method(),
            Method {
                rule: StepRule::Dog {
                    reps_rel: 1e-6,
                    layerwise: false
                },
                average: Some(Averaging::PolyDecay { gamma: 8.0 }),
                lr_range_test: None,
            }
        );
        assert_eq!(
            build("average:ema=0.99(cosine:lr=0.1)").unwrap().method(),
            Method {
                rule: StepRule::Inner,
                average: Some(Averaging::Ema { decay: 0.99 }),
                lr_range_test: None,
            }
        );
        assert_eq!(
            build("average:gamma=2(constant)").unwrap().method().average,
            Some(Averaging::PolyDecay { gamma: 2.0 })
        );
        let guarded = Spec::parse("rollback(average(policy:policies/default))").unwrap();
        assert!(guarded.unguarded().1.is_some());
        assert_eq!(
            guarded.unguarded().0.policy_dir(),
            Some(std::path::Path::new("policies/default"))
        );
        for (bad, expected) in [
            ("average(rollback(dog))", "rollback(average(SPEC))"),
            ("average:ema=0.9,gamma=8(dog)", "not both"),
            ("average:ema=1(dog)", "(0, 1)"),
            ("average(warmup)", "unknown controller"),
            ("average:ema=0.9", "expected `average(SPEC)`"),
            ("schedule-free:beta=1", "(0, 1)"),
            ("dog:lr=1", "dog"),
            ("prodigy:d0=0", "`d0` must be greater than 0"),
            ("d-adapt:d0=-1", "d0=-1 must be at least 0"),
        ] {
            let err = build(bad).err().unwrap().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
