//! Random draws and summaries for permutation tests and bootstrap
//! confidence intervals.
//!
//! Draw `r` of either kind comes from its own ChaCha8 stream of the grid
//! seed, so every draw is reproducible on its own and draws can run in any
//! order or in parallel.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::MetricKind;

/// Stream offset that keeps bootstrap draws apart from permutation draws.
const BOOTSTRAP_STREAM: u64 = 1 << 63;

/// Returns permutation `index` of `0..n`: a uniform shuffle from stream
/// `index` of `seed`.
pub fn permutation(n: usize, seed: u64, index: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(&mut rng);
    p
}

/// Returns bootstrap resample `index`: `n` row indices drawn uniformly with
/// replacement from stream `2⁶³ + index` of `seed`.
pub fn bootstrap_rows(n: usize, seed: u64, index: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(BOOTSTRAP_STREAM | index as u64);
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// Returns whether a permuted value counts against the observed one: at
/// least as similar (`>=`) for a similarity, at most as distant (`<=`) for
/// a distance.
pub(crate) fn as_extreme(kind: MetricKind, permuted: f64, observed: f64) -> bool {
    match kind {
        MetricKind::Similarity => permuted >= observed,
        MetricKind::Distance => permuted <= observed,
    }
}

/// Returns the permutation p-value `(1 + extreme) / (1 + n_permutations)`.
/// The +1 counts the observed labelling as one of the permutations, so the
/// p-value is never 0 and never below `1 / (1 + n_permutations)`.
pub(crate) fn p_value(extreme: usize, n_permutations: usize) -> f64 {
    (1 + extreme) as f64 / (1 + n_permutations) as f64
}

/// Returns the percentile interval of `values` at `confidence`: the
/// `(1 - c)/2` and `(1 + c)/2` quantiles with linear interpolation
/// (NumPy's default `quantile` method). Sorts `values`.
pub(crate) fn percentile_interval(values: &mut [f64], confidence: f64) -> (f64, f64) {
    values.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (
        quantile_sorted(values, tail),
        quantile_sorted(values, 1.0 - tail),
    )
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    sorted[lower] + (position - lower as f64) * (sorted[upper] - sorted[lower])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], [0.025, 0.975]) = [1.075, 3.925]
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        let (lo, hi) = percentile_interval(&mut v, 0.95);
        assert!((lo - 1.075).abs() < 1e-12);
        assert!((hi - 3.925).abs() < 1e-12);
    }

    #[test]
    fn permutations_are_reproducible_and_distinct() {
        assert_eq!(permutation(20, 5, 3), permutation(20, 5, 3));
        assert_ne!(permutation(20, 5, 3), permutation(20, 5, 4));
        let mut sorted = permutation(20, 5, 3);
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn bootstrap_rows_stay_in_range() {
        let rows = bootstrap_rows(10, 1, 0);
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|&r| r < 10));
        assert_ne!(rows, bootstrap_rows(10, 1, 1));
    }
}
