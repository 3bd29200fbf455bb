//! `replay(NAME)`: an open-loop controller that plays back a fixed lr/momentum trajectory, used by
//! the replay ablation. If replaying a reactive controller's average trajectory does as well as
//! the controller itself, its benefit came from the schedule's shape, not from reacting.

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::Hyperparams;

/// Plays back one (lr, momentum) per interval; past the end it holds the last value.
#[derive(Debug, Clone)]
pub struct Replay {
    name: String,
    trajectory: Vec<Hyperparams>,
}

impl Replay {
    /// A replay named `name` (its SPEC in reports) of `trajectory` (at least one interval).
    pub fn new(name: impl Into<String>, trajectory: Vec<Hyperparams>) -> Self {
        assert!(
            !trajectory.is_empty(),
            "a replayed trajectory should have at least one interval"
        );
        Self {
            name: name.into(),
            trajectory,
        }
    }

    /// The mean trajectory of several runs: per interval, the geometric mean of the learning
    /// rates and the arithmetic mean of the momenta over the runs that reached that interval.
    pub fn mean_of(name: impl Into<String>, runs: &[(Vec<f64>, Vec<f64>)]) -> Option<Self> {
        let longest = runs
            .iter()
            .map(|(lr, _)| lr.len())
            .max()
            .filter(|&n| n > 0)?;
        let trajectory = (0..longest)
            .map(|t| {
                let at: Vec<(f64, f64)> = runs
                    .iter()
                    .filter(|(lr, m)| t < lr.len() && t < m.len())
                    .map(|(lr, m)| (lr[t], m[t]))
                    .collect();
                let n = at.len() as f64;
                Hyperparams {
                    lr: (at.iter().map(|(lr, _)| lr.max(1e-12).ln()).sum::<f64>() / n).exp(),
                    momentum: at.iter().map(|(_, m)| m).sum::<f64>() / n,
                }
            })
            .collect();
        Some(Self::new(name, trajectory))
    }
}

impl Controller for Replay {
    fn spec(&self) -> String {
        self.name.clone()
    }

    fn reset(&mut self, _context: &EpisodeContext) {}

    fn decide(&mut self, input: &DecisionInput) -> Decision {
        Decision::Set(self.trajectory[input.interval.min(self.trajectory.len() - 1)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_trajectory_is_geometric_in_lr_and_holds_its_last_value() {
        let runs = vec![(vec![0.1, 0.4], vec![0.0, 0.5]), (vec![0.4], vec![0.9])];
        let mut r = Replay::mean_of("replay(x)", &runs).unwrap();
        let decide = |r: &mut Replay, t| match r.decide(&DecisionInput {
            interval: t,
            obs: &[],
            last: None,
            current: Hyperparams {
                lr: 1.0,
                momentum: 0.0,
            },
        }) {
            Decision::Set(hp) => hp,
            Decision::Action(_) => unreachable!(),
        };
        let first = decide(&mut r, 0);
        assert!((first.lr - 0.2).abs() < 1e-12 && (first.momentum - 0.45).abs() < 1e-12);
        assert_eq!(
            decide(&mut r, 1),
            Hyperparams {
                lr: 0.4,
                momentum: 0.5
            }
        );
        assert_eq!(
            decide(&mut r, 7),
            Hyperparams {
                lr: 0.4,
                momentum: 0.5
            }
        );
        assert_eq!(r.spec(), "replay(x)");
    }
}
