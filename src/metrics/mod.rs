//! Similarity measures between representations, and all-layers grids.
//!
//! A representation is a matrix whose rows are stimuli and whose columns
//! are features (one layer's pooled hidden states, say). The types relate
//! as follows:
//!
//! - [`MetricSpec`] is one measure with its parameters, parsed from
//!   `name:key=value,...` and written back in canonical form. It computes
//!   the measure for one pair of matrices ([`MetricSpec::compute`]).
//! - [`Representation`] names a matrix (the layer name appears in errors).
//! - [`compare_grid`] runs one or more measures over every pair of layers of
//!   two models, preparing each layer once, and adds permutation p-values
//!   and bootstrap intervals as [`GridOptions`] requests; each result is a
//!   [`GridCell`].
//! - [`OutlierPolicy`] clips or drops outlier activations before a grid.
//! - Every failure is a [`MetricError`] that names the layer, row or column.
//!
//! The measures, their formulas, conventions and degenerate cases are
//! documented on [`Measure`] and, at length, in `docs/metrics.md`:
//!
//! | name | measure | kind |
//! |---|---|---|
//! | `linear_cka` | linear CKA, biased HSIC | similarity |
//! | `linear_cka_debiased` | linear CKA, unbiased HSIC | similarity |
//! | `rbf_cka:f=1.0` / `rbf_cka_debiased:f=1.0` | RBF-kernel CKA | similarity |
//! | `minibatch_cka:batch=256` | unbiased HSIC averaged over batches | similarity |
//! | `rsa:rdm=correlation,compare=spearman` | RSA | similarity |
//! | `procrustes_angular` / `procrustes_euclidean` | shape distances | distance |
//! | `svcca:k=10` / `svcca:var=0.99` | SVCCA | similarity |
//! | `pwcca` | projection-weighted CCA | similarity |
//! | `cca_mean_sq` | mean squared canonical correlation | similarity |
//! | `mutual_knn:k=10` | mutual k-NN overlap | similarity |
//! | `cknna:k=10` | CKA on mutual neighbours | similarity |
//!
//! All arithmetic is in f64, whatever the input precision.

mod blas;
mod cca;
mod cka;
mod error;
mod grid;
mod knn;
mod linalg;
mod outliers;
mod parse;
mod prepared;
mod procrustes;
mod rank;
mod rsa;
mod spec;
pub mod stats;
mod validate;

#[cfg(test)]
mod tests;

use ndarray::{Array2, ArrayView2};

pub use error::MetricError;
pub use grid::{compare_grid, compare_pair, gram_stage, GridCell, GridOptions};
pub use outliers::OutlierPolicy;
pub use prepared::{LinearKernelForm, DEFAULT_GRAM_MEMORY_LIMIT};
pub use spec::{
    Measure, MetricKind, MetricSpec, RdmComparison, RdmMethod, SvccaKeep, METRIC_NAMES,
};

/// A named representation: rows are stimuli, columns are features.
#[derive(Clone, Debug, PartialEq)]
pub struct Representation {
    /// The layer name, used in error messages.
    pub name: String,
    /// The activations, one row per stimulus.
    pub data: Array2<f64>,
}

impl Representation {
    /// Names an f64 matrix.
    pub fn new(name: impl Into<String>, data: Array2<f64>) -> Self {
        Representation {
            name: name.into(),
            data,
        }
    }

    /// Converts a matrix of any float type that widens to f64 (`f32`,
    /// `half::f16`, `half::bf16`, `f64`), in any memory layout.
    pub fn from_view<T: Copy + Into<f64>>(name: impl Into<String>, data: ArrayView2<T>) -> Self {
        Representation {
            name: name.into(),
            data: data.mapv(Into::into),
        }
    }
}
