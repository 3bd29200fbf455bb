//! The collection file as serde types, and the reader that turns one entry into its type while
//! reporting every unknown key (with a suggestion) and the first invalid value, each at its line.
//!
//! The file is parsed once, into a spanned tree; each entry is then deserialized from its own
//! subtree, so one broken entry does not hide the problems of the others. Unknown keys are
//! collected with `serde_ignored` rather than refused with `deny_unknown_fields`, which would stop
//! at the first one.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use toml::Spanned;
use toml::de::DeValue;

use crate::sample::Sampled;

/// The keys of a collection that hold `[[...]]` entries.
pub(crate) const ENTRY_KEYS: [&str; 3] = ["task", "template", "include"];

/// The top level of a collection file (entries are read one by one, see [`read`]).
#[derive(Deserialize, Default)]
pub(crate) struct Header {
    pub name: Option<String>,
    #[serde(rename = "description")]
    pub _description: Option<String>,
    pub seed: Option<u64>,
    #[serde(rename = "task")]
    pub _task: Option<Vec<IgnoredAny>>,
    #[serde(rename = "template")]
    pub _template: Option<Vec<IgnoredAny>>,
    #[serde(rename = "include")]
    pub _include: Option<Vec<IgnoredAny>>,
}

/// The fields that make a task: an explicit `[[task]]` (which also has `id` and `split`), or one
/// draw of a template.
#[derive(Deserialize, Default)]
pub(crate) struct TaskFields {
    pub id: Option<String>,
    pub split: Option<String>,
    pub dataset: Option<String>,
    pub task_type: Option<String>,
    pub model: Option<String>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub group: Option<String>,
    pub init_lr: Option<f64>,
    pub init_momentum: Option<f64>,
    pub seed: Option<u64>,
    pub val_fraction: Option<f64>,
    pub test_fraction: Option<f64>,
    pub train_fraction: Option<f64>,
    pub max_train_rows: Option<usize>,
    pub weight_decay: Option<f64>,
    pub nesterov: Option<bool>,
    pub steps_per_decision: Option<usize>,
    pub optimizer: Option<String>,
}

/// A `[[template]]`: `count` tasks, each field a value or a distribution.
#[derive(Deserialize)]
pub(crate) struct TemplateEntry {
    pub name: Option<String>,
    pub split: Option<String>,
    pub splits: Option<BTreeMap<String, f64>>,
    pub count: Option<usize>,
    pub dataset: Option<DatasetDraw>,
    pub task_type: Option<String>,
    pub group: Option<String>,
    pub model: Option<ModelDraw>,
    pub models: Option<Vec<String>>,
    pub epochs: Option<Sampled>,
    pub batch_size: Option<Sampled>,
    pub init_lr: Option<Sampled>,
    pub init_momentum: Option<Sampled>,
    pub seed: Option<Sampled>,
    pub val_fraction: Option<Sampled>,
    pub test_fraction: Option<Sampled>,
    pub train_fraction: Option<Sampled>,
    pub max_train_rows: Option<Sampled>,
    pub weight_decay: Option<Sampled>,
    pub nesterov: Option<Sampled>,
    pub steps_per_decision: Option<Sampled>,
    pub optimizer: Option<Sampled>,
}

impl TemplateEntry {
    /// The sampled task fields, in the order each task draws them (the order is part of the
    /// expansion: changing it changes every template's tasks; a field left out draws nothing,
    /// so fields added at the end leave older templates' tasks as they were).
    pub fn sampled(&self) -> [(&'static str, Option<&Sampled>); 13] {
        [
            ("epochs", self.epochs.as_ref()),
            ("batch_size", self.batch_size.as_ref()),
            ("init_lr", self.init_lr.as_ref()),
            ("init_momentum", self.init_momentum.as_ref()),
            ("seed", self.seed.as_ref()),
            ("val_fraction", self.val_fraction.as_ref()),
            ("test_fraction", self.test_fraction.as_ref()),
            ("train_fraction", self.train_fraction.as_ref()),
            ("max_train_rows", self.max_train_rows.as_ref()),
            ("weight_decay", self.weight_decay.as_ref()),
            ("nesterov", self.nesterov.as_ref()),
            ("steps_per_decision", self.steps_per_decision.as_ref()),
            ("optimizer", self.optimizer.as_ref()),
        ]
    }
}

/// A template's `dataset` table. A generated family's parameters (`n`, `d`, ...) are not fields:
/// they depend on the family, and the template reads them from the unknown keys.
#[derive(Deserialize)]
pub(crate) struct DatasetDraw {
    pub generated: Option<String>,
    pub files: Option<Vec<String>>,
    pub manifest: Option<String>,
    pub task: Option<String>,
    pub min_rows: Option<usize>,
    pub max_rows: Option<usize>,
    pub min_features: Option<usize>,
    pub max_features: Option<usize>,
    pub exclude: Option<Vec<String>>,
}

/// A template's `model`: one spec, or a grid to draw from.
pub(crate) enum ModelDraw {
    Spec(String),
    Grid(ModelGrid),
}

/// `model = { widths, depths, activations }`.
#[derive(Deserialize)]
pub(crate) struct ModelGrid {
    pub widths: Option<Vec<usize>>,
    pub depths: Option<Vec<usize>>,
    pub activations: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for ModelDraw {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelVisitor;
        impl<'de> Visitor<'de> for ModelVisitor {
            type Value = ModelDraw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a model spec or a table { widths, depths, activations }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ModelDraw, E> {
                Ok(ModelDraw::Spec(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelDraw, A::Error> {
                // Through the map itself, so unknown keys of the grid are still seen.
                ModelGrid::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ModelDraw::Grid)
            }
        }
        deserializer.deserialize_any(ModelVisitor)
    }
}

/// An `[[include]]`: another collection's tasks.
#[derive(Deserialize)]
pub(crate) struct IncludeEntry {
    pub collection: Option<String>,
    pub splits: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub as_split: Option<String>,
    pub templates: Option<Vec<String>>,
}

/// A path into the tree: table keys, and array indexes written as numbers.
pub(crate) type KeyPath = Vec<String>;

/// The first invalid value of an entry.
pub(crate) struct Invalid {
    /// Where, as serde names it (`epochs`, `model.widths[0]`); empty for the entry itself.
    pub path: String,
    pub segments: KeyPath,
    pub message: String,
    pub span: Option<Range<usize>>,
}

/// What reading one entry found: the value (or its first invalid field) and every key no field
/// took, by path.
pub(crate) struct Read<T> {
    pub value: Result<T, Invalid>,
    pub unknown: Vec<KeyPath>,
}

/// Deserializes `T` from one subtree of the file.
pub(crate) fn read<'de, T: Deserialize<'de>>(value: &Spanned<DeValue<'de>>) -> Read<T> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path| {
        let mut segments = Vec::new();
        ignored_segments(&path, &mut segments);
        unknown.push(segments);
    };
    let deserializer =
        serde_ignored::Deserializer::new(value.clone().into_deserializer(), &mut note);
    let value = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let segments = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        Invalid {
            path: if e.path().iter().next().is_some() {
                e.path().to_string()
            } else {
                String::new()
            },
            segments,
            message: e.inner().message().to_string(),
            span: e.inner().span(),
        }
    });
    Read { value, unknown }
}

fn ignored_segments(path: &serde_ignored::Path, out: &mut KeyPath) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(index.to_string());
        }
        Path::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(key.clone());
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_segments(parent, out),
    }
}

/// The value at `path` below `value`, and the offset of its key (of the value itself for the
/// root and array items).
pub(crate) fn lookup<'a, 'de>(
    value: &'a Spanned<DeValue<'de>>,
    path: &[String],
) -> Option<(&'a Spanned<DeValue<'de>>, usize)> {
    let mut here = (value, value.span().start);
    for segment in path {
        here = match here.0.get_ref() {
            DeValue::Table(table) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == segment.as_str())
                .map(|(k, v)| (v, k.span().start))?,
            DeValue::Array(items) => {
                let item = items.get(segment.parse::<usize>().ok()?)?;
                (item, item.span().start)
            }
            _ => return None,
        };
    }
    Some(here)
}

/// The string at `path` below `value`, if there is one.
pub(crate) fn raw_str<'a>(value: &'a Spanned<DeValue<'_>>, path: &[&str]) -> Option<&'a str> {
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    match lookup(value, &path)?.0.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// The field names of a serde-derived struct: what it accepts, for "did you mean" suggestions.
/// (The derive hands them to `deserialize_struct`; a probe that takes them and stops is the whole
/// trick.)
pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    use serde::de::value::Error;
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_lists_what_a_struct_accepts() {
        let fields = fields_of::<IncludeEntry>();
        assert_eq!(
            fields,
            ["collection", "splits", "prefix", "as_split", "templates"]
        );
        assert!(fields_of::<Header>().contains(&"description"));
        assert!(fields_of::<ModelGrid>().contains(&"depths"));
    }

    #[test]
    fn read_names_every_unknown_key_and_the_invalid_field() {
        let text = "[t]\nwidths = [8]\ndepth = [1]\nactivation = \"relu\"\n";
        let doc = toml::de::DeTable::parse(text).unwrap();
        let t = &doc.get_ref().iter().next().unwrap().1;
        let grid = read::<ModelGrid>(t);
        assert!(grid.value.is_ok());
        assert_eq!(
            grid.unknown,
            [vec!["activation".to_string()], vec!["depth".to_string()]]
        );
        let (_, offset) = lookup(t, &grid.unknown[1]).unwrap();
        assert_eq!(&text[offset..offset + 5], "depth");

        let text = "[t]\nwidths = [8, \"x\"]\n";
        let doc = toml::de::DeTable::parse(text).unwrap();
        let bad = read::<ModelGrid>(doc.get_ref().iter().next().unwrap().1)
            .value
            .err()
            .unwrap();
        assert_eq!(bad.path, "widths[1]");
        assert!(bad.message.contains("expected usize"), "{}", bad.message);
        assert_eq!(&text[bad.span.unwrap()], "\"x\"");
    }
}
