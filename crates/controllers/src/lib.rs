//! Controller implementations and their SPEC strings (`name[:key=value,...]`).
//!
//! | SPEC | controller |
//! |---|---|
//! | `constant[:lr=L,momentum=M]` | the same lr and momentum every interval; each left out starts from (and stays at) the task's initial value |
//! | `step`, `exponential`, `cosine`, `warmup-cosine`, `onecycle` | fixed schedules with PyTorch semantics ([`schedules`]) |
//! | `plateau`, `simple-reactive`, `hypergradient` | reactive heuristics ([`reactive`]) |
//! | `policy:DIR` | a learned policy loaded from its folder ([`policy`]), acting with its mean action |
//! | `replay(NAME)` | open-loop playback of another controller's mean trajectory ([`replay`]; built by `compare --replay`, not from a SPEC) |
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
pub mod policy;
pub mod reactive;
pub mod replay;
pub mod schedules;
pub mod spec;

pub use constant::Constant;
pub use policy::{PolicyController, PolicyFolder};
pub use reactive::Reactive;
pub use replay::Replay;
pub use schedules::Schedule;
pub use spec::{ControllerSpec, SpecError};

use hyperctl_schedule_env::Controller;

/// Builds the controller a SPEC string names.
pub fn build(spec: &str) -> Result<Box<dyn Controller + Send>, SpecError> {
    if let Some(dir) = spec.strip_prefix("policy:") {
        return PolicyController::load(spec, std::path::Path::new(dir))
            .map(|c| Box::new(c) as Box<dyn Controller + Send>)
            .map_err(|e| SpecError::new(spec, e.to_string()));
    }
    let parsed = ControllerSpec::parse(spec)?;
    match parsed.name.as_str() {
        "constant" => Ok(Box::new(Constant::from_spec(&parsed)?)),
        "step" | "exponential" | "cosine" | "warmup-cosine" | "onecycle" => {
            Ok(Box::new(Schedule::from_spec(&parsed)?))
        }
        "plateau" | "simple-reactive" | "hypergradient" => {
            Ok(Box::new(Reactive::from_spec(&parsed)?))
        }
        other => Err(SpecError::new(
            spec,
            format!(
                "unknown controller `{other}`; expected one of: {}",
                KNOWN.join(", ")
            ),
        )),
    }
}

/// Checks that a SPEC fits the env settings it will run under: a `policy:DIR` must have been
/// trained under the same action mapping and bounds (`env`), or its actions would mean something
/// else. Other controllers fit any settings.
pub fn check_env(spec: &str, env: &hyperctl_schedule_env::EnvConfig) -> Result<(), SpecError> {
    if !spec.starts_with("policy:") {
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
    let Some(dir) = spec.strip_prefix("policy:") else {
        return Ok(hyperctl_schedule_env::EnvConfig::defaults());
    };
    let folder = PolicyFolder::load(std::path::Path::new(dir))
        .map_err(|e| SpecError::new(spec, e.to_string()))?;
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
];
