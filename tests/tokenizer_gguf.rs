//! GGUF tokenizers against the ids of Hugging Face transformers 5.25.
//!
//! Fixtures under `tests/fixtures/tokenizer/`:
//! - `reference_ids/<model>.json`: 25 sentences from the project's reference set.
//! - `prompt_ids.json`: the four hidden-state prompts of the reference set.
//! - `extra_ids_<model>.json`: hard texts (digits, whitespace runs, code,
//!   scripts, special tokens in text), made by `make_extra_ids.py`. Cases with
//!   `overrides` were tokenized from a copy of the file's metadata with those
//!   keys changed; the tests apply the same changes before building.
//!
//! SmolLM2 and Qwen2.5-Coder are required models. Gemma-3 is optional
//! (Gemma Terms of Use): its tests print a note and pass when it is absent.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{Content, Value};
use repatlas::capture::tokenizer::{ModelTokenizer, TokenizerSettings, TokenizerSource};
use serde_json::Value as Json;

fn read_content(path: &Path) -> Content {
    let mut file =
        File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    Content::read(&mut file).unwrap_or_else(|e| panic!("cannot read GGUF {}: {e}", path.display()))
}

fn fixture_json(rel: &str) -> Json {
    let path = common::fixture(&format!("tokenizer/{rel}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

fn ids(value: &Json) -> Vec<u32> {
    let items = value.as_array().expect("input_ids is an array");
    items
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Encodes every `{text, input_ids}` entry and returns one line per mismatch.
fn mismatches(tokenizer: &ModelTokenizer, entries: &[Json]) -> Vec<String> {
    let mut failures = Vec::new();
    for entry in entries {
        let text = entry["text"].as_str().expect("text is a string");
        let expected = ids(&entry["input_ids"]);
        let actual = tokenizer.encode(text).expect("encoding succeeds");
        if actual != expected {
            failures.push(format!(
                "{text:?}\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
    }
    failures
}

fn assert_all_match(tokenizer: &ModelTokenizer, entries: &[Json], label: &str) {
    assert!(!entries.is_empty(), "{label}: no texts in the fixture");
    let failures = mismatches(tokenizer, entries);
    assert!(
        failures.is_empty(),
        "{label}: {} of {} texts differ from transformers:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}

/// Sets the metadata keys of `overrides` (strings and bools) on a copy of `content`.
fn with_overrides(content: &Content, overrides: &Json) -> Content {
    let mut metadata = content.metadata.clone();
    for (key, value) in overrides.as_object().expect("overrides is an object") {
        let value = match value {
            Json::String(s) => Value::String(s.clone()),
            Json::Bool(b) => Value::Bool(*b),
            other => panic!("unsupported override value {other}"),
        };
        metadata.insert(key.clone(), value);
    }
    Content {
        magic: content.magic,
        metadata,
        tensor_infos: Default::default(),
        tensor_data_offset: content.tensor_data_offset,
    }
}

/// Checks every case of `extra_ids_<name>.json`, building a tokenizer per override set.
fn check_extra_cases(content: &Content, base: &ModelTokenizer, name: &str) {
    let fixture = fixture_json(&format!("extra_ids_{name}.json"));
    let cases = fixture["cases"].as_array().expect("cases is an array");
    assert!(
        cases.len() > 1 || name == "qwen",
        "{name}: expected override cases"
    );
    for case in cases {
        let overrides = &case["overrides"];
        let entries = case["texts"].as_array().expect("texts is an array");
        let label = format!("{name} with overrides {overrides}");
        if overrides.as_object().is_some_and(|o| o.is_empty()) {
            assert_all_match(base, entries, &label);
        } else {
            let variant = ModelTokenizer::from_gguf(&with_overrides(content, overrides))
                .expect("variant builds");
            assert_all_match(&variant, entries, &label);
        }
    }
}

fn prompt_entries(model: &str) -> Vec<Json> {
    let prompts = fixture_json("prompt_ids.json");
    prompts["prompts"][model]
        .as_array()
        .expect("prompts for the model")
        .clone()
}

fn reference_entries(model: &str) -> Vec<Json> {
    let reference = fixture_json(&format!("reference_ids/{model}.json"));
    reference["texts"]
        .as_array()
        .expect("texts is an array")
        .clone()
}

struct Loaded {
    content: Content,
    tokenizer: ModelTokenizer,
}

fn load(path: &Path) -> Loaded {
    let content = read_content(path);
    let tokenizer = ModelTokenizer::from_gguf(&content)
        .unwrap_or_else(|e| panic!("building the tokenizer of {} failed: {e}", path.display()));
    Loaded { content, tokenizer }
}

fn smollm2() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| load(&common::require_model(common::SMOLLM2)))
}

fn qwen() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| load(&common::require_model(common::QWEN)))
}

/// Returns Gemma-3 when its file is present, printing a note otherwise.
fn gemma() -> Option<&'static Loaded> {
    static LOADED: OnceLock<Option<Loaded>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let path = common::optional_model(common::GEMMA3)?;
        Some(load(&path))
    });
    if loaded.is_none() {
        eprintln!(
            "note: Gemma-3 tokenizer tests skipped; fetch it with scripts/fetch-models.sh gemma3"
        );
    }
    loaded.as_ref()
}

fn token_id(tokenizer: &ModelTokenizer, token: &str) -> u32 {
    tokenizer
        .inner()
        .token_to_id(token)
        .unwrap_or_else(|| panic!("{token} is not in the vocabulary"))
}

fn assert_serde_round_trip(settings: &TokenizerSettings) {
    let json = serde_json::to_value(settings).expect("settings serialise");
    assert_eq!(json["source"], "gguf");
    let back: TokenizerSettings = serde_json::from_value(json).expect("settings deserialise");
    assert_eq!(&back, settings);
}

#[test]
fn smollm2_reference_sentences() {
    assert_all_match(
        &smollm2().tokenizer,
        &reference_entries("smollm2-135m-instruct"),
        "SmolLM2",
    );
}

#[test]
fn smollm2_hidden_state_prompts() {
    assert_all_match(
        &smollm2().tokenizer,
        &prompt_entries("smollm2-135m-instruct"),
        "SmolLM2 prompts",
    );
}

#[test]
fn smollm2_hard_texts_and_variants() {
    let loaded = smollm2();
    check_extra_cases(&loaded.content, &loaded.tokenizer, "smollm2");
}

#[test]
fn smollm2_special_tokens_and_settings() {
    let tokenizer = &smollm2().tokenizer;
    let settings = tokenizer.settings();
    assert_eq!(settings.source, TokenizerSource::Gguf);
    assert_eq!(settings.model_type, "gpt2");
    assert_eq!(settings.pre_tokenizer.as_deref(), Some("smollm"));
    assert_eq!(settings.architecture.as_deref(), Some("llama"));
    assert!(!tokenizer.adds_bos());
    assert!(!settings.add_eos);
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_id(), Some(2));
    assert_eq!(tokenizer.pad_id(), Some(2));
    assert_eq!(settings.vocab_size, 49152);
    assert!(tokenizer.is_special(0), "<|endoftext|> is a control token");
    assert!(tokenizer.is_special(1));
    assert!(tokenizer.is_special(2));
    assert!(!tokenizer.is_special(token_id(tokenizer, "The")));
    assert_eq!(tokenizer.encode("<|im_start|>").unwrap(), vec![1]);
    assert_serde_round_trip(&settings);
}

#[test]
fn smollm2_splits_digits_singly() {
    let tokenizer = &smollm2().tokenizer;
    let ids = tokenizer.encode("2024").unwrap();
    let digits: Vec<u32> = ["2", "0", "2", "4"]
        .iter()
        .map(|d| token_id(tokenizer, d))
        .collect();
    assert_eq!(ids, digits);
}

#[test]
fn qwen_reference_sentences() {
    assert_all_match(
        &qwen().tokenizer,
        &reference_entries("qwen2.5-coder-0.5b-instruct"),
        "Qwen2.5",
    );
}

#[test]
fn qwen_hidden_state_prompts() {
    assert_all_match(
        &qwen().tokenizer,
        &prompt_entries("qwen2.5-coder-0.5b-instruct"),
        "Qwen2.5 prompts",
    );
}

#[test]
fn qwen_hard_texts() {
    let loaded = qwen();
    check_extra_cases(&loaded.content, &loaded.tokenizer, "qwen");
}

#[test]
fn qwen_special_tokens_and_settings() {
    let tokenizer = &qwen().tokenizer;
    let settings = tokenizer.settings();
    assert_eq!(settings.model_type, "gpt2");
    assert_eq!(settings.pre_tokenizer.as_deref(), Some("qwen2"));
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.bos_id(), Some(151643));
    assert_eq!(tokenizer.eos_id(), Some(151645));
    assert_eq!(tokenizer.pad_id(), Some(151643));
    assert_eq!(settings.vocab_size, 151936);
    assert!(
        tokenizer.is_special(151644),
        "<|im_start|> is a control token"
    );
    assert!(
        tokenizer.is_special(151664),
        "<|file_sep|> is a control token"
    );
    // <tool_call> is user-defined: matched whole, but not special.
    assert_eq!(tokenizer.encode("<tool_call>").unwrap(), vec![151657]);
    assert!(!tokenizer.is_special(151657));
    // Unused padding entries of the vocabulary are not special.
    assert!(!tokenizer.is_special(151665));
    assert_serde_round_trip(&settings);
}

#[test]
fn gemma_reference_sentences() {
    let Some(loaded) = gemma() else { return };
    assert_all_match(
        &loaded.tokenizer,
        &reference_entries("gemma-3-270m"),
        "Gemma-3",
    );
}

#[test]
fn gemma_hidden_state_prompts() {
    let Some(loaded) = gemma() else { return };
    assert_all_match(
        &loaded.tokenizer,
        &prompt_entries("gemma-3-270m"),
        "Gemma-3 prompts",
    );
}

#[test]
fn gemma_hard_texts_and_variants() {
    let Some(loaded) = gemma() else { return };
    check_extra_cases(&loaded.content, &loaded.tokenizer, "gemma");
}

#[test]
fn gemma_adds_bos_and_marks_controls() {
    let Some(loaded) = gemma() else { return };
    let tokenizer = &loaded.tokenizer;
    let settings = tokenizer.settings();
    assert_eq!(settings.model_type, "llama");
    assert_eq!(settings.architecture.as_deref(), Some("gemma3"));
    assert!(tokenizer.adds_bos());
    assert_eq!(tokenizer.bos_id(), Some(2));
    assert_eq!(tokenizer.eos_id(), Some(1));
    assert_eq!(tokenizer.pad_id(), Some(0));
    assert_eq!(tokenizer.encode("").unwrap(), vec![2]);
    let start_of_turn = token_id(tokenizer, "<start_of_turn>");
    assert!(tokenizer.is_special(start_of_turn));
    assert_eq!(
        tokenizer.encode("<start_of_turn>").unwrap(),
        vec![2, start_of_turn]
    );
    assert!(!tokenizer.is_special(token_id(tokenizer, "The")));
    assert_serde_round_trip(&settings);
}
