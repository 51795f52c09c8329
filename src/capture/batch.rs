//! Batching of tokenized stimuli, and pooling of batched hidden states.
//!
//! A [`Batch`] is a `rows slots` block of token ids with its mask and
//! position ids. With [`Padding::Left`] or [`Padding::Right`] each stimulus
//! has a row of its own, padded to the longest. With [`Padding::None`] the
//! stimuli lie end to end in one row, and attention never crosses from one
//! stimulus into another. Position ids count valid tokens only, so a stimulus
//! gets the same positions in every layout. [`plan_batches`] groups stimuli
//! of similar length under a token budget; [`pool`] turns a
//! `rows slots d_model` tensor back into one vector (or one block of token
//! vectors) per stimulus, never reading padding.

use std::ops::Range;

use candle_core::Tensor;
use serde::Serialize;

/// Layout of a batch's stimuli in its token tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// One row per stimulus, padded at the start.
    Left,
    /// One row per stimulus, padded at the end.
    Right,
    /// No padding: the stimuli are packed end to end into one row, and each
    /// attends only to its own tokens. No compute goes to padding slots.
    /// Decoders and BERT encoders on the CPU only.
    None,
}

impl Padding {
    /// Returns whether the batch packs its stimuli into one row.
    pub fn is_packed(self) -> bool {
        self == Self::None
    }

    /// Returns the name used on the command line and in run files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Right => "right",
            Self::None => "none",
        }
    }

    /// Parses a name written by [`Padding::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Left, Self::Right, Self::None]
            .into_iter()
            .find(|p| p.name() == name)
    }
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

/// A batch of tokenized stimuli.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Row-major `rows slots` token ids; padding slots contain `pad_id`.
    pub ids: Vec<u32>,
    /// Row-major `rows slots`, 1 for a real token, 0 for padding.
    pub mask: Vec<u8>,
    /// Row-major `rows slots`, the position id of every slot within its
    /// stimulus (padding gets 0).
    pub positions: Vec<u32>,
    /// Row-major `rows slots`, whether each slot contains a special token
    /// (padding: false).
    pub special: Vec<bool>,
    /// Stimulus index of each stimulus in the batch, in batch order.
    pub rows: Vec<usize>,
    /// Number of valid tokens of each stimulus.
    pub lengths: Vec<usize>,
    pub padding: Padding,
    /// First slot of each stimulus, counted over the flattened `rows slots`.
    starts: Vec<usize>,
    /// Rows and slots per row of the token tensor.
    shape: (usize, usize),
}

impl Batch {
    /// Builds a batch from `(stimulus index, token ids)` pairs.
    pub fn new(
        seqs: &[(usize, &[u32])],
        pad_id: u32,
        padding: Padding,
        is_special: impl Fn(u32) -> bool,
    ) -> Self {
        let total: usize = seqs.iter().map(|(_, s)| s.len()).sum();
        let width = seqs.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        let shape = match padding {
            Padding::None => (usize::from(total > 0), total),
            Padding::Left | Padding::Right => (seqs.len(), width),
        };
        let slots = shape.0 * shape.1;
        let mut batch = Self {
            ids: Vec::with_capacity(slots),
            mask: Vec::with_capacity(slots),
            positions: Vec::with_capacity(slots),
            special: Vec::with_capacity(slots),
            rows: Vec::with_capacity(seqs.len()),
            lengths: Vec::with_capacity(seqs.len()),
            padding,
            starts: Vec::with_capacity(seqs.len()),
            shape,
        };
        for &(row, seq) in seqs {
            let pad = match padding {
                Padding::None => 0,
                Padding::Left | Padding::Right => width - seq.len(),
            };
            let (before, after) = match padding {
                Padding::Left => (pad, 0),
                Padding::Right | Padding::None => (0, pad),
            };
            batch.push_padding(pad_id, before);
            batch.starts.push(batch.ids.len());
            for (p, &id) in seq.iter().enumerate() {
                batch.ids.push(id);
                batch.mask.push(1);
                batch.positions.push(p as u32);
                batch.special.push(is_special(id));
            }
            batch.push_padding(pad_id, after);
            batch.rows.push(row);
            batch.lengths.push(seq.len());
        }
        debug_assert_eq!(batch.ids.len(), slots);
        batch
    }

    fn push_padding(&mut self, pad_id: u32, n: usize) {
        self.ids.extend(std::iter::repeat_n(pad_id, n));
        self.mask.extend(std::iter::repeat_n(0u8, n));
        self.positions.extend(std::iter::repeat_n(0u32, n));
        self.special.extend(std::iter::repeat_n(false, n));
    }

    /// Number of stimuli.
    pub fn n_stimuli(&self) -> usize {
        self.rows.len()
    }

    /// Shape `(rows, slots)` of the token tensor: one row per stimulus when
    /// padded, one row for all of them when packed.
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }

    /// Slots of stimulus `r`'s valid tokens, counted over the flattened
    /// `rows slots`.
    pub fn slots(&self, r: usize) -> Range<usize> {
        self.starts[r]..self.starts[r] + self.lengths[r]
    }

    /// Number of real tokens.
    pub fn n_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// Groups stimuli (given by token count) into batches of similar length,
/// each with at most `max_batch_tokens` slots and `max_batch_rows`
/// stimuli. A padded batch takes its row count times its longest stimulus
/// in slots, a packed one the sum of its lengths. A stimulus longer than the
/// budget gets a batch of its own. Returns stimulus indices per batch; every
/// index appears once.
pub fn plan_batches(
    lengths: &[usize],
    max_batch_tokens: usize,
    max_batch_rows: usize,
    padding: Padding,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for i in order {
        let width = lengths[i].max(1);
        // Sorted by length, so `width` is the longest of a grown batch.
        let slots = if padding.is_packed() {
            tokens + width
        } else {
            (current.len() + 1) * width
        };
        let fits = slots <= max_batch_tokens.max(width) && current.len() < max_batch_rows.max(1);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            tokens = 0;
        }
        current.push(i);
        tokens += width;
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

/// Pools a `rows slots d_model` tensor according to `pooling`.
pub fn pool(hidden: &Tensor, batch: &Batch, pooling: Pooling) -> candle_core::Result<Pooled> {
    let (rows, slots, d) = hidden.dims3()?;
    if (rows, slots) != batch.shape() {
        candle_core::bail!(
            "cannot pool hidden states of shape {:?} with a batch of shape {:?}",
            hidden.dims(),
            batch.shape()
        );
    }
    let data: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
    let token = |slot: usize| &data[slot * d..(slot + 1) * d];
    let n = batch.n_stimuli();

    if pooling == Pooling::All {
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let range = batch.slots(r);
            out.push(data[range.start * d..range.end * d].to_vec());
        }
        return Ok(Pooled::PerToken(out));
    }

    let mut out = Vec::with_capacity(n * d);
    for r in 0..n {
        let range = batch.slots(r);
        match pooling {
            Pooling::Last => out.extend_from_slice(token(range.end - 1)),
            Pooling::Mean | Pooling::MeanNoSpecial => {
                let mut slots: Vec<usize> = range.clone().collect();
                if pooling == Pooling::MeanNoSpecial {
                    let plain: Vec<usize> = range.filter(|&s| !batch.special[s]).collect();
                    if !plain.is_empty() {
                        slots = plain;
                    }
                }
                // Accumulate in f64 so long stimuli lose no precision.
                let mut acc = vec![0f64; d];
                for &s in &slots {
                    for (a, &x) in acc.iter_mut().zip(token(s)) {
                        *a += f64::from(x);
                    }
                }
                let count = slots.len() as f64;
                out.extend(acc.iter().map(|a| (a / count) as f32));
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
        for padding in [Padding::Right, Padding::None] {
            let batches = plan_batches(&lengths, 20, 8, padding);
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            seen.sort();
            assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn plan_counts_padding_only_when_padded() {
        let lengths = [5, 1, 9, 9, 3, 12, 2, 7];
        for b in plan_batches(&lengths, 20, 8, Padding::Right) {
            let width = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(
                b.len() == 1 || b.len() * width <= 20,
                "padded batch {b:?} over budget"
            );
        }
        let packed = plan_batches(&lengths, 20, 8, Padding::None);
        for b in &packed {
            let tokens: usize = b.iter().map(|&i| lengths[i]).sum();
            assert!(
                b.len() == 1 || tokens <= 20,
                "packed batch {b:?} over budget"
            );
        }
        // Sorted lengths 1 2 3 5 7 | 9 9 | 12 when packed. Padded, the same
        // budget takes four batches: 1 2 3 5 | 7 9 | 9 | 12.
        assert_eq!(packed, vec![vec![1, 6, 4, 0, 7], vec![2, 3], vec![5]]);
        assert_eq!(plan_batches(&lengths, 20, 8, Padding::Right).len(), 4);
    }

    #[test]
    fn plan_caps_rows_per_batch() {
        let lengths = [1; 10];
        let batches = plan_batches(&lengths, 1000, 4, Padding::None);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }

    #[test]
    fn positions_count_valid_tokens_only() {
        let a = [7u32, 8, 9];
        let b = [5u32];
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::Left, |_| false);
        assert_eq!(batch.shape(), (2, 3));
        assert_eq!(batch.positions[3..], [0, 0, 0]);
        assert_eq!(batch.mask, vec![1, 1, 1, 0, 0, 1]);
        assert_eq!(batch.slots(1), 5..6);
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::Right, |_| false);
        assert_eq!(batch.positions[..3], [0, 1, 2]);
        assert_eq!(batch.slots(1), 3..4);
        let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, Padding::None, |_| false);
        assert_eq!(batch.shape(), (1, 4));
        assert_eq!(batch.positions, vec![0, 1, 2, 0]);
        assert_eq!(batch.mask, vec![1, 1, 1, 1]);
        assert_eq!(batch.ids, vec![7, 8, 9, 5]);
        assert_eq!(batch.slots(0), 0..3);
        assert_eq!(batch.slots(1), 3..4);
    }

    #[test]
    fn mean_pooling_skips_padding_and_special() {
        let a = [1u32, 8, 9];
        let b = [1u32, 5];
        for padding in [Padding::Right, Padding::Left, Padding::None] {
            let batch = Batch::new(&[(0, &a[..]), (1, &b[..])], 0, padding, |id| id == 1);
            // Token value = its id, one channel.
            let values: Vec<f32> = batch.ids.iter().map(|&id| id as f32).collect();
            let (rows, slots) = batch.shape();
            let hidden =
                Tensor::from_vec(values, (rows, slots, 1), &candle_core::Device::Cpu).unwrap();
            let Pooled::PerStimulus(mean) = pool(&hidden, &batch, Pooling::Mean).unwrap() else {
                panic!()
            };
            assert_eq!(mean, vec![6.0, 3.0], "{padding:?} mean");
            let Pooled::PerStimulus(plain) = pool(&hidden, &batch, Pooling::MeanNoSpecial).unwrap()
            else {
                panic!()
            };
            assert_eq!(plain, vec![8.5, 5.0], "{padding:?} mean-no-special");
            let Pooled::PerStimulus(last) = pool(&hidden, &batch, Pooling::Last).unwrap() else {
                panic!()
            };
            assert_eq!(last, vec![9.0, 5.0], "{padding:?} last");
            let Pooled::PerToken(all) = pool(&hidden, &batch, Pooling::All).unwrap() else {
                panic!()
            };
            assert_eq!(
                all,
                vec![vec![1.0, 8.0, 9.0], vec![1.0, 5.0]],
                "{padding:?} all"
            );
        }
    }
}
