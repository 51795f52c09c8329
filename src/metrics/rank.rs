//! Ranks and Kendall's tau-a, for comparing RDM vectors.

/// Returns `(value, index)` pairs sorted by value. The order among equal
/// values is unspecified, which neither rank function depends on. Sorting
/// the pairs themselves avoids an indirect load per comparison.
fn sorted_pairs(values: &[f64]) -> Vec<(f64, u32)> {
    let mut pairs: Vec<(f64, u32)> = values.iter().zip(0u32..).map(|(&v, i)| (v, i)).collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    pairs
}

/// Returns the ranks of `values`, from 1, with tied values sharing the mean
/// of their ranks (SciPy's `rankdata(method="average")`).
pub(crate) fn average_ranks(values: &[f64]) -> Vec<f64> {
    let sorted = sorted_pairs(values);
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && sorted[end].0 == sorted[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) share (start + 1 + end) / 2.
        let shared = (start + 1 + end) as f64 / 2.0;
        for &(_, i) in &sorted[start..end] {
            ranks[i as usize] = shared;
        }
        start = end;
    }
    ranks
}

/// Returns dense ranks from 0 (equal values share a rank, no gaps).
pub(crate) fn dense_ranks(values: &[f64]) -> Vec<u32> {
    let sorted = sorted_pairs(values);
    let mut ranks = vec![0u32; values.len()];
    let mut current = 0u32;
    for (pos, &(v, i)) in sorted.iter().enumerate() {
        if pos > 0 && v != sorted[pos - 1].0 {
            current += 1;
        }
        ranks[i as usize] = current;
    }
    ranks
}

/// Returns the indices sorted by dense rank, in `O(m)` by counting.
pub(crate) fn order_by_rank(ranks: &[u32]) -> Vec<u32> {
    let levels = ranks.iter().max().map_or(0, |&r| r as usize + 1);
    let mut start = vec![0usize; levels + 1];
    for &r in ranks {
        start[r as usize + 1] += 1;
    }
    for i in 0..levels {
        start[i + 1] += start[i];
    }
    let mut order = vec![0u32; ranks.len()];
    for (i, &r) in ranks.iter().enumerate() {
        order[start[r as usize]] = i as u32;
        start[r as usize] += 1;
    }
    order
}

/// Returns `Σ t(t-1)/2` over the groups of equal values of a sorted slice.
fn tied_pairs_sorted<T: PartialEq>(sorted: &[T]) -> u64 {
    let mut total = 0u64;
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && sorted[end] == sorted[start] {
            end += 1;
        }
        let t = (end - start) as u64;
        total += t * (t - 1) / 2;
        start = end;
    }
    total
}

/// Kendall's tau-a of two equally long rank vectors, in `O(m log m)`.
///
/// `x_order` lists the indices sorted by `x_ranks`. Tied pairs count as
/// neither concordant nor discordant and the denominator is always
/// `m(m-1)/2` (no tie correction). Discordant pairs are counted as the
/// inversions of `y` after sorting by `(x, y)`, counted by merge sort.
pub(crate) fn kendall_tau_a(x_ranks: &[u32], x_order: &[u32], y_ranks: &[u32]) -> f64 {
    let m = x_ranks.len();
    if m < 2 {
        return f64::NAN;
    }
    // Sort by (x, y): x order is given, so only runs of equal x need sorting.
    let mut order = x_order.to_vec();
    let mut x_ties = 0u64;
    let mut xy_ties = 0u64;
    let mut start = 0;
    while start < m {
        let xr = x_ranks[order[start] as usize];
        let mut end = start + 1;
        while end < m && x_ranks[order[end] as usize] == xr {
            end += 1;
        }
        if end - start > 1 {
            let run = &mut order[start..end];
            run.sort_unstable_by_key(|&i| y_ranks[i as usize]);
            let t = (end - start) as u64;
            x_ties += t * (t - 1) / 2;
            let ys: Vec<u32> = run.iter().map(|&i| y_ranks[i as usize]).collect();
            xy_ties += tied_pairs_sorted(&ys);
        }
        start = end;
    }
    let mut ys: Vec<u32> = order.iter().map(|&i| y_ranks[i as usize]).collect();
    let discordant = count_inversions(&mut ys);
    // `ys` is now sorted, so its runs are the ties in y.
    let y_ties = tied_pairs_sorted(&ys);
    let total = (m as u64) * (m as u64 - 1) / 2;
    let concordant_minus_discordant =
        total as f64 - x_ties as f64 - y_ties as f64 + xy_ties as f64 - 2.0 * discordant as f64;
    concordant_minus_discordant / total as f64
}

/// Sorts `v` and returns the number of pairs `i < j` with `v[i] > v[j]`
/// (equal values are not inversions), by bottom-up merge sort.
fn count_inversions(v: &mut [u32]) -> u64 {
    let m = v.len();
    let mut buffer = vec![0u32; m];
    let mut inversions = 0u64;
    let mut width = 1;
    while width < m {
        let mut lo = 0;
        while lo < m {
            let mid = (lo + width).min(m);
            let hi = (lo + 2 * width).min(m);
            inversions += merge(&v[lo..mid], &v[mid..hi], &mut buffer[lo..hi]);
            lo = hi;
        }
        v.copy_from_slice(&buffer);
        width *= 2;
    }
    inversions
}

fn merge(left: &[u32], right: &[u32], out: &mut [u32]) -> u64 {
    let (mut i, mut j, mut k) = (0, 0, 0);
    let mut inversions = 0u64;
    while i < left.len() && j < right.len() {
        if right[j] < left[i] {
            out[k] = right[j];
            inversions += (left.len() - i) as u64;
            j += 1;
        } else {
            out[k] = left[i];
            i += 1;
        }
        k += 1;
    }
    out[k..k + left.len() - i].copy_from_slice(&left[i..]);
    let k = k + left.len() - i;
    out[k..].copy_from_slice(&right[j..]);
    inversions
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn brute_tau_a(x: &[f64], y: &[f64]) -> f64 {
        let m = x.len();
        let mut s = 0.0;
        for i in 0..m {
            for j in (i + 1)..m {
                let a = (x[i] - x[j]).signum() * if x[i] == x[j] { 0.0 } else { 1.0 };
                let b = (y[i] - y[j]).signum() * if y[i] == y[j] { 0.0 } else { 1.0 };
                s += a * b;
            }
        }
        s / (m * (m - 1) / 2) as f64
    }

    #[test]
    fn tau_a_matches_brute_force_with_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for len in [2usize, 3, 10, 57, 200] {
            // Few distinct values, so many ties in x, y and both.
            let x: Vec<f64> = (0..len).map(|_| rng.random_range(0..5) as f64).collect();
            let y: Vec<f64> = (0..len).map(|_| rng.random_range(0..4) as f64).collect();
            let xr = dense_ranks(&x);
            let yr = dense_ranks(&y);
            let got = kendall_tau_a(&xr, &order_by_rank(&xr), &yr);
            let want = brute_tau_a(&x, &y);
            assert!((got - want).abs() < 1e-12, "len {len}: {got} vs {want}");
        }
    }

    #[test]
    fn average_ranks_share_ties() {
        let r = average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]);
        assert_eq!(r, vec![4.0, 1.0, 4.0, 2.0, 4.0]);
    }

    #[test]
    fn dense_ranks_have_no_gaps() {
        assert_eq!(dense_ranks(&[0.5, -1.0, 0.5, 7.0]), vec![1, 0, 1, 2]);
    }
}
