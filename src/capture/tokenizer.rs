//! Tokenizers built from GGUF metadata or tokenizer.json.
//!
//! [`ModelTokenizer`] wraps a [`tokenizers::Tokenizer`] with the special
//! token ids and the BOS/EOS behaviour of the model it belongs to, so that
//! [`ModelTokenizer::encode`] returns the ids that Hugging Face transformers
//! returns for the same text with `add_special_tokens=True`.
//!
//! Two sources are supported:
//!
//! - [`ModelTokenizer::from_gguf`] rebuilds the tokenizer that a GGUF file
//!   stores as `tokenizer.ggml.*` metadata, the way transformers 5.25's GGUF
//!   converter does. Byte-level BPE files (`tokenizer.ggml.model = gpt2`) take
//!   their split rule from `tokenizer.ggml.pre`; SentencePiece files
//!   (`tokenizer.ggml.model = llama`) get merges recovered from the
//!   vocabulary. Control and user-defined tokens are matched whole.
//! - [`ModelTokenizer::from_tokenizer_json`] loads a Hugging Face
//!   `tokenizer.json`, with any saved padding and truncation switched off,
//!   and reads BOS/EOS/padding tokens from the `tokenizer_config.json` beside
//!   it.
//!
//! [`TokenizerSettings`] records what was built, for the run manifest.

mod byte_level;
mod error;
mod gguf;
mod metadata;
mod sentencepiece;

use std::collections::HashSet;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use serde::{Deserialize, Serialize};
use tokenizers::{
    ModelWrapper, PostProcessor, PreTokenizerWrapper, Tokenizer, TruncationDirection,
};

pub use error::TokenizerError;

/// The kind of source a tokenizer was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerSource {
    /// The `tokenizer.ggml.*` metadata of a GGUF file.
    Gguf,
    /// A Hugging Face `tokenizer.json`.
    TokenizerJson,
}

/// The settings a tokenizer was built with, as recorded in a run manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerSettings {
    /// The kind of source the tokenizer was built from.
    pub source: TokenizerSource,
    /// `general.architecture` of a GGUF file; `None` for tokenizer.json.
    pub architecture: Option<String>,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`), or the tokenizer.json model
    /// type (`BPE`, `WordPiece`, `Unigram`, `WordLevel`).
    pub model_type: String,
    /// `tokenizer.ggml.pre`, or the tokenizer.json pre-tokenizer type.
    pub pre_tokenizer: Option<String>,
    /// Whether [`ModelTokenizer::encode`] prepends the BOS token.
    pub add_bos: bool,
    /// Whether [`ModelTokenizer::encode`] appends the EOS token.
    pub add_eos: bool,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Number of ids, added tokens included.
    pub vocab_size: usize,
}

/// A model's tokenizer together with its special tokens.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    inner: Tokenizer,
    settings: TokenizerSettings,
    special_ids: HashSet<u32>,
}

impl ModelTokenizer {
    /// Builds the tokenizer stored in a GGUF file's metadata.
    ///
    /// Supported: `tokenizer.ggml.model = gpt2` with `tokenizer.ggml.pre` one
    /// of `gpt2`, `smollm`, `qwen2`, `llama-bpe`, `llama3`, `llama-v3`; and
    /// `tokenizer.ggml.model = llama` (SentencePiece, with Gemma's and Phi-3's
    /// variants chosen by `general.architecture`). Other values are rejected
    /// with [`TokenizerError::UnsupportedModel`] or
    /// [`TokenizerError::UnsupportedPreTokenizer`].
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let built = gguf::build(content)?;
        let special_ids = special_ids(&built.tokenizer, &built.settings);
        Ok(Self {
            inner: built.tokenizer,
            settings: built.settings,
            special_ids,
        })
    }

    /// Loads a Hugging Face `tokenizer.json` with padding and truncation off.
    ///
    /// BOS, EOS and padding tokens are read from the `tokenizer_config.json`
    /// in the same folder, if there is one. Without a padding token there,
    /// the padding id of the saved padding settings is used.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let read_error = |source| TokenizerError::ReadFile {
            path: path.to_path_buf(),
            source,
        };
        let mut inner = Tokenizer::from_file(path).map_err(read_error)?;
        let saved_pad = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(read_error)?;

        let config_path = path.with_file_name("tokenizer_config.json");
        let names = SpecialTokenNames::read(&config_path)?;
        let id_of = |name: &Option<String>| name.as_deref().and_then(|n| inner.token_to_id(n));
        let (bos_id, eos_id) = (id_of(&names.bos), id_of(&names.eos));
        let pad_id = id_of(&names.pad).or(saved_pad);

        let (add_bos, add_eos) = probe_added(&inner, bos_id, eos_id)?;
        let settings = TokenizerSettings {
            source: TokenizerSource::TokenizerJson,
            architecture: None,
            model_type: model_type(inner.get_model()).to_string(),
            pre_tokenizer: inner
                .get_pre_tokenizer()
                .map(|p| pre_tokenizer_type(p).to_string()),
            add_bos,
            add_eos,
            bos_id,
            eos_id,
            pad_id,
            vocab_size: inner.get_vocab_size(true),
        };
        let special_ids = special_ids(&inner, &settings);
        Ok(Self {
            inner,
            settings,
            special_ids,
        })
    }

    /// Encodes `text` into ids, adding special tokens as the model's own
    /// tokenizer does (BOS for Gemma, none for SmolLM2 and Qwen2, `[CLS]` and
    /// `[SEP]` for BERT).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|source| TokenizerError::Encode {
                preview: text.chars().take(60).collect(),
                source,
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes `text` into at most `limit` ids and returns them with the
    /// untruncated length. Like transformers' `truncation=True`, it cuts the
    /// text's tokens and then adds the special tokens, so BERT keeps its
    /// closing `[SEP]`. A limit below the special-token count cuts the whole
    /// sequence instead.
    pub fn encode_truncated(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<(Vec<u32>, usize), TokenizerError> {
        let fail = |source| TokenizerError::Encode {
            preview: text.chars().take(60).collect(),
            source,
        };
        let plain = self.inner.encode(text, false).map_err(fail)?;
        let added = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let full = plain.len() + added;
        if full <= limit || limit <= added {
            let mut ids = self.encode(text)?;
            ids.truncate(limit);
            return Ok((ids, full));
        }
        let mut cut = plain;
        cut.truncate(limit - added, 0, TruncationDirection::Right);
        let encoding = self.inner.post_process(cut, None, true).map_err(fail)?;
        Ok((encoding.get_ids().to_vec(), full))
    }

    /// Returns whether `id` is a BOS, EOS, padding or other special token:
    /// a GGUF control or unknown token, or a special added token of a
    /// tokenizer.json. GGUF user-defined tokens are not special.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.settings.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.settings.eos_id
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.settings.pad_id
    }

    /// Returns whether [`encode`](Self::encode) prepends the BOS token.
    pub fn adds_bos(&self) -> bool {
        self.settings.add_bos
    }

    /// Returns the ids counted as special, in ascending order.
    pub fn special_ids_sorted(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.special_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Returns the settings the tokenizer was built with.
    pub fn settings(&self) -> TokenizerSettings {
        self.settings.clone()
    }

    /// Returns the wrapped `tokenizers` tokenizer, for decoding or offsets.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Collects the ids of special added tokens and of BOS, EOS and padding.
fn special_ids(tokenizer: &Tokenizer, settings: &TokenizerSettings) -> HashSet<u32> {
    let added = tokenizer.get_added_tokens_decoder();
    let special = added
        .iter()
        .filter(|(_, token)| token.special)
        .map(|(&id, _)| id);
    let named = [settings.bos_id, settings.eos_id, settings.pad_id];
    special.chain(named.into_iter().flatten()).collect()
}

/// Returns whether encoding adds BOS in front and EOS at the end, found by
/// encoding a probe text with and without special tokens.
fn probe_added(
    tokenizer: &Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
) -> Result<(bool, bool), TokenizerError> {
    let probe = "a";
    let encode = |add_special| {
        let encoding =
            tokenizer
                .encode(probe, add_special)
                .map_err(|source| TokenizerError::Encode {
                    preview: probe.to_string(),
                    source,
                })?;
        Ok::<_, TokenizerError>(encoding.get_ids().to_vec())
    };
    let (with, without) = (encode(true)?, encode(false)?);
    let added_front = with.len() > without.len() && with.first() != without.first();
    let added_back = with.len() > without.len() && with.last() != without.last();
    let add_bos = added_front && bos_id.is_some() && with.first().copied() == bos_id;
    let add_eos = added_back && eos_id.is_some() && with.last().copied() == eos_id;
    Ok((add_bos, add_eos))
}

/// The special token names of a `tokenizer_config.json`.
#[derive(Debug, Default)]
struct SpecialTokenNames {
    bos: Option<String>,
    eos: Option<String>,
    pad: Option<String>,
}

impl SpecialTokenNames {
    /// Reads the names from `path`; a missing file gives no names.
    fn read(path: &Path) -> Result<Self, TokenizerError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(TokenizerError::ReadFile {
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TokenizerError::ReadFile {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
        Ok(Self {
            bos: token_name(&config["bos_token"]),
            eos: token_name(&config["eos_token"]),
            pad: token_name(&config["pad_token"]),
        })
    }
}

/// Returns a token name written either as a string or as an added-token
/// object with a `content` field.
fn token_name(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) => map
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

fn model_type(model: &ModelWrapper) -> &'static str {
    match model {
        ModelWrapper::BPE(_) => "BPE",
        ModelWrapper::WordPiece(_) => "WordPiece",
        ModelWrapper::WordLevel(_) => "WordLevel",
        ModelWrapper::Unigram(_) => "Unigram",
    }
}

fn pre_tokenizer_type(pre_tokenizer: &PreTokenizerWrapper) -> &'static str {
    match pre_tokenizer {
        PreTokenizerWrapper::BertPreTokenizer(_) => "BertPreTokenizer",
        PreTokenizerWrapper::ByteLevel(_) => "ByteLevel",
        PreTokenizerWrapper::Delimiter(_) => "CharDelimiterSplit",
        PreTokenizerWrapper::Metaspace(_) => "Metaspace",
        PreTokenizerWrapper::Whitespace(_) => "Whitespace",
        PreTokenizerWrapper::Sequence(_) => "Sequence",
        PreTokenizerWrapper::Split(_) => "Split",
        PreTokenizerWrapper::Punctuation(_) => "Punctuation",
        PreTokenizerWrapper::WhitespaceSplit(_) => "WhitespaceSplit",
        PreTokenizerWrapper::Digits(_) => "Digits",
        PreTokenizerWrapper::UnicodeScripts(_) => "UnicodeScripts",
        PreTokenizerWrapper::FixedLength(_) => "FixedLength",
    }
}
