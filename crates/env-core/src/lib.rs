//! Gymnasium-shaped reinforcement-learning API for hyperctl.
//!
//! An [`Env`] is reset with an optional seed and then stepped with continuous actions until an
//! episode ends, exactly as in Gymnasium: [`Env::reset`] returns `(obs, info)` and [`Env::step`]
//! returns a [`Step`] with `obs, reward, terminated, truncated, info`. `terminated` marks a terminal
//! state of the MDP (for hyperctl: a diverged training run); `truncated` marks a limit outside it
//! (the epoch budget). Observation and action spaces are declared as [`BoxSpace`]s, and every
//! observation an env returns lies inside its observation space.
//!
//! # Architecture invariants
//! - This crate knows nothing of burn, datasets, learning rates or files: no tensors, no I/O.
//! - [`Info`] carries diagnostics only; no learner may read it to choose actions.

#![warn(missing_docs)]

use std::collections::BTreeMap;

/// An observation: a flat vector of `f32` inside the env's observation space.
pub type Obs = Vec<f32>;

/// Diagnostics returned beside observations. Never an input to a learner.
pub type Info = BTreeMap<String, f64>;

/// An axis-aligned box `low[i] <= x[i] <= high[i]`, as Gymnasium's `spaces.Box`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxSpace {
    /// Lower bound of each dimension.
    pub low: Vec<f32>,
    /// Upper bound of each dimension.
    pub high: Vec<f32>,
}

/// Errors from constructing spaces.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpaceError {
    /// `low` and `high` differ in length.
    #[error("space bounds differ in length: low has {low}, high has {high}")]
    LengthMismatch {
        /// Length of `low`.
        low: usize,
        /// Length of `high`.
        high: usize,
    },
    /// A bound is not finite or `low > high`.
    #[error("space dimension {index} has invalid bounds [{low}, {high}]")]
    InvalidBounds {
        /// The dimension.
        index: usize,
        /// Its lower bound.
        low: f32,
        /// Its upper bound.
        high: f32,
    },
}

impl BoxSpace {
    /// A box from explicit bounds; every bound must be finite and `low <= high`.
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Result<Self, SpaceError> {
        if low.len() != high.len() {
            return Err(SpaceError::LengthMismatch {
                low: low.len(),
                high: high.len(),
            });
        }
        for (index, (&l, &h)) in low.iter().zip(&high).enumerate() {
            if !(l.is_finite() && h.is_finite() && l <= h) {
                return Err(SpaceError::InvalidBounds {
                    index,
                    low: l,
                    high: h,
                });
            }
        }
        Ok(Self { low, high })
    }

    /// The box `[low, high]^dim`.
    pub fn uniform(dim: usize, low: f32, high: f32) -> Result<Self, SpaceError> {
        Self::new(vec![low; dim], vec![high; dim])
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// True when `x` has the right length and every value is finite and inside its bounds.
    pub fn contains(&self, x: &[f32]) -> bool {
        x.len() == self.dim()
            && x.iter()
                .zip(self.low.iter().zip(&self.high))
                .all(|(&v, (&l, &h))| v.is_finite() && l <= v && v <= h)
    }

    /// Projects `x` into the box: clamps each value, maps NaN to the midpoint of its dimension.
    /// Panics if `x` has the wrong length, which is a programming error, not bad input.
    pub fn clip(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(
            x.len(),
            self.dim(),
            "vector length should match the space dimension"
        );
        x.iter()
            .zip(self.low.iter().zip(&self.high))
            .map(|(&v, (&l, &h))| {
                if v.is_nan() {
                    0.5 * (l + h)
                } else {
                    v.clamp(l, h)
                }
            })
            .collect()
    }
}

/// The result of one [`Env::step`], as Gymnasium's `(obs, reward, terminated, truncated, info)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The observation after the step (inside the observation space).
    pub obs: Obs,
    /// The reward for the transition.
    pub reward: f64,
    /// The episode reached a terminal state of the MDP (e.g. training diverged).
    pub terminated: bool,
    /// The episode was cut by a limit outside the MDP (e.g. the epoch budget).
    pub truncated: bool,
    /// Diagnostics only.
    pub info: Info,
}

impl Step {
    /// True when the episode is over for either reason.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A Gymnasium-shaped environment with box observations and box actions.
pub trait Env {
    /// The declared observation space; every returned observation lies inside it.
    fn observation_space(&self) -> &BoxSpace;

    /// The declared action space; actions outside it are clipped into it.
    fn action_space(&self) -> &BoxSpace;

    /// Starts a new episode. `Some(seed)` reseeds the env (call it once with a seed right after
    /// construction); `None` continues from the env's own random stream.
    fn reset(&mut self, seed: Option<u64>) -> (Obs, Info);

    /// Advances the episode by one decision. Calling it after the episode ended is a
    /// programming error; implementations may panic.
    fn step(&mut self, action: &[f32]) -> Step;
}

/// An [`Env`] whose state can be written down between steps and restored exactly, so that a
/// learner's checkpoint can hold its environments and a resumed run continues as if never stopped.
pub trait Resumable: Env {
    /// Everything needed to bring an env built the same way back to this moment.
    type Snapshot: serde::Serialize + serde::de::DeserializeOwned;

    /// The env's state now (between steps, after at least one reset).
    fn snapshot(&self) -> Self::Snapshot;

    /// Restores a state taken by [`Resumable::snapshot`] on an env built the same way and returns
    /// the observation of that moment. A snapshot that does not fit this env (other tasks, other
    /// code) is an error naming what differed, never a silent fresh start.
    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<Obs, String>;
}

/// A batch of environments stepped together, Gymnasium's `VectorEnv` with same-step autoreset:
/// an env whose episode ends in a step is reset in that step, and its new episode's first
/// observation comes back beside the final step. The envs may live in this process (on threads)
/// or in worker processes; either way env `i`'s results depend only on env `i`'s history, and
/// they come back in env order.
///
/// Methods fail only when an env cannot be reached (a worker process lost for good); after an
/// error the batch is in an unknown state and the learner must stop (and resume from its last
/// checkpoint).
pub trait VecEnv {
    /// Number of envs.
    fn num_envs(&self) -> usize;

    /// The observation space every env shares.
    fn observation_space(&self) -> &BoxSpace;

    /// The action space every env shares.
    fn action_space(&self) -> &BoxSpace;

    /// Resets env `i` with `seeds[i]` (one seed per env) and returns the first observations.
    fn reset_each(&mut self, seeds: &[u64]) -> Result<Vec<Obs>, String>;

    /// Steps env `i` with `actions[i]`; an env whose episode ended is reset (unseeded) and its new
    /// first observation returned beside the step.
    fn step_each(&mut self, actions: &[Vec<f32>]) -> Result<Vec<(Step, Option<Obs>)>, String>;
}

/// A slice of envs as a [`VecEnv`], stepped on up to `threads` threads (each env on one).
pub struct ThreadedEnvs<'a, E> {
    envs: &'a mut [E],
    threads: usize,
}

impl<'a, E: Env> ThreadedEnvs<'a, E> {
    /// `envs` (at least one) stepped on up to `threads` threads.
    pub fn new(envs: &'a mut [E], threads: usize) -> Self {
        assert!(!envs.is_empty(), "a vector env needs at least one env");
        Self { envs, threads }
    }
}

impl<E> ThreadedEnvs<'_, E> {
    /// The threads it steps on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The envs.
    pub fn envs_mut(&mut self) -> &mut [E] {
        self.envs
    }
}

impl<E: Env + Send> VecEnv for ThreadedEnvs<'_, E> {
    fn num_envs(&self) -> usize {
        self.envs.len()
    }

    fn observation_space(&self) -> &BoxSpace {
        self.envs[0].observation_space()
    }

    fn action_space(&self) -> &BoxSpace {
        self.envs[0].action_space()
    }

    fn reset_each(&mut self, seeds: &[u64]) -> Result<Vec<Obs>, String> {
        assert_eq!(seeds.len(), self.envs.len(), "one seed per env");
        Ok(self
            .envs
            .iter_mut()
            .zip(seeds)
            .map(|(env, &seed)| env.reset(Some(seed)).0)
            .collect())
    }

    fn step_each(&mut self, actions: &[Vec<f32>]) -> Result<Vec<(Step, Option<Obs>)>, String> {
        assert_eq!(actions.len(), self.envs.len(), "one action per env");
        // An env whose episode ended is reset on its own thread too (a reset can be costly).
        Ok(hyperctl_pool::map_mut(self.envs, self.threads, |i, env| {
            let step = env.step(&actions[i]);
            let reset = step.done().then(|| env.reset(None).0);
            (step, reset)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_space_rejects_inverted_or_nonfinite_bounds() {
        assert_eq!(
            BoxSpace::new(vec![0.0, 1.0], vec![1.0, 0.0]),
            Err(SpaceError::InvalidBounds {
                index: 1,
                low: 1.0,
                high: 0.0
            })
        );
        assert!(BoxSpace::new(vec![f32::NAN], vec![1.0]).is_err());
        assert_eq!(
            BoxSpace::new(vec![0.0], vec![1.0, 2.0]),
            Err(SpaceError::LengthMismatch { low: 1, high: 2 })
        );
    }

    #[test]
    fn clip_projects_into_the_box_and_contains_agrees() {
        let space = BoxSpace::uniform(3, -1.0, 1.0).unwrap();
        let clipped = space.clip(&[2.0, f32::NAN, f32::NEG_INFINITY]);
        assert_eq!(clipped, vec![1.0, 0.0, -1.0]);
        assert!(space.contains(&clipped));
        assert!(!space.contains(&[0.0, 0.0]));
        assert!(!space.contains(&[0.0, 0.0, f32::NAN]));
        assert!(!space.contains(&[0.0, 0.0, 1.5]));
    }
}
