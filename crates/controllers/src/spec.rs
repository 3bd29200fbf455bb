//! Parsing of controller SPEC strings: `name[:key=value,...]` with numeric values.

use std::collections::BTreeMap;

/// A bad controller SPEC; the message names the SPEC and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("controller `{spec}`: {reason}")]
pub struct SpecError {
    /// The SPEC as given.
    pub spec: String,
    /// What was wrong.
    pub reason: String,
}

impl SpecError {
    /// A new error about `spec`.
    pub fn new(spec: &str, reason: impl Into<String>) -> Self {
        Self {
            spec: spec.into(),
            reason: reason.into(),
        }
    }
}

/// A parsed SPEC: a name and numeric parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerSpec {
    /// The SPEC as given.
    pub raw: String,
    /// The controller name.
    pub name: String,
    /// Parameters by key.
    pub params: BTreeMap<String, f64>,
}

impl ControllerSpec {
    /// Parses `name[:key=value,...]`; values must be finite numbers, keys unique.
    pub fn parse(spec: &str) -> Result<Self, SpecError> {
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SpecError::new(spec, "expected `name[:key=value,...]`"));
        }
        let mut params = BTreeMap::new();
        if spec.contains(':') && rest.trim().is_empty() {
            return Err(SpecError::new(
                spec,
                "nothing after `:`; expected `name:key=value,...` or just `name`",
            ));
        }
        for pair in rest.split(',').filter(|_| !rest.is_empty()) {
            if pair.trim().is_empty() {
                return Err(SpecError::new(
                    spec,
                    "an empty parameter (two commas in a row, or one at an end); expected key=value pairs separated by single commas",
                ));
            }
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                SpecError::new(
                    spec,
                    format!("parameter `{pair}` is not of the form key=value"),
                )
            })?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(SpecError::new(
                    spec,
                    format!("parameter `{pair}` has no name before `=`"),
                ));
            }
            let number: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    SpecError::new(spec, format!("{key}=`{value}` is not a finite number"))
                })?;
            if params.insert(key.to_string(), number).is_some() {
                return Err(SpecError::new(
                    spec,
                    format!("parameter `{key}` is given twice"),
                ));
            }
        }
        Ok(Self {
            raw: spec.into(),
            name: name.into(),
            params,
        })
    }

    /// Fails on any parameter not in `allowed`, listing the allowed ones.
    pub fn only(&self, allowed: &[&str]) -> Result<(), SpecError> {
        match self.params.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(SpecError::new(
                &self.raw,
                format!(
                    "unknown parameter `{key}` for `{}`; expected: {}",
                    self.name,
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// An optional parameter that must lie in `[lo, hi]`.
    pub fn get_in(&self, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, SpecError> {
        match self.params.get(key) {
            Some(&v) if !(lo..=hi).contains(&v) => Err(SpecError::new(
                &self.raw,
                if hi == f64::MAX || hi == f64::INFINITY {
                    format!("{key}={v} must be at least {lo}")
                } else {
                    format!("{key}={v} is outside [{lo}, {hi}]")
                },
            )),
            other => Ok(other.copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_clear_errors() {
        let s = ControllerSpec::parse("constant:lr=0.1,momentum=0.9").unwrap();
        assert_eq!(
            (s.name.as_str(), s.params["lr"], s.params["momentum"]),
            ("constant", 0.1, 0.9)
        );
        assert!(ControllerSpec::parse("plateau").unwrap().params.is_empty());
        for (bad, expected) in [
            ("constant:lr", "not of the form key=value"),
            ("constant:lr=abc", "`abc` is not a finite number"),
            ("constant:lr=1,lr=2", "given twice"),
            ("", "expected `name"),
            ("constant:lr=inf", "not a finite number"),
            ("constant:,,,", "an empty parameter"),
            ("constant:lr=0.1,,momentum=0.9", "an empty parameter"),
            ("constant:lr=0.1,", "an empty parameter"),
            ("constant:", "nothing after `:`"),
            ("constant:=0.1", "has no name"),
        ] {
            let err = ControllerSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
        let s = ControllerSpec::parse("constant:lr=-1").unwrap();
        let err = s.get_in("lr", 0.0, f64::MAX).unwrap_err().to_string();
        assert!(
            err.contains("lr=-1 must be at least 0") && err.len() < 80,
            "{err}"
        );
    }
}
