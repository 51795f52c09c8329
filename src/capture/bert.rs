//! BERT-style encoders (e.g. all-MiniLM-L6-v2) read from a Hugging Face folder.
//!
//! [`BertConfig`] is read from `config.json` and [`Bert`] from memory-mapped
//! safetensors weights. The forward mirrors transformers' `BertModel`:
//! embeddings (word + token type + absolute position, then LayerNorm), then
//! post-norm blocks of bidirectional attention and a GELU MLP. It returns the
//! same [`Hidden`] as the decoders, so capture and pooling treat both alike.
//! Shapes are written `batch pos d_model`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::attention::{AttentionMask, PackedAttention};
use super::batch::Batch;
use super::decoder::{BlockActivations, Hidden, Tap};
use super::CaptureError;

type CResult<T> = candle_core::Result<T>;

/// Keys that `config.json` must contain; the others default as in
/// transformers' `BertConfig`.
const REQUIRED_KEYS: [&str; 6] = [
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "vocab_size",
];

/// Hyper-parameters of a BERT encoder, named as the `config.json` keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// `gelu` (erf form), `gelu_new` or `gelu_pytorch_tanh` (tanh form), or `relu`.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    pub vocab_size: usize,
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: Option<u32>,
    /// Only `absolute` (the default) is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// `bert` when present; RoBERTa-style models count positions differently.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_hidden_act() -> String {
    "gelu".into()
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_pad_token_id() -> Option<u32> {
    Some(0)
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, CaptureError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| CaptureError::InvalidConfig {
            file: file.clone(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
        let object = value
            .as_object()
            .ok_or_else(|| invalid("the top level is not a JSON object".into()))?;
        for key in REQUIRED_KEYS {
            if !object.contains_key(key) {
                return Err(CaptureError::MissingConfigKey {
                    file: file.clone(),
                    key: key.to_string(),
                });
            }
        }
        let config: Self = serde_json::from_value(value).map_err(|e| invalid(format!("{e}")))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref() {
            if model_type != "bert" {
                return Err(format!(
                    "model_type {model_type:?} is not supported by the BERT encoder; supported: bert"
                ));
            }
        }
        if let Some(kind) = self.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(format!(
                    "position_embedding_type {kind:?} is not supported; only \"absolute\" is"
                ));
            }
        }
        Activation::parse(&self.hidden_act)?;
        let heads = self.num_attention_heads;
        if heads == 0 || self.hidden_size % heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {heads}",
                self.hidden_size
            ));
        }
        if self.type_vocab_size == 0 {
            return Err("type_vocab_size is 0; token type 0 needs an embedding row".into());
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(format!(
                "layer_norm_eps {} is not positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The MLP activation named by `hidden_act`.
#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `x Φ(x)` with the exact normal CDF (transformers' `gelu`).
    GeluErf,
    /// The tanh approximation (transformers' `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "gelu" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(format!(
                "hidden_act {other:?} is not supported; supported: gelu, gelu_new, gelu_pytorch_tanh, relu"
            )),
        }
    }

    fn forward(self, xs: &Tensor) -> CResult<Tensor> {
        match self {
            Self::GeluErf => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

/// A dense layer `y = x W^T + b` with `W` stored `[out, in]`.
#[derive(Debug, Clone)]
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    /// Applies the layer to `[.., in]`, flattening the leading dims into one GEMM.
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let mut dims = xs.dims().to_vec();
        let d_in = *dims.last().expect("non-empty dims");
        let rows = xs.elem_count() / d_in.max(1);
        let ys = xs
            .reshape((rows, d_in))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        *dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        ys.reshape(dims)
    }
}

/// LayerNorm over the last dimension with a learned scale and shift.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Normalizes with the biased variance, as PyTorch does. Mean and variance
    /// are computed in f64 from the f32 input, so that rows with a large mean
    /// lose no precision. The output is f32.
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let wide = xs.to_dtype(DType::F64)?;
        let centered = wide.broadcast_sub(&wide.mean_keepdim(D::Minus1)?)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        centered
            .broadcast_mul(&inv_std)?
            .to_dtype(DType::F32)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Word, position and token-type embeddings followed by LayerNorm.
#[derive(Debug, Clone)]
struct Embeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
}

impl Embeddings {
    /// Embeds `ids` at `positions` (both flat `batch*pos`) with token type 0.
    fn forward(&self, ids: &Tensor, positions: &Tensor, shape: (usize, usize)) -> CResult<Tensor> {
        let (b, t) = shape;
        let d = self.word_embeddings.dim(1)?;
        let words = self.word_embeddings.index_select(ids, 0)?;
        let token_type = self.token_type_embeddings.get(0)?;
        let positions = self.position_embeddings.index_select(positions, 0)?;
        // Same order of additions as transformers: (word + type) + position.
        let sum = words.broadcast_add(&token_type)?.add(&positions)?;
        self.layer_norm.forward(&sum.reshape((b, t, d))?)
    }
}

/// Bidirectional multi-head self-attention and its output dense layer.
#[derive(Debug, Clone)]
struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    output_dense: Dense,
    n_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `xs`: `rows slots d_model`. Returns the output dense layer's result,
    /// before the residual add.
    fn forward(&self, xs: &Tensor, mask: &AttentionMask) -> CResult<Tensor> {
        let (b, t, d) = xs.dims3()?;
        let heads = |x: Tensor| -> CResult<Tensor> {
            x.reshape((b, t, self.n_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(xs)?)?;
        let k = heads(self.key.forward(xs)?)?;
        let v = heads(self.value.forward(xs)?)?;

        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let context = match mask {
            AttentionMask::Additive(mask) => {
                let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?
            }
            AttentionMask::Packed { segments, .. } => q.apply_op3_no_bwd(
                &k,
                &v,
                &PackedAttention {
                    segments: Arc::clone(segments),
                    scale: scale as f32,
                    causal: false,
                    window: None,
                },
            )?,
        };
        self.output_dense.forward(&context)
    }
}

/// One post-norm encoder block.
#[derive(Debug, Clone)]
struct Layer {
    attention: Attention,
    attention_layer_norm: LayerNorm,
    intermediate_dense: Dense,
    activation: Activation,
    output_dense: Dense,
    output_layer_norm: LayerNorm,
}

impl Layer {
    fn forward(&self, xs: &Tensor, mask: &AttentionMask) -> CResult<BlockActivations> {
        let attn_out = self.attention.forward(xs, mask)?;
        let resid_mid = self.attention_layer_norm.forward(&(xs + &attn_out)?)?;
        let hidden = self
            .activation
            .forward(&self.intermediate_dense.forward(&resid_mid)?)?;
        let mlp_out = self.output_dense.forward(&hidden)?;
        let resid_post = self.output_layer_norm.forward(&(&resid_mid + &mlp_out)?)?;
        Ok(BlockActivations {
            attn_out,
            resid_mid,
            mlp_out,
            resid_post,
        })
    }
}

/// A BERT encoder with per-layer taps. The pooler is not loaded.
pub struct Bert {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    device: Device,
}

impl Bert {
    /// Loads an encoder from a Hugging Face folder.
    ///
    /// `dir` contains `config.json` and either `model.safetensors` or a
    /// sharded `model.safetensors.index.json`. Tensor names may carry the
    /// `bert.` prefix of task-head checkpoints or none. Weights stored as
    /// f16 or bf16 are widened to f32.
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self, CaptureError> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let weights = SafetensorsWeights::open(dir, device)?;
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let activation = Activation::parse(&config.hidden_act).expect("validated config");

        let embeddings = Embeddings {
            word_embeddings: weights
                .get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?,
            position_embeddings: weights.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, d],
            )?,
            token_type_embeddings: weights.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, d],
            )?,
            layer_norm: weights.layer_norm("embeddings.LayerNorm", d, eps)?,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| load_layer(&weights, &config, i, activation))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            embeddings,
            layers,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the encoder on `batch` and keeps the requested taps.
    ///
    /// `resid_post[0]` is the embedding output and `resid_post[i]` the output
    /// of block i. `final_norm` equals `resid_post[n_layers]` because BERT has
    /// no final norm. `resid_mid` is the post-attention LayerNorm output, and
    /// `attn_out` and `mlp_out` are the output dense layers before their
    /// residual adds. Position ids are `batch.positions` and every token type
    /// is 0. Fails on a token id outside the vocabulary or a position at or
    /// past `max_position_embeddings`.
    pub fn forward(&self, batch: &Batch, taps: &[Tap]) -> CResult<Hidden> {
        let (b, t) = batch.shape();
        self.check_inputs(batch)?;
        let ids = Tensor::from_vec(batch.ids.clone(), b * t, &self.device)?;
        let positions = Tensor::from_vec(batch.positions.clone(), b * t, &self.device)?;
        let mask = attention_mask(batch, &self.device)?;

        let mut xs = self.embeddings.forward(&ids, &positions, (b, t))?;
        let mut hidden = Hidden::starting_from(&xs);
        for layer in &self.layers {
            let acts = layer.forward(&xs, &mask)?;
            xs = hidden.push(acts, taps);
        }
        hidden.final_norm = xs;
        Ok(hidden)
    }

    /// Rejects ids and positions that the embedding tables do not cover,
    /// with a message that names the value and the limit.
    fn check_inputs(&self, batch: &Batch) -> CResult<()> {
        let vocab = self.config.vocab_size;
        if let Some(id) = batch.ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!(
                "token id {id} is outside the vocabulary of {vocab} tokens: the tokenizer does not belong to this model"
            );
        }
        let max = self.config.max_position_embeddings;
        if let Some(p) = batch.positions.iter().find(|&&p| p as usize >= max) {
            candle_core::bail!(
                "position {p} is past max_position_embeddings {max}: truncate stimuli to at most {max} tokens"
            );
        }
        Ok(())
    }
}

/// Loads block `i` and checks every tensor's shape.
fn load_layer(
    weights: &SafetensorsWeights,
    config: &BertConfig,
    i: usize,
    activation: Activation,
) -> Result<Layer, CaptureError> {
    let p = format!("encoder.layer.{i}");
    let (d, ff, eps) = (
        config.hidden_size,
        config.intermediate_size,
        config.layer_norm_eps,
    );
    Ok(Layer {
        attention: Attention {
            query: weights.dense(&format!("{p}.attention.self.query"), d, d)?,
            key: weights.dense(&format!("{p}.attention.self.key"), d, d)?,
            value: weights.dense(&format!("{p}.attention.self.value"), d, d)?,
            output_dense: weights.dense(&format!("{p}.attention.output.dense"), d, d)?,
            n_heads: config.num_attention_heads,
            head_dim: config.head_dim(),
        },
        attention_layer_norm: weights.layer_norm(
            &format!("{p}.attention.output.LayerNorm"),
            d,
            eps,
        )?,
        intermediate_dense: weights.dense(&format!("{p}.intermediate.dense"), ff, d)?,
        activation,
        output_dense: weights.dense(&format!("{p}.output.dense"), d, ff)?,
        output_layer_norm: weights.layer_norm(&format!("{p}.output.LayerNorm"), d, eps)?,
    })
}

/// Builds the attention mask of `batch`: the stimuli's slot ranges when it is
/// packed, otherwise an additive `batch 1 pos pos` mask. A valid query
/// attends to every valid key of its stimulus. A padding query attends only
/// to itself, so that no row of the softmax is empty and padding never turns
/// into NaN.
fn attention_mask(batch: &Batch, device: &Device) -> CResult<AttentionMask> {
    if batch.padding.is_packed() {
        return Ok(AttentionMask::packed(batch, None));
    }
    let (b, t) = batch.shape();
    let mut mask = vec![f32::NEG_INFINITY; b * t * t];
    for r in 0..b {
        let valid = &batch.mask[r * t..(r + 1) * t];
        for q in 0..t {
            let row = &mut mask[(r * t + q) * t..(r * t + q + 1) * t];
            if valid[q] == 0 {
                row[q] = 0.0;
                continue;
            }
            for (slot, &v) in row.iter_mut().zip(valid) {
                if v != 0 {
                    *slot = 0.0;
                }
            }
        }
    }
    Ok(AttentionMask::Additive(Tensor::from_vec(
        mask,
        (b, 1, t, t),
        device,
    )?))
}

/// Named tensors of one memory-mapped safetensors file or a sharded set.
struct SafetensorsWeights {
    tensors: MmapedSafetensors,
    /// `model.safetensors`, or the index of a sharded set.
    path: PathBuf,
    /// Shard file of each tensor, for a sharded set.
    shard_of: HashMap<String, PathBuf>,
    /// `bert.` or empty, whichever the checkpoint's names use.
    prefix: &'static str,
    device: Device,
}

impl SafetensorsWeights {
    fn open(dir: &Path, device: &Device) -> Result<Self, CaptureError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let (path, shard_of, tensors) = if single.is_file() {
            let tensors = map_files(&single, std::slice::from_ref(&single))?;
            (single, HashMap::new(), tensors)
        } else if index.is_file() {
            let shard_of = read_index(&index)?;
            let shards: Vec<PathBuf> = shard_of
                .values()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let tensors = map_files(&index, &shards)?;
            (index, shard_of, tensors)
        } else {
            return Err(CaptureError::InvalidModelFile {
                path: dir.to_path_buf(),
                message: "the folder contains neither model.safetensors nor model.safetensors.index.json; download the model's safetensors weights".into(),
            });
        };

        let probe = "embeddings.word_embeddings.weight";
        let has = |name: &str| tensors.get(name).is_ok();
        let prefix = if has(probe) {
            ""
        } else if has(&format!("bert.{probe}")) {
            "bert."
        } else {
            return Err(CaptureError::MissingTensor {
                path,
                name: format!("{probe} (also looked for bert.{probe})"),
            });
        };
        Ok(Self {
            tensors,
            path,
            shard_of,
            prefix,
            device: device.clone(),
        })
    }

    /// File that contains (or should contain) tensor `name`.
    fn file_of(&self, name: &str) -> PathBuf {
        self.shard_of.get(name).unwrap_or(&self.path).clone()
    }

    /// Reads tensor `name` (without the prefix) as f32 and checks its shape.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, CaptureError> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .tensors
            .get(&full)
            .map_err(|_| CaptureError::MissingTensor {
                path: self.file_of(&full),
                name: full.clone(),
            })?;
        if view.shape() != shape {
            return Err(CaptureError::TensorShape {
                path: self.file_of(&full),
                name: full,
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        let invalid = |message: String| CaptureError::InvalidModelFile {
            path: self.file_of(&full),
            message,
        };
        let tensor = view
            .load(&self.device)
            .map_err(|e| invalid(format!("tensor {full} cannot be read ({e})")))?;
        if !matches!(tensor.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(invalid(format!(
                "tensor {full} has dtype {:?}; expected f32, f16 or bf16",
                tensor.dtype()
            )));
        }
        Ok(tensor.to_dtype(DType::F32)?)
    }

    fn dense(&self, prefix: &str, out: usize, d_in: usize) -> Result<Dense, CaptureError> {
        Ok(Dense {
            weight: self.get(&format!("{prefix}.weight"), &[out, d_in])?,
            bias: self.get(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn layer_norm(&self, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm, CaptureError> {
        Ok(LayerNorm {
            weight: self.get(&format!("{prefix}.weight"), &[d])?,
            bias: self.get(&format!("{prefix}.bias"), &[d])?,
            eps,
        })
    }
}

/// Memory-maps `files`. Errors name `record` (the file the caller opened)
/// unless a shard itself is missing.
fn map_files(record: &Path, files: &[PathBuf]) -> Result<MmapedSafetensors, CaptureError> {
    for file in files {
        std::fs::metadata(file).map_err(|source| CaptureError::Io {
            path: file.clone(),
            source,
        })?;
    }
    // SAFETY: the mapping is read-only, and model files are not modified while
    // a capture runs. A process that truncated them meanwhile could fault this
    // one, which is the usual contract of memory-mapped model weights.
    let mapped = unsafe { MmapedSafetensors::multi(files) };
    mapped.map_err(|e| CaptureError::InvalidModelFile {
        path: record.to_path_buf(),
        message: format!("not a readable safetensors file ({e}); check the download"),
    })
}

/// Reads the `weight_map` of a sharded checkpoint's index.
fn read_index(index: &Path) -> Result<HashMap<String, PathBuf>, CaptureError> {
    let text = std::fs::read_to_string(index).map_err(|source| CaptureError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| CaptureError::InvalidModelFile {
        path: index.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("key weight_map is missing or not an object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    map.iter()
        .map(|(name, file)| {
            let file = file
                .as_str()
                .ok_or_else(|| invalid(format!("weight_map entry {name} is not a file name")))?;
            Ok((name.clone(), dir.join(file)))
        })
        .collect()
}
