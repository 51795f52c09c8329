//! Layer-order variants of a decoder: swap, skip, shuffle, repeat.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

/// One modified order of the blocks. Block indices are 0-based, as in
/// `blocks.{b}` layer names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Variant {
    /// The unmodified model.
    Identity,
    /// Blocks `i` and `j` exchange places.
    Swap { i: usize, j: usize },
    /// Block `i` is left out.
    Skip { i: usize },
    /// Blocks `start..=end` run in a random order drawn with `seed`.
    Shuffle { start: usize, end: usize, seed: u64 },
    /// Block `i` runs twice in a row.
    Repeat { i: usize },
}

impl Variant {
    /// Returns the block order of this variant for a model of `n_blocks` blocks.
    pub fn order(&self, n_blocks: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n_blocks).collect();
        match *self {
            Self::Identity => {}
            Self::Swap { i, j } => order.swap(i, j),
            Self::Skip { i } => {
                order.remove(i);
            }
            Self::Shuffle { start, end, seed } => {
                // Redraw until the range really moves: an unchanged order
                // would count as a perfectly interchangeable range.
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let original = order.clone();
                while end > start && order == original {
                    order[start..=end].shuffle(&mut rng);
                }
            }
            Self::Repeat { i } => order.insert(i + 1, i),
        }
        order
    }

    /// Returns the `kind` column: identity, swap, skip, shuffle or repeat.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Swap { .. } => "swap",
            Self::Skip { .. } => "skip",
            Self::Shuffle { .. } => "shuffle",
            Self::Repeat { .. } => "repeat",
        }
    }

    /// Returns the `i` column: the block acted on, or the first of a pair or range.
    pub fn i(&self) -> Option<u32> {
        match *self {
            Self::Identity => None,
            Self::Swap { i, .. } | Self::Skip { i } | Self::Repeat { i } => Some(i as u32),
            Self::Shuffle { start, .. } => Some(start as u32),
        }
    }

    /// Returns the `j` column: the second block of a swap, or the last of a range.
    pub fn j(&self) -> Option<u32> {
        match *self {
            Self::Swap { j, .. } => Some(j as u32),
            Self::Shuffle { end, .. } => Some(end as u32),
            _ => None,
        }
    }

    /// Returns the `seed` column of shuffles.
    pub fn seed(&self) -> Option<u64> {
        match *self {
            Self::Shuffle { seed, .. } => Some(seed),
            _ => None,
        }
    }

    /// Returns the largest block index the variant names.
    fn max_block(&self) -> Option<usize> {
        match *self {
            Self::Identity => None,
            Self::Swap { i, j } => Some(i.max(j)),
            Self::Skip { i } | Self::Repeat { i } => Some(i),
            Self::Shuffle { end, .. } => Some(end),
        }
    }
}

/// Errors in a variant specification.
#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("invalid variant {spec:?}: {message}; write e.g. swap:3,4 swap:adjacent swap:all skip:5 skip:each shuffle:4-12 shuffle:scan repeat:5 repeat:each")]
    Syntax { spec: String, message: String },
    #[error("variant {spec:?} names block {block}, but the model has blocks 0..={max}")]
    OutOfRange {
        spec: String,
        block: usize,
        max: usize,
    },
    #[error("variant {spec:?} has an empty range: start {start} must be below end {end}, so that at least two blocks move")]
    EmptyRange {
        spec: String,
        start: usize,
        end: usize,
    },
}

/// A family of variants as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantSet {
    Swap(usize, usize),
    SwapAdjacent,
    SwapAll,
    Skip(usize),
    SkipEach,
    Shuffle(usize, usize),
    /// Contiguous ranges of growing width, until none keeps top-1
    /// agreement above the threshold.
    ShuffleScan,
    Repeat(usize),
    RepeatEach,
}

impl std::str::FromStr for VariantSet {
    type Err = VariantError;

    fn from_str(spec: &str) -> Result<Self, VariantError> {
        let syntax = |message: &str| VariantError::Syntax {
            spec: spec.to_string(),
            message: message.to_string(),
        };
        let index = |s: &str| -> Result<usize, VariantError> {
            s.trim()
                .parse()
                .map_err(|_| syntax(&format!("{s:?} is not a block index")))
        };
        let (kind, arg) = spec.split_once(':').ok_or_else(|| syntax("missing ':'"))?;
        match (kind.trim(), arg.trim()) {
            ("swap", "adjacent") => Ok(Self::SwapAdjacent),
            ("swap", "all") => Ok(Self::SwapAll),
            ("swap", pair) => {
                let (i, j) = pair
                    .split_once(',')
                    .ok_or_else(|| syntax("swap needs two blocks, i,j"))?;
                let (i, j) = (index(i)?, index(j)?);
                if i == j {
                    return Err(syntax("swap needs two different blocks"));
                }
                Ok(Self::Swap(i, j))
            }
            ("skip", "each") => Ok(Self::SkipEach),
            ("skip", i) => Ok(Self::Skip(index(i)?)),
            ("shuffle", "scan") => Ok(Self::ShuffleScan),
            ("shuffle", range) => {
                let (a, b) = range
                    .split_once('-')
                    .ok_or_else(|| syntax("shuffle needs a range, start-end"))?;
                let (start, end) = (index(a)?, index(b)?);
                if start >= end {
                    return Err(VariantError::EmptyRange {
                        spec: spec.to_string(),
                        start,
                        end,
                    });
                }
                Ok(Self::Shuffle(start, end))
            }
            ("repeat", "each") => Ok(Self::RepeatEach),
            ("repeat", i) => Ok(Self::Repeat(index(i)?)),
            (other, _) => Err(syntax(&format!("unknown kind {other:?}"))),
        }
    }
}

/// Returns the shuffles of blocks `start..=end` for seeds `0..seeds`,
/// without the seeds whose order an earlier seed drew already. A range of
/// `w` blocks has only `w! - 1` orders that move it (one for two blocks),
/// so more seeds would measure the same variant again.
pub(crate) fn distinct_shuffles(
    start: usize,
    end: usize,
    seeds: u64,
    n_blocks: usize,
) -> Vec<Variant> {
    if end >= n_blocks {
        // Left for the caller to reject with the range, without drawing
        // orders of a model that long.
        return vec![Variant::Shuffle {
            start,
            end,
            seed: 0,
        }];
    }
    let mut seen: Vec<Vec<usize>> = Vec::new();
    let mut variants = Vec::new();
    for seed in 0..seeds {
        let variant = Variant::Shuffle { start, end, seed };
        let order = variant.order(n_blocks);
        if !seen.contains(&order) {
            seen.push(order);
            variants.push(variant);
        }
    }
    variants
}

impl VariantSet {
    /// Expands the set for a model of `n_blocks` blocks (shuffles get
    /// `seeds` seeds). `ShuffleScan` expands to nothing here: it is run
    /// width by width.
    pub fn expand(
        &self,
        n_blocks: usize,
        seeds: u64,
        spec: &str,
    ) -> Result<Vec<Variant>, VariantError> {
        let variants = match *self {
            Self::Swap(i, j) => vec![Variant::Swap { i, j }],
            Self::SwapAdjacent => (0..n_blocks.saturating_sub(1))
                .map(|i| Variant::Swap { i, j: i + 1 })
                .collect(),
            Self::SwapAll => (0..n_blocks)
                .flat_map(|i| (i + 1..n_blocks).map(move |j| Variant::Swap { i, j }))
                .collect(),
            Self::Skip(i) => vec![Variant::Skip { i }],
            Self::SkipEach => (0..n_blocks).map(|i| Variant::Skip { i }).collect(),
            Self::Shuffle(start, end) => distinct_shuffles(start, end, seeds, n_blocks),
            Self::ShuffleScan => Vec::new(),
            Self::Repeat(i) => vec![Variant::Repeat { i }],
            Self::RepeatEach => (0..n_blocks).map(|i| Variant::Repeat { i }).collect(),
        };
        for v in &variants {
            if let Some(block) = v.max_block() {
                if block >= n_blocks {
                    return Err(VariantError::OutOfRange {
                        spec: spec.to_string(),
                        block,
                        max: n_blocks - 1,
                    });
                }
            }
        }
        Ok(variants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_twice_is_identity() {
        let mut order: Vec<usize> = (0..8).collect();
        let swapped = Variant::Swap { i: 2, j: 6 }.order(8);
        for _ in 0..2 {
            order.swap(2, 6);
        }
        assert_eq!(order, Variant::Identity.order(8));
        assert_ne!(swapped, Variant::Identity.order(8));
        // Applying the swap permutation to itself restores the order.
        let twice: Vec<usize> = swapped.iter().map(|&k| swapped[k]).collect();
        assert_eq!(twice, Variant::Identity.order(8));
    }

    #[test]
    fn orders_of_each_kind() {
        assert_eq!(Variant::Skip { i: 1 }.order(4), vec![0, 2, 3]);
        assert_eq!(Variant::Repeat { i: 1 }.order(4), vec![0, 1, 1, 2, 3]);
        assert_eq!(Variant::Swap { i: 3, j: 3 }.order(4), vec![0, 1, 2, 3]);
        let shuffled = Variant::Shuffle {
            start: 1,
            end: 4,
            seed: 7,
        }
        .order(6);
        assert_eq!(shuffled[0], 0);
        assert_eq!(shuffled[5], 5);
        let mut middle = shuffled[1..5].to_vec();
        middle.sort();
        assert_eq!(middle, vec![1, 2, 3, 4]);
        assert_eq!(
            shuffled,
            Variant::Shuffle {
                start: 1,
                end: 4,
                seed: 7
            }
            .order(6),
            "seeded"
        );
    }

    #[test]
    fn parse_and_expand_sets() {
        let all: VariantSet = "swap:all".parse().unwrap();
        assert_eq!(all.expand(5, 1, "swap:all").unwrap().len(), 10);
        let adjacent: VariantSet = "swap:adjacent".parse().unwrap();
        assert_eq!(adjacent.expand(5, 1, "swap:adjacent").unwrap().len(), 4);
        let shuffle: VariantSet = "shuffle:1-3".parse().unwrap();
        let three = shuffle.expand(5, 3, "shuffle:1-3").unwrap();
        assert!(!three.is_empty());
        assert!(three.len() <= 3);
    }

    #[test]
    fn bad_specs_are_rejected() {
        let out: VariantSet = "skip:9".parse().unwrap();
        let err = out.expand(5, 1, "skip:9").unwrap_err().to_string();
        assert!(err.contains("block 9"), "{err}");
        assert!(err.contains("0..=4"), "{err}");
        // A range past the end is rejected before any order is drawn.
        let far: VariantSet = "shuffle:0-18446744073709551615".parse().unwrap();
        let err = far
            .expand(8, 3, "shuffle:0-18446744073709551615")
            .unwrap_err();
        assert!(
            matches!(err, VariantError::OutOfRange { max: 7, .. }),
            "{err}"
        );
        let err = "shuffle:6-2".parse::<VariantSet>().unwrap_err().to_string();
        assert!(err.contains("empty range"), "{err}");
        let err = "shuffle:2-2".parse::<VariantSet>().unwrap_err().to_string();
        assert!(err.contains("two blocks"), "{err}");
        let err = "twist:1".parse::<VariantSet>().unwrap_err().to_string();
        assert!(err.contains("twist"), "{err}");
    }

    #[test]
    fn shuffle_seeds_drop_repeated_orders() {
        // Two blocks have one order that moves them, whatever the seeds.
        let pair = distinct_shuffles(3, 4, 5, 8);
        assert_eq!(
            pair,
            vec![Variant::Shuffle {
                start: 3,
                end: 4,
                seed: 0
            }]
        );
        // Three blocks have five, and many seeds find each of them once.
        let triple = distinct_shuffles(0, 2, 200, 6);
        assert_eq!(triple.len(), 5);
        let mut orders: Vec<Vec<usize>> = triple.iter().map(|v| v.order(6)).collect();
        orders.sort();
        orders.dedup();
        assert_eq!(orders.len(), 5);
        assert!(orders
            .iter()
            .all(|o| o[..3] != [0, 1, 2] && o[3..] == [3, 4, 5]));
    }
}
