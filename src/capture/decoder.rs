//! A decoder forward (llama, mistral, qwen2, gemma3) that exposes the
//! residual stream.
//!
//! The model reads bottom-up: norms, rotary embedding, attention, MLP, block,
//! model. Shapes are written `batch pos d_model`. Every block returns its
//! input to the MLP (`resid_mid`), its attention and MLP outputs
//! (`attn_out`, `mlp_out`, after Gemma's post-norms) and its output
//! (`resid_post`); the model keeps the ones the caller asked for. The LM head
//! is only applied by [`Decoder::logits`], never during capture. Loading
//! lives in [`super::load`].

use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::activation::GatedActivation;
use super::attention::{AttentionMask, PackedAttention};
use super::batch::Batch;
use super::config::{Activation, DecoderConfig, LayerType};
use super::weights::{Embedding, Linear};
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

/// RMSNorm with a learned per-channel scale, computed in f32. Gemma's
/// `(1 + w)` form is folded into the scale at load time.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl RmsNorm {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps)
    }
}

/// Inverse frequencies of rotary position embeddings.
#[derive(Debug, Clone)]
pub(crate) struct Rotary {
    inv_freq: Vec<f32>,
    interleaved: bool,
}

impl Rotary {
    pub(crate) fn new(head_dim: usize, theta: f64, interleaved: bool) -> Self {
        // Computed in f32 like transformers' default RoPE initialisation.
        let base = theta as f32;
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Self {
            inv_freq,
            interleaved,
        }
    }

    /// Tables of shape `rows slots head_dim/2` for the position ids of a
    /// batch's `rows slots` token tensor.
    fn tables(&self, batch: &Batch, device: &Device) -> CResult<(Tensor, Tensor)> {
        let (rows, slots) = batch.shape();
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(rows * slots * half);
        let mut sin = Vec::with_capacity(rows * slots * half);
        for &p in &batch.positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (rows, slots, half), device)?;
        let sin = Tensor::from_vec(sin, (rows, slots, half), device)?;
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
pub(crate) struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    /// Gemma 3 normalises queries and keys per head before RoPE.
    pub(crate) q_norm: Option<RmsNorm>,
    pub(crate) k_norm: Option<RmsNorm>,
    pub(crate) n_heads: usize,
    pub(crate) n_kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f64,
}

impl Attention {
    /// `xs`: `rows slots d_model`.
    fn forward(
        &self,
        xs: &Tensor,
        mask: &AttentionMask,
        rotary: &Rotary,
        rope: &(Tensor, Tensor),
    ) -> CResult<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let heads = |x: Tensor, n: usize| -> CResult<Tensor> {
            x.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let mut q = heads(self.q_proj.forward(xs)?, self.n_heads)?;
        let mut k = heads(self.k_proj.forward(xs)?, self.n_kv_heads)?;
        let v = heads(self.v_proj.forward(xs)?, self.n_kv_heads)?;
        if let Some(norm) = &self.q_norm {
            q = norm.forward(&q)?;
        }
        if let Some(norm) = &self.k_norm {
            k = norm.forward(&k)?;
        }
        let q = rotary.apply(&q, &rope.0, &rope.1)?;
        let k = rotary.apply(&k, &rope.0, &rope.1)?;
        let ctx = match mask {
            AttentionMask::Additive(mask) => self.padded(&q, &k, &v, mask)?,
            AttentionMask::Packed { segments, window } => q.apply_op3_no_bwd(
                &k,
                &v,
                &PackedAttention {
                    segments: Arc::clone(segments),
                    scale: self.scale as f32,
                    causal: true,
                    window: *window,
                },
            )?,
        };
        self.o_proj.forward(&ctx)
    }

    /// Attention of padded rows: `q` is `batch n_heads pos head_dim`, `k`
    /// and `v` are `batch n_kv_heads pos head_dim`, and `mask` is additive
    /// `batch 1 pos pos`. Returns `batch pos n_heads*head_dim`.
    fn padded(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> CResult<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        // Grouped-query attention without copying K and V: the query heads of
        // one group are stacked along the position axis.
        let groups = self.n_heads / self.n_kv_heads;
        let q = q.reshape((b, self.n_kv_heads, groups * t, self.head_dim))?;
        let scores = (q.matmul(&k.t()?)? * self.scale)?;
        let scores = scores
            .reshape((b, self.n_heads, t, t))?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let probs = probs.reshape((b, self.n_kv_heads, groups * t, t))?;
        let ctx = probs.matmul(v)?;
        ctx.reshape((b, self.n_heads, t, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, self.n_heads * self.head_dim))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) gate_proj: Linear,
    pub(crate) up_proj: Linear,
    pub(crate) down_proj: Linear,
    pub(crate) act: Activation,
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let gate = self.gate_proj.forward(xs)?;
        let up = self.up_proj.forward(xs)?;
        let hidden = if gate.device().is_cpu() {
            // `up` is this call's own fresh tensor, so it can take the result.
            up.inplace_op2(&gate, &GatedActivation(self.act))?;
            up
        } else {
            let gate = match self.act {
                Activation::Silu => candle_nn::ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
            };
            (gate * up)?
        };
        self.down_proj.forward(&hidden)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    /// Gemma's norm of the attention output before the residual add.
    pub(crate) post_attention_norm: Option<RmsNorm>,
    /// The norm in front of the MLP (llama's `post_attention_layernorm`,
    /// Gemma's `pre_feedforward_layernorm`).
    pub(crate) pre_mlp_norm: RmsNorm,
    pub(crate) post_feedforward_norm: Option<RmsNorm>,
    pub(crate) mlp: Mlp,
    pub(crate) layer_type: LayerType,
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
        prepared: &Prepared,
        rotary: &Rotaries,
    ) -> CResult<BlockActivations> {
        let (mask, rot, rope) = match self.layer_type {
            LayerType::FullAttention => (&prepared.mask, &rotary.global, &prepared.rope),
            LayerType::SlidingAttention => (
                prepared.sliding_mask.as_ref().unwrap_or(&prepared.mask),
                rotary.local.as_ref().unwrap_or(&rotary.global),
                prepared.local_rope.as_ref().unwrap_or(&prepared.rope),
            ),
        };
        let mut attn_out =
            self.self_attn
                .forward(&self.input_layernorm.forward(xs)?, mask, rot, rope)?;
        if let Some(norm) = &self.post_attention_norm {
            attn_out = norm.forward(&attn_out)?;
        }
        let resid_mid = (xs + &attn_out)?;
        let mut mlp_out = self.mlp.forward(&self.pre_mlp_norm.forward(&resid_mid)?)?;
        if let Some(norm) = &self.post_feedforward_norm {
            mlp_out = norm.forward(&mlp_out)?;
        }
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

impl Hidden {
    /// Starts the states of a batch from its embedding output. `final_norm`
    /// is the embedding output until the caller sets it.
    pub(crate) fn starting_from(embeddings: &Tensor) -> Self {
        Hidden {
            resid_post: vec![embeddings.clone()],
            resid_mid: Vec::new(),
            attn_out: Vec::new(),
            mlp_out: Vec::new(),
            final_norm: embeddings.clone(),
        }
    }

    /// Keeps one block's output and the taps in `taps`, and returns the
    /// output for the next block.
    pub(crate) fn push(&mut self, acts: BlockActivations, taps: &[Tap]) -> Tensor {
        if taps.contains(&Tap::ResidMid) {
            self.resid_mid.push(acts.resid_mid);
        }
        if taps.contains(&Tap::AttnOut) {
            self.attn_out.push(acts.attn_out);
        }
        if taps.contains(&Tap::MlpOut) {
            self.mlp_out.push(acts.mlp_out);
        }
        self.resid_post.push(acts.resid_post.clone());
        acts.resid_post
    }
}

/// Batch-level inputs of the blocks, computed once per batch.
pub struct Prepared {
    /// Token embeddings `rows slots d_model` (scaled for Gemma).
    pub embeddings: Tensor,
    mask: AttentionMask,
    sliding_mask: Option<AttentionMask>,
    rope: (Tensor, Tensor),
    local_rope: Option<(Tensor, Tensor)>,
}

/// RoPE of full-attention blocks, and of sliding blocks when it differs.
#[derive(Debug, Clone)]
pub(crate) struct Rotaries {
    pub(crate) global: Rotary,
    pub(crate) local: Option<Rotary>,
}

/// A decoder with per-layer taps.
pub struct Decoder {
    pub(crate) config: DecoderConfig,
    pub(crate) embed_tokens: Embedding,
    pub(crate) layers: Vec<Block>,
    pub(crate) norm: RmsNorm,
    pub(crate) lm_head: Option<Linear>,
    pub(crate) rotary: Rotaries,
    pub(crate) device: Device,
}

impl Decoder {
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.rows()
    }

    /// Computes the batch-level inputs every block needs: the embeddings,
    /// the attention masks and the RoPE tables.
    pub fn prepare(&self, batch: &Batch) -> CResult<Prepared> {
        let ids = Tensor::from_vec(batch.ids.clone(), batch.shape(), &self.device)?;
        let mut embeddings = self.embed_tokens.forward(&ids)?;
        if self.config.scale_embeddings {
            // transformers multiplies in the embedding dtype (f32 here).
            let scale = (self.config.hidden_size as f64).sqrt() as f32;
            embeddings = (embeddings * f64::from(scale))?;
        }
        let has_sliding = self
            .config
            .layer_types
            .contains(&LayerType::SlidingAttention);
        let sliding_mask = match (has_sliding, self.config.sliding_window) {
            (true, Some(w)) => Some(self.attention_mask(batch, Some(w))?),
            _ => None,
        };
        Ok(Prepared {
            embeddings,
            mask: self.attention_mask(batch, None)?,
            sliding_mask,
            rope: self.rotary.global.tables(batch, &self.device)?,
            local_rope: match &self.rotary.local {
                Some(r) if has_sliding => Some(r.tables(batch, &self.device)?),
                _ => None,
            },
        })
    }

    /// Runs the blocks in `order` (block indices, repeats allowed; the plain
    /// forward is `0..n_layers`) and keeps the requested taps.
    pub fn forward(&self, batch: &Batch, order: &[usize], taps: &[Tap]) -> CResult<Hidden> {
        let prepared = self.prepare(batch)?;
        let mut xs = prepared.embeddings.clone();
        let mut hidden = Hidden::starting_from(&xs);
        for &i in order {
            let acts = self.layers[i].forward(&xs, &prepared, &self.rotary)?;
            xs = hidden.push(acts, taps);
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
                .forward(&xs, prepared, &self.rotary)?
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
            .forward(xs, prepared, &self.rotary)?
            .resid_post)
    }

    /// Next-token logits `batch pos vocab` from final-norm hidden states.
    pub fn logits(&self, final_norm: &Tensor) -> Result<Tensor, CaptureError> {
        let head = self.lm_head.as_ref().ok_or(CaptureError::NoLmHead)?;
        Ok(head.forward(final_norm)?)
    }

    /// The attention mask of `batch`. A query sees earlier valid keys of its
    /// own stimulus and itself, and with a `window` only the `window` most
    /// recent slots, itself included (transformers'
    /// `kv_idx > q_idx - window`). A packed batch gives the stimuli's slot
    /// ranges to [`PackedAttention`]; a padded one gets an additive
    /// `batch 1 pos pos` mask in which padding queries see only themselves,
    /// so that no row of the softmax is empty and padding never turns into
    /// NaN.
    fn attention_mask(&self, batch: &Batch, window: Option<usize>) -> CResult<AttentionMask> {
        if batch.padding.is_packed() {
            return Ok(AttentionMask::packed(batch, window));
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
                let first = window.map_or(0, |w| (q + 1).saturating_sub(w));
                for k in first..=q {
                    if valid[k] != 0 {
                        row[k] = 0.0;
                    }
                }
            }
        }
        Ok(AttentionMask::Additive(Tensor::from_vec(
            mask,
            (b, 1, t, t),
            &self.device,
        )?))
    }
}
