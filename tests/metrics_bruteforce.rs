//! Measures without a stored reference value, checked against direct
//! implementations written here with plain loops: minibatch CKA, unbiased
//! RBF CKA, cosine RDMs, rank comparisons with ties, and CKNNA.

use ndarray::{s, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::MetricSpec;

fn normal(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

fn correlated(n: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let x = normal(n, 6, seed);
    let y = x.dot(&normal(6, 9, seed + 1)) + normal(n, 9, seed + 2);
    (x, y)
}

fn compute(name: &str, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let spec: MetricSpec = name.parse().unwrap();
    spec.compute(x.view(), y.view()).unwrap()
}

/// Song et al. 2012 eq. 5 on uncentred kernels, with explicit loops.
fn hsic_song(k: &Array2<f64>, l: &Array2<f64>) -> f64 {
    let n = k.nrows();
    let kt = |i: usize, j: usize| if i == j { 0.0 } else { k[[i, j]] };
    let lt = |i: usize, j: usize| if i == j { 0.0 } else { l[[i, j]] };
    let mut trace = 0.0;
    let (mut sum_k, mut sum_l, mut row_term) = (0.0, 0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            trace += kt(i, j) * lt(j, i);
            sum_k += kt(i, j);
            sum_l += lt(i, j);
        }
    }
    for i in 0..n {
        for j in 0..n {
            for m in 0..n {
                row_term += kt(i, m) * lt(m, j);
            }
        }
    }
    let nf = n as f64;
    (trace + sum_k * sum_l / ((nf - 1.0) * (nf - 2.0)) - 2.0 * row_term / (nf - 2.0))
        / (nf * (nf - 3.0))
}

fn linear_kernel(x: ArrayView2<f64>) -> Array2<f64> {
    x.dot(&x.t())
}

#[test]
fn minibatch_uneven_batches_equal_direct_average() {
    let (x, y) = correlated(137, 1);
    let mut cross = 0.0;
    let mut self_x = 0.0;
    let mut self_y = 0.0;
    for (start, end) in [(0, 100), (100, 137)] {
        let kx = linear_kernel(x.slice(s![start..end, ..]));
        let ky = linear_kernel(y.slice(s![start..end, ..]));
        cross += hsic_song(&kx, &ky) / 2.0;
        self_x += hsic_song(&kx, &kx) / 2.0;
        self_y += hsic_song(&ky, &ky) / 2.0;
    }
    let want = cross / (self_x * self_y).sqrt();
    let got = compute("minibatch_cka:batch=100", &x, &y);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

#[test]
fn minibatch_with_one_batch_is_debiased_cka() {
    let (x, y) = correlated(137, 2);
    let one_batch = compute("minibatch_cka:batch=200", &x, &y);
    let debiased = compute("linear_cka_debiased", &x, &y);
    assert!(
        (one_batch - debiased).abs() < 1e-12,
        "{one_batch} vs {debiased}"
    );
}

#[test]
fn debiased_linear_cka_equals_song_formula() {
    let (x, y) = correlated(30, 3);
    let (kx, ky) = (linear_kernel(x.view()), linear_kernel(y.view()));
    let want = hsic_song(&kx, &ky) / (hsic_song(&kx, &kx) * hsic_song(&ky, &ky)).sqrt();
    let got = compute("linear_cka_debiased", &x, &y);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

fn rbf_kernel(x: &Array2<f64>, f: f64) -> Array2<f64> {
    let n = x.nrows();
    let d2 = |i: usize, j: usize| -> f64 {
        x.row(i)
            .iter()
            .zip(x.row(j).iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    };
    let mut pairs: Vec<f64> = Vec::new();
    for i in 0..n {
        for j in (i + 1)..n {
            pairs.push(d2(i, j));
        }
    }
    pairs.sort_by(f64::total_cmp);
    let m = pairs.len();
    let median = if m % 2 == 1 {
        pairs[m / 2]
    } else {
        0.5 * (pairs[m / 2 - 1] + pairs[m / 2])
    };
    let sigma2 = f * f * median;
    Array2::from_shape_fn((n, n), |(i, j)| (-d2(i, j) / (2.0 * sigma2)).exp())
}

#[test]
fn debiased_rbf_cka_equals_song_formula() {
    let (x, y) = correlated(25, 4);
    let (kx, ky) = (rbf_kernel(&x, 0.7), rbf_kernel(&y, 0.7));
    let want = hsic_song(&kx, &ky) / (hsic_song(&kx, &kx) * hsic_song(&ky, &ky)).sqrt();
    let got = compute("rbf_cka_debiased:f=0.7", &x, &y);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

fn upper(d: &Array2<f64>) -> Vec<f64> {
    let n = d.nrows();
    (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .map(|(i, j)| d[[i, j]])
        .collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let ma = a.iter().sum::<f64>() / a.len() as f64;
    let mb = b.iter().sum::<f64>() / b.len() as f64;
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

fn cosine_rdm(x: &Array2<f64>) -> Array2<f64> {
    let n = x.nrows();
    Array2::from_shape_fn((n, n), |(i, j)| {
        let (a, b) = (x.row(i), x.row(j));
        1.0 - a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
    })
}

#[test]
fn cosine_rdm_compared_by_pearson() {
    let (x, y) = correlated(20, 5);
    let want = pearson(&upper(&cosine_rdm(&x)), &upper(&cosine_rdm(&y)));
    let got = compute("rsa:rdm=cosine,compare=pearson", &x, &y);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

fn average_ranks(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|&a| {
            let below = v.iter().filter(|&&b| b < a).count() as f64;
            let equal = v.iter().filter(|&&b| b == a).count() as f64;
            below + (equal + 1.0) / 2.0
        })
        .collect()
}

fn squared_euclidean_rdm(x: &Array2<f64>) -> Array2<f64> {
    let n = x.nrows();
    let p = x.ncols() as f64;
    Array2::from_shape_fn((n, n), |(i, j)| {
        x.row(i)
            .iter()
            .zip(x.row(j).iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / p
    })
}

/// Integer-valued patterns, whose Euclidean RDMs have many tied entries.
fn tied_pair() -> (Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = Array2::from_shape_simple_fn((14, 3), || rng.random_range(0..3) as f64);
    let y = Array2::from_shape_simple_fn((14, 2), || rng.random_range(0..3) as f64);
    (x, y)
}

#[test]
fn rank_comparisons_with_ties() {
    let (x, y) = tied_pair();
    let (dx, dy) = (
        upper(&squared_euclidean_rdm(&x)),
        upper(&squared_euclidean_rdm(&y)),
    );
    let (rx, ry) = (average_ranks(&dx), average_ranks(&dy));
    let m = dx.len() as f64;

    let spearman = pearson(&rx, &ry);
    let got = compute("rsa:rdm=euclidean,compare=spearman", &x, &y);
    assert!(
        (got - spearman).abs() < 1e-9,
        "spearman {got} vs {spearman}"
    );

    let mean = (m + 1.0) / 2.0;
    let rho_a = 12.0
        * rx.iter()
            .zip(&ry)
            .map(|(a, b)| (a - mean) * (b - mean))
            .sum::<f64>()
        / (m * m * m - m);
    let got = compute("rsa:rdm=euclidean,compare=rho_a", &x, &y);
    assert!((got - rho_a).abs() < 1e-9, "rho_a {got} vs {rho_a}");
    assert!(
        (rho_a - spearman).abs() > 1e-6,
        "ties should separate rho-a from Spearman"
    );

    let mut s = 0.0;
    for i in 0..dx.len() {
        for j in (i + 1)..dx.len() {
            let a = (dx[i] - dx[j]).partial_cmp(&0.0).unwrap() as i32;
            let b = (dy[i] - dy[j]).partial_cmp(&0.0).unwrap() as i32;
            s += (a * b) as f64;
        }
    }
    let tau_a = s / (m * (m - 1.0) / 2.0);
    let got = compute("rsa:rdm=euclidean,compare=kendall_tau_a", &x, &y);
    assert!((got - tau_a).abs() < 1e-12, "tau_a {got} vs {tau_a}");
}

/// `k` most cosine-similar other rows, ties to the lower index.
fn neighbours(sim: &Array2<f64>, k: usize) -> Array2<f64> {
    let n = sim.nrows();
    let mut mask = Array2::zeros((n, n));
    for i in 0..n {
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| sim[[i, b]].total_cmp(&sim[[i, a]]).then(a.cmp(&b)));
        for &j in &order[..k] {
            mask[[i, j]] = 1.0;
        }
    }
    mask
}

/// The unbiased HSIC of possibly non-symmetric matrices, as written in
/// Huh et al.'s reference code: `Σ K̃∘L̃ᵀ` and `Σ K̃L̃`.
fn hsic_dense(k: &Array2<f64>, l: &Array2<f64>) -> f64 {
    let n = k.nrows() as f64;
    let mut kt = k.clone();
    let mut lt = l.clone();
    kt.diag_mut().fill(0.0);
    lt.diag_mut().fill(0.0);
    let trace = (&kt * &lt.t()).sum();
    let row_term = kt.dot(&lt).sum();
    (trace + kt.sum() * lt.sum() / ((n - 1.0) * (n - 2.0)) - 2.0 * row_term / (n - 2.0))
        / (n * (n - 3.0))
}

fn cknna_dense(x: &Array2<f64>, y: &Array2<f64>, k: usize) -> f64 {
    let normalise = |a: &Array2<f64>| {
        let mut z = a.clone();
        for mut row in z.rows_mut() {
            let norm = row.dot(&row).sqrt();
            row /= norm;
        }
        z
    };
    let (zx, zy) = (normalise(x), normalise(y));
    let (kx, ky) = (zx.dot(&zx.t()), zy.dot(&zy.t()));
    let (mx, my) = (neighbours(&kx, k), neighbours(&ky, k));
    let mutual = &mx * &my;
    let cross = hsic_dense(&(&mutual * &kx), &(&mutual * &ky));
    let self_x = hsic_dense(&(&mx * &kx), &(&mx * &kx));
    let self_y = hsic_dense(&(&my * &ky), &(&my * &ky));
    cross / (self_x * self_y).sqrt()
}

#[test]
fn cknna_equals_dense_masked_hsic() {
    let (x, y) = correlated(40, 7);
    for k in [3usize, 10] {
        let want = cknna_dense(&x, &y, k);
        let got = compute(&format!("cknna:k={k}"), &x, &y);
        assert!((got - want).abs() < 1e-9, "k={k}: {got} vs {want}");
    }
}

#[test]
fn mutual_knn_counts_shared_neighbours() {
    let (x, y) = correlated(30, 8);
    let cos = |a: &Array2<f64>| {
        let d = cosine_rdm(a);
        d.mapv(|v| 1.0 - v)
    };
    let k = 4;
    let shared = (&neighbours(&cos(&x), k) * &neighbours(&cos(&y), k)).sum();
    let want = shared / (30 * k) as f64;
    let got = compute("mutual_knn:k=4", &x, &y);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn duplicate_rows_are_neighbours_but_self_is_not() {
    // Rows 0 and 1 are identical: each is the other's nearest neighbour,
    // and neither lists itself.
    let mut x = normal(12, 4, 9);
    let first = x.row(0).to_owned();
    x.row_mut(1).assign(&first);
    let sim = cosine_rdm(&x).mapv(|v| 1.0 - v);
    let mask = neighbours(&sim, 1);
    assert_eq!(mask[[0, 1]], 1.0);
    assert_eq!(mask[[1, 0]], 1.0);
    let got = compute("mutual_knn:k=1", &x, &x);
    assert_eq!(got, 1.0);
    let y = normal(12, 4, 10);
    let want = (&mask * &neighbours(&cosine_rdm(&y).mapv(|v| 1.0 - v), 1)).sum() / 12.0;
    assert!((compute("mutual_knn:k=1", &x, &y) - want).abs() < 1e-12);
}
