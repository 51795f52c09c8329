//! Assembling a tokenizer from a GGUF file's tokenizer metadata.
//!
//! The builders of [`byte_level`](super::byte_level) and
//! [`sentencepiece`](super::sentencepiece) make the model, normalizer,
//! pre-tokenizer and decoder. This module then registers the added tokens
//! and the BOS/EOS template, in the order transformers 5.25 does.

use candle_core::quantized::gguf_file::Content;
use serde_json::{json, Value as Json};
use tokenizers::processors::template::{Template, TemplateProcessing};
use tokenizers::{AddedToken, Tokenizer};

use super::metadata::{GgufTokenizerMetadata, MODEL, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED};
use super::{byte_level, sentencepiece, TokenizerError, TokenizerSettings, TokenizerSource};

/// The supported values of `tokenizer.ggml.model`, for error messages.
const SUPPORTED_MODELS: &str = "gpt2 (byte-level BPE), llama (SentencePiece)";

/// A tokenizer built from GGUF metadata, with the settings it was built with.
pub(super) struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub settings: TokenizerSettings,
}

/// Builds the tokenizer that `content`'s metadata describes.
pub(super) fn build(content: &Content) -> Result<GgufTokenizer, TokenizerError> {
    let meta = GgufTokenizerMetadata::read(&content.metadata)?;
    let byte_level = match meta.model.as_str() {
        "gpt2" => true,
        "llama" => false,
        other => {
            return Err(TokenizerError::UnsupportedModel {
                model: other.to_string(),
                supported: format!("{SUPPORTED_MODELS} (key {MODEL})"),
            })
        }
    };
    let mut tokenizer = if byte_level {
        byte_level::build(&meta)?
    } else {
        sentencepiece::build(&meta)?
    };

    add_typed_tokens(&mut tokenizer, &meta, byte_level)?;
    add_named_tokens(&mut tokenizer, &meta)?;
    let (add_bos, add_eos) = set_template(&mut tokenizer, &meta)?;

    let settings = TokenizerSettings {
        source: TokenizerSource::Gguf,
        architecture: meta.architecture.clone(),
        model_type: meta.model.clone(),
        pre_tokenizer: meta.pre.clone(),
        add_bos,
        add_eos,
        bos_id: meta.bos_id,
        eos_id: meta.eos_id,
        pad_id: meta.pad_id,
        vocab_size: tokenizer.get_vocab_size(true),
    };
    Ok(GgufTokenizer {
        tokenizer,
        settings,
    })
}

/// Registers control tokens as special added tokens and user-defined tokens
/// as plain added tokens, so both are matched whole in the text.
///
/// Two kinds of token are skipped, as transformers does. In a byte-level
/// vocabulary a control token written outside the byte alphabet is a
/// llama.cpp mislabel, and adding it would grow the vocabulary. A
/// user-defined token whose spelling is not in the vocabulary (Gemma's
/// space runs, respelled with `▁`) would also get a new id.
fn add_typed_tokens(
    tokenizer: &mut Tokenizer,
    meta: &GgufTokenizerMetadata,
    byte_level: bool,
) -> Result<(), TokenizerError> {
    let of_type = |wanted: i32| {
        let typed = meta.tokens.iter().enumerate();
        typed
            .filter(move |&(index, _)| meta.token_type(index) == Some(wanted))
            .map(|(_, token)| token)
    };
    let control: Vec<AddedToken> = of_type(TOKEN_TYPE_CONTROL)
        .filter(|token| !byte_level || byte_level::is_byte_level_spelled(token))
        .map(|token| AddedToken::from(token.clone(), true).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(control)
        .map_err(|source| TokenizerError::Build {
            component: "control tokens",
            source,
        })?;

    let user_defined: Vec<AddedToken> = of_type(TOKEN_TYPE_USER_DEFINED)
        .filter(|token| tokenizer.token_to_id(token).is_some())
        .map(|token| AddedToken::from(token.clone(), false).normalized(false))
        .collect();
    tokenizer
        .add_tokens(user_defined)
        .map_err(|source| TokenizerError::Build {
            component: "user-defined tokens",
            source,
        })?;
    Ok(())
}

/// Registers the BOS, EOS, unknown and padding tokens as special tokens,
/// where the control tokens did not already include them.
fn add_named_tokens(
    tokenizer: &mut Tokenizer,
    meta: &GgufTokenizerMetadata,
) -> Result<(), TokenizerError> {
    let ids = [meta.bos_id, meta.eos_id, meta.unk_id, meta.pad_id];
    let mut named = Vec::new();
    for token in ids.into_iter().filter_map(|id| meta.token(id)) {
        let added = tokenizer
            .get_added_vocabulary()
            .get_vocab()
            .contains_key(token);
        if !added && !named.iter().any(|t: &AddedToken| t.content == token) {
            named.push(AddedToken::from(token.to_string(), true).normalized(false));
        }
    }
    tokenizer
        .add_special_tokens(named)
        .map_err(|source| TokenizerError::Build {
            component: "BOS/EOS/unknown/padding tokens",
            source,
        })?;
    Ok(())
}

/// Sets the template that adds BOS and EOS, and returns whether each is added.
///
/// `tokenizer.ggml.add_bos_token` decides; when the key is absent,
/// SentencePiece files add BOS and byte-level files do not, as llama.cpp
/// and transformers agree. `tokenizer.ggml.add_eos_token` defaults to false.
/// A flag whose token id is absent is dropped with a warning.
fn set_template(
    tokenizer: &mut Tokenizer,
    meta: &GgufTokenizerMetadata,
) -> Result<(bool, bool), TokenizerError> {
    let add_bos = meta.add_bos.unwrap_or(meta.model == "llama");
    let add_eos = meta.add_eos.unwrap_or(false);
    let bos = flagged_token(meta, add_bos, meta.bos_id, "BOS");
    let eos = flagged_token(meta, add_eos, meta.eos_id, "EOS");

    let (single, pair) = template_pieces(bos.map(|(t, _)| t), eos.map(|(t, _)| t));
    let tokens: Vec<(String, u32)> = bos
        .iter()
        .chain(eos.iter())
        .map(|&(t, id)| (t.to_string(), id))
        .collect();
    let processor = TemplateProcessing::builder()
        .single(parse_template(single)?)
        .pair(parse_template(pair)?)
        .special_tokens(tokens)
        .build()
        .map_err(|e| TokenizerError::Build {
            component: "BOS/EOS template",
            source: e.into(),
        })?;
    tokenizer.with_post_processor(Some(processor));
    Ok((bos.is_some(), eos.is_some()))
}

/// Returns the single and pair templates in the serialized form of
/// `tokenizers`: `[BOS] $A [EOS]` and `[BOS] $A [EOS] [BOS] $B [EOS]`, the
/// second sequence with type id 1, and each special token only if given.
fn template_pieces(bos: Option<&str>, eos: Option<&str>) -> (Vec<Json>, Vec<Json>) {
    let sequence_pieces = |id: &str, type_id: u32| {
        let special = |token: &str| json!({"SpecialToken": {"id": token, "type_id": type_id}});
        let mut pieces: Vec<Json> = bos.map(special).into_iter().collect();
        pieces.push(json!({"Sequence": {"id": id, "type_id": type_id}}));
        pieces.extend(eos.map(special));
        pieces
    };
    let single = sequence_pieces("A", 0);
    let pair = single
        .iter()
        .cloned()
        .chain(sequence_pieces("B", 1))
        .collect();
    (single, pair)
}

fn parse_template(pieces: Vec<Json>) -> Result<Template, TokenizerError> {
    serde_json::from_value(Json::Array(pieces)).map_err(|e| TokenizerError::Build {
        component: "BOS/EOS template",
        source: e.into(),
    })
}

/// Returns the token and id to add when `flag` is set, warning when the id is absent.
fn flagged_token<'a>(
    meta: &'a GgufTokenizerMetadata,
    flag: bool,
    id: Option<u32>,
    name: &str,
) -> Option<(&'a str, u32)> {
    if !flag {
        return None;
    }
    let token = id.zip(meta.token(id));
    if token.is_none() {
        log::warn!(
            "the GGUF metadata asks to add {name} but gives no {name} token id; adding none"
        );
    }
    token.map(|(id, token)| (token, id))
}
