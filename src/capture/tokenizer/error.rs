//! Errors of building a tokenizer or encoding text with it.

use std::path::PathBuf;

/// Errors of [`ModelTokenizer`](super::ModelTokenizer): building it from GGUF
/// metadata or a `tokenizer.json`, and encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key that the tokenizer needs is absent.
    #[error(
        "GGUF metadata key {key} is missing, so the file carries no usable tokenizer; \
         re-export the model with llama.cpp's convert_hf_to_gguf.py, or load its tokenizer.json"
    )]
    MissingKey { key: &'static str },

    /// A metadata key holds a value of the wrong GGUF type.
    #[error("GGUF metadata key {key} is invalid: expected {expected}, found {found}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: String,
    },

    /// A metadata value has the right type but an impossible content.
    #[error("GGUF metadata key {key} is invalid: {reason}")]
    InvalidMetadata { key: &'static str, reason: String },

    /// `tokenizer.ggml.model` names a tokenizer kind that is not built here.
    #[error(
        "GGUF tokenizer model {model:?} (key tokenizer.ggml.model) is not supported; \
         supported: {supported}; load the model's tokenizer.json instead"
    )]
    UnsupportedModel { model: String, supported: String },

    /// `tokenizer.ggml.pre` names a pre-tokenizer whose split rule is not known here.
    #[error(
        "GGUF pre-tokenizer {pre:?} (key tokenizer.ggml.pre) is not supported; \
         supported: {supported}; load the model's tokenizer.json instead"
    )]
    UnsupportedPreTokenizer { pre: String, supported: String },

    /// The `tokenizers` library rejected a component built from the metadata.
    #[error("building the {component} of the tokenizer failed: {source}")]
    Build {
        component: &'static str,
        #[source]
        source: tokenizers::Error,
    },

    /// A `tokenizer.json` or its `tokenizer_config.json` could not be read.
    #[error(
        "cannot read tokenizer file {path}: {source}; check that the model folder is complete"
    )]
    ReadFile {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },

    /// Encoding a text failed inside the `tokenizers` library.
    #[error("encoding text {preview:?} failed: {source}")]
    Encode {
        preview: String,
        #[source]
        source: tokenizers::Error,
    },
}
