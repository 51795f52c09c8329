//! Typed reading of the tokenizer keys of a GGUF file.
//!
//! Key names and token types follow llama.cpp's GGUF writer (`gguf-py`).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::TokenizerError;

pub(super) const ARCHITECTURE: &str = "general.architecture";
pub(super) const MODEL: &str = "tokenizer.ggml.model";
pub(super) const PRE: &str = "tokenizer.ggml.pre";
pub(super) const TOKENS: &str = "tokenizer.ggml.tokens";
pub(super) const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub(super) const SCORES: &str = "tokenizer.ggml.scores";
pub(super) const MERGES: &str = "tokenizer.ggml.merges";
pub(super) const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
pub(super) const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
pub(super) const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
pub(super) const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
pub(super) const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub(super) const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";

/// `tokenizer.ggml.token_type` value of a control token such as `<|im_end|>`.
pub(super) const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` value of a user-defined token such as `<tool_call>`.
pub(super) const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The tokenizer part of a GGUF file's metadata, checked for consistency.
#[derive(Debug, Clone)]
pub(super) struct GgufTokenizerMetadata {
    /// `general.architecture`, which picks the SentencePiece variant.
    pub architecture: Option<String>,
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the name of the pre-tokenizer split rule.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// One llama.cpp token type per token; empty when the key is absent.
    pub token_types: Vec<i32>,
    /// One SentencePiece score per token; empty when the key is absent.
    pub scores: Vec<f32>,
    /// Merge rules as `"left right"` lines, best first.
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
}

impl GgufTokenizerMetadata {
    /// Reads and checks the tokenizer keys of `metadata`.
    pub fn read(metadata: &HashMap<String, Value>) -> Result<Self, TokenizerError> {
        let tokens =
            string_array(metadata, TOKENS)?.ok_or(TokenizerError::MissingKey { key: TOKENS })?;
        let model = string(metadata, MODEL)?.ok_or(TokenizerError::MissingKey { key: MODEL })?;
        let token_types = int_array(metadata, TOKEN_TYPE)?.unwrap_or_default();
        let scores = float_array(metadata, SCORES)?.unwrap_or_default();
        check_parallel(TOKEN_TYPE, token_types.len(), tokens.len())?;
        check_parallel(SCORES, scores.len(), tokens.len())?;

        let read_id = |key| token_id(metadata, key, tokens.len());
        Ok(Self {
            architecture: string(metadata, ARCHITECTURE)?,
            model,
            pre: string(metadata, PRE)?,
            merges: string_array(metadata, MERGES)?,
            bos_id: read_id(BOS_ID)?,
            eos_id: read_id(EOS_ID)?,
            unk_id: read_id(UNK_ID)?,
            pad_id: read_id(PAD_ID)?,
            add_bos: boolean(metadata, ADD_BOS)?,
            add_eos: boolean(metadata, ADD_EOS)?,
            tokens,
            token_types,
            scores,
        })
    }

    /// Returns the merges split into their two parts, or `None` when the
    /// file lists no merges.
    pub fn merge_pairs(&self) -> Result<Option<Vec<(String, String)>>, TokenizerError> {
        let Some(lines) = &self.merges else {
            return Ok(None);
        };
        let pair = |(index, line): (usize, &String)| match line.split_once(' ') {
            Some((left, right)) => Ok((left.to_string(), right.to_string())),
            None => Err(TokenizerError::InvalidMetadata {
                key: MERGES,
                reason: format!("merge {index} ({line:?}) has no space between its two parts"),
            }),
        };
        lines
            .iter()
            .enumerate()
            .map(pair)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Returns the token type of `index`, or `None` when the file lists no types.
    pub fn token_type(&self, index: usize) -> Option<i32> {
        self.token_types.get(index).copied()
    }

    /// Returns the token string of `id`, if `id` is in the vocabulary.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|id| self.tokens.get(id as usize))
            .map(String::as_str)
    }
}

fn check_parallel(key: &'static str, len: usize, tokens: usize) -> Result<(), TokenizerError> {
    if len == 0 || len == tokens {
        return Ok(());
    }
    Err(TokenizerError::InvalidMetadata {
        key,
        reason: format!("it has {len} entries but {TOKENS} has {tokens}"),
    })
}

fn type_name(value: &Value) -> String {
    format!("{:?}", value.value_type())
}

fn wrong_type(key: &'static str, expected: &'static str, value: &Value) -> TokenizerError {
    TokenizerError::WrongType {
        key,
        expected,
        found: type_name(value),
    }
}

fn string(
    metadata: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<String>, TokenizerError> {
    match metadata.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn boolean(
    metadata: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<bool>, TokenizerError> {
    match metadata.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(key, "a bool", other)),
    }
}

/// Returns an integer of any GGUF integer type, or `None` for other types.
fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(v) => Some(v.into()),
        Value::I8(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::I16(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::I32(v) => Some(v.into()),
        Value::U64(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        _ => None,
    }
}

/// Reads a token id and checks that it indexes the vocabulary.
fn token_id(
    metadata: &HashMap<String, Value>,
    key: &'static str,
    vocab_size: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(value) = metadata.get(key) else {
        return Ok(None);
    };
    let id = integer(value).ok_or_else(|| wrong_type(key, "an integer", value))?;
    match u32::try_from(id) {
        Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
        _ => Err(TokenizerError::InvalidMetadata {
            key,
            reason: format!("token id {id} is outside the vocabulary of {vocab_size} tokens"),
        }),
    }
}

fn array<'a>(
    metadata: &'a HashMap<String, Value>,
    key: &'static str,
    expected: &'static str,
) -> Result<Option<&'a [Value]>, TokenizerError> {
    match metadata.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(wrong_type(key, expected, other)),
    }
}

fn string_array(
    metadata: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<String>>, TokenizerError> {
    const EXPECTED: &str = "an array of strings";
    let Some(items) = array(metadata, key, EXPECTED)? else {
        return Ok(None);
    };
    let strings = items.iter().map(|item| match item {
        Value::String(s) => Ok(s.clone()),
        other => Err(wrong_type(key, EXPECTED, other)),
    });
    strings.collect::<Result<Vec<_>, _>>().map(Some)
}

fn int_array(
    metadata: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<i32>>, TokenizerError> {
    const EXPECTED: &str = "an array of 32-bit integers";
    let Some(items) = array(metadata, key, EXPECTED)? else {
        return Ok(None);
    };
    let ints = items.iter().map(|item| {
        integer(item)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| wrong_type(key, EXPECTED, item))
    });
    ints.collect::<Result<Vec<_>, _>>().map(Some)
}

fn float_array(
    metadata: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<f32>>, TokenizerError> {
    const EXPECTED: &str = "an array of floats";
    let Some(items) = array(metadata, key, EXPECTED)? else {
        return Ok(None);
    };
    let floats = items.iter().map(|item| match *item {
        Value::F32(v) => Ok(v),
        Value::F64(v) => Ok(v as f32),
        ref other => Err(wrong_type(key, EXPECTED, other)),
    });
    floats.collect::<Result<Vec<_>, _>>().map(Some)
}
