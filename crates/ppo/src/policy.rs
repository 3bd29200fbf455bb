//! [`Policy`]: a trained agent's deterministic policy as plain host data: the observation
//! normalizer and the actor's mean network. It acts without burn (a few microseconds per decision),
//! serializes with serde, and gives the same numbers wherever it runs.

use crate::RunningMeanStd;

/// A dense layer `y = x W + b` with `W` stored row-major `[inputs][outputs]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `inputs × outputs` weights, row-major.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// The deterministic policy: `tanh` MLP over normalized observations, returning the Gaussian's
/// mean (the action before the environment clips it into its space).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Observation statistics: `(obs − mean) / √(var + 1e-8)`, clipped to ±10; `None` when the
    /// agent was trained on raw observations.
    pub obs_norm: Option<RunningMeanStd>,
    /// The actor's layers; `tanh` between them, none after the last.
    pub layers: Vec<Dense>,
    /// The learned log-std of the Gaussian at the time of export (information only).
    pub log_std: Vec<f32>,
}

impl Policy {
    /// Observation width.
    pub fn obs_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// Action width.
    pub fn act_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Checks shapes and finiteness; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() {
            return Err("the policy has no layers".into());
        }
        for (k, l) in self.layers.iter().enumerate() {
            if l.inputs == 0 || l.outputs == 0 {
                return Err(format!("layer {k} has a zero width"));
            }
            if l.weight.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
                return Err(format!(
                    "layer {k} declares {}x{} but holds {} weights and {} biases",
                    l.inputs,
                    l.outputs,
                    l.weight.len(),
                    l.bias.len()
                ));
            }
            if k > 0 && self.layers[k - 1].outputs != l.inputs {
                return Err(format!(
                    "layer {k} takes {} inputs but layer {} gives {}",
                    l.inputs,
                    k - 1,
                    self.layers[k - 1].outputs
                ));
            }
            if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
                return Err(format!("layer {k} holds a non-finite value"));
            }
        }
        if let Some(n) = &self.obs_norm {
            let d = self.obs_dim();
            if n.mean.len() != d || n.var.len() != d {
                return Err(format!(
                    "the normalizer has {} means and {} variances for {d} inputs",
                    n.mean.len(),
                    n.var.len()
                ));
            }
            if n.mean.iter().chain(&n.var).any(|v| !v.is_finite()) || n.var.iter().any(|&v| v < 0.0)
            {
                return Err("the normalizer holds a non-finite mean or a negative variance".into());
            }
        }
        Ok(())
    }

    /// The mean action for a raw observation of width [`Policy::obs_dim`].
    pub fn act(&self, obs: &[f32]) -> Vec<f32> {
        assert_eq!(obs.len(), self.obs_dim(), "observation width");
        let mut x = match &self.obs_norm {
            Some(n) => n.normalize(obs),
            None => obs.to_vec(),
        };
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            let mut y = l.bias.clone();
            for (i, &xi) in x.iter().enumerate() {
                let row = &l.weight[i * l.outputs..(i + 1) * l.outputs];
                y.iter_mut().zip(row).for_each(|(yj, &w)| *yj += xi * w);
            }
            if k < last {
                y.iter_mut().for_each(|v| *v = v.tanh());
            }
            x = y;
        }
        x
    }
}
