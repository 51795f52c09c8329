//! A llama-family decoder forward that exposes the residual stream.
//!
//! The model reads bottom-up: rotary embedding, attention, MLP, block, model.
//! Shapes are written `batch pos d_model`. Every block returns its input to
//! the MLP (`resid_mid`), its attention and MLP outputs (`attn_out`,
//! `mlp_out`) and its output (`resid_post`); the model keeps the ones the
//! caller asked for. The LM head is only applied by [`Decoder::logits`],
//! never during capture.

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use super::batch::Batch;
use super::config::{Arch, DecoderConfig};
use super::weights::{GgufWeights, Linear};
use super::CaptureError;

type CResult<T> = candle_core::Result<T>;

/// Activation sites inside a block, named as in TransformerLens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tap {
    /// The residual stream after the block (the block's output).
    ResidPost,
    /// The residual stream between attention and MLP.
    ResidMid,
    /// The attention output added to the residual stream.
    AttnOut,
    /// The MLP output added to the residual stream.
    MlpOut,
}

/// RMSNorm with a learned per-channel scale, computed in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        candle_nn::ops::rms_norm(xs, &self.weight, self.eps)
    }
}

/// Cosine and sine tables for rotary position embeddings.
#[derive(Debug, Clone)]
struct Rotary {
    inv_freq: Vec<f32>,
    interleaved: bool,
}

impl Rotary {
    fn new(cfg: &DecoderConfig) -> Self {
        // Computed in f32 like transformers' default RoPE initialisation.
        let dim = cfg.head_dim;
        let base = cfg.rope_theta as f32;
        let inv_freq = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        Self {
            inv_freq,
            interleaved: cfg.rope_interleaved,
        }
    }

    /// Tables of shape `batch pos head_dim/2` for per-row position ids.
    fn tables(&self, positions: &[Vec<u32>], device: &Device) -> CResult<(Tensor, Tensor)> {
        let b = positions.len();
        let t = positions.first().map_or(0, Vec::len);
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(b * t * half);
        let mut sin = Vec::with_capacity(b * t * half);
        for row in positions {
            for &p in row {
                for &f in &self.inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let cos = Tensor::from_vec(cos, (b, t, half), device)?;
        let sin = Tensor::from_vec(sin, (b, t, half), device)?;
        Ok((cos, sin))
    }

    fn apply(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor) -> CResult<Tensor> {
        let xs = xs.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&xs, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(&xs, cos, sin)
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `xs`: `batch pos d_model`; `mask`: additive `batch 1 pos pos`.
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        rotary: &Rotary,
        rope: &(Tensor, Tensor),
    ) -> CResult<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let heads = |x: Tensor, n: usize| -> CResult<Tensor> {
            x.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(xs)?, self.n_heads)?;
        let k = heads(self.k_proj.forward(xs)?, self.n_kv_heads)?;
        let v = heads(self.v_proj.forward(xs)?, self.n_kv_heads)?;
        let q = rotary.apply(&q, &rope.0, &rope.1)?;
        let k = rotary.apply(&k, &rope.0, &rope.1)?;

        // Grouped-query attention without copying K and V: the query heads of
        // one group are stacked along the position axis.
        let groups = self.n_heads / self.n_kv_heads;
        let q = q.reshape((b, self.n_kv_heads, groups * t, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = scores
            .reshape((b, self.n_heads, t, t))?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let probs = probs.reshape((b, self.n_kv_heads, groups * t, t))?;
        let ctx = probs.matmul(&v)?;
        let ctx = ctx
            .reshape((b, self.n_heads, t, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, self.n_heads * self.head_dim))?;
        self.o_proj.forward(&ctx)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(xs)?)?;
        let up = self.up_proj.forward(xs)?;
        self.down_proj.forward(&(gate * up)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// The activations of one block.
pub struct BlockActivations {
    pub resid_mid: Tensor,
    pub attn_out: Tensor,
    pub mlp_out: Tensor,
    pub resid_post: Tensor,
}

impl Block {
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        rotary: &Rotary,
        rope: &(Tensor, Tensor),
    ) -> CResult<BlockActivations> {
        let attn_out =
            self.self_attn
                .forward(&self.input_layernorm.forward(xs)?, mask, rotary, rope)?;
        let resid_mid = (xs + &attn_out)?;
        let mlp_out = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&resid_mid)?)?;
        let resid_post = (&resid_mid + &mlp_out)?;
        Ok(BlockActivations {
            resid_mid,
            attn_out,
            mlp_out,
            resid_post,
        })
    }
}

/// Hidden states of one batch: `resid_post[0]` is the embedding output and
/// `resid_post[i]` the raw output of block i; `final_norm` is the output of
/// the final norm applied to the last block.
pub struct Hidden {
    pub resid_post: Vec<Tensor>,
    /// Per block (index i-1 for block i), present only when requested.
    pub resid_mid: Vec<Tensor>,
    pub attn_out: Vec<Tensor>,
    pub mlp_out: Vec<Tensor>,
    pub final_norm: Tensor,
}

/// Batch-level inputs of the blocks, computed once per batch.
pub struct Prepared {
    /// Token embeddings `batch pos d_model`.
    pub embeddings: Tensor,
    mask: Tensor,
    rope: (Tensor, Tensor),
}

/// A llama-family decoder (llama, qwen2) with per-layer taps.
pub struct Decoder {
    config: DecoderConfig,
    embed_tokens: QTensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rotary: Rotary,
    device: Device,
}

impl Decoder {
    /// Loads every block from an open GGUF file. The LM head is loaded only
    /// when `with_lm_head` is set (interventions need it, capture does not).
    pub fn from_gguf(weights: &mut GgufWeights, with_lm_head: bool) -> Result<Self, CaptureError> {
        let file = weights.path().display().to_string();
        let config = DecoderConfig::from_gguf(weights.content(), &file)?;
        let d = config.hidden_size;
        let q_dim = config.num_attention_heads * config.head_dim;
        let kv_dim = config.num_key_value_heads * config.head_dim;
        let bias = config.arch == Arch::Qwen2;
        let eps = config.rms_norm_eps as f32;

        let embed_tokens = weights.qtensor("token_embd.weight")?;
        let embed_dims = embed_tokens.shape().dims().to_vec();
        if embed_dims.len() != 2 || embed_dims[1] != d {
            return Err(CaptureError::TensorShape {
                path: weights.path().to_path_buf(),
                name: "token_embd.weight".into(),
                expected: vec![0, d],
                actual: embed_dims,
            });
        }
        let vocab = embed_dims[0];

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("blk.{i}");
            let norm = |w: &mut GgufWeights, name: &str| -> Result<RmsNorm, CaptureError> {
                Ok(RmsNorm {
                    weight: w.f32(&format!("{p}.{name}.weight"), &[d])?,
                    eps,
                })
            };
            layers.push(Block {
                input_layernorm: norm(weights, "attn_norm")?,
                self_attn: Attention {
                    q_proj: weights.linear(&format!("{p}.attn_q"), q_dim, d, bias)?,
                    k_proj: weights.linear(&format!("{p}.attn_k"), kv_dim, d, bias)?,
                    v_proj: weights.linear(&format!("{p}.attn_v"), kv_dim, d, bias)?,
                    o_proj: weights.linear(&format!("{p}.attn_output"), d, q_dim, false)?,
                    n_heads: config.num_attention_heads,
                    n_kv_heads: config.num_key_value_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: norm(weights, "ffn_norm")?,
                mlp: Mlp {
                    gate_proj: weights.linear(
                        &format!("{p}.ffn_gate"),
                        config.intermediate_size,
                        d,
                        false,
                    )?,
                    up_proj: weights.linear(
                        &format!("{p}.ffn_up"),
                        config.intermediate_size,
                        d,
                        false,
                    )?,
                    down_proj: weights.linear(
                        &format!("{p}.ffn_down"),
                        d,
                        config.intermediate_size,
                        false,
                    )?,
                },
            });
        }
        let norm = RmsNorm {
            weight: weights.f32("output_norm.weight", &[d])?,
            eps,
        };
        let lm_head = if with_lm_head {
            // Tied embeddings: GGUF files of such models carry no output.weight.
            let name = if weights.contains("output.weight") {
                "output"
            } else {
                "token_embd"
            };
            Some(weights.linear(name, vocab, d, false)?)
        } else {
            None
        };
        let rotary = Rotary::new(&config);
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            device: weights.device().clone(),
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.shape().dims()[0]
    }

    /// Computes the batch-level inputs every block needs: the embeddings,
    /// the attention mask and the RoPE tables.
    pub fn prepare(&self, batch: &Batch) -> CResult<Prepared> {
        let ids = Tensor::from_vec(batch.ids.clone(), (batch.size(), batch.len()), &self.device)?;
        let embeddings = self.embed_tokens.embedding(&ids)?.to_dtype(DType::F32)?;
        Ok(Prepared {
            embeddings,
            mask: self.attention_mask(batch)?,
            rope: self.rotary.tables(&batch.positions, &self.device)?,
        })
    }

    /// Runs the blocks in `order` (block indices, repeats allowed; the plain
    /// forward is `0..n_layers`) and keeps the requested taps.
    pub fn forward(&self, batch: &Batch, order: &[usize], taps: &[Tap]) -> CResult<Hidden> {
        let prepared = self.prepare(batch)?;
        let mut xs = prepared.embeddings.clone();
        let keep = |tap: Tap| taps.contains(&tap);
        let mut hidden = Hidden {
            resid_post: vec![xs.clone()],
            resid_mid: Vec::new(),
            attn_out: Vec::new(),
            mlp_out: Vec::new(),
            final_norm: xs.clone(),
        };
        for &i in order {
            let acts = self.layers[i].forward(&xs, &prepared.mask, &self.rotary, &prepared.rope)?;
            if keep(Tap::ResidMid) {
                hidden.resid_mid.push(acts.resid_mid);
            }
            if keep(Tap::AttnOut) {
                hidden.attn_out.push(acts.attn_out);
            }
            if keep(Tap::MlpOut) {
                hidden.mlp_out.push(acts.mlp_out);
            }
            xs = acts.resid_post;
            hidden.resid_post.push(xs.clone());
        }
        hidden.final_norm = self.norm.forward(&xs)?;
        Ok(hidden)
    }

    /// Continues a forward from the residual stream `xs` through `blocks`
    /// and returns the final-norm output. Interventions use it to reuse the
    /// unchanged prefix of the plain forward.
    pub fn forward_from(
        &self,
        prepared: &Prepared,
        xs: &Tensor,
        blocks: &[usize],
    ) -> CResult<Tensor> {
        let mut xs = xs.clone();
        for &i in blocks {
            xs = self.layers[i]
                .forward(&xs, &prepared.mask, &self.rotary, &prepared.rope)?
                .resid_post;
        }
        self.norm.forward(&xs)
    }

    /// Runs block `block` on the residual stream `xs` and returns its output.
    pub fn forward_from_raw(
        &self,
        prepared: &Prepared,
        xs: &Tensor,
        block: usize,
    ) -> CResult<Tensor> {
        Ok(self.layers[block]
            .forward(xs, &prepared.mask, &self.rotary, &prepared.rope)?
            .resid_post)
    }

    /// Next-token logits `batch pos vocab` from final-norm hidden states.
    pub fn logits(&self, final_norm: &Tensor) -> Result<Tensor, CaptureError> {
        let head = self.lm_head.as_ref().ok_or(CaptureError::NoLmHead)?;
        Ok(head.forward(final_norm)?)
    }

    /// Additive mask `batch 1 pos pos`: a query sees earlier valid keys and
    /// itself. Padding queries see only themselves, so that no row of the
    /// softmax is empty and padding never turns into NaN.
    fn attention_mask(&self, batch: &Batch) -> CResult<Tensor> {
        let (b, t) = (batch.size(), batch.len());
        let mut mask = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            let valid = &batch.mask[r * t..(r + 1) * t];
            for q in 0..t {
                let row = &mut mask[(r * t + q) * t..(r * t + q + 1) * t];
                if valid[q] == 0 {
                    row[q] = 0.0;
                    continue;
                }
                for k in 0..=q {
                    if valid[k] != 0 {
                        row[k] = 0.0;
                    }
                }
            }
        }
        Tensor::from_vec(mask, (b, 1, t, t), &self.device)
    }
}
