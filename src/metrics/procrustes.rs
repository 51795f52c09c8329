//! Procrustes shape distances (Williams, Kunz, Kornblith and Linderman
//! 2021, "Generalized shape metrics on neural representations").
//!
//! After centring the columns, with the narrower matrix zero-padded to the
//! wider width (which leaves `X_cᵀ Y_c`'s singular values unchanged):
//!
//! - angular: `arccos(‖X_cᵀ Y_c‖_* / (‖X_c‖_F ‖Y_c‖_F))`, in radians;
//! - Euclidean: `min_Q ‖X_c Q − Y_c‖_F = sqrt(‖X_c‖² + ‖Y_c‖² − 2‖X_cᵀ Y_c‖_*)`
//!   over orthogonal `Q`, not scale-normalised (netrep's `LinearMetric`
//!   with `alpha=1`).

use ndarray::{Array2, ArrayView2, Axis};

use super::linalg::{centre_columns, select_rows, singular_values, thin_svd};
use super::MetricError;

/// Ratios `‖X_cᵀY_c‖_* / (‖X_c‖‖Y_c‖)` within this distance of 1 are set
/// to 1. Rounding in the nuclear norm is a few ulps, and arccos turns an
/// error of δ near 1 into an angle of `sqrt(2δ)`, so without the snap a
/// rotated copy reads as ~1e-8 rad. The snap maps angles below
/// `sqrt(2 · 16ε) ≈ 8.4e-8` rad to 0.
const RATIO_SNAP: f64 = 16.0 * f64::EPSILON;

/// One layer's centred data (or its PCA scores when wider than tall) and
/// Frobenius norm.
#[derive(Clone, Debug)]
pub(crate) struct ShapeLayer {
    basis: Array2<f64>,
    norm: f64,
}

impl ShapeLayer {
    /// Centres `x`; a matrix with more columns than rows is replaced by its
    /// scores `U S` (n x n), which have the same Gram matrix, so every
    /// nuclear norm and Frobenius norm is unchanged.
    pub(crate) fn new(x: ArrayView2<f64>, layer: &str) -> Result<Self, MetricError> {
        Self::from_centred(centre_columns(x), layer)
    }

    fn from_centred(xc: Array2<f64>, layer: &str) -> Result<Self, MetricError> {
        let norm = xc.iter().map(|v| v * v).sum::<f64>().sqrt();
        let basis = if xc.ncols() > xc.nrows() {
            let svd = thin_svd(xc.view(), layer)?;
            svd.u * &svd.s
        } else {
            xc
        };
        Ok(ShapeLayer { basis, norm })
    }

    /// Returns `‖X_cᵀ Y_c‖_*`, the sum of singular values.
    fn nuclear_norm(&self, other: &ShapeLayer, layer: &str) -> Result<f64, MetricError> {
        let m = self.basis.t().dot(&other.basis);
        Ok(singular_values(m.view(), layer)?.sum())
    }

    /// Returns the clipped cosine of the angular distance.
    fn ratio(&self, other: &ShapeLayer, layer: &str) -> Result<f64, MetricError> {
        let r = self.nuclear_norm(other, layer)? / (self.norm * other.norm);
        let r = r.clamp(-1.0, 1.0);
        Ok(if 1.0 - r <= RATIO_SNAP { 1.0 } else { r })
    }

    /// Angular Procrustes distance, in radians, in `[0, π/2]`.
    pub(crate) fn angular(&self, other: &ShapeLayer, layer: &str) -> Result<f64, MetricError> {
        Ok(self.ratio(other, layer)?.acos())
    }

    /// Euclidean Procrustes distance, written as
    /// `(‖X‖ - ‖Y‖)² + 2‖X‖‖Y‖(1 - ratio)` so that a rotated copy gives 0.
    pub(crate) fn euclidean(&self, other: &ShapeLayer, layer: &str) -> Result<f64, MetricError> {
        let r = self.ratio(other, layer)?;
        let diff = self.norm - other.norm;
        Ok((diff * diff + 2.0 * self.norm * other.norm * (1.0 - r))
            .max(0.0)
            .sqrt())
    }

    /// Returns the layer with rows reordered by `p`; centring and norms
    /// are unchanged.
    pub(crate) fn permuted(&self, p: &[usize]) -> ShapeLayer {
        ShapeLayer {
            basis: select_rows(self.basis.view(), p),
            norm: self.norm,
        }
    }

    /// Returns the layer of the resampled rows, centred again. Working on
    /// the stored basis is exact: it equals the centred data up to an
    /// orthogonal map of the columns.
    pub(crate) fn resampled(&self, rows: &[usize], layer: &str) -> Result<ShapeLayer, MetricError> {
        let sub = select_rows(self.basis.view(), rows);
        let mean = sub.mean_axis(Axis(0)).expect("resamples are not empty");
        Self::from_centred(sub - &mean, layer)
    }
}
