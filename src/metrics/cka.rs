//! Centred kernel alignment (CKA): linear and RBF kernels, biased and
//! unbiased HSIC, and the minibatch estimator.
//!
//! Every CKA here is `HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`.
//!
//! - **Biased HSIC** (Kornblith et al. 2019, "Similarity of neural network
//!   representations revisited"): `tr(K_c L_c) / (n-1)²` with the
//!   double-centred Gram `K_c = H K H`. The `(n-1)²` cancels in the ratio.
//! - **Unbiased HSIC** (Song et al. 2012, "Feature selection via dependence
//!   maximization", eq. 5): with `K̃` the Gram with its diagonal set to 0,
//!   `[tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n-1)(n-2)) − 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))`.
//!   The estimator does not change when a symmetric term `a1ᵀ + 1aᵀ` is
//!   added to the Gram, so it is evaluated on the double-centred Gram,
//!   where it has less cancellation; it equals Székely–Rizzo U-centring.
//!
//! Each layer is reduced once to a [`CentredKernel`]: either the centred
//! Gram (n x n) or, for the linear kernel, the centred features (n x d),
//! whichever the caller's [`KernelForm`] picks. A pair then costs one
//! Frobenius product: `O(n²)` for Grams, `O(n·d_x·d_y)` for features.

use std::sync::OnceLock;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::linalg::{
    blocked_dots, centre_columns, centre_columns_with_sums, centre_row, dot_slices, double_centre,
    frobenius_dot, gram, select_rows, select_square, streamed_gram_dots, CentredFeatures,
    StreamLayer,
};
use super::MetricError;

/// Which representation of a linear kernel a layer keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelForm {
    /// The double-centred Gram matrix, n x n.
    Gram,
    /// The column-centred features, n x d; `K_c = X_c X_cᵀ` is never formed.
    Features,
    /// The column-centred features, with the grid's pair products streamed
    /// from tiles of `K_c` (see [`streamed_gram_dots`]).
    Streamed,
    /// Only the column means: the grid's pair products are streamed from
    /// tiles centred as they are read from the layer's own rows, and no
    /// centred copy is kept. Only grids of observed values use it, because
    /// such a kernel cannot be permuted or resampled.
    StreamedFromRows,
}

#[derive(Clone, Debug)]
enum Storage {
    Gram(Array2<f64>),
    Features(Array2<f64>),
    /// The column means of rows that the caller keeps (see
    /// [`KernelForm::StreamedFromRows`]).
    Means(Array1<f64>),
}

const NO_ROWS: &str = "a kernel streamed from its rows is only used by grids of observed values";

/// One layer's centred kernel and the sums that HSIC needs.
#[derive(Clone, Debug)]
pub(crate) struct CentredKernel {
    storage: Storage,
    /// Diagonal of `K_c`.
    diag: Array1<f64>,
    /// Row sums of `K_c` (0 up to rounding, kept for the exact formula).
    row_sums: Array1<f64>,
    /// `⟨K_c, K_c⟩_F`. A streamed grid fills it from its tiles; otherwise
    /// the first reader computes it.
    self_dot: OnceLock<f64>,
}

impl CentredKernel {
    /// Builds the centred linear kernel `X_c X_cᵀ` of `x`.
    pub(crate) fn linear(x: ArrayView2<f64>, form: KernelForm) -> Self {
        match form {
            KernelForm::Gram => Self::from_centred_gram(gram(centre_columns(x).view())),
            KernelForm::Features => {
                let kernel = Self::from_features(x);
                kernel.self_dot();
                kernel
            }
            // The grid's tiles give `⟨K_c, K_c⟩_F` at no extra cost.
            KernelForm::Streamed => Self::from_features(x),
            KernelForm::StreamedFromRows => Self::from_rows(x),
        }
    }

    /// Builds the centred RBF kernel `exp(-‖x_i - x_j‖² / (2σ²))` with
    /// `σ² = f² · median{‖x_i - x_j‖² : i < j}` taken from this layer.
    pub(crate) fn rbf(
        x: ArrayView2<f64>,
        f: f64,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let sq = gram_squared_distances(x);
        let median = upper_triangle_median(sq.view());
        if median <= 0.0 {
            return Err(MetricError::Undefined {
                metric: metric.to_string(),
                layer: layer.to_string(),
                reason: "the median squared distance between stimuli is 0 (at least half \
                         of the row pairs are identical), so the RBF bandwidth is 0; use \
                         linear_cka"
                    .to_string(),
            });
        }
        let scale = -0.5 / (f * f * median);
        let mut k = sq.mapv(|d| (d * scale).exp());
        double_centre(&mut k);
        Ok(Self::from_centred_gram(k))
    }

    fn from_centred_gram(k: Array2<f64>) -> Self {
        let diag = k.diag().to_owned();
        // Row sums and `⟨K_c, K_c⟩_F` in one pass over the matrix.
        let (row_sums, self_dot) = match k.as_slice() {
            Some(flat) if k.ncols() > 0 => {
                let mut sums = Vec::with_capacity(k.nrows());
                let mut squares = 0.0;
                for row in flat.chunks_exact(k.ncols()) {
                    sums.push(row.iter().sum::<f64>());
                    squares += dot_slices(row, row);
                }
                (Array1::from(sums), squares)
            }
            _ => (k.sum_axis(Axis(1)), frobenius_dot(k.view(), k.view())),
        };
        let self_dot = OnceLock::from(self_dot);
        CentredKernel {
            storage: Storage::Gram(k),
            diag,
            row_sums,
            self_dot,
        }
    }

    /// Centres the columns of `x` and keeps them, with the diagonal and row
    /// sums of `K_c = X_c X_cᵀ` (`K_c 1 = X_c (X_cᵀ 1)`).
    fn from_features(x: ArrayView2<f64>) -> Self {
        let CentredFeatures {
            centred,
            row_norms,
            col_sums,
        } = centre_columns_with_sums(x);
        let row_sums = centred
            .rows()
            .into_iter()
            .map(|row| dot_slices(contiguous(row), contiguous(col_sums.view())))
            .collect();
        CentredKernel {
            storage: Storage::Features(centred),
            diag: row_norms,
            row_sums,
            self_dot: OnceLock::new(),
        }
    }

    /// Keeps the column means of `x` and the diagonal and row sums of
    /// `K_c`, computed from centred rows one at a time, so that no centred
    /// copy is kept. The diagonal equals that of [`Self::from_features`],
    /// and the row sums agree with it up to rounding.
    fn from_rows(x: ArrayView2<f64>) -> Self {
        let mean = x
            .mean_axis(Axis(0))
            .expect("callers check for at least one row");
        let means = mean.as_slice().expect("a new array is contiguous");
        let mut centred = vec![0.0; x.ncols()];
        let mut diag = Vec::with_capacity(x.nrows());
        let mut col_sums = vec![0.0; x.ncols()];
        for row in x.rows() {
            centre_row(row, means, &mut centred);
            diag.push(dot_slices(&centred, &centred));
            for (sum, v) in col_sums.iter_mut().zip(&centred) {
                *sum += v;
            }
        }
        // `X_c s = X s - (μ·s) 1`, one BLAS pass over the rows. The column
        // sums `s` are 0 up to rounding, so the subtraction cancels nothing
        // that matters.
        let col_sums = Array1::from(col_sums);
        let shift = mean.dot(&col_sums);
        let row_sums = x.dot(&col_sums) - shift;
        CentredKernel {
            storage: Storage::Means(mean),
            diag: Array1::from(diag),
            row_sums,
            self_dot: OnceLock::new(),
        }
    }

    /// Returns `⟨K_c, K_c⟩_F`; in feature form `‖X_cᵀ X_c‖²_F`, which costs
    /// `n·d²` the first time.
    pub(crate) fn self_dot(&self) -> f64 {
        *self.self_dot.get_or_init(|| match &self.storage {
            Storage::Gram(k) => frobenius_dot(k.view(), k.view()),
            Storage::Features(xc) => {
                let cov = xc.t().dot(xc);
                frobenius_dot(cov.view(), cov.view())
            }
            Storage::Means(_) => unreachable!("{NO_ROWS}; the grid sets its own product"),
        })
    }

    /// Records `⟨K_c, K_c⟩_F` computed elsewhere (a streamed grid's tiles),
    /// unless it is known already.
    fn set_self_dot(&self, value: f64) {
        let _ = self.self_dot.set(value);
    }

    /// Number of stimuli.
    pub(crate) fn n(&self) -> usize {
        self.diag.len()
    }

    /// Returns `⟨K_c, L_c⟩_F`.
    pub(crate) fn cross(&self, other: &CentredKernel) -> f64 {
        match (&self.storage, &other.storage) {
            (Storage::Gram(k), Storage::Gram(l)) => frobenius_dot(k.view(), l.view()),
            (Storage::Features(x), Storage::Features(y)) => {
                let m = x.t().dot(y);
                frobenius_dot(m.view(), m.view())
            }
            (Storage::Gram(k), Storage::Features(y)) | (Storage::Features(y), Storage::Gram(k)) => {
                let ky = k.dot(y);
                frobenius_dot(ky.view(), y.view())
            }
            (Storage::Means(_), _) | (_, Storage::Means(_)) => {
                unreachable!("{NO_ROWS}; the grid streams every pair")
            }
        }
    }

    /// Biased-HSIC CKA between two layers.
    #[cfg(test)]
    pub(crate) fn cka(&self, other: &CentredKernel) -> f64 {
        self.cka_from_cross(other, self.cross(other))
    }

    /// Biased-HSIC CKA from a precomputed `⟨K_c, L_c⟩_F`.
    pub(crate) fn cka_from_cross(&self, other: &CentredKernel, cross: f64) -> f64 {
        cross / (self.self_dot() * other.self_dot()).sqrt()
    }

    /// Unbiased HSIC U-statistic (Song et al. 2012, eq. 5) of two layers.
    pub(crate) fn hsic_unbiased(&self, other: &CentredKernel) -> f64 {
        let cross = self.cross(other);
        self.hsic_unbiased_from_cross(other, cross)
    }

    /// Unbiased HSIC of the layer with itself.
    pub(crate) fn self_hsic_unbiased(&self) -> f64 {
        self.hsic_unbiased_from_cross(self, self.self_dot())
    }

    /// Unbiased HSIC from a precomputed `⟨K_c, L_c⟩_F`.
    pub(crate) fn hsic_unbiased_from_cross(&self, other: &CentredKernel, cross: f64) -> f64 {
        let n = self.n() as f64;
        let diag_dot = dot_vec(&self.diag, &other.diag);
        // tr(K̃L̃): the Frobenius product without the diagonal.
        let trace_term = cross - diag_dot;
        // 1ᵀK̃1 = 1ᵀK1 - tr K.
        let sum_k = self.row_sums.sum() - self.diag.sum();
        let sum_l = other.row_sums.sum() - other.diag.sum();
        // 1ᵀK̃L̃1 = (K̃1)·(L̃1), with K̃1 = K1 - diag(K).
        let k1 = &self.row_sums - &self.diag;
        let l1 = &other.row_sums - &other.diag;
        let row_term = dot_vec(&k1, &l1);
        (trace_term + sum_k * sum_l / ((n - 1.0) * (n - 2.0)) - 2.0 * row_term / (n - 2.0))
            / (n * (n - 3.0))
    }

    /// Returns the kernel of the stimuli reordered by `p` (row `i` of the
    /// result is stimulus `p[i]`). Centring commutes with reordering.
    pub(crate) fn permuted(&self, p: &[usize]) -> CentredKernel {
        let storage = match &self.storage {
            Storage::Gram(k) => Storage::Gram(select_square(k.view(), p)),
            Storage::Features(x) => Storage::Features(select_rows(x.view(), p)),
            Storage::Means(_) => unreachable!("{NO_ROWS}"),
        };
        CentredKernel {
            storage,
            diag: p.iter().map(|&i| self.diag[i]).collect(),
            row_sums: p.iter().map(|&i| self.row_sums[i]).collect(),
            self_dot: self.self_dot.clone(),
        }
    }

    /// Returns the kernel of the resampled stimuli `rows` (repeats allowed),
    /// centred again over the resample.
    ///
    /// `H_s K_c[s,s] H_s = H_s K[s,s] H_s`, because double centring removes
    /// the terms that centring over all stimuli added, so the stored centred
    /// kernel is enough. An RBF kernel keeps the bandwidth of the full sample.
    pub(crate) fn resampled(&self, rows: &[usize]) -> CentredKernel {
        match &self.storage {
            Storage::Gram(k) => {
                let mut sub = select_square(k.view(), rows);
                double_centre(&mut sub);
                Self::from_centred_gram(sub)
            }
            Storage::Features(x) => Self::from_features(select_rows(x.view(), rows).view()),
            Storage::Means(_) => unreachable!("{NO_ROWS}"),
        }
    }
}

/// Returns `⟨K_i, L_j⟩_F` for every pair of Gram-form kernels (`a` by `b`),
/// or None if any kernel is in feature form. See [`blocked_dots`].
pub(crate) fn gram_crosses(a: &[&CentredKernel], b: &[&CentredKernel]) -> Option<Array2<f64>> {
    fn flat<'k>(kernels: &[&'k CentredKernel]) -> Option<Vec<&'k [f64]>> {
        kernels
            .iter()
            .map(|k| match &k.storage {
                Storage::Gram(g) => g.as_slice(),
                Storage::Features(_) | Storage::Means(_) => None,
            })
            .collect()
    }
    blocked_dots(&flat(a)?, &flat(b)?)
}

/// Returns `⟨K_i, L_j⟩_F` for every pair of streamed kernels (`a` by `b`)
/// from tiles of their Grams. Each kernel comes with the layer's rows, which
/// a kernel of the form [`KernelForm::StreamedFromRows`] is streamed from.
/// A `b` of None means `a` again. Each kernel's `⟨K_c, K_c⟩_F` is recorded
/// from the same tiles. Returns None if any kernel is in Gram form. See
/// [`streamed_gram_dots`].
pub(crate) fn streamed_crosses(
    a: &[(&CentredKernel, ArrayView2<f64>)],
    b: Option<&[(&CentredKernel, ArrayView2<f64>)]>,
) -> Option<Array2<f64>> {
    fn layers<'k>(
        kernels: &[(&'k CentredKernel, ArrayView2<'k, f64>)],
    ) -> Option<Vec<StreamLayer<'k>>> {
        kernels
            .iter()
            .map(|(k, rows)| match &k.storage {
                Storage::Features(x) => Some(StreamLayer {
                    rows: x.view(),
                    mean: None,
                }),
                Storage::Means(mean) => Some(StreamLayer {
                    rows: *rows,
                    mean: Some(mean.as_slice().expect("means are a new, contiguous array")),
                }),
                Storage::Gram(_) => None,
            })
            .collect()
    }
    let layers_b = match b {
        Some(b) => Some(layers(b)?),
        None => None,
    };
    let dots = streamed_gram_dots(&layers(a)?, layers_b.as_deref())?;
    for ((k, _), &v) in a.iter().zip(&dots.self_a) {
        k.set_self_dot(v);
    }
    for ((k, _), &v) in b.unwrap_or(a).iter().zip(&dots.self_b) {
        k.set_self_dot(v);
    }
    Some(dots.cross)
}

fn contiguous<'v>(v: ArrayView1<'v, f64>) -> &'v [f64] {
    v.to_slice()
        .expect("rows of a standard-layout array are contiguous")
}

fn dot_vec(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    match (a.as_slice(), b.as_slice()) {
        (Some(sa), Some(sb)) => dot_slices(sa, sb),
        _ => a.dot(b),
    }
}

/// Returns the squared Euclidean distances between the rows of `x` from
/// the Gram expansion `‖x_i‖² + ‖x_j‖² - 2⟨x_i, x_j⟩` of the column-centred
/// rows, with negative rounding clipped to 0 and an exact 0 diagonal.
/// Centring leaves distances unchanged and reduces cancellation; one BLAS
/// product is much faster than the differences, and the RBF kernel is
/// continuous in the distance, so the ~1e-13 relative rounding is harmless.
pub(crate) fn gram_squared_distances(x: ArrayView2<f64>) -> Array2<f64> {
    let xc = centre_columns(x);
    let g = gram(xc.view());
    let norms = g.diag().to_owned();
    let mut d = g;
    for ((i, j), v) in d.indexed_iter_mut() {
        *v = if i == j {
            0.0
        } else {
            (norms[i] + norms[j] - 2.0 * *v).max(0.0)
        };
    }
    d
}

/// Returns the median of the strict upper triangle (`i < j`) of `d`,
/// the mean of the two middle values when their count is even (NumPy's
/// `median`).
pub(crate) fn upper_triangle_median(d: ArrayView2<f64>) -> f64 {
    let n = d.nrows();
    let mut values: Vec<f64> = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in (i + 1)..n {
            values.push(d[[i, j]]);
        }
    }
    median_in_place(&mut values)
}

/// Returns the median of `values`, reordering them.
pub(crate) fn median_in_place(values: &mut [f64]) -> f64 {
    let m = values.len();
    if m == 0 {
        return f64::NAN;
    }
    let mid = m / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if m % 2 == 1 {
        return upper;
    }
    let lower = values[..mid]
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lower + upper)
}

/// Minibatch CKA (Nguyen, Raghu and Kornblith 2021, "Do wide and deep
/// networks learn the same things?"): consecutive row batches of one layer,
/// each kept as its own centred Gram.
#[derive(Clone, Debug)]
pub(crate) struct BatchedKernel {
    batches: Vec<CentredKernel>,
    self_mean: f64,
}

/// Splits `0..n` into consecutive batches of `batch` rows. A remainder of
/// fewer than 4 rows, where the unbiased HSIC is undefined, joins the
/// previous batch.
pub(crate) fn batch_bounds(n: usize, batch: usize) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        bounds.push((start, end));
        start = end;
    }
    if bounds.len() > 1 {
        let (last_start, last_end) = bounds[bounds.len() - 1];
        if last_end - last_start < 4 {
            bounds.pop();
            let prev = bounds.len() - 1;
            bounds[prev].1 = last_end;
        }
    }
    bounds
}

impl BatchedKernel {
    /// Splits `x` into batches and centres each batch's linear Gram.
    pub(crate) fn new(
        x: ArrayView2<f64>,
        batch: usize,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let batches: Vec<CentredKernel> = batch_bounds(x.nrows(), batch)
            .into_iter()
            .map(|(s, e)| CentredKernel::linear(x.slice(ndarray::s![s..e, ..]), KernelForm::Gram))
            .collect();
        let self_mean =
            batches.iter().map(|b| b.self_hsic_unbiased()).sum::<f64>() / batches.len() as f64;
        if self_mean <= 0.0 || !self_mean.is_finite() {
            return Err(MetricError::Undefined {
                metric: metric.to_string(),
                layer: layer.to_string(),
                reason: format!(
                    "the mean unbiased HSIC of the layer with itself is {self_mean:e}, not \
                     positive; use larger batches or linear_cka_debiased"
                ),
            });
        }
        Ok(BatchedKernel { batches, self_mean })
    }

    /// Returns mean HSIC over batches divided by the root of the two mean
    /// self-HSICs. Batches are paired by position, so both sides must have
    /// been split with the same batch size.
    pub(crate) fn cka(&self, other: &BatchedKernel) -> f64 {
        let cross: f64 = self
            .batches
            .iter()
            .zip(&other.batches)
            .map(|(a, b)| a.hsic_unbiased(b))
            .sum::<f64>()
            / self.batches.len() as f64;
        cross / (self.self_mean * other.self_mean).sqrt()
    }
}
