//! Parquet and JSON-lines storage of result rows, and best-match summaries.

use std::fs;
use std::path::Path;

use polars::prelude::{Column, DataFrame, ParquetReader, ParquetWriter, SerReader};
use repatlas::results::{
    read_parquet, summarize, write_jsonl, write_parquet, ResultRow, ResultsError,
};

/// Builds a row of a comparison of `gpt2` with `pythia-70m` under `metric`.
fn row(metric: &str, kind: &str, layer_a: u32, layer_b: u32, value: f64) -> ResultRow {
    ResultRow {
        model_a: "gpt2".into(),
        layer_a,
        layer_a_name: format!("resid_post.{layer_a}"),
        depth_a: f64::from(layer_a) / 2.0,
        model_b: "EleutherAI/pythia-70m".into(),
        layer_b,
        layer_b_name: format!("resid_post.{layer_b}"),
        depth_b: f64::from(layer_b) / 3.0,
        metric: metric.into(),
        metric_kind: kind.into(),
        value,
        n_stimuli: 512,
        manifest_a: "a".repeat(64),
        manifest_b: "b".repeat(64),
        p_value: None,
        ci_low: None,
        ci_high: None,
        n_permutations: 0,
        n_bootstrap: 0,
    }
}

/// Rows with every optional field set in some rows and unset in others.
fn varied_rows() -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for (i, layer_a) in (0..3).enumerate() {
        for layer_b in 0..4 {
            let mut r = row(
                "linear_cka",
                "similarity",
                layer_a,
                layer_b,
                0.1 * f64::from(layer_b),
            );
            if (i + layer_b as usize) % 2 == 0 {
                r.p_value = Some(0.001 * f64::from(layer_b + 1));
                r.n_permutations = 1000;
            }
            if layer_b == 2 {
                r.ci_low = Some(-0.25);
                r.ci_high = Some(0.75);
                r.n_bootstrap = 200;
            }
            rows.push(r);
        }
    }
    let mut odd = row(
        "rsa:rdm=correlation,compare=spearman",
        "similarity",
        1,
        2,
        -0.5,
    );
    odd.model_a = "modèle/Ünïcode 名前".into();
    odd.n_stimuli = u64::MAX;
    odd.n_permutations = u32::MAX;
    odd.ci_high = Some(f64::MIN_POSITIVE);
    rows.push(odd);
    rows
}

#[test]
fn parquet_round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.parquet");
    let rows = varied_rows();
    write_parquet(&rows, &path).unwrap();
    let read = read_parquet(&path).unwrap();
    assert_eq!(read.len(), rows.len());
    assert_eq!(read, rows);
    assert!(read.iter().any(|r| r.p_value.is_none()));
    assert!(read.iter().any(|r| r.p_value.is_some()));
}

#[test]
fn parquet_round_trip_of_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    write_parquet(&[], &path).unwrap();
    assert_eq!(read_parquet(&path).unwrap(), Vec::<ResultRow>::new());
}

#[test]
fn parquet_write_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.parquet");
    write_parquet(&varied_rows(), &path).unwrap();
    // A second write replaces the first.
    let one = vec![row("linear_cka", "similarity", 0, 0, 1.0)];
    write_parquet(&one, &path).unwrap();

    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["results.parquet".to_owned()]);
    assert_eq!(read_parquet(&path).unwrap(), one);
}

#[test]
fn parquet_failed_write_removes_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    // Renaming a file onto a non-empty directory fails, after the temp file is complete.
    let target = dir.path().join("occupied");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"x").unwrap();

    let error = write_parquet(&varied_rows(), &target).unwrap_err();
    assert!(matches!(error, ResultsError::Io { .. }), "{error}");
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["occupied".to_owned()]);
}

/// Writes the columns of `varied_rows` through polars, with `edit` applied first.
fn write_edited_frame(path: &Path, edit: impl FnOnce(&mut Vec<Column>)) {
    let dir = path.parent().unwrap();
    let source = dir.join("source.parquet");
    write_parquet(&varied_rows(), &source).unwrap();
    let frame = ParquetReader::new(fs::File::open(&source).unwrap())
        .finish()
        .unwrap();
    let mut columns: Vec<Column> = frame.columns().to_vec();
    edit(&mut columns);
    let mut edited = DataFrame::new_infer_height(columns).unwrap();
    let file = fs::File::create(path).unwrap();
    ParquetWriter::new(file).finish(&mut edited).unwrap();
}

#[test]
fn read_parquet_names_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_metric.parquet");
    write_edited_frame(&path, |columns| columns.retain(|c| c.name() != "metric"));

    let error = read_parquet(&path).unwrap_err();
    match &error {
        ResultsError::MissingColumn { path: p, column } => {
            assert_eq!(p, &path);
            assert_eq!(*column, "metric");
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("no_metric.parquet"), "{message}");
    assert!(message.contains("`metric`"), "{message}");
}

#[test]
fn read_parquet_names_mistyped_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int_layers.parquet");
    write_edited_frame(&path, |columns| {
        let position = columns.iter().position(|c| c.name() == "layer_a").unwrap();
        let as_i64: Vec<i64> = (0..columns[0].len() as i64).collect();
        columns[position] = Column::new("layer_a".into(), as_i64);
    });

    let error = read_parquet(&path).unwrap_err();
    match &error {
        ResultsError::ColumnType {
            column,
            expected,
            actual,
            ..
        } => {
            assert_eq!(*column, "layer_a");
            assert_eq!(expected, "u32");
            assert_eq!(actual, "i64");
        }
        other => panic!("expected ColumnType, got {other:?}"),
    }
    assert!(error.to_string().contains("int_layers.parquet"));
}

#[test]
fn read_parquet_rejects_null_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("null_value.parquet");
    write_edited_frame(&path, |columns| {
        let position = columns.iter().position(|c| c.name() == "value").unwrap();
        let mut values: Vec<Option<f64>> = vec![Some(0.5); columns[0].len()];
        values[3] = None;
        columns[position] = Column::new("value".into(), values);
    });

    match read_parquet(&path).unwrap_err() {
        ResultsError::NullValue { column, row, .. } => {
            assert_eq!(column, "value");
            assert_eq!(row, 3);
        }
        other => panic!("expected NullValue, got {other:?}"),
    }
}

#[test]
fn read_parquet_of_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.parquet");
    let message = read_parquet(&path).unwrap_err().to_string();
    assert!(message.contains("absent.parquet"), "{message}");
}

#[test]
fn jsonl_lines_parse_back() {
    let rows = varied_rows();
    let mut out = Vec::new();
    write_jsonl(&rows, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n'));

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), rows.len());
    for (line, expected) in lines.iter().zip(&rows) {
        let parsed: ResultRow = serde_json::from_str(line).unwrap();
        assert_eq!(&parsed, expected);
        let object: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(object.as_object().unwrap().len(), 19);
        if expected.p_value.is_none() {
            assert!(object["p_value"].is_null());
        }
    }
}

/// Builds a 3 x 4 similarity grid with best matches (0, 0), (1, 1) by tie over 2, (2, 3).
fn known_grid(metric: &str, kind: &str) -> Vec<ResultRow> {
    let similarity = [
        [0.9, 0.5, 0.2, 0.1],
        [0.3, 0.8, 0.8, 0.4],
        [0.1, 0.2, 0.6, 0.7],
    ];
    let mut rows = Vec::new();
    for (a, values) in similarity.iter().enumerate() {
        for (b, &v) in values.iter().enumerate() {
            let value = if kind == "distance" { 1.0 - v } else { v };
            rows.push(row(metric, kind, a as u32, b as u32, value));
        }
    }
    rows
}

/// Pearson r of depths (0, 0), (0.5, 1/3), (1, 1), worked by hand: 9 / (2 sqrt 21).
fn known_depth_correlation() -> f64 {
    9.0 / (2.0 * 21f64.sqrt())
}

#[test]
fn summarize_similarity_grid() {
    let summaries = summarize(&known_grid("linear_cka", "similarity"));
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0];
    assert_eq!(s.model_a, "gpt2");
    assert_eq!(s.model_b, "EleutherAI/pythia-70m");
    assert_eq!(s.metric, "linear_cka");
    assert_eq!(s.n_layers_a, 3);
    assert_eq!(s.n_layers_b, 4);
    assert_eq!(s.best_match, vec![(0, 0, 0.9), (1, 1, 0.8), (2, 3, 0.7)]);
    assert!((s.mean_best_match - 0.8).abs() < 1e-12);
    assert!((s.depth_correlation - known_depth_correlation()).abs() < 1e-12);
}

#[test]
fn summarize_distance_takes_minimum() {
    let mut rows = known_grid("procrustes", "distance");
    // Reversed order puts layer 2 before layer 1, so the tie rule decides.
    rows.reverse();
    let s = &summarize(&rows)[0];
    let layers: Vec<(u32, u32)> = s.best_match.iter().map(|&(a, b, _)| (a, b)).collect();
    assert_eq!(layers, vec![(0, 0), (1, 1), (2, 3)]);
    assert!((s.best_match[0].2 - 0.1).abs() < 1e-12);
    assert!((s.mean_best_match - 0.2).abs() < 1e-12);
    assert!((s.depth_correlation - known_depth_correlation()).abs() < 1e-12);
}

#[test]
fn summarize_skips_nan_and_groups_metrics() {
    let mut rows = known_grid("linear_cka", "similarity");
    rows[0].value = f64::NAN; // layer 0 of A, layer 0 of B
    rows.extend(known_grid("cka_rbf", "similarity"));

    let summaries = summarize(&rows);
    let metrics: Vec<&str> = summaries.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(metrics, vec!["cka_rbf", "linear_cka"]);
    assert_eq!(summaries[0].best_match[0], (0, 0, 0.9));
    assert_eq!(summaries[1].best_match[0], (0, 1, 0.5));
}

#[test]
fn summarize_constant_depth_gives_nan_correlation() {
    let rows = vec![row("linear_cka", "similarity", 0, 1, 0.4)];
    let s = &summarize(&rows)[0];
    assert_eq!(s.best_match, vec![(0, 1, 0.4)]);
    assert!(s.depth_correlation.is_nan());
}
