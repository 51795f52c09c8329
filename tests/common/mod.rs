//! Helpers shared by the integration tests: where fixtures and models live.
#![allow(dead_code)]

use std::path::PathBuf;

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(rel)
}

/// The models folder: `$REPATLAS_MODELS`, or `<crate root>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("REPATLAS_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// Path of a required model file under the models folder; panics with the
/// command that fetches it when it is missing.
pub fn require_model(rel: &str) -> PathBuf {
    let path = models_dir().join(rel);
    assert!(
        path.is_file(),
        "model file {} is missing: run scripts/fetch-models.sh (or set REPATLAS_MODELS)",
        path.display()
    );
    path
}

/// Path of an optional model file, or None with a note on stderr.
pub fn optional_model(rel: &str) -> Option<PathBuf> {
    let path = models_dir().join(rel);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipping: optional model {} is not present", path.display());
        None
    }
}

pub const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const GEMMA3: &str = "gemma-3-270m/gemma-3-270m-q4_k_m.gguf";
pub const MINILM: &str = "all-minilm-l6-v2";
