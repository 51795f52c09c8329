//! Reading and writing `.npy` files. The fixtures were written by NumPy
//! (`tests/fixtures/metrics/npy/make_fixtures.py`); each contains
//! `A = arange(12).reshape(3, 4) * 0.5 - 1.25` in a different encoding.

use std::path::PathBuf;

use ndarray::{array, Array2};
use repatlas::npy::{read_npy, read_npy_values, write_npy, NpyError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics/npy")
        .join(name)
}

fn reference() -> Array2<f64> {
    Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64 * 0.5 - 1.25)
}

#[test]
fn reads_every_float_encoding() {
    for name in [
        "f16_c.npy",
        "bf16.npy",
        "f32_fortran.npy",
        "f64_big_endian.npy",
        "f64_v2.npy",
        "f64_v3.npy",
    ] {
        let a = read_npy(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a, reference(), "{name}");
        assert!(a.is_standard_layout(), "{name}");
    }
}

#[test]
fn reads_integers_as_floats() {
    assert_eq!(read_npy(&fixture("i64.npy")).unwrap(), reference() * 4.0);
}

#[test]
fn keeps_nan_and_inf_for_the_metric_checks() {
    let a = read_npy(&fixture("nan_inf.npy")).unwrap();
    assert!(a[[1, 2]].is_nan());
    assert_eq!(a[[2, 0]], f64::INFINITY);
    assert_eq!(a[[0, 1]], -0.75);
}

#[test]
fn rejects_vector_with_reshape_hint() {
    let err = read_npy(&fixture("vector.npy")).unwrap_err();
    assert!(matches!(err, NpyError::NotMatrix { ref shape, .. } if shape == &vec![4]));
    let message = err.to_string();
    assert!(message.contains("vector.npy"), "{message}");
    assert!(message.contains("reshape(-1, 1)"), "{message}");
}

#[test]
fn rejects_three_dimensional_array() {
    let err = read_npy(&fixture("tensor3.npy")).unwrap_err();
    assert!(matches!(err, NpyError::NotMatrix { ref shape, .. } if shape == &vec![2, 3, 4]));
}

#[test]
fn vectors_are_readable_as_values() {
    let (shape, values) = read_npy_values(&fixture("vector.npy")).unwrap();
    assert_eq!(shape, vec![4]);
    assert_eq!(values, vec![-1.25, -0.75, -0.25, 0.25]);
}

#[test]
fn rejects_opaque_void_dtype() {
    let err = read_npy(&fixture("void2.npy")).unwrap_err();
    assert!(matches!(err, NpyError::UnsupportedDtype { ref descr, .. } if descr == "|V2"));
    assert!(err.to_string().contains("astype"), "{err}");
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let a = array![[1.0, -2.5, f64::NAN], [1e300, -0.0, 3.0]];
    write_npy(&path, a.view()).unwrap();
    let b = read_npy(&path).unwrap();
    assert_eq!(b.dim(), (2, 3));
    for (x, y) in a.iter().zip(b.iter()) {
        assert!(x.to_bits() == y.to_bits(), "{x} vs {y}");
    }
    // The data starts on a 64-byte boundary, as NumPy writes it.
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes[10 + header_len - 1], b'\n');
}

#[test]
fn writes_transposed_views_in_logical_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    let a = reference();
    write_npy(&path, a.t()).unwrap();
    assert_eq!(read_npy(&path).unwrap(), a.t().to_owned());
}

#[test]
fn truncated_file_reports_byte_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.npy");
    let bytes = std::fs::read(fixture("f64_v2.npy")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let err = read_npy(&path).unwrap_err();
    assert!(
        matches!(
            err,
            NpyError::Truncated {
                expected: 96,
                actual: 88,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_file_without_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.npy");
    std::fs::write(&path, "x,y\n1,2\n").unwrap();
    assert!(matches!(
        read_npy(&path).unwrap_err(),
        NpyError::NotNpy { .. }
    ));
}

#[test]
fn missing_file_names_the_path() {
    let err = read_npy(&fixture("does_not_exist.npy")).unwrap_err();
    assert!(matches!(err, NpyError::Io { .. }));
    assert!(err.to_string().contains("does_not_exist.npy"));
}

#[test]
fn rejects_unknown_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.npy");
    let mut bytes = std::fs::read(fixture("f16_c.npy")).unwrap();
    bytes[6] = 9;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_npy(&path).unwrap_err(),
        NpyError::UnsupportedVersion { major: 9, .. }
    ));
}

#[test]
fn huge_claimed_shape_is_truncated_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.npy");
    let header =
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }";
    let mut padded = header.to_string();
    while !(10 + padded.len() + 1).is_multiple_of(64) {
        padded.push(' ');
    }
    padded.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&path, bytes).unwrap();
    let err = repatlas::npy::read_npy(&path).unwrap_err().to_string();
    assert!(err.contains("huge.npy"), "{err}");
}
