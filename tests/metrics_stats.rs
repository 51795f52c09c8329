//! Permutation p-values and bootstrap intervals.

use ndarray::Array2;
use ndarray_linalg::QR;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::stats::bootstrap_rows;
use repatlas::metrics::{compare_pair, GridOptions, MetricSpec, Representation};

fn normal(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

fn rep(name: &str, data: Array2<f64>) -> Representation {
    Representation::new(name, data)
}

fn options(n_permutations: usize, n_bootstrap: usize, seed: u64) -> GridOptions {
    GridOptions {
        n_permutations,
        n_bootstrap,
        seed,
        ..GridOptions::default()
    }
}

/// Kolmogorov–Smirnov distance of the sample from Uniform(0, 1).
fn ks_uniform(mut p: Vec<f64>) -> f64 {
    p.sort_by(f64::total_cmp);
    let m = p.len() as f64;
    p.iter()
        .enumerate()
        .map(|(i, &v)| (v - i as f64 / m).abs().max(((i + 1) as f64 / m - v).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn p_values_of_independent_inputs_are_uniform() {
    // 40 seeds x 99 permutations. The 1% critical KS distance for 40
    // samples is 1.63 / sqrt(40) = 0.26.
    for metric in ["linear_cka", "rsa", "procrustes_angular"] {
        let spec: MetricSpec = metric.parse().unwrap();
        let p: Vec<f64> = (0..40u64)
            .map(|seed| {
                let x = rep("x", normal(30, 5, 1000 + seed));
                let y = rep("y", normal(30, 4, 2000 + seed));
                let cell = compare_pair(&x, &y, &spec, &options(99, 0, seed)).unwrap();
                cell.p_value.unwrap()
            })
            .collect();
        assert!(
            p.iter().all(|&v| (0.01..=1.0).contains(&v)),
            "{metric}: {p:?}"
        );
        let mean = p.iter().sum::<f64>() / p.len() as f64;
        let d = ks_uniform(p);
        assert!(d < 0.26, "{metric}: KS distance {d}, mean {mean}");
        assert!((mean - 0.5).abs() < 0.15, "{metric}: mean p {mean}");
    }
}

#[test]
fn rotated_copy_reaches_minimum_p_value() {
    let x = normal(50, 10, 1);
    let (q, _) = normal(10, 10, 2).qr().unwrap();
    let rotated = x.dot(&q);
    let (a, b) = (rep("x", x), rep("x_rotated", rotated));
    let n_permutations = 199;
    for metric in [
        "linear_cka",
        "linear_cka_debiased",
        "rbf_cka:f=1.0",
        "rsa:rdm=euclidean,compare=spearman",
        "procrustes_angular",
        "procrustes_euclidean",
        "svcca:k=5",
        "pwcca",
        "mutual_knn:k=5",
        "cknna:k=5",
    ] {
        let spec: MetricSpec = metric.parse().unwrap();
        let cell = compare_pair(&a, &b, &spec, &options(n_permutations, 0, 7)).unwrap();
        assert_eq!(
            cell.p_value,
            Some(1.0 / 200.0),
            "{metric}: value {}",
            cell.value
        );
        assert_eq!(cell.n_permutations, 199);
    }
}

#[test]
fn same_seed_gives_same_statistics() {
    let (x, y) = (rep("x", normal(30, 5, 3)), rep("y", normal(30, 6, 4)));
    let spec: MetricSpec = "linear_cka".parse().unwrap();
    let first = compare_pair(&x, &y, &spec, &options(50, 50, 11)).unwrap();
    let again = compare_pair(&x, &y, &spec, &options(50, 50, 11)).unwrap();
    let other = compare_pair(&x, &y, &spec, &options(50, 50, 12)).unwrap();
    assert_eq!(first, again);
    assert_ne!(first.ci_low, other.ci_low);
}

#[test]
fn bootstrap_interval_brackets_the_estimate() {
    let x = normal(60, 6, 5);
    let y = x.dot(&normal(6, 8, 6)) + normal(60, 8, 7);
    let (a, b) = (rep("x", x), rep("y", y));
    for metric in [
        "linear_cka",
        "linear_cka_debiased",
        "rsa",
        "procrustes_angular",
        "svcca:k=4",
        "mutual_knn:k=5",
    ] {
        let spec: MetricSpec = metric.parse().unwrap();
        let cell = compare_pair(&a, &b, &spec, &options(0, 200, 8)).unwrap();
        let (low, high) = (cell.ci_low.unwrap(), cell.ci_high.unwrap());
        assert!(low.is_finite(), "{metric}: {low}");
        assert!(high.is_finite(), "{metric}: {high}");
        assert!(low < high, "{metric}: [{low}, {high}]");
        assert!(
            low <= cell.value + 0.05 && cell.value - 0.05 <= high,
            "{metric}: {} not near [{low}, {high}]",
            cell.value
        );
        assert_eq!(cell.p_value, None);
        assert_eq!(cell.n_bootstrap, 200);
    }
}

#[test]
fn self_comparison_interval_is_a_point() {
    let a = rep("x", normal(40, 5, 9));
    let spec: MetricSpec = "linear_cka".parse().unwrap();
    let cell = compare_pair(&a, &a, &spec, &options(0, 50, 1)).unwrap();
    assert!((cell.ci_low.unwrap() - 1.0).abs() < 1e-12);
    assert!((cell.ci_high.unwrap() - 1.0).abs() < 1e-12);
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let ma = a.iter().sum::<f64>() / a.len() as f64;
    let mb = b.iter().sum::<f64>() / b.len() as f64;
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

fn sq_dist(x: &Array2<f64>, i: usize, j: usize) -> f64 {
    x.row(i)
        .iter()
        .zip(x.row(j).iter())
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / x.ncols() as f64
}

#[test]
fn rsa_bootstrap_leaves_out_pairs_of_a_stimulus_with_its_copy() {
    let n = 25;
    let x = normal(n, 4, 10);
    let y = &x + &(normal(n, 4, 11) * 0.5);
    let seed = 3;
    // Resample 0, reproduced from the public draw function.
    let rows = bootstrap_rows(n, seed, 0);
    assert!(
        rows.iter()
            .enumerate()
            .any(|(a, r)| rows[a + 1..].contains(r)),
        "the draw repeats a stimulus"
    );
    let (mut dx, mut dy) = (Vec::new(), Vec::new());
    for a in 0..n {
        for b in (a + 1)..n {
            if rows[a] != rows[b] {
                dx.push(sq_dist(&x, rows[a], rows[b]));
                dy.push(sq_dist(&y, rows[a], rows[b]));
            }
        }
    }
    let want = pearson(&dx, &dy);
    let spec: MetricSpec = "rsa:rdm=euclidean,compare=pearson".parse().unwrap();
    let cell = compare_pair(&rep("x", x), &rep("y", y), &spec, &options(0, 1, seed)).unwrap();
    assert!(
        (cell.ci_low.unwrap() - want).abs() < 1e-12,
        "{:?} vs {want}",
        cell.ci_low
    );
    assert_eq!(cell.ci_low, cell.ci_high);
}
