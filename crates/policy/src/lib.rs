//! [`Policy`]: a trained agent's deterministic policy as plain host data: the observation
//! normalizer and the actor's mean network. It acts without burn (a few microseconds per decision,
//! on `ndarray`), serializes with serde, and gives the same numbers wherever it runs: the forward
//! pass accumulates `b + Σᵢ xᵢ·Wᵢ` input by input (`scaled_add`, no fused or blocked kernel), so
//! its bits do not depend on the machine's SIMD width or a BLAS.

//!
//! # Architecture invariants
//! - Knows observations and actions only: nothing of learning rates, training or burn. PPO exports
//!   it (`hyperctl-ppo`), the decision path runs it (`hyperctl-decide`).

#![warn(missing_docs)]

use ndarray::{Array1, ArrayView1, ArrayView2};

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

impl Dense {
    /// The weights as an `inputs × outputs` matrix view.
    pub fn weights(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.inputs, self.outputs), &self.weight)
            .expect("a validated layer holds inputs × outputs weights")
    }

    /// `b + x W`, accumulated input by input.
    pub fn forward(&self, x: ArrayView1<f32>) -> Array1<f32> {
        let mut y = ArrayView1::from(&self.bias[..]).to_owned();
        for (&xi, row) in x.iter().zip(self.weights().rows()) {
            y.scaled_add(xi, &row);
        }
        y
    }
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
        let mut x: Array1<f32> = match &self.obs_norm {
            Some(n) => Array1::from(n.normalize(obs)),
            None => ArrayView1::from(obs).to_owned(),
        };
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            let mut y = l.forward(x.view());
            if k < last {
                y.mapv_inplace(f32::tanh);
            }
            x = y;
        }
        x.to_vec()
    }
}

/// Running mean and variance (parallel Welford), as Gymnasium's `RunningMeanStd`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningMeanStd {
    /// Per-dimension mean.
    pub mean: Vec<f64>,
    /// Per-dimension variance.
    pub var: Vec<f64>,
    /// Observations seen (starts at 1e-4 as in Gymnasium).
    pub count: f64,
}

impl RunningMeanStd {
    /// Fresh statistics for `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: 1e-4,
        }
    }

    /// Folds in a batch of observations.
    pub fn update(&mut self, batch: &[Vec<f32>]) {
        let n = batch.len() as f64;
        if n == 0.0 {
            return;
        }
        for d in 0..self.mean.len() {
            let bm = batch.iter().map(|o| o[d] as f64).sum::<f64>() / n;
            let bv = batch
                .iter()
                .map(|o| (o[d] as f64 - bm).powi(2))
                .sum::<f64>()
                / n;
            let delta = bm - self.mean[d];
            let total = self.count + n;
            self.mean[d] += delta * n / total;
            let m2 = self.var[d] * self.count + bv * n + delta * delta * self.count * n / total;
            self.var[d] = m2 / total;
        }
        self.count += n;
    }

    /// (obs − mean) / √(var + 1e-8), clipped to ±10.
    pub fn normalize(&self, obs: &[f32]) -> Vec<f32> {
        let obs = ArrayView1::from(obs).mapv(f64::from);
        let (mean, var) = (
            ArrayView1::from(&self.mean[..]),
            ArrayView1::from(&self.var[..]),
        );
        let z = (&obs - &mean) / var.mapv(|v| (v + 1e-8).sqrt());
        z.iter().map(|v| v.clamp(-10.0, 10.0) as f32).collect()
    }
}
