//! Reading and writing NumPy `.npy` matrices.
//!
//! The format (NumPy's `numpy.lib.format`, versions 1.0, 2.0 and 3.0) is a
//! magic string, a version, a little-endian header length (2 bytes in 1.0,
//! 4 bytes in 2.0 and 3.0), a Python dict literal with `descr`,
//! `fortran_order` and `shape`, and the raw data.
//!
//! [`read_npy`] accepts 2-D arrays of float (`f2`, `f4`, `f8`, either byte
//! order), integer (`i1`–`i8`, `u1`–`u8`) and bfloat16 data in C or Fortran
//! order, and widens every value to f64. NaN and infinite values are kept
//! so that the metric checks can report them with their row and column.
//!
//! NumPy has no bfloat16 dtype. `np.save` on an `ml_dtypes.bfloat16` array
//! writes the opaque descr `<V2`, which says nothing about the contents, so
//! it is rejected. The workaround given in ml_dtypes issue #41 writes the
//! header itself with `descr = str(array.dtype)`, that is `'bfloat16'`, in
//! native (little-endian on x86 and ARM) byte order; that descr is read as
//! bfloat16.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, ArrayView2, IxDyn, ShapeBuilder};
use thiserror::Error;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Errors of `.npy` input and output; each names the file.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file does not start with the `.npy` magic string.
    #[error(
        "{path} is not a .npy file (missing the \\x93NUMPY magic string); save it with numpy.save"
    )]
    NotNpy {
        /// The file.
        path: PathBuf,
    },
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error(
        "{path} uses .npy format version {major}.{minor}; only 1.0, 2.0 and 3.0 are supported"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// A header that is not a valid `.npy` dict.
    #[error("{path} has an invalid .npy header ({detail}): {header}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
        /// The header text.
        header: String,
    },
    /// A dtype that cannot be widened to f64.
    #[error("{path} has dtype '{descr}', which cannot be read as numbers; {fix}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The descr string.
        descr: String,
        /// What to do instead.
        fix: &'static str,
    },
    /// An array that is not 2-D.
    #[error(
        "{path} holds an array of shape {shape:?}, but a representation must be 2-D \
         (one row per stimulus); {fix}"
    )]
    NotMatrix {
        /// The file.
        path: PathBuf,
        /// The shape in the header.
        shape: Vec<usize>,
        /// What to do instead.
        fix: &'static str,
    },
    /// Fewer data bytes than the header promises.
    #[error("{path} is truncated: the header promises {expected} data bytes but {actual} follow")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the shape and dtype need.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
}

/// How one element is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Element {
    Float {
        bytes: usize,
        big_endian: bool,
    },
    Int {
        bytes: usize,
        big_endian: bool,
        signed: bool,
    },
    BFloat16,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::Float { bytes, .. } | Element::Int { bytes, .. } => bytes,
            Element::BFloat16 => 2,
        }
    }

    fn parse(descr: &str, path: &Path) -> Result<Element, NpyError> {
        let unsupported = |fix| NpyError::UnsupportedDtype {
            path: path.to_path_buf(),
            descr: descr.to_string(),
            fix,
        };
        if descr == "bfloat16" {
            return Ok(Element::BFloat16);
        }
        if descr.len() < 3 {
            return Err(unsupported("save the array as float32 or float64"));
        }
        let (order, kind, size) = (&descr[..1], &descr[1..2], &descr[2..]);
        let big_endian = match order {
            "<" | "|" | "=" => false,
            ">" => true,
            _ => return Err(unsupported("save the array as float32 or float64")),
        };
        let bytes: usize = size
            .parse()
            .map_err(|_| unsupported("save the array as float32 or float64"))?;
        match (kind, bytes) {
            ("f", 2 | 4 | 8) => Ok(Element::Float { bytes, big_endian }),
            ("i", 1 | 2 | 4 | 8) => Ok(Element::Int {
                bytes,
                big_endian,
                signed: true,
            }),
            ("u", 1 | 2 | 4 | 8) => Ok(Element::Int {
                bytes,
                big_endian,
                signed: false,
            }),
            ("V", 2) => Err(unsupported(
                "a 2-byte void dtype is what np.save writes for ml_dtypes.bfloat16 but could be \
                 anything; save with arr.astype(numpy.float32), or write the header with \
                 descr 'bfloat16'",
            )),
            _ => Err(unsupported("save the array as float32 or float64")),
        }
    }

    fn decode(self, b: &[u8]) -> f64 {
        fn array<const N: usize>(b: &[u8], big: bool) -> [u8; N] {
            let mut a = [0u8; N];
            a.copy_from_slice(&b[..N]);
            if big {
                a.reverse();
            }
            a
        }
        match self {
            Element::Float {
                bytes: 8,
                big_endian,
            } => f64::from_le_bytes(array(b, big_endian)),
            Element::Float {
                bytes: 4,
                big_endian,
            } => f32::from_le_bytes(array(b, big_endian)) as f64,
            Element::Float { big_endian, .. } => {
                half::f16::from_bits(u16::from_le_bytes(array(b, big_endian))).to_f64()
            }
            Element::BFloat16 => {
                half::bf16::from_bits(u16::from_le_bytes(array(b, false))).to_f64()
            }
            Element::Int {
                bytes,
                big_endian,
                signed,
            } => decode_int(b, bytes, big_endian, signed),
        }
    }
}

/// Widens an integer; values beyond 2⁵³ in magnitude round to the nearest
/// f64.
fn decode_int(b: &[u8], bytes: usize, big_endian: bool, signed: bool) -> f64 {
    let mut buf = [0u8; 8];
    let mut raw = b[..bytes].to_vec();
    if big_endian {
        raw.reverse();
    }
    buf[..bytes].copy_from_slice(&raw);
    let negative = signed && raw[bytes - 1] & 0x80 != 0;
    if negative {
        buf[bytes..].iter_mut().for_each(|v| *v = 0xff);
        i64::from_le_bytes(buf) as f64
    } else {
        u64::from_le_bytes(buf) as f64
    }
}

/// The parsed header dict.
struct Header {
    element: Element,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn bad_header(path: &Path, detail: &str, header: &str) -> NpyError {
    NpyError::BadHeader {
        path: path.to_path_buf(),
        detail: detail.to_string(),
        header: header.trim_end().to_string(),
    }
}

/// Returns the text after `'key':` in the dict literal, trimmed.
fn value_after<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let start = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[start + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
}

fn parse_header(text: &str, path: &Path) -> Result<Header, NpyError> {
    let descr_text =
        value_after(text, "descr").ok_or_else(|| bad_header(path, "no 'descr'", text))?;
    let quote = descr_text
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"');
    let Some(quote) = quote else {
        return Err(NpyError::UnsupportedDtype {
            path: path.to_path_buf(),
            descr: descr_text.split('}').next().unwrap_or("").to_string(),
            fix: "structured arrays are not supported; save a plain numeric matrix",
        });
    };
    let descr_end = descr_text[1..]
        .find(quote)
        .ok_or_else(|| bad_header(path, "unterminated 'descr'", text))?;
    let element = Element::parse(&descr_text[1..1 + descr_end], path)?;

    let order_text = value_after(text, "fortran_order")
        .ok_or_else(|| bad_header(path, "no 'fortran_order'", text))?;
    let fortran_order = if order_text.starts_with("True") {
        true
    } else if order_text.starts_with("False") {
        false
    } else {
        return Err(bad_header(
            path,
            "'fortran_order' is neither True nor False",
            text,
        ));
    };

    let shape_text =
        value_after(text, "shape").ok_or_else(|| bad_header(path, "no 'shape'", text))?;
    let close = shape_text
        .find(')')
        .filter(|_| shape_text.starts_with('('))
        .ok_or_else(|| bad_header(path, "'shape' is not a tuple", text))?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_header(path, "'shape' has a non-integer entry", text))?;
    Ok(Header {
        element,
        fortran_order,
        shape,
    })
}

/// Splits a file into its header text and data bytes.
fn split_file<'b>(bytes: &'b [u8], path: &Path) -> Result<(String, &'b [u8]), NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::NotNpy {
            path: path.to_path_buf(),
        });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(NpyError::UnsupportedVersion {
                path: path.to_path_buf(),
                major,
                minor,
            })
        }
    };
    let end = start + len;
    if bytes.len() < end {
        return Err(bad_header(path, "the header is longer than the file", ""));
    }
    // Version 3.0 allows UTF-8 in the header; 1.0 and 2.0 are Latin-1,
    // whose bytes of interest here are ASCII.
    let header = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok((header, &bytes[end..]))
}

/// Reads a `.npy` file of any shape: its shape and its values widened to
/// f64, in C (row-major) order whatever the file's order.
pub fn read_npy_values(path: &Path) -> Result<(Vec<usize>, Vec<f64>), NpyError> {
    let bytes = fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (header_text, data) = split_file(&bytes, path)?;
    let header = parse_header(&header_text, path)?;
    let size = header.element.size();
    // A header may claim any shape: an overflowing size is a truncated file.
    let expected = header
        .shape
        .iter()
        .try_fold(size, |acc, &dim| acc.checked_mul(dim))
        .unwrap_or(usize::MAX);
    if data.len() < expected {
        return Err(NpyError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual: data.len(),
        });
    }
    let values: Vec<f64> = data[..expected]
        .chunks_exact(size)
        .map(|b| header.element.decode(b))
        .collect();
    if !header.fortran_order || header.shape.len() < 2 {
        return Ok((header.shape, values));
    }
    let shape = IxDyn(&header.shape).f();
    let array = ArrayD::from_shape_vec(shape, values).expect("the length matches the shape");
    let c_order: Vec<f64> = array.iter().copied().collect();
    Ok((header.shape, c_order))
}

/// Reads a 2-D `.npy` file as an f64 matrix (rows = stimuli).
///
/// 1-D and higher-dimensional arrays are rejected with a message that says
/// how to reshape them. NaN and infinite values are returned as they are.
pub fn read_npy(path: &Path) -> Result<Array2<f64>, NpyError> {
    let (shape, values) = read_npy_values(path)?;
    let (rows, cols) = match shape[..] {
        [rows, cols] => (rows, cols),
        [_] => {
            return Err(NpyError::NotMatrix {
                path: path.to_path_buf(),
                shape,
                fix: "a single vector is one stimulus or one feature; save x.reshape(-1, 1) \
                      for one feature per stimulus or x.reshape(1, -1) for one stimulus",
            })
        }
        _ => {
            return Err(NpyError::NotMatrix {
                path: path.to_path_buf(),
                shape,
                fix: "pool or reshape to (n_stimuli, n_features) first, e.g. \
                      x.reshape(x.shape[0], -1)",
            })
        }
    };
    Ok(Array2::from_shape_vec((rows, cols), values).expect("the length matches the shape"))
}

/// Writes `a` as a version 1.0, little-endian f64, C-order `.npy` file.
pub fn write_npy(path: &Path, a: ArrayView2<f64>) -> Result<(), NpyError> {
    let io_error = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (rows, cols) = a.dim();
    let mut header =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad with spaces so that the data starts on a 64-byte boundary, and end
    // with a newline, as NumPy does.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + rows * cols * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in a.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut file = fs::File::create(path).map_err(io_error)?;
    file.write_all(&out).map_err(io_error)?;
    Ok(())
}
