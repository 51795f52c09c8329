//! Each invalid name, parameter and degenerate input gives its own error,
//! and the message names the value and the fix.

use ndarray::{array, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::{
    compare_grid, GridOptions, MetricError, MetricSpec, OutlierPolicy, Representation,
};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random::<f64>() - 0.5)
}

fn spec(name: &str) -> MetricSpec {
    name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse_error(name: &str) -> MetricError {
    name.parse::<MetricSpec>().unwrap_err()
}

#[test]
fn unknown_metric_lists_valid_names() {
    let err = parse_error("cka_linear");
    assert!(matches!(err, MetricError::UnknownMetric { ref name, .. } if name == "cka_linear"));
    let message = err.to_string();
    for name in [
        "linear_cka",
        "rsa",
        "procrustes_angular",
        "mutual_knn",
        "cknna",
    ] {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn unknown_parameter_lists_valid_keys() {
    let err = parse_error("rsa:rdm=correlation,method=spearman");
    assert!(matches!(err, MetricError::UnknownParameter { ref key, .. } if key == "method"));
    assert!(err.to_string().contains("rdm, compare"), "{err}");
    let err = parse_error("linear_cka:f=1");
    assert!(err.to_string().contains("valid parameters: none"), "{err}");
}

#[test]
fn invalid_parameter_values_are_rejected() {
    for (text, key) in [
        ("rbf_cka:f=0", "f"),
        ("rbf_cka:f=-1", "f"),
        ("rbf_cka:f=abc", "f"),
        ("rbf_cka_debiased:f=inf", "f"),
        ("mutual_knn:k=0", "k"),
        ("cknna:k=1", "k"),
        ("minibatch_cka:batch=3", "batch"),
        ("svcca:var=1.5", "var"),
        ("svcca:var=0", "var"),
        ("svcca:k=0", "k"),
        ("svcca:k=5,var=0.9", "k"),
        ("rsa:rdm=manhattan", "rdm"),
        ("rsa:compare=kendall", "compare"),
        ("rsa:rdm=euclidean,rdm=cosine", "rdm"),
        ("mutual_knn:k", "k"),
    ] {
        let err = parse_error(text);
        assert!(
            matches!(err, MetricError::InvalidParameter { key: ref k, .. } if k == key),
            "{text}: {err}"
        );
    }
}

#[test]
fn canonical_names_round_trip() {
    for (text, canonical) in [
        ("rsa", "rsa:rdm=correlation,compare=spearman"),
        ("rsa:compare=corr", "rsa:rdm=correlation,compare=pearson"),
        (
            "rsa:compare=tau-a,rdm=euclidean",
            "rsa:rdm=euclidean,compare=kendall_tau_a",
        ),
        (
            "rsa:rdm=cosine,compare=rho-a",
            "rsa:rdm=cosine,compare=rho_a",
        ),
        ("rbf_cka", "rbf_cka:f=1.0"),
        ("rbf_cka_debiased:f=0.5", "rbf_cka_debiased:f=0.5"),
        ("minibatch_cka", "minibatch_cka:batch=256"),
        ("svcca", "svcca:var=0.99"),
        ("svcca:k=10", "svcca:k=10"),
        ("mutual_knn", "mutual_knn:k=10"),
        (" cknna : k = 7 ", "cknna:k=7"),
        ("procrustes_angular", "procrustes_angular"),
        ("cca_mean_sq", "cca_mean_sq"),
    ] {
        let parsed = spec(text);
        assert_eq!(parsed.to_string(), canonical, "{text}");
        assert_eq!(spec(canonical), parsed, "{canonical} parses back");
    }
}

#[test]
fn nan_and_inf_name_layer_row_and_column() {
    let y = random(10, 3, 1);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut x = random(10, 3, 2);
        x[[4, 2]] = bad;
        let err = spec("linear_cka")
            .compute_named(x.view(), "hidden.7", y.view(), "hidden.2")
            .unwrap_err();
        assert!(
            matches!(err, MetricError::NonFinite { ref layer, row: 4, column: 2, .. } if layer == "hidden.7"),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("row 4") && message.contains("column 2"),
            "{message}"
        );
    }
}

#[test]
fn constant_representation_names_the_layer() {
    let x = Array2::from_elem((8, 3), 2.5);
    let y = random(8, 3, 3);
    for name in [
        "linear_cka",
        "rsa",
        "procrustes_angular",
        "pwcca",
        "mutual_knn:k=3",
    ] {
        let err = spec(name)
            .compute_named(x.view(), "hidden.0", y.view(), "y")
            .unwrap_err();
        assert!(
            matches!(err, MetricError::ConstantRepresentation { ref layer, rows: 8 } if layer == "hidden.0"),
            "{name}: {err}"
        );
    }
}

#[test]
fn constant_column_is_fine() {
    let mut x = random(12, 4, 4);
    x.column_mut(1).fill(3.0);
    let y = random(12, 5, 5);
    for name in [
        "linear_cka",
        "linear_cka_debiased",
        "rbf_cka",
        "rsa",
        "procrustes_angular",
        "svcca:k=3",
        "pwcca",
        "cca_mean_sq",
        "mutual_knn:k=3",
        "cknna:k=3",
    ] {
        let v = spec(name)
            .compute(x.view(), y.view())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(v.is_finite(), "{name}: {v}");
    }
}

#[test]
fn different_stimulus_counts_name_both_layers() {
    let err = spec("linear_cka")
        .compute_named(
            random(10, 3, 6).view(),
            "a.1",
            random(11, 3, 7).view(),
            "b.4",
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::RowMismatch {
                rows_a: 10,
                rows_b: 11,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("a.1") && message.contains("b.4"),
        "{message}"
    );
}

#[test]
fn empty_representation_is_rejected() {
    let empty = Array2::<f64>::zeros((0, 3));
    let err = spec("linear_cka")
        .compute(empty.view(), empty.view())
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::Empty {
                rows: 0,
                columns: 3,
                ..
            }
        ),
        "{err}"
    );
    let no_columns = Array2::<f64>::zeros((5, 0));
    let err = spec("rsa")
        .compute(no_columns.view(), no_columns.view())
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::Empty {
                rows: 5,
                columns: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn too_few_stimuli_for_unbiased_hsic() {
    let (x, y) = (random(3, 2, 8), random(3, 2, 9));
    for name in ["linear_cka_debiased", "rbf_cka_debiased", "minibatch_cka"] {
        let err = spec(name).compute(x.view(), y.view()).unwrap_err();
        assert!(
            matches!(
                err,
                MetricError::TooFewStimuli {
                    needed: 4,
                    got: 3,
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn neighbour_count_must_be_below_stimulus_count() {
    let (x, y) = (random(6, 2, 10), random(6, 2, 11));
    let err = spec("mutual_knn:k=6")
        .compute(x.view(), y.view())
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::TooFewStimuli {
                needed: 7,
                got: 6,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("k <= 5"), "{err}");
}

#[test]
fn svcca_rejects_kept_dimension_of_n_or_more() {
    let (x, y) = (random(10, 30, 12), random(10, 30, 13));
    let err = spec("svcca:k=10").compute(x.view(), y.view()).unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::KeptDimensionTooLarge {
                kept: 10,
                n: 10,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("fewer components") && message.contains("linear_cka"),
        "{message}"
    );
}

#[test]
fn svcca_rejects_more_components_than_rank() {
    // Rank 2 after centring: every row is a combination of 2 directions.
    let basis = random(2, 6, 14);
    let x = random(20, 2, 15).dot(&basis);
    let y = random(20, 6, 16);
    let err = spec("svcca:k=4").compute(x.view(), y.view()).unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::RankTooLow {
                kept: 4,
                rank: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn degenerate_rows_name_the_row() {
    let y = random(6, 3, 17);
    let mut constant_row = random(6, 3, 18);
    constant_row.row_mut(3).fill(0.7);
    let err = spec("rsa")
        .compute_named(constant_row.view(), "l5", y.view(), "y")
        .unwrap_err();
    assert!(
        matches!(err, MetricError::DegenerateRow { ref layer, row: 3, .. } if layer == "l5"),
        "{err}"
    );
    assert!(err.to_string().contains("rdm=euclidean"), "{err}");

    let mut zero_row = random(6, 3, 19);
    zero_row.row_mut(2).fill(0.0);
    for name in ["rsa:rdm=cosine", "mutual_knn:k=2", "cknna:k=2"] {
        let err = spec(name).compute(zero_row.view(), y.view()).unwrap_err();
        assert!(
            matches!(err, MetricError::DegenerateRow { row: 2, .. }),
            "{name}: {err}"
        );
    }
    // Euclidean RDMs accept both rows.
    assert!(spec("rsa:rdm=euclidean")
        .compute(zero_row.view(), y.view())
        .is_ok());
}

#[test]
fn rbf_with_zero_median_distance_is_undefined() {
    // 6 of 8 rows identical: most pairwise distances are 0.
    let mut x = Array2::from_elem((8, 2), 1.0);
    x.row_mut(0).assign(&array![0.0, 3.0]);
    x.row_mut(1).assign(&array![2.0, -1.0]);
    let y = random(8, 2, 20);
    let err = spec("rbf_cka")
        .compute_named(x.view(), "dup", y.view(), "y")
        .unwrap_err();
    assert!(
        matches!(err, MetricError::Undefined { ref layer, .. } if layer == "dup"),
        "{err}"
    );
    assert!(err.to_string().contains("median"), "{err}");
}

#[test]
fn constant_rdm_cannot_be_correlated() {
    // The rows of an identity matrix are equidistant.
    let x = Array2::<f64>::eye(5);
    let y = random(5, 3, 21);
    let err = spec("rsa:rdm=euclidean,compare=spearman")
        .compute(x.view(), y.view())
        .unwrap_err();
    assert!(matches!(err, MetricError::Undefined { .. }), "{err}");
    // tau-a has no variance in its denominator: a constant RDM gives 0.
    let tau = spec("rsa:rdm=euclidean,compare=kendall_tau_a")
        .compute(x.view(), y.view())
        .unwrap();
    assert_eq!(tau, 0.0);
}

#[test]
fn grid_rejects_empty_sides_and_bad_options() {
    let layers = vec![Representation::new("a", random(10, 3, 22))];
    let metrics = vec![spec("linear_cka")];
    let err = compare_grid(&[], &layers, &metrics, &GridOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::NoLayers {
                side: "the first model"
            }
        ),
        "{err}"
    );
    let err = compare_grid(&layers, &[], &metrics, &GridOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            MetricError::NoLayers {
                side: "the second model"
            }
        ),
        "{err}"
    );
    for confidence in [0.0, 1.0, 1.5, f64::NAN] {
        let opts = GridOptions {
            confidence,
            ..GridOptions::default()
        };
        let err = compare_grid(&layers, &layers, &metrics, &opts).unwrap_err();
        assert!(
            matches!(
                err,
                MetricError::InvalidOption {
                    option: "confidence",
                    ..
                }
            ),
            "{err}"
        );
    }
    let opts = GridOptions {
        outliers: OutlierPolicy::Clip { quantile: 0.0 },
        ..GridOptions::default()
    };
    assert!(matches!(
        compare_grid(&layers, &layers, &metrics, &opts).unwrap_err(),
        MetricError::InvalidOption { .. }
    ));
}

#[test]
fn grid_row_mismatch_names_both_layers() {
    let a = vec![Representation::new("a.0", random(10, 3, 23))];
    let b = vec![
        Representation::new("b.0", random(10, 3, 24)),
        Representation::new("b.1", random(9, 3, 25)),
    ];
    let err = compare_grid(&a, &b, &[spec("rsa")], &GridOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("a.0") && message.contains("b.1"),
        "{message}"
    );
}

#[test]
fn grid_nan_names_the_layer() {
    let a = vec![Representation::new("a.0", random(10, 3, 26))];
    let mut bad = random(10, 3, 27);
    bad[[9, 0]] = f64::NAN;
    let b = vec![Representation::new("model_b.hidden.3", bad)];
    let err = compare_grid(&a, &b, &[spec("linear_cka")], &GridOptions::default()).unwrap_err();
    assert!(
        matches!(err, MetricError::NonFinite { ref layer, row: 9, column: 0, .. } if layer == "model_b.hidden.3"),
        "{err}"
    );
}

#[test]
fn outlier_policy_parses_and_rejects() {
    assert_eq!(
        "none".parse::<OutlierPolicy>().unwrap(),
        OutlierPolicy::None
    );
    let clip: OutlierPolicy = "clip:q=0.999".parse().unwrap();
    assert_eq!(clip, OutlierPolicy::Clip { quantile: 0.999 });
    assert_eq!(clip.to_string(), "clip:q=0.999");
    let exclude: OutlierPolicy = "exclude:factor=100".parse().unwrap();
    assert_eq!(exclude.to_string(), "exclude:factor=100.0");
    for bad in [
        "clip",
        "clip:q=2",
        "exclude:factor=0.5",
        "trim:q=0.9",
        "exclude:f=10",
    ] {
        assert!(bad.parse::<OutlierPolicy>().is_err(), "{bad}");
    }
}
