//! Errors of building a tokenizer or encoding text with it.

use std::path::PathBuf;

/// Errors of [`ModelTokenizer`](super::ModelTokenizer): building it from GGUF
/// metadata or a `tokenizer.json`, and encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key that the tokenizer needs is missing.
    #[error(
        "GGUF metadata key {key} is missing, so the file carries no usable tokenizer; \
         re-export the model with llama.cpp's convert_hf_to_gguf.py, or load its tokenizer.json"
    )]
    MissingKey { key: &'static str },

    /// A metadata key with a value of the wrong GGUF type.
    #[error("GGUF metadata key {key} is invalid: expected {expected}, found {found}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: String,
    },

    /// A metadata value of the right type but with invalid content.
    #[error("GGUF metadata key {key} is invalid: {reason}")]
    InvalidMetadata { key: &'static str, reason: String },

    /// A `tokenizer.ggml.model` value that no builder here supports.
    #[error(
        "GGUF tokenizer model {model:?} (key tokenizer.ggml.model) is not supported; \
         supported: {supported}; load the model's tokenizer.json instead"
    )]
    UnsupportedModel { model: String, supported: String },

    /// A `tokenizer.ggml.pre` value whose split rule is not known here.
    #[error(
        "GGUF pre-tokenizer {pre:?} (key tokenizer.ggml.pre) is not supported; \
         supported: {supported}; load the model's tokenizer.json instead"
    )]
    UnsupportedPreTokenizer { pre: String, supported: String },

    /// A component that the `tokenizers` library rejected.
    #[error("building the {component} of the tokenizer failed: {source}")]
    Build {
        component: &'static str,
        #[source]
        source: tokenizers::Error,
    },

    /// A `tokenizer.json` or `tokenizer_config.json` that could not be read.
    #[error(
        "cannot read tokenizer file {path}: {source}; check that the model folder is complete"
    )]
    ReadFile {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },

    /// A failure of the `tokenizers` library while encoding a text.
    #[error("encoding text {preview:?} failed: {source}")]
    Encode {
        preview: String,
        #[source]
        source: tokenizers::Error,
    },
}
