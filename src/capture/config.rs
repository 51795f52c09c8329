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
    Qwen2,
}

impl Arch {
    /// Parses the GGUF `general.architecture` value.
    pub fn from_gguf_name(name: &str) -> Result<Self, CaptureError> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "bert" | "nomic-bert" | "jina-bert-v2" | "t5encoder" => {
                Err(CaptureError::EncoderOnly {
                    arch: name.to_string(),
                })
            }
            other => Err(CaptureError::UnsupportedArch {
                arch: other.to_string(),
                supported: "llama, qwen2",
            }),
        }
    }

    /// The name used in manifests and GGUF metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
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
        let config = Self {
            arch,
            num_hidden_layers: meta.usize(&key("block_count"))?,
            hidden_size,
            intermediate_size: meta.usize(&key("feed_forward_length"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta: meta.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_norm_eps: meta.f64(&key("attention.layer_norm_rms_epsilon"))?,
            max_position_embeddings: meta.opt_usize(&key("context_length"))?.unwrap_or(4096),
            rope_interleaved: arch == Arch::Llama,
        };
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), CaptureError> {
        let bad = |what: String| CaptureError::InvalidConfig {
            file: file.to_string(),
            message: what,
        };
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return Err(bad("head counts must be positive".into()));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(bad(format!(
                "attention heads ({}) are not a multiple of key-value heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
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
            .map(|s| s.clone())
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
