//! The all-layers grid: values equal the per-pair measures, cells come in
//! a fixed order, self-grids and both kernel forms agree, and the outlier
//! policy does what its documentation states.

use std::path::PathBuf;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::{
    compare_grid, GridOptions, LinearKernelForm, MetricKind, MetricSpec, OutlierPolicy,
    Representation,
};
use repatlas::npy::read_npy;

fn normal(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

/// Layers of a toy "model": each a noisy linear map of a shared signal.
fn model(prefix: &str, layers: usize, width: usize, seed: u64) -> Vec<Representation> {
    let signal = normal(36, 5, 99);
    (0..layers)
        .map(|l| {
            let s = seed + 10 * l as u64;
            let data =
                signal.dot(&normal(5, width, s)) + normal(36, width, s + 1) * (0.5 + l as f64);
            Representation::new(format!("{prefix}.{l}"), data)
        })
        .collect()
}

fn specs(names: &[&str]) -> Vec<MetricSpec> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

const METRICS: &[&str] = &[
    "linear_cka",
    "linear_cka_debiased",
    "rbf_cka:f=1.0",
    "minibatch_cka:batch=12",
    "rsa",
    "rsa:rdm=euclidean,compare=kendall_tau_a",
    "procrustes_angular",
    "procrustes_euclidean",
    "svcca:k=4",
    "pwcca",
    "cca_mean_sq",
    "mutual_knn:k=4",
    "cknna:k=4",
];

#[test]
fn grid_cells_equal_pairwise_values_in_order() {
    let (a, b) = (model("a", 3, 7, 1), model("b", 2, 9, 2));
    let metrics = specs(METRICS);
    let cells = compare_grid(&a, &b, &metrics, &GridOptions::default()).unwrap();
    assert_eq!(cells.len(), metrics.len() * 3 * 2);
    let mut index = 0;
    for spec in &metrics {
        for (i, la) in a.iter().enumerate() {
            for (j, lb) in b.iter().enumerate() {
                let cell = &cells[index];
                index += 1;
                assert_eq!((cell.layer_a, cell.layer_b), (i, j));
                assert_eq!(cell.metric, spec.to_string());
                assert_eq!(cell.kind, spec.kind());
                assert_eq!(cell.p_value, None);
                assert_eq!(cell.ci_low, None);
                assert_eq!((cell.n_permutations, cell.n_bootstrap), (0, 0));
                let want = spec
                    .compute_named(la.data.view(), &la.name, lb.data.view(), &lb.name)
                    .unwrap();
                let tol = 1e-10 * want.abs().max(1.0);
                assert!(
                    (cell.value - want).abs() <= tol,
                    "{spec} ({i},{j}): {} vs {want}",
                    cell.value
                );
            }
        }
    }
}

#[test]
fn blocked_pair_products_equal_pairwise_values() {
    // 300 stimuli: the Grams (90,000 entries) and RDMs (44,850) span
    // several of the 32,768-entry blocks of the batched pair products.
    let layer = |seed: u64, width: usize| {
        let data = normal(300, 6, 7).dot(&normal(6, width, seed)) + normal(300, width, seed + 1);
        Representation::new(format!("l{seed}"), data)
    };
    let (a, b) = (vec![layer(1, 20), layer(3, 30)], vec![layer(5, 25)]);
    let metrics = specs(&[
        "linear_cka",
        "linear_cka_debiased",
        "rsa:rdm=correlation,compare=spearman",
        "rsa:rdm=euclidean,compare=pearson",
        "rsa:rdm=cosine,compare=cosine",
    ]);
    let opts = GridOptions {
        linear_kernel: LinearKernelForm::Gram,
        ..GridOptions::default()
    };
    let cells = compare_grid(&a, &b, &metrics, &opts).unwrap();
    for cell in &cells {
        let spec: MetricSpec = cell.metric.parse().unwrap();
        let (la, lb) = (&a[cell.layer_a], &b[cell.layer_b]);
        let want = spec
            .compute_named(la.data.view(), &la.name, lb.data.view(), &lb.name)
            .unwrap();
        assert!(
            (cell.value - want).abs() <= 1e-12,
            "{spec} ({}, {}): {} vs {want}",
            cell.layer_a,
            cell.layer_b,
            cell.value
        );
    }
}

#[test]
fn streamed_grams_equal_whole_grams() {
    // 1,100 stimuli: five rows of 256-stimulus tiles, the last one short,
    // so diagonal, off-diagonal and ragged tiles all contribute. With
    // permutations the streamed form keeps centred features. Without them,
    // it centres tiles of the layers' own rows as it reads them.
    // Column offsets far from 0, as in hidden states with massive
    // activations, so that centring matters.
    let layer = |seed: u64, width: usize| {
        let offsets = ndarray::Array1::from_shape_fn(width, |j| 40.0 * j as f64 - 100.0);
        let data = normal(1100, 4, 11).dot(&normal(4, width, seed))
            + normal(1100, width, seed + 1)
            + offsets;
        Representation::new(format!("l{seed}"), data)
    };
    let (a, b) = (
        vec![layer(1, 12), layer(3, 7)],
        vec![layer(5, 9), layer(7, 16), layer(9, 5)],
    );
    let metrics = specs(&["linear_cka", "linear_cka_debiased"]);
    let with = |form: LinearKernelForm, n_permutations: usize| GridOptions {
        linear_kernel: form,
        n_permutations,
        seed: 4,
        ..GridOptions::default()
    };
    let cases = [(&a, &b, 3), (&a, &a, 3), (&a, &b, 0), (&a, &a, 0)];
    for (left, right, permutations) in cases {
        let streamed = with(LinearKernelForm::Streamed, permutations);
        let streamed = compare_grid(left, right, &metrics, &streamed).unwrap();
        let grams = with(LinearKernelForm::Gram, permutations);
        let grams = compare_grid(left, right, &metrics, &grams).unwrap();
        assert_eq!(streamed.len(), grams.len());
        for (s, g) in streamed.iter().zip(&grams) {
            assert_eq!(
                (s.layer_a, s.layer_b, &s.metric),
                (g.layer_a, g.layer_b, &g.metric)
            );
            assert!((s.value - g.value).abs() <= 1e-12, "{s:?} vs {g:?}");
            assert_eq!(s.p_value, g.p_value, "{s:?} vs {g:?}");
        }
        // A layer's own product comes from the same tiles as its cross
        // with itself, so self-similarity is exact.
        for s in &streamed {
            if std::ptr::eq(left, right) && s.layer_a == s.layer_b && s.metric == "linear_cka" {
                assert_eq!(s.value, 1.0, "{s:?}");
            }
        }
    }
}

#[test]
fn rbf_pairs_ignore_linear_form() {
    // RBF kernels are Grams under any plan for the linear ones, so their
    // pair products come from the same blocked pass, to the bit.
    let (a, b) = (model("a", 3, 40, 1), model("b", 2, 30, 2));
    let metrics = specs(&["rbf_cka", "linear_cka"]);
    let run = |form| {
        let opts = GridOptions {
            linear_kernel: form,
            ..GridOptions::default()
        };
        compare_grid(&a, &b, &metrics, &opts).unwrap()
    };
    let (streamed, grams) = (run(LinearKernelForm::Streamed), run(LinearKernelForm::Gram));
    for (s, g) in streamed.iter().zip(&grams) {
        if s.metric.starts_with("rbf") {
            assert_eq!(s.value, g.value, "{s:?} vs {g:?}");
        }
    }
}

#[test]
fn self_grid_matches_grid_against_a_copy() {
    let a = model("a", 3, 6, 3);
    let copy = a.clone();
    let metrics = specs(&["linear_cka", "rsa", "procrustes_angular", "mutual_knn:k=4"]);
    let opts = GridOptions {
        n_permutations: 20,
        n_bootstrap: 20,
        seed: 5,
        ..GridOptions::default()
    };
    let shared = compare_grid(&a, &a, &metrics, &opts).unwrap();
    let separate = compare_grid(&a, &copy, &metrics, &opts).unwrap();
    assert_eq!(shared, separate);
    // The diagonal compares each layer with itself.
    for cell in shared.iter().filter(|c| c.layer_a == c.layer_b) {
        match cell.kind {
            MetricKind::Similarity => assert!((cell.value - 1.0).abs() < 1e-12, "{cell:?}"),
            MetricKind::Distance => assert_eq!(cell.value, 0.0, "{cell:?}"),
        }
        assert_eq!(cell.p_value, Some(1.0 / 21.0), "{cell:?}");
    }
}

#[test]
fn feature_form_matches_gram_form() {
    let (a, b) = (model("a", 2, 5, 4), model("b", 3, 8, 5));
    let metrics = specs(&["linear_cka", "linear_cka_debiased"]);
    let base = GridOptions {
        n_permutations: 10,
        n_bootstrap: 10,
        seed: 2,
        ..GridOptions::default()
    };
    let features = compare_grid(
        &a,
        &b,
        &metrics,
        &GridOptions {
            linear_kernel: LinearKernelForm::Features,
            ..base.clone()
        },
    )
    .unwrap();
    let grams = compare_grid(
        &a,
        &b,
        &metrics,
        &GridOptions {
            linear_kernel: LinearKernelForm::Gram,
            ..base.clone()
        },
    )
    .unwrap();
    // A zero memory budget makes the automatic choice the feature form.
    let capped = compare_grid(
        &a,
        &b,
        &metrics,
        &GridOptions {
            gram_memory_limit: 0,
            ..base
        },
    )
    .unwrap();
    assert_eq!(capped, features);
    for (f, g) in features.iter().zip(&grams) {
        assert!((f.value - g.value).abs() < 1e-10, "{f:?} vs {g:?}");
        assert_eq!(f.p_value, g.p_value);
        assert!((f.ci_low.unwrap() - g.ci_low.unwrap()).abs() < 1e-10);
        assert!((f.ci_high.unwrap() - g.ci_high.unwrap()).abs() < 1e-10);
    }
}

fn massive_case() -> (Representation, Representation) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics/massive_activation_60x20");
    let x = read_npy(&dir.join("X.npy")).unwrap();
    let y = read_npy(&dir.join("Y.npy")).unwrap();
    (Representation::new("x", x), Representation::new("y", y))
}

#[test]
fn outlier_policies_undo_a_massive_activation() {
    // X has one entry multiplied by 1e4; Y is X without it plus noise.
    let (x, y) = massive_case();
    let spec = specs(&["linear_cka"]);
    let run = |outliers| {
        let opts = GridOptions {
            outliers,
            ..GridOptions::default()
        };
        compare_grid(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            &spec,
            &opts,
        )
        .unwrap()[0]
            .value
    };
    let raw = run(OutlierPolicy::None);
    let excluded = run(OutlierPolicy::ExcludeDims { factor: 100.0 });
    let clipped = run(OutlierPolicy::Clip { quantile: 0.99 });
    assert!(raw < 0.1, "raw {raw}");
    assert!(excluded > 0.8, "excluded {excluded}");
    assert!(clipped > 0.8, "clipped {clipped}");
}

#[test]
fn exclude_drops_only_the_outlier_column() {
    let (x, _) = massive_case();
    let (kept, dropped) = OutlierPolicy::ExcludeDims { factor: 100.0 }.apply(x.data.view());
    assert_eq!(dropped, 1);
    assert_eq!(kept.ncols(), 19);
    let (clipped, count) = OutlierPolicy::Clip { quantile: 1.0 }.apply(x.data.view());
    assert_eq!(count, 0);
    assert_eq!(clipped, x.data);
}

#[test]
fn reduced_precision_inputs_widen_exactly() {
    let x = normal(20, 4, 6);
    let y = normal(20, 3, 7);
    let spec: MetricSpec = "linear_cka".parse().unwrap();
    let x32 = x.mapv(|v| v as f32);
    let x16 = x.mapv(half::f16::from_f64);
    let xb16 = x.mapv(half::bf16::from_f64);
    let widened = [
        Representation::from_view("f32", x32.view()),
        Representation::from_view("f16", x16.view()),
        Representation::from_view("bf16", xb16.view()),
    ];
    let expected = [
        x32.mapv(|v| v as f64),
        x16.mapv(|v| v.to_f64()),
        xb16.mapv(|v| v.to_f64()),
    ];
    for (rep, want) in widened.iter().zip(&expected) {
        assert_eq!(&rep.data, want, "{}", rep.name);
        let value = spec.compute(rep.data.view(), y.view()).unwrap();
        let exact = spec.compute(x.view(), y.view()).unwrap();
        // Rounding the input to 8 mantissa bits moves CKA by far less than 0.05.
        assert!(
            (value - exact).abs() < 0.05,
            "{}: {value} vs {exact}",
            rep.name
        );
    }
}

#[test]
fn linear_kernel_form_follows_size() {
    let (a, b) = (vec![576; 31], vec![896; 25]);
    let opts = GridOptions::default();
    assert_eq!(
        opts.linear_kernel_form(1024, &a, &b),
        LinearKernelForm::Streamed
    );
    let permuted = GridOptions {
        n_permutations: 100,
        ..GridOptions::default()
    };
    assert_eq!(
        permuted.linear_kernel_form(1024, &a, &b),
        LinearKernelForm::Gram
    );
    assert_eq!(
        opts.linear_kernel_form(4096, &a, &b),
        LinearKernelForm::Streamed
    );
    assert_eq!(
        opts.linear_kernel_form(100_000, &[64], &[64]),
        LinearKernelForm::Features
    );
    let forced = GridOptions {
        linear_kernel: LinearKernelForm::Features,
        ..GridOptions::default()
    };
    assert_eq!(
        forced.linear_kernel_form(1024, &a, &b),
        LinearKernelForm::Features
    );
}
