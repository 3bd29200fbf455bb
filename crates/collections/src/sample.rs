//! Sampled values in templates: a fixed value, or `{ choice = [...] }`, `{ uniform = [lo, hi] }`,
//! `{ log_uniform = [lo, hi] }`, `{ int = [lo, hi] }` (inclusive).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A value drawn per task from a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampled {
    /// Always this value.
    Fixed(toml::Value),
    /// One of these, uniformly.
    Choice(Vec<toml::Value>),
    /// Uniform real in [lo, hi].
    Uniform(f64, f64),
    /// Log-uniform real in [lo, hi] (both > 0).
    LogUniform(f64, f64),
    /// Uniform integer in lo..=hi.
    Int(i64, i64),
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn pair(v: &toml::Value, what: &str) -> Result<(f64, f64), String> {
    let arr = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| format!("`{what}` expects [lo, hi]"))?;
    let (lo, hi) = (number(&arr[0]), number(&arr[1]));
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo <= hi => Ok((lo, hi)),
        _ => Err(format!("`{what}` expects two numbers lo <= hi")),
    }
}

impl Sampled {
    /// Parses a template value. Tables with one of the distribution keys are distributions; any
    /// other value is fixed.
    pub fn parse(v: &toml::Value) -> Result<Self, String> {
        let Some(table) = v.as_table() else {
            return Ok(Sampled::Fixed(v.clone()));
        };
        if table.len() != 1 {
            return Err(
                "a distribution has exactly one of choice, uniform, log_uniform, int".into(),
            );
        }
        let (key, value) = table.iter().next().expect("one entry");
        match key.as_str() {
            "choice" => {
                let values = value
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or("`choice` expects a non-empty list")?;
                Ok(Sampled::Choice(values.clone()))
            }
            "uniform" => pair(value, "uniform").map(|(lo, hi)| Sampled::Uniform(lo, hi)),
            "log_uniform" => match pair(value, "log_uniform")? {
                (lo, hi) if lo > 0.0 => Ok(Sampled::LogUniform(lo, hi)),
                _ => Err("`log_uniform` needs lo > 0".into()),
            },
            "int" => match pair(value, "int")? {
                (lo, hi) if lo.fract() == 0.0 && hi.fract() == 0.0 => {
                    Ok(Sampled::Int(lo as i64, hi as i64))
                }
                _ => Err("`int` expects two integers".into()),
            },
            other => Err(format!(
                "unknown distribution `{other}`{}; expected choice, uniform, log_uniform or int",
                crate::did_you_mean(other, &["choice", "uniform", "log_uniform", "int"])
            )),
        }
    }

    /// Draws one value.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> toml::Value {
        match self {
            Sampled::Fixed(v) => v.clone(),
            Sampled::Choice(values) => values[rng.random_range(0..values.len())].clone(),
            Sampled::Uniform(lo, hi) => toml::Value::Float(lo + (hi - lo) * rng.random::<f64>()),
            Sampled::LogUniform(lo, hi) => {
                toml::Value::Float((lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f64>()).exp())
            }
            Sampled::Int(lo, hi) => toml::Value::Integer(rng.random_range(*lo..=*hi)),
        }
    }

    /// Every value this can produce is a number within [lo, hi] (checked without drawing).
    pub fn check_range(&self, lo: f64, hi: f64) -> Result<(), String> {
        let within = |v: f64| v >= lo && v <= hi;
        let ok = match self {
            Sampled::Fixed(v) => number(v).is_some_and(within),
            Sampled::Choice(values) => values.iter().all(|v| number(v).is_some_and(within)),
            Sampled::Uniform(a, b) | Sampled::LogUniform(a, b) => within(*a) && within(*b),
            Sampled::Int(a, b) => within(*a as f64) && within(*b as f64),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("values must be numbers in [{lo}, {hi}]"))
        }
    }
}

/// A template field as written: its value, read as [`Sampled::parse`] reads it.
impl<'de> serde::Deserialize<'de> for Sampled {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        Sampled::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// A drawn value as f64.
pub fn as_f64(v: &toml::Value) -> Option<f64> {
    number(v)
}

/// A drawn value as text (numbers printed as written).
pub fn as_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}
