//! Tiny random decoders (llama, mistral, qwen2, gemma3) loaded from Hugging
//! Face folders, against transformers' hidden states for every case:
//! one prompt, right-padded and left-padded batches, and a prompt longer than
//! the sliding window of 8. Each case also runs packed (no padding), which
//! must match the same references.
//!
//! Tolerance: 1e-5 relative L2 per layer over valid positions. The reference
//! itself moves by up to 6e-5 absolute (on values up to ~30) between
//! transformers' sdpa and eager attention.

mod common;

use std::path::Path;

use candle_core::Tensor;
use repatlas::capture::batch::{Batch, Padding};
use repatlas::capture::decoder::{Decoder, Tap};
use repatlas::capture::rundir::MappedSafetensors;

const TOL: f64 = 1e-5;
const MODELS: [&str; 4] = ["llama", "mistral", "qwen2", "gemma3"];
const CASES: [(&str, Padding); 5] = [
    ("case1_single", Padding::Right),
    ("case2_right_pad", Padding::Right),
    ("case3_left_pad_default", Padding::Left),
    ("case3_left_pad_posids", Padding::Left),
    ("case4_long", Padding::Right),
];

fn rel_l2(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (a, e) in actual.iter().zip(expected) {
        num += (f64::from(*a) - f64::from(*e)).powi(2);
        den += f64::from(*e).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

struct Case {
    rows: Vec<Vec<u32>>,
    mask: Vec<Vec<i64>>,
    file: MappedSafetensors,
}

fn load_case(model: &str, case: &str) -> Case {
    let path = common::fixture(&format!("reference/tiny_hidden/{model}/{case}.safetensors"));
    let file = MappedSafetensors::open(&path).unwrap();
    let tensors = file.tensors().unwrap();
    let shape = tensors.tensor("input_ids").unwrap().shape().to_vec();
    let (b, t) = (shape[0], shape[1]);
    let ids = file.i64_data("input_ids").unwrap();
    let mask = file.i64_data("attention_mask").unwrap();
    let mut rows = Vec::new();
    let mut masks = Vec::new();
    for r in 0..b {
        let m = &mask[r * t..(r + 1) * t];
        rows.push(
            (0..t)
                .filter(|&s| m[s] == 1)
                .map(|s| ids[r * t + s] as u32)
                .collect(),
        );
        masks.push(m.to_vec());
    }
    drop(tensors);
    Case {
        rows,
        mask: masks,
        file,
    }
}

/// Valid positions of reference tensor `name` (`batch pos width`) for row r.
fn reference_rows(case: &Case, name: &str, r: usize) -> Vec<f32> {
    let (shape, data) = case.file.f32_data(name).unwrap();
    let (t, w) = (shape[1], shape[2]);
    let mut out = Vec::new();
    for s in 0..t {
        if case.mask[r][s] == 1 {
            out.extend_from_slice(&data[(r * t + s) * w..(r * t + s + 1) * w]);
        }
    }
    out
}

fn valid_rows(t: &Tensor, batch: &Batch, r: usize) -> Vec<f32> {
    let w = t.dims3().unwrap().2;
    let all: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let range = batch.slots(r);
    all[range.start * w..range.end * w].to_vec()
}

fn check_model(model: &str) {
    let dir = common::fixture(&format!("reference/tiny_models/{model}"));
    let (decoder, _) = Decoder::from_hf_folder(&dir, true).unwrap();
    let n = decoder.n_layers();
    let layouts = CASES
        .into_iter()
        .flat_map(|(case, padding)| [(case, padding), (case, Padding::None)]);
    for (case_name, padding) in layouts {
        let case = load_case(model, case_name);
        let seqs: Vec<(usize, &[u32])> = case
            .rows
            .iter()
            .enumerate()
            .map(|(r, s)| (r, s.as_slice()))
            .collect();
        let batch = Batch::new(&seqs, 0, padding, |_| false);
        let hidden = decoder
            .forward(&batch, &(0..n).collect::<Vec<_>>(), &[Tap::ResidPost])
            .unwrap();
        let logits = decoder.logits(&hidden.final_norm).unwrap();
        let mut worst = 0f64;
        for r in 0..case.rows.len() {
            for i in 0..n {
                let err = rel_l2(
                    &valid_rows(&hidden.resid_post[i], &batch, r),
                    &reference_rows(&case, &format!("hidden_states.{i}"), r),
                );
                assert!(
                    err < TOL,
                    "{model} {case_name} {padding:?} row {r} hidden.{i}: rel L2 {err:.2e}"
                );
                worst = worst.max(err);
            }
            let raw = rel_l2(
                &valid_rows(&hidden.resid_post[n], &batch, r),
                &reference_rows(&case, "last_block_raw", r),
            );
            assert!(
                raw < TOL,
                "{model} {case_name} {padding:?} row {r} last block raw: {raw:.2e}"
            );
            let normed = rel_l2(
                &valid_rows(&hidden.final_norm, &batch, r),
                &reference_rows(&case, &format!("hidden_states.{n}"), r),
            );
            assert!(
                normed < TOL,
                "{model} {case_name} {padding:?} row {r} final norm: {normed:.2e}"
            );
            let lg = rel_l2(
                &valid_rows(&logits, &batch, r),
                &reference_rows(&case, "logits", r),
            );
            assert!(
                lg < TOL,
                "{model} {case_name} {padding:?} row {r} logits: {lg:.2e}"
            );
            worst = worst.max(raw).max(normed).max(lg);
        }
        eprintln!("{model} {case_name} {padding:?}: worst rel L2 {worst:.2e}");
    }
}

#[test]
fn tiny_llama_matches_every_case() {
    check_model("llama");
}

#[test]
fn tiny_mistral_matches_every_case() {
    check_model("mistral");
}

#[test]
fn tiny_qwen2_matches_every_case() {
    check_model("qwen2");
}

#[test]
fn tiny_gemma3_matches_every_case() {
    check_model("gemma3");
}

/// The same prompt alone, right-padded, left-padded or packed in a batch of
/// mixed lengths gives the same vectors, for every family (including sliding
/// windows shorter than the prompt).
#[test]
fn tiny_batches_equal_single_runs() {
    for model in MODELS {
        let dir = common::fixture(&format!("reference/tiny_models/{model}"));
        let (decoder, _) = Decoder::from_hf_folder(&dir, false).unwrap();
        let n = decoder.n_layers();
        let long = load_case(model, "case4_long").rows.remove(0);
        let short: Vec<u32> = long[..5].to_vec();
        let mid: Vec<u32> = long[..20].to_vec();
        let order: Vec<usize> = (0..n).collect();
        let single = |seq: &[u32]| {
            let b = Batch::new(&[(0, seq)], 0, Padding::Right, |_| false);
            let h = decoder.forward(&b, &order, &[Tap::ResidPost]).unwrap();
            valid_rows(&h.resid_post[n], &b, 0)
        };
        let alone = [single(&long), single(&short), single(&mid)];
        for padding in [Padding::Left, Padding::Right, Padding::None] {
            let seqs = [
                (0, long.as_slice()),
                (1, short.as_slice()),
                (2, mid.as_slice()),
            ];
            let batch = Batch::new(&seqs, 0, padding, |_| false);
            let h = decoder.forward(&batch, &order, &[Tap::ResidPost]).unwrap();
            for (r, expected) in alone.iter().enumerate() {
                let err = rel_l2(&valid_rows(&h.resid_post[n], &batch, r), expected);
                assert!(
                    err < TOL,
                    "{model} {padding:?} row {r}: rel L2 {err:.2e} vs alone"
                );
            }
        }
    }
}

/// Copies the tiny Llama's weights into `dir` and returns its config.
fn tiny_llama_folder(dir: &Path) -> serde_json::Value {
    let src = common::fixture("reference/tiny_models/llama");
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap()
}

/// Writes `config` into `dir` and returns the message of the load error.
fn load_error(dir: &Path, config: &serde_json::Value, case: &str) -> String {
    std::fs::write(dir.join("config.json"), serde_json::to_vec(config).unwrap()).unwrap();
    Decoder::from_hf_folder(dir, false)
        .err()
        .unwrap_or_else(|| panic!("{case} loaded without an error"))
        .to_string()
}

#[test]
fn missing_config_key_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_llama_folder(dir.path());
    config.as_object_mut().unwrap().remove("intermediate_size");
    let err = load_error(dir.path(), &config, "a missing key");
    assert!(err.contains("intermediate_size"), "{err}");
    assert!(err.contains("config.json"), "{err}");

    config["intermediate_size"] = 128.into();
    config["model_type"] = "falcon".into();
    let err = load_error(dir.path(), &config, "an unknown architecture");
    assert!(err.contains("falcon"), "{err}");
    assert!(err.contains("llama"), "{err}");
}

#[test]
fn missing_or_misshapen_tensor_is_named() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixture("reference/tiny_models/llama");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let weights_error = |tensors: &HashMap<String, Tensor>, case: &str| {
        candle_core::safetensors::save(tensors, dir.path().join("model.safetensors")).unwrap();
        Decoder::from_hf_folder(dir.path(), false)
            .err()
            .unwrap_or_else(|| panic!("{case} loaded without an error"))
            .to_string()
    };

    let mut missing: HashMap<String, Tensor> = tensors.clone();
    missing.remove("model.layers.2.mlp.up_proj.weight");
    let err = weights_error(&missing, "a missing tensor");
    assert!(err.contains("model.layers.2.mlp.up_proj.weight"), "{err}");

    let mut wrong = tensors;
    let bad = Tensor::zeros((64, 63), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    wrong.insert("model.layers.1.self_attn.q_proj.weight".into(), bad);
    let err = weights_error(&wrong, "a misshapen tensor");
    assert!(
        err.contains("model.layers.1.self_attn.q_proj.weight"),
        "{err}"
    );
    assert!(err.contains("[64, 63]"), "{err}");
}

#[test]
fn rope_scaling_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_llama_folder(dir.path());
    config["rope_parameters"] =
        serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0});
    let err = load_error(dir.path(), &config, "scaled RoPE");
    assert!(err.contains("llama3"), "{err}");
    assert!(err.contains("RoPE scaling"), "{err}");

    config["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": "big"});
    let err = load_error(dir.path(), &config, "a string theta");
    assert!(err.contains("rope_theta"), "{err}");
}

#[test]
fn zero_sliding_window_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_llama_folder(dir.path());
    config["model_type"] = "mistral".into();
    config["sliding_window"] = 0.into();
    let err = load_error(dir.path(), &config, "a zero sliding window");
    assert!(err.contains("sliding_window is 0"), "{err}");
    assert!(err.contains("config.json"), "{err}");
}
