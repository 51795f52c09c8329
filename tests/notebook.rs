//! Runs notebooks/explore.ipynb headless on a parquet written by write_parquet.
//!
//! Uses `$REPATLAS_PYTHON` when set, else `python3`. That interpreter needs
//! the packages of notebooks/requirements.txt.

use std::path::{Path, PathBuf};
use std::process::Command;

use repatlas::results::{write_parquet, ResultRow};

fn python() -> String {
    std::env::var("REPATLAS_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Fails the test with the install command when the notebook's packages are missing.
fn require_notebook_packages(python: &str) {
    let probe = Command::new(python)
        .args(["-c", "import polars, matplotlib, numpy"])
        .output()
        .unwrap_or_else(|e| {
            panic!("starting {python} failed: {e}. Set REPATLAS_PYTHON to a Python 3")
        });
    assert!(
        probe.status.success(),
        "{python} cannot import polars, matplotlib and numpy: run \
         `pip install -r notebooks/requirements.txt` (or point REPATLAS_PYTHON at a venv \
         that has them)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// Builds a 7 x 5 grid under a similarity and a distance metric.
fn small_rows() -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for (metric, kind) in [("linear_cka", "similarity"), ("procrustes", "distance")] {
        for layer_a in 0..7u32 {
            for layer_b in 0..5u32 {
                let depth_a = f64::from(layer_a) / 6.0;
                let depth_b = f64::from(layer_b) / 4.0;
                let similarity = (-(depth_a - depth_b).powi(2) / 0.05).exp();
                let value = if kind == "distance" {
                    1.0 - similarity
                } else {
                    similarity
                };
                rows.push(ResultRow {
                    model_a: "gpt2".into(),
                    layer_a,
                    layer_a_name: format!("resid_post.{layer_a}"),
                    depth_a,
                    model_b: "EleutherAI/pythia-70m".into(),
                    layer_b,
                    layer_b_name: format!("resid_post.{layer_b}"),
                    depth_b,
                    metric: metric.into(),
                    metric_kind: kind.into(),
                    value,
                    n_stimuli: 64,
                    manifest_a: "a".repeat(64),
                    manifest_b: "b".repeat(64),
                    p_value: (layer_b == 0).then_some(0.01),
                    ci_low: None,
                    ci_high: None,
                    n_permutations: if layer_b == 0 { 100 } else { 0 },
                    n_bootstrap: 0,
                });
            }
        }
    }
    rows
}

fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/run_notebook.py")
}

#[test]
fn notebook_redraws_figures() {
    let python = python();
    require_notebook_packages(&python);

    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.parquet");
    write_parquet(&small_rows(), &results).unwrap();
    let out = dir.path().join("figures");

    let run = Command::new(&python)
        .arg(runner())
        .env("REPATLAS_RESULTS", &results)
        .env("REPATLAS_NOTEBOOK_OUT", &out)
        .env_remove("REPATLAS_METRIC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "runner failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    for name in ["heatmap.png", "best_match.png"] {
        let path = out.join(name);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} missing: {e}\n{stdout}", path.display()))
            .len();
        assert!(size > 1000, "{} has only {size} bytes", path.display());
    }
    assert!(
        stdout.contains("gpt2 vs EleutherAI/pythia-70m, linear_cka: 35 cells"),
        "{stdout}"
    );
}

#[test]
fn notebook_reports_missing_results() {
    let python = python();
    require_notebook_packages(&python);

    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(&python)
        .arg(runner())
        .env("REPATLAS_RESULTS", dir.path().join("absent.parquet"))
        .env("REPATLAS_NOTEBOOK_OUT", dir.path().join("figures"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("absent.parquet not found"), "{stderr}");
}
