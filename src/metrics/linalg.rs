//! Dense linear-algebra helpers: centring, Gram matrices, SVD wrappers.
//!
//! Matrix products go through ndarray's `dot`, which calls BLAS (OpenBLAS)
//! for f64 matrices; decompositions go through ndarray-linalg (LAPACK).

use std::os::raw::c_int;

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

// Exported by libopenblas, which ndarray-linalg's `openblas-system`
// feature links; the Debian build uses 32-bit integers.
extern "C" {
    fn cblas_dsyrk(
        order: c_int,
        uplo: c_int,
        trans: c_int,
        n: c_int,
        k: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        beta: f64,
        c: *mut f64,
        ldc: c_int,
    );
}

const CBLAS_ROW_MAJOR: c_int = 101;
const CBLAS_UPPER: c_int = 121;
const CBLAS_NO_TRANS: c_int = 111;

/// Returns `x xᵀ`. A row-major `x` goes through BLAS `dsyrk`, which
/// computes one triangle with half the multiply-adds of a GEMM. The other
/// triangle is a mirrored copy, so the result is exactly symmetric.
pub(crate) fn gram(x: ArrayView2<f64>) -> Array2<f64> {
    let (n, d) = x.dim();
    let fits = c_int::try_from(n.max(d)).is_ok();
    let Some(a) = x.as_slice().filter(|_| n > 0 && d > 0 && fits) else {
        return x.dot(&x.t());
    };
    let mut c = Array2::<f64>::zeros((n, n));
    let out = c.as_slice_mut().expect("a new array is contiguous");
    // SAFETY: `a` contains n * d row-major values with row stride d. `out`
    // contains n * n values with row stride n, as the arguments state. Both
    // sizes fit in c_int, which is checked above.
    unsafe {
        cblas_dsyrk(
            CBLAS_ROW_MAJOR,
            CBLAS_UPPER,
            CBLAS_NO_TRANS,
            n as c_int,
            d as c_int,
            1.0,
            a.as_ptr(),
            d as c_int,
            0.0,
            out.as_mut_ptr(),
            n as c_int,
        );
    }
    mirror_upper(out, n);
    c
}

/// Copies the upper triangle of the row-major `n x n` matrix into its lower
/// triangle, in square tiles so that both sides stay in cache.
fn mirror_upper(c: &mut [f64], n: usize) {
    const TILE: usize = 64;
    for bi in (0..n).step_by(TILE) {
        for bj in (0..=bi).step_by(TILE) {
            for i in bi..(bi + TILE).min(n) {
                for j in bj..(bj + TILE).min(i) {
                    c[i * n + j] = c[j * n + i];
                }
            }
        }
    }
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

/// Entries of the vectors that one block of [`blocked_dots`] copies:
/// 31 vectors x 32,768 entries x 8 bytes is 8 MiB.
const DOT_BLOCK: usize = 1 << 15;

/// Returns the dot product of every pair of equal-length vectors (`a` by
/// `b`), or None if the lengths differ or either side is empty.
///
/// Pair by pair, each dot product streams both vectors from memory. Here
/// the vectors are cut into column blocks, each block of all vectors is
/// copied into one matrix, and one GEMM per block gives its share of every
/// pair, so each vector is read once. Blocks run in parallel and their
/// shares are added in block order, so the result does not depend on the
/// thread count.
pub(crate) fn blocked_dots(a: &[&[f64]], b: &[&[f64]]) -> Option<Array2<f64>> {
    let len = a.first()?.len();
    if b.is_empty() || a.iter().chain(b).any(|v| v.len() != len) {
        return None;
    }

    // Each task gathers into buffers that it reuses for all its blocks,
    // because fresh ones are zeroed by the kernel page by page on first use.
    let width = DOT_BLOCK.min(len);
    let gather = |block: &mut Array2<f64>, vectors: &[&[f64]], start: usize, end: usize| {
        for (mut row, v) in block.rows_mut().into_iter().zip(vectors) {
            row.slice_mut(ndarray::s![..end - start])
                .as_slice_mut()
                .expect("rows of a standard-layout array are contiguous")
                .copy_from_slice(&v[start..end]);
        }
    };

    let starts: Vec<usize> = (0..len).step_by(DOT_BLOCK).collect();
    let shares: Vec<Array2<f64>> = starts
        .par_iter()
        .map_init(
            || {
                (
                    Array2::<f64>::zeros((a.len(), width)),
                    Array2::<f64>::zeros((b.len(), width)),
                )
            },
            |(block_a, block_b), &start| {
                let end = (start + DOT_BLOCK).min(len);
                gather(block_a, a, start, end);
                gather(block_b, b, start, end);
                let used = ndarray::s![.., ..end - start];
                block_a.slice(used).dot(&block_b.slice(used).t())
            },
        )
        .collect();

    let mut total = Array2::<f64>::zeros((a.len(), b.len()));
    for share in &shares {
        total += share;
    }
    Some(total)
}

/// Rows and columns of one tile of [`streamed_gram_dots`]: 56 layers of
/// 512 x 512 f64 tiles take 112 MiB per task.
const GRAM_TILE: usize = 512;

/// Pair products of [`streamed_gram_dots`].
pub(crate) struct StreamedDots {
    /// `⟨X_i X_iᵀ, Y_j Y_jᵀ⟩_F`, `a` by `b`.
    pub cross: Array2<f64>,
    /// `‖X_i X_iᵀ‖²_F` of each layer of `a`.
    pub self_a: Vec<f64>,
    /// `‖Y_j Y_jᵀ‖²_F` of each layer of `b`.
    pub self_b: Vec<f64>,
}

/// Returns `⟨X_i X_iᵀ, Y_j Y_jᵀ⟩_F` for every pair of feature matrices
/// (`a` by `b`, all with the same rows) and each layer's own product,
/// without forming a whole Gram. A `b` of None means `a` again. Returns
/// None if the row counts differ or either side is empty.
///
/// The Grams are cut into square tiles. Each task forms tile `(r, c)` of
/// every layer's Gram (`X[r] X[c]ᵀ`, one GEMM per layer), flattens the
/// tiles into the rows of one matrix per side, and one GEMM of those gives
/// the tile's share of every pair; each flattened tile's squared norm is
/// its share of the layer's own product. The Grams are symmetric, so only
/// tiles with `r <= c` are formed and those off the diagonal count twice.
/// Shares are added in tile order, so the result does not depend on the
/// thread count.
pub(crate) fn streamed_gram_dots(
    a: &[ArrayView2<f64>],
    b: Option<&[ArrayView2<f64>]>,
) -> Option<StreamedDots> {
    let n = a.first()?.nrows();
    if b.is_some_and(|b| b.is_empty()) || a.iter().chain(b.unwrap_or(&[])).any(|x| x.nrows() != n) {
        return None;
    }

    let starts: Vec<usize> = (0..n).step_by(GRAM_TILE).collect();
    let tiles: Vec<(usize, usize)> = (0..starts.len())
        .flat_map(|r| (r..starts.len()).map(move |c| (r, c)))
        .collect();
    let span = |k: usize| starts[k]..(starts[k] + GRAM_TILE).min(n);
    let size = GRAM_TILE.min(n).pow(2);
    // Fills the first h * w entries of each row of `block` with tile
    // (r, c) of one layer's Gram and returns how many entries that is.
    let gather = |block: &mut Array2<f64>, layers: &[ArrayView2<f64>], r: usize, c: usize| {
        let (rows, cols) = (span(r), span(c));
        let (h, w) = (rows.len(), cols.len());
        for (mut row, x) in block.rows_mut().into_iter().zip(layers) {
            let mut tile = row
                .slice_mut(ndarray::s![..h * w])
                .into_shape_with_order((h, w))
                .expect("h * w contiguous entries reshape to h x w");
            let top = x.slice(ndarray::s![rows.clone(), ..]);
            let left = x.slice(ndarray::s![cols.clone(), ..]);
            ndarray::linalg::general_mat_mul(1.0, &top, &left.t(), 0.0, &mut tile);
        }
        h * w
    };

    let norms = |block: ArrayView2<f64>| -> Vec<f64> {
        block
            .rows()
            .into_iter()
            .map(|row| {
                let v = row.as_slice().expect("rows of a tile block are contiguous");
                dot_slices(v, v)
            })
            .collect()
    };

    // Each share comes with its weight: 2 for a tile off the diagonal,
    // because it also counts for its mirror image below the diagonal.
    let shares: Vec<(f64, StreamedDots)> = tiles
        .par_iter()
        .map_init(
            // Buffers kept across a task's tiles, as in `blocked_dots`.
            || {
                (
                    Array2::<f64>::zeros((a.len(), size)),
                    b.map(|b| Array2::<f64>::zeros((b.len(), size))),
                )
            },
            |(buffer_a, buffer_b), &(r, c)| {
                let used = gather(buffer_a, a, r, c);
                let block_a = buffer_a.slice(ndarray::s![.., ..used]);
                let weight = if r == c { 1.0 } else { 2.0 };
                match b.zip(buffer_b.as_mut()) {
                    // The diagonal of the product itself, so that a layer's
                    // cross with itself and its own product are the same bits.
                    None => {
                        let cross = block_a.dot(&block_a.t());
                        let own = cross.diag().to_vec();
                        let share = StreamedDots {
                            cross,
                            self_a: own.clone(),
                            self_b: own,
                        };
                        (weight, share)
                    }
                    Some((b, buffer_b)) => {
                        gather(buffer_b, b, r, c);
                        let block_b = buffer_b.slice(ndarray::s![.., ..used]);
                        let share = StreamedDots {
                            cross: block_a.dot(&block_b.t()),
                            self_a: norms(block_a),
                            self_b: norms(block_b),
                        };
                        (weight, share)
                    }
                }
            },
        )
        .collect();

    let nb = b.map_or(a.len(), <[_]>::len);
    let mut out = StreamedDots {
        cross: Array2::zeros((a.len(), nb)),
        self_a: vec![0.0; a.len()],
        self_b: vec![0.0; nb],
    };
    for (weight, share) in &shares {
        out.cross.scaled_add(*weight, &share.cross);
        for (total, v) in out.self_a.iter_mut().zip(&share.self_a) {
            *total += weight * v;
        }
        for (total, v) in out.self_b.iter_mut().zip(&share.self_b) {
            *total += weight * v;
        }
    }
    Some(out)
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

#[cfg(test)]
mod gram_tests {
    use super::*;

    #[test]
    fn gram_matches_gemm_and_is_symmetric() {
        // 130 rows cross the 64-row tiles unevenly; 7 columns keep d < n.
        let x = Array2::from_shape_fn((130, 7), |(i, j)| ((i * 31 + j * 17) % 23) as f64 - 11.0);
        let g = gram(x.view());
        let reference = x.dot(&x.t());
        let worst = (&g - &reference)
            .mapv(f64::abs)
            .fold(0.0, |m: f64, &v| m.max(v));
        assert!(worst < 1e-9, "largest difference from the GEMM: {worst}");
        assert_eq!(g, g.t(), "the mirrored triangle equals the computed one");
    }

    #[test]
    fn gram_of_transposed_view_uses_gemm() {
        let x = Array2::from_shape_fn((5, 9), |(i, j)| (i + 2 * j) as f64);
        let g = gram(x.t());
        assert_eq!(g, x.t().dot(&x));
    }
}
