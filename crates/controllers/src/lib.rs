//! Controller implementations and their SPEC strings (`name[:key=value,...]`).
//!
//! | SPEC | controller |
//! |---|---|
//! | `constant[:lr=L,momentum=M]` | the same lr and momentum every interval; each left out starts from (and stays at) the task's initial value |
//! | `step`, `exponential`, `cosine`, `warmup-cosine`, `onecycle` | fixed schedules with PyTorch semantics ([`schedules`]) |
//! | `plateau`, `simple-reactive`, `hypergradient` | reactive heuristics ([`reactive`]) |
//! | `policy:DIR` | a learned policy loaded from its folder ([`policy`]), acting with its mean action |
//! | `open-loop:FILE` | a task-agnostic open-loop schedule per start-lr decade, read from a JSON file ([`open_loop`]; issue 19's task-agnostic replay) |
//! | `dog`, `ldog`, `schedule-free`, `prodigy`, `d-adapt`, `lr-range-test` | parameter-free methods: the trainer's step rule in place of the inner optimizer ([`param_free`]) |
//! | `average[:gamma=G\|:ema=D](SPEC)` | SPEC, evaluated at averaged weights ([`param_free::Averaged`]) |
//! | `rollback(SPEC)` | SPEC under the deployment guard ([`hyperctl_schedule_env::Rollback::DEPLOYED`]) |
//! | `replay(NAME)` | open-loop playback of another controller's mean trajectory ([`replay`]; built by `compare --replay`, not from a SPEC) |
//!
//! A SPEC string is parsed once into a [`Spec`]; the string itself stays the controller's name
//! in every result.
//!
//! Every controller implements [`hyperctl_schedule_env::Controller`] and runs through
//! [`hyperctl_schedule_env::run_schedule`], like the learned policy.
//!
//! # Architecture invariants
//! - Controllers choose hyperparameters only through [`Decision`](hyperctl_schedule_env::Decision);
//!   bounds, rewards and divergence are the env's.
//! - A SPEC prints back as given (`spec()`), so results name controllers exactly as users wrote them.

#![warn(missing_docs)]

pub mod constant;
pub mod param_free;
/// `policy:DIR` (the folder and its controller live in `hyperctl-decide`, without burn).
pub use hyperctl_decide::folder as policy;
pub mod open_loop;
pub mod reactive;
pub mod replay;
pub mod schedules;
pub mod spec;

pub use constant::Constant;
pub use open_loop::OpenLoop;
pub use param_free::{Averaged, ParameterFree};
pub use policy::{PolicyController, PolicyFolder};
pub use reactive::Reactive;
pub use replay::Replay;
pub use schedules::Schedule;
pub use spec::{ControllerSpec, SpecError};

use std::path::{Path, PathBuf};

use hyperctl_schedule_env::{Controller, Rollback};

/// A controller SPEC, parsed once: what every command and library takes apart from the string.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A fixed schedule (`constant`, `step`, `exponential`, `cosine`, `warmup-cosine`,
    /// `onecycle`) with its parameters.
    Schedule(ControllerSpec),
    /// A reactive heuristic (`plateau`, `simple-reactive`, `hypergradient`).
    Reactive(ControllerSpec),
    /// `policy:DIR`: a learned policy's folder.
    Policy(PathBuf),
    /// `open-loop:FILE`: a task-agnostic open-loop schedule per start decade ([`open_loop`]).
    OpenLoop(PathBuf),
    /// A parameter-free method (`dog`, `ldog`, `schedule-free`, `prodigy`, `d-adapt`).
    ParameterFree(ControllerSpec),
    /// `average[:PARAMS](SPEC)`: SPEC with iterate averaging.
    Average(hyperctl_tasks::Averaging, Box<Spec>),
    /// `rollback(SPEC)`: SPEC under the deployment guard ([`Rollback::DEPLOYED`]).
    Rollback(Box<Spec>),
    /// `replay(SPEC)`: open-loop playback of SPEC's mean trajectory (its trajectories come from
    /// a comparison, so it cannot be built from the SPEC alone).
    Replay(Box<Spec>),
}

/// The text inside `WRAPPER(...)` (`wrapped("rollback(cosine)", "rollback")` is `cosine`).
fn wrapped<'s>(spec: &'s str, wrapper: &str) -> Option<&'s str> {
    spec.strip_prefix(wrapper)
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.strip_suffix(')'))
}

/// A SPEC string without its guard, and the guard: `rollback(SPEC)` → (`SPEC`, the deployed
/// guard); anything else comes back as it is, unguarded. The text counterpart of
/// [`Spec::unguarded`], for callers that keep the string (a controller's name is its SPEC).
pub fn unguarded_text(spec: &str) -> (&str, Option<Rollback>) {
    match wrapped(spec, "rollback") {
        Some(inner) if Spec::parse(inner).is_ok() => (inner, Some(Rollback::DEPLOYED)),
        _ => (spec, None),
    }
}

impl Spec {
    /// Parses a SPEC string (see the crate docs); the error names the SPEC and what was expected.
    pub fn parse(spec: &str) -> Result<Self, SpecError> {
        if let Some(inner) = wrapped(spec, "rollback") {
            return Ok(Spec::Rollback(Box::new(Spec::parse(inner)?)));
        }
        if let Some(inner) = wrapped(spec, "replay") {
            return Ok(Spec::Replay(Box::new(Spec::parse(inner)?)));
        }
        if let Some(rest) = spec.strip_prefix("average")
            && (rest.starts_with('(') || rest.starts_with(':'))
        {
            let (head, inner) = match (rest.find('('), rest.strip_suffix(')')) {
                (Some(open), Some(body)) => (&rest[..open], &body[open + 1..]),
                _ => {
                    return Err(SpecError::new(
                        spec,
                        "expected `average(SPEC)` or `average:gamma=G(SPEC)` / `average:ema=D(SPEC)`",
                    ));
                }
            };
            let params = match head.strip_prefix(':') {
                Some(_) => Some(ControllerSpec::parse(&format!("average{head}"))?),
                None => None,
            };
            let averaging = param_free::averaging_from(params.as_ref())?;
            let inner_spec = Spec::parse(inner)?;
            if matches!(inner_spec, Spec::Rollback(_) | Spec::Average(..)) {
                return Err(SpecError::new(
                    spec,
                    "the guard and averaging go outside in, once each: write `rollback(average(SPEC))`",
                ));
            }
            return Ok(Spec::Average(averaging, Box::new(inner_spec)));
        }
        if let Some(dir) = spec.strip_prefix("policy:") {
            if dir.is_empty() {
                return Err(SpecError::new(
                    spec,
                    "expected `policy:DIR`, a policy folder",
                ));
            }
            return Ok(Spec::Policy(PathBuf::from(dir)));
        }
        if let Some(file) = spec.strip_prefix("open-loop:") {
            if file.is_empty() {
                return Err(SpecError::new(
                    spec,
                    "expected `open-loop:FILE`, a `hyperctl-open-loop/1` JSON file",
                ));
            }
            return Ok(Spec::OpenLoop(PathBuf::from(file)));
        }
        let parsed = ControllerSpec::parse(spec)?;
        match parsed.name.as_str() {
            "constant" | "step" | "exponential" | "cosine" | "warmup-cosine" | "onecycle" => {
                Ok(Spec::Schedule(parsed))
            }
            "plateau" | "simple-reactive" | "hypergradient" => Ok(Spec::Reactive(parsed)),
            "dog" | "ldog" | "schedule-free" | "prodigy" | "d-adapt" => {
                ParameterFree::from_spec(&parsed)?;
                Ok(Spec::ParameterFree(parsed))
            }
            "lr-range-test" => {
                param_free::LrRangeTestThenOneCycle::from_spec(&parsed)?;
                Ok(Spec::ParameterFree(parsed))
            }
            other => Err(SpecError::new(
                spec,
                format!(
                    "unknown controller `{other}`; expected one of: {}, rollback(SPEC)",
                    KNOWN.join(", ")
                ),
            )),
        }
    }

    /// The SPEC without its guard, and the guard (`rollback(SPEC)` → SPEC, the deployed guard).
    pub fn unguarded(&self) -> (&Spec, Option<Rollback>) {
        match self {
            Spec::Rollback(inner) => (inner, Some(Rollback::DEPLOYED)),
            other => (other, None),
        }
    }

    /// The policy folder, for `policy:DIR` (also inside `average(...)`).
    pub fn policy_dir(&self) -> Option<&Path> {
        match self {
            Spec::Policy(dir) => Some(dir),
            Spec::Average(_, inner) => inner.policy_dir(),
            _ => None,
        }
    }

    /// Whether the SPEC has a learning rate to tune (fixed schedules and reactive heuristics).
    pub fn is_tunable(&self) -> bool {
        matches!(self, Spec::Schedule(_) | Spec::Reactive(_))
    }

    /// Builds the controller (the guard of `rollback(SPEC)` is the caller's: see
    /// [`Spec::unguarded`]). `spec` is the string it was parsed from, which the controller
    /// reports as its name.
    pub fn build(&self, spec: &str) -> Result<Box<dyn Controller + Send>, SpecError> {
        match self {
            Spec::Schedule(p) if p.name == "constant" => Ok(Box::new(Constant::from_spec(p)?)),
            Spec::Schedule(p) => Ok(Box::new(Schedule::from_spec(p)?)),
            Spec::Reactive(p) => Ok(Box::new(Reactive::from_spec(p)?)),
            Spec::Policy(dir) => PolicyController::load(spec, dir)
                .map(|c| Box::new(c) as Box<dyn Controller + Send>)
                .map_err(|e| SpecError::new(spec, e.to_string())),
            Spec::OpenLoop(file) => OpenLoop::load(spec, file)
                .map(|c| Box::new(c) as Box<dyn Controller + Send>)
                .map_err(|e| SpecError::new(spec, e)),
            Spec::Rollback(inner) => inner.build(unguarded_text(spec).0),
            Spec::ParameterFree(p) if p.name == "lr-range-test" => {
                Ok(Box::new(param_free::LrRangeTestThenOneCycle::from_spec(p)?))
            }
            Spec::ParameterFree(p) => Ok(Box::new(ParameterFree::from_spec(p)?)),
            Spec::Average(averaging, inner) => {
                let inner_text = spec
                    .find('(')
                    .and_then(|open| spec[open + 1..].strip_suffix(')'))
                    .ok_or_else(|| SpecError::new(spec, "expected `average(SPEC)`"))?;
                Ok(Box::new(Averaged::new(
                    spec,
                    inner.build(inner_text)?,
                    *averaging,
                )))
            }
            Spec::Replay(_) => Err(SpecError::new(
                spec,
                "replay(SPEC) plays back a comparison's trajectories: use `compare --replay SPEC`",
            )),
        }
    }
}

/// Builds the controller a SPEC string names (its guard, for `rollback(SPEC)`, is the caller's).
pub fn build(spec: &str) -> Result<Box<dyn Controller + Send>, SpecError> {
    Spec::parse(spec)?.build(spec)
}

/// Checks that a SPEC can drive a task's inner optimizer: a `policy:DIR` only the one it was
/// trained with (its `config.json` says which; its momentum action is SGD's momentum or AdamW's
/// beta1, not both). Other controllers drive either.
pub fn check_optimizer(
    spec: &str,
    optimizer: hyperctl_tasks::OptimizerKind,
) -> Result<(), SpecError> {
    let parsed = Spec::parse(spec)?;
    let Some(dir) = parsed.unguarded().0.policy_dir() else {
        return Ok(());
    };
    let folder = PolicyFolder::load(dir).map_err(|e| SpecError::new(spec, e.to_string()))?;
    let trained = folder
        .config
        .trained_optimizer()
        .map_err(|e| SpecError::new(spec, format!("{}: {e}", dir.display())))?;
    if trained != optimizer {
        return Err(SpecError::new(
            spec,
            format!(
                "the policy was trained driving {trained}, and this task's optimizer is {optimizer}: \
                 its momentum actions would mean something else"
            ),
        ));
    }
    Ok(())
}

/// Checks that a SPEC fits the env settings it will run under: a `policy:DIR` must have been
/// trained under the same action mapping and bounds (`env`), or its actions would mean something
/// else. Other controllers fit any settings.
pub fn check_env(spec: &str, env: &hyperctl_schedule_env::EnvConfig) -> Result<(), SpecError> {
    if Spec::parse(spec)?.unguarded().0.policy_dir().is_none() {
        return Ok(());
    }
    let trained = default_env(spec)?;
    if trained != *env {
        return Err(SpecError::new(
            spec,
            format!(
                "the policy was trained under env settings {trained:?} but would run under {env:?}; \
                 use the env config it was trained with"
            ),
        ));
    }
    Ok(())
}

/// The env settings a SPEC runs under by default: for a `policy:DIR`, the settings it was trained
/// under (its actions only mean something under its own action mapping); otherwise the defaults.
pub fn default_env(spec: &str) -> Result<hyperctl_schedule_env::EnvConfig, SpecError> {
    let parsed = Spec::parse(spec)?;
    let Some(dir) = parsed.unguarded().0.policy_dir() else {
        return Ok(hyperctl_schedule_env::EnvConfig::defaults());
    };
    let folder = PolicyFolder::load(dir).map_err(|e| SpecError::new(spec, e.to_string()))?;
    Ok(folder.config.action_mapping.env)
}

/// The controller names [`build`] knows.
pub const KNOWN: &[&str] = &[
    "constant",
    "step",
    "exponential",
    "cosine",
    "warmup-cosine",
    "onecycle",
    "plateau",
    "simple-reactive",
    "hypergradient",
    "policy:DIR",
    "open-loop:FILE",
    "dog",
    "ldog",
    "schedule-free",
    "prodigy",
    "d-adapt",
    "lr-range-test",
    "average(SPEC)",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_once_into_their_kind_with_the_guard_and_policy_folder_explicit() {
        assert!(
            matches!(Spec::parse("cosine:lr=0.1").unwrap(), Spec::Schedule(p) if p.name == "cosine")
        );
        assert!(matches!(Spec::parse("plateau").unwrap(), Spec::Reactive(_)));
        let guarded = Spec::parse("rollback(policy:policies/default)").unwrap();
        let (inner, guard) = guarded.unguarded();
        assert_eq!(guard, Some(Rollback::DEPLOYED));
        assert_eq!(inner.policy_dir(), Some(Path::new("policies/default")));
        assert!(!inner.is_tunable() && Spec::parse("step").unwrap().is_tunable());
        assert!(matches!(
            Spec::parse("replay(constant)").unwrap(),
            Spec::Replay(_)
        ));
        assert_eq!(
            build("rollback(constant:lr=0.1)").unwrap().spec(),
            "constant:lr=0.1",
            "the guard is the caller's; the controller is the inner SPEC"
        );
        for (bad, expected) in [
            ("rollback(warmup)", "unknown controller `warmup`"),
            ("rollback(", "expected `name"),
            ("policy:", "a policy folder"),
            ("replay(constant)", "compare --replay"),
        ] {
            let err = build(bad).err().unwrap().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn a_policy_runs_only_under_the_env_settings_it_was_trained_with() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
        let spec = format!("policy:{}", dir.display());
        let trained = default_env(&spec).unwrap();
        check_env(&spec, &trained).unwrap();
        let other = hyperctl_schedule_env::EnvConfig {
            lr_log2_step: trained.lr_log2_step + 0.5,
            ..trained
        };
        let err = check_env(&spec, &other).unwrap_err().to_string();
        assert!(err.contains("trained under env settings"), "{err}");
        // The shipped policy drove SGD: an AdamW task is refused, wrappers or not.
        check_optimizer(&spec, hyperctl_tasks::OptimizerKind::Sgd).unwrap();
        let err = check_optimizer(
            &format!("average({spec})"),
            hyperctl_tasks::OptimizerKind::Adamw,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("trained driving sgd"), "{err}");
        check_optimizer("dog", hyperctl_tasks::OptimizerKind::Adamw).unwrap();
        let err = build("policy:/no/such/folder").err().unwrap().to_string();
        assert!(
            err.contains("/no/such/folder") && err.contains("is not a folder"),
            "{err}"
        );
    }
}
