//! GGUF tokenizers built from small hand-written metadata: expected ids
//! worked out by hand for the BOS defaults and added tokens, and the error
//! for each kind of invalid metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
use repatlas::capture::tokenizer::{ModelTokenizer, TokenizerError};

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

fn ints(items: &[i32]) -> Value {
    Value::Array(items.iter().map(|&v| Value::I32(v)).collect())
}

fn floats(items: &[f32]) -> Value {
    Value::Array(items.iter().map(|&v| Value::F32(v)).collect())
}

fn content(metadata: Vec<(&str, Value)>) -> Content {
    let metadata: HashMap<String, Value> = metadata
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Content {
        magic: VersionedMagic::GgufV3,
        metadata,
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

/// Returns a byte-level vocabulary in which "hi" and "Ġhi" are single tokens.
fn byte_level_metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["<|endoftext|>", "h", "i", "hi", "Ġ", "Ġhi", "<think>"]),
        ),
        ("tokenizer.ggml.token_type", ints(&[3, 1, 1, 1, 1, 1, 4])),
        ("tokenizer.ggml.merges", strings(&["h i", "Ġ hi"])),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ]
}

/// Returns a SentencePiece vocabulary, without merges, in which "▁hi" is one token.
fn sentencepiece_metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi"]),
        ),
        (
            "tokenizer.ggml.scores",
            floats(&[0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0]),
        ),
        ("tokenizer.ggml.token_type", ints(&[2, 3, 3, 1, 1, 1, 1, 1])),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ]
}

fn replace(
    mut metadata: Vec<(&'static str, Value)>,
    key: &'static str,
    value: Value,
) -> Vec<(&'static str, Value)> {
    metadata.retain(|(k, _)| *k != key);
    metadata.push((key, value));
    metadata
}

fn remove(mut metadata: Vec<(&'static str, Value)>, key: &str) -> Vec<(&'static str, Value)> {
    metadata.retain(|(k, _)| *k != key);
    metadata
}

fn build_error(metadata: Vec<(&'static str, Value)>) -> TokenizerError {
    match ModelTokenizer::from_gguf(&content(metadata)) {
        Ok(_) => panic!("building succeeded on invalid metadata"),
        Err(err) => err,
    }
}

#[test]
fn byte_level_merges_and_added_tokens() {
    let tokenizer = ModelTokenizer::from_gguf(&content(byte_level_metadata())).unwrap();
    assert_eq!(tokenizer.encode("hi hi").unwrap(), vec![3, 5]);
    assert_eq!(tokenizer.encode("<|endoftext|>hi").unwrap(), vec![0, 3]);
    assert_eq!(tokenizer.encode("<think>hi").unwrap(), vec![6, 3]);
    assert!(tokenizer.is_special(0), "control token");
    assert!(!tokenizer.is_special(6), "user-defined token");
    assert!(!tokenizer.is_special(3));
}

#[test]
fn byte_level_adds_no_bos_without_flag() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.bos_token_id",
        Value::U32(0),
    );
    let tokenizer = ModelTokenizer::from_gguf(&content(metadata)).unwrap();
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![3]);
}

#[test]
fn byte_level_add_bos_flag_prepends_bos() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.bos_token_id",
        Value::U32(0),
    );
    let metadata = replace(metadata, "tokenizer.ggml.add_bos_token", Value::Bool(true));
    let tokenizer = ModelTokenizer::from_gguf(&content(metadata)).unwrap();
    assert!(tokenizer.adds_bos());
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![0, 3]);
}

#[test]
fn add_eos_flag_appends_eos() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.add_eos_token",
        Value::Bool(true),
    );
    let tokenizer = ModelTokenizer::from_gguf(&content(metadata)).unwrap();
    assert!(tokenizer.settings().add_eos);
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![3, 0]);
}

#[test]
fn add_bos_without_bos_id_adds_nothing() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.add_bos_token",
        Value::Bool(true),
    );
    let tokenizer = ModelTokenizer::from_gguf(&content(metadata)).unwrap();
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![3]);
}

#[test]
fn sentencepiece_merges_and_default_bos() {
    let tokenizer = ModelTokenizer::from_gguf(&content(sentencepiece_metadata())).unwrap();
    assert!(tokenizer.adds_bos());
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![1, 7]);
    assert_eq!(tokenizer.encode("hi hi").unwrap(), vec![1, 7, 7]);
    assert!(tokenizer.is_special(1));
    assert!(tokenizer.is_special(2));
    assert!(!tokenizer.is_special(7));
}

#[test]
fn sentencepiece_add_bos_false_honoured() {
    let metadata = replace(
        sentencepiece_metadata(),
        "tokenizer.ggml.add_bos_token",
        Value::Bool(false),
    );
    let tokenizer = ModelTokenizer::from_gguf(&content(metadata)).unwrap();
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.encode("hi").unwrap(), vec![7]);
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.pre",
        Value::String("wizard-bpe".into()),
    );
    let err = build_error(metadata);
    assert!(
        matches!(err, TokenizerError::UnsupportedPreTokenizer { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("\"wizard-bpe\""), "{message}");
    assert!(message.contains("tokenizer.ggml.pre"), "{message}");
    assert!(message.contains("smollm"), "{message}");
    assert!(message.contains("qwen2"), "{message}");
    assert!(message.contains("llama-bpe"), "{message}");
}

#[test]
fn missing_pre_tokenizer_is_named() {
    let err = build_error(remove(byte_level_metadata(), "tokenizer.ggml.pre"));
    assert!(
        err.to_string().contains("tokenizer.ggml.pre is missing"),
        "{err}"
    );
}

#[test]
fn missing_tokens_key_is_named() {
    let err = build_error(remove(byte_level_metadata(), "tokenizer.ggml.tokens"));
    assert!(
        matches!(
            err,
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.tokens"
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tokenizer.ggml.tokens is missing"),
        "{err}"
    );
}

#[test]
fn missing_model_key_is_named() {
    let err = build_error(remove(byte_level_metadata(), "tokenizer.ggml.model"));
    assert!(
        err.to_string().contains("tokenizer.ggml.model is missing"),
        "{err}"
    );
}

#[test]
fn byte_level_missing_merges_named() {
    let err = build_error(remove(byte_level_metadata(), "tokenizer.ggml.merges"));
    assert!(
        err.to_string().contains("tokenizer.ggml.merges is missing"),
        "{err}"
    );
}

#[test]
fn sentencepiece_missing_scores_named() {
    let err = build_error(remove(sentencepiece_metadata(), "tokenizer.ggml.scores"));
    assert!(
        err.to_string().contains("tokenizer.ggml.scores is missing"),
        "{err}"
    );
}

#[test]
fn unsupported_model_is_named() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.model",
        Value::String("t5".into()),
    );
    let err = build_error(metadata);
    let message = err.to_string();
    assert!(message.contains("\"t5\""), "{message}");
    assert!(message.contains("gpt2"), "{message}");
    assert!(message.contains("llama"), "{message}");
}

#[test]
fn tokens_wrong_type_rejected() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.tokens",
        Value::String("hi".into()),
    );
    let err = build_error(metadata);
    assert!(matches!(err, TokenizerError::WrongType { .. }), "{err:?}");
    assert!(
        err.to_string().contains("expected an array of strings"),
        "{err}"
    );
}

#[test]
fn token_id_outside_vocabulary_rejected() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.bos_token_id",
        Value::U32(99),
    );
    let err = build_error(metadata);
    let message = err.to_string();
    assert!(message.contains("tokenizer.ggml.bos_token_id"), "{message}");
    assert!(message.contains("99"), "{message}");
}

#[test]
fn token_types_wrong_length_rejected() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.token_type",
        ints(&[3, 1]),
    );
    let err = build_error(metadata);
    let message = err.to_string();
    assert!(message.contains("tokenizer.ggml.token_type"), "{message}");
    assert!(message.contains("2 entries"), "{message}");
}

#[test]
fn merge_without_space_is_rejected() {
    let metadata = replace(
        byte_level_metadata(),
        "tokenizer.ggml.merges",
        strings(&["hi"]),
    );
    let err = build_error(metadata);
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
}
