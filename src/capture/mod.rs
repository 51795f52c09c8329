//! Capture of per-layer hidden states from pretrained models.
//!
//! [`capture`] ties the pieces together: a [`weights::GgufWeights`] file
//! gives a [`config::DecoderConfig`], a [`tokenizer::ModelTokenizer`] and a
//! [`decoder::Decoder`]; stimuli are tokenized, grouped into
//! [`batch::Batch`]es, run through the decoder, pooled, and written to a run
//! directory ([`rundir`]) that `compare` reads back.

mod activation;
mod attention;
pub mod batch;
pub mod bert;
pub mod config;
pub mod decoder;
pub mod device;
mod load;
pub mod model;
pub mod rundir;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub(crate) mod run;

use std::path::PathBuf;

pub use batch::{Padding, Pooling};
pub use decoder::{Decoder, Tap};
pub use run::{capture, CaptureOptions, CaptureSummary};
pub use rundir::{Manifest, Run};
pub use weights::WeightMode;

/// Errors of loading a model, capturing, or reading a run directory.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file {path} is invalid: {message}")]
    InvalidModelFile { path: PathBuf, message: String },
    #[error("{0}")]
    Device(String),
    #[error("unsupported architecture {arch:?}; supported: {supported}")]
    UnsupportedArch {
        arch: String,
        supported: &'static str,
    },
    #[error("architecture {arch:?} is an encoder: it has no decoder forward or next-token distribution here; use a decoder model (llama, qwen2)")]
    EncoderOnly { arch: String },
    #[error("{file}: metadata key {key} is missing; the file is not a complete model description")]
    MissingConfigKey { file: String, key: String },
    #[error("{file}: invalid model configuration: {message}")]
    InvalidConfig { file: String, message: String },
    #[error("{path}: tensor {name} is missing; the file is truncated or not a supported model")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor {name} has shape {actual:?}, expected {expected:?} (0 = any)")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("the model was loaded without its LM head; load it for interventions")]
    NoLmHead,
    #[error("invalid --model {spec:?}: {message}")]
    InvalidModelSpec { spec: String, message: String },
    #[error("Hub model {id}@{revision} is not in the cache {cache} and offline mode is on (HF_HUB_OFFLINE); download it on a machine with Hub access, copy the cache, or unset HF_HUB_OFFLINE")]
    HubNotCached {
        id: String,
        revision: String,
        cache: PathBuf,
    },
    #[error("cannot download {file} of Hub model {id}: {message}")]
    HubDownload {
        id: String,
        file: String,
        message: String,
    },
    #[error("{path} is not a complete run directory: {message}")]
    NotARun { path: PathBuf, message: String },
    #[error("refusing to write {path}: {message}")]
    ForeignOutput { path: PathBuf, message: String },
    #[error(
        "output {path} already exists; pass --overwrite to replace it or choose another --out"
    )]
    OutputExists { path: PathBuf },
    #[error("{path} holds an unfinished capture with different settings ({message}); delete it or rerun with the original settings")]
    ResumeMismatch { path: PathBuf, message: String },
    #[error("stimulus {id:?} has no tokens after tokenization; remove it or give it text")]
    EmptyTokens { id: String },
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::StimuliError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("cannot write {path}: {message}")]
    Parquet { path: PathBuf, message: String },
}
