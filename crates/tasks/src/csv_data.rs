//! Loader for `csv:PATH` datasets: a `.csv` or `.csv.gz` file with a header row, numeric cells
//! only, and the target in the **last** column (as in `../shared/data/tabular`).
//!
//! Errors name the file and the 1-based line (the header is line 1): a ragged row, a non-numeric or
//! non-finite cell, an empty file, a header without data rows, or a classification target that is
//! not a class index.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::data::{Dataset, Table, TaskType, count_classes};
use crate::{Error, Result};

/// Opens `path`, transparently gunzipping files whose name ends in `.gz`.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        error: source,
    })?;
    let reader = BufReader::new(file);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::GzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Loads a CSV dataset for the given task type.
pub fn load_csv(path: &Path, task_type: TaskType) -> Result<Dataset> {
    let csv_err = |line: u64, reason: String| Error::Csv {
        path: path.into(),
        line,
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(open_maybe_gz(path)?);
    let map_csv = |e: csv::Error| {
        let line = e.position().map_or(1, |p| p.line());
        let message = e.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => Error::Io {
                path: path.into(),
                error: source,
            },
            csv::ErrorKind::Utf8 { .. } => Error::Csv {
                path: path.into(),
                line,
                reason: "not UTF-8 text; expected a CSV file (is it binary, or compressed without a .gz name?)".into(),
            },
            _ => Error::Csv {
                path: path.into(),
                line,
                reason: message,
            },
        }
    };
    let header = reader.headers().map_err(map_csv)?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(csv_err(
            1,
            "empty file: expected a header row of column names".into(),
        ));
    }
    if header.len() < 2 {
        return Err(csv_err(
            1,
            format!(
                "header has {} column; expected at least one feature and the target",
                header.len()
            ),
        ));
    }
    let n_cols = header.len();
    let n_features = n_cols - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(map_csv(e)),
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() == 1 && record[0].is_empty() {
            continue; // A blank line.
        }
        if record.len() != n_cols {
            return Err(csv_err(
                line,
                format!("row has {} cells; the header has {n_cols}", record.len()),
            ));
        }
        for (col, cell) in record.iter().enumerate() {
            let value: f32 = cell.parse().map_err(|_| {
                csv_err(
                    line,
                    format!(
                        "column {} (`{}`): `{cell}` is not a number",
                        col + 1,
                        &header[col]
                    ),
                )
            })?;
            if !value.is_finite() {
                return Err(csv_err(
                    line,
                    format!(
                        "column {} (`{}`): `{cell}` is not finite",
                        col + 1,
                        &header[col]
                    ),
                ));
            }
            if col < n_features {
                x.push(value);
            } else {
                y.push(value);
            }
        }
    }
    if y.is_empty() {
        return Err(csv_err(1, "the file has a header but no data rows".into()));
    }
    let name = crate::DatasetSource::Csv(path.to_path_buf()).short_name();
    let n_classes = match task_type {
        TaskType::Classification => count_classes(&name, &y).map_err(|e| match e {
            Error::InvalidData { reason, .. } => Error::InvalidData {
                name: path.display().to_string(),
                reason: format!("target column `{}`: {reason}", &header[n_features]),
            },
            other => other,
        })?,
        TaskType::Regression => 1,
    };
    Ok(Dataset {
        name,
        task_type,
        n_features,
        n_classes,
        image_shape: None,
        rows: Table { x, y },
        test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_tmp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hyperctl-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn loads_plain_and_gzipped_csv_with_last_column_as_target() {
        let text = b"a,b,target\n1,2,0\n3,4,1\n5,6,2\n";
        let plain = write_tmp("ok.csv", text);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        let zipped = write_tmp("ok.csv.gz", &gz.finish().unwrap());
        for path in [plain, zipped] {
            let d = load_csv(&path, TaskType::Classification).unwrap();
            assert_eq!((d.n_features, d.n_classes, d.rows.n_rows()), (2, 3, 3));
            assert_eq!(d.rows.x, vec![1., 2., 3., 4., 5., 6.]);
            assert_eq!(d.rows.y, vec![0., 1., 2.]);
            assert_eq!(d.name, "ok");
        }
    }

    #[test]
    fn malformed_csv_files_give_errors_naming_file_and_line() {
        let cases: [(&str, &[u8], &str); 6] = [
            (
                "ragged.csv",
                b"a,b,t\n1,2,0\n1,2\n",
                "line 3: row has 2 cells; the header has 3",
            ),
            (
                "text.csv",
                b"a,b,t\n1,2,0\n1,x,1\n",
                "line 3: column 2 (`b`): `x` is not a number",
            ),
            ("empty.csv", b"", "line 1: empty file"),
            (
                "norows.csv",
                b"a,b,t\n",
                "line 1: the file has a header but no data rows",
            ),
            (
                "nan.csv",
                b"a,b,t\n1,NaN,0\n",
                "line 2: column 2 (`b`): `NaN` is not finite",
            ),
            ("badclass.csv", b"a,t\n1,0.5\n2,1\n", "target column `t`"),
        ];
        for (name, content, expected) in cases {
            let path = write_tmp(name, content);
            let err = load_csv(&path, TaskType::Classification)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name),
                "{name}: error should name the file: {err}"
            );
            assert!(
                err.contains(expected),
                "{name}: expected `{expected}` in `{err}`"
            );
        }
        let err = load_csv(Path::new("/nonexistent/x.csv"), TaskType::Regression).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn regression_targets_may_be_any_finite_value() {
        let path = write_tmp("reg.csv", b"a,t\n1,0.25\n2,-3.5\n");
        let d = load_csv(&path, TaskType::Regression).unwrap();
        assert_eq!((d.n_classes, d.rows.y.clone()), (1, vec![0.25, -3.5]));
    }

    #[test]
    fn shared_tabular_files_load_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tabular");
        let iris = dir.join("sklearn_iris.csv.gz");
        if !iris.exists() {
            eprintln!(
                "skipping: {} not found (../shared/data is optional)",
                iris.display()
            );
            return;
        }
        let d = load_csv(&iris, TaskType::Classification).unwrap();
        assert_eq!((d.rows.n_rows(), d.n_features, d.n_classes), (150, 4, 3));
    }
}
