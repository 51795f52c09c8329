//! Dense linear-algebra helpers: centring, Gram matrices, SVD wrappers.
//!
//! Matrix products go through ndarray's `dot`, which calls BLAS (OpenBLAS)
//! for f64 matrices; decompositions go through ndarray-linalg (LAPACK).

use std::ops::Range;
use std::os::raw::c_int;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use ndarray_linalg::{JobSvd, SVDDC};
use rayon::prelude::*;

use super::MetricError;

/// Returns `x` with the mean of each column subtracted, in standard layout.
pub(crate) fn centre_columns(x: ArrayView2<f64>) -> Array2<f64> {
    centre_rows_with(x, |_| {})
}

/// Column-centred features and two sums over them, from one pass.
pub(crate) struct CentredFeatures {
    /// `x` with the mean of each column subtracted, in standard layout.
    pub centred: Array2<f64>,
    /// Squared Euclidean norm of each centred row.
    pub row_norms: Array1<f64>,
    /// Sum of each centred column (0 up to rounding).
    pub col_sums: Array1<f64>,
}

/// Centres the columns of `x` and takes the row norms and column sums of
/// the result while each row is in cache, instead of in passes of their own.
pub(crate) fn centre_columns_with_sums(x: ArrayView2<f64>) -> CentredFeatures {
    let mut row_norms = Vec::with_capacity(x.nrows());
    let mut col_sums = vec![0.0; x.ncols()];
    let centred = centre_rows_with(x, |row| {
        row_norms.push(dot_slices(row, row));
        for (sum, v) in col_sums.iter_mut().zip(row) {
            *sum += v;
        }
    });
    CentredFeatures {
        centred,
        row_norms: Array1::from(row_norms),
        col_sums: Array1::from(col_sums),
    }
}

/// Returns `x` with the mean of each column subtracted, calling `each` on
/// every centred row right after it is written.
fn centre_rows_with(x: ArrayView2<f64>, mut each: impl FnMut(&[f64])) -> Array2<f64> {
    let (n, d) = x.dim();
    let mean = x
        .mean_axis(Axis(0))
        .expect("callers check for at least one row");
    let mean = mean.as_slice().expect("a new array is contiguous");
    let mut centred = Array2::<f64>::zeros((n, d));
    for (row, mut out) in x.rows().into_iter().zip(centred.rows_mut()) {
        let out = out
            .as_slice_mut()
            .expect("rows of a new array are contiguous");
        centre_row(row, mean, out);
        each(out);
    }
    centred
}

/// Writes `row - mean` into `out`, the same values as a row of
/// [`centre_columns`].
pub(crate) fn centre_row(row: ArrayView1<f64>, mean: &[f64], out: &mut [f64]) {
    match row.to_slice() {
        // Slices, so that the loop vectorises.
        Some(values) => {
            for ((c, &v), &m) in out.iter_mut().zip(values).zip(mean) {
                *c = v - m;
            }
        }
        None => {
            for ((c, &v), &m) in out.iter_mut().zip(row).zip(mean) {
                *c = v - m;
            }
        }
    }
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
    let n = x.nrows();
    let mut c = Array2::<f64>::zeros((n, n));
    let out = c.as_slice_mut().expect("a new array is contiguous");
    if !syrk_upper(x, out) {
        return x.dot(&x.t());
    }
    mirror_upper(out, n);
    c
}

/// Writes the upper triangle of `x xᵀ` into `out`, a row-major `n x n`
/// matrix, with BLAS `dsyrk`. The entries below the diagonal are left
/// unspecified. Returns false, writing nothing, when `x` is empty, not
/// row-major contiguous, or too large for BLAS's 32-bit sizes.
fn syrk_upper(x: ArrayView2<f64>, out: &mut [f64]) -> bool {
    let (n, d) = x.dim();
    let fits = c_int::try_from(n.max(d)).is_ok();
    let Some(a) = x.to_slice().filter(|_| n > 0 && d > 0 && fits) else {
        return false;
    };
    assert!(out.len() >= n * n, "the output holds n x n values");
    // SAFETY: `a` contains n * d row-major values with row stride d. `out`
    // contains at least n * n values, written with row stride n, as the
    // arguments state. Both sizes fit in c_int, which is checked above.
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
    true
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

/// Returns the rows and columns of one tile of [`streamed_gram_dots`] for
/// `n` stimuli. Smaller grids get smaller tiles, so that there are enough
/// tiles to keep every thread busy. The size depends on `n` alone, so the
/// sums do not depend on the thread count. 56 layers of 512 x 512 f64
/// tiles take 112 MiB per task.
fn gram_tile(n: usize) -> usize {
    match n {
        0..512 => 128,
        512..2048 => 256,
        _ => 512,
    }
}

/// One layer of [`streamed_gram_dots`]: its rows, centred already or
/// centred as they are read with the column `mean`.
pub(crate) struct StreamLayer<'a> {
    pub rows: ArrayView2<'a, f64>,
    pub mean: Option<&'a [f64]>,
}

impl<'a> StreamLayer<'a> {
    /// Returns the centred rows `span`, written into `scratch` when the
    /// layer's rows are not centred already.
    fn centred<'s>(&self, span: Range<usize>, scratch: &'s mut Vec<f64>) -> ArrayView2<'s, f64>
    where
        'a: 's,
    {
        let rows = self.rows.slice_move(ndarray::s![span, ..]);
        let Some(mean) = self.mean else {
            return rows;
        };
        let (h, d) = rows.dim();
        scratch.resize(h * d, 0.0);
        for (row, out) in rows.rows().into_iter().zip(scratch.chunks_exact_mut(d)) {
            centre_row(row, mean, out);
        }
        ArrayView2::from_shape((h, d), &scratch[..h * d]).expect("h rows of d values")
    }
}

/// Pair products of [`streamed_gram_dots`].
pub(crate) struct StreamedDots {
    /// `⟨X_i X_iᵀ, Y_j Y_jᵀ⟩_F`, `a` by `b`.
    pub cross: Array2<f64>,
    /// `‖X_i X_iᵀ‖²_F` of each layer of `a`.
    pub self_a: Vec<f64>,
    /// `‖Y_j Y_jᵀ‖²_F` of each layer of `b`.
    pub self_b: Vec<f64>,
}

/// One task's tile of every layer's Gram, flattened one layer per row, in
/// two parts. `twice` contains the entries that count for themselves and
/// their mirror image: all of an off-diagonal tile, or the strict upper
/// triangle of a diagonal one. `once` contains the diagonal entries. Kept across a task's
/// tiles, because fresh buffers are zeroed by the kernel page by page on
/// first use.
struct TileBlock {
    twice: Array2<f64>,
    once: Array2<f64>,
    /// A diagonal tile as `dsyrk` writes it, before it is packed.
    square: Vec<f64>,
    /// The two row ranges of a tile, centred, for layers that are not.
    top: Vec<f64>,
    left: Vec<f64>,
    /// Entries of `twice` and `once` that the current tile fills per row.
    filled: (usize, usize),
}

impl TileBlock {
    fn new(layers: usize, tile: usize) -> Self {
        TileBlock {
            twice: Array2::zeros((layers, tile * tile)),
            once: Array2::zeros((layers, tile)),
            square: vec![0.0; tile * tile],
            top: Vec::new(),
            left: Vec::new(),
            filled: (0, 0),
        }
    }

    /// Fills each row with the tile `rows x cols` of one layer's Gram
    /// `X Xᵀ`. A diagonal tile (`rows == cols`) goes through `dsyrk`, which
    /// computes only its upper triangle.
    fn fill(&mut self, layers: &[StreamLayer], rows: Range<usize>, cols: Range<usize>) {
        let TileBlock {
            twice,
            once,
            square,
            top,
            left,
            filled,
        } = self;
        let (h, w) = (rows.len(), cols.len());
        if rows != cols {
            for (mut row, layer) in twice.rows_mut().into_iter().zip(layers) {
                let mut tile = row
                    .slice_mut(ndarray::s![..h * w])
                    .into_shape_with_order((h, w))
                    .expect("h * w contiguous entries reshape to h x w");
                let upper = layer.centred(rows.clone(), top);
                let lower = layer.centred(cols.clone(), left);
                ndarray::linalg::general_mat_mul(1.0, &upper, &lower.t(), 0.0, &mut tile);
            }
            *filled = (h * w, 0);
            return;
        }
        let square = &mut square[..h * h];
        let rows_of = twice.rows_mut().into_iter().zip(once.rows_mut());
        for ((mut twice, mut once), layer) in rows_of.zip(layers) {
            let x = layer.centred(rows.clone(), top);
            if !syrk_upper(x, square) {
                let mut tile = ArrayViewMut2::from_shape((h, h), &mut *square)
                    .expect("h * h entries reshape to h x h");
                ndarray::linalg::general_mat_mul(1.0, &x, &x.t(), 0.0, &mut tile);
            }
            let twice = twice
                .as_slice_mut()
                .expect("rows of a block are contiguous");
            let mut at = 0;
            for i in 0..h {
                let upper = &square[i * h + i + 1..(i + 1) * h];
                twice[at..at + upper.len()].copy_from_slice(upper);
                at += upper.len();
                once[i] = square[i * h + i];
            }
        }
        *filled = (h * (h - 1) / 2, h);
    }

    fn parts(&self) -> (ArrayView2<'_, f64>, ArrayView2<'_, f64>) {
        let (twice, once) = self.filled;
        (
            self.twice.slice(ndarray::s![.., ..twice]),
            self.once.slice(ndarray::s![.., ..once]),
        )
    }

    /// Returns the tile's share of `⟨K_i, L_j⟩_F` for every pair of its
    /// layers (rows) and `other`'s.
    fn cross(&self, other: &TileBlock) -> Array2<f64> {
        let ((twice_a, once_a), (twice_b, once_b)) = (self.parts(), other.parts());
        let mut cross = Array2::zeros((twice_a.nrows(), twice_b.nrows()));
        if twice_a.ncols() > 0 {
            ndarray::linalg::general_mat_mul(2.0, &twice_a, &twice_b.t(), 0.0, &mut cross);
        }
        if once_a.ncols() > 0 {
            ndarray::linalg::general_mat_mul(1.0, &once_a, &once_b.t(), 1.0, &mut cross);
        }
        cross
    }

    /// Returns the tile's share of each layer's `‖K_i‖²_F`.
    fn norms(&self) -> Vec<f64> {
        let (twice, once) = self.parts();
        let squares = |v: ArrayView1<f64>| {
            let v = v.to_slice().expect("rows of a block are contiguous");
            dot_slices(v, v)
        };
        twice
            .rows()
            .into_iter()
            .zip(once.rows())
            .map(|(t, o)| 2.0 * squares(t) + squares(o))
            .collect()
    }
}

/// Returns `⟨X_i X_iᵀ, Y_j Y_jᵀ⟩_F` for every pair of centred layers
/// (`a` by `b`, all with the same rows) and each layer's own product,
/// without forming a whole Gram or, for layers given with their means, a
/// whole centred copy. A `b` of None means `a` again. Returns
/// None if the row counts differ or either side is empty.
///
/// The Grams are symmetric and cut into square tiles, of which only those
/// on or above the diagonal are formed. Each task forms one tile of every
/// layer's Gram (one GEMM per layer, or `dsyrk` on the diagonal) and
/// flattens the tiles into the rows of one matrix per side. One GEMM of
/// those gives the tile's share of every pair, where entries above the
/// diagonal count twice, for their mirror images. Each flattened tile's squared norm is
/// its share of the layer's own product. Shares are added in tile order,
/// so the result does not depend on the thread count.
pub(crate) fn streamed_gram_dots<'a>(
    a: &[StreamLayer<'a>],
    b: Option<&[StreamLayer<'a>]>,
) -> Option<StreamedDots> {
    let n = a.first()?.rows.nrows();
    let mut all = a.iter().chain(b.unwrap_or(&[]));
    if b.is_some_and(|b| b.is_empty()) || all.any(|x| x.rows.nrows() != n) {
        return None;
    }

    // No tile is larger than the Gram itself.
    let size = gram_tile(n).min(n);
    let starts: Vec<usize> = (0..n).step_by(size).collect();
    let tiles: Vec<(usize, usize)> = (0..starts.len())
        .flat_map(|r| (r..starts.len()).map(move |c| (r, c)))
        .collect();
    let span = |k: usize| starts[k]..(starts[k] + size).min(n);

    // Tasks are handed out one at a time, off-diagonal tiles (a whole GEMM
    // each) before diagonal ones (half of one), so that the short tasks
    // fill the end. Shares are added back in tile order below.
    let mut queue: Vec<usize> = (0..tiles.len()).collect();
    queue.sort_by_key(|&k| tiles[k].0 == tiles[k].1);
    let mut shares: Vec<(usize, StreamedDots)> = queue
        .into_iter()
        .par_bridge()
        .map_init(
            || {
                (
                    TileBlock::new(a.len(), size),
                    b.map(|b| TileBlock::new(b.len(), size)),
                )
            },
            |(block_a, block_b), k| {
                let (r, c) = tiles[k];
                block_a.fill(a, span(r), span(c));
                match b.zip(block_b.as_mut()) {
                    // The diagonal of the product itself, so that a layer's
                    // cross with itself and its own product are the same bits.
                    None => {
                        let cross = block_a.cross(block_a);
                        let own = cross.diag().to_vec();
                        let share = StreamedDots {
                            cross,
                            self_a: own.clone(),
                            self_b: own,
                        };
                        (k, share)
                    }
                    Some((b, block_b)) => {
                        block_b.fill(b, span(r), span(c));
                        let share = StreamedDots {
                            cross: block_a.cross(block_b),
                            self_a: block_a.norms(),
                            self_b: block_b.norms(),
                        };
                        (k, share)
                    }
                }
            },
        )
        .collect();
    shares.sort_by_key(|(k, _)| *k);

    let nb = b.map_or(a.len(), <[_]>::len);
    let mut out = StreamedDots {
        cross: Array2::zeros((a.len(), nb)),
        self_a: vec![0.0; a.len()],
        self_b: vec![0.0; nb],
    };
    for (_, share) in &shares {
        out.cross += &share.cross;
        for (total, v) in out.self_a.iter_mut().zip(&share.self_a) {
            *total += v;
        }
        for (total, v) in out.self_b.iter_mut().zip(&share.self_b) {
            *total += v;
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
