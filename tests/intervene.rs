//! Layer interventions on SmolLM2, checked against the plain forward run
//! with the permuted block order in this test.

mod common;

use std::io::Write;

use candle_core::{Device, D};
use repatlas::capture::batch::{Batch, Padding};
use repatlas::capture::decoder::{Decoder, Tap};
use repatlas::capture::tokenizer::ModelTokenizer;
use repatlas::capture::weights::{GgufWeights, WeightMode};
use repatlas::intervene::{self, Experiment, InterventionOptions, Variant, VariantSet};

const TEXTS: [&str; 3] = [
    "The capital of France is Paris.",
    "def add(a, b):\n    return a + b",
    "A small fox lived near the edge of a quiet forest.",
];

fn stimuli_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("stimuli.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (i, t) in TEXTS.iter().enumerate() {
        writeln!(
            f,
            "{}",
            serde_json::json!({"id": format!("t{i}"), "category": "test", "text": t})
        )
        .unwrap();
    }
    path
}

fn options(dir: &std::path::Path, variants: &[&str]) -> InterventionOptions {
    InterventionOptions {
        model: repatlas::capture::source::ModelSpec::Gguf(common::require_model(common::SMOLLM2)),
        offline: true,
        model_name: Some("smollm2".into()),
        stimuli: stimuli_file(dir),
        limit: None,
        weight_mode: WeightMode::Dequantize,
        variants: variants
            .iter()
            .map(|v| (v.to_string(), v.parse::<VariantSet>().unwrap()))
            .collect(),
        seeds: 2,
        threshold: 0.9,
        scan_stride: 1,
        max_batch_tokens: 4096,
        max_tokens: 256,
        padding: None,
        progress: false,
        device: Default::default(),
        journal: None,
    }
}

/// KL, top-1 agreement and mean NLL of `order` against the plain order,
/// computed one stimulus at a time through the plain forward.
fn independent_measures(order: &[usize]) -> (f64, f64, f64) {
    let path = common::require_model(common::SMOLLM2);
    let mut weights = GgufWeights::open(&path, WeightMode::Dequantize, &Device::Cpu).unwrap();
    let tokenizer = ModelTokenizer::from_gguf(weights.content()).unwrap();
    let decoder = Decoder::from_gguf(&mut weights, true).unwrap();
    let plain: Vec<usize> = (0..decoder.n_layers()).collect();
    let (mut kl, mut agree, mut count) = (0f64, 0usize, 0usize);
    let (mut nll_plain, mut nll_variant, mut targets) = (0f64, 0f64, 0usize);
    for text in TEXTS {
        let ids = tokenizer.encode(text).unwrap();
        let batch = Batch::new(&[(0, &ids[..])], 0, Padding::Right, |_| false);
        let log_probs = |o: &[usize]| -> Vec<Vec<f64>> {
            let hidden = decoder.forward(&batch, o, &[Tap::ResidPost]).unwrap();
            let logits = decoder.logits(&hidden.final_norm).unwrap();
            let lp = candle_nn::ops::log_softmax(
                &logits.to_dtype(candle_core::DType::F64).unwrap(),
                D::Minus1,
            )
            .unwrap();
            lp.squeeze(0).unwrap().to_vec2().unwrap()
        };
        let p = log_probs(&plain);
        let q = log_probs(order);
        for t in 0..ids.len() {
            kl += p[t]
                .iter()
                .zip(&q[t])
                .map(|(a, b)| a.exp() * (a - b))
                .sum::<f64>();
            let arg = |v: &[f64]| {
                v.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            };
            agree += usize::from(arg(&p[t]) == arg(&q[t]));
            count += 1;
            if t + 1 < ids.len() {
                nll_plain -= p[t][ids[t + 1] as usize];
                nll_variant -= q[t][ids[t + 1] as usize];
                targets += 1;
            }
        }
    }
    let n = targets as f64;
    (
        kl / count as f64,
        agree as f64 / count as f64,
        (nll_variant - nll_plain) / n,
    )
}

#[test]
fn identity_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::new(&options(dir.path(), &["skip:4"])).unwrap();
    for variant in [Variant::Identity, Variant::Swap { i: 4, j: 4 }] {
        let m = experiment.measure(&variant).unwrap();
        assert_eq!(m.kl, 0.0, "{variant:?}");
        assert_eq!(m.top1_agreement, 1.0, "{variant:?}");
        assert_eq!(m.delta_nll, 0.0, "{variant:?}");
        assert!(
            (m.linear_cka_final - 1.0).abs() < 1e-12,
            "{variant:?}: {}",
            m.linear_cka_final
        );
    }
}

#[test]
fn swap_matches_plain_forward_of_permuted_order() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::new(&options(dir.path(), &["swap:3,20"])).unwrap();
    let variant = Variant::Swap { i: 3, j: 20 };
    let m = experiment.measure(&variant).unwrap();
    let (kl, top1, delta_nll) = independent_measures(&variant.order(30));
    assert!(
        m.kl > 1e-3,
        "swapping blocks 3 and 20 must change the output, KL {}",
        m.kl
    );
    assert!(
        (m.kl - kl).abs() < 1e-4 * kl.max(1.0),
        "KL {} vs independent {kl}",
        m.kl
    );
    assert!(
        (m.top1_agreement - top1).abs() < 1e-12,
        "top-1 {} vs {top1}",
        m.top1_agreement
    );
    assert!(
        (m.delta_nll - delta_nll).abs() < 1e-4,
        "delta NLL {} vs {delta_nll}",
        m.delta_nll
    );
    assert!(m.linear_cka_final < 1.0);
}

#[test]
fn skip_and_shuffle_match_plain_forward() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::new(&options(dir.path(), &["skip:0"])).unwrap();
    for variant in [
        Variant::Skip { i: 0 },
        Variant::Shuffle {
            start: 10,
            end: 15,
            seed: 1,
        },
        Variant::Repeat { i: 29 },
    ] {
        let m = experiment.measure(&variant).unwrap();
        let (kl, top1, delta_nll) = independent_measures(&variant.order(30));
        assert!(
            (m.kl - kl).abs() < 1e-4 * kl.max(1.0),
            "{variant:?}: KL {} vs {kl}",
            m.kl
        );
        assert!(
            (m.top1_agreement - top1).abs() < 1e-12,
            "{variant:?}: top-1 {} vs {top1}",
            m.top1_agreement
        );
        assert!(
            (m.delta_nll - delta_nll).abs() < 1e-4,
            "{variant:?}: delta NLL {} vs {delta_nll}",
            m.delta_nll
        );
    }
}

#[test]
fn run_writes_rows_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), &["swap:adjacent", "shuffle:12-14"]);
    opts.limit = Some(2);
    let report = intervene::run(&opts).unwrap();
    // Seeds 0 and 1 draw the same order of blocks 12 to 14, and a repeated
    // order runs once.
    let order = |seed| {
        Variant::Shuffle {
            start: 12,
            end: 14,
            seed,
        }
        .order(30)
    };
    assert_eq!(order(0), order(1));
    assert_eq!(
        report.rows.len(),
        (29 + 1) * 4,
        "29 adjacent swaps and 1 distinct shuffle, 4 measures each"
    );
    let out = dir.path().join("intervene.parquet");
    intervene::write_parquet(&report.rows, &out).unwrap();
    let file = std::fs::File::open(&out).unwrap();
    use polars::prelude::SerReader;
    let df = polars::prelude::ParquetReader::new(file).finish().unwrap();
    assert_eq!(df.height(), report.rows.len());
    assert!(df.column("kind").is_ok());
    assert!(df.column("seed").is_ok());
}

#[test]
fn bad_variants_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = intervene::run(&options(dir.path(), &["skip:30"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("block 30"), "{err}");
    assert!(err.contains("0..=29"), "{err}");
    let err = "shuffle:9-3".parse::<VariantSet>().unwrap_err().to_string();
    assert!(err.contains("empty range"), "{err}");
    let err = "swap:3,3".parse::<VariantSet>().unwrap_err().to_string();
    assert!(err.contains("two different blocks"), "{err}");
}

#[test]
fn encoder_model_is_rejected() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encoder.gguf");
    let tensor = QTensor::quantize(
        &candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = gguf_file::Value::String("bert".into());
    let mut file = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut file,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &tensor)],
    )
    .unwrap();
    drop(file);
    let mut opts = options(dir.path(), &["skip:0"]);
    opts.model = repatlas::capture::source::ModelSpec::Gguf(path);
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("encoder"), "{err}");
    assert!(err.contains("bert"), "{err}");

    // A real encoder folder: all-MiniLM-L6-v2.
    let minilm = common::models_dir().join(common::MINILM);
    assert!(
        minilm.is_dir(),
        "{} is missing: run scripts/fetch-models.sh",
        minilm.display()
    );
    opts.model = repatlas::capture::source::ModelSpec::HfFolder(minilm);
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("encoder"), "{err}");
    assert!(err.contains("bert"), "{err}");
}

#[test]
fn journal_resumes_and_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), &["skip:3", "skip:20"]);
    opts.limit = Some(2);
    let journal = intervene::journal_path(&dir.path().join("out.parquet"));
    assert!(journal.ends_with("out.parquet.partial.jsonl"));
    opts.journal = Some(journal.clone());
    let first = intervene::run(&opts).unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "a header and two variants:\n{text}"
    );

    // Mark one entry so that a reuse is visible, and tear a last line as a
    // killed run would leave it.
    let marked: Vec<String> = text
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["variant"].as_str().is_some_and(|k| k.contains("\"i\":3")) {
                v["measures"]["kl"] = serde_json::json!(123.0);
            }
            v.to_string()
        })
        .collect();
    std::fs::write(
        &journal,
        format!("{}\n{{\"variant\": \"{{\\\"Sk", marked.join("\n")),
    )
    .unwrap();
    let second = intervene::run(&opts).unwrap();
    let kl_of = |rows: &[intervene::InterventionRow], i: u32| {
        rows.iter()
            .find(|r| r.i == Some(i) && r.measure == "kl")
            .unwrap()
            .value
    };
    assert_eq!(
        kl_of(&second.rows, 3),
        123.0,
        "skip:3 came from the journal"
    );
    assert_eq!(kl_of(&second.rows, 20), kl_of(&first.rows, 20));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 3, "the torn line is dropped:\n{text}");

    opts.max_tokens = 8;
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("out.parquet.partial.jsonl"), "{err}");
    assert!(err.contains("--max-tokens was 256, now 8"), "{err}");
    assert!(err.contains("delete it"), "{err}");

    intervene::remove_journal(&dir.path().join("out.parquet")).unwrap();
    assert!(!journal.exists());
}

#[test]
fn rejected_variants_leave_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), &["skip:99"]);
    opts.limit = Some(1);
    let journal = intervene::journal_path(&dir.path().join("out.parquet"));
    opts.journal = Some(journal.clone());
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("block 99"), "{err}");
    assert!(
        !journal.exists(),
        "a rejected run would block the corrected command"
    );
    opts.variants = vec![("skip:9".into(), "skip:9".parse().unwrap())];
    intervene::run(&opts).unwrap();
}

#[test]
fn journal_without_layout_resumes_padded() {
    // Journals written before packing record no layout. Those versions
    // padded on the right, and a rerun without --padding resumes that way.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), &["skip:3"]);
    opts.limit = Some(2);
    let journal = intervene::journal_path(&dir.path().join("out.parquet"));
    opts.journal = Some(journal.clone());
    opts.padding = Some(Padding::Right);
    let padded = intervene::run(&opts).unwrap();

    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(header["padding"], "right");
    let recorded = header.clone();
    for key in ["padding", "config_sha256", "tokens_sha256"] {
        header.as_object_mut().unwrap().remove(key);
    }
    let mut entry: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    entry["measures"]["kl"] = serde_json::json!(77.0);
    lines[0] = header.to_string();
    lines[1] = entry.to_string();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();

    opts.padding = None;
    let resumed = intervene::run(&opts).unwrap();
    let kl = |rows: &[intervene::InterventionRow]| {
        rows.iter().find(|r| r.measure == "kl").unwrap().value
    };
    assert_eq!(kl(&resumed.rows), 77.0, "skip:3 came from the journal");

    // Asking for packed batches names the recorded layout.
    opts.padding = Some(Padding::None);
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("--padding was right, now none"), "{err}");

    // A journal that recorded other config or token hashes is rejected.
    opts.padding = None;
    for (key, named) in [
        ("config_sha256", "model config"),
        ("tokens_sha256", "token ids"),
    ] {
        let mut changed = recorded.clone();
        changed[key] = serde_json::json!("0".repeat(64));
        std::fs::write(&journal, format!("{changed}\n")).unwrap();
        let err = intervene::run(&opts).unwrap_err().to_string();
        assert!(err.contains(named), "{key}: {err}");
    }

    // Packed and padded measures agree.
    opts.journal = None;
    let packed = intervene::run(&opts).unwrap();
    for (a, b) in packed.rows.iter().zip(&padded.rows) {
        assert_eq!(a.measure, b.measure);
        assert!(
            (a.value - b.value).abs() <= 1e-4 * (1.0 + b.value.abs()),
            "{}: packed {} against padded {}",
            a.measure,
            a.value,
            b.value
        );
    }
}

#[test]
fn single_token_stimuli_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.jsonl");
    std::fs::write(
        &path,
        "{\"id\": \"a\", \"category\": \"c\", \"text\": \"a\"}\n",
    )
    .unwrap();
    let mut opts = options(dir.path(), &["skip:3"]);
    opts.stimuli = path;
    let err = intervene::run(&opts).unwrap_err().to_string();
    assert!(err.contains("single token"), "{err}");
}
