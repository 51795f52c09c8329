//! Every measure against the reference values in
//! `tests/fixtures/metrics/metrics_goldens.json` (computed in float64 with
//! rsatoolbox 0.3.2, SciPy 1.17.1, NumPy 2.4.6 and the published formulas).
//!
//! Tolerance: 1e-9, relative for values above 1 in magnitude; angles and
//! distances whose reference is near 0 use 1e-6 absolute, because arccos
//! and sqrt turn rounding of 1e-16 near 1 into ~1e-8.

use std::path::PathBuf;

use ndarray::Array2;
use repatlas::metrics::MetricSpec;
use repatlas::npy::read_npy;
use serde_json::Value;

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

fn goldens() -> Value {
    let text = std::fs::read_to_string(fixture("metrics_goldens.json")).expect("goldens json");
    serde_json::from_str(&text).expect("valid json")
}

fn load(case: &str) -> (Array2<f64>, Array2<f64>) {
    let x = read_npy(&fixture(&format!("{case}/X.npy"))).expect("X.npy");
    let y = read_npy(&fixture(&format!("{case}/Y.npy"))).expect("Y.npy");
    (x, y)
}

fn expected(g: &Value, case: &str, key: &str) -> f64 {
    g["cases"][case]["expected"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{case}: no expected value {key}"))
}

fn assert_close(case: &str, metric: &str, got: f64, want: f64) {
    let tol = if want.abs() < 1e-6 {
        1e-6
    } else {
        1e-9 * want.abs().max(1.0)
    };
    assert!(
        (got - want).abs() <= tol,
        "{case} {metric}: got {got:.17}, reference {want:.17}, diff {:.3e}",
        (got - want).abs()
    );
}

fn check(metric: &str, golden_key: &str) {
    let g = goldens();
    let spec: MetricSpec = metric.parse().unwrap();
    for case in CASES {
        let (x, y) = load(case);
        let got = spec.compute(x.view(), y.view()).unwrap();
        assert_close(case, metric, got, expected(&g, case, golden_key));
    }
}

#[test]
fn linear_cka_matches_reference() {
    check("linear_cka", "linear_cka");
}

#[test]
fn linear_cka_debiased_matches_reference() {
    check("linear_cka_debiased", "linear_cka_debiased");
}

#[test]
fn rbf_cka_matches_reference() {
    check("rbf_cka:f=0.5", "rbf_cka_f0.5");
    check("rbf_cka:f=1.0", "rbf_cka_f1.0");
}

#[test]
fn rsa_matches_rsatoolbox() {
    for rdm in ["correlation", "euclidean"] {
        for (compare, key) in [
            ("spearman", "spearman"),
            ("pearson", "corr"),
            ("kendall_tau_a", "tau-a"),
            ("cosine", "cosine"),
        ] {
            check(
                &format!("rsa:rdm={rdm},compare={compare}"),
                &format!("rsa.{rdm}.{key}"),
            );
        }
    }
}

#[test]
fn rsa_rho_a_equals_spearman_without_ties() {
    // The reference RDMs have no tied entries, where rho-a and Spearman agree.
    for rdm in ["correlation", "euclidean"] {
        check(
            &format!("rsa:rdm={rdm},compare=rho_a"),
            &format!("rsa.{rdm}.spearman"),
        );
    }
}

#[test]
fn plain_rsa_is_correlation_spearman() {
    check("rsa", "rsa.correlation.spearman");
}

#[test]
fn procrustes_matches_netrep() {
    check("procrustes_angular", "procrustes_netrep_angular");
    check("procrustes_euclidean", "procrustes_netrep_euclidean");
}

#[test]
fn procrustes_angle_is_arccos_of_nuclear_norm() {
    let g = goldens();
    let spec: MetricSpec = "procrustes_angular".parse().unwrap();
    for case in CASES {
        let (x, y) = load(case);
        let got = spec.compute(x.view(), y.view()).unwrap().cos();
        assert_close(
            case,
            "cos(angle)",
            got,
            expected(&g, case, "procrustes_nuclear_norm_normalized"),
        );
    }
}

#[test]
fn svcca_matches_reference() {
    check("svcca:k=10", "svcca_k10");
    check("svcca:var=0.99", "svcca_var99");
}

#[test]
fn pwcca_matches_reference_in_both_orders() {
    let g = goldens();
    let spec: MetricSpec = "pwcca".parse().unwrap();
    for case in CASES {
        let (x, y) = load(case);
        let xy = spec.compute(x.view(), y.view()).unwrap();
        assert_close(case, "pwcca(X, Y)", xy, expected(&g, case, "pwcca"));
        let yx = spec.compute(y.view(), x.view()).unwrap();
        assert_close(
            case,
            "pwcca(Y, X)",
            yx,
            expected(&g, case, "pwcca_weights_from_Y"),
        );
    }
}

#[test]
fn cca_mean_sq_matches_reference() {
    let g = goldens();
    let spec: MetricSpec = "cca_mean_sq".parse().unwrap();
    for case in CASES {
        let (x, y) = load(case);
        let details = &g["cases"][case]["details"]["cca_raw"];
        let rhos: Vec<f64> = details["rhos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = rhos.iter().map(|r| r * r).sum::<f64>() / rhos.len() as f64;
        let got = spec.compute(x.view(), y.view()).unwrap();
        assert_close(case, "cca_mean_sq", got, want);
    }
}

#[test]
fn mutual_knn_matches_reference_and_chance() {
    let g = goldens();
    for k in [5usize, 10] {
        let spec: MetricSpec = format!("mutual_knn:k={k}").parse().unwrap();
        for case in CASES {
            let (x, y) = load(case);
            let got = spec.compute(x.view(), y.view()).unwrap();
            assert_close(
                case,
                "mutual_knn",
                got,
                expected(&g, case, &format!("mutual_knn_k{k}")),
            );
            let chance = spec.chance_level(x.nrows()).unwrap();
            assert_close(
                case,
                "chance",
                chance,
                expected(&g, case, &format!("mutual_knn_chance_k{k}")),
            );
        }
    }
}
