//! Batching of tokenized stimuli, and pooling of batched hidden states.
//!
//! A [`Batch`] is a padded `batch pos` block of token ids with its mask and
//! position ids. Position ids count valid tokens only, so a stimulus gets the
//! same positions with left padding, right padding or none. [`plan_batches`]
//! groups stimuli of similar length under a token budget; [`pool`] turns a
//! `batch pos d_model` tensor back into one vector (or one block of token
//! vectors) per stimulus, never reading padding.

use candle_core::Tensor;
use serde::Serialize;

/// Side of a sequence that receives the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    Left,
    Right,
}

/// Rule that turns token vectors into a stimulus's representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over every valid token.
    Mean,
    /// Mean over valid tokens that are not special (BOS, EOS, control); falls
    /// back to all valid tokens when a stimulus has only special tokens.
    MeanNoSpecial,
    /// The last valid token.
    Last,
    /// Every valid token, concatenated over stimuli.
    All,
}

/// A padded batch of tokenized stimuli.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Row-major `batch pos` token ids; padding slots contain `pad_id`.
    pub ids: Vec<u32>,
    /// Row-major `batch pos`, 1 for a real token, 0 for padding.
    pub mask: Vec<u8>,
    /// Per row, the position id of every slot (padding gets 0).
    pub positions: Vec<Vec<u32>>,
    /// Stimulus index of each row.
    pub rows: Vec<usize>,
    /// Number of valid tokens of each row.
    pub lengths: Vec<usize>,
    /// Per row, whether each slot contains a special token (padding: false).
    pub special: Vec<Vec<bool>>,
    pub padding: Padding,
    width: usize,
}

impl Batch {
    /// Builds a batch from `(stimulus index, token ids)` pairs.
    pub fn new(
        seqs: &[(usize, &[u32])],
        pad_id: u32,
        padding: Padding,
        is_special: impl Fn(u32) -> bool,
    ) -> Self {
        let width = seqs.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        let mut batch = Self {
            ids: Vec::with_capacity(seqs.len() * width),
            mask: Vec::with_capacity(seqs.len() * width),
            positions: Vec::with_capacity(seqs.len()),
            rows: Vec::with_capacity(seqs.len()),
            lengths: Vec::with_capacity(seqs.len()),
            special: Vec::with_capacity(seqs.len()),
            padding,
            width,
        };
        for &(row, seq) in seqs {
            let pad = width - seq.len();
            let (before, after) = match padding {
                Padding::Left => (pad, 0),
                Padding::Right => (0, pad),
            };
            let mut positions = vec![0u32; before];
            let mut special = vec![false; before];
            batch.ids.extend(std::iter::repeat_n(pad_id, before));
            batch.mask.extend(std::iter::repeat_n(0u8, before));
            for (p, &id) in seq.iter().enumerate() {
                batch.ids.push(id);
                batch.mask.push(1);
                positions.push(p as u32);
                special.push(is_special(id));
            }
            batch.ids.extend(std::iter::repeat_n(pad_id, after));
            batch.mask.extend(std::iter::repeat_n(0u8, after));
            positions.extend(std::iter::repeat_n(0u32, after));
            special.extend(std::iter::repeat_n(false, after));
            batch.positions.push(positions);
            batch.special.push(special);
            batch.rows.push(row);
            batch.lengths.push(seq.len());
        }
        batch
    }

    /// Number of rows.
    pub fn size(&self) -> usize {
        self.rows.len()
    }

    /// Padded length.
    pub fn len(&self) -> usize {
        self.width
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Slot range of row `r`'s valid tokens.
    pub fn valid_range(&self, r: usize) -> std::ops::Range<usize> {
        let pad = self.width - self.lengths[r];
        match self.padding {
            Padding::Left => pad..self.width,
            Padding::Right => 0..self.lengths[r],
        }
    }

    /// Number of real tokens.
    pub fn n_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// Groups stimuli (given by token count) into batches of similar length,
/// each with at most `max_batch_tokens` padded slots and `max_batch_rows`
/// rows. Returns stimulus indices per batch; every index appears once.
pub fn plan_batches(
    lengths: &[usize],
    max_batch_tokens: usize,
    max_batch_rows: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let width = lengths[i].max(1);
        let fits = (current.len() + 1) * width <= max_batch_tokens.max(width)
            && current.len() < max_batch_rows.max(1);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The pooled vectors of one batch at one layer.
pub enum Pooled {
    /// `rows d_model`, one vector per batch row.
    PerStimulus(Vec<f32>),
    /// Token vectors of each row, `(row, tokens d_model)`.
    PerToken(Vec<Vec<f32>>),
}

/// Pools a `batch pos d_model` tensor according to `pooling`.
pub fn pool(hidden: &Tensor, batch: &Batch, pooling: Pooling) -> candle_core::Result<Pooled> {
    let (b, t, d) = hidden.dims3()?;
    debug_assert_eq!((b, t), (batch.size(), batch.len()));
    let data: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
    let token = |r: usize, s: usize| &data[(r * t + s) * d..(r * t + s + 1) * d];

    if pooling == Pooling::All {
        let mut out = Vec::with_capacity(b);
        for r in 0..b {
            let mut rows = Vec::with_capacity(batch.lengths[r] * d);
            for s in batch.valid_range(r) {
                rows.extend_from_slice(token(r, s));
            }
            out.push(rows);
        }
        return Ok(Pooled::PerToken(out));
    }

    let mut out = Vec::with_capacity(b * d);
    for r in 0..b {
        let range = batch.valid_range(r);
        match pooling {
            Pooling::Last => out.extend_from_slice(token(r, range.end - 1)),
            Pooling::Mean | Pooling::MeanNoSpecial => {
                let mut slots: Vec<usize> = range.clone().collect();
                if pooling == Pooling::MeanNoSpecial {
                    let plain: Vec<usize> = range.filter(|&s| !batch.special[r][s]).collect();
                    if !plain.is_empty() {
                        slots = plain;
                    }
                }
                // Accumulate in f64 so long stimuli lose no precision.
                let mut acc = vec![0f64; d];
                for &s in &slots {
                    for (a, &x) in acc.iter_mut().zip(token(r, s)) {
                        *a += f64::from(x);
                    }
                }
                let n = slots.len() as f64;
                out.extend(acc.iter().map(|a| (a / n) as f32));
            }
            Pooling::All => unreachable!("handled above"),
        }
    }
    Ok(Pooled::PerStimulus(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_stimulus_once() {
        let lengths = [5, 1, 9, 9, 3, 12, 2, 7];
        let batches = plan_batches(&lengths, 20, 8);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            let width = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(
                b.len() == 1 || b.len() * width <= 20,
                "batch {b:?} over budget"
            );
        }
    }

    #[test]
    fn positions_count_valid_tokens_only() {
        let a = [7u32, 8, 9];
        let b = [5u32];
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::Left, |_| false);
        assert_eq!(batch.positions[1], vec![0, 0, 0]);
        assert_eq!(batch.mask, vec![1, 1, 1, 0, 0, 1]);
        assert_eq!(batch.valid_range(1), 2..3);
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::Right, |_| false);
        assert_eq!(batch.positions[0], vec![0, 1, 2]);
        assert_eq!(batch.valid_range(1), 0..1);
    }

    #[test]
    fn mean_pooling_skips_padding_and_special() {
        let a = [1u32, 8, 9];
        let b = [1u32, 5];
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::Right, |id| id == 1);
        // Token value = its id, one channel.
        let values: Vec<f32> = batch.ids.iter().map(|&id| id as f32).collect();
        let hidden = Tensor::from_vec(values, (2, 3, 1), &candle_core::Device::Cpu).unwrap();
        let Pooled::PerStimulus(mean) = pool(&hidden, &batch, Pooling::Mean).unwrap() else {
            panic!()
        };
        assert_eq!(mean, vec![6.0, 3.0]);
        let Pooled::PerStimulus(plain) = pool(&hidden, &batch, Pooling::MeanNoSpecial).unwrap()
        else {
            panic!()
        };
        assert_eq!(plain, vec![8.5, 5.0]);
        let Pooled::PerStimulus(last) = pool(&hidden, &batch, Pooling::Last).unwrap() else {
            panic!()
        };
        assert_eq!(last, vec![9.0, 5.0]);
    }
}
