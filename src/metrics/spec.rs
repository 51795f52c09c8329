//! Metric names: parsing `name:key=value,...`, the canonical form, and the
//! facts about each measure (kind, range, chance level, minimum stimuli).

use std::fmt;
use std::str::FromStr;

use ndarray::ArrayView2;

use super::prepared::{pair_value, prepare, LinearKernelForm, Plan, DEFAULT_GRAM_MEMORY_LIMIT};
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
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    /// Linear CKA with the biased HSIC.
    LinearCka,
    /// Linear CKA with the unbiased HSIC U-statistic.
    LinearCkaDebiased,
    /// RBF-kernel CKA, biased HSIC; `f` scales the median-distance bandwidth.
    RbfCka {
        /// Bandwidth factor.
        f: f64,
    },
    /// RBF-kernel CKA, unbiased HSIC.
    RbfCkaDebiased {
        /// Bandwidth factor.
        f: f64,
    },
    /// Linear CKA from unbiased HSIC averaged over consecutive row batches.
    MinibatchCka {
        /// Rows per batch.
        batch: usize,
    },
    /// Representational similarity analysis.
    Rsa {
        /// The RDM of each representation.
        rdm: RdmMethod,
        /// How the two RDMs are compared.
        compare: RdmComparison,
    },
    /// Procrustes angular shape distance, in radians.
    ProcrustesAngular,
    /// Procrustes Euclidean shape distance, min over rotations of the
    /// Frobenius residual.
    ProcrustesEuclidean,
    /// SVCCA: mean canonical correlation after PCA reduction.
    Svcca {
        /// How many components to keep.
        keep: SvccaKeep,
    },
    /// Projection-weighted CCA, weights from the first argument.
    Pwcca,
    /// Mean squared canonical correlation of the raw centred matrices.
    CcaMeanSq,
    /// Mutual k-nearest-neighbour overlap.
    MutualKnn {
        /// Neighbours per stimulus.
        k: usize,
    },
    /// CKA restricted to mutual k-nearest neighbours.
    Cknna {
        /// Neighbours per stimulus.
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
    /// The measure and its parameters.
    pub fn measure(&self) -> &Measure {
        &self.measure
    }

    /// Whether the measure is a similarity or a distance.
    pub fn kind(&self) -> MetricKind {
        match self.measure {
            Measure::ProcrustesAngular | Measure::ProcrustesEuclidean => MetricKind::Distance,
            _ => MetricKind::Similarity,
        }
    }

    /// The range of possible values, `(min, max)`; `max` is infinite for
    /// the unnormalised Procrustes Euclidean distance.
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

    /// The expected value of the measure for unrelated representations of
    /// `n` stimuli, where it has a closed form: `k / (n - 1)` for
    /// `mutual_knn`. `None` for the other measures.
    pub fn chance_level(&self, n: usize) -> Option<f64> {
        match self.measure {
            Measure::MutualKnn { k } if n > 1 => Some(k as f64 / (n - 1) as f64),
            _ => None,
        }
    }

    /// The smallest number of stimuli for which the measure is defined.
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
        let a = prepare(self, x_name, x, &plan)?;
        let b = prepare(self, y_name, y, &plan)?;
        pair_value(self, &a, &b)
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

/// The `key=value` pairs after the colon, with duplicate keys rejected.
struct Params<'s> {
    metric: &'s str,
    pairs: Vec<(&'s str, &'s str)>,
}

impl<'s> Params<'s> {
    fn parse(metric: &'s str, text: Option<&'s str>) -> Result<Self, MetricError> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for item in text
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
        {
            let Some((key, value)) = item.split_once('=') else {
                return Err(invalid(
                    metric,
                    item.trim(),
                    "",
                    "write parameters as key=value",
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(invalid(metric, key, value, "the parameter is given twice"));
            }
            pairs.push((key, value));
        }
        Ok(Params { metric, pairs })
    }

    /// Rejects any key outside `valid`.
    fn allow(&self, valid: &[&str]) -> Result<(), MetricError> {
        for (key, _) in &self.pairs {
            if !valid.contains(key) {
                let valid = if valid.is_empty() {
                    "none".to_string()
                } else {
                    valid.join(", ")
                };
                return Err(MetricError::UnknownParameter {
                    metric: self.metric.to_string(),
                    key: key.to_string(),
                    valid,
                });
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'s str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn positive_f64(&self, key: &str, default: f64) -> Result<f64, MetricError> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(invalid(
                self.metric,
                key,
                text,
                "expected a finite number > 0",
            )),
        }
    }

    fn count(&self, key: &str, default: usize, min: usize) -> Result<usize, MetricError> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(v) if v >= min => Ok(v),
            _ => Err(invalid(
                self.metric,
                key,
                text,
                &format!("expected an integer >= {min}"),
            )),
        }
    }
}

fn invalid(metric: &str, key: &str, value: &str, reason: &str) -> MetricError {
    MetricError::InvalidParameter {
        metric: metric.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_rdm(params: &Params) -> Result<RdmMethod, MetricError> {
    match params.get("rdm").unwrap_or("correlation") {
        "correlation" => Ok(RdmMethod::Correlation),
        "euclidean" => Ok(RdmMethod::Euclidean),
        "cosine" => Ok(RdmMethod::Cosine),
        other => Err(invalid(
            params.metric,
            "rdm",
            other,
            "expected correlation, euclidean or cosine",
        )),
    }
}

fn parse_compare(params: &Params) -> Result<RdmComparison, MetricError> {
    // rsatoolbox's spellings (corr, tau-a, rho-a) are accepted as aliases.
    match params.get("compare").unwrap_or("spearman") {
        "spearman" => Ok(RdmComparison::Spearman),
        "pearson" | "corr" => Ok(RdmComparison::Pearson),
        "kendall_tau_a" | "tau-a" | "tau_a" => Ok(RdmComparison::KendallTauA),
        "rho_a" | "rho-a" => Ok(RdmComparison::RhoA),
        "cosine" => Ok(RdmComparison::Cosine),
        other => Err(invalid(
            params.metric,
            "compare",
            other,
            "expected spearman, pearson, kendall_tau_a, rho_a or cosine",
        )),
    }
}

fn parse_svcca(params: &Params) -> Result<SvccaKeep, MetricError> {
    match (params.get("k"), params.get("var")) {
        (Some(_), Some(_)) => Err(invalid(
            params.metric,
            "k",
            params.get("k").unwrap_or(""),
            "give either k or var, not both",
        )),
        (Some(_), None) => Ok(SvccaKeep::Count(params.count("k", 10, 1)?)),
        (None, Some(text)) => match text.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Ok(SvccaKeep::Variance(v)),
            _ => Err(invalid(
                params.metric,
                "var",
                text,
                "expected a fraction of variance in (0, 1]",
            )),
        },
        (None, None) => Ok(SvccaKeep::Variance(0.99)),
    }
}

impl FromStr for MetricSpec {
    type Err = MetricError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (name, rest) = match text.split_once(':') {
            Some((name, rest)) => (name.trim(), Some(rest)),
            None => (text, None),
        };
        let params = Params::parse(name, rest)?;
        let measure = match name {
            "linear_cka"
            | "linear_cka_debiased"
            | "procrustes_angular"
            | "procrustes_euclidean"
            | "pwcca"
            | "cca_mean_sq" => {
                params.allow(&[])?;
                simple_measure(name)
            }
            "rbf_cka" | "rbf_cka_debiased" => {
                params.allow(&["f"])?;
                let f = params.positive_f64("f", 1.0)?;
                if name == "rbf_cka" {
                    Measure::RbfCka { f }
                } else {
                    Measure::RbfCkaDebiased { f }
                }
            }
            "minibatch_cka" => {
                params.allow(&["batch"])?;
                Measure::MinibatchCka {
                    batch: params.count("batch", 256, 4)?,
                }
            }
            "rsa" => {
                params.allow(&["rdm", "compare"])?;
                Measure::Rsa {
                    rdm: parse_rdm(&params)?,
                    compare: parse_compare(&params)?,
                }
            }
            "svcca" => {
                params.allow(&["k", "var"])?;
                Measure::Svcca {
                    keep: parse_svcca(&params)?,
                }
            }
            "mutual_knn" => {
                params.allow(&["k"])?;
                Measure::MutualKnn {
                    k: params.count("k", 10, 1)?,
                }
            }
            "cknna" => {
                params.allow(&["k"])?;
                Measure::Cknna {
                    k: params.count("k", 10, 2)?,
                }
            }
            _ => {
                return Err(MetricError::UnknownMetric {
                    name: name.to_string(),
                    valid: METRIC_NAMES.join(", "),
                })
            }
        };
        Ok(MetricSpec { measure })
    }
}

fn simple_measure(name: &str) -> Measure {
    match name {
        "linear_cka" => Measure::LinearCka,
        "linear_cka_debiased" => Measure::LinearCkaDebiased,
        "procrustes_angular" => Measure::ProcrustesAngular,
        "procrustes_euclidean" => Measure::ProcrustesEuclidean,
        "pwcca" => Measure::Pwcca,
        _ => Measure::CcaMeanSq,
    }
}
