//! Synthetic layers and the Python interpreter shared by the benchmarks.

use std::path::Path;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repatlas::metrics::Representation;
use repatlas::npy::write_npy;

/// Returns a `rows x cols` matrix of standard normal draws (Box-Muller).
pub fn normal(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

/// Builds `layers` synthetic layers of `width` columns: each is a noisy
/// linear map of the shared `signal`, with noise growing with depth, so
/// that the measures are neither 0 nor 1.
pub fn model(
    prefix: &str,
    layers: usize,
    width: usize,
    signal: &Array2<f64>,
    seed: u64,
) -> Vec<Representation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..layers)
        .map(|l| {
            let map = normal(signal.ncols(), width, &mut rng);
            let noise = normal(signal.nrows(), width, &mut rng);
            let scale = 0.5 + 2.0 * l as f64 / layers as f64;
            Representation::new(format!("{prefix}.{l}"), signal.dot(&map) + noise * scale)
        })
        .collect()
}

/// Builds the two synthetic models of the benchmarks over `n` stimuli:
/// 31 layers of width 576 and 25 of width 896, the layer counts and
/// widths of SmolLM2-135M and Qwen2.5-0.5B.
pub fn model_pair(
    n: usize,
    layers_a: usize,
    layers_b: usize,
) -> (Vec<Representation>, Vec<Representation>) {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let signal = normal(n, 64, &mut rng);
    (
        model("a", layers_a, 576, &signal, 1),
        model("b", layers_b, 896, &signal, 2),
    )
}

/// Writes the layers as `dir/a_XX.npy` and `dir/b_XX.npy` for the Python
/// peers.
pub fn write_layers(dir: &Path, a: &[Representation], b: &[Representation]) {
    for (prefix, layers) in [("a", a), ("b", b)] {
        for (l, rep) in layers.iter().enumerate() {
            let path = dir.join(format!("{prefix}_{l:02}.npy"));
            write_npy(&path, rep.data.view()).expect("write layer");
        }
    }
}

/// Returns `$REPATLAS_PYTHON`, else `.venv/bin/python`, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("REPATLAS_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_string()
}
