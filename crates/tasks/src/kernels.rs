//! The small CNN's two heavy operations, 3×3 convolution (valid, stride 1) and 2×2 max pooling
//! (stride 2), the MLPs' layers (`dense`: affine map + relu/tanh as one operation) and their
//! tanh, with their own forward and backward on the CPU backend (burn-flex, with and without
//! autodiff). Every other backend (wgpu) gets burn's own `conv2d`, `max_pool2d`, `Linear` and
//! `tanh`.
//!
//! tanh (issue 18, profiled on the meta-train task mix, 184 of 390 tasks tanh MLPs): 33% of a
//! 1-core segment rollout went to glibc's scalar `tanhf`/`expm1f`, and burn-autodiff computes
//! tanh twice per training step (its backward recomputes it from the input, then four more
//! elementwise passes for `1 − y²` and the product). Here the forward is `(1 − t)/(1 + t)` with
//! `t = e^(−2|x|)` in f64 (within 1 ulp of f64's tanh on every f32 checked; `tanhf` is off by up
//! to 2 ulp), and the backward is one pass over the saved output: `g · (1 − y²)`. The `exp` is
//! our own polynomial in plain f64 arithmetic without branches (`exp_nonpositive`), so the loop
//! vectorizes and the bits do not depend on which variant of glibc's `exp` a CPU gets.
//!
//! Why: profiled on one thread (experiments/bench/README.md), burn-flex 0.22.1 spent most of the
//! CNN step in `max_pool2d_with_indices` (6.6 ms forward for a [64, 16, 26, 26] input) and in the
//! weight gradient of the single-channel first convolution (10 ms), against about 12 ms for a
//! whole PyTorch step. Here pooling is one pass that records each window's argmax, and the
//! convolution is im2col into a `[batch, c·9, positions]` buffer kept for the backward pass,
//! with every product a flex matmul (gemm).
//!
//! Both are deterministic: their own loops run on the calling thread and their products are flex
//! matmuls, so results do not depend on the thread count. Values equal burn's up to float summation order; the pooled gradient goes to the
//! first maximum of each window, as burn and PyTorch do.

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::AutodiffBackend;
use burn_backend::ops::FloatTensorOps;
use burn_backend::{DType, Shape};
use burn_flex::{Flex, FlexTensor};

/// The autodiff backend `Device::flex().autodiff()` runs on.
type Ad = Autodiff<Flex, NoCheckpointing>;

/// A contiguous f32 copy-free view: the tensor (made contiguous) and its element range.
fn host(t: &FlexTensor) -> (FlexTensor, std::ops::Range<usize>) {
    let t = t.to_contiguous();
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("a contiguous tensor has contiguous offsets");
    (t, start..end)
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

fn flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// 2×2 max pooling with stride 2 (a trailing odd row or column is dropped, as in PyTorch's
/// `MaxPool2d(2)`).
///
/// # Shapes
/// - input: `[batch, channels, h, w]`
/// - output: `[batch, channels, h / 2, w / 2]`
pub fn max_pool2(x: Tensor<4>) -> Tensor<4> {
    if x.dtype() == DType::F32 {
        if let Ok(t) = x.clone().try_into_primitive::<Ad>() {
            return Tensor::from_primitive::<Ad>(pool_autodiff(t));
        }
        if let Ok(t) = x.clone().try_into_primitive::<Flex>() {
            return Tensor::from_primitive::<Flex>(pool_forward(&t).0);
        }
    }
    burn::nn::pool::MaxPool2dConfig::new([2, 2])
        .init()
        .forward(x)
}

/// Forward: the pooled values and, per output, the flat input index of its window's maximum.
fn pool_forward(x: &FlexTensor) -> (FlexTensor, Vec<u32>) {
    let [b, c, h, w] = dims4(x);
    let (h2, w2) = (h / 2, w / 2);
    let (t, range) = host(x);
    let xs = &t.storage::<f32>()[range];
    let mut out = Vec::with_capacity(b * c * h2 * w2);
    let mut arg = Vec::with_capacity(b * c * h2 * w2);
    for plane in 0..b * c {
        let base = plane * h * w;
        for i in 0..h2 {
            let top = base + 2 * i * w;
            let bottom = top + w;
            for j in 0..w2 {
                // Window order (top-left, top-right, bottom-left, bottom-right); the first
                // maximum wins; NaN wins and propagates, as in burn and PyTorch. Written
                // without branches: on real activations the comparisons are coin flips.
                let at = [
                    top + 2 * j,
                    top + 2 * j + 1,
                    bottom + 2 * j,
                    bottom + 2 * j + 1,
                ];
                let v = at.map(|k| xs[k]);
                let max = v[0].max(v[1]).max(v[2].max(v[3]));
                let nan = v.iter().position(|x| x.is_nan());
                let value = if nan.is_some() { f32::NAN } else { max };
                let mut first = 3;
                first = if v[2] == max { 2 } else { first };
                first = if v[1] == max { 1 } else { first };
                first = if v[0] == max { 0 } else { first };
                let best = at[nan.unwrap_or(first)];
                out.push(value);
                arg.push(best as u32);
            }
        }
    }
    (flex(out, &[b, c, h2, w2]), arg)
}

#[derive(Debug)]
struct MaxPool2;

impl Backward<Flex, 1> for MaxPool2 {
    /// Argmax per output and the input's shape.
    type State = (std::sync::Arc<Vec<u32>>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            let (arg, shape) = ops.state;
            let (g, range) = host(&grad);
            let gs = &g.storage::<f32>()[range];
            let mut dx = vec![0f32; shape.iter().product()];
            for (&i, &v) in arg.iter().zip(gs) {
                dx[i as usize] += v;
            }
            grads.register::<Flex>(node.id, flex(dx, &shape));
        }
    }
}

fn pool_autodiff(x: AdTensor) -> AdTensor {
    let inner = <Ad as AutodiffBackend>::inner(x.clone());
    match MaxPool2
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let shape = dims4(&inner);
            let (out, arg) = pool_forward(&inner);
            prep.finish((std::sync::Arc::new(arg), shape), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(pool_forward(&inner).0),
    }
}

/// `layer` (a 3×3 convolution with bias, stride 1, no padding, no dilation, one group) applied
/// to `x`.
///
/// # Shapes
/// - input: `[batch, c_in, h, w]`
/// - output: `[batch, c_out, h - 2, w - 2]`
pub fn conv3x3(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let bias = layer.bias.as_ref().map(Param::val);
    match primitives(&x, &layer.weight.val(), bias.as_ref()) {
        Some(Primitives::Autodiff(x, w, b)) => Tensor::from_primitive::<Ad>(conv_autodiff(x, w, b)),
        Some(Primitives::Flex(x, w, b)) => {
            Tensor::from_primitive::<Flex>(conv_forward(&x, &w, &b).0)
        }
        None => layer.forward(x),
    }
}

/// A layer's input, weight and bias as flex primitives, all under autodiff or all without.
enum Primitives {
    Autodiff(AdTensor, AdTensor, AdTensor),
    Flex(FlexTensor, FlexTensor, FlexTensor),
}

/// The primitives our kernels take, if the layer has a bias and everything is f32 on flex
/// (with autodiff: the input may be a plain flex tensor, a minibatch of data, under autodiff
/// weights); `None` sends the caller to burn's own op.
fn primitives<const DX: usize, const DW: usize>(
    x: &Tensor<DX>,
    weight: &Tensor<DW>,
    bias: Option<&Tensor<1>>,
) -> Option<Primitives> {
    let bias = bias?;
    if x.dtype() != DType::F32 {
        return None;
    }
    let x_ad = x.clone().try_into_primitive::<Ad>().or_else(|_| {
        x.clone()
            .try_into_primitive::<Flex>()
            .map(<Ad as AutodiffBackend>::from_inner)
    });
    let all = (
        x_ad,
        weight.clone().try_into_primitive::<Ad>(),
        bias.clone().try_into_primitive::<Ad>(),
    );
    if let (Ok(x), Ok(w), Ok(b)) = all {
        return Some(Primitives::Autodiff(x, w, b));
    }
    let all = (
        x.clone().try_into_primitive::<Flex>(),
        weight.clone().try_into_primitive::<Flex>(),
        bias.clone().try_into_primitive::<Flex>(),
    );
    match all {
        (Ok(x), Ok(w), Ok(b)) => Some(Primitives::Flex(x, w, b)),
        _ => None,
    }
}

/// im2col for a 3×3 valid convolution: `[batch, c·9, positions]`, row `c·9 + ki·3 + kj`
/// (the weight's `[c_out, c, 3, 3]` order), column `oh·(w−2) + ow`.
fn im2col(x: &FlexTensor) -> Vec<f32> {
    let [b, c, h, w] = dims4(x);
    let (ho, wo) = (h - 2, w - 2);
    let p = ho * wo;
    let (t, range) = host(x);
    let xs = &t.storage::<f32>()[range];
    let mut cols = vec![0f32; b * c * 9 * p];
    for (plane, chunk) in cols.chunks_exact_mut(9 * p).enumerate() {
        let src = &xs[plane * h * w..(plane + 1) * h * w];
        for ki in 0..3 {
            for kj in 0..3 {
                let row = &mut chunk[(ki * 3 + kj) * p..(ki * 3 + kj + 1) * p];
                for oh in 0..ho {
                    let s = (oh + ki) * w + kj;
                    row[oh * wo..(oh + 1) * wo].copy_from_slice(&src[s..s + wo]);
                }
            }
        }
    }
    cols
}

/// The transpose of [`im2col`]: sums each column entry back onto its input pixel.
fn col2im(cols: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [b, c, h, w] = shape;
    let (ho, wo) = (h - 2, w - 2);
    let p = ho * wo;
    let mut dx = vec![0f32; b * c * h * w];
    for (plane, chunk) in cols.chunks_exact(9 * p).enumerate() {
        let dst = &mut dx[plane * h * w..(plane + 1) * h * w];
        for ki in 0..3 {
            for kj in 0..3 {
                let row = &chunk[(ki * 3 + kj) * p..(ki * 3 + kj + 1) * p];
                for oh in 0..ho {
                    let s = (oh + ki) * w + kj;
                    for (d, &v) in dst[s..s + wo].iter_mut().zip(&row[oh * wo..(oh + 1) * wo]) {
                        *d += v;
                    }
                }
            }
        }
    }
    dx
}

/// Forward: the output and the state the backward pass needs (im2col buffer
/// `[batch, c·9, positions]`, the weight as `[1, c_out, c·9]`, the input's shape).
fn conv_forward(x: &FlexTensor, w: &FlexTensor, bias: &FlexTensor) -> (FlexTensor, ConvState) {
    let shape = dims4(x);
    let [b, c, h, wd] = shape;
    let c_out = w.layout().shape()[0];
    let (ho, wo) = (h - 2, wd - 2);
    let p = ho * wo;
    let cols = flex(im2col(x), &[b, c * 9, p]);
    let w_mat = Flex::float_reshape(w.clone(), Shape::new([1, c_out, c * 9]));
    let mut out = Flex::float_matmul(w_mat.clone(), cols.clone()); // [b, c_out, p]
    let (bias_t, bias_range) = host(bias);
    let bias_values = &bias_t.storage::<f32>()[bias_range];
    // The matmul's fresh, contiguous output takes the bias in place (no copy: it is unique).
    assert!(out.layout().contiguous_offsets() == Some((0, b * c_out * p)));
    for (k, chunk) in out.storage_mut::<f32>().chunks_exact_mut(p).enumerate() {
        let add = bias_values[k % c_out];
        chunk.iter_mut().for_each(|v| *v += add);
    }
    let out = Flex::float_reshape(out, Shape::new([b, c_out, ho, wo]));
    (out, ConvState { cols, w_mat, shape })
}

#[derive(Debug, Clone)]
struct ConvState {
    cols: FlexTensor,
    w_mat: FlexTensor,
    shape: [usize; 4],
}

#[derive(Debug)]
struct Conv3x3;

impl Backward<Flex, 3> for Conv3x3 {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let ConvState { cols, w_mat, shape } = ops.state;
        let [b, c, h, wd] = shape;
        let c_out = w_mat.layout().shape()[1];
        let p = (h - 2) * (wd - 2);
        let g = Flex::float_reshape(grad, Shape::new([b, c_out, p]));
        if let Some(node) = node_b {
            let (gt, range) = host(&g);
            let gs = &gt.storage::<f32>()[range];
            let mut db = vec![0f32; c_out];
            for (k, chunk) in gs.chunks_exact(p).enumerate() {
                db[k % c_out] += chunk.iter().sum::<f32>();
            }
            grads.register::<Flex>(node.id, flex(db, &[c_out]));
        }
        if let Some(node) = node_w {
            let cols_t = Flex::float_swap_dims(cols, 1, 2); // [b, p, c·9]
            let per_image = Flex::float_matmul(g.clone(), cols_t); // [b, c_out, c·9]
            let dw = Flex::float_sum_dim(per_image, 0); // [1, c_out, c·9]
            grads.register::<Flex>(
                node.id,
                Flex::float_reshape(dw, Shape::new([c_out, c, 3, 3])),
            );
        }
        if let Some(node) = node_x {
            let w_t = Flex::float_swap_dims(w_mat, 1, 2); // [1, c·9, c_out]
            let dcols = Flex::float_matmul(w_t, g); // [b, c·9, p]
            let (dt, range) = host(&dcols);
            let dx = col2im(&dt.storage::<f32>()[range], shape);
            grads.register::<Flex>(node.id, flex(dx, &shape));
        }
    }
}

type AdTensor = <Ad as burn_backend::BackendTypes>::FloatTensorPrimitive;

/// Runs a three-parent op (input, weight, bias) under autodiff: `forward` gets the inner flex
/// tensors and whether the op is tracked, and returns the output with, when tracked, the state
/// its backward pass needs.
fn autodiff_op3<O: Backward<Flex, 3>>(
    op: O,
    [x, w, b]: [AdTensor; 3],
    forward: impl FnOnce([FlexTensor; 3], bool) -> (FlexTensor, Option<O::State>),
) -> AdTensor {
    let inner = [x.clone(), w.clone(), b.clone()].map(<Ad as AutodiffBackend>::inner);
    match op
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(inner, true);
            prep.finish(state.expect("a tracked forward returns its state"), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(inner, false).0),
    }
}

fn conv_autodiff(x: AdTensor, w: AdTensor, b: AdTensor) -> AdTensor {
    autodiff_op3(Conv3x3, [x, w, b], |[x, w, b], tracked| {
        let (out, state) = conv_forward(&x, &w, &b);
        (out, tracked.then_some(state))
    })
}

/// The activation a [`dense`] layer applies after its affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseAct {
    /// None (an output layer).
    Identity,
    /// max(0, z).
    Relu,
    /// tanh(z), by [`tanh_f32`].
    Tanh,
}

/// `act(x · W + b)` for a burn `Linear` with bias, as one operation on the CPU backend: one
/// matmul, then the bias and the activation in one pass over its fresh output; the backward
/// pass is one pass for the activation's derivative and the bias gradient, then the two
/// matmuls. burn's own `Linear` + activation records three autodiff operations (matmul,
/// broadcast add, activation), each with its own output buffer, and reduces the bias gradient
/// with a generic sum (issue 18). Other backends, and a layer without bias, get burn's.
///
/// # Shapes
/// - input: `[batch, d_in]`
/// - output: `[batch, d_out]`
pub fn dense(layer: &Linear, x: Tensor<2>, act: DenseAct) -> Tensor<2> {
    let bias = layer.bias.as_ref().map(Param::val);
    // The weight is [d_in, d_out].
    match primitives(&x, &layer.weight.val(), bias.as_ref()) {
        Some(Primitives::Autodiff(x, w, b)) => {
            return Tensor::from_primitive::<Ad>(dense_autodiff(x, w, b, act));
        }
        Some(Primitives::Flex(x, w, b)) => {
            return Tensor::from_primitive::<Flex>(dense_forward(x, w, &b, act));
        }
        None => {}
    }
    let z = layer.forward(x);
    match act {
        DenseAct::Identity => z,
        DenseAct::Relu => burn::tensor::activation::relu(z),
        DenseAct::Tanh => tanh(z),
    }
}

/// The forward pass: `act(x · W + b)` in the matmul's own output buffer.
fn dense_forward(x: FlexTensor, w: FlexTensor, bias: &FlexTensor, act: DenseAct) -> FlexTensor {
    let mut out = Flex::float_matmul(x, w); // [batch, d_out], fresh
    let (bias_t, bias_range) = host(bias);
    let b = &bias_t.storage::<f32>()[bias_range];
    let n = out.layout().shape().num_elements();
    // The matmul's fresh, contiguous output takes the bias in place (no copy: it is unique).
    assert!(out.layout().contiguous_offsets() == Some((0, n)));
    let values = out.storage_mut::<f32>();
    for row in values.chunks_exact_mut(b.len()) {
        match act {
            DenseAct::Relu => row
                .iter_mut()
                .zip(b)
                .for_each(|(v, &c)| *v = (*v + c).max(0.0)),
            DenseAct::Identity | DenseAct::Tanh => {
                row.iter_mut().zip(b).for_each(|(v, &c)| *v += c)
            }
        }
    }
    if act == DenseAct::Tanh {
        // One buffer per call (the vectorized loop reads one slice and writes another).
        let pre = values.to_vec();
        tanh_slice(&pre, values);
    }
    out
}

#[derive(Debug, Clone)]
struct DenseState {
    /// The layer's input `[batch, d_in]` (for the weight gradient; a shared handle, no copy).
    x: FlexTensor,
    /// The weight `[d_in, d_out]` (for the input gradient).
    w: FlexTensor,
    /// The output (for the activation's derivative).
    y: FlexTensor,
    act: DenseAct,
}

#[derive(Debug)]
struct Dense;

impl Backward<Flex, 3> for Dense {
    type State = DenseState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let DenseState { x, w, y, act } = ops.state;
        let shape = shape_of(&y);
        let d_out = shape[1];
        // dz = g · act'(z), from the saved output.
        let dz = match act {
            DenseAct::Identity => grad,
            DenseAct::Relu | DenseAct::Tanh => {
                let (yt, yr) = host(&y);
                let (gt, gr) = host(&grad);
                let ys = &yt.storage::<f32>()[yr];
                let gs = &gt.storage::<f32>()[gr];
                let dz: Vec<f32> = if act == DenseAct::Relu {
                    ys.iter()
                        .zip(gs)
                        .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
                        .collect()
                } else {
                    ys.iter()
                        .zip(gs)
                        .map(|(&y, &g)| g * (1.0 - y * y))
                        .collect()
                };
                flex(dz, &shape)
            }
        };
        if let Some(node) = node_b {
            let (dt, dr) = host(&dz);
            let mut db = vec![0f32; d_out];
            for row in dt.storage::<f32>()[dr].chunks_exact(d_out) {
                db.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
            grads.register::<Flex>(node.id, flex(db, &[d_out]));
        }
        if let Some(node) = node_w {
            let x_t = Flex::float_swap_dims(x, 0, 1); // [d_in, batch]
            grads.register::<Flex>(node.id, Flex::float_matmul(x_t, dz.clone()));
        }
        if let Some(node) = node_x {
            let w_t = Flex::float_swap_dims(w, 0, 1); // [d_out, d_in]
            grads.register::<Flex>(node.id, Flex::float_matmul(dz, w_t));
        }
    }
}

fn dense_autodiff(x: AdTensor, w: AdTensor, b: AdTensor, act: DenseAct) -> AdTensor {
    autodiff_op3(Dense, [x, w, b], |[x, w, b], tracked| {
        let y = dense_forward(x.clone(), w.clone(), &b, act);
        let state = tracked.then(|| DenseState {
            x,
            w,
            y: y.clone(),
            act,
        });
        (y, state)
    })
}

/// `e^y` for `y` in [−20, 0] (and NaN → NaN), in f64 arithmetic alone, so that a loop of it
/// vectorizes and gives the same bits on every CPU (glibc's `exp` picks an FMA or a plain variant
/// by the CPU). `y = k·ln 2 + r`, `|r| ≤ ln 2 / 2` (Cody–Waite: fdlibm's split of ln 2, exact
/// for these k), `e^r` by its Taylor polynomial to degree 10 (truncation below 3e-13
/// relative), times `2^k` built from its exponent bits. That error is 2·10⁵ times below half an
/// f32 ulp, so the f32 tanh built on it is the correctly rounded one except within 3e-13 of a
/// rounding boundary.
#[inline(always)]
fn exp_nonpositive(y: f64) -> f64 {
    const INV_LN2: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // fdlibm: 0x3fe62e42fee00000
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52: adding it rounds to an integer
    let shifted = y * INV_LN2 + ROUND;
    let k = shifted - ROUND; // round(y / ln 2), to nearest even, in [−29, 0]
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 3_628_800.0; // 1/10!
    for c in [
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // k's integer value sits in the low bits of `shifted`; 2^k from the exponent field.
    let k_int = (shifted.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let scale = f64::from_bits((k_int.wrapping_add(1023) as u64) << 52);
    p * scale
}

/// tanh of one value: `(1 − t)/(1 + t)`, `t = e^(−2|x|)`, in f64 (see the module doc). Written
/// without branches or library calls (min and selects only), so [`tanh_forward`]'s loop
/// vectorizes.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = (x as f64).abs();
    // Past |x| = 10, 1 − tanh < 5e-9 rounds to 1 in f32 (also ±∞), and so does the clamped value.
    let t = exp_nonpositive(-2.0 * a.min(10.0));
    let y = (1.0 - t) / (1.0 + t);
    // Below 1e-9, tanh(x) = x in f32 (±0 and subnormals stay as they are).
    let y = if a < 1e-9 { a } else { y };
    let y = (y as f32).copysign(x);
    if x.is_nan() { x } else { y }
}

/// Elementwise tanh (any rank): [`tanh_f32`] on flex tensors, burn's `tanh` elsewhere.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 {
        if let Ok(t) = x.clone().try_into_primitive::<Ad>() {
            return Tensor::from_primitive::<Ad>(tanh_autodiff(t));
        }
        if let Ok(t) = x.clone().try_into_primitive::<Flex>() {
            return Tensor::from_primitive::<Flex>(tanh_forward(&t));
        }
    }
    burn::tensor::activation::tanh(x)
}

fn shape_of(t: &FlexTensor) -> Vec<usize> {
    let s = t.layout().shape();
    (0..s.num_dims()).map(|i| s[i]).collect()
}

/// `ys[i] = tanh_f32(xs[i])`, with AVX-512's 8 or AVX2's 4 f64 lanes where the CPU has them
/// (the same bits on every path: only IEEE additions, multiplications, divisions, min, selects
/// and bit operations, none fused; test). One thread: 0.77 ns per element with AVX-512 against
/// 3.8 for the previous formula on glibc's `exp` and 8.6 for `tanhf`
/// (`cargo run --release -p hyperctl-tasks --example tanh_speed`, 2026-12-04).
pub fn tanh_slice(xs: &[f32], ys: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { tanh_into_avx512(xs, ys) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { tanh_into_avx2(xs, ys) };
            return;
        }
    }
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = tanh_f32(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tanh_into_avx512(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = tanh_f32(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tanh_into_avx2(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = tanh_f32(x);
    }
}

fn tanh_forward(x: &FlexTensor) -> FlexTensor {
    let (t, range) = host(x);
    let xs = &t.storage::<f32>()[range];
    let mut ys = vec![0f32; xs.len()];
    tanh_slice(xs, &mut ys);
    flex(ys, &shape_of(x))
}

#[derive(Debug)]
struct Tanh;

impl Backward<Flex, 1> for Tanh {
    /// The forward's output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            let y = ops.state;
            let (yt, yr) = host(&y);
            let (gt, gr) = host(&grad);
            let dx: Vec<f32> = yt.storage::<f32>()[yr]
                .iter()
                .zip(&gt.storage::<f32>()[gr])
                .map(|(&y, &g)| g * (1.0 - y * y))
                .collect();
            grads.register::<Flex>(node.id, flex(dx, &shape_of(&y)));
        }
    }
}

fn tanh_autodiff(x: AdTensor) -> AdTensor {
    let inner = <Ad as AutodiffBackend>::inner(x.clone());
    match Tanh
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = tanh_forward(&inner);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(tanh_forward(&inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Device, Distribution, Tolerance};

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (a.into_data(), b.into_data());
        assert_eq!(a.shape(), b.shape(), "{what}: shapes");
        a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-4, 1e-5));
    }

    /// The vectorized tanh gives the plain loop's bits on every path this CPU has (AVX-512,
    /// AVX2, the baseline), so results do not depend on which one a machine takes.
    #[test]
    fn every_tanh_path_gives_the_same_bits() {
        let mut xs: Vec<f32> = (0..1_000_003u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .collect();
        xs.extend([
            0.0,
            -0.0,
            1e-10,
            10.0,
            -10.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        let plain: Vec<u32> = xs.iter().map(|&x| tanh_f32(x).to_bits()).collect();
        let mut ys = vec![0f32; xs.len()];
        let check = |name: &str, ys: &[f32]| {
            let same = ys.iter().zip(&plain).all(|(y, p)| y.to_bits() == *p);
            assert!(same, "{name} differs from the plain loop");
        };
        tanh_slice(&xs, &mut ys);
        check("tanh_slice", &ys);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                unsafe { tanh_into_avx512(&xs, &mut ys) };
                check("avx512", &ys);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                unsafe { tanh_into_avx2(&xs, &mut ys) };
                check("avx2", &ys);
            }
        }
    }

    /// The polynomial exp behind tanh: within 3e-13 (relative) of libm's over [−20, 0], exact at
    /// 0, NaN for NaN.
    #[test]
    fn the_vectorizable_exp_is_within_a_few_f64_ulps() {
        let mut worst = 0f64;
        for i in 0..=2_000_000u32 {
            let y = -20.0 * i as f64 / 2_000_000.0;
            let rel = (exp_nonpositive(y) - y.exp()).abs() / y.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-13, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
    }

    /// tanh: every f32 in a sweep of the whole range within 1 ulp of f64's tanh (glibc's `tanhf`
    /// is within 2), the special values right, and the gradient burn's own.
    #[test]
    fn tanh_is_within_an_ulp_and_its_gradient_matches_burn() {
        let mut bits: u32 = 0;
        while bits < 0x7f80_0000 {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = (x as f64).tanh() as f32;
                let ulps = (tanh_f32(x).to_bits() as i64 - exact.to_bits() as i64).abs();
                assert!(
                    ulps <= 1,
                    "tanh({x:e}) = {:e}, f64 says {exact:e}",
                    tanh_f32(x)
                );
            }
            bits += 9973;
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());

        let device = Device::flex().autodiff();
        device.seed(3);
        let x = Tensor::<2>::random([7, 33], Distribution::Normal(0.0, 2.0), &device);
        let r = Tensor::<2>::random([7, 33], Distribution::Normal(0.0, 1.0), &device);
        assert!(x.clone().try_into_primitive::<Ad>().is_ok());
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                tanh(x.clone())
            } else {
                burn::tensor::activation::tanh(x.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (y.inner(), x.grad(&grads).expect("input grad"))
        };
        let (y0, dx0) = run(false);
        let (y1, dx1) = run(true);
        let tol = Tolerance::rel_abs(1e-6, 1e-7);
        y1.into_data().assert_approx_eq::<f32>(&y0.into_data(), tol);
        dx1.into_data()
            .assert_approx_eq::<f32>(&dx0.into_data(), tol);
        let plain = x.clone().inner();
        tanh(plain.clone())
            .into_data()
            .assert_approx_eq::<f32>(&burn::tensor::activation::tanh(plain).into_data(), tol);
    }

    /// Forward values and the gradients of input, weight and bias equal burn's own
    /// `Conv2d::forward`, for a single-channel and a multi-channel input of odd and even sides.
    #[test]
    fn conv3x3_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(7);
        for (shape, c_out) in [([3, 1, 12, 11], 4), ([2, 5, 9, 10], 6)] {
            let layer = Conv2dConfig::new([shape[1], c_out], [3, 3]).init(&device);
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            // The comparison is with the fast path: these tensors are the ones it takes.
            assert!(x.clone().try_into_primitive::<Ad>().is_ok());
            assert!(
                layer
                    .valid()
                    .weight
                    .val()
                    .try_into_primitive::<Flex>()
                    .is_ok()
            );
            let out_shape = [shape[0], c_out, shape[2] - 2, shape[3] - 2];
            let r = Tensor::<4>::random(out_shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = if ours {
                    conv3x3(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let grads = (y.clone() * r.clone()).sum().backward();
                let w = layer.weight.val().grad(&grads).expect("weight grad");
                let b = layer
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .expect("bias grad");
                let dx = x.grad(&grads).expect("input grad");
                (y.inner(), dx, w, b)
            };
            let (y0, dx0, w0, b0) = run(false);
            let (y1, dx1, w1, b1) = run(true);
            close(y1, y0, "output");
            close(dx1, dx0, "input grad");
            close(w1, w0, "weight grad");
            b1.into_data()
                .assert_approx_eq::<f32>(&b0.into_data(), Tolerance::rel_abs(1e-4, 1e-5));
            // Without autodiff (validation, inference) the same values.
            let plain = layer.valid();
            close(
                conv3x3(&plain, x.clone().inner()),
                plain.forward(x.clone().inner()),
                "inference output",
            );
        }
    }

    /// The fused layer's output and the gradients of input, weight and bias equal burn's
    /// `Linear::forward` + activation, for each activation, with a tracked input (a hidden
    /// layer) and with a data input (the first layer: no input gradient); without autodiff too.
    #[test]
    fn dense_matches_burn_linear_and_activation_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let tol = Tolerance::rel_abs(1e-4, 1e-5); // as the convolution's: summation order differs
        let same =
            |a: Tensor<2>, b: Tensor<2>| a.into_data().assert_approx_eq::<f32>(&b.into_data(), tol);
        for act in [DenseAct::Identity, DenseAct::Relu, DenseAct::Tanh] {
            for (batch, d_in, d_out) in [(9, 13, 7), (1, 4, 1), (32, 64, 64)] {
                let layer = LinearConfig::new(d_in, d_out).init(&device);
                let x = Tensor::<2>::random([batch, d_in], Distribution::Normal(0.0, 1.5), &device);
                let r =
                    Tensor::<2>::random([batch, d_out], Distribution::Normal(0.0, 1.0), &device);
                assert!(x.clone().try_into_primitive::<Ad>().is_ok());
                for tracked_input in [true, false] {
                    let run = |ours: bool| {
                        let x = if tracked_input {
                            x.clone().require_grad()
                        } else {
                            x.clone()
                        };
                        let y = if ours {
                            dense(&layer, x.clone(), act)
                        } else {
                            let z = layer.forward(x.clone());
                            match act {
                                DenseAct::Identity => z,
                                DenseAct::Relu => burn::tensor::activation::relu(z),
                                DenseAct::Tanh => burn::tensor::activation::tanh(z),
                            }
                        };
                        let grads = (y.clone() * r.clone()).sum().backward();
                        let w = layer.weight.val().grad(&grads).expect("weight grad");
                        let b = layer
                            .bias
                            .as_ref()
                            .unwrap()
                            .val()
                            .grad(&grads)
                            .expect("bias grad");
                        let dx = x.grad(&grads);
                        (y.inner(), dx, w, b)
                    };
                    let (y0, dx0, w0, b0) = run(false);
                    let (y1, dx1, w1, b1) = run(true);
                    same(y1, y0);
                    same(w1, w0);
                    b1.into_data().assert_approx_eq::<f32>(&b0.into_data(), tol);
                    assert_eq!(dx0.is_some(), tracked_input);
                    assert_eq!(dx1.is_some(), tracked_input, "{act:?}");
                    if let (Some(a), Some(b)) = (dx1, dx0) {
                        same(a, b);
                    }
                }
                let plain = layer.valid();
                let x = x.inner();
                let reference = plain.forward(x.clone());
                let reference = match act {
                    DenseAct::Identity => reference,
                    DenseAct::Relu => burn::tensor::activation::relu(reference),
                    DenseAct::Tanh => burn::tensor::activation::tanh(reference),
                };
                same(dense(&plain, x, act), reference);
            }
        }
    }

    /// Pooled values and the input gradient equal burn's `MaxPool2d` (kernel 2, stride 2),
    /// including a dropped odd row and column.
    #[test]
    fn max_pool2_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        for shape in [[2, 3, 8, 6], [1, 2, 7, 9]] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let out_shape = [shape[0], shape[1], shape[2] / 2, shape[3] / 2];
            let r = Tensor::<4>::random(out_shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = if ours {
                    max_pool2(x.clone())
                } else {
                    pool.forward(x.clone())
                };
                let grads = (y.clone() * r.clone()).sum().backward();
                (y.inner(), x.grad(&grads).expect("input grad"))
            };
            let (y0, dx0) = run(false);
            let (y1, dx1) = run(true);
            close(y1, y0, "pooled");
            close(dx1, dx0, "input grad");
            close(
                max_pool2(x.clone().inner()),
                pool.forward(x.clone().inner()),
                "inference pooled",
            );
        }
    }

    /// A NaN in a window wins (and takes the gradient), as in burn and PyTorch.
    #[test]
    fn max_pool2_propagates_nan() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, f32::NAN, 3.0, 2.0], [1, 1, 2, 2]),
            &device,
        );
        let y = max_pool2(x).into_data().try_to_vec::<f32>().unwrap();
        assert!(y[0].is_nan(), "{y:?}");
    }
}
