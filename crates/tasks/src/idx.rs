//! Loader for `idx:DIR` datasets: a directory with the four MNIST-format files
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each raw or gzipped (`.gz`, preferred when both exist).
//!
//! Format: a big-endian u32 magic `0x0000_08NN` (`08` = unsigned bytes, `NN` = number of
//! dimensions), one big-endian u32 per dimension, then the values row-major. Pixels are scaled to
//! [0, 1]; the `t10k` files become the predefined test part. Errors name the file and the byte
//! offset (in the decompressed stream).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::csv_data::open_maybe_gz;
use crate::data::{Dataset, Table, TaskType};
use crate::{Error, Result};

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses one IDX file (raw or `.gz`) of unsigned bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let mut bytes = Vec::new();
    open_maybe_gz(path)?
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: path.into(),
            error: source,
        })?;
    parse_idx(path, &bytes)
}

fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    let err = |offset: usize, reason: String| Error::Idx {
        path: path.into(),
        offset: offset as u64,
        reason,
    };
    let u32_at = |offset: usize| -> Result<u32> {
        let b = bytes.get(offset..offset + 4).ok_or_else(|| {
            err(
                offset,
                format!(
                    "file ends after {} bytes; expected a 4-byte header field",
                    bytes.len()
                ),
            )
        })?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = u32_at(0)?;
    let (zeros, dtype, n_dims) = (magic >> 16, (magic >> 8) & 0xff, (magic & 0xff) as usize);
    if zeros != 0 || dtype != 0x08 || !(1..=4).contains(&n_dims) {
        return Err(err(
            0,
            format!("bad magic 0x{magic:08x}; expected 0x00000801..0x00000804 (unsigned-byte IDX)"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims);
    for d in 0..n_dims {
        dims.push(u32_at(4 + 4 * d)? as usize);
    }
    let header = 4 + 4 * n_dims;
    let available = bytes.len() - header;
    // A header may claim more items than any file holds (0xFFFFFFFF^3 overflows usize): the
    // checked product fails then, and any product beyond the bytes read is a truncation.
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            err(
                4,
                format!(
                    "dimensions {dims:?} claim more than {} items; the file has {available} data bytes",
                    usize::MAX
                ),
            )
        })?;
    if available < expected {
        return Err(err(
            bytes.len(),
            format!("truncated: dimensions {dims:?} need {expected} data bytes, found {available}"),
        ));
    }
    if available > expected {
        return Err(err(
            header + expected,
            format!(
                "{} unexpected trailing bytes after the data",
                available - expected
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.exists() {
        Ok(gz)
    } else if raw.exists() {
        Ok(raw)
    } else {
        Err(Error::Io {
            path: raw,
            error: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither {stem} nor {stem}.gz exists"),
            ),
        })
    }
}

fn load_part(dir: &Path, prefix: &str) -> Result<(Table, [usize; 3])> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let images = read_idx(&images_path)?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let labels = read_idx(&labels_path)?;
    if images.dims.len() != 3 {
        return Err(Error::Idx {
            path: images_path,
            offset: 0,
            reason: format!(
                "expected 3 dimensions (n, rows, cols), found {:?}",
                images.dims
            ),
        });
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(Error::Idx {
            path: labels_path,
            offset: 4,
            reason: format!(
                "expected {} labels to match the images, found dimensions {:?}",
                images.dims[0], labels.dims
            ),
        });
    }
    let x = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let y = labels.data.iter().map(|&l| l as f32).collect();
    Ok((Table { x, y }, [1, images.dims[1], images.dims[2]]))
}

/// Loads an MNIST-format directory as a 10-class (or K-class) image classification dataset.
pub fn load_idx_dir(dir: &Path) -> Result<Dataset> {
    let (rows, shape) = load_part(dir, "train")?;
    let (test, test_shape) = load_part(dir, "t10k")?;
    if shape != test_shape {
        return Err(Error::InvalidData {
            name: dir.display().to_string(),
            reason: format!("train images are {shape:?} but t10k images are {test_shape:?}"),
        });
    }
    let n_classes = crate::data::count_classes(&dir.display().to_string(), &rows.y)?;
    if let Some(&bad) = test.y.iter().find(|&&y| y as usize >= n_classes) {
        return Err(Error::InvalidData {
            name: dir.display().to_string(),
            reason: format!("t10k label {bad} is not among the {n_classes} train classes"),
        });
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "idx".into());
    Ok(Dataset {
        name,
        task_type: TaskType::Classification,
        n_features: shape.iter().product(),
        n_classes,
        image_shape: Some(shape),
        rows,
        test: Some(test),
    })
}

/// Writes an IDX file of unsigned bytes (raw). Used by tests and by tools that make small fixtures.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    let mut bytes = (0x0800u32 | dims.len() as u32).to_be_bytes().to_vec();
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hyperctl-idx-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_fixture(dir: &Path, n: usize) {
        let pixels: Vec<u8> = (0..n * 16).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        for prefix in ["train", "t10k"] {
            write_idx(
                &dir.join(format!("{prefix}-images-idx3-ubyte")),
                &[n, 4, 4],
                &pixels,
            )
            .unwrap();
            write_idx(
                &dir.join(format!("{prefix}-labels-idx1-ubyte")),
                &[n],
                &labels,
            )
            .unwrap();
        }
    }

    #[test]
    fn loads_a_written_idx_directory() {
        let dir = tmp_dir("ok");
        write_fixture(&dir, 12);
        let d = load_idx_dir(&dir).unwrap();
        assert_eq!(
            (d.n_features, d.n_classes, d.image_shape),
            (16, 3, Some([1, 4, 4]))
        );
        assert_eq!(d.rows.n_rows(), 12);
        assert_eq!(d.test.as_ref().unwrap().n_rows(), 12);
        assert_eq!(d.rows.x[1], 7.0 / 255.0);
    }

    #[test]
    fn bad_magic_and_truncation_give_errors_with_file_and_offset() {
        let dir = tmp_dir("bad");
        write_fixture(&dir, 4);
        let images = dir.join("train-images-idx3-ubyte");
        let mut bytes = std::fs::read(&images).unwrap();
        bytes[2] = 0x0d; // 0x00000d03: a float IDX, which we do not accept.
        std::fs::write(&images, &bytes).unwrap();
        let err = load_idx_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte")
                && err.contains("offset 0")
                && err.contains("bad magic"),
            "{err}"
        );

        bytes[2] = 0x08;
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&images, &bytes).unwrap();
        let err = load_idx_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("truncated") && err.contains("need 64 data bytes, found 59"),
            "{err}"
        );

        std::fs::write(&images, [0u8, 0, 8]).unwrap();
        let err = load_idx_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("file ends after 3 bytes"), "{err}");

        let err = load_idx_dir(&dir.join("missing")).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    }

    #[test]
    fn shared_mnist_loads_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
        if !dir.join("train-images-idx3-ubyte.gz").exists() {
            eprintln!(
                "skipping: {} not found (../shared/data is optional)",
                dir.display()
            );
            return;
        }
        let d = load_idx_dir(&dir).unwrap();
        assert_eq!(
            (
                d.rows.n_rows(),
                d.test.as_ref().unwrap().n_rows(),
                d.n_classes
            ),
            (60000, 10000, 10)
        );
        let mean = d.rows.x.iter().map(|&v| v as f64).sum::<f64>() / d.rows.x.len() as f64;
        assert!((mean - 0.1307).abs() < 1e-3, "MNIST pixel mean {mean}");
    }
}
