//! `constant[:lr=L,momentum=M]`: fixed hyperparameters for the whole run.

use hyperctl_schedule_env::{Controller, Decision, DecisionInput, EpisodeContext};
use hyperctl_tasks::Hyperparams;

use crate::spec::{ControllerSpec, SpecError};

/// The same learning rate and momentum every interval.
#[derive(Debug, Clone)]
pub struct Constant {
    spec: String,
    lr: Option<f64>,
    momentum: Option<f64>,
    chosen: Option<Hyperparams>,
}

impl Constant {
    /// From a parsed SPEC (`lr` ≥ 0 and `momentum` in [0, 1), each optional).
    pub fn from_spec(spec: &ControllerSpec) -> Result<Self, SpecError> {
        spec.only(&["lr", "momentum"])?;
        Ok(Self {
            spec: spec.raw.clone(),
            lr: spec.get_in("lr", 0.0, f64::MAX)?,
            momentum: spec.get_in("momentum", 0.0, 0.999_999)?,
            chosen: None,
        })
    }
}

impl Controller for Constant {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn reset(&mut self, context: &EpisodeContext) {
        self.chosen = Some(Hyperparams {
            lr: self.lr.unwrap_or(context.init.lr),
            momentum: self.momentum.unwrap_or(context.init.momentum),
        });
    }

    fn decide(&mut self, _input: &DecisionInput) -> Decision {
        Decision::Set(self.chosen.expect("reset should be called before decide"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_values_come_from_the_task() {
        let mut c =
            Constant::from_spec(&ControllerSpec::parse("constant:lr=0.3").unwrap()).unwrap();
        let init = Hyperparams {
            lr: 0.01,
            momentum: 0.5,
        };
        c.reset(&EpisodeContext {
            epochs: 3,
            init,
            steps_per_epoch: 10,
            steps_per_interval: 10,
        });
        let input = DecisionInput {
            interval: 0,
            obs: &[],
            last: None,
            current: init,
        };
        assert_eq!(
            c.decide(&input),
            Decision::Set(Hyperparams {
                lr: 0.3,
                momentum: 0.5
            })
        );
        let err =
            Constant::from_spec(&ControllerSpec::parse("constant:gamma=1").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("unknown parameter `gamma`"),
            "{err}"
        );
        let err = Constant::from_spec(&ControllerSpec::parse("constant:momentum=1.5").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
