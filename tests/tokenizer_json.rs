//! tokenizer.json loading against the ids of Hugging Face transformers 5.25.
//!
//! Fixtures under `tests/fixtures/tokenizer/`:
//! - `minilm/`: all-MiniLM-L6-v2's tokenizer files, whose tokenizer.json
//!   saves fixed padding and truncation to 128; `reference_ids/all-minilm-l6-v2.json`.
//! - `tiny/bpe512/`, `tiny/wordpiece/`: the tiny models' tokenizers;
//!   `tiny/case_ids.json` (ids of the tiny hidden-state cases) and
//!   `tiny/tokenizers_info.json` (a sample encoding).

mod common;

use std::path::PathBuf;

use repatlas::capture::tokenizer::{ModelTokenizer, TokenizerError, TokenizerSource};
use serde_json::Value as Json;

fn fixture_path(rel: &str) -> PathBuf {
    common::fixture(&format!("tokenizer/{rel}"))
}

fn fixture_json(rel: &str) -> Json {
    let path = fixture_path(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

fn ids(value: &Json) -> Vec<u32> {
    let items = value.as_array().expect("an array of ids");
    items
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

fn load(rel: &str) -> ModelTokenizer {
    let path = fixture_path(rel);
    ModelTokenizer::from_tokenizer_json(&path)
        .unwrap_or_else(|e| panic!("loading {} failed: {e}", path.display()))
}

/// Returns the ids under attention mask 1, which are the unpadded encoding.
fn unpadded_ids(entry: &Json) -> Vec<u32> {
    let all = ids(&entry["input_ids"]);
    match entry["attention_mask"].as_array() {
        None => all,
        Some(mask) => all
            .into_iter()
            .zip(mask)
            .filter(|(_, m)| m.as_u64() == Some(1))
            .map(|(id, _)| id)
            .collect(),
    }
}

fn assert_entries(tokenizer: &ModelTokenizer, entries: &[Json], label: &str) {
    assert!(!entries.is_empty(), "{label}: no texts in the fixture");
    let mut failures = Vec::new();
    for entry in entries {
        let text = entry["text"].as_str().expect("text is a string");
        let expected = unpadded_ids(entry);
        let actual = tokenizer.encode(text).expect("encoding succeeds");
        if actual != expected {
            failures.push(format!(
                "{text:?}\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: texts differ from transformers:\n{}",
        failures.join("\n")
    );
}

#[test]
fn minilm_reference_sentences() {
    let tokenizer = load("minilm/tokenizer.json");
    let reference = fixture_json("reference_ids/all-minilm-l6-v2.json");
    let entries = reference["texts"].as_array().expect("texts is an array");
    assert_entries(&tokenizer, entries, "MiniLM");
}

#[test]
fn minilm_saved_padding_is_off() {
    let tokenizer = load("minilm/tokenizer.json");
    let ids = tokenizer.encode("A man is playing a guitar.").unwrap();
    assert!(ids.len() < 128, "padded to {} ids", ids.len());
    assert_eq!(ids.first(), Some(&101), "starts with [CLS]");
    assert_eq!(ids.last(), Some(&102), "ends with [SEP]");
    assert!(tokenizer.inner().get_padding().is_none());
    assert!(tokenizer.inner().get_truncation().is_none());
}

#[test]
fn minilm_settings() {
    let tokenizer = load("minilm/tokenizer.json");
    let settings = tokenizer.settings();
    assert_eq!(settings.source, TokenizerSource::TokenizerJson);
    assert_eq!(settings.model_type, "WordPiece");
    assert_eq!(settings.pre_tokenizer.as_deref(), Some("BertPreTokenizer"));
    assert_eq!(settings.architecture, None);
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.bos_id(), None);
    assert_eq!(tokenizer.eos_id(), None);
    assert_eq!(tokenizer.pad_id(), Some(0));
    assert_eq!(settings.vocab_size, 30522);
    assert!(tokenizer.is_special(101), "[CLS] is special");
    assert!(tokenizer.is_special(102), "[SEP] is special");
    assert!(tokenizer.is_special(0), "[PAD] is special");
    assert!(
        !tokenizer.is_special(2158),
        "an ordinary word is not special"
    );
    let json = serde_json::to_value(&settings).unwrap();
    assert_eq!(json["source"], "tokenizer_json");
}

#[test]
fn bpe512_tiny_cases() {
    let tokenizer = load("tiny/bpe512/tokenizer.json");
    let cases = fixture_json("tiny/case_ids.json");
    let entries = cases["bpe512"].as_array().expect("bpe512 cases");
    assert_entries(&tokenizer, entries, "bpe512");
}

#[test]
fn bpe512_sample_and_settings() {
    let tokenizer = load("tiny/bpe512/tokenizer.json");
    let info = fixture_json("tiny/tokenizers_info.json");
    let sample = info["bpe512"]["sample_text"].as_str().unwrap();
    assert_eq!(
        tokenizer.encode(sample).unwrap(),
        ids(&info["bpe512"]["sample_ids"])
    );
    assert!(tokenizer.adds_bos(), "bpe512 prepends <s>");
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_id(), Some(2));
    assert_eq!(tokenizer.pad_id(), Some(0));
    assert_eq!(tokenizer.settings().model_type, "BPE");
    assert!(tokenizer.is_special(1));
    assert!(!tokenizer.is_special(340), "The is not special");
}

#[test]
fn wordpiece_tiny_cases() {
    let tokenizer = load("tiny/wordpiece/tokenizer.json");
    let cases = fixture_json("tiny/case_ids.json");
    let entries = cases["wordpiece"].as_array().expect("wordpiece cases");
    assert_entries(&tokenizer, entries, "wordpiece");
}

#[test]
fn wordpiece_sample_and_settings() {
    let tokenizer = load("tiny/wordpiece/tokenizer.json");
    let info = fixture_json("tiny/tokenizers_info.json");
    let sample = info["wordpiece"]["sample_text"].as_str().unwrap();
    assert_eq!(
        tokenizer.encode(sample).unwrap(),
        ids(&info["wordpiece"]["sample_ids"])
    );
    assert!(!tokenizer.adds_bos(), "[CLS] is not a BOS token");
    assert_eq!(tokenizer.pad_id(), Some(0));
    assert_eq!(tokenizer.settings().model_type, "WordPiece");
}

#[test]
fn missing_tokenizer_json_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let err = ModelTokenizer::from_tokenizer_json(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::ReadFile { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn invalid_config_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::copy(fixture_path("tiny/bpe512/tokenizer.json"), &json).unwrap();
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(&config, "{ not json").unwrap();
    let err = ModelTokenizer::from_tokenizer_json(&json).unwrap_err();
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
}

#[test]
fn json_without_config_has_no_bos() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::copy(fixture_path("tiny/bpe512/tokenizer.json"), &json).unwrap();
    let tokenizer = ModelTokenizer::from_tokenizer_json(&json).unwrap();
    assert_eq!(tokenizer.bos_id(), None);
    assert!(
        !tokenizer.adds_bos(),
        "without a named BOS token nothing counts as BOS"
    );
    assert_eq!(
        tokenizer.encode("The").unwrap().first(),
        Some(&1),
        "the template still prepends <s>"
    );
}

#[test]
fn truncation_keeps_closing_specials() {
    // transformers cuts the text's tokens and adds the special tokens
    // after, so BERT keeps [SEP] and the BPE model its BOS.
    let fixture = fixture_json("truncated_ids.json");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 36);
    for case in cases {
        let folder = case["folder"].as_str().unwrap();
        let tokenizer = load(&format!("{folder}/tokenizer.json"));
        let text = case["text"].as_str().unwrap();
        let limit = case["limit"].as_u64().unwrap() as usize;
        let (got, full) = tokenizer.encode_truncated(text, limit).unwrap();
        let label = format!("{folder}, limit {limit}, {text:?}");
        assert_eq!(got, ids(&case["input_ids"]), "{label}");
        assert_eq!(full as u64, case["full_len"].as_u64().unwrap(), "{label}");
    }
}
