//! Parsing of metric names: `name` or `name:key=value,key=value`.

use std::str::FromStr;

use super::spec::{Measure, MetricSpec, RdmComparison, RdmMethod, SvccaKeep, METRIC_NAMES};
use super::MetricError;

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
        Ok(MetricSpec::from(measure))
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
