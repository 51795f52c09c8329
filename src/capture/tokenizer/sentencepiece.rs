//! SentencePiece vocabularies (`tokenizer.ggml.model = llama`), as used by
//! Gemma 3 and Llama 2.
//!
//! Such a file lists tokens and scores but usually no merges. Like
//! transformers 5.25's GGUF converter, the build recovers BPE merges from the
//! vocabulary and runs a byte-fallback BPE model over them. Three variants
//! exist, chosen by `general.architecture`:
//!
//! - `gemma`, `gemma2`, `gemma3`: spaces become `▁` in a normalizer, merges
//!   are ranked by token position, and `<unk>` is the unknown token.
//! - `phi3`: `▁` is prepended and spaces replaced in a normalizer.
//! - any other: a `Metaspace` pre-tokenizer prepends `▁` to the first piece,
//!   and merges are ranked by the file's scores.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::metadata::{GgufTokenizerMetadata, SCORES};
use super::TokenizerError;

/// The SentencePiece word-boundary mark that stands for a space.
const SPACE_MARK: char = '\u{2581}';

/// The SentencePiece variant that an architecture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Gemma,
    Phi3,
    Llama,
}

impl Variant {
    fn of(architecture: Option<&str>) -> Self {
        match architecture {
            Some("gemma" | "gemma2" | "gemma3") => Self::Gemma,
            Some("phi3") => Self::Phi3,
            _ => Self::Llama,
        }
    }
}

/// Builds the BPE model, normalizer, pre-tokenizer and decoder of a
/// SentencePiece vocabulary.
pub(super) fn build(meta: &GgufTokenizerMetadata) -> Result<Tokenizer, TokenizerError> {
    let variant = Variant::of(meta.architecture.as_deref());
    let tokens = match variant {
        Variant::Gemma => respell_space_runs(&meta.tokens),
        Variant::Phi3 | Variant::Llama => meta.tokens.clone(),
    };
    let vocab = index_tokens(&tokens);
    let merges = match meta.merge_pairs()? {
        Some(pairs) => pairs,
        None => recover_merges(&tokens, &vocab, &ranking_scores(meta, variant, &tokens)?),
    };

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if variant == Variant::Gemma {
        builder = builder.unk_token("<unk>".to_string());
    }
    let model = builder.build().map_err(|source| TokenizerError::Build {
        component: "SentencePiece BPE model",
        source,
    })?;

    let mut tokenizer = Tokenizer::new(model);
    configure(&mut tokenizer, variant)?;
    Ok(tokenizer)
}

/// Sets the normalizer, pre-tokenizer and decoder of `variant`.
fn configure(tokenizer: &mut Tokenizer, variant: Variant) -> Result<(), TokenizerError> {
    let build_error = |source| TokenizerError::Build {
        component: "SentencePiece normalizer",
        source,
    };
    let space = SPACE_MARK.to_string();
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(space.as_str(), " ")
            .map_err(build_error)?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    match variant {
        Variant::Gemma => {
            let normalizer = Replace::new(" ", space.as_str()).map_err(build_error)?;
            let split = Split::new(
                SplitPattern::String(" ".to_string()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )
            .map_err(build_error)?;
            tokenizer
                .with_normalizer(Some(normalizer))
                .map_err(build_error)?;
            tokenizer.with_pre_tokenizer(Some(split));
        }
        Variant::Phi3 => {
            let normalizer: Vec<NormalizerWrapper> = vec![
                Prepend::new(space.clone()).into(),
                Replace::new(" ", space.as_str())
                    .map_err(build_error)?
                    .into(),
            ];
            let normalizer = NormalizerSequence::new(normalizer);
            tokenizer
                .with_normalizer(Some(normalizer))
                .map_err(build_error)?;
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        Variant::Llama => {
            let metaspace = Metaspace::new(SPACE_MARK, PrependScheme::First, false);
            tokenizer.with_pre_tokenizer(Some(metaspace));
            decoders.push(Strip::new(' ', 1, 0).into());
        }
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(())
}

/// Returns the score that ranks the merges which produce each token.
///
/// Gemma files rank by position (earlier is better) because their scores do
/// not follow the merge order, which transformers 5.25 documents for its
/// Gemma converter. Other files rank by `tokenizer.ggml.scores`.
fn ranking_scores(
    meta: &GgufTokenizerMetadata,
    variant: Variant,
    tokens: &[String],
) -> Result<Vec<f64>, TokenizerError> {
    if variant == Variant::Gemma {
        return Ok((0..tokens.len()).map(|i| -(i as f64)).collect());
    }
    if meta.scores.is_empty() {
        return Err(TokenizerError::MissingKey { key: SCORES });
    }
    Ok(meta.scores.iter().map(|&s| f64::from(s)).collect())
}

/// Respells tokens made only of whitespace that contain a space, such as
/// `"   "`, as that many `▁`, because the normalizer turns spaces into `▁`
/// before lookup.
fn respell_space_runs(tokens: &[String]) -> Vec<String> {
    let respell = |token: &String| {
        if token.contains(' ') && token.chars().all(is_python_space) {
            SPACE_MARK.to_string().repeat(token.chars().count())
        } else {
            token.clone()
        }
    };
    tokens.iter().map(respell).collect()
}

/// Returns whether Python's `str.strip()` removes `c`: Unicode white space
/// plus the separators U+001C to U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Maps each token to its id; a token listed twice keeps its last id.
fn index_tokens(tokens: &[String]) -> Vocab {
    (0u32..)
        .zip(tokens)
        .map(|(id, t)| (t.clone(), id))
        .collect()
}

/// A candidate merge: the two parts, the ranking score of the token they
/// form, and the parts' lengths in characters.
struct Candidate<'a> {
    left: &'a str,
    right: &'a str,
    score: f64,
    left_chars: usize,
    right_chars: usize,
}

/// Recovers BPE merges from a vocabulary, best first.
///
/// Every split of a token into two parts that are both tokens is a merge
/// candidate. Within a token, candidates are ordered by the ids of the left
/// then the right part. All candidates are then sorted by the score of the
/// token they form, then by left and right length, all descending, and the
/// sort is stable. This is the order of transformers 5.25's
/// `generate_merges`, which the reference ids were made with. A token listed
/// twice is visited once, at its first position, with its last score.
fn recover_merges(tokens: &[String], vocab: &Vocab, scores: &[f64]) -> Vec<(String, String)> {
    let mut last_score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (token, &score) in tokens.iter().zip(scores) {
        last_score.insert(token.as_str(), score);
    }

    let mut candidates = Vec::new();
    let mut visited = std::collections::HashSet::with_capacity(tokens.len());
    for token in tokens {
        if !visited.insert(token.as_str()) {
            continue;
        }
        let start = candidates.len();
        push_splits(token, last_score[token.as_str()], vocab, &mut candidates);
        candidates[start..].sort_by_key(|c: &Candidate| (vocab[c.left], vocab[c.right]));
    }

    candidates.sort_by(|a, b| {
        let by_score = b
            .score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal);
        by_score
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    candidates
        .into_iter()
        .map(|c| (c.left.to_string(), c.right.to_string()))
        .collect()
}

/// Pushes every split of `token` whose two parts are both in `vocab`.
fn push_splits<'a>(token: &'a str, score: f64, vocab: &Vocab, candidates: &mut Vec<Candidate<'a>>) {
    let total_chars = token.chars().count();
    for (left_chars, (offset, _)) in token.char_indices().enumerate().skip(1) {
        let (left, right) = token.split_at(offset);
        if vocab.contains_key(left) && vocab.contains_key(right) {
            candidates.push(Candidate {
                left,
                right,
                score,
                left_chars,
                right_chars: total_chars - left_chars,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recovered_merges_follow_score_then_length() {
        let tokens = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        let vocab = index_tokens(&tokens);
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let merges = recover_merges(&tokens, &vocab, &scores);
        let expected = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        let merges: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        assert_eq!(merges, expected);
    }

    #[test]
    fn space_runs_become_space_marks() {
        let tokens = strings(&["  ", " \n", "\n\n", "a b", " "]);
        let respelled = respell_space_runs(&tokens);
        assert_eq!(respelled, strings(&["▁▁", "▁▁", "\n\n", "a b", "▁"]));
    }
}
