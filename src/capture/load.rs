//! Building a [`Decoder`] from a checkpoint: GGUF tensor names or Hugging
//! Face names, mapped onto the same blocks.

use std::path::Path;

use super::config::{Arch, DecoderConfig};
use super::decoder::{Attention, Block, Decoder, Mlp, RmsNorm, Rotaries, Rotary};
use super::weights::{GgufWeights, SafetensorsWeights, WeightSource};
use super::CaptureError;

/// Tensor names of one checkpoint layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// llama.cpp's names (`blk.N.attn_q`).
    Gguf,
    /// transformers' names (`model.layers.N.self_attn.q_proj`).
    Hf,
}

impl Naming {
    fn embed(self) -> &'static str {
        match self {
            Self::Gguf => "token_embd.weight",
            Self::Hf => "model.embed_tokens.weight",
        }
    }

    fn final_norm(self) -> &'static str {
        match self {
            Self::Gguf => "output_norm.weight",
            Self::Hf => "model.norm.weight",
        }
    }

    fn lm_head(self) -> &'static str {
        match self {
            Self::Gguf => "output",
            Self::Hf => "lm_head",
        }
    }

    fn tied_head(self) -> &'static str {
        match self {
            Self::Gguf => "token_embd",
            Self::Hf => "model.embed_tokens",
        }
    }

    /// Name of a block tensor, without the `.weight` suffix.
    fn block(self, i: usize, part: Part) -> String {
        let (gguf, hf) = match part {
            Part::Q => ("attn_q", "self_attn.q_proj"),
            Part::K => ("attn_k", "self_attn.k_proj"),
            Part::V => ("attn_v", "self_attn.v_proj"),
            Part::O => ("attn_output", "self_attn.o_proj"),
            Part::QNorm => ("attn_q_norm", "self_attn.q_norm"),
            Part::KNorm => ("attn_k_norm", "self_attn.k_norm"),
            Part::InputNorm => ("attn_norm", "input_layernorm"),
            Part::PostAttentionNorm => ("post_attention_norm", "post_attention_layernorm"),
            Part::PreMlpNorm => ("ffn_norm", "pre_feedforward_layernorm"),
            Part::PostMlpNorm => ("post_ffw_norm", "post_feedforward_layernorm"),
            Part::Gate => ("ffn_gate", "mlp.gate_proj"),
            Part::Up => ("ffn_up", "mlp.up_proj"),
            Part::Down => ("ffn_down", "mlp.down_proj"),
        };
        match self {
            Self::Gguf => format!("blk.{i}.{gguf}"),
            Self::Hf => format!("model.layers.{i}.{hf}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Q,
    K,
    V,
    O,
    QNorm,
    KNorm,
    InputNorm,
    PostAttentionNorm,
    PreMlpNorm,
    PostMlpNorm,
    Gate,
    Up,
    Down,
}

impl Decoder {
    /// Loads every block from an open GGUF file. The LM head is loaded only
    /// when `with_lm_head` is set (interventions need it, capture does not).
    pub fn from_gguf(weights: &mut GgufWeights, with_lm_head: bool) -> Result<Self, CaptureError> {
        let file = weights.path().display().to_string();
        let config = DecoderConfig::from_gguf(weights.content(), &file)?;
        build(weights, config, Naming::Gguf, with_lm_head)
    }

    /// Loads a Hugging Face folder: `config.json` and `model.safetensors`
    /// (or its sharded index). Returns the weights too, for the manifest.
    pub fn from_hf_folder(
        dir: &Path,
        with_lm_head: bool,
    ) -> Result<(Self, SafetensorsWeights), CaptureError> {
        Self::from_hf_folder_on(dir, with_lm_head, &candle_core::Device::Cpu)
    }

    /// Loads a Hugging Face folder as [`Decoder::from_hf_folder`] does, with
    /// the weights on `device`.
    pub fn from_hf_folder_on(
        dir: &Path,
        with_lm_head: bool,
        device: &candle_core::Device,
    ) -> Result<(Self, SafetensorsWeights), CaptureError> {
        let config_path = dir.join("config.json");
        let bytes = std::fs::read(&config_path).map_err(|source| CaptureError::Io {
            path: config_path.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CaptureError::InvalidConfig {
                file: config_path.display().to_string(),
                message: format!("not valid JSON: {e}"),
            })?;
        let config = DecoderConfig::from_hf_json(&json, &config_path.display().to_string())?;
        let mut weights = SafetensorsWeights::open(dir, device)?;
        let decoder = build(&mut weights, config, Naming::Hf, with_lm_head)?;
        Ok((decoder, weights))
    }
}

fn build(
    weights: &mut dyn WeightSource,
    config: DecoderConfig,
    naming: Naming,
    with_lm_head: bool,
) -> Result<Decoder, CaptureError> {
    let d = config.hidden_size;
    let hd = config.head_dim;
    let q_dim = config.num_attention_heads * hd;
    let kv_dim = config.num_key_value_heads * hd;
    let gemma = config.arch == Arch::Gemma3;
    let eps = config.rms_norm_eps as f32;
    let plus_one = config.norm_plus_one;

    let norm =
        |w: &mut dyn WeightSource, name: &str, len: usize| -> Result<RmsNorm, CaptureError> {
            let mut weight = w.f32(&format!("{name}.weight"), &[len])?;
            if plus_one {
                weight = (weight + 1.0)?;
            }
            Ok(RmsNorm { weight, eps })
        };

    let embed_tokens = weights.embedding(naming.embed(), d)?;
    let vocab = embed_tokens.rows();
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let name = |part| naming.block(i, part);
        let ffn = config.intermediate_size;
        let self_attn = Attention {
            q_proj: weights.linear(&name(Part::Q), q_dim, d, config.qkv_bias)?,
            k_proj: weights.linear(&name(Part::K), kv_dim, d, config.qkv_bias)?,
            v_proj: weights.linear(&name(Part::V), kv_dim, d, config.qkv_bias)?,
            o_proj: weights.linear(&name(Part::O), d, q_dim, false)?,
            q_norm: if gemma {
                Some(norm(weights, &name(Part::QNorm), hd)?)
            } else {
                None
            },
            k_norm: if gemma {
                Some(norm(weights, &name(Part::KNorm), hd)?)
            } else {
                None
            },
            n_heads: config.num_attention_heads,
            n_kv_heads: config.num_key_value_heads,
            head_dim: hd,
            scale: 1.0 / config.query_pre_attn_scalar.sqrt(),
        };
        // llama's post_attention_layernorm sits in front of the MLP; Gemma
        // has a norm after attention and a separate pre-MLP norm.
        let (post_attention_norm, pre_mlp_norm, post_feedforward_norm) = if gemma {
            (
                Some(norm(weights, &name(Part::PostAttentionNorm), d)?),
                norm(weights, &name(Part::PreMlpNorm), d)?,
                Some(norm(weights, &name(Part::PostMlpNorm), d)?),
            )
        } else {
            let pre = match naming {
                Naming::Gguf => name(Part::PreMlpNorm),
                Naming::Hf => name(Part::PostAttentionNorm),
            };
            (None, norm(weights, &pre, d)?, None)
        };
        layers.push(Block {
            input_layernorm: norm(weights, &name(Part::InputNorm), d)?,
            self_attn,
            post_attention_norm,
            pre_mlp_norm,
            post_feedforward_norm,
            mlp: Mlp {
                gate_proj: weights.linear(&name(Part::Gate), ffn, d, false)?,
                up_proj: weights.linear(&name(Part::Up), ffn, d, false)?,
                down_proj: weights.linear(&name(Part::Down), d, ffn, false)?,
                act: config.hidden_act,
            },
            layer_type: config.layer_types[i],
        });
    }
    let final_norm = norm(weights, naming.final_norm().trim_end_matches(".weight"), d)?;
    let lm_head = if with_lm_head {
        let own = format!("{}.weight", naming.lm_head());
        let name = if weights.contains(&own) {
            naming.lm_head()
        } else {
            naming.tied_head()
        };
        Some(weights.linear(name, vocab, d, false)?)
    } else {
        None
    };
    let rotary = Rotaries {
        global: Rotary::new(hd, config.rope_theta, config.rope_interleaved),
        local: config
            .rope_local_theta
            .map(|theta| Rotary::new(hd, theta, config.rope_interleaved)),
    };
    let device = weights.device().clone();
    Ok(Decoder {
        config,
        embed_tokens,
        layers,
        norm: final_norm,
        lm_head,
        rotary,
        device,
    })
}
