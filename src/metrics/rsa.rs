//! Representational similarity analysis (Kriegeskorte, Mur and Bandettini
//! 2008): build an RDM per representation, then compare the upper
//! triangles.
//!
//! RDMs follow rsatoolbox 0.3's `calc_rdm`: `correlation` is 1 - Pearson r
//! of two rows, `euclidean` is the squared distance divided by the number
//! of columns, and `cosine` (SciPy's `pdist` convention) is 1 - cosine
//! similarity. Each layer's RDM vector is ranked or normalised once, so a
//! pair is a dot product (Spearman, Pearson, cosine, rho-a) or an
//! `O(m log m)` count (tau-a), with `m = n(n-1)/2`.

use ndarray::{Array2, ArrayView2};

use super::linalg::{gram, normalise_rows, pairwise_squared_distances};
use super::rank::{average_ranks, dense_ranks, kendall_tau_a, order_by_rank};
use super::spec::{RdmComparison, RdmMethod};
use super::MetricError;

/// Index of the pair `(i, j)`, `i < j`, in the condensed upper triangle of
/// an `n x n` matrix (row-major, SciPy's `squareform` order).
pub(crate) fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    debug_assert!(i < j && j < n);
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

/// The per-layer form of the RDM vector that the comparison needs.
#[derive(Clone, Debug)]
enum Derived {
    /// A unit vector: centred ranks (Spearman), centred values (Pearson) or
    /// raw values (cosine), so the comparison is a dot product.
    Unit(Vec<f64>),
    /// Average ranks minus their mean, for rho-a.
    CentredRanks(Vec<f64>),
    /// Dense ranks and the indices in rank order, for tau-a.
    Dense { ranks: Vec<u32>, order: Vec<u32> },
}

/// One layer's RDM vector and its comparison-ready form.
#[derive(Clone, Debug)]
pub(crate) struct RdmLayer {
    /// Number of stimuli, `None` after a bootstrap resample (which drops
    /// pairs and so no longer forms a full triangle).
    n: Option<usize>,
    values: Vec<f64>,
    derived: Derived,
}

/// Computes the condensed RDM of `x`: the upper triangle `i < j`, row by
/// row.
pub(crate) fn rdm_vector(
    x: ArrayView2<f64>,
    method: RdmMethod,
    layer: &str,
    metric: &str,
) -> Result<Vec<f64>, MetricError> {
    let degenerate = |row: usize, problem: &'static str| MetricError::DegenerateRow {
        layer: layer.to_string(),
        row,
        metric: metric.to_string(),
        problem,
        fix: "use rsa:rdm=euclidean or drop the stimulus",
    };
    let full = match method {
        RdmMethod::Correlation => {
            let z = row_correlation_basis(x)
                .map_err(|row| degenerate(row, "is constant (all its activations are equal)"))?;
            gram(z.view()).mapv(|c| 1.0 - c)
        }
        RdmMethod::Cosine => {
            let z = normalise_rows(x).map_err(|row| degenerate(row, "is all zeros"))?;
            gram(z.view()).mapv(|c| 1.0 - c)
        }
        RdmMethod::Euclidean => pairwise_squared_distances(x) / x.ncols() as f64,
    };
    Ok(upper_triangle(&full))
}

/// Returns the rows of `x` centred across their features and scaled to
/// unit norm, or the index of the first constant row.
fn row_correlation_basis(x: ArrayView2<f64>) -> Result<Array2<f64>, usize> {
    // Checked exactly: the mean of equal values can differ from them in the
    // last bit, which would leave rounding noise to normalise.
    if let Some(row) = x
        .rows()
        .into_iter()
        .position(|r| r.iter().all(|&v| v == r[0]))
    {
        return Err(row);
    }
    let mut centred = x.to_owned();
    for mut row in centred.rows_mut() {
        let mean = row.mean().unwrap_or(0.0);
        row -= mean;
    }
    normalise_rows(centred.view())
}

fn upper_triangle(full: &Array2<f64>) -> Vec<f64> {
    let n = full.nrows();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        let row = full.row(i);
        out.extend((i + 1..n).map(|j| row[j]));
    }
    out
}

fn unit(values: Vec<f64>, centre: bool) -> Option<Vec<f64>> {
    let mut v = values;
    if centre {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter_mut().for_each(|x| *x -= mean);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}

fn derive(values: &[f64], compare: RdmComparison) -> Option<Derived> {
    match compare {
        RdmComparison::Spearman => unit(average_ranks(values), true).map(Derived::Unit),
        RdmComparison::Pearson => unit(values.to_vec(), true).map(Derived::Unit),
        RdmComparison::Cosine => unit(values.to_vec(), false).map(Derived::Unit),
        RdmComparison::RhoA => {
            let mut ranks = average_ranks(values);
            let mean = ranks.iter().sum::<f64>() / ranks.len() as f64;
            ranks.iter_mut().for_each(|r| *r -= mean);
            Some(Derived::CentredRanks(ranks))
        }
        RdmComparison::KendallTauA => {
            let ranks = dense_ranks(values);
            let order = order_by_rank(&ranks);
            Some(Derived::Dense { ranks, order })
        }
    }
}

impl RdmLayer {
    /// Builds the RDM of `x` and prepares it for `compare`.
    pub(crate) fn new(
        x: ArrayView2<f64>,
        method: RdmMethod,
        compare: RdmComparison,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let values = rdm_vector(x, method, layer, metric)?;
        Self::from_values(Some(x.nrows()), values, compare, layer, metric)
    }

    fn from_values(
        n: Option<usize>,
        values: Vec<f64>,
        compare: RdmComparison,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let derived = derive(&values, compare).ok_or_else(|| MetricError::Undefined {
            metric: metric.to_string(),
            layer: layer.to_string(),
            reason: "every dissimilarity in its RDM is equal, so the RDM has no variance \
                     to correlate; use compare=kendall_tau_a or compare=rho_a, or another RDM"
                .to_string(),
        })?;
        Ok(RdmLayer { n, values, derived })
    }

    /// Compares two RDMs prepared with the same comparison.
    /// Returns the vector whose dot product with another layer's gives
    /// the comparison ([`RdmLayer::compare_from_dot`]), if the comparison
    /// is one.
    pub(crate) fn dot_vector(&self) -> Option<&[f64]> {
        match &self.derived {
            Derived::Unit(v) | Derived::CentredRanks(v) => Some(v),
            Derived::Dense { .. } => None,
        }
    }

    /// Turns the dot product of the two layers' [`RdmLayer::dot_vector`]s
    /// into the comparison value.
    pub(crate) fn compare_from_dot(&self, dot: f64) -> f64 {
        match &self.derived {
            Derived::CentredRanks(a) => {
                let m = a.len() as f64;
                12.0 * dot / (m * m * m - m)
            }
            _ => dot,
        }
    }

    pub(crate) fn compare(&self, other: &RdmLayer) -> f64 {
        match (&self.derived, &other.derived) {
            (Derived::Unit(a), Derived::Unit(b)) => super::linalg::dot_slices(a, b),
            (Derived::CentredRanks(a), Derived::CentredRanks(b)) => {
                let m = a.len() as f64;
                12.0 * super::linalg::dot_slices(a, b) / (m * m * m - m)
            }
            (
                Derived::Dense { ranks, order },
                Derived::Dense {
                    ranks: other_ranks, ..
                },
            ) => kendall_tau_a(ranks, order, other_ranks),
            _ => unreachable!("both RDMs are prepared from the same metric spec"),
        }
    }

    /// Returns the layer with its stimuli reordered by `p`: entry `(i, j)`
    /// becomes entry `(p[i], p[j])` of the original.
    pub(crate) fn permuted(&self, p: &[usize]) -> RdmLayer {
        let n = self.n.expect("permutations are applied to full RDMs");
        let mut map = Vec::with_capacity(self.values.len());
        for i in 0..n {
            for j in (i + 1)..n {
                let (a, b) = (p[i].min(p[j]), p[i].max(p[j]));
                map.push(condensed_index(n, a, b));
            }
        }
        let gather_f = |v: &[f64]| map.iter().map(|&k| v[k]).collect::<Vec<f64>>();
        let derived = match &self.derived {
            Derived::Unit(v) => Derived::Unit(gather_f(v)),
            Derived::CentredRanks(v) => Derived::CentredRanks(gather_f(v)),
            Derived::Dense { ranks, .. } => {
                let ranks: Vec<u32> = map.iter().map(|&k| ranks[k]).collect();
                let order = order_by_rank(&ranks);
                Derived::Dense { ranks, order }
            }
        };
        RdmLayer {
            n: Some(n),
            values: gather_f(&self.values),
            derived,
        }
    }

    /// Returns the RDM of the resampled stimuli `rows` (repeats allowed):
    /// every pair `a < b` of resample positions with `rows[a] != rows[b]`,
    /// in order. Pairs of a stimulus with its own copy are left out.
    pub(crate) fn resampled(
        &self,
        rows: &[usize],
        compare: RdmComparison,
        layer: &str,
        metric: &str,
    ) -> Result<RdmLayer, MetricError> {
        let n = self
            .n
            .expect("bootstrap resamples are drawn from full RDMs");
        let mut values = Vec::with_capacity(rows.len() * rows.len().saturating_sub(1) / 2);
        for (a, &ra) in rows.iter().enumerate() {
            for &rb in &rows[a + 1..] {
                if ra != rb {
                    values.push(self.values[condensed_index(n, ra.min(rb), ra.max(rb))]);
                }
            }
        }
        if values.len() < 2 {
            return Err(MetricError::TooFewStimuli {
                metric: metric.to_string(),
                needed: 3,
                got: values.len(),
                fix: "the resample has fewer than 2 pairs of distinct stimuli".to_string(),
            });
        }
        Self::from_values(None, values, compare, layer, metric)
    }
}
