//! Metric names: parsing `name:key=value,...`, the canonical form, and the
//! facts about each measure (kind, range, chance level, minimum stimuli).

use std::fmt;

use ndarray::ArrayView2;

use super::prepared::{
    pair_dots, pair_value, prepare, LinearKernelForm, Plan, DEFAULT_GRAM_MEMORY_LIMIT,
};
use super::validate::{check_representation, check_rows};
use super::MetricError;

/// The canonical metric names, in the order the help lists them.
pub const METRIC_NAMES: &[&str] = &[
    "linear_cka",
    "linear_cka_debiased",
    "rbf_cka",
    "rbf_cka_debiased",
    "minibatch_cka",
    "rsa",
    "procrustes_angular",
    "procrustes_euclidean",
    "svcca",
    "pwcca",
    "cca_mean_sq",
    "mutual_knn",
    "cknna",
];

/// Whether larger values mean more alike or less alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Larger is more alike (CKA, RSA, CCA, kNN).
    Similarity,
    /// Smaller is more alike, 0 for identical shapes (Procrustes).
    Distance,
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricKind::Similarity => f.write_str("similarity"),
            MetricKind::Distance => f.write_str("distance"),
        }
    }
}

/// How an RDM measures the dissimilarity of two stimuli.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RdmMethod {
    /// 1 - Pearson r between the two activation patterns.
    Correlation,
    /// Squared Euclidean distance divided by the number of columns
    /// (rsatoolbox's `euclidean`).
    Euclidean,
    /// 1 - cosine similarity of the two patterns.
    Cosine,
}

/// How two RDMs (their upper triangles) are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RdmComparison {
    /// Pearson correlation of the average ranks.
    Spearman,
    /// Pearson correlation of the dissimilarities.
    Pearson,
    /// Kendall's tau-a: (concordant - discordant) / number of pairs.
    KendallTauA,
    /// Spearman's rho without tie correction (rsatoolbox's `rho-a`).
    RhoA,
    /// Uncentred cosine of the dissimilarity vectors.
    Cosine,
}

/// How SVCCA chooses the number of PCA components of each representation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SvccaKeep {
    /// A fixed number of components.
    Count(usize),
    /// The smallest number whose explained variance reaches this fraction.
    Variance(f64),
}

/// One measure with all its parameters.
///
/// Below, `X_c` and `Y_c` are the column-centred inputs (n stimuli), `K`
/// and `L` their Gram or kernel matrices, and `H = I - 11ᵀ/n`. Every
/// measure rejects NaN or infinite values, a constant representation
/// (all rows equal) and unequal row counts. The errors listed under each
/// variant come on top of those. `docs/metrics.md` has the long form.
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    /// `linear_cka`: `‖Y_cᵀX_c‖²_F / (‖X_cᵀX_c‖_F ‖Y_cᵀY_c‖_F)`, the biased
    /// HSIC of linear kernels normalised (Kornblith et al. 2019).
    /// Similarity in [0, 1]. Invariant to orthogonal maps, isotropic
    /// scaling and shifts of either side. Biased upwards when n < d.
    LinearCka,
    /// `linear_cka_debiased`: `HSIC₁(K,L) / sqrt(HSIC₁(K,K) HSIC₁(L,L))`
    /// with Song et al. 2012's unbiased U-statistic (eq. 5), the same value
    /// as Székely–Rizzo U-centring. Similarity, range [-1, 1], near 0 for
    /// independent inputs. Same invariances as `linear_cka`. Needs n >= 4;
    /// a non-positive `HSIC₁(K,K)` is an error.
    LinearCkaDebiased,
    /// `rbf_cka:f=…`: biased-HSIC CKA of `K_ij = exp(-‖x_i-x_j‖²/(2σ²))`
    /// with `σ² = f² · median{‖x_i-x_j‖² : i < j}` set per representation
    /// (the n(n-1)/2 off-diagonal pairs; Kornblith et al.'s demo code also
    /// counts the n zero diagonal entries, which moves values by ~1e-3).
    /// Similarity in [0, 1]. Invariant to orthogonal maps, isotropic
    /// scaling and shifts. A median of 0 (most rows identical) is an error.
    RbfCka {
        /// Bandwidth factor, > 0; default 1.0.
        f: f64,
    },
    /// `rbf_cka_debiased:f=…`: as `rbf_cka` with the unbiased HSIC. Range
    /// [-1, 1]; needs n >= 4.
    RbfCkaDebiased {
        /// Bandwidth factor, > 0; default 1.0.
        f: f64,
    },
    /// `minibatch_cka:batch=…`: Nguyen, Raghu and Kornblith 2021. The rows
    /// are split in order into batches of `batch`; a remainder of fewer
    /// than 4 rows joins the previous batch. Value: the mean over batches
    /// of `HSIC₁(K_b, L_b)`, divided by the root of the two mean
    /// self-HSICs (every batch counts once, whatever its size). One batch
    /// gives `linear_cka_debiased`. Range [-1, 1]; same invariances.
    MinibatchCka {
        /// Rows per batch, >= 4; default 256.
        batch: usize,
    },
    /// `rsa:rdm=…,compare=…` (Kriegeskorte et al. 2008). RDMs as in
    /// rsatoolbox 0.3: `correlation` = 1 - Pearson r of two rows,
    /// `euclidean` = squared distance / number of columns, `cosine` =
    /// 1 - cosine. The upper triangles are compared by Spearman (average
    /// ranks), Pearson, Kendall's tau-a, rho-a (`12 Σ r̃_x r̃_y / (m³-m)`,
    /// no tie correction) or cosine. Plain `rsa` is correlation/Spearman.
    /// Similarity in [-1, 1] ([0, 1] for cosine). Invariant to isotropic
    /// scaling; Euclidean RDMs are also invariant to orthogonal maps and
    /// shifts, cosine RDMs to orthogonal maps. A constant row (correlation)
    /// or zero row (cosine) is an error naming the row. A constant RDM is
    /// an error for Spearman, Pearson and cosine, and gives 0 for tau-a and
    /// rho-a.
    Rsa {
        /// The RDM of each representation.
        rdm: RdmMethod,
        /// How the two RDMs are compared.
        compare: RdmComparison,
    },
    /// `procrustes_angular`: `arccos(‖X_cᵀY_c‖_* / (‖X_c‖_F ‖Y_c‖_F))` in
    /// radians (Williams et al. 2021), with the narrower side zero-padded.
    /// Distance in [0, π/2]; a rotated copy gives exactly 0, because ratios
    /// within 16ε of 1 are set to 1. Invariant to orthogonal maps,
    /// isotropic scaling and shifts; symmetric, and a metric.
    ProcrustesAngular,
    /// `procrustes_euclidean`: `min_Q ‖X_c Q - Y_c‖_F` over orthogonal `Q`
    /// (netrep's `LinearMetric(alpha=1)`), not scale-normalised. Distance in
    /// [0, ∞); invariant to orthogonal maps and shifts, and scales with an
    /// isotropic scaling of both sides.
    ProcrustesEuclidean,
    /// `svcca:k=…` or `svcca:var=…` (Raghu et al. 2017): keep the top PCA
    /// components of each centred side, a fixed count or the smallest count
    /// whose explained variance reaches `var`, then report the mean of the
    /// `min(k_x, k_y)` canonical correlations. Similarity in [0, 1];
    /// invariant to orthogonal maps, isotropic scaling and shifts. `k >= n`
    /// and `k` above the numerical rank are errors.
    Svcca {
        /// How many components to keep; default `var=0.99`.
        keep: SvccaKeep,
    },
    /// `pwcca` (Morcos et al. 2018): `Σ α_i ρ_i / Σ α_i` over the canonical
    /// correlations of the raw centred matrices, with `α_i = Σ_j |⟨h_i,
    /// x̃_j⟩|` from the unit canonical variates `h_i` of the first argument
    /// and its centred columns `x̃_j`. Not symmetric: swap the arguments to
    /// weight by the other side. Similarity in [0, 1]; invariant to
    /// orthogonal maps of the second argument, isotropic scaling and
    /// shifts. When rank X + rank Y > n - 1 some correlations are 1 by
    /// construction.
    Pwcca,
    /// `cca_mean_sq`: mean of `ρ_i²` over the `min(rank X, rank Y)`
    /// canonical correlations of the raw centred matrices (Kornblith et
    /// al. 2019's R²_CCA). Similarity in [0, 1]; invariant to invertible
    /// linear maps and shifts.
    CcaMeanSq,
    /// `mutual_knn:k=…` (Huh et al. 2024): mean over stimuli of
    /// `|N_X(i) ∩ N_Y(i)| / k`, with `N(i)` the `k` most cosine-similar
    /// other stimuli (self excluded by index, ties to the lower index).
    /// Similarity in [0, 1]; chance level `k/(n-1)`
    /// ([`MetricSpec::chance_level`]). Invariant to orthogonal maps and
    /// isotropic scaling, not to shifts. Needs `k < n`; a zero row is an
    /// error.
    MutualKnn {
        /// Neighbours per stimulus, >= 1; default 10.
        k: usize,
    },
    /// `cknna:k=…` (Huh et al. 2024): the unbiased HSIC of the two cosine
    /// kernels restricted to pairs `(i, j)` where `j` is a neighbour of `i`
    /// in both, divided by the root of each side's HSIC on its own
    /// neighbourhoods, as in the authors' reference code. Range about
    /// [-1, 1]; invariant to orthogonal maps and isotropic scaling. Needs
    /// `2 <= k < n` and n >= 4; a non-positive self-HSIC is an error.
    Cknna {
        /// Neighbours per stimulus, >= 2; default 10.
        k: usize,
    },
}

/// A parsed measure, the unit the CLI, the grid and the parquet `metric`
/// column refer to.
///
/// Parsed from `name` or `name:key=value,key=value`; its `Display` form is
/// canonical, with every parameter written out, and parses back to the same
/// spec.
///
/// ```
/// use repatlas::metrics::MetricSpec;
/// let spec: MetricSpec = "rsa".parse().unwrap();
/// assert_eq!(spec.to_string(), "rsa:rdm=correlation,compare=spearman");
/// let x = ndarray::array![[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0], [2.0, 5.0]];
/// let cka: MetricSpec = "linear_cka".parse().unwrap();
/// assert!((cka.compute(x.view(), x.view()).unwrap() - 1.0).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    measure: Measure,
}

impl From<Measure> for MetricSpec {
    fn from(measure: Measure) -> Self {
        MetricSpec { measure }
    }
}

impl MetricSpec {
    /// Returns the measure and its parameters.
    pub fn measure(&self) -> &Measure {
        &self.measure
    }

    /// Returns whether the measure is a similarity or a distance.
    pub fn kind(&self) -> MetricKind {
        match self.measure {
            Measure::ProcrustesAngular | Measure::ProcrustesEuclidean => MetricKind::Distance,
            _ => MetricKind::Similarity,
        }
    }

    /// Returns the range of possible values, `(min, max)`. The maximum is
    /// infinite for the unnormalised Procrustes Euclidean distance.
    pub fn value_range(&self) -> (f64, f64) {
        match self.measure {
            Measure::LinearCka | Measure::RbfCka { .. } => (0.0, 1.0),
            Measure::ProcrustesAngular => (0.0, std::f64::consts::FRAC_PI_2),
            Measure::ProcrustesEuclidean => (0.0, f64::INFINITY),
            Measure::Svcca { .. } | Measure::Pwcca | Measure::CcaMeanSq => (0.0, 1.0),
            Measure::MutualKnn { .. } => (0.0, 1.0),
            Measure::Rsa {
                compare: RdmComparison::Cosine,
                ..
            } => (0.0, 1.0),
            _ => (-1.0, 1.0),
        }
    }

    /// Returns the expected value of the measure for unrelated
    /// representations of `n` stimuli where it has a closed form:
    /// `k / (n - 1)` for `mutual_knn`, and `None` for the other measures.
    pub fn chance_level(&self, n: usize) -> Option<f64> {
        match self.measure {
            Measure::MutualKnn { k } if n > 1 => Some(k as f64 / (n - 1) as f64),
            _ => None,
        }
    }

    /// Returns the smallest number of stimuli for which the measure is
    /// defined.
    pub fn min_stimuli(&self) -> usize {
        match self.measure {
            Measure::LinearCkaDebiased | Measure::RbfCkaDebiased { .. } => 4,
            Measure::MinibatchCka { .. } => 4,
            Measure::Cknna { k } => (k + 1).max(4),
            Measure::MutualKnn { k } => k + 1,
            Measure::Rsa { .. } => 3,
            _ => 2,
        }
    }

    /// Computes the measure between `x` and `y` (rows are stimuli, in the
    /// same order on both sides).
    ///
    /// Both inputs are checked first: NaN or infinite values, a constant
    /// representation, unequal row counts and too few stimuli are errors
    /// that name the input ("x" or "y"), row and column. Any memory layout
    /// (transposed, strided) gives the same result.
    pub fn compute(&self, x: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<f64, MetricError> {
        self.compute_named(x, "x", y, "y")
    }

    /// Computes the measure like [`MetricSpec::compute`], naming the inputs
    /// `x_name` and `y_name` in errors.
    pub fn compute_named(
        &self,
        x: ArrayView2<f64>,
        x_name: &str,
        y: ArrayView2<f64>,
        y_name: &str,
    ) -> Result<f64, MetricError> {
        check_representation(x_name, x)?;
        check_representation(y_name, y)?;
        check_rows(x_name, x.nrows(), y_name, y.nrows())?;
        self.check_stimuli(x.nrows())?;
        let plan = Plan::for_pairs(
            x.nrows(),
            &[x.ncols()],
            &[y.ncols()],
            1,
            DEFAULT_GRAM_MEMORY_LIMIT,
            LinearKernelForm::Auto,
        );
        let a = [prepare(self, x_name, x, &plan)?];
        let b = [prepare(self, y_name, y, &plan)?];
        // The product that a grid takes from one pass over all pairs, where
        // the form has one (a streamed kernel keeps no data of its own).
        let cross = pair_dots(&a, &b, &plan).map(|dots| dots[0]);
        pair_value(self, &a[0], &b[0], cross)
    }

    /// Checks that `n` stimuli are enough for this measure.
    pub(crate) fn check_stimuli(&self, n: usize) -> Result<(), MetricError> {
        let needed = self.min_stimuli();
        if n >= needed {
            return Ok(());
        }
        let fix = match self.measure {
            Measure::MutualKnn { .. } | Measure::Cknna { .. } => {
                format!("use k <= {} or more stimuli", n.saturating_sub(1))
            }
            _ => "use more stimuli".to_string(),
        };
        Err(MetricError::TooFewStimuli {
            metric: self.to_string(),
            needed,
            got: n,
            fix,
        })
    }
}

impl fmt::Display for MetricSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.measure {
            Measure::LinearCka => f.write_str("linear_cka"),
            Measure::LinearCkaDebiased => f.write_str("linear_cka_debiased"),
            Measure::RbfCka { f: factor } => write!(f, "rbf_cka:f={factor:?}"),
            Measure::RbfCkaDebiased { f: factor } => write!(f, "rbf_cka_debiased:f={factor:?}"),
            Measure::MinibatchCka { batch } => write!(f, "minibatch_cka:batch={batch}"),
            Measure::Rsa { rdm, compare } => {
                write!(
                    f,
                    "rsa:rdm={},compare={}",
                    rdm_name(*rdm),
                    compare_name(*compare)
                )
            }
            Measure::ProcrustesAngular => f.write_str("procrustes_angular"),
            Measure::ProcrustesEuclidean => f.write_str("procrustes_euclidean"),
            Measure::Svcca {
                keep: SvccaKeep::Count(k),
            } => write!(f, "svcca:k={k}"),
            Measure::Svcca {
                keep: SvccaKeep::Variance(v),
            } => write!(f, "svcca:var={v:?}"),
            Measure::Pwcca => f.write_str("pwcca"),
            Measure::CcaMeanSq => f.write_str("cca_mean_sq"),
            Measure::MutualKnn { k } => write!(f, "mutual_knn:k={k}"),
            Measure::Cknna { k } => write!(f, "cknna:k={k}"),
        }
    }
}

fn rdm_name(rdm: RdmMethod) -> &'static str {
    match rdm {
        RdmMethod::Correlation => "correlation",
        RdmMethod::Euclidean => "euclidean",
        RdmMethod::Cosine => "cosine",
    }
}

fn compare_name(compare: RdmComparison) -> &'static str {
    match compare {
        RdmComparison::Spearman => "spearman",
        RdmComparison::Pearson => "pearson",
        RdmComparison::KendallTauA => "kendall_tau_a",
        RdmComparison::RhoA => "rho_a",
        RdmComparison::Cosine => "cosine",
    }
}
