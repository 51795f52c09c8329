//! Hidden states of the real GGUF decoders against transformers.
//!
//! The reference files were written by transformers (fp32, weights
//! dequantized from the same GGUF files, sdpa attention, batch 1). With
//! weights dequantized here too, every layer must match to a relative L2
//! error of 1e-4; measured values are about 1e-6.

mod common;

use candle_core::Device;
use repatlas::capture::batch::{Batch, Padding};
use repatlas::capture::decoder::{Decoder, Hidden, Tap};
use repatlas::capture::rundir::MappedSafetensors;
use repatlas::capture::tokenizer::ModelTokenizer;
use repatlas::capture::weights::{GgufWeights, WeightMode};

const PARITY_TOL: f64 = 1e-4;
/// Padding and batching change a token's vector only by f32 rounding.
const BATCH_TOL: f64 = 1e-5;

struct Reference {
    ids: Vec<u32>,
    hidden: Vec<Vec<f32>>,
    last_block_raw: Vec<f32>,
    mean_pooled: Vec<f32>,
}

fn load_reference(model: &str, prompt: usize, n_blocks: usize) -> Reference {
    let path = common::fixture(&format!(
        "reference/hidden_states/{model}/prompt{prompt}.safetensors"
    ));
    let file = MappedSafetensors::open(&path).unwrap();
    let ids = file
        .i64_data("input_ids")
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    let hidden = (0..=n_blocks)
        .map(|i| file.f32_data(&format!("hidden_states.{i}")).unwrap().1)
        .collect();
    Reference {
        ids,
        hidden,
        last_block_raw: file.f32_data("last_block_raw").unwrap().1,
        mean_pooled: file.f32_data("mean_pooled").unwrap().1,
    }
}

fn rel_l2(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let mut num = 0f64;
    let mut den = 0f64;
    for (a, e) in actual.iter().zip(expected) {
        num += (f64::from(*a) - f64::from(*e)).powi(2);
        den += f64::from(*e).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

fn load(model_file: &str) -> (Decoder, ModelTokenizer) {
    let path = common::require_model(model_file);
    load_path(&path)
}

fn load_path(path: &std::path::Path) -> (Decoder, ModelTokenizer) {
    let mut weights = GgufWeights::open(path, WeightMode::Dequantize, &Device::Cpu).unwrap();
    let tokenizer = ModelTokenizer::from_gguf(weights.content()).unwrap();
    let decoder = Decoder::from_gguf(&mut weights, false).unwrap();
    (decoder, tokenizer)
}

fn forward(decoder: &Decoder, seqs: &[&[u32]], padding: Padding) -> (Batch, Hidden) {
    let indexed: Vec<(usize, &[u32])> = seqs.iter().copied().enumerate().collect();
    let batch = Batch::new(&indexed, 0, padding, |_| false);
    let order: Vec<usize> = (0..decoder.n_layers()).collect();
    let hidden = decoder.forward(&batch, &order, &[Tap::ResidPost]).unwrap();
    (batch, hidden)
}

/// Token vectors of stimulus `r` from a `rows slots d_model` tensor.
fn row_tokens(t: &candle_core::Tensor, batch: &Batch, r: usize) -> Vec<f32> {
    let d = t.dims3().unwrap().2;
    let all: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let range = batch.slots(r);
    all[range.start * d..range.end * d].to_vec()
}

fn check_single_prompt_parity(model_dir: &str, model_file: &str) {
    check_parity_with(model_dir, load(model_file));
}

fn check_parity_with(model_dir: &str, (decoder, tokenizer): (Decoder, ModelTokenizer)) {
    let n = decoder.n_layers();
    for (prompt, padding) in (0..4).flat_map(|p| [(p, Padding::Right), (p, Padding::None)]) {
        let reference = load_reference(model_dir, prompt, n);
        let text_ids = reference.ids.clone();
        let (batch, hidden) = forward(&decoder, &[&text_ids], padding);
        let mut worst = 0f64;
        for i in 0..n {
            let err = rel_l2(
                &row_tokens(&hidden.resid_post[i], &batch, 0),
                &reference.hidden[i],
            );
            assert!(
                err < PARITY_TOL,
                "{model_dir} prompt {prompt} {padding:?} hidden.{i}: rel L2 {err:.2e}"
            );
            worst = worst.max(err);
        }
        let raw = rel_l2(
            &row_tokens(&hidden.resid_post[n], &batch, 0),
            &reference.last_block_raw,
        );
        assert!(
            raw < PARITY_TOL,
            "{model_dir} prompt {prompt} {padding:?} last block raw: rel L2 {raw:.2e}"
        );
        let normed = rel_l2(
            &row_tokens(&hidden.final_norm, &batch, 0),
            &reference.hidden[n],
        );
        assert!(
            normed < PARITY_TOL,
            "{model_dir} prompt {prompt} {padding:?} final norm: rel L2 {normed:.2e}"
        );
        eprintln!("{model_dir} prompt {prompt} {padding:?}: worst layer rel L2 {worst:.2e}, raw {raw:.2e}, final norm {normed:.2e}");
    }
    // The GGUF tokenizer gives the ids transformers used for these prompts.
    let texts = prompts(model_dir);
    for (prompt, text) in texts.iter().enumerate() {
        let reference = load_reference(model_dir, prompt, n);
        assert_eq!(
            tokenizer.encode(text).unwrap(),
            reference.ids,
            "{model_dir} prompt {prompt} ids"
        );
    }
}

fn prompts(model_dir: &str) -> Vec<String> {
    let path = common::fixture(&format!("reference/hidden_states/{model_dir}/meta.json"));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    meta["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

fn check_batch_invariance(model_dir: &str, model_file: &str) {
    let (decoder, _) = load(model_file);
    let n = decoder.n_layers();
    let refs: Vec<Reference> = (0..4).map(|p| load_reference(model_dir, p, n)).collect();
    let seqs: Vec<&[u32]> = refs.iter().map(|r| r.ids.as_slice()).collect();
    let singles: Vec<(Batch, Hidden)> = seqs
        .iter()
        .map(|s| forward(&decoder, &[s], Padding::Right))
        .collect();
    for padding in [Padding::Right, Padding::Left, Padding::None] {
        let (batch, hidden) = forward(&decoder, &seqs, padding);
        for (r, (single_batch, single)) in singles.iter().enumerate() {
            for i in [0, 1, n / 2, n] {
                let batched = row_tokens(&hidden.resid_post[i], &batch, r);
                let alone = row_tokens(&single.resid_post[i], single_batch, 0);
                let err = rel_l2(&batched, &alone);
                assert!(
                    err < BATCH_TOL,
                    "{model_dir} {padding:?} row {r} hidden.{i}: rel L2 {err:.2e} vs single"
                );
            }
            // Masked mean pooling of the batched run equals the reference mean.
            let pooled = repatlas::capture::batch::pool(
                &hidden.resid_post[n / 2],
                &batch,
                repatlas::capture::Pooling::Mean,
            )
            .unwrap();
            let repatlas::capture::batch::Pooled::PerStimulus(v) = pooled else {
                panic!("mean pooling gives one vector per row")
            };
            let d = decoder.config().hidden_size;
            let expected = &refs[r].mean_pooled[(n / 2) * d..(n / 2 + 1) * d];
            let err = rel_l2(&v[r * d..(r + 1) * d], expected);
            assert!(
                err < PARITY_TOL,
                "{model_dir} {padding:?} row {r} mean pooled: rel L2 {err:.2e}"
            );
        }
    }
}

#[test]
fn smollm2_matches_transformers_every_layer() {
    check_single_prompt_parity("smollm2-135m-instruct", common::SMOLLM2);
}

#[test]
fn qwen_matches_transformers_every_layer() {
    check_single_prompt_parity("qwen2.5-coder-0.5b-instruct", common::QWEN);
}

#[test]
fn smollm2_batches_equal_single_runs() {
    check_batch_invariance("smollm2-135m-instruct", common::SMOLLM2);
}

#[test]
fn qwen_batches_equal_single_runs() {
    check_batch_invariance("qwen2.5-coder-0.5b-instruct", common::QWEN);
}

/// Gemma-3 is optional (Gemma Terms of Use): fetched only with
/// `scripts/fetch-models.sh gemma3`.
#[test]
fn gemma3_matches_transformers_every_layer() {
    let Some(path) = common::optional_model(common::GEMMA3) else {
        return;
    };
    check_parity_with("gemma-3-270m", load_path(&path));
}

/// Cosine similarity of two token-vector blocks, flattened.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Quantized matmuls (activations quantized to 8 bits inside candle's
/// kernels) stay within cosine 0.999 of the dequantized forward at every
/// layer. Returns the worst cosine seen.
fn check_quantized_close(path: &std::path::Path, label: &str) -> f64 {
    let open = |mode| {
        let mut weights = GgufWeights::open(path, mode, &Device::Cpu).unwrap();
        let tokenizer = ModelTokenizer::from_gguf(weights.content()).unwrap();
        (Decoder::from_gguf(&mut weights, false).unwrap(), tokenizer)
    };
    let (exact, tokenizer) = open(WeightMode::Dequantize);
    let (quantized, _) = open(WeightMode::Quantized);
    let n = exact.n_layers();
    let mut worst = 1f64;
    for text in [
        "The capital of France is",
        "def add(a, b):\n    return a + b",
        "Once upon a time, a small fox lived near the edge of a quiet forest.",
    ] {
        let ids = tokenizer.encode(text).unwrap();
        let (batch, a) = forward(&exact, &[&ids], Padding::Right);
        let (_, b) = forward(&quantized, &[&ids], Padding::Right);
        for i in 0..=n {
            let c = cosine(
                &row_tokens(&a.resid_post[i], &batch, 0),
                &row_tokens(&b.resid_post[i], &batch, 0),
            );
            assert!(
                c > 0.999,
                "{label} hidden.{i}: cosine {c:.6} between quantized and dequantized"
            );
            worst = worst.min(c);
        }
    }
    eprintln!("{label}: worst cosine quantized vs dequantized {worst:.6}");
    worst
}

#[test]
fn smollm2_quantized_close_to_dequantized() {
    check_quantized_close(&common::require_model(common::SMOLLM2), "smollm2");
}

#[test]
fn qwen_quantized_close_to_dequantized() {
    check_quantized_close(&common::require_model(common::QWEN), "qwen");
}

#[test]
fn gemma3_quantized_close_to_dequantized() {
    if let Some(path) = common::optional_model(common::GEMMA3) {
        check_quantized_close(&path, "gemma3");
    }
}
