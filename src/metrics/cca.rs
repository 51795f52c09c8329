//! Canonical correlation analysis: SVCCA, PWCCA and the mean squared
//! canonical correlation.
//!
//! Canonical correlations are the singular values of `Q_xᵀ Q_y`, with
//! `Q` an orthonormal basis of a centred representation (the left singular
//! vectors of its thin SVD, up to the numerical rank
//! `s_max · max(n, d) · ε`, NumPy's `matrix_rank` rule). There are
//! `min(rank X, rank Y)` of them.
//!
//! - SVCCA (Raghu et al. 2017) first keeps the top PCA components of each
//!   side, so `Q` is the first `k` left singular vectors; it reports the
//!   mean canonical correlation.
//! - PWCCA (Morcos, Raghu and Bengio 2018) weights each correlation `ρ_i`
//!   by `α_i = Σ_j |⟨h_i, x̃_j⟩|`, with `h_i` the unit canonical variate of
//!   the first argument on its raw centred matrix and `x̃_j` its centred
//!   columns: `Σ α_i ρ_i / Σ α_i`. It is not symmetric.
//! - `cca_mean_sq` is `mean(ρ_i²)` on the raw centred matrices.

use ndarray::{s, Array1, Array2, ArrayView2};

use super::linalg::{centre_columns, numerical_rank, select_rows, singular_values, thin_svd};
use super::spec::SvccaKeep;
use super::MetricError;

/// One layer's orthonormal basis, and for PWCCA the projections of its
/// centred columns onto that basis (`Qᵀ X_c = S Vᵀ`).
#[derive(Clone, Debug)]
pub(crate) struct SubspaceLayer {
    q: Array2<f64>,
    projections: Option<Array2<f64>>,
}

impl SubspaceLayer {
    /// Builds the basis of the raw centred `x`, with the PWCCA projections
    /// if `with_projections`.
    pub(crate) fn raw(
        x: ArrayView2<f64>,
        with_projections: bool,
        layer: &str,
    ) -> Result<Self, MetricError> {
        let xc = centre_columns(x);
        let svd = thin_svd(xc.view(), layer)?;
        let rank = numerical_rank(svd.s.view(), xc.nrows(), xc.ncols());
        let q = svd.u.slice(s![.., ..rank]).to_owned();
        let projections = with_projections.then(|| {
            let s = svd.s.slice(s![..rank]);
            let mut p = svd.vt.slice(s![..rank, ..]).to_owned();
            for (mut row, &sv) in p.rows_mut().into_iter().zip(s.iter()) {
                row *= sv;
            }
            p
        });
        Ok(SubspaceLayer { q, projections })
    }

    /// Builds the basis of the top PCA components of `x` chosen by `keep`.
    pub(crate) fn svcca(
        x: ArrayView2<f64>,
        keep: SvccaKeep,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let n = x.nrows();
        if let SvccaKeep::Count(k) = keep {
            if k >= n {
                return Err(MetricError::KeptDimensionTooLarge {
                    metric: metric.to_string(),
                    layer: layer.to_string(),
                    kept: k,
                    n,
                });
            }
        }
        let xc = centre_columns(x);
        let svd = thin_svd(xc.view(), layer)?;
        let rank = numerical_rank(svd.s.view(), xc.nrows(), xc.ncols());
        let k = match keep {
            SvccaKeep::Count(k) => k,
            SvccaKeep::Variance(fraction) => components_for_variance(&svd.s, fraction),
        };
        if k > rank {
            return Err(MetricError::RankTooLow {
                metric: metric.to_string(),
                layer: layer.to_string(),
                kept: k,
                rank,
            });
        }
        Ok(SubspaceLayer {
            q: svd.u.slice(s![.., ..k]).to_owned(),
            projections: None,
        })
    }

    /// Canonical correlations with `other`, largest first, clipped to
    /// `[0, 1]`.
    pub(crate) fn correlations(
        &self,
        other: &SubspaceLayer,
        layer: &str,
    ) -> Result<Array1<f64>, MetricError> {
        let m = self.q.t().dot(&other.q);
        Ok(singular_values(m.view(), layer)?.mapv(|r| r.clamp(0.0, 1.0)))
    }

    /// PWCCA with the weights of this (first) layer.
    pub(crate) fn pwcca(&self, other: &SubspaceLayer, layer: &str) -> Result<f64, MetricError> {
        let projections = self
            .projections
            .as_ref()
            .expect("pwcca layers are built with projections");
        let m = self.q.t().dot(&other.q);
        // The thin SVD's u has min(r_x, r_y) columns, one per correlation.
        let svd = thin_svd(m.view(), layer)?;
        let r = svd.s.len();
        // Canonical variate i of X is Q a_i; its inner products with the
        // centred columns are a_iᵀ (Qᵀ X_c).
        let directions = svd.u.slice(s![.., ..r]);
        let inner = directions.t().dot(projections);
        let weights: Array1<f64> = inner
            .rows()
            .into_iter()
            .map(|row| row.iter().map(|v| v.abs()).sum())
            .collect();
        let rho = svd.s.mapv(|v| v.clamp(0.0, 1.0));
        Ok(weights.dot(&rho) / weights.sum())
    }

    /// Returns the dimension of the basis (the numerical rank, or the kept
    /// components for SVCCA).
    pub(crate) fn dimension(&self) -> usize {
        self.q.ncols()
    }

    /// Returns the layer with rows reordered by `p`.
    pub(crate) fn permuted(&self, p: &[usize]) -> SubspaceLayer {
        SubspaceLayer {
            q: select_rows(self.q.view(), p),
            projections: self.projections.clone(),
        }
    }
}

/// Returns the smallest `k` with `Σ_{j<k} s_j² / Σ s_j² ≥ fraction`.
pub(crate) fn components_for_variance(s: &Array1<f64>, fraction: f64) -> usize {
    let total: f64 = s.iter().map(|v| v * v).sum();
    let mut running = 0.0;
    for (i, v) in s.iter().enumerate() {
        running += v * v;
        if running / total >= fraction {
            return i + 1;
        }
    }
    s.len()
}
