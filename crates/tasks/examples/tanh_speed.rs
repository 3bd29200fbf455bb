//! Per-element cost of the MLP tanh kernel against the previous formula (glibc's f64 `exp`)
//! and glibc's `tanhf`, on one thread: `cargo run --release -p hyperctl-tasks --example tanh_speed`.
use std::time::Instant;

fn old_tanh(x: f32) -> f32 {
    let a = (x as f64).abs();
    if a < 1e-9 {
        return x;
    }
    if a > 10.0 {
        return 1f32.copysign(x);
    }
    let t = (-2.0 * a).exp();
    (((1.0 - t) / (1.0 + t)).copysign(x as f64)) as f32
}

fn main() {
    let n = 4096; // a [64, 64] activation
    let xs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618).sin() * 3.0).collect();
    let mut ys = vec![0f32; n];
    let reps = 20_000;
    let mut report = |name: &str, f: &mut dyn FnMut(&[f32], &mut [f32])| {
        f(&xs, &mut ys);
        let start = Instant::now();
        for _ in 0..reps {
            f(std::hint::black_box(&xs), &mut ys);
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / (reps * n) as f64;
        println!(
            "{name}: {ns:.2} ns/element (checksum {})",
            ys.iter().sum::<f32>()
        );
    };
    report("tanhf (glibc)", &mut |x, y| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v.tanh();
        }
    });
    report("previous kernel (f64 exp)", &mut |x, y| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = old_tanh(v);
        }
    });
    report("kernel (polynomial, vectorized)", &mut |x, y| {
        hyperctl_tasks::tanh_slice(x, y)
    });
}
