//! [`Space`]: what a sweep searches over, read from a SPACE file (TOML, INTERFACE.md): one key per
//! hyperparameter, each a fixed value or a distribution in the collections' syntax
//! (`{ choice = [...] }`, `{ int = [lo, hi] }`, `{ uniform = [lo, hi] }`, `{ log_uniform = [lo, hi] }`).
//!
//! | key | sets | values |
//! |---|---|---|
//! | `width` | hidden units per layer of the MLP | integers in 1..=65536 |
//! | `depth` | hidden layers of the MLP (0: linear) | integers in 0..=64 |
//! | `activation` | the MLP's nonlinearity | `"relu"`, `"tanh"`, `"gelu"` |
//! | `weight_decay` | L2 (SGD) or decoupled (AdamW) weight decay | numbers in [0, 1] |
//! | `batch_size` | minibatch size | integers in 1..=1000000 |
//! | `optimizer` | the inner optimizer | `"sgd"`, `"adamw"` |
//! | `lr` | the lr training starts from | numbers in (0, 10] |
//! | `momentum` | the momentum (AdamW: beta1) training starts from | numbers in [0, 0.99] |
//!
//! `lr` and `momentum` are where a run *starts*: a controller that sets them (the policy) starts
//! there and moves on; a fixed schedule written without `lr` (`warmup-cosine`) uses it throughout —
//! that is how the "no controller inside" ablation searches the learning rate. `width`, `depth`
//! and `activation` need an MLP task. Every problem is an error naming the key.

use std::collections::BTreeMap;

use hyperctl_collections::sample::Sampled;
use hyperctl_tasks::{Hyperparams, ModelSpec, OptimizerKind, TaskSpec};
use rand_chacha::ChaCha8Rng;

/// The keys a SPACE may set, in the order configurations print.
pub const KEYS: &[&str] = &[
    "width",
    "depth",
    "activation",
    "weight_decay",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
];

/// One drawn configuration: a value per key of the space.
pub type Config = BTreeMap<String, toml::Value>;

/// A search space: a distribution per hyperparameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    params: BTreeMap<String, Sampled>,
}

enum Kind {
    Int(i64, i64),
    Real { lo: f64, hi: f64, open_lo: bool },
    Word(&'static [&'static str]),
}

fn kind_of(key: &str) -> Kind {
    match key {
        "width" => Kind::Int(1, 65_536),
        "depth" => Kind::Int(0, 64),
        "batch_size" => Kind::Int(1, hyperctl_tasks::task::MAX_BATCH_SIZE as i64),
        "activation" => Kind::Word(&["relu", "tanh", "gelu"]),
        "optimizer" => Kind::Word(&["sgd", "adamw"]),
        "weight_decay" => Kind::Real {
            lo: 0.0,
            hi: 1.0,
            open_lo: false,
        },
        "lr" => Kind::Real {
            lo: 0.0,
            hi: 10.0,
            open_lo: true,
        },
        "momentum" => Kind::Real {
            lo: 0.0,
            hi: 0.99,
            open_lo: false,
        },
        _ => unreachable!("only known keys are checked"),
    }
}

fn check_value(key: &str, v: &toml::Value) -> Result<(), String> {
    match kind_of(key) {
        Kind::Int(lo, hi) => match v.as_integer() {
            Some(i) if (lo..=hi).contains(&i) => Ok(()),
            _ => Err(format!("expected integers in {lo}..={hi}, got {v}")),
        },
        Kind::Real { lo, hi, open_lo } => {
            let x = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
            match x {
                Some(x) if x <= hi && (x > lo || (!open_lo && x == lo)) => Ok(()),
                _ => Err(format!(
                    "expected numbers in {}{lo}, {hi}], got {v}",
                    if open_lo { "(" } else { "[" }
                )),
            }
        }
        Kind::Word(words) => match v.as_str() {
            Some(w) if words.contains(&w) => Ok(()),
            _ => Err(format!(
                "expected one of {}, got {v}",
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

fn check(key: &str, s: &Sampled) -> Result<(), String> {
    match (s, kind_of(key)) {
        (Sampled::Fixed(v), _) => check_value(key, v),
        (Sampled::Choice(vs), _) => vs.iter().try_for_each(|v| check_value(key, v)),
        (Sampled::Int(a, b), Kind::Int(..)) => {
            check_value(key, &toml::Value::Integer(*a))?;
            check_value(key, &toml::Value::Integer(*b))
        }
        (Sampled::Uniform(a, b) | Sampled::LogUniform(a, b), Kind::Real { .. }) => {
            check_value(key, &toml::Value::Float(*a))?;
            check_value(key, &toml::Value::Float(*b))
        }
        (Sampled::Int(..), _) => {
            Err("`int` is for integer keys; use choice, uniform or log_uniform".into())
        }
        (Sampled::Uniform(..) | Sampled::LogUniform(..), Kind::Int(..)) => {
            Err("an integer key takes `int` or `choice`".into())
        }
        (Sampled::Uniform(..) | Sampled::LogUniform(..), _) => {
            Err("a word key takes `choice` or one value".into())
        }
    }
}

impl Space {
    /// Parses a SPACE file's text; errors name the key and what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let e = e.to_string();
            e.lines().next().unwrap_or("not TOML").to_string()
        })?;
        if table.is_empty() {
            return Err(format!(
                "the space sets nothing; expected at least one of {}",
                KEYS.join(", ")
            ));
        }
        let mut params = BTreeMap::new();
        for (key, value) in &table {
            if !KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "unknown key `{key}`{}; a space sets {}",
                    hyperctl_collections::did_you_mean(key, KEYS),
                    KEYS.join(", ")
                ));
            }
            let sampled = Sampled::parse(value).map_err(|e| format!("`{key}`: {e}"))?;
            check(key, &sampled).map_err(|e| format!("`{key}`: {e}"))?;
            params.insert(key.clone(), sampled);
        }
        Ok(Self { params })
    }

    /// The keys this space sets.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }

    /// Draws one configuration.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> Config {
        self.params
            .iter()
            .map(|(k, s)| (k.clone(), s.draw(rng)))
            .collect()
    }

    /// Whether this space could draw `config` itself: the same keys, every value inside its
    /// distribution.
    pub fn admits(&self, config: &Config) -> bool {
        let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        config.len() == self.params.len()
            && self.params.iter().all(|(k, s)| {
                config.get(k).is_some_and(|v| match s {
                    Sampled::Fixed(f) => f == v,
                    Sampled::Choice(vs) => vs.contains(v),
                    Sampled::Int(a, b) => v.as_integer().is_some_and(|i| (*a..=*b).contains(&i)),
                    Sampled::Uniform(a, b) | Sampled::LogUniform(a, b) => {
                        num(v).is_some_and(|x| x >= *a && x <= *b)
                    }
                })
            })
    }

    /// The largest number `key` can take (`None` if the space does not set it or it is a word).
    pub fn largest(&self, key: &str) -> Option<f64> {
        let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        match self.params.get(key)? {
            Sampled::Fixed(v) => num(v),
            Sampled::Choice(vs) => vs.iter().filter_map(num).reduce(f64::max),
            Sampled::Int(_, hi) => Some(*hi as f64),
            Sampled::Uniform(_, hi) | Sampled::LogUniform(_, hi) => Some(*hi),
        }
    }

    /// The words `key` can take (`optimizer`, `activation`), if the space sets it.
    pub fn words(&self, key: &str) -> Vec<String> {
        match self.params.get(key) {
            Some(Sampled::Fixed(v)) => v.as_str().map(str::to_string).into_iter().collect(),
            Some(Sampled::Choice(vs)) => vs
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks that `base` can take every configuration of this space (an MLP for width, depth
    /// and activation), by applying one.
    pub fn check_task(&self, base: &TaskSpec) -> Result<(), String> {
        if !matches!(base.model, ModelSpec::Mlp { .. })
            && let Some(key) = ["width", "depth", "activation"]
                .into_iter()
                .find(|k| self.params.contains_key(*k))
        {
            return Err(format!(
                "`{key}` needs an MLP task; the task's model is `{}`",
                base.model
            ));
        }
        Ok(())
    }
}

/// `base` with `config` applied (the model rebuilt and checked through [`ModelSpec::parse`]).
pub fn apply(config: &Config, base: &TaskSpec) -> Result<TaskSpec, String> {
    let mut task = base.clone();
    let int = |k: &str| config.get(k).and_then(toml::Value::as_integer);
    let real = |k: &str| {
        config
            .get(k)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    if ["width", "depth", "activation"]
        .iter()
        .any(|k| config.contains_key(*k))
    {
        let ModelSpec::Mlp {
            width,
            depth,
            activation,
        } = base.model
        else {
            return Err(format!(
                "width/depth/activation need an MLP task, not `{}`",
                base.model
            ));
        };
        let act = config
            .get("activation")
            .and_then(toml::Value::as_str)
            .unwrap_or(activation.name());
        let width = int("width").map_or(width.max(1), |w| w as usize);
        let depth = int("depth").map_or(depth, |d| d as usize);
        task.model =
            ModelSpec::parse(&format!("mlp:{width}x{depth}:{act}")).map_err(|e| e.to_string())?;
    }
    if let Some(b) = int("batch_size") {
        task.batch_size = b as usize;
    }
    if let Some(wd) = real("weight_decay") {
        task.weight_decay = wd;
    }
    if let Some(name) = config.get("optimizer").and_then(toml::Value::as_str) {
        task.optimizer = name.parse::<OptimizerKind>()?;
        if task.optimizer != OptimizerKind::Sgd {
            task.nesterov = false;
        }
    }
    task.init = Hyperparams {
        lr: real("lr").unwrap_or(task.init.lr),
        momentum: real("momentum").unwrap_or(task.init.momentum),
    };
    task.validate().map_err(|e| e.to_string())?;
    Ok(task)
}

/// A configuration in one line, keys in [`KEYS`] order (`width=64 depth=2 lr=0.01`).
pub fn describe(config: &Config) -> String {
    KEYS.iter()
        .filter_map(|k| {
            config.get(*k).map(|v| match v {
                toml::Value::Float(f) => format!("{k}={}", short(*f)),
                v => format!("{k}={}", hyperctl_collections::sample::as_text(v)),
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A float in 4 significant digits (`0.0001234` → `1.234e-4`, `0.03125` → `0.03125`).
fn short(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e5) {
        let s = format!("{f:.3e}");
        let (m, e) = s.split_once('e').expect("exponent form");
        format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let s = format!("{f:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperctl_tasks::{DatasetSource, TaskType};
    use rand::SeedableRng;

    fn base() -> TaskSpec {
        TaskSpec::new(
            DatasetSource::parse("gen:gauss-mix").unwrap(),
            TaskType::Classification,
            ModelSpec::parse("mlp:32x2:tanh").unwrap(),
            5,
            32,
            0,
        )
    }

    #[test]
    fn a_space_draws_configurations_inside_its_distributions_and_applies_them() {
        let space = Space::parse(
            "width = { choice = [16, 64] }\ndepth = { int = [1, 3] }\nweight_decay = { log_uniform = [1e-6, 1e-2] }\noptimizer = \"adamw\"\nbatch_size = { choice = [16, 32] }",
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let c = space.draw(&mut rng);
            let t = apply(&c, &base()).unwrap();
            let ModelSpec::Mlp { width, depth, .. } = t.model else {
                panic!("an MLP")
            };
            assert!([16, 64].contains(&width));
            assert!((1..=3).contains(&depth));
            assert!((1e-6..=1e-2).contains(&t.weight_decay));
            assert_eq!(t.optimizer, OptimizerKind::Adamw);
            assert!([16, 32].contains(&t.batch_size));
            // The task's activation stays when the space does not set it.
            assert!(t.model.to_string().ends_with(":tanh"), "{}", t.model);
        }
        let same = space.draw(&mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(same, space.draw(&mut ChaCha8Rng::seed_from_u64(7)));
    }

    #[test]
    fn bad_spaces_are_errors_that_name_the_key() {
        for (text, words) in [
            (
                "widht = 3",
                &["unknown key `widht`", "did you mean `width`"][..],
            ),
            ("width = { int = [0, 8] }", &["`width`", "1..=65536"]),
            (
                "depth = { log_uniform = [1, 4] }",
                &["`depth`", "`int` or `choice`"],
            ),
            (
                "activation = { choice = [\"relu\", \"sigmoid\"] }",
                &["`activation`", "\"gelu\""],
            ),
            ("weight_decay = -1.0", &["`weight_decay`", "[0, 1]"]),
            ("lr = 0.0", &["`lr`", "(0, 10]"]),
            (
                "momentum = { uniform = [0.0, 1.5] }",
                &["`momentum`", "0.99"],
            ),
            ("batch_size = { int = [1, 100000000] }", &["`batch_size`"]),
            ("optimizer = { choice = [] }", &["`optimizer`", "non-empty"]),
            ("", &["sets nothing"]),
            ("width = [", &["TOML", ""]),
        ] {
            let err = Space::parse(text).unwrap_err();
            for w in words {
                assert!(
                    err.contains(w) || (*w == "TOML" && !err.is_empty()),
                    "{text:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn model_keys_need_an_mlp_task() {
        let space = Space::parse("width = 8").unwrap();
        let mut cnn = base();
        cnn.model = ModelSpec::CnnSmall;
        let err = space.check_task(&cnn).unwrap_err();
        assert!(err.contains("`width` needs an MLP task"), "{err}");
        assert!(space.check_task(&base()).is_ok());
    }
}
