//! Handling of outlier activations before any measure.
//!
//! A few hidden dimensions of a language model can be 10³–10⁴ times larger
//! than the rest ("massive activations", mostly at the BOS token). They
//! dominate every inner product, so linear CKA then measures little more
//! than those dimensions. The policy is applied to each representation on
//! its own, before centring.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, ArrayView2, Axis};

use super::cka::median_in_place;
use super::MetricError;

/// What to do with outlier activations.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum OutlierPolicy {
    /// Use the activations as they are.
    #[default]
    None,
    /// Clamp every activation to `±t`, with `t` the `quantile` of all
    /// absolute activations of that representation (linear interpolation
    /// between order statistics, as NumPy's `quantile`).
    Clip {
        /// Quantile in (0, 1], e.g. 0.999.
        quantile: f64,
    },
    /// Drop every column whose maximum absolute activation exceeds `factor`
    /// times the median, over columns, of that maximum.
    ExcludeDims {
        /// Factor >= 1, e.g. 100.
        factor: f64,
    },
}

impl OutlierPolicy {
    /// Checks the parameter ranges.
    pub fn validate(&self) -> Result<(), MetricError> {
        match *self {
            OutlierPolicy::None => Ok(()),
            OutlierPolicy::Clip { quantile } if quantile > 0.0 && quantile <= 1.0 => Ok(()),
            OutlierPolicy::Clip { quantile } => Err(MetricError::InvalidOption {
                option: "outliers clip quantile",
                value: quantile.to_string(),
                reason: "expected a quantile in (0, 1], e.g. clip:q=0.999".to_string(),
            }),
            OutlierPolicy::ExcludeDims { factor } if factor >= 1.0 && factor.is_finite() => Ok(()),
            OutlierPolicy::ExcludeDims { factor } => Err(MetricError::InvalidOption {
                option: "outliers exclude factor",
                value: factor.to_string(),
                reason: "expected a finite factor >= 1, e.g. exclude:factor=100".to_string(),
            }),
        }
    }

    /// Returns `x` with the policy applied, and the number of activations
    /// clipped or columns dropped. `None` returns an unchanged copy.
    pub fn apply(&self, x: ArrayView2<f64>) -> (Array2<f64>, usize) {
        match *self {
            OutlierPolicy::None => (x.to_owned(), 0),
            OutlierPolicy::Clip { quantile } => clip(x, quantile),
            OutlierPolicy::ExcludeDims { factor } => exclude(x, factor),
        }
    }
}

fn clip(x: ArrayView2<f64>, quantile: f64) -> (Array2<f64>, usize) {
    let mut magnitudes: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    magnitudes.sort_unstable_by(f64::total_cmp);
    let position = quantile * (magnitudes.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(magnitudes.len() - 1);
    let threshold =
        magnitudes[lower] + (position - lower as f64) * (magnitudes[upper] - magnitudes[lower]);
    let mut clipped = 0;
    let out = x.mapv(|v| {
        if v.abs() > threshold {
            clipped += 1;
            v.clamp(-threshold, threshold)
        } else {
            v
        }
    });
    (out, clipped)
}

fn exclude(x: ArrayView2<f64>, factor: f64) -> (Array2<f64>, usize) {
    let max_abs: Vec<f64> = x
        .axis_iter(Axis(1))
        .map(|c| c.iter().fold(0.0, |m: f64, v| m.max(v.abs())))
        .collect();
    let mut sorted = max_abs.clone();
    let threshold = factor * median_in_place(&mut sorted);
    let keep: Vec<usize> = (0..max_abs.len())
        .filter(|&j| max_abs[j] <= threshold)
        .collect();
    let dropped = max_abs.len() - keep.len();
    (x.select(Axis(1), &keep), dropped)
}

impl fmt::Display for OutlierPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutlierPolicy::None => f.write_str("none"),
            OutlierPolicy::Clip { quantile } => write!(f, "clip:q={quantile:?}"),
            OutlierPolicy::ExcludeDims { factor } => write!(f, "exclude:factor={factor:?}"),
        }
    }
}

impl FromStr for OutlierPolicy {
    type Err = MetricError;

    /// Parses `none`, `clip:q=0.999` or `exclude:factor=100`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || MetricError::InvalidOption {
            option: "outliers",
            value: text.to_string(),
            reason: "expected none, clip:q=<quantile in (0,1]> or exclude:factor=<factor >= 1>"
                .to_string(),
        };
        let policy = match text.trim().split_once(':') {
            None if text.trim() == "none" => OutlierPolicy::None,
            Some(("clip", rest)) => {
                let value = rest.strip_prefix("q=").ok_or_else(invalid)?;
                OutlierPolicy::Clip {
                    quantile: value.parse().map_err(|_| invalid())?,
                }
            }
            Some(("exclude", rest)) => {
                let value = rest.strip_prefix("factor=").ok_or_else(invalid)?;
                OutlierPolicy::ExcludeDims {
                    factor: value.parse().map_err(|_| invalid())?,
                }
            }
            _ => return Err(invalid()),
        };
        policy.validate()?;
        Ok(policy)
    }
}
