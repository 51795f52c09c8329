//! Byte-level BPE tokenizers (`tokenizer.ggml.model = gpt2`), as used by
//! SmolLM2, Qwen2 and Llama 3.
//!
//! The build mirrors transformers 5.25's GGUF converter, whose ids are the
//! reference: vocabulary and merges come from the file, and the split rule
//! before the byte-level mapping comes from `tokenizer.ggml.pre`.

use std::collections::HashSet;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::metadata::{GgufTokenizerMetadata, MERGES, PRE};
use super::TokenizerError;

/// The split rule of Llama 3 (`tokenizer.ggml.pre` = `llama-bpe`): like
/// GPT-2's, but case-insensitive contractions and numbers of up to 3 digits.
const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// The split rule of Qwen2 (`tokenizer.ggml.pre` = `qwen2`): each digit
/// is its own piece.
const QWEN2_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// The supported values of `tokenizer.ggml.pre`, for error messages.
pub(super) const SUPPORTED_PRE: &str = "gpt2, smollm, qwen2, llama-bpe, llama3, llama-v3";

/// Builds the BPE model, pre-tokenizer and decoder of a byte-level vocabulary.
pub(super) fn build(meta: &GgufTokenizerMetadata) -> Result<Tokenizer, TokenizerError> {
    let pre_tokenizer = pre_tokenizer(meta.pre.as_deref())?;
    let merges = meta
        .merge_pairs()?
        .ok_or(TokenizerError::MissingKey { key: MERGES })?;
    let vocab = vocabulary(&meta.tokens);

    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|source| TokenizerError::Build {
            component: "byte-level BPE model",
            source,
        })?;

    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// Maps `tokenizer.ggml.pre` to the pre-tokenizer transformers builds for it.
///
/// NOTE: for `smollm`, transformers 5.25 builds plain GPT-2 byte-level
/// splitting, while SmolLM2's own tokenizer.json first splits every digit.
/// SmolLM2's merges contain no digit, so digits come out one per token
/// either way. The two differ only on a whitespace run before a digit:
/// "a  5" gives `Ġ`, `Ġ`, `5` here and `ĠĠ`, `5` in the original.
fn pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper, TokenizerError> {
    let Some(pre) = pre else {
        return Err(TokenizerError::MissingKey { key: PRE });
    };
    let split = match pre {
        "gpt2" | "smollm" => return Ok(ByteLevel::new(false, true, true).into()),
        "qwen2" => QWEN2_SPLIT,
        "llama-bpe" | "llama3" | "llama-v3" => LLAMA3_SPLIT,
        other => {
            return Err(TokenizerError::UnsupportedPreTokenizer {
                pre: other.to_string(),
                supported: SUPPORTED_PRE.to_string(),
            })
        }
    };
    let pattern = SplitPattern::Regex(split.to_string());
    let split = Split::new(pattern, SplitDelimiterBehavior::Isolated, false).map_err(|source| {
        TokenizerError::Build {
            component: "pre-tokenizer split regex",
            source,
        }
    })?;
    let byte_level = ByteLevel::new(false, true, false);
    Ok(Sequence::new(vec![split.into(), byte_level.into()]).into())
}

/// Returns the vocabulary with every token spelled in the byte-level alphabet.
///
/// A token written with characters outside that alphabet (llama.cpp writes
/// some added tokens as plain text) is respelled from its UTF-8 bytes, as
/// transformers does. A token listed twice keeps its last id.
fn vocabulary(tokens: &[String]) -> Vocab {
    let alphabet = byte_alphabet();
    let spelled: HashSet<char> = alphabet.iter().copied().collect();
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in (0u32..).zip(tokens) {
        let key = if token.chars().all(|c| spelled.contains(&c)) {
            token.clone()
        } else {
            token.bytes().map(|b| alphabet[usize::from(b)]).collect()
        };
        vocab.insert(key, id);
    }
    vocab
}

/// Returns whether every character of `token` is in the byte-level alphabet.
pub(super) fn is_byte_level_spelled(token: &str) -> bool {
    let alphabet = byte_alphabet();
    token.chars().all(|c| alphabet.contains(&c))
}

/// Returns GPT-2's byte-to-character table: the 188 printable bytes map to
/// themselves, the other 68 to U+0100 onwards, in byte order.
fn byte_alphabet() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for b in 0..=255u8 {
        let code = if printable(b) {
            u32::from(b)
        } else {
            next_shifted += 1;
            next_shifted - 1
        };
        table[usize::from(b)] = char::from_u32(code).expect("codes below U+0200 are chars");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2_spelling() {
        let table = byte_alphabet();
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[usize::from(b'\n')], 'Ċ');
        assert_eq!(table[usize::from(b'A')], 'A');
        assert_eq!(table[0xAD], 'Ń');
        let distinct: HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn vocabulary_respells_plain_text_tokens() {
        let tokens = vec!["Ġhello".to_string(), "a b".to_string()];
        let vocab = vocabulary(&tokens);
        assert_eq!(vocab.get("Ġhello"), Some(&0));
        assert_eq!(vocab.get("aĠb"), Some(&1));
    }
}
