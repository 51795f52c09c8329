//! Decoder hyper-parameters, read from GGUF metadata.
//!
//! Field names follow the Hugging Face `config.json` keys where one exists,
//! so that a reader can map them to a model card at a glance.

use candle_core::quantized::gguf_file;
use serde::Serialize;

use super::CaptureError;

/// Decoder architectures with a forward of their own in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Gemma3,
}

impl Arch {
    /// Parses the GGUF `general.architecture` value.
    pub fn from_gguf_name(name: &str) -> Result<Self, CaptureError> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "gemma3" => Ok(Self::Gemma3),
            "bert" | "nomic-bert" | "jina-bert-v2" | "t5encoder" => {
                Err(CaptureError::EncoderOnly {
                    arch: name.to_string(),
                })
            }
            other => Err(CaptureError::UnsupportedArch {
                arch: other.to_string(),
                supported: "llama, qwen2, gemma3",
            }),
        }
    }

    /// Returns the name used in manifests and GGUF metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// Attention span of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    FullAttention,
    SlidingAttention,
}

/// MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// Hyper-parameters of a llama-style decoder.
#[derive(Debug, Clone, Serialize)]
pub struct DecoderConfig {
    pub arch: Arch,
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    /// True when Q and K rows are stored in the interleaved RoPE layout
    /// (llama.cpp permutes llama Q/K weights when it writes GGUF).
    pub rope_interleaved: bool,
    /// Number of keys a sliding-attention query attends to, itself included.
    pub sliding_window: Option<usize>,
    /// Per block; all full attention unless the model has local layers.
    pub layer_types: Vec<LayerType>,
    /// RoPE base of sliding-attention blocks (Gemma 3), if it differs.
    pub rope_local_theta: Option<f64>,
    /// Attention scores are scaled by this^-0.5 (default head_dim).
    pub query_pre_attn_scalar: f64,
    pub hidden_act: Activation,
    /// q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Norm weights are stored as w and applied as (1 + w) (Gemma in HF
    /// checkpoints; GGUF files store 1 + w).
    pub norm_plus_one: bool,
    /// Embeddings are multiplied by sqrt(hidden_size) (Gemma).
    pub scale_embeddings: bool,
    pub tie_word_embeddings: bool,
}

/// Gemma 3's default layout: every sixth block has full attention.
fn gemma3_layer_types(n: usize, pattern: usize) -> Vec<LayerType> {
    (0..n)
        .map(|i| {
            if (i + 1) % pattern.max(1) == 0 {
                LayerType::FullAttention
            } else {
                LayerType::SlidingAttention
            }
        })
        .collect()
}

impl DecoderConfig {
    /// Reads the hyper-parameters from GGUF metadata (`<arch>.block_count` and
    /// the other `<arch>.*` keys written by llama.cpp's converter).
    pub fn from_gguf(content: &gguf_file::Content, file: &str) -> Result<Self, CaptureError> {
        let meta = Meta { content, file };
        let arch_name = meta.string("general.architecture")?;
        let arch = Arch::from_gguf_name(&arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");

        let hidden_size = meta.usize(&key("embedding_length"))?;
        let num_attention_heads = meta.usize(&key("attention.head_count"))?;
        let num_key_value_heads = meta
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(num_attention_heads);
        let head_dim = match meta.opt_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None => hidden_size / num_attention_heads,
        };
        let num_hidden_layers = meta.usize(&key("block_count"))?;
        if content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(CaptureError::InvalidConfig {
                file: file.to_string(),
                message: "the file carries rope_freqs.weight (scaled RoPE, e.g. Llama 3.1); RoPE scaling is not implemented".into(),
            });
        }
        if let Some(scaling) = content.metadata.get(&key("rope.scaling.type")) {
            let kind = scaling.to_string().map(|s| s.as_str()).unwrap_or("?");
            if kind != "none" {
                return Err(CaptureError::InvalidConfig {
                    file: file.to_string(),
                    message: format!("{arch_name}.rope.scaling.type is {kind:?}; RoPE scaling is not implemented, only the default rotary embedding"),
                });
            }
        }
        let gemma = arch == Arch::Gemma3;
        let sliding_window = meta.opt_usize(&key("attention.sliding_window"))?;
        let layer_types = if gemma {
            gemma3_layer_types(num_hidden_layers, 6)
        } else {
            vec![LayerType::FullAttention; num_hidden_layers]
        };
        let config = Self {
            arch,
            num_hidden_layers,
            hidden_size,
            intermediate_size: meta.usize(&key("feed_forward_length"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta: meta.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_norm_eps: meta.f64(&key("attention.layer_norm_rms_epsilon"))?,
            max_position_embeddings: meta.opt_usize(&key("context_length"))?.unwrap_or(4096),
            rope_interleaved: arch == Arch::Llama,
            sliding_window,
            layer_types,
            // llama.cpp's converter does not store Gemma 3's local base.
            rope_local_theta: gemma.then_some(10_000.0),
            query_pre_attn_scalar: head_dim as f64,
            hidden_act: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            qkv_bias: arch == Arch::Qwen2,
            norm_plus_one: false,
            scale_embeddings: gemma,
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        };
        config.validate(file)?;
        Ok(config)
    }

    /// Reads the hyper-parameters from a Hugging Face `config.json`.
    pub fn from_hf_json(json: &serde_json::Value, file: &str) -> Result<Self, CaptureError> {
        let cfg = HfJson { json, file };
        let model_type = cfg.string("model_type")?;
        let arch = match model_type.as_str() {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "gemma3" | "gemma3_text" => Arch::Gemma3,
            "bert" => return Err(CaptureError::EncoderOnly { arch: model_type }),
            other => {
                return Err(CaptureError::UnsupportedArch {
                    arch: other.to_string(),
                    supported: "llama, mistral, qwen2, gemma3_text (and bert as an encoder)",
                })
            }
        };
        let gemma = arch == Arch::Gemma3;
        let hidden_size = cfg.usize("hidden_size")?;
        let num_attention_heads = cfg.usize("num_attention_heads")?;
        let num_hidden_layers = cfg.usize("num_hidden_layers")?;
        let head_dim = cfg
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        check_rope_scaling(json, file)?;
        let rope = |kind: Option<&str>| -> Result<Option<f64>, CaptureError> {
            let params = json.get("rope_parameters");
            let nested = kind.and_then(|k| params.and_then(|p| p.get(k)));
            let value = nested
                .or(params)
                .and_then(|p| p.get("rope_theta"))
                .or_else(|| json.get("rope_theta"));
            match value {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| CaptureError::InvalidConfig {
                        file: file.to_string(),
                        message: format!("rope_theta {v} is not a number"),
                    }),
            }
        };
        let sliding_window = match arch {
            Arch::Mistral | Arch::Gemma3 => cfg.opt_usize("sliding_window")?,
            Arch::Qwen2
                if json.get("use_sliding_window").and_then(|v| v.as_bool()) == Some(true) =>
            {
                cfg.opt_usize("sliding_window")?
            }
            _ => None,
        };
        let layer_types = match json.get("layer_types").and_then(|v| v.as_array()) {
            Some(list) => list
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(LayerType::SlidingAttention),
                    Some("full_attention") => Ok(LayerType::FullAttention),
                    other => Err(CaptureError::InvalidConfig {
                        file: file.to_string(),
                        message: format!("layer_types entry {other:?} is not sliding_attention or full_attention"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if gemma => gemma3_layer_types(num_hidden_layers, cfg.opt_usize("sliding_window_pattern")?.unwrap_or(6)),
            None if sliding_window.is_some() => vec![LayerType::SlidingAttention; num_hidden_layers],
            None => vec![LayerType::FullAttention; num_hidden_layers],
        };
        let act = json
            .get("hidden_activation")
            .or_else(|| json.get("hidden_act"))
            .and_then(|v| v.as_str())
            .unwrap_or("silu");
        let hidden_act = match act {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_tanh" => Activation::GeluTanh,
            other => {
                return Err(CaptureError::InvalidConfig {
                    file: file.to_string(),
                    message: format!(
                        "hidden activation {other:?} is not supported (silu, gelu_pytorch_tanh)"
                    ),
                })
            }
        };
        let config = Self {
            arch,
            num_hidden_layers,
            hidden_size,
            intermediate_size: cfg.usize("intermediate_size")?,
            num_attention_heads,
            num_key_value_heads: cfg
                .opt_usize("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim,
            rope_theta: rope(gemma.then_some("full_attention"))?.unwrap_or(10_000.0),
            rms_norm_eps: cfg.f64("rms_norm_eps")?,
            max_position_embeddings: cfg.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            rope_interleaved: false,
            sliding_window,
            layer_types,
            rope_local_theta: if gemma {
                rope(Some("sliding_attention"))?.or(Some(10_000.0))
            } else {
                None
            },
            query_pre_attn_scalar: json
                .get("query_pre_attn_scalar")
                .and_then(|v| v.as_f64())
                .unwrap_or(head_dim as f64),
            hidden_act,
            qkv_bias: arch == Arch::Qwen2
                || json.get("attention_bias").and_then(|v| v.as_bool()) == Some(true),
            norm_plus_one: gemma,
            scale_embeddings: gemma,
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(gemma),
        };
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), CaptureError> {
        let bad = |what: String| CaptureError::InvalidConfig {
            file: file.to_string(),
            message: what,
        };
        if self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return Err(bad(
                "num_hidden_layers and hidden_size must be positive".into()
            ));
        }
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return Err(bad("head counts must be positive".into()));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(bad(format!(
                "attention heads ({}) are not a multiple of key-value heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(bad(format!(
                "layer_types has {} entries for {} layers",
                self.layer_types.len(),
                self.num_hidden_layers
            )));
        }
        if self.layer_types.contains(&LayerType::SlidingAttention) && self.sliding_window.is_none()
        {
            return Err(bad("sliding-attention layers need sliding_window".into()));
        }
        if self.sliding_window == Some(0) {
            return Err(bad(
                "sliding_window is 0, so no token could attend to itself; it must be positive"
                    .into(),
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(bad(format!(
                "head_dim {} is odd; RoPE needs pairs",
                self.head_dim
            )));
        }
        Ok(())
    }
}

/// Typed access to GGUF metadata with errors that name the key and file.
struct Meta<'a> {
    content: &'a gguf_file::Content,
    file: &'a str,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&gguf_file::Value, CaptureError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| CaptureError::MissingConfigKey {
                file: self.file.to_string(),
                key: key.to_string(),
            })
    }

    fn wrong_type(&self, key: &str, expected: &str) -> CaptureError {
        CaptureError::InvalidConfig {
            file: self.file.to_string(),
            message: format!("metadata key {key} is not {expected}"),
        }
    }

    fn string(&self, key: &str) -> Result<String, CaptureError> {
        let value = self.get(key)?;
        value
            .to_string()
            .cloned()
            .map_err(|_| self.wrong_type(key, "a string"))
    }

    fn usize(&self, key: &str) -> Result<usize, CaptureError> {
        let value = self.get(key)?;
        let n = match value {
            gguf_file::Value::U64(v) => *v,
            gguf_file::Value::I64(v) if *v >= 0 => *v as u64,
            other => other
                .to_u32()
                .map(u64::from)
                .map_err(|_| self.wrong_type(key, "an unsigned integer"))?,
        };
        Ok(n as usize)
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, CaptureError> {
        if self.content.metadata.contains_key(key) {
            self.usize(key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn f64(&self, key: &str) -> Result<f64, CaptureError> {
        let value = self.get(key)?;
        match value {
            gguf_file::Value::F32(v) => Ok(f64::from(*v)),
            gguf_file::Value::F64(v) => Ok(*v),
            _ => Err(self.wrong_type(key, "a float")),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, CaptureError> {
        if self.content.metadata.contains_key(key) {
            self.f64(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Rejects RoPE scaling (llama3, linear, dynamic, yarn, ...): the forward
/// implements the default rotary embedding only, and ignoring a scaling
/// would silently change every hidden state.
fn check_rope_scaling(json: &serde_json::Value, file: &str) -> Result<(), CaptureError> {
    let mut entries = Vec::new();
    for key in ["rope_parameters", "rope_scaling"] {
        match json.get(key) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                if map.contains_key("rope_type")
                    || map.contains_key("type")
                    || map.contains_key("rope_theta")
                {
                    entries.push((key.to_string(), map.clone()));
                } else {
                    // Per-layer-type parameters (Gemma 3).
                    for (kind, v) in map {
                        match v.as_object() {
                            Some(inner) => entries.push((format!("{key}.{kind}"), inner.clone())),
                            None => {
                                return Err(CaptureError::InvalidConfig {
                                    file: file.to_string(),
                                    message: format!("{key}.{kind} is not an object"),
                                })
                            }
                        }
                    }
                }
            }
            Some(other) => {
                return Err(CaptureError::InvalidConfig {
                    file: file.to_string(),
                    message: format!("{key} is {other}, expected an object"),
                })
            }
        }
    }
    for (key, map) in entries {
        let kind = map.get("rope_type").or_else(|| map.get("type"));
        match kind.and_then(|k| k.as_str()) {
            None | Some("default") => {}
            Some(other) => {
                return Err(CaptureError::InvalidConfig {
                    file: file.to_string(),
                    message: format!("{key} asks for RoPE scaling {other:?}, which is not implemented (only the default rotary embedding is); such models cannot be captured yet"),
                })
            }
        }
    }
    Ok(())
}

/// Typed access to `config.json` keys with errors that name the key and file.
struct HfJson<'a> {
    json: &'a serde_json::Value,
    file: &'a str,
}

impl HfJson<'_> {
    fn get(&self, key: &str) -> Result<&serde_json::Value, CaptureError> {
        self.json
            .get(key)
            .ok_or_else(|| CaptureError::MissingConfigKey {
                file: self.file.to_string(),
                key: key.to_string(),
            })
    }

    fn wrong_type(&self, key: &str, expected: &str) -> CaptureError {
        CaptureError::InvalidConfig {
            file: self.file.to_string(),
            message: format!("key {key} is not {expected}"),
        }
    }

    fn string(&self, key: &str) -> Result<String, CaptureError> {
        self.get(key)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.wrong_type(key, "a string"))
    }

    fn usize(&self, key: &str) -> Result<usize, CaptureError> {
        self.get(key)?
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| self.wrong_type(key, "an unsigned integer"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, CaptureError> {
        match self.json.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    fn f64(&self, key: &str) -> Result<f64, CaptureError> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number"))
    }
}
