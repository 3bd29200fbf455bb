//! Small models: MLPs for flat inputs and a small CNN for images.
//!
//! Model specs: `mlp:WIDTHxDEPTH[:ACT]` (DEPTH hidden layers of WIDTH units; ACT is `relu`
//! (default), `tanh` or `gelu`), `linear` (no hidden layer), and `cnn:small`
//! (conv3×3·16 → ReLU → maxpool2 → conv3×3·32 → ReLU → maxpool2 → linear; images of side ≥ 10).
//!
//! Parameters are initialised on the host from a seeded ChaCha RNG with PyTorch's default
//! scheme (weights and biases ~ U(−1/√fan_in, 1/√fan_in)), so initialisation is identical on every
//! backend and independent of any global RNG.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kernels::{DenseAct, conv3x3, dense, max_pool2};
use crate::{Error, Result};

/// Hidden-layer nonlinearity of an MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// GELU (erf form).
    Gelu,
}

impl Activation {
    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::Tanh => crate::kernels::tanh(x),
            Activation::Gelu => burn::tensor::activation::gelu(x),
        }
    }

    /// Its name in model specs (`relu`, `tanh`, `gelu`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }
}

/// An architecture, as written in a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSpec {
    /// `depth` hidden layers of `width` units (`depth = 0`: a linear model).
    Mlp {
        /// Units per hidden layer.
        width: usize,
        /// Number of hidden layers.
        depth: usize,
        /// Hidden nonlinearity.
        activation: Activation,
    },
    /// The small CNN for one- or few-channel images.
    CnnSmall,
}

impl ModelSpec {
    /// Parses `mlp:WxD[:act]`, `linear` or `cnn:small`.
    pub fn parse(spec: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidModel {
            spec: spec.into(),
            reason: reason.into(),
        };
        match spec {
            "linear" => {
                return Ok(ModelSpec::Mlp {
                    width: 0,
                    depth: 0,
                    activation: Activation::Relu,
                });
            }
            "cnn:small" => return Ok(ModelSpec::CnnSmall),
            _ => {}
        }
        let Some(rest) = spec.strip_prefix("mlp:") else {
            return Err(invalid(
                "expected `mlp:WIDTHxDEPTH[:relu|tanh|gelu]`, `linear` or `cnn:small`",
            ));
        };
        let (shape, act) = rest.split_once(':').unwrap_or((rest, "relu"));
        let activation = match act {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu,
            other => {
                return Err(invalid(&format!(
                    "unknown activation `{other}`; expected relu, tanh or gelu"
                )));
            }
        };
        let (w, d) = shape
            .split_once('x')
            .ok_or_else(|| invalid("expected WIDTHxDEPTH, e.g. mlp:64x2"))?;
        let width: usize = w
            .parse()
            .map_err(|_| invalid(&format!("width `{w}` is not a whole number")))?;
        let depth: usize = d
            .parse()
            .map_err(|_| invalid(&format!("depth `{d}` is not a whole number")))?;
        if depth > 0 && !(1..=65_536).contains(&width) {
            return Err(invalid("width must be in 1..=65536"));
        }
        if depth > 64 {
            return Err(invalid("depth must be at most 64"));
        }
        Ok(ModelSpec::Mlp {
            width,
            depth,
            activation,
        })
    }

    /// Builds the model for inputs of `n_features` (images: `image_shape`) and `n_outputs` outputs,
    /// with parameters drawn from `seed`, on `device` (give the autodiff device to train).
    pub fn init(
        &self,
        n_features: usize,
        image_shape: Option<[usize; 3]>,
        n_outputs: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Net> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1217_1a11_2e00);
        match *self {
            ModelSpec::Mlp {
                width,
                depth,
                activation,
            } => {
                let mut hidden = Vec::with_capacity(depth);
                let mut fan_in = n_features;
                for _ in 0..depth {
                    hidden.push(linear(fan_in, width, &mut rng, device));
                    fan_in = width;
                }
                let output = linear(fan_in, n_outputs, &mut rng, device);
                Ok(Net::Mlp(Mlp {
                    hidden,
                    output,
                    activation,
                }))
            }
            ModelSpec::CnnSmall => {
                let invalid = |reason: String| Error::InvalidModel {
                    spec: self.to_string(),
                    reason,
                };
                let [c, h, w] = image_shape.ok_or_else(|| {
                    invalid(format!("needs image data (a `[c, h, w]` shape); this dataset has {n_features} flat features"))
                })?;
                if h < 10 || w < 10 {
                    return Err(invalid(format!(
                        "needs images of side at least 10, got {h}x{w}"
                    )));
                }
                let out_side = |s: usize| ((s - 2) / 2 - 2) / 2;
                let flat = 32 * out_side(h) * out_side(w);
                Ok(Net::Cnn(Cnn {
                    conv1: init_conv3x3(c, 16, &mut rng, device),
                    conv2: init_conv3x3(16, 32, &mut rng, device),
                    fc: linear(flat, n_outputs, &mut rng, device),
                    input_shape: [c, h, w],
                }))
            }
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Mlp { depth: 0, .. } => write!(f, "linear"),
            ModelSpec::Mlp {
                width,
                depth,
                activation: Activation::Relu,
            } => write!(f, "mlp:{width}x{depth}"),
            ModelSpec::Mlp {
                width,
                depth,
                activation,
            } => write!(f, "mlp:{width}x{depth}:{}", activation.name()),
            ModelSpec::CnnSmall => write!(f, "cnn:small"),
        }
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn uniform(n: usize, bound: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

fn linear(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f32).sqrt();
    // Zeros: the parameters are replaced at once, so burn's own initializer would be wasted work.
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device);
    layer.weight = Param::from_data(
        TensorData::new(uniform(d_in * d_out, bound, rng), [d_in, d_out]),
        device,
    );
    layer.bias = Some(Param::from_data(
        TensorData::new(uniform(d_out, bound, rng), [d_out]),
        device,
    ));
    layer
}

fn init_conv3x3(c_in: usize, c_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Conv2d {
    let bound = 1.0 / ((c_in * 9) as f32).sqrt();
    let mut layer = Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_initializer(Initializer::Zeros)
        .init(device);
    layer.weight = Param::from_data(
        TensorData::new(uniform(c_out * c_in * 9, bound, rng), [c_out, c_in, 3, 3]),
        device,
    );
    layer.bias = Some(Param::from_data(
        TensorData::new(uniform(c_out, bound, rng), [c_out]),
        device,
    ));
    layer
}

/// A multi-layer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    /// # Shapes
    /// - input: `[batch, n_features]`
    /// - output: `[batch, n_outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x; // [batch, n_features]
        // relu and tanh layers as one fused operation each (crate::kernels::dense, issue 18).
        let fused = match self.activation {
            Activation::Relu => Some(DenseAct::Relu),
            Activation::Tanh => Some(DenseAct::Tanh),
            Activation::Gelu => None,
        };
        for layer in &self.hidden {
            x = match fused {
                Some(act) => dense(layer, x, act),
                None => self.activation.apply(layer.forward(x)),
            }; // [batch, width]
        }
        dense(&self.output, x, DenseAct::Identity) // [batch, n_outputs]
    }
}

/// The small CNN: two conv3×3 + ReLU + maxpool2 blocks and a linear head.
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc: Linear,
    #[module(skip)]
    input_shape: [usize; 3],
}

impl Cnn {
    /// # Shapes
    /// - input: `[batch, c*h*w]` (flattened images)
    /// - output: `[batch, n_outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [c, h, w] = self.input_shape;
        let batch = x.dims()[0];
        let x = x.reshape([batch, c, h, w]); // [batch, c, h, w]
        // Convolution and pooling through crate::kernels: burn-flex's own were 3× slower.
        let x = burn::tensor::activation::relu(conv3x3(&self.conv1, x)); // [batch, 16, h-2, w-2]
        let x = max_pool2(x); // [batch, 16, (h-2)/2, (w-2)/2]
        let x = burn::tensor::activation::relu(conv3x3(&self.conv2, x)); // [batch, 32, ., .]
        let x = max_pool2(x); // [batch, 32, h', w']
        let x = x.flatten(1, 3); // [batch, 32*h'*w']
        self.fc.forward(x) // [batch, n_outputs]
    }
}

/// Any model a task can train. (One per trainer, so the variants' size difference costs
/// nothing; boxing the CNN would need burn's `Module` for `Box`, which it does not derive.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Net {
    /// An MLP (or linear model).
    Mlp(Mlp),
    /// The small CNN.
    Cnn(Cnn),
}

impl Net {
    /// # Shapes
    /// - input: `[batch, n_features]` (images flattened)
    /// - output: `[batch, n_outputs]` (logits, or the prediction for regression)
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Net::Mlp(m) => m.forward(x),
            Net::Cnn(m) => m.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse_and_print_back() {
        for spec in [
            "mlp:64x2",
            "mlp:8x1:tanh",
            "linear",
            "cnn:small",
            "mlp:16x3:gelu",
        ] {
            assert_eq!(ModelSpec::parse(spec).unwrap().to_string(), spec);
        }
        for bad in ["mlp:64", "mlp:ax2", "mlp:64x2:swish", "resnet", "mlp:0x2"] {
            let err = ModelSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn cnn_needs_image_data() {
        let err = ModelSpec::CnnSmall
            .init(10, None, 3, 0, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs image data"), "{err}");
        let net = ModelSpec::CnnSmall
            .init(28 * 28, Some([1, 28, 28]), 10, 0, &Device::flex())
            .unwrap();
        let out = net.forward(Tensor::zeros([2, 28 * 28], &Device::flex()));
        assert_eq!(out.dims(), [2, 10]);
        assert_eq!(
            net.num_params(),
            16 * 9 + 16 + 32 * 16 * 9 + 32 + 800 * 10 + 10
        );
    }

    #[test]
    fn initialisation_depends_only_on_the_seed() {
        let spec = ModelSpec::parse("mlp:8x2").unwrap();
        let values = |seed| {
            let net = spec.init(4, None, 3, seed, &Device::flex()).unwrap();
            net.forward(Tensor::ones([1, 4], &Device::flex()))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(values(1), values(1));
        assert_ne!(values(1), values(2));
    }
}
