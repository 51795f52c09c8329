//! Dense linear-algebra helpers: centring, Gram matrices, SVD wrappers.
//!
//! Matrix products go through ndarray's `dot`, which calls BLAS (OpenBLAS)
//! for f64 matrices; decompositions go through ndarray-linalg (LAPACK).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndarray_linalg::{JobSvd, SVDDC};
use rayon::prelude::*;

use super::MetricError;

/// Returns `x` with the mean of each column subtracted, in standard layout.
pub(crate) fn centre_columns(x: ArrayView2<f64>) -> Array2<f64> {
    let mean = x
        .mean_axis(Axis(0))
        .expect("callers check for at least one row");
    let mut centred = x.to_owned();
    centred -= &mean;
    centred
}

/// Returns `x` with each row scaled to unit Euclidean norm, or the index
/// of the first row whose norm is 0.
pub(crate) fn normalise_rows(x: ArrayView2<f64>) -> Result<Array2<f64>, usize> {
    let mut out = x.to_owned();
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        let norm = row.dot(&row).sqrt();
        if norm == 0.0 {
            return Err(i);
        }
        row /= norm;
    }
    Ok(out)
}

/// Returns `x xᵀ`.
pub(crate) fn gram(x: ArrayView2<f64>) -> Array2<f64> {
    x.dot(&x.t())
}

/// Double-centres the symmetric matrix `k` in place: `H k H` with
/// `H = I - 11ᵀ/n`.
pub(crate) fn double_centre(k: &mut Array2<f64>) {
    let n = k.nrows() as f64;
    let row_mean: Array1<f64> = k.sum_axis(Axis(1)) / n;
    let col_mean: Array1<f64> = k.sum_axis(Axis(0)) / n;
    let grand = row_mean.sum() / n;
    for ((i, j), value) in k.indexed_iter_mut() {
        *value += grand - row_mean[i] - col_mean[j];
    }
}

/// Returns the sum of `a[i] * b[i]`, with four partial sums so the loop
/// vectorises.
pub(crate) fn dot_slices(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for lane in 0..4 {
            acc[lane] += ca[lane] * cb[lane];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Returns `Σ (a[i] - b[i])²`, with four partial sums so the loop
/// vectorises.
pub(crate) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for lane in 0..4 {
            let d = ca[lane] - cb[lane];
            acc[lane] += d * d;
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Returns the matrix of squared Euclidean distances between the rows of
/// `x`, from the differences themselves (not the Gram expansion, whose
/// cancellation would break exact ties). Rows run in parallel.
pub(crate) fn pairwise_squared_distances(x: ArrayView2<f64>) -> Array2<f64> {
    let x = x.as_standard_layout();
    let n = x.nrows();
    let rows: Vec<&[f64]> = x
        .rows()
        .into_iter()
        .map(|r| r.to_slice().expect("standard layout rows are contiguous"))
        .collect();
    let upper: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            ((i + 1)..n)
                .map(|j| squared_distance(rows[i], rows[j]))
                .collect()
        })
        .collect();
    let mut d = Array2::zeros((n, n));
    for (i, values) in upper.iter().enumerate() {
        for (offset, &v) in values.iter().enumerate() {
            let j = i + 1 + offset;
            d[[i, j]] = v;
            d[[j, i]] = v;
        }
    }
    d
}

/// Returns the Frobenius inner product `Σ a_ij b_ij` of two matrices of
/// the same shape.
pub(crate) fn frobenius_dot(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    match (a.as_slice(), b.as_slice()) {
        (Some(sa), Some(sb)) => dot_slices(sa, sb),
        _ => ndarray::Zip::from(a)
            .and(b)
            .fold(0.0, |acc, &x, &y| acc + x * y),
    }
}

/// Returns the rows of `x` listed in `rows`, in that order.
pub(crate) fn select_rows(x: ArrayView2<f64>, rows: &[usize]) -> Array2<f64> {
    x.select(Axis(0), rows)
}

/// Returns `k[rows][:, rows]`.
pub(crate) fn select_square(k: ArrayView2<f64>, rows: &[usize]) -> Array2<f64> {
    let m = rows.len();
    let mut out = Array2::zeros((m, m));
    for (a, &ra) in rows.iter().enumerate() {
        let src = k.row(ra);
        let mut dst = out.row_mut(a);
        for (b, &rb) in rows.iter().enumerate() {
            dst[b] = src[rb];
        }
    }
    out
}

/// Returns the singular values of `m`, largest first.
pub(crate) fn singular_values(m: ArrayView2<f64>, layer: &str) -> Result<Array1<f64>, MetricError> {
    let owned = m.as_standard_layout().to_owned();
    let (_, s, _) = owned
        .svddc(JobSvd::None)
        .map_err(|e| linalg_error("singular value decomposition", layer, e))?;
    Ok(s)
}

/// A thin SVD `x = u diag(s) vt`, with `k = min(rows, columns)` columns
/// in `u` and rows in `vt`.
pub(crate) struct ThinSvd {
    pub u: Array2<f64>,
    pub s: Array1<f64>,
    pub vt: Array2<f64>,
}

/// Computes the thin SVD of `x`.
pub(crate) fn thin_svd(x: ArrayView2<f64>, layer: &str) -> Result<ThinSvd, MetricError> {
    let owned = x.as_standard_layout().to_owned();
    let (u, s, vt) = owned
        .svddc(JobSvd::Some)
        .map_err(|e| linalg_error("singular value decomposition", layer, e))?;
    match (u, vt) {
        (Some(u), Some(vt)) => Ok(ThinSvd { u, s, vt }),
        _ => Err(MetricError::Linalg {
            operation: "singular value decomposition",
            layer: layer.to_string(),
            detail: "LAPACK returned no singular vectors".to_string(),
        }),
    }
}

/// Returns the number of singular values above `s_max · max(rows, cols) ·
/// ε`, the rank tolerance of NumPy's `matrix_rank`.
pub(crate) fn numerical_rank(s: ArrayView1<f64>, rows: usize, cols: usize) -> usize {
    let s_max = s.iter().cloned().fold(0.0, f64::max);
    let tol = s_max * rows.max(cols) as f64 * f64::EPSILON;
    s.iter().filter(|&&v| v > tol).count()
}

fn linalg_error(
    operation: &'static str,
    layer: &str,
    e: ndarray_linalg::error::LinalgError,
) -> MetricError {
    MetricError::Linalg {
        operation,
        layer: layer.to_string(),
        detail: e.to_string(),
    }
}

/// Returns the inverse of the permutation `p` (`inverse[p[i]] = i`).
pub(crate) fn invert_permutation(p: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; p.len()];
    for (i, &pi) in p.iter().enumerate() {
        inverse[pi] = i;
    }
    inverse
}
