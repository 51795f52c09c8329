//! Full-grid timings per measure, with a NumPy implementation of the same
//! formulas timed in the same run (`benches/grid_numpy.py`).
//!
//! Two synthetic models, 31 layers of width 576 and 25 layers of width 896
//! (the layer counts and widths of SmolLM2-135M and Qwen2.5-0.5B), over
//! n = 1024 stimuli. Each layer is a noisy linear map of a shared 64-d
//! signal, so the measures are neither 0 nor 1.
//!
//! ```text
//! cargo bench --bench grid                    # every measure
//! cargo bench --bench grid -- linear_cka rsa  # measures whose names start so
//! REPATLAS_BENCH_N=256 cargo bench --bench grid
//! ```
//!
//! The layers are written as `.npy` files to a temporary folder; the NumPy
//! script reads the same files, times its own grid, and writes its values,
//! which are compared with the Rust grid cell by cell. The Python
//! interpreter is `$REPATLAS_PYTHON`, else `.venv/bin/python`, else
//! `python3`; without NumPy the NumPy column reads "n/a".

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{model_pair, python, write_layers};
use repatlas::metrics::{compare_grid, GridOptions, MetricSpec};
use repatlas::npy::read_npy_values;

const MEASURES: &[&str] = &[
    "linear_cka",
    "linear_cka_debiased",
    "rbf_cka:f=1.0",
    "rbf_cka_debiased:f=1.0",
    "minibatch_cka:batch=256",
    "rsa:rdm=correlation,compare=spearman",
    "rsa:rdm=euclidean,compare=pearson",
    "rsa:rdm=correlation,compare=kendall_tau_a",
    "procrustes_angular",
    "svcca:k=10",
    "svcca:var=0.99",
    "pwcca",
    "cca_mean_sq",
    "mutual_knn:k=10",
    "cknna:k=10",
];

/// Runs the NumPy grid for `measure`; returns its seconds and values.
fn numpy_grid(dir: &Path, measure: &str, la: usize, lb: usize) -> Option<(f64, Vec<f64>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/grid_numpy.py");
    let out = dir.join("numpy_values.npy");
    let output = Command::new(python())
        .arg(&script)
        .arg(dir)
        .arg(measure)
        .arg(la.to_string())
        .arg(lb.to_string())
        .arg(&out)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "numpy {measure}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    let seconds: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    let (_, values) = read_npy_values(&out).ok()?;
    Some((seconds, values))
}

fn main() {
    // `cargo bench` passes `--bench`; the other arguments filter measures.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = std::env::var("REPATLAS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let (a, b) = model_pair(n, 31, 25);
    let dir = tempfile::tempdir().expect("temporary folder");
    write_layers(dir.path(), &a, &b);

    println!(
        "grid 31 x 25 layers, n = {n}, d = 576 vs 896, {} rayon threads, OPENBLAS_NUM_THREADS={}",
        rayon::current_num_threads(),
        std::env::var("OPENBLAS_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!("| measure | repatlas (s) | NumPy (s) | max abs diff |");
    println!("|---|---:|---:|---:|");
    for name in MEASURES {
        if !filters.is_empty() && !filters.iter().any(|f| name.starts_with(f.as_str())) {
            continue;
        }
        let spec: MetricSpec = name.parse().expect("valid measure");
        let start = Instant::now();
        let cells = compare_grid(&a, &b, std::slice::from_ref(&spec), &GridOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rust_s = start.elapsed().as_secs_f64();
        let (numpy_s, diff) = match numpy_grid(dir.path(), name, a.len(), b.len()) {
            Some((s, values)) if values.len() == cells.len() => {
                let diff = cells
                    .iter()
                    .zip(&values)
                    .map(|(c, v)| (c.value - v).abs())
                    .fold(0.0, f64::max);
                (format!("{s:.2}"), format!("{diff:.1e}"))
            }
            _ => ("n/a".to_string(), "n/a".to_string()),
        };
        println!("| `{spec}` | {rust_s:.2} | {numpy_s} | {diff} |");
    }
}
