//! Invariance properties of every measure on seeded random inputs:
//! self-similarity, symmetry, and invariance to orthogonal maps, isotropic
//! scaling and shifts where the measure has them; memory layout never
//! changes a result.

use ndarray::{s, Array1, Array2};
use ndarray_linalg::QR;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::{MetricKind, MetricSpec};

const N: usize = 40;

/// Standard normal matrix from a seeded ChaCha8 stream (Box–Muller).
fn normal(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

fn orthogonal(d: usize, seed: u64) -> Array2<f64> {
    let (q, _) = normal(d, d, seed).qr().unwrap();
    q
}

/// X, and Y correlated with X (so values are far from 0 and from 1).
fn pair(seed: u64) -> (Array2<f64>, Array2<f64>) {
    let x = normal(N, 8, seed);
    let mix = normal(8, 12, seed + 1);
    let y = x.dot(&mix) + normal(N, 12, seed + 2) * 0.8;
    (x, y)
}

fn all_specs() -> Vec<MetricSpec> {
    let mut names: Vec<String> = [
        "linear_cka",
        "linear_cka_debiased",
        "rbf_cka:f=1.0",
        "rbf_cka_debiased:f=0.5",
        "minibatch_cka:batch=16",
        "procrustes_angular",
        "procrustes_euclidean",
        "svcca:k=5",
        "svcca:var=0.99",
        "pwcca",
        "cca_mean_sq",
        "mutual_knn:k=5",
        "cknna:k=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for rdm in ["correlation", "euclidean", "cosine"] {
        for compare in ["spearman", "pearson", "kendall_tau_a", "rho_a", "cosine"] {
            names.push(format!("rsa:rdm={rdm},compare={compare}"));
        }
    }
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn value(spec: &MetricSpec, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    spec.compute(x.view(), y.view())
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn assert_same(spec: &MetricSpec, what: &str, got: f64, want: f64) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{spec} {what}: {got:.15} vs {want:.15} (diff {:.2e})",
        (got - want).abs()
    );
}

fn has(spec: &MetricSpec, names: &[&str]) -> bool {
    let canonical = spec.to_string();
    names.iter().any(|n| canonical.starts_with(n))
}

#[test]
fn self_comparison_is_one_or_zero() {
    let (x, _) = pair(1);
    for spec in all_specs() {
        let v = value(&spec, &x, &x);
        match spec.kind() {
            MetricKind::Similarity => assert_same(&spec, "self-similarity", v, 1.0),
            MetricKind::Distance => assert_eq!(v, 0.0, "{spec}: self-distance {v}"),
        }
    }
}

#[test]
fn rotated_copy_has_procrustes_distance_zero() {
    let (x, _) = pair(2);
    let rotated = x.dot(&orthogonal(8, 3));
    for name in ["procrustes_angular", "procrustes_euclidean"] {
        let spec: MetricSpec = name.parse().unwrap();
        let v = value(&spec, &x, &rotated);
        assert!(v.abs() < 1e-6, "{name}: {v}");
    }
}

#[test]
fn symmetric_measures_are_symmetric() {
    let (x, y) = pair(4);
    // PWCCA weights by the first argument; CKNNA's mutual-neighbour mask is
    // not symmetric, so its row-sum term depends on the order.
    for spec in all_specs() {
        if has(&spec, &["pwcca", "cknna"]) {
            continue;
        }
        assert_same(
            &spec,
            "symmetry",
            value(&spec, &y, &x),
            value(&spec, &x, &y),
        );
    }
}

#[test]
fn pwcca_depends_on_argument_order() {
    let (x, y) = pair(4);
    let spec: MetricSpec = "pwcca".parse().unwrap();
    let forward = value(&spec, &x, &y);
    let backward = value(&spec, &y, &x);
    assert!((forward - backward).abs() > 1e-6, "{forward} vs {backward}");
}

#[test]
fn orthogonal_invariance() {
    let (x, y) = pair(5);
    let q = orthogonal(12, 6);
    let rotated = y.dot(&q);
    // Correlation RDMs centre each row across features, which a rotation
    // of the features changes.
    for spec in all_specs() {
        if has(&spec, &["rsa:rdm=correlation"]) {
            continue;
        }
        assert_same(
            &spec,
            "rotation",
            value(&spec, &x, &rotated),
            value(&spec, &x, &y),
        );
    }
}

#[test]
fn isotropic_scale_invariance() {
    let (x, y) = pair(7);
    let scaled = &y * 37.5;
    for spec in all_specs() {
        let base = value(&spec, &x, &y);
        let got = value(&spec, &x, &scaled);
        if has(&spec, &["procrustes_euclidean"]) {
            // Not scale-normalised: scaling both sides scales the distance.
            let both = value(&spec, &(&x * 37.5), &scaled);
            assert_same(&spec, "scale both", both, 37.5 * base);
            continue;
        }
        assert_same(&spec, "scale", got, base);
    }
}

#[test]
fn shift_invariance() {
    let (x, y) = pair(8);
    let offset = Array1::from_shape_fn(12, |j| 3.0 - 0.7 * j as f64);
    let shifted = &y + &offset;
    // Correlation and cosine RDMs and cosine neighbours look at each row's
    // own pattern, which a shift of every row changes.
    let not_invariant = [
        "rsa:rdm=correlation",
        "rsa:rdm=cosine",
        "mutual_knn",
        "cknna",
    ];
    for spec in all_specs() {
        if has(&spec, &not_invariant) {
            continue;
        }
        assert_same(
            &spec,
            "shift",
            value(&spec, &x, &shifted),
            value(&spec, &x, &y),
        );
    }
}

#[test]
fn memory_layout_does_not_change_results() {
    let (x, y) = pair(9);
    // Column-major copy of y.
    let fortran = y.t().as_standard_layout().to_owned().reversed_axes();
    assert!(!fortran.is_standard_layout());
    // Every other row of a taller matrix, and a transposed view.
    let mut tall = Array2::zeros((2 * N, 12));
    tall.slice_mut(s![..;2, ..]).assign(&y);
    let strided = tall.slice(s![..;2, ..]);
    let transposed_storage = y.t().to_owned();
    for spec in all_specs() {
        let base = value(&spec, &x, &y);
        let f = spec.compute(x.view(), fortran.view()).unwrap();
        let st = spec.compute(x.view(), strided).unwrap();
        let tr = spec.compute(x.view(), transposed_storage.t()).unwrap();
        for (what, got) in [("fortran", f), ("strided", st), ("transposed", tr)] {
            let tol = 1e-12 * base.abs().max(1.0);
            assert!((got - base).abs() <= tol, "{spec} {what}: {got} vs {base}");
        }
    }
}

#[test]
fn debiased_cka_can_be_negative_and_biased_cannot() {
    // Independent inputs with n < d: biased CKA is inflated, the unbiased
    // estimator centres on 0.
    let x = normal(25, 200, 11);
    let y = normal(25, 150, 12);
    let biased: MetricSpec = "linear_cka".parse().unwrap();
    let debiased: MetricSpec = "linear_cka_debiased".parse().unwrap();
    assert!(value(&biased, &x, &y) > 0.5);
    assert!(value(&debiased, &x, &y).abs() < 0.2);
}
