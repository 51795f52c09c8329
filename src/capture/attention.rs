//! Attention over sequences packed end to end in one row, on the CPU.
//!
//! A packed batch ([`super::batch::Padding::None`]) puts its stimuli one
//! after another in a single row of `slots` tokens, so the linear layers,
//! norms and RoPE spend nothing on padding. Attention is the one step that
//! must keep the stimuli apart: [`PackedAttention`] attends within each
//! sequence only, with two GEMMs per sequence and head (`Q Kᵀ`, then `P V`)
//! and a masked softmax between them. The scores of one sequence take
//! `length²` floats, so the work grows with the sum of squared lengths
//! instead of the batch width times the number of slots.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::batch::Batch;

/// Attention mask of a batch: which keys each query may attend to.
#[derive(Debug, Clone)]
pub(crate) enum AttentionMask {
    /// Additive `batch 1 pos pos` mask of a padded batch.
    Additive(Tensor),
    /// `(first slot, length)` of each stimulus of a packed batch, and the
    /// sliding window of a decoder's local layers, if any.
    Packed {
        segments: Arc<[(usize, usize)]>,
        window: Option<usize>,
    },
}

impl AttentionMask {
    /// Builds the mask of a packed batch from its stimuli's slot ranges.
    pub(crate) fn packed(batch: &Batch, window: Option<usize>) -> Self {
        let segments = (0..batch.n_stimuli())
            .map(|r| (batch.slots(r).start, batch.lengths[r]))
            .collect();
        Self::Packed { segments, window }
    }
}

/// Scaled dot-product attention of packed sequences, as a candle op on
/// `q` (`1 n_heads slots head_dim`), `k` and `v` (`1 n_kv_heads slots
/// head_dim`), all contiguous f32. Query head `h` reads key/value head
/// `h / (n_heads / n_kv_heads)` (grouped-query attention). The output is
/// `1 slots n_heads*head_dim`, the layout the output projection reads.
#[derive(Debug, Clone)]
pub(crate) struct PackedAttention {
    /// `(first slot, length)` of each sequence, in order, covering the row.
    pub segments: Arc<[(usize, usize)]>,
    /// Factor of the scores `q·k` before the softmax.
    pub scale: f32,
    /// Whether a query attends only to itself and earlier keys (decoders) or
    /// to every key of its sequence (encoders).
    pub causal: bool,
    /// With `causal`, the number of most recent keys a query attends to,
    /// itself included (transformers' `kv_idx > q_idx - window`).
    pub window: Option<usize>,
}

/// Shapes of one call, checked against each other.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n_heads: usize,
    n_kv_heads: usize,
    slots: usize,
    head_dim: usize,
}

impl PackedAttention {
    fn dims(&self, q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<Dims> {
        let (b, n_heads, slots, head_dim) = q.shape().dims4()?;
        let (kb, n_kv_heads, kslots, kdim) = k.shape().dims4()?;
        if b != 1 || kb != 1 || v.shape() != k.shape() {
            candle_core::bail!(
                "packed attention takes one row: q {:?}, k {:?}, v {:?}",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        if kslots != slots || kdim != head_dim || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            candle_core::bail!(
                "packed attention: q {:?} does not fit k {:?}",
                q.shape(),
                k.shape()
            );
        }
        let mut next = 0;
        for &(start, len) in self.segments.iter() {
            if start != next {
                candle_core::bail!("packed attention: sequence at slot {start}, expected {next}");
            }
            next = start + len;
        }
        if next != slots {
            candle_core::bail!("packed attention: sequences cover {next} of {slots} slots");
        }
        Ok(Dims {
            n_heads,
            n_kv_heads,
            slots,
            head_dim,
        })
    }

    /// Computes every head of one sequence into `out`, its `length
    /// n_heads*head_dim` rows of the output.
    fn sequence(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        dims: Dims,
        start: usize,
        len: usize,
        out: &mut [f32],
        parallelism: Parallelism,
    ) {
        let Dims {
            n_heads,
            n_kv_heads,
            slots,
            head_dim,
        } = dims;
        let groups = n_heads / n_kv_heads;
        let row = n_heads * head_dim;
        let mut scores = vec![0f32; len * len];
        for head in 0..n_heads {
            let kv = head / groups;
            let q_rows = &q[(head * slots + start) * head_dim..][..len * head_dim];
            let k_rows = &k[(kv * slots + start) * head_dim..][..len * head_dim];
            let v_rows = &v[(kv * slots + start) * head_dim..][..len * head_dim];
            // scores = Q Kᵀ, with Kᵀ read from the rows of K by swapped strides.
            // SAFETY: `q_rows` and `k_rows` are `len x head_dim` row-major and
            // `scores` is `len x len`, so every access stays inside them.
            unsafe {
                product(
                    (len, len, head_dim),
                    (scores.as_mut_ptr(), len),
                    (q_rows.as_ptr(), 1, head_dim),
                    (k_rows.as_ptr(), head_dim, 1),
                    parallelism,
                );
            }
            if matches!(parallelism, Parallelism::None) {
                for (i, scores_row) in scores.chunks_exact_mut(len).enumerate() {
                    self.softmax_row(scores_row, i);
                }
            } else {
                scores
                    .par_chunks_exact_mut(len)
                    .enumerate()
                    .for_each(|(i, scores_row)| self.softmax_row(scores_row, i));
            }
            // out = P V, written into this head's columns.
            // SAFETY: `v_rows` is `len x head_dim` row-major. The output rows of
            // this head start at column `head * head_dim` of `len` rows of
            // `row` floats, which `out` holds.
            debug_assert!(out.len() >= (len - 1) * row + (head + 1) * head_dim);
            unsafe {
                product(
                    (len, head_dim, len),
                    (out.as_mut_ptr().add(head * head_dim), row),
                    (scores.as_ptr(), 1, len),
                    (v_rows.as_ptr(), 1, head_dim),
                    parallelism,
                );
            }
        }
    }

    /// Scales the scores of query `i`, turns those of the keys it may attend
    /// to into a softmax, and sets the rest to zero.
    fn softmax_row(&self, scores: &mut [f32], i: usize) {
        let (first, end) = if self.causal {
            let first = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
            (first, i + 1)
        } else {
            (0, scores.len())
        };
        let mut max = f32::NEG_INFINITY;
        for x in &mut scores[first..end] {
            *x *= self.scale;
            max = max.max(*x);
        }
        let mut sum = 0f32;
        for x in &mut scores[first..end] {
            *x = (*x - max).exp();
            sum += *x;
        }
        for x in &mut scores[first..end] {
            *x /= sum;
        }
        scores[..first].fill(0.0);
        scores[end..].fill(0.0);
    }
}

/// Computes `dst = lhs rhs` for an `m x k` `lhs` and a `k x n` `rhs`, each
/// given as (pointer, column stride, row stride), into `m x n` rows of `dst`
/// given as (pointer, row stride) with unit column stride.
///
/// # Safety
///
/// Every element that the shapes and strides address must lie inside the
/// allocation its pointer comes from, and `dst` must not overlap the inputs.
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    (dst, dst_row): (*mut f32, usize),
    (lhs, lhs_col, lhs_row): (*const f32, usize, usize),
    (rhs, rhs_col, rhs_row): (*const f32, usize, usize),
    parallelism: Parallelism,
) {
    // gemm computes dst = alpha dst + beta lhs rhs, and skips reading dst
    // when read_dst is false.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row as isize,
        false,
        lhs,
        lhs_col as isize,
        lhs_row as isize,
        rhs,
        rhs_col as isize,
        rhs_row as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// Returns the contiguous f32 data of input `name` of `op`, or an error for a
/// strided one.
pub(super) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    name: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((from, to)) => Ok(&data[from..to]),
        None => candle_core::bail!("{op} needs a contiguous {name}"),
    }
}

impl CustomOp3 for PackedAttention {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(q_layout, k_layout, v_layout)?;
        let inputs = (
            contiguous_f32(q, q_layout, self.name(), "q")?,
            contiguous_f32(k, k_layout, self.name(), "k")?,
            contiguous_f32(v, v_layout, self.name(), "v")?,
        );
        let row = dims.n_heads * dims.head_dim;
        let mut out = vec![0f32; dims.slots * row];

        // Each sequence owns a run of output rows, so the sequences run in
        // parallel on disjoint slices. With fewer sequences than threads the
        // GEMMs and softmax rows of each sequence use the threads instead.
        let threads = rayon::current_num_threads();
        let parallelism = if self.segments.len() < threads {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        let mut parts = Vec::with_capacity(self.segments.len());
        let mut rest = out.as_mut_slice();
        for &(start, len) in self.segments.iter() {
            let (part, tail) = rest.split_at_mut(len * row);
            parts.push((start, len, part));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(start, len, part)| {
            if len > 0 {
                self.sequence(inputs, dims, start, len, part, parallelism);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((1, dims.slots, row))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const HEAD_DIM: usize = 8;

    /// Attention of one query computed directly in f64: `q`, `k`, `v` are
    /// `heads slots head_dim` row-major, and keys `first..end` are visible.
    fn direct(
        (q, k, v): (&[f32], &[f32], &[f32]),
        slots: usize,
        (head, query): (usize, usize),
        (first, end): (usize, usize),
        scale: f64,
    ) -> Vec<f64> {
        let kv = head / (HEADS / KV_HEADS);
        let row = |x: &[f32], h: usize, s: usize| {
            x[(h * slots + s) * HEAD_DIM..(h * slots + s + 1) * HEAD_DIM].to_vec()
        };
        let qv = row(q, head, query);
        let scores: Vec<f64> = (first..end)
            .map(|j| {
                let kj = row(k, kv, j);
                scale
                    * qv.iter()
                        .zip(&kj)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut out = vec![0f64; HEAD_DIM];
        for (w, j) in weights.iter().zip(first..end) {
            for (o, x) in out.iter_mut().zip(row(v, kv, j)) {
                *o += w / total * f64::from(x);
            }
        }
        out
    }

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Runs the op on random inputs and checks every output against
    /// [`direct`]; returns the largest absolute difference.
    fn check(segments: &[(usize, usize)], causal: bool, window: Option<usize>) -> f64 {
        let slots: usize = segments.iter().map(|s| s.1).sum();

        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let q = random(&mut rng, HEADS * slots * HEAD_DIM);
        let k = random(&mut rng, KV_HEADS * slots * HEAD_DIM);
        let v = random(&mut rng, KV_HEADS * slots * HEAD_DIM);
        let tensor = |x: &[f32], h: usize| {
            Tensor::from_slice(x, (1, h, slots, HEAD_DIM), &Device::Cpu).unwrap()
        };
        let op = PackedAttention {
            segments: segments.into(),
            scale: 0.35,
            causal,
            window,
        };
        let out = tensor(&q, HEADS)
            .apply_op3_no_bwd(&tensor(&k, KV_HEADS), &tensor(&v, KV_HEADS), &op)
            .unwrap();
        assert_eq!(out.dims(), [1, slots, HEADS * HEAD_DIM]);
        let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();

        let mut worst = 0f64;
        for &(start, len) in segments {
            for i in 0..len {
                let visible = if causal {
                    let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
                    (start + first, start + i + 1)
                } else {
                    (start, start + len)
                };
                for head in 0..HEADS {
                    let expected = direct((&q, &k, &v), slots, (head, start + i), visible, 0.35);
                    let at = (start + i) * HEADS * HEAD_DIM + head * HEAD_DIM;
                    for (a, e) in out[at..at + HEAD_DIM].iter().zip(&expected) {
                        worst = worst.max((f64::from(*a) - e).abs());
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn packed_causal_matches_direct() {
        let worst = check(&[(0, 5), (5, 1), (6, 9)], true, None);
        assert!(worst < 1e-5, "max abs difference {worst:.2e}");
    }

    #[test]
    fn packed_window_matches_direct() {
        let worst = check(&[(0, 12), (12, 3)], true, Some(4));
        assert!(worst < 1e-5, "max abs difference {worst:.2e}");
    }

    #[test]
    fn packed_bidirectional_matches_direct() {
        let worst = check(&[(0, 7), (7, 2), (9, 4)], false, None);
        assert!(worst < 1e-5, "max abs difference {worst:.2e}");
    }

    #[test]
    fn packed_single_sequence_matches_direct() {
        // One sequence: the GEMMs take the threads instead of the sequences.
        let worst = check(&[(0, 40)], true, None);
        assert!(worst < 1e-5, "max abs difference {worst:.2e}");
    }

    #[test]
    fn packed_rejects_gaps_between_sequences() {
        let x = Tensor::zeros((1, 2, 6, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let op = PackedAttention {
            segments: [(0, 2), (3, 3)].as_slice().into(),
            scale: 1.0,
            causal: true,
            window: None,
        };
        let err = x.apply_op3_no_bwd(&x, &x, &op).unwrap_err().to_string();
        assert!(err.contains("sequence at slot 3, expected 2"), "{err}");
    }
}
