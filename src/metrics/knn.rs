//! Neighbourhood measures (Huh, Cheung, Wang and Isola 2024, "The Platonic
//! Representation Hypothesis"): mutual k-nearest-neighbour overlap and
//! CKNNA.
//!
//! Rows are scaled to unit norm and compared by cosine similarity. The
//! neighbours of stimulus `i` are the `k` most similar other stimuli:
//! `i` itself is excluded by index, so a duplicate row of `i` is a
//! neighbour like any other, and equal similarities go to the lower index
//! (a stable descending sort).

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::linalg::{gram, invert_permutation, normalise_rows};
use super::MetricError;

/// One layer's neighbour lists: for each stimulus, `k` neighbour indices in
/// ascending index order, each with its cosine similarity.
#[derive(Clone, Debug)]
pub(crate) struct NeighbourLayer {
    k: usize,
    /// Row-major `n x k` neighbour indices, each row sorted ascending.
    index: Vec<u32>,
    /// Cosine similarity of each listed neighbour, aligned with `index`.
    similarity: Vec<f64>,
    /// CKNNA's unbiased HSIC of the layer with itself on its own
    /// neighbourhoods.
    self_hsic: f64,
}

impl NeighbourLayer {
    /// Finds the `k` cosine neighbours of every row of `x`.
    pub(crate) fn new(
        x: ArrayView2<f64>,
        k: usize,
        layer: &str,
        metric: &str,
    ) -> Result<Self, MetricError> {
        let z = normalise_rows(x).map_err(|row| MetricError::DegenerateRow {
            layer: layer.to_string(),
            row,
            metric: metric.to_string(),
            problem: "is all zeros",
            fix: "cosine neighbours need non-zero rows; drop the stimulus",
        })?;
        let s = gram(z.view());
        let n = s.nrows();
        let rows: Vec<(Vec<u32>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                top_k(
                    s.row(i).as_slice().expect("a fresh Gram is contiguous"),
                    i,
                    k,
                )
            })
            .collect();
        let mut index = Vec::with_capacity(n * k);
        let mut similarity = Vec::with_capacity(n * k);
        for (idx, sim) in rows {
            index.extend(idx);
            similarity.extend(sim);
        }
        let mut layer = NeighbourLayer {
            k,
            index,
            similarity,
            self_hsic: 0.0,
        };
        layer.self_hsic = layer.masked_hsic(&layer);
        Ok(layer)
    }

    fn n(&self) -> usize {
        self.index.len() / self.k
    }

    fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let range = i * self.k..(i + 1) * self.k;
        (&self.index[range.clone()], &self.similarity[range])
    }

    /// The neighbour indices of stimulus `i`, ascending.
    #[cfg(test)]
    pub(crate) fn neighbours_of(&self, i: usize) -> &[u32] {
        self.row(i).0
    }

    /// Mean over stimuli of `|N_x(i) ∩ N_y(i)| / k`.
    pub(crate) fn mutual_knn(&self, other: &NeighbourLayer) -> f64 {
        let n = self.n();
        let shared: usize = (0..n)
            .map(|i| intersect(self.row(i), other.row(i)).len())
            .sum();
        shared as f64 / (n * self.k) as f64
    }

    /// CKNNA: the unbiased HSIC of the two cosine kernels restricted to
    /// mutual neighbours, divided by the root of each layer's HSIC with
    /// itself on its own neighbourhoods. `None` when the denominator is not
    /// positive.
    pub(crate) fn cknna(&self, other: &NeighbourLayer) -> Option<f64> {
        let denominator = self.self_hsic * other.self_hsic;
        if denominator <= 0.0 || !denominator.is_finite() {
            return None;
        }
        Some(self.masked_hsic(other) / denominator.sqrt())
    }

    /// The layer's own HSIC, for error messages.
    pub(crate) fn self_hsic(&self) -> f64 {
        self.self_hsic
    }

    /// Song et al.'s unbiased HSIC of `M∘K` and `M∘L`, where `M_ij = 1` if
    /// `j` is a neighbour of `i` in both layers (so `M` need not be
    /// symmetric) and `K`, `L` are the cosine kernels. The term
    /// `tr(K̃L̃) = Σ_ij M_ij K_ij M_ji L_ji` counts pairs that are mutual
    /// in both directions, and `1ᵀK̃L̃1` pairs column sums of `M∘K` with row
    /// sums of `M∘L`, as in the reference code of Huh et al.
    /// (minyoungg/platonic-rep `metrics.py`, `cknna` with `unbiased=True`).
    /// Because `M` is not symmetric, that last term, and so CKNNA, changes
    /// slightly when the two layers are swapped.
    fn masked_hsic(&self, other: &NeighbourLayer) -> f64 {
        let n = self.n();
        let mask: Vec<Vec<(u32, f64, f64)>> = (0..n)
            .map(|i| intersect(self.row(i), other.row(i)))
            .collect();
        let mut trace = 0.0;
        let mut sum_k = 0.0;
        let mut sum_l = 0.0;
        let mut col_k = vec![0.0; n];
        let mut row_l = vec![0.0; n];
        for (i, entries) in mask.iter().enumerate() {
            for &(j, kv, lv) in entries {
                let j = j as usize;
                sum_k += kv;
                sum_l += lv;
                col_k[j] += kv;
                row_l[i] += lv;
                let back = mask[j].binary_search_by_key(&(i as u32), |e| e.0).is_ok();
                if back {
                    // K and L are symmetric, so K_ji L_ji = K_ij L_ij.
                    trace += kv * lv;
                }
            }
        }
        let nf = n as f64;
        let row_term: f64 = col_k.iter().zip(&row_l).map(|(a, b)| a * b).sum();
        (trace + sum_k * sum_l / ((nf - 1.0) * (nf - 2.0)) - 2.0 * row_term / (nf - 2.0))
            / (nf * (nf - 3.0))
    }

    /// Returns the layer with stimuli reordered by `p`: the neighbours of
    /// new stimulus `i` are those of old stimulus `p[i]`, relabelled.
    ///
    /// NOTE: with exactly tied similarities the relabelled lists can differ
    /// from lists recomputed on the reordered rows, because the tie rule
    /// follows the index. Continuous activations almost never tie exactly.
    pub(crate) fn permuted(&self, p: &[usize]) -> NeighbourLayer {
        let inverse = invert_permutation(p);
        let n = self.n();
        let mut index = Vec::with_capacity(n * self.k);
        let mut similarity = Vec::with_capacity(n * self.k);
        for &old in p.iter() {
            let (idx, sim) = self.row(old);
            let mut pairs: Vec<(u32, f64)> = idx
                .iter()
                .zip(sim)
                .map(|(&j, &s)| (inverse[j as usize] as u32, s))
                .collect();
            pairs.sort_unstable_by_key(|e| e.0);
            index.extend(pairs.iter().map(|e| e.0));
            similarity.extend(pairs.iter().map(|e| e.1));
        }
        NeighbourLayer {
            k: self.k,
            index,
            similarity,
            self_hsic: self.self_hsic,
        }
    }
}

/// Returns the `k` largest entries of `row` other than `row[skip]`, ties to
/// the lower index, as (indices ascending, similarities).
fn top_k(row: &[f64], skip: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
    let mut candidates: Vec<(f64, u32)> = row
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != skip)
        .map(|(j, &s)| (s, j as u32))
        .collect();
    let by_rank = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, by_rank);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by_key(|c| c.1);
    (
        candidates.iter().map(|c| c.1).collect(),
        candidates.iter().map(|c| c.0).collect(),
    )
}

/// Returns `(j, K_ij, L_ij)` for the indices `j` in both sorted lists.
fn intersect(a: (&[u32], &[f64]), b: (&[u32], &[f64])) -> Vec<(u32, f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.0.len() && j < b.0.len() {
        match a.0[i].cmp(&b.0[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push((a.0[i], a.1[i], b.1[j]));
                i += 1;
                j += 1;
            }
        }
    }
    out
}
