//! Generated dataset families (`gen:FAMILY[:k=v,...]`): seeded, parameterized, no files.
//!
//! | family | task | parameters (defaults) | what it is |
//! |---|---|---|---|
//! | `gauss-mix` | classification | `n=2000, d=10, classes=3, clusters=2, sep=2.5, seed=0` | each class a mixture of `clusters` isotropic unit Gaussians whose centres are drawn from N(0, sep²/d · I) |
//! | `teacher-cls` | classification | `n=2000, d=10, classes=3, hidden=32, depth=2, label_noise=0, seed=0` | x ~ N(0, I); label = argmax of a random tanh MLP teacher; a `label_noise` fraction of labels replaced at random |
//! | `spirals` | classification | `n=2000, d=10, classes=2, turns=1.5, noise=0.05, seed=0` | `classes` interleaved 2-D spiral arms, lifted to `d` dims by a random linear map plus a random tanh feature map, plus noise |
//! | `teacher-reg` | regression | `n=2000, d=10, hidden=32, depth=2, noise=0.1, seed=0` | x ~ N(0, I); y = random tanh MLP teacher(x) + noise · std(teacher) · N(0, 1) |
//! | `shapes` | classification (images) | `n=2000, side=16, classes=4, noise=0.3, seed=0` | `side`×`side` one-channel images of a horizontal bar, vertical bar, diagonal or anti-diagonal (first `classes` of these) at a random offset, plus pixel noise |
//!
//! The dataset's own `seed` fixes the data; the task seed (split, init, shuffling) is separate, so
//! one generated dataset can be trained under many task seeds.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::data::{Dataset, Table, TaskType};
use crate::{Error, Result};

/// The generated families and their parameter names with defaults.
pub const FAMILIES: &[(&str, &[(&str, f64)])] = &[
    (
        "gauss-mix",
        &[
            ("n", 2000.0),
            ("d", 10.0),
            ("classes", 3.0),
            ("clusters", 2.0),
            ("sep", 2.5),
            ("seed", 0.0),
        ],
    ),
    (
        "teacher-cls",
        &[
            ("n", 2000.0),
            ("d", 10.0),
            ("classes", 3.0),
            ("hidden", 32.0),
            ("depth", 2.0),
            ("label_noise", 0.0),
            ("seed", 0.0),
        ],
    ),
    (
        "spirals",
        &[
            ("n", 2000.0),
            ("d", 10.0),
            ("classes", 2.0),
            ("turns", 1.5),
            ("noise", 0.05),
            ("seed", 0.0),
        ],
    ),
    (
        "teacher-reg",
        &[
            ("n", 2000.0),
            ("d", 10.0),
            ("hidden", 32.0),
            ("depth", 2.0),
            ("noise", 0.1),
            ("seed", 0.0),
        ],
    ),
    (
        "shapes",
        &[
            ("n", 2000.0),
            ("side", 16.0),
            ("classes", 4.0),
            ("noise", 0.3),
            ("seed", 0.0),
        ],
    ),
];

/// Parameters of a generated family, validated against the family's parameter names.
struct Params<'a> {
    spec: &'a str,
    values: BTreeMap<&'static str, f64>,
}

impl Params<'_> {
    fn get(&self, key: &str) -> f64 {
        self.values[key]
    }

    fn count(&self, key: &'static str, min: usize, max: usize) -> Result<usize> {
        let v = self.get(key);
        if v.fract() != 0.0 || v < min as f64 || v > max as f64 {
            return Err(Error::InvalidSource {
                source_spec: self.spec.into(),
                reason: format!("{key}={v}: expected an integer in {min}..={max}"),
            });
        }
        Ok(v as usize)
    }

    fn real(&self, key: &'static str, min: f64, max: f64) -> Result<f64> {
        let v = self.get(key);
        if !(v >= min && v <= max) {
            return Err(Error::InvalidSource {
                source_spec: self.spec.into(),
                reason: format!("{key}={v}: expected a number in [{min}, {max}]"),
            });
        }
        Ok(v)
    }
}

/// Generates the dataset `family` with parameter overrides `args` (`k=v` pairs).
/// `spec` is the whole source string, used in error messages and as the dataset name.
pub fn generate(spec: &str, family: &str, args: &[(String, String)]) -> Result<Dataset> {
    let invalid = |reason: String| Error::InvalidSource {
        source_spec: spec.into(),
        reason,
    };
    let Some((_, defaults)) = FAMILIES.iter().find(|(name, _)| *name == family) else {
        let names: Vec<_> = FAMILIES.iter().map(|(n, _)| *n).collect();
        return Err(invalid(format!(
            "unknown family `{family}`; expected one of {}",
            names.join(", ")
        )));
    };
    let mut values: BTreeMap<&'static str, f64> = defaults.iter().copied().collect();
    for (key, value) in args {
        let Some((name, _)) = defaults.iter().find(|(name, _)| name == key) else {
            let names: Vec<_> = defaults.iter().map(|(n, _)| *n).collect();
            return Err(invalid(format!(
                "unknown parameter `{key}` for `{family}`; expected one of {}",
                names.join(", ")
            )));
        };
        let parsed: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| invalid(format!("{key}=`{value}` is not a number")))?;
        values.insert(name, parsed);
    }
    let p = Params { spec, values };
    let n = p.count("n", 10, 10_000_000)?;
    let seed = p.count("seed", 0, u32::MAX as usize)? as u64;
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ family.len() as u64);
    let mut data = match family {
        "gauss-mix" => gauss_mix(&p, n, &mut rng)?,
        "teacher-cls" => teacher(&p, n, &mut rng, TaskType::Classification)?,
        "spirals" => spirals(&p, n, &mut rng)?,
        "teacher-reg" => teacher(&p, n, &mut rng, TaskType::Regression)?,
        "shapes" => shapes(&p, n, &mut rng)?,
        _ => unreachable!("family names were checked above"),
    };
    data.name = spec.trim_start_matches("gen:").to_string();
    Ok(data)
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample(StandardNormal)
}

fn classification(n_features: usize, n_classes: usize, x: Vec<f32>, y: Vec<f32>) -> Dataset {
    Dataset {
        name: String::new(),
        task_type: TaskType::Classification,
        n_features,
        n_classes,
        image_shape: None,
        rows: Table { x, y },
        test: None,
    }
}

fn gauss_mix(p: &Params, n: usize, rng: &mut ChaCha8Rng) -> Result<Dataset> {
    let d = p.count("d", 1, 10_000)?;
    let classes = p.count("classes", 2, 1000)?;
    let clusters = p.count("clusters", 1, 100)?;
    let sep = p.real("sep", 0.0, 100.0)? as f32;
    let scale = sep / (d as f32).sqrt();
    let centres: Vec<Vec<f32>> = (0..classes * clusters)
        .map(|_| (0..d).map(|_| scale * normal(rng)).collect())
        .collect();
    let (mut x, mut y) = (Vec::with_capacity(n * d), Vec::with_capacity(n));
    for i in 0..n {
        let class = i % classes;
        let centre = &centres[class * clusters + rng.random_range(0..clusters)];
        x.extend(centre.iter().map(|&c| c + normal(rng)));
        y.push(class as f32);
    }
    Ok(classification(d, classes, x, y))
}

/// A random tanh MLP `d -> hidden^depth -> out` with N(0, 1/fan_in) weights (gain 1.5 on hidden layers).
fn random_teacher(
    d: usize,
    hidden: usize,
    depth: usize,
    out: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(Vec<f32>, usize, usize)> {
    let mut layers = Vec::new();
    let mut fan_in = d;
    for layer in 0..=depth {
        let fan_out = if layer == depth { out } else { hidden };
        let gain = if layer == depth { 1.0 } else { 1.5 };
        let std = gain / (fan_in as f32).sqrt();
        layers.push((
            (0..fan_in * fan_out).map(|_| std * normal(rng)).collect(),
            fan_in,
            fan_out,
        ));
        fan_in = fan_out;
    }
    layers
}

fn teacher_forward(layers: &[(Vec<f32>, usize, usize)], x: &[f32]) -> Vec<f32> {
    let mut h = x.to_vec();
    for (idx, (w, fan_in, fan_out)) in layers.iter().enumerate() {
        let mut next = vec![0f32; *fan_out];
        for (o, value) in next.iter_mut().enumerate() {
            *value = (0..*fan_in).map(|i| h[i] * w[i * fan_out + o]).sum();
        }
        if idx + 1 < layers.len() {
            next.iter_mut().for_each(|v| *v = v.tanh());
        }
        h = next;
    }
    h
}

fn teacher(p: &Params, n: usize, rng: &mut ChaCha8Rng, task_type: TaskType) -> Result<Dataset> {
    let d = p.count("d", 1, 10_000)?;
    let hidden = p.count("hidden", 1, 10_000)?;
    let depth = p.count("depth", 0, 20)?;
    let out = match task_type {
        TaskType::Classification => p.count("classes", 2, 1000)?,
        TaskType::Regression => 1,
    };
    let layers = random_teacher(d, hidden, depth, out, rng);
    let x: Vec<f32> = (0..n * d).map(|_| normal(rng)).collect();
    let outputs: Vec<Vec<f32>> = x
        .chunks(d)
        .map(|row| teacher_forward(&layers, row))
        .collect();
    match task_type {
        TaskType::Classification => {
            let label_noise = p.real("label_noise", 0.0, 1.0)?;
            let y = outputs
                .iter()
                .map(|o| {
                    if rng.random::<f64>() < label_noise {
                        rng.random_range(0..out) as f32
                    } else {
                        argmax(o) as f32
                    }
                })
                .collect();
            Ok(classification(d, out, x, y))
        }
        TaskType::Regression => {
            let noise = p.real("noise", 0.0, 100.0)? as f32;
            let clean: Vec<f32> = outputs.iter().map(|o| o[0]).collect();
            let mean = clean.iter().sum::<f32>() / n as f32;
            let std = (clean.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32)
                .sqrt()
                .max(1e-6);
            let y = clean
                .iter()
                .map(|v| v + noise * std * normal(rng))
                .collect();
            Ok(Dataset {
                name: String::new(),
                task_type,
                n_features: d,
                n_classes: 1,
                image_shape: None,
                rows: Table { x, y },
                test: None,
            })
        }
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn spirals(p: &Params, n: usize, rng: &mut ChaCha8Rng) -> Result<Dataset> {
    let d = p.count("d", 2, 10_000)?;
    let classes = p.count("classes", 2, 100)?;
    let turns = p.real("turns", 0.1, 10.0)? as f32;
    let noise = p.real("noise", 0.0, 10.0)? as f32;
    // A random lift R^2 -> R^d: linear part plus a tanh feature map, so the manifold is curved.
    let lin: Vec<f32> = (0..2 * d).map(|_| normal(rng) / 2f32.sqrt()).collect();
    let feat: Vec<f32> = (0..2 * d).map(|_| 2.0 * normal(rng)).collect();
    let (mut x, mut y) = (Vec::with_capacity(n * d), Vec::with_capacity(n));
    for i in 0..n {
        let class = i % classes;
        let t: f32 = rng.random::<f32>().sqrt(); // Denser towards the outside, as the arm's length grows.
        let angle = 2.0 * std::f32::consts::PI * (turns * t + class as f32 / classes as f32);
        let (u, v) = (
            t * angle.cos() + noise * normal(rng),
            t * angle.sin() + noise * normal(rng),
        );
        for j in 0..d {
            let linear = lin[j] * u + lin[d + j] * v;
            let curved = (feat[j] * u + feat[d + j] * v).tanh();
            x.push(linear + 0.5 * curved + 0.1 * noise * normal(rng));
        }
        y.push(class as f32);
    }
    Ok(classification(d, classes, x, y))
}

fn shapes(p: &Params, n: usize, rng: &mut ChaCha8Rng) -> Result<Dataset> {
    let side = p.count("side", 10, 256)?;
    let classes = p.count("classes", 2, 4)?;
    let noise = p.real("noise", 0.0, 10.0)? as f32;
    let (mut x, mut y) = (Vec::with_capacity(n * side * side), Vec::with_capacity(n));
    for i in 0..n {
        let class = i % classes;
        let offset = rng.random_range(1..side as i64 - 1) as isize;
        let length = rng.random_range(side as i64 / 2..=side as i64 - 2) as isize;
        let start = rng.random_range(0..=(side as i64 - length as i64)) as isize;
        let mut img = vec![0f32; side * side];
        for k in start..start + length {
            let (r, c) = match class {
                0 => (offset, k),
                1 => (k, offset),
                2 => (k, k),
                _ => (k, side as isize - 1 - k),
            };
            img[r as usize * side + c as usize] = 1.0;
        }
        x.extend(img.iter().map(|&v| v + noise * normal(rng)));
        y.push(class as f32);
    }
    let mut data = classification(side * side, classes, x, y);
    data.image_shape = Some([1, side, side]);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_family_generates_deterministically_from_its_seed() {
        for (family, _) in FAMILIES {
            let a = generate("gen:x", family, &args(&[("n", "50")])).unwrap();
            let b = generate("gen:x", family, &args(&[("n", "50")])).unwrap();
            let c = generate("gen:x", family, &args(&[("n", "50"), ("seed", "1")])).unwrap();
            assert_eq!(a, b, "{family}");
            assert_ne!(
                a.rows.x, c.rows.x,
                "{family}: another seed should give other data"
            );
            assert_eq!(a.rows.n_rows(), 50);
            assert_eq!(a.rows.x.len(), 50 * a.n_features);
            assert!(a.rows.x.iter().all(|v| v.is_finite()));
            if a.task_type == TaskType::Classification {
                for class in 0..a.n_classes {
                    assert!(
                        a.rows.y.contains(&(class as f32)),
                        "{family}: class {class} is missing"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_parameters_are_named_in_the_error() {
        let err = generate("gen:spirals:q=1", "spirals", &args(&[("q", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown parameter `q`") && err.contains("turns"),
            "{err}"
        );
        let err = generate("gen:spirals:d=1.5", "spirals", &args(&[("d", "1.5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d=1.5"), "{err}");
        let err = generate("gen:nope", "nope", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown family `nope`") && err.contains("gauss-mix"),
            "{err}"
        );
        let err = generate("gen:shapes:n=x", "shapes", &args(&[("n", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x` is not a number"), "{err}");
    }

    #[test]
    fn teacher_classification_labels_follow_the_teacher() {
        // With no label noise every class should appear and labels should not be constant.
        let a = generate("gen:t", "teacher-cls", &args(&[("n", "600")])).unwrap();
        let counts: Vec<usize> = (0..3)
            .map(|c| a.rows.y.iter().filter(|&&y| y == c as f32).count())
            .collect();
        assert!(counts.iter().all(|&c| c > 20), "class counts {counts:?}");
    }
}
