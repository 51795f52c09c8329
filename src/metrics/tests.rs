//! Unit tests of the internal forms against the reference fixtures: both
//! linear-kernel forms, the RDM vectors and the neighbour lists.

use std::path::PathBuf;

use ndarray::Array2;

use super::cka::{batch_bounds, CentredKernel, KernelForm};
use super::knn::NeighbourLayer;
use super::prepared::{LinearKernelForm, Plan};
use super::rsa::rdm_vector;
use super::spec::RdmMethod;
use crate::npy::{read_npy, read_npy_values};

const CASES: &[&str] = &[
    "random_60x20_vs_60x30",
    "n_lt_d_25x200_vs_25x150",
    "orthogonal_50x20",
    "massive_activation_60x20",
];

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(path)
}

fn load(case: &str, file: &str) -> Array2<f64> {
    read_npy(&fixture(&format!("{case}/{file}"))).expect("fixture")
}

fn expected(case: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(fixture("metrics_goldens.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"][case]["expected"][key].as_f64().unwrap()
}

#[test]
fn both_linear_kernel_forms_match_reference() {
    for case in CASES {
        let (x, y) = (load(case, "X.npy"), load(case, "Y.npy"));
        for form in [KernelForm::Gram, KernelForm::Features] {
            let kx = CentredKernel::linear(x.view(), form);
            let ky = CentredKernel::linear(y.view(), form);
            let biased = kx.cka(&ky);
            let debiased =
                kx.hsic_unbiased(&ky) / (kx.self_hsic_unbiased() * ky.self_hsic_unbiased()).sqrt();
            let want_b = expected(case, "linear_cka");
            let want_d = expected(case, "linear_cka_debiased");
            assert!(
                (biased - want_b).abs() < 1e-9,
                "{case} {form:?}: {biased} vs {want_b}"
            );
            assert!(
                (debiased - want_d).abs() < 1e-9,
                "{case} {form:?}: {debiased} vs {want_d}"
            );
        }
    }
}

#[test]
fn mixed_kernel_forms_agree() {
    let case = CASES[0];
    let (x, y) = (load(case, "X.npy"), load(case, "Y.npy"));
    let gram = CentredKernel::linear(x.view(), KernelForm::Gram);
    let features = CentredKernel::linear(y.view(), KernelForm::Features);
    let want = expected(case, "linear_cka");
    assert!((gram.cka(&features) - want).abs() < 1e-9);
    assert!((features.cka(&gram) - want).abs() < 1e-9);
}

#[test]
fn rdm_vectors_match_rsatoolbox() {
    for case in CASES {
        for (method, tag) in [
            (RdmMethod::Correlation, "correlation"),
            (RdmMethod::Euclidean, "euclidean"),
        ] {
            for side in ["X", "Y"] {
                let data = load(case, &format!("{side}.npy"));
                let (_, want) =
                    read_npy_values(&fixture(&format!("{case}/rdm_{tag}_{side}.npy"))).unwrap();
                let got = rdm_vector(data.view(), method, side, "rsa").unwrap();
                assert_eq!(got.len(), want.len());
                let worst = got
                    .iter()
                    .zip(want.iter())
                    .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-10,
                    "{case} {tag} {side}: relative error {worst:e}"
                );
            }
        }
    }
}

#[test]
fn neighbour_lists_match_reference() {
    for case in CASES {
        for side in ["X", "Y"] {
            let data = load(case, &format!("{side}.npy"));
            let reference = load(case, &format!("knn10_{side}.npy"));
            let layer = NeighbourLayer::new(data.view(), 10, side, "mutual_knn:k=10").unwrap();
            let self_overlap = layer.mutual_knn(&layer);
            assert_eq!(self_overlap, 1.0);
            // Compare as sets per row: the layer stores indices ascending.
            for (i, row) in reference.rows().into_iter().enumerate() {
                let mut want: Vec<u32> = row.iter().map(|&v| v as u32).collect();
                want.sort_unstable();
                assert_eq!(layer.neighbours_of(i), &want[..], "{case} {side} row {i}");
            }
        }
    }
}

#[test]
fn plan_streams_observed_grids_and_keeps_grams_for_permutations() {
    let dims_a = vec![576; 31];
    let dims_b = vec![896; 25];
    let plan = |n: usize, evaluations: usize, cap: usize| {
        Plan::for_pairs(
            n,
            &dims_a,
            &dims_b,
            evaluations,
            cap,
            LinearKernelForm::Auto,
        )
        .kernel_form
    };
    // Observed values alone stream from the layers' rows at every size
    // where that beats the feature form.
    assert_eq!(plan(1024, 1, 4 << 30), KernelForm::StreamedFromRows);
    assert_eq!(plan(4096, 1, 4 << 30), KernelForm::StreamedFromRows);
    // Permutations reorder whole Grams while they fit (448 MiB here) ...
    assert_eq!(plan(1024, 101, 4 << 30), KernelForm::Gram);
    assert_eq!(plan(2048, 101, usize::MAX), KernelForm::Gram);
    // ... and above the cap stream the observed values from centred
    // features, which the permutations then use.
    assert_eq!(plan(1024, 101, 1 << 20), KernelForm::Streamed);
    // At n = 16384 the feature form costs less than the Grams.
    assert_eq!(plan(16384, 1, usize::MAX), KernelForm::Features);
    let tall = Plan::for_pairs(100_000, &[64], &[64], 1, 4 << 30, LinearKernelForm::Auto);
    assert_eq!(tall.kernel_form, KernelForm::Features);
    // A forced streamed form keeps the features only when it must.
    let forced = |evaluations| {
        Plan::for_pairs(
            64,
            &[8],
            &[8],
            evaluations,
            4 << 30,
            LinearKernelForm::Streamed,
        )
        .kernel_form
    };
    assert_eq!(forced(1), KernelForm::StreamedFromRows);
    assert_eq!(forced(2), KernelForm::Streamed);
}

#[test]
fn short_last_batch_joins_previous() {
    assert_eq!(batch_bounds(137, 100), vec![(0, 100), (100, 137)]);
    assert_eq!(batch_bounds(102, 100), vec![(0, 102)]);
    assert_eq!(batch_bounds(50, 100), vec![(0, 50)]);
    assert_eq!(batch_bounds(200, 100), vec![(0, 100), (100, 200)]);
}
