//! A loaded model of any supported source, with its tokenizer and the
//! facts the run manifest records about it.

use std::path::Path;

use candle_core::Device;
use log::info;

use super::batch::Batch;
use super::bert::Bert;
use super::decoder::{Decoder, Hidden, Tap};
use super::rundir::{ModelSource, WeightFile};
use super::source::{offline_from_env, resolve_hub, ModelSpec};
use super::tokenizer::ModelTokenizer;
use super::weights::{checkpoint_files, GgufWeights, WeightMode};
use super::CaptureError;
use crate::stimuli::file_sha256;

/// The network of a loaded model.
pub enum Network {
    Decoder(Decoder),
    Encoder(Bert),
}

/// A model ready to run, with everything the manifest records.
pub struct LoadedModel {
    pub network: Network,
    pub tokenizer: ModelTokenizer,
    pub source: ModelSource,
    pub architecture: String,
    pub n_blocks: usize,
    pub d_model: usize,
    pub max_positions: usize,
    /// Weight dtypes or GGUF tensor types, most frequent first.
    pub quantization: String,
    pub config: serde_json::Value,
    /// Default short name: the GGUF file stem or the folder / repo name.
    pub default_name: String,
}

impl LoadedModel {
    /// Runs every block in order and keeps `taps`.
    pub fn forward(&self, batch: &Batch, taps: &[Tap]) -> candle_core::Result<Hidden> {
        match &self.network {
            Network::Decoder(d) => d.forward(batch, &(0..d.n_layers()).collect::<Vec<_>>(), taps),
            Network::Encoder(e) => e.forward(batch, taps),
        }
    }
}

/// Loads a model from a spec onto the CPU. `with_lm_head` loads the
/// decoder's LM head (interventions need it); `offline` forbids Hub
/// downloads (also set by `HF_HUB_OFFLINE`).
pub fn load_model(
    spec: &ModelSpec,
    mode: WeightMode,
    offline: bool,
    with_lm_head: bool,
) -> Result<LoadedModel, CaptureError> {
    load_model_on(spec, mode, offline, with_lm_head, &Device::Cpu)
}

/// Loads a model as [`load_model`] does, with its weights and activations
/// on `device`.
pub fn load_model_on(
    spec: &ModelSpec,
    mode: WeightMode,
    offline: bool,
    with_lm_head: bool,
    device: &Device,
) -> Result<LoadedModel, CaptureError> {
    match spec {
        ModelSpec::Gguf(path) => load_gguf(path, mode, with_lm_head, None, device),
        ModelSpec::HfFolder(dir) => load_folder(dir, with_lm_head, None, device),
        ModelSpec::Hub {
            id,
            revision,
            gguf_file,
        } => {
            let resolved = resolve_hub(
                id,
                revision.as_deref(),
                gguf_file.as_deref(),
                offline || offline_from_env(),
            )?;
            let hub = Some((id.clone(), revision.clone().or(resolved.commit.clone())));
            let mut model = match gguf_file {
                Some(_) => load_gguf(&resolved.path, mode, with_lm_head, hub, device)?,
                None => load_folder(&resolved.path, with_lm_head, hub, device)?,
            };
            model.default_name = id.rsplit('/').next().unwrap_or(id).to_string();
            Ok(model)
        }
    }
}

fn weight_file(path: &Path) -> Result<WeightFile, CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    let sha256 = file_sha256(path).map_err(io)?;
    Ok(WeightFile {
        path: path.display().to_string(),
        bytes,
        sha256,
    })
}

fn load_gguf(
    path: &Path,
    mode: WeightMode,
    with_lm_head: bool,
    hub: Option<(String, Option<String>)>,
    device: &Device,
) -> Result<LoadedModel, CaptureError> {
    let mut weights = GgufWeights::open(path, mode, device)?;
    let decoder = Decoder::from_gguf(&mut weights, with_lm_head)?;
    let tokenizer = ModelTokenizer::from_gguf(weights.content())?;
    let config = decoder.config().clone();
    info!(
        "{}: GGUF {} with {} blocks, {:?} weights",
        path.display(),
        config.arch.name(),
        config.num_hidden_layers,
        mode
    );
    Ok(LoadedModel {
        tokenizer,
        source: source(
            if hub.is_some() { "hub-gguf" } else { "gguf" },
            path,
            hub,
            vec![weight_file(path)?],
        ),
        architecture: config.arch.name().into(),
        n_blocks: config.num_hidden_layers,
        d_model: config.hidden_size,
        max_positions: config.max_position_embeddings,
        quantization: gguf_types(weights.content()),
        config: serde_json::to_value(&config).unwrap_or_default(),
        default_name: stem(path),
        network: Network::Decoder(decoder),
    })
}

fn load_folder(
    dir: &Path,
    with_lm_head: bool,
    hub: Option<(String, Option<String>)>,
    device: &Device,
) -> Result<LoadedModel, CaptureError> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(CaptureError::InvalidModelFile {
            path: dir.to_path_buf(),
            message: "tokenizer.json is missing; the folder needs config.json, model.safetensors and tokenizer.json".into(),
        });
    }
    let tokenizer = ModelTokenizer::from_tokenizer_json(&tokenizer_path)?;
    let config_path = dir.join("config.json");
    let raw: serde_json::Value = std::fs::read(&config_path)
        .map_err(|source| CaptureError::Io {
            path: config_path.clone(),
            source,
        })
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| CaptureError::InvalidConfig {
                file: config_path.display().to_string(),
                message: format!("not valid JSON: {e}"),
            })
        })?;
    let kind = if hub.is_some() { "hub" } else { "hf-folder" };
    let files = weight_files(dir)?;
    if raw.get("model_type").and_then(|v| v.as_str()) == Some("bert") {
        let bert = Bert::from_folder(dir, device)?;
        let cfg = bert.config().clone();
        info!(
            "{}: bert encoder with {} layers",
            dir.display(),
            cfg.num_hidden_layers
        );
        return Ok(LoadedModel {
            tokenizer,
            source: source(kind, dir, hub, files),
            architecture: "bert".into(),
            n_blocks: cfg.num_hidden_layers,
            d_model: cfg.hidden_size,
            max_positions: cfg.max_position_embeddings,
            quantization: "none".into(),
            config: serde_json::to_value(&cfg).unwrap_or_default(),
            default_name: stem(dir),
            network: Network::Encoder(bert),
        });
    }
    let (decoder, weights) = Decoder::from_hf_folder_on(dir, with_lm_head, device)?;
    let config = decoder.config().clone();
    info!(
        "{}: {} with {} blocks",
        dir.display(),
        config.arch.name(),
        config.num_hidden_layers
    );
    Ok(LoadedModel {
        tokenizer,
        source: source(kind, dir, hub, files),
        architecture: config.arch.name().into(),
        n_blocks: config.num_hidden_layers,
        d_model: config.hidden_size,
        max_positions: config.max_position_embeddings,
        quantization: format!("none ({})", weights.dtypes.join(", ")),
        config: serde_json::to_value(&config).unwrap_or_default(),
        default_name: stem(dir),
        network: Network::Decoder(decoder),
    })
}

fn weight_files(dir: &Path) -> Result<Vec<WeightFile>, CaptureError> {
    checkpoint_files(dir)?
        .iter()
        .map(|p| weight_file(p))
        .collect()
}

fn source(
    kind: &str,
    path: &Path,
    hub: Option<(String, Option<String>)>,
    files: Vec<WeightFile>,
) -> ModelSource {
    let (hub_id, revision) = match hub {
        Some((id, rev)) => (Some(id), rev),
        None => (None, None),
    };
    ModelSource {
        kind: kind.into(),
        path: path.display().to_string(),
        hub_id,
        revision,
        files,
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// GGUF tensor types present in the file, most frequent first.
fn gguf_types(content: &candle_core::quantized::gguf_file::Content) -> String {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for info in content.tensor_infos.values() {
        *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
    }
    let mut list: Vec<(String, usize)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    list.into_iter()
        .map(|(k, _)| k)
        .collect::<Vec<_>>()
        .join(", ")
}
