//! The BERT encoder forward against transformers' `BertModel`.
//!
//! References were written by transformers 5.25 in fp32 with sdpa attention:
//! a tiny random BERT (4 layers, d_model 64) in four padding cases, and
//! all-MiniLM-L6-v2 on three sentences alone and as a right-padded batch.
//! Only valid tokens (mask 1) are compared, because transformers' values at
//! padding slots are meaningless.
//!
//! Tolerance: 1e-5 relative L2 per row and layer, both for parity and for
//! batching invariance. transformers' own fp32 results move by up to 6e-5
//! absolute between its sdpa and eager attention (decoders, values up to
//! about 30), so a tighter bound would test rounding, not the forward.
//! Measured errors are about 1e-6.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use repatlas::capture::batch::{pool, Batch, Padding, Pooled, Pooling};
use repatlas::capture::bert::Bert;
use repatlas::capture::decoder::{Hidden, Tap};
use repatlas::capture::rundir::MappedSafetensors;
use repatlas::capture::CaptureError;

/// Relative L2 error allowed per row and layer (see the file header).
const TOL: f64 = 1e-5;

fn tiny_dir() -> PathBuf {
    common::fixture("reference/bert")
}

fn minilm_dir() -> PathBuf {
    let dir = common::models_dir().join(common::MINILM);
    assert!(
        dir.join("model.safetensors").is_file(),
        "model folder {} is missing or incomplete: run scripts/fetch-models.sh (or set REPATLAS_MODELS)",
        dir.display()
    );
    dir
}

fn tiny() -> &'static Bert {
    static MODEL: OnceLock<Bert> = OnceLock::new();
    MODEL.get_or_init(|| Bert::from_folder(&tiny_dir(), &Device::Cpu).unwrap())
}

fn minilm() -> &'static Bert {
    static MODEL: OnceLock<Bert> = OnceLock::new();
    MODEL.get_or_init(|| Bert::from_folder(&minilm_dir(), &Device::Cpu).unwrap())
}

/// One reference file: `batch pos` ids and mask, and per-layer hidden states.
struct Reference {
    rows: usize,
    width: usize,
    d_model: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
    /// `hidden_states.{0..n_layers}`, each flat `rows width d_model`.
    layers: Vec<Vec<f32>>,
    last_hidden_state: Vec<f32>,
    file: MappedSafetensors,
}

fn read_reference(path: &Path, n_layers: usize) -> Reference {
    let file = MappedSafetensors::open(path).unwrap();
    let (shape, _) = file.f32_data("hidden_states.0").unwrap();
    // Per-sentence MiniLM files drop the batch axis.
    let (rows, width, d_model) = match shape[..] {
        [t, d] => (1, t, d),
        [b, t, d] => (b, t, d),
        _ => panic!("{}: unexpected shape {shape:?}", path.display()),
    };
    let layers = (0..=n_layers)
        .map(|i| file.f32_data(&format!("hidden_states.{i}")).unwrap().1)
        .collect();
    Reference {
        rows,
        width,
        d_model,
        ids: file.i64_data("input_ids").unwrap(),
        mask: file.i64_data("attention_mask").unwrap(),
        layers,
        last_hidden_state: file.f32_data("last_hidden_state").unwrap().1,
        file,
    }
}

impl Reference {
    /// Valid token ids of each row.
    fn sequences(&self) -> Vec<Vec<u32>> {
        (0..self.rows)
            .map(|r| {
                (0..self.width)
                    .filter(|&s| self.mask[r * self.width + s] == 1)
                    .map(|s| self.ids[r * self.width + s] as u32)
                    .collect()
            })
            .collect()
    }

    /// Left when any row starts with padding.
    fn padding(&self) -> Padding {
        let left = (0..self.rows).any(|r| self.mask[r * self.width] == 0);
        if left {
            Padding::Left
        } else {
            Padding::Right
        }
    }

    /// Valid token vectors of row `r` in a flat `rows width d_model` buffer.
    fn row_tokens(&self, data: &[f32], r: usize) -> Vec<f32> {
        let d = self.d_model;
        let mut out = Vec::new();
        for s in 0..self.width {
            if self.mask[r * self.width + s] == 1 {
                let at = (r * self.width + s) * d;
                out.extend_from_slice(&data[at..at + d]);
            }
        }
        out
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

fn run(model: &Bert, seqs: &[Vec<u32>], padding: Padding, taps: &[Tap]) -> (Batch, Hidden) {
    let indexed: Vec<(usize, &[u32])> = seqs.iter().map(Vec::as_slice).enumerate().collect();
    let batch = Batch::new(&indexed, 0, padding, |_| false);
    let hidden = model.forward(&batch, taps).unwrap();
    (batch, hidden)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Token vectors of stimulus `r` of a `rows slots d_model` tensor.
fn batch_tokens(t: &Tensor, batch: &Batch, r: usize) -> Vec<f32> {
    let d = t.dims3().unwrap().2;
    let all = flat(t);
    let range = batch.slots(r);
    all[range.start * d..range.end * d].to_vec()
}

/// Runs the reference's valid ids with its own padding, checks that the
/// batch has the reference's layout, and returns the worst relative L2 over
/// rows for each hidden state, then for `final_norm` against
/// `last_hidden_state`, compared with `expected`.
fn parity(model: &Bert, inputs: &Reference, expected: &Reference) -> Vec<f64> {
    let (batch, hidden) = run(model, &inputs.sequences(), inputs.padding(), &[]);
    let mask: Vec<i64> = batch.mask.iter().map(|&m| i64::from(m)).collect();
    assert_eq!(
        mask, expected.mask,
        "batch layout differs from the reference"
    );
    worst_per_state(&hidden, expected, |ours, r| {
        expected.row_tokens(&flat(ours), r)
    })
}

/// Returns, for each hidden state and then for `final_norm` against
/// `last_hidden_state`, the worst relative L2 over the reference's rows
/// between `tokens(ours, row)` and the reference's valid tokens of that row.
fn worst_per_state(
    hidden: &Hidden,
    expected: &Reference,
    tokens: impl Fn(&Tensor, usize) -> Vec<f32>,
) -> Vec<f64> {
    assert_eq!(hidden.resid_post.len(), expected.layers.len());
    let mut states: Vec<(&Tensor, &[f32])> = hidden
        .resid_post
        .iter()
        .zip(&expected.layers)
        .map(|(h, e)| (h, e.as_slice()))
        .collect();
    states.push((&hidden.final_norm, &expected.last_hidden_state));
    states
        .iter()
        .map(|(ours, theirs)| {
            (0..expected.rows)
                .map(|r| rel_l2(&tokens(ours, r), &expected.row_tokens(theirs, r)))
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Runs the reference's valid ids packed without padding and returns, as
/// [`parity`] does, the worst relative L2 over stimuli for each hidden state
/// and then for `final_norm`.
fn packed_parity(model: &Bert, reference: &Reference) -> Vec<f64> {
    let (batch, hidden) = run(model, &reference.sequences(), Padding::None, &[]);
    assert_eq!(batch.shape(), (1, batch.n_tokens()));
    worst_per_state(&hidden, reference, |ours, r| batch_tokens(ours, &batch, r))
}

fn assert_parity(case: &str, errors: &[f64]) {
    let worst = errors.iter().copied().fold(0.0, f64::max);
    eprintln!("{case}: worst relative L2 {worst:.2e}, per layer {errors:?}");
    for (layer, &e) in errors.iter().enumerate() {
        assert!(
            e <= TOL,
            "{case}: hidden state {layer} has relative L2 {e:.3e} > {TOL:e} (index {} is final_norm)",
            errors.len() - 1
        );
    }
}

fn tiny_case(name: &str) -> Reference {
    let path = tiny_dir().join(format!("{name}.safetensors"));
    read_reference(&path, tiny().n_layers())
}

#[test]
fn tiny_single_matches_reference() {
    let case = tiny_case("case1_single");
    assert_parity("case1_single", &parity(tiny(), &case, &case));
}

#[test]
fn tiny_right_pad_matches_reference() {
    let case = tiny_case("case2_right_pad");
    assert_eq!(case.padding(), Padding::Right);
    assert_parity("case2_right_pad", &parity(tiny(), &case, &case));
}

#[test]
fn tiny_packed_matches_padded_references() {
    for name in ["case1_single", "case2_right_pad", "case3_left_pad_posids"] {
        let case = tiny_case(name);
        assert_parity(&format!("{name} packed"), &packed_parity(tiny(), &case));
    }
}

#[test]
fn tiny_left_pad_posids_matches_reference() {
    let case = tiny_case("case3_left_pad_posids");
    assert_eq!(case.padding(), Padding::Left);
    assert_parity("case3_left_pad_posids", &parity(tiny(), &case, &case));
}

/// Without explicit position ids transformers numbers the slots of a
/// left-padded row from 0, so its real tokens start at the pad count and
/// their absolute position embeddings shift. repatlas counts positions over
/// valid tokens only, so the same batch must match the reference that was
/// run with `position_ids = cumsum(mask) - 1`, and must differ from the
/// shifted default on the padded rows.
#[test]
fn tiny_left_pad_counts_valid_positions() {
    let default = tiny_case("case3_left_pad_default");
    let posids = tiny_case("case3_left_pad_posids");
    assert_eq!(default.ids, posids.ids);
    assert_eq!(default.mask, posids.mask);
    assert_parity("case3_left_pad_default", &parity(tiny(), &default, &posids));

    let (_, hidden) = run(tiny(), &default.sequences(), Padding::Left, &[]);
    let ours = flat(&hidden.resid_post[0]);
    let padded_rows: Vec<usize> = (0..default.rows)
        .filter(|&r| default.mask[r * default.width] == 0)
        .collect();
    assert!(!padded_rows.is_empty(), "the case has no left-padded row");
    for r in padded_rows {
        let shifted = rel_l2(
            &default.row_tokens(&ours, r),
            &default.row_tokens(&default.layers[0], r),
        );
        assert!(
            shifted > 0.1,
            "row {r}: embeddings match the shifted-position reference ({shifted:.3e})"
        );
    }
}

#[test]
fn tiny_final_norm_is_last_block() {
    let case = tiny_case("case1_single");
    let raw = case.file.f32_data("last_block_raw").unwrap().1;
    let (_, hidden) = run(tiny(), &case.sequences(), Padding::Right, &[]);
    assert_eq!(flat(&hidden.final_norm), flat(&hidden.resid_post[4]));
    assert!(rel_l2(&flat(&hidden.final_norm), &raw) <= TOL);
}

/// LayerNorm with the biased variance, in f64, as a check of the taps.
fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let d = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let inv = 1.0 / (var + 1e-12).sqrt();
        for ((&v, &w), &b) in row.iter().zip(weight).zip(bias) {
            out.push(((f64::from(v) - mean) * inv * f64::from(w) + f64::from(b)) as f32);
        }
    }
    out
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

#[test]
fn taps_recompose_each_block() {
    let case = tiny_case("case2_right_pad");
    let all = [Tap::ResidPost, Tap::ResidMid, Tap::AttnOut, Tap::MlpOut];
    let (_, plain) = run(tiny(), &case.sequences(), Padding::Right, &[]);
    let (_, tapped) = run(tiny(), &case.sequences(), Padding::Right, &all);
    let n = tiny().n_layers();
    assert!(plain.resid_mid.is_empty());
    assert!(plain.attn_out.is_empty());
    assert!(plain.mlp_out.is_empty());
    assert_eq!(tapped.resid_mid.len(), n);
    assert_eq!(tapped.attn_out.len(), n);
    assert_eq!(tapped.mlp_out.len(), n);

    let weights = MappedSafetensors::open(&tiny_dir().join("model.safetensors")).unwrap();
    let param = |name: String| weights.f32_data(&name).unwrap().1;
    for i in 0..n {
        assert_eq!(
            flat(&plain.resid_post[i + 1]),
            flat(&tapped.resid_post[i + 1])
        );
        let p = format!("encoder.layer.{i}");
        let mid = layer_norm(
            &add(&flat(&tapped.resid_post[i]), &flat(&tapped.attn_out[i])),
            &param(format!("{p}.attention.output.LayerNorm.weight")),
            &param(format!("{p}.attention.output.LayerNorm.bias")),
        );
        let e = rel_l2(&flat(&tapped.resid_mid[i]), &mid);
        assert!(
            e <= TOL,
            "block {i}: resid_mid is not LN(resid_pre + attn_out): {e:.3e}"
        );
        let post = layer_norm(
            &add(&flat(&tapped.resid_mid[i]), &flat(&tapped.mlp_out[i])),
            &param(format!("{p}.output.LayerNorm.weight")),
            &param(format!("{p}.output.LayerNorm.bias")),
        );
        let e = rel_l2(&flat(&tapped.resid_post[i + 1]), &post);
        assert!(
            e <= TOL,
            "block {i}: resid_post is not LN(resid_mid + mlp_out): {e:.3e}"
        );
    }
}

fn minilm_sentence(k: usize) -> Reference {
    let path = common::fixture(&format!("reference/minilm/sentence{k}.safetensors"));
    read_reference(&path, minilm().n_layers())
}

fn minilm_batch() -> Reference {
    let path = common::fixture("reference/minilm/batch_right_pad.safetensors");
    read_reference(&path, minilm().n_layers())
}

#[test]
fn minilm_sentences_match_reference() {
    assert_eq!(minilm().n_layers(), 6);
    for k in 0..3 {
        let sentence = minilm_sentence(k);
        assert_parity(
            &format!("minilm sentence{k}"),
            &parity(minilm(), &sentence, &sentence),
        );
    }
}

#[test]
fn minilm_padded_batch_matches_reference() {
    let batch = minilm_batch();
    assert_eq!(batch.padding(), Padding::Right);
    assert_parity("minilm batch_right_pad", &parity(minilm(), &batch, &batch));
}

#[test]
fn minilm_packed_batch_matches_reference() {
    let batch = minilm_batch();
    assert_parity("minilm batch packed", &packed_parity(minilm(), &batch));
}

fn mean_pooled(hidden: &Tensor, batch: &Batch) -> Vec<f32> {
    match pool(hidden, batch, Pooling::Mean).unwrap() {
        Pooled::PerStimulus(v) => v,
        Pooled::PerToken(_) => panic!("mean pooling returned token vectors"),
    }
}

#[test]
fn minilm_masked_mean_matches_reference() {
    let reference = minilm_batch();
    let expected = reference.file.f32_data("masked_mean_pooled").unwrap().1;
    let (batch, hidden) = run(minilm(), &reference.sequences(), Padding::Right, &[]);
    let pooled = mean_pooled(&hidden.final_norm, &batch);
    let d = reference.d_model;
    for r in 0..reference.rows {
        let e = rel_l2(&pooled[r * d..(r + 1) * d], &expected[r * d..(r + 1) * d]);
        eprintln!("minilm masked mean, row {r}: relative L2 {e:.2e}");
        assert!(e <= TOL, "row {r}: masked mean has relative L2 {e:.3e}");
    }

    // The mean over the padded length is the known fault this guards against.
    let unmasked = reference.file.f32_data("unmasked_mean_pooled").unwrap().1;
    assert!(rel_l2(&pooled[..d], &unmasked[..d]) > 0.01);
}

#[test]
fn minilm_sentence_mean_matches_reference() {
    for k in 0..3 {
        let reference = minilm_sentence(k);
        let expected = reference.file.f32_data("mean_pooled").unwrap().1;
        let (batch, hidden) = run(minilm(), &reference.sequences(), Padding::Right, &[]);
        let e = rel_l2(&mean_pooled(&hidden.final_norm, &batch), &expected);
        assert!(
            e <= TOL,
            "sentence{k}: mean pooling has relative L2 {e:.3e}"
        );
    }
}

/// Runs `target` alone and inside `batch` (at `row`) with each padding side
/// and packed, and returns the worst relative L2 of its valid tokens over all
/// layers.
fn batching_error(model: &Bert, target: &[u32], batch: &[Vec<u32>], row: usize) -> f64 {
    let (alone_batch, alone) = run(model, &[target.to_vec()], Padding::Right, &[]);
    assert_eq!(batch[row], target);
    let mut worst = 0f64;
    for padding in [Padding::Right, Padding::Left, Padding::None] {
        let (mixed_batch, mixed) = run(model, batch, padding, &[]);
        if !padding.is_packed() {
            assert!(
                mixed_batch.lengths[row] < mixed_batch.shape().1,
                "row {row} is not padded"
            );
        }
        for (a, m) in alone.resid_post.iter().zip(&mixed.resid_post) {
            let e = rel_l2(
                &batch_tokens(m, &mixed_batch, row),
                &batch_tokens(a, &alone_batch, 0),
            );
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn minilm_same_vectors_alone_or_padded() {
    let s: Vec<Vec<u32>> = (0..3)
        .map(|k| minilm_sentence(k).sequences().remove(0))
        .collect();
    let short = s[0].clone();
    // Mixed lengths: 9, 12 and a 5-token prefix of sentence 2.
    let mixed = vec![s[1].clone(), short.clone(), s[2][..5].to_vec()];
    let e = batching_error(minilm(), &short, &mixed, 1);
    eprintln!("minilm alone vs padded: worst relative L2 {e:.2e}");
    assert!(e <= TOL, "padding changes the vectors: relative L2 {e:.3e}");
}

#[test]
fn tiny_same_vectors_alone_or_padded() {
    let seqs = tiny_case("case2_right_pad").sequences();
    for row in 0..seqs.len() {
        if seqs[row].len() == seqs.iter().map(Vec::len).max().unwrap() {
            continue;
        }
        let e = batching_error(tiny(), &seqs[row].clone(), &seqs, row);
        eprintln!("tiny alone vs padded, row {row}: worst relative L2 {e:.2e}");
        assert!(e <= TOL, "row {row}: padding changes the vectors: {e:.3e}");
    }
}

#[derive(serde::Deserialize)]
struct MinilmMeta {
    sentences: Vec<MetaSentence>,
}

#[derive(serde::Deserialize)]
struct MetaSentence {
    text: String,
    input_ids: Vec<u32>,
}

#[test]
fn minilm_tokenizer_ids_and_states() {
    use repatlas::capture::tokenizer::ModelTokenizer;
    let tokenizer =
        ModelTokenizer::from_tokenizer_json(&minilm_dir().join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(common::fixture("reference/minilm/meta.json")).unwrap();
    let meta: MinilmMeta = serde_json::from_str(&text).unwrap();
    for (k, sentence) in meta.sentences.iter().enumerate() {
        let ids = tokenizer.encode(&sentence.text).unwrap();
        assert_eq!(ids, sentence.input_ids, "sentence{k}: token ids differ");
        let reference = minilm_sentence(k);
        let (_, hidden) = run(minilm(), &[ids], Padding::Right, &[]);
        let e = rel_l2(&flat(&hidden.final_norm), &reference.last_hidden_state);
        assert!(
            e <= TOL,
            "sentence{k}: last hidden state has relative L2 {e:.3e}"
        );
    }
}

// Loading variants and errors, on edited copies of the tiny model.

/// Copies the tiny model folder into a temporary directory.
fn tiny_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_dir().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn tiny_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny_dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(value.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

fn load_error(dir: &Path) -> CaptureError {
    match Bert::from_folder(dir, &Device::Cpu) {
        Ok(_) => panic!("{} loaded without error", dir.display()),
        Err(e) => e,
    }
}

/// Runs tiny case 2 and returns its last hidden state, to compare loading variants.
fn tiny_output(model: &Bert) -> Vec<f32> {
    let (_, hidden) = run(
        model,
        &tiny_case("case2_right_pad").sequences(),
        Padding::Right,
        &[],
    );
    flat(&hidden.final_norm)
}

#[test]
fn missing_config_key_names_file_and_key() {
    let dir = tiny_copy();
    edit_config(dir.path(), |c| {
        c.remove("num_attention_heads");
    });
    let err = load_error(dir.path());
    let message = err.to_string();
    let CaptureError::MissingConfigKey { file, key } = err else {
        panic!("expected MissingConfigKey, got {message}");
    };
    assert_eq!(key, "num_attention_heads");
    assert!(file.ends_with("config.json"), "{file}");
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("num_attention_heads"), "{message}");
}

#[test]
fn unsupported_config_values_are_rejected() {
    let cases = [
        ("position_embedding_type", serde_json::json!("relative_key")),
        ("hidden_act", serde_json::json!("swiglu")),
        ("model_type", serde_json::json!("roberta")),
        ("num_attention_heads", serde_json::json!(5)),
    ];
    for (key, value) in cases {
        let dir = tiny_copy();
        edit_config(dir.path(), |c| {
            c.insert(key.into(), value.clone());
        });
        let err = load_error(dir.path());
        let message = err.to_string();
        assert!(
            matches!(err, CaptureError::InvalidConfig { .. }),
            "{key}: expected InvalidConfig, got {message}"
        );
        assert!(message.contains("config.json"), "{message}");
        assert!(message.contains(key), "{message}");
    }
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let dir = tiny_copy();
    let mut tensors = tiny_tensors();
    let name = "encoder.layer.2.attention.self.key.weight";
    tensors.remove(name).unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();

    let err = load_error(dir.path());
    let message = err.to_string();
    let CaptureError::MissingTensor {
        path,
        name: missing,
    } = err
    else {
        panic!("expected MissingTensor, got {message}");
    };
    assert_eq!(missing, name);
    assert_eq!(path, dir.path().join("model.safetensors"));
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains(name), "{message}");
}

#[test]
fn wrong_tensor_shape_names_file_and_tensor() {
    let dir = tiny_copy();
    let mut tensors = tiny_tensors();
    let name = "encoder.layer.1.intermediate.dense.weight";
    let transposed = tensors[name].t().unwrap().contiguous().unwrap();
    tensors.insert(name.into(), transposed);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();

    let err = load_error(dir.path());
    let message = err.to_string();
    let CaptureError::TensorShape {
        path,
        name: wrong,
        expected,
        actual,
    } = err
    else {
        panic!("expected TensorShape, got {message}");
    };
    assert_eq!(wrong, name);
    assert_eq!(path, dir.path().join("model.safetensors"));
    assert_eq!(expected, vec![128, 64]);
    assert_eq!(actual, vec![64, 128]);
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains(name), "{message}");
}

#[test]
fn missing_weights_file_is_reported() {
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("model.safetensors.index.json"),
        "{message}"
    );
}

#[test]
fn bert_prefixed_names_load_the_same() {
    let dir = tiny_copy();
    let prefixed: HashMap<String, Tensor> = tiny_tensors()
        .into_iter()
        .map(|(name, t)| (format!("bert.{name}"), t))
        .collect();
    candle_core::safetensors::save(&prefixed, dir.path().join("model.safetensors")).unwrap();
    let model = Bert::from_folder(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(tiny_output(&model), tiny_output(tiny()));
}

#[test]
fn sharded_index_loads_the_same() {
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    // Embeddings and the first two blocks in one shard, the rest in another.
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (name, t) in tiny_tensors() {
        let late = name.starts_with("encoder.layer.2") || name.starts_with("encoder.layer.3");
        let file = format!("model-0000{}-of-00002.safetensors", usize::from(late) + 1);
        weight_map.insert(name.clone(), file.into());
        shards[usize::from(late)].insert(name, t);
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = dir
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", i + 1));
        candle_core::safetensors::save(shard, path).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let model = Bert::from_folder(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(tiny_output(&model), tiny_output(tiny()));

    // A tensor missing from a shard is reported against that shard.
    let mut second = shards[1].clone();
    second.remove("encoder.layer.3.output.dense.bias").unwrap();
    let path = dir.path().join("model-00002-of-00002.safetensors");
    candle_core::safetensors::save(&second, &path).unwrap();
    match load_error(dir.path()) {
        CaptureError::MissingTensor { path: p, name } => {
            assert_eq!(p, path);
            assert_eq!(name, "encoder.layer.3.output.dense.bias");
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn half_precision_weights_are_widened() {
    let dir = tiny_copy();
    let half: HashMap<String, Tensor> = tiny_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.to_dtype(DType::F16).unwrap()))
        .collect();
    candle_core::safetensors::save(&half, dir.path().join("model.safetensors")).unwrap();
    let model = Bert::from_folder(dir.path(), &Device::Cpu).unwrap();
    // f16 keeps 11 significant bits, so the states move by about 1e-3.
    let e = rel_l2(&tiny_output(&model), &tiny_output(tiny()));
    assert!(e > 0.0, "the f16 copy gave the f32 output exactly");
    assert!(e < 1e-2, "f16 weights moved the output by {e:.3e}");
}

#[test]
fn inputs_outside_the_tables_are_rejected() {
    let config = tiny().config();
    let too_long = vec![5u32; config.max_position_embeddings + 1];
    let batch = Batch::new(&[(0, &too_long[..])], 0, Padding::Right, |_| false);
    let message = tiny().forward(&batch, &[]).err().unwrap().to_string();
    assert!(message.contains("max_position_embeddings"), "{message}");

    let bad_id = [2u32, config.vocab_size as u32, 3];
    let batch = Batch::new(&[(0, &bad_id[..])], 0, Padding::Right, |_| false);
    let message = tiny().forward(&batch, &[]).err().unwrap().to_string();
    assert!(message.contains("vocabulary"), "{message}");
}
