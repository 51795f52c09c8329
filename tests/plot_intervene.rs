//! Intervention figures drawn from one real SmolLM2 intervention run (shared
//! by the tests of this file) and from synthetic rows for the edge cases,
//! plus the parquet round trip of intervention rows.
//!
//! Set `REPATLAS_KEEP_FIGURES=DIR` to keep the figures of the real run in DIR.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use repatlas::capture::{self, CaptureOptions, Pooling, WeightMode};
use repatlas::compare::{self, CompareOptions, TapChoice};
use repatlas::intervene::{self, InterventionOptions, InterventionRow, VariantSet};
use repatlas::metrics::GridOptions;
use repatlas::plot::{
    intervention_figures, shuffle_ranges, side_by_side, skip_curve, swap_matrix, PlotError,
    FIGURE_SIZE, SIDE_BY_SIDE_SIZE,
};
use repatlas::results::ResultRow;

const MODEL: &str = "smollm2";
const N_BLOCKS: u32 = 30;
const VARIANTS: [&str; 5] = [
    "swap:0,1",
    "swap:5,9",
    "swap:28,29",
    "skip:each",
    "shuffle:10-14",
];

/// Runs the interventions on SmolLM2 over 3 stimuli once and returns the rows.
fn run_rows() -> &'static [InterventionRow] {
    static ROWS: OnceLock<Vec<InterventionRow>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let opts = InterventionOptions {
            model: capture::source::ModelSpec::Gguf(common::require_model(common::SMOLLM2)),
            offline: true,
            model_name: Some(MODEL.into()),
            stimuli: common::fixture("stimuli/small.jsonl"),
            limit: Some(3),
            weight_mode: WeightMode::Dequantize,
            variants: VARIANTS
                .iter()
                .map(|v| (v.to_string(), v.parse::<VariantSet>().unwrap()))
                .collect(),
            seeds: 2,
            threshold: 0.9,
            scan_stride: 1,
            max_batch_tokens: 4096,
            max_tokens: 256,
            padding: None,
            progress: false,
            device: Default::default(),
            journal: None,
        };
        intervene::run(&opts).unwrap().rows
    })
}

/// Captures SmolLM2 over the 12 small stimuli once and returns the linear
/// CKA between all its layers.
fn cka_rows() -> &'static [ResultRow] {
    static ROWS: OnceLock<Vec<ResultRow>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        capture::capture(&CaptureOptions {
            model: capture::source::ModelSpec::Gguf(common::require_model(common::SMOLLM2)),
            offline: true,
            model_name: Some(MODEL.into()),
            stimuli: common::fixture("stimuli/small.jsonl"),
            limit: None,
            out: run.clone(),
            pooling: Pooling::Mean,
            padding: None,
            weight_mode: WeightMode::Dequantize,
            taps: Vec::new(),
            max_batch_tokens: 4096,
            max_batch_rows: 64,
            max_tokens: Some(256),
            overwrite: false,
            progress: false,
            device: Default::default(),
        })
        .unwrap();
        let opts = CompareOptions {
            metrics: vec!["linear_cka".parse().unwrap()],
            grid: GridOptions::default(),
            tap: TapChoice::ResidPost,
            include_final_norm: false,
            layers_a: None,
            layers_b: None,
        };
        compare::compare(&run, &run, &opts).unwrap()
    })
}

/// Returns the output folder: `$REPATLAS_KEEP_FIGURES` when set, else a
/// temporary one (kept alive by the returned guard).
fn figure_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("REPATLAS_KEEP_FIGURES") {
        Some(dir) => (None, PathBuf::from(dir)),
        None => {
            let temp = tempfile::tempdir().unwrap();
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    }
}

fn decode_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("decoding {} failed: {e}", path.display()))
        .to_rgb8()
}

/// Checks that the PNG has `size` and is a picture rather than one colour.
fn check_png(path: &Path, size: (u32, u32)) {
    let png = decode_png(path);
    assert_eq!(png.dimensions(), size, "{}", path.display());
    let distinct: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() > 50,
        "{}: only {} colours",
        path.display(),
        distinct.len()
    );
}

fn read_svg(path: &Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    svg
}

/// One filled rectangle of an SVG written by plotters.
#[derive(Debug, Clone, PartialEq)]
struct SvgRect {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    fill: String,
}

/// Parses the `<rect>` elements that have a fill colour.
fn svg_rects(svg: &str) -> Vec<SvgRect> {
    let attribute = |element: &str, name: &str| -> Option<String> {
        let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + element[start..].find('"')?;
        Some(element[start..end].to_owned())
    };
    svg.split("<rect")
        .skip(1)
        .filter_map(|element| {
            let element = &element[..element.find('>')?];
            let number = |name| attribute(element, name)?.parse::<f64>().ok();
            Some(SvgRect {
                x: number("x")?.round() as i64,
                y: number("y")?.round() as i64,
                width: number("width")?.round() as i64,
                height: number("height")?.round() as i64,
                fill: attribute(element, "fill")?.to_ascii_lowercase(),
            })
        })
        .filter(|r| r.fill.starts_with('#'))
        .collect()
}

/// Cells of a heatmap as a grid, indexed `[column][row]` with row 0 at the
/// bottom: the `n * n` square-ish rects (5 to 200 pixels a side, which
/// leaves out the background and the colour-bar strips) within `x_range`.
fn cell_grid(svg: &str, n: usize, x_range: std::ops::Range<i64>) -> Vec<Vec<SvgRect>> {
    let cells: Vec<SvgRect> = svg_rects(svg)
        .into_iter()
        .filter(|r| x_range.contains(&r.x))
        .filter(|r| (5..200).contains(&r.width) && (5..200).contains(&r.height))
        .collect();
    assert_eq!(cells.len(), n * n, "expected {n} x {n} cells");

    let mut xs: Vec<i64> = cells.iter().map(|r| r.x).collect();
    xs.sort();
    xs.dedup();
    assert_eq!(xs.len(), n, "cell columns at {xs:?}");
    xs.iter()
        .map(|column| {
            let mut in_column: Vec<SvgRect> =
                cells.iter().filter(|r| r.x == *column).cloned().collect();
            assert_eq!(in_column.len(), n, "cells in the column at x = {column}");
            // SVG y grows downward, so the bottom row has the largest y.
            in_column.sort_by_key(|r| std::cmp::Reverse(r.y));
            in_column
        })
        .collect()
}

/// Builds a synthetic row of a 6-block model.
fn row(kind: &str, i: Option<u32>, j: Option<u32>, measure: &str, value: f64) -> InterventionRow {
    InterventionRow {
        model: "model-x".into(),
        kind: kind.into(),
        i,
        j,
        seed: None,
        order: String::new(),
        measure: measure.into(),
        value,
        n_blocks: 6,
        n_stimuli: 4,
        n_tokens: 40,
    }
}

/// Adjacent swaps of a 6-block model, with a KL that grows toward both ends.
fn adjacent_swaps(measure: &str) -> Vec<InterventionRow> {
    (0..5)
        .map(|i| {
            let value = 0.1 + (f64::from(i) - 2.0).powi(2);
            row("swap", Some(i), Some(i + 1), measure, value)
        })
        .collect()
}

fn grey_pixels(png: &RgbImage) -> usize {
    png.pixels().filter(|p| p.0 == [200, 200, 200]).count()
}

#[test]
fn real_run_draws_every_figure() {
    let rows = run_rows();
    let cka = cka_rows();
    let (_temp, dir) = figure_dir();
    let paths = intervention_figures(rows, Some(cka), 0.9, &dir).unwrap();

    let stems = [
        "smollm2__swap_kl",
        "smollm2__swap_top1_agreement",
        "smollm2__swap_delta_nll",
        "smollm2__swap_linear_cka_final",
        "smollm2__skip",
        "smollm2__shuffle",
        "smollm2__cka_vs_swap",
    ];
    let expected: Vec<PathBuf> = stems
        .iter()
        .flat_map(|s| [dir.join(format!("{s}.png")), dir.join(format!("{s}.svg"))])
        .collect();
    assert_eq!(paths, expected);
    for stem in stems {
        let size = if stem.ends_with("cka_vs_swap") {
            SIDE_BY_SIDE_SIZE
        } else {
            FIGURE_SIZE
        };
        check_png(&dir.join(format!("{stem}.png")), size);
    }

    let svg = read_svg(&dir.join("smollm2__swap_kl.svg"));
    assert!(svg.contains("smollm2: swapping blocks i and j, kl"));
    assert!(svg.contains("3 stimuli"), "subtitle names the stimuli");
    assert!(svg.contains("3 of 435 pairs measured"));
    assert!(svg.contains("kl (lower = less change)"));
    let svg = read_svg(&dir.join("smollm2__swap_top1_agreement.svg"));
    assert!(svg.contains("top1_agreement (higher = less change)"));
    let svg = read_svg(&dir.join("smollm2__skip.svg"));
    assert!(svg.contains("smollm2: skipping one block"));
    assert!(svg.contains("30 of 30 blocks skipped"));
    assert!(svg.contains("relative depth"));
    let svg = read_svg(&dir.join("smollm2__shuffle.svg"));
    assert!(svg.contains("smollm2: shuffling a range of blocks"));
    assert!(svg.contains("1 range, up to 2 orders each"));
    let svg = read_svg(&dir.join("smollm2__cka_vs_swap.svg"));
    assert!(svg.contains("how alike the layers are"));
    assert!(svg.contains("over 12 stimuli"));
}

#[test]
fn real_skip_of_first_block_changes_most() {
    let top1: BTreeMap<u32, f64> = run_rows()
        .iter()
        .filter(|r| r.kind == "skip" && r.measure == "top1_agreement")
        .map(|r| (r.i.unwrap(), r.value))
        .collect();
    assert_eq!(top1.len(), N_BLOCKS as usize);
    let middle = top1[&15];
    eprintln!("skip top-1 agreement by block: {top1:?}");
    assert!(
        top1[&0] < middle,
        "skipping block 0 ({}) must change more than skipping block 15 ({middle})",
        top1[&0]
    );
}

#[test]
fn real_rows_round_trip_through_parquet() {
    let rows = run_rows();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intervene.parquet");
    intervene::write_parquet(rows, &path).unwrap();
    let back = intervene::read_parquet(&path).unwrap();
    assert_eq!(back.len(), rows.len());
    assert_eq!(back, rows);
    assert!(back.iter().any(|r| r.j.is_none()), "skips have no j");
    assert!(
        back.iter().any(|r| r.seed == Some(1)),
        "shuffles have seeds"
    );
}

#[test]
fn side_by_side_aligns_blocks_with_layers() {
    let (_temp, dir) = figure_dir();
    let stem = dir.join("aligned");
    let paths = side_by_side(cka_rows(), run_rows(), &stem).unwrap();
    check_png(&paths[0], SIDE_BY_SIDE_SIZE);
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("layer L (0 = embedding, L = output of block L - 1)"));
    assert!(svg.contains("block i (level with its output, layer i + 1)"));

    let width = i64::from(SIDE_BY_SIDE_SIZE.0);
    let left = cell_grid(&svg, N_BLOCKS as usize + 1, 0..width / 2);
    let right = cell_grid(&svg, N_BLOCKS as usize, width / 2..width);
    for b in 0..N_BLOCKS as usize {
        let (l, r) = (&left[b + 1][b + 1], &right[b][b]);
        assert!(
            (r.y - l.y).abs() <= 1,
            "block {b} at y {} vs layer {} at y {}",
            r.y,
            b + 1,
            l.y
        );
        let right_offset = r.x - right[0][0].x;
        let left_offset = l.x - left[1][1].x;
        assert!(
            (right_offset - left_offset).abs() <= 1,
            "block {b} at x offset {right_offset} vs layer {} at {left_offset}",
            b + 1
        );
        assert!(
            (r.width - l.width).abs() <= 1,
            "cell widths {} and {}",
            r.width,
            l.width
        );
    }
    // The diagonal of a self-comparison is CKA 1, the brightest colour.
    assert_eq!(left[0][0].fill, "#fee825");
}

#[test]
fn swap_matrix_is_symmetric_with_identity_diagonal() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = adjacent_swaps("kl");
    rows.push(row("swap", Some(0), Some(5), "kl", 9.0));
    rows.push(row("skip", Some(2), None, "kl", 1.0));
    let paths = swap_matrix(&rows, "kl", &dir.path().join("kl")).unwrap();
    check_png(&paths[0], FIGURE_SIZE);
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("6 of 15 pairs measured"));
    assert!(svg.contains("grey = not measured"));

    let grid = cell_grid(&svg, 6, 0..900);
    for (i, column) in grid.iter().enumerate() {
        // KL 0 on the diagonal is the lowest value, so the brightest colour.
        assert_eq!(column[i].fill, "#fee825", "diagonal cell {i}");
        for (j, cell) in column.iter().enumerate() {
            assert_eq!(
                cell.fill, grid[j][i].fill,
                "cells ({i}, {j}) and ({j}, {i})"
            );
        }
    }
    assert_ne!(
        grid[0][1].fill, "#c8c8c8",
        "adjacent pair 0, 1 was measured"
    );
    assert_eq!(grid[1][3].fill, "#c8c8c8", "pair 1, 3 was not measured");
    // KL 9 is the highest value, so the darkest colour.
    assert_eq!(grid[0][5].fill, "#440154");
    let png = decode_png(&paths[0]);
    assert!(grey_pixels(&png) > 1000, "14 grey cells");
}

#[test]
fn swap_matrix_of_constant_values() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<InterventionRow> = (0..5)
        .map(|i| row("swap", Some(i), Some(i + 1), "top1_agreement", 1.0))
        .collect();
    let paths = swap_matrix(&rows, "top1_agreement", &dir.path().join("flat")).unwrap();
    check_png(&paths[0], FIGURE_SIZE);
    let svg = read_svg(&paths[1]);
    let grid = cell_grid(&svg, 6, 0..900);
    assert_eq!(
        grid[0][0].fill, grid[0][1].fill,
        "equal values, equal colours"
    );
    assert!(svg.contains("max 1"));
}

#[test]
fn swap_matrix_rejects_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("bad");
    let rows = adjacent_swaps("kl");

    let error = swap_matrix(&rows, "perplexity", &stem).unwrap_err();
    assert!(matches!(error, PlotError::UnknownMeasure { .. }), "{error}");
    assert!(error.to_string().contains("top1_agreement"), "{error}");

    let skips = vec![row("skip", Some(1), None, "kl", 0.5)];
    let error = swap_matrix(&skips, "kl", &stem).unwrap_err();
    assert!(matches!(error, PlotError::NoVariantRows { .. }), "{error}");
    assert!(error.to_string().contains("swap:adjacent"), "{error}");

    let mut mixed = rows.clone();
    mixed[2].model = "model-y".into();
    let error = swap_matrix(&mixed, "kl", &stem).unwrap_err();
    assert!(matches!(error, PlotError::MixedRows { .. }), "{error}");

    let mut outside = rows.clone();
    outside[0].j = Some(6);
    let error = swap_matrix(&outside, "kl", &stem).unwrap_err();
    assert!(
        matches!(error, PlotError::InvalidInterventionRow { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("n_blocks = 6"), "{error}");

    let mut nan = rows.clone();
    nan.iter_mut().for_each(|r| r.value = f64::NAN);
    let paths = swap_matrix(&nan, "kl", &stem).unwrap();
    assert!(read_svg(&paths[1]).contains("0 of 15 pairs measured"));
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 2);
}

#[test]
fn skip_curve_chooses_log_axis_for_wide_kl() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for b in 0..6u32 {
        let kl = if b == 0 {
            12.0
        } else {
            0.01 * f64::from(b + 1)
        };
        rows.push(row("skip", Some(b), None, "kl", kl));
        rows.push(row(
            "skip",
            Some(b),
            None,
            "top1_agreement",
            1.0 - kl / 13.0,
        ));
    }
    let paths = skip_curve(&rows, &dir.path().join("wide")).unwrap();
    check_png(&paths[0], FIGURE_SIZE);
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("KL (nats, log scale)"));
    assert!(svg.contains("top-1 agreement"));

    // Two KL values within a factor of 2: a linear axis.
    let narrow: Vec<InterventionRow> = rows.iter().filter(|r| r.i.unwrap() > 0).cloned().collect();
    let paths = skip_curve(&narrow, &dir.path().join("narrow")).unwrap();
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("KL (nats)"));
    assert!(!svg.contains("log scale"));
    assert!(svg.contains("5 of 6 blocks skipped"));

    // Without KL rows the figure has the top-1 panel alone.
    let top1_only: Vec<InterventionRow> = rows
        .iter()
        .filter(|r| r.measure == "top1_agreement")
        .cloned()
        .collect();
    let paths = skip_curve(&top1_only, &dir.path().join("top1")).unwrap();
    check_png(&paths[0], FIGURE_SIZE);
    assert!(!read_svg(&paths[1]).contains("KL"));
}

/// Shuffled ranges of a 12-block model with 3 seeds: agreement falls with
/// width and is lower near the ends of the model.
fn synthetic_shuffles() -> Vec<InterventionRow> {
    let mut rows = Vec::new();
    for start in 0..11u32 {
        for end in start + 1..12u32.min(start + 6) {
            for seed in 0..3u64 {
                let width = f64::from(end - start + 1);
                let edge = if start == 0 || end == 11 { 0.3 } else { 0.0 };
                let value = 1.0 - 0.03 * width - edge - 0.01 * seed as f64;
                let mut r = row("shuffle", Some(start), Some(end), "top1_agreement", value);
                r.seed = Some(seed);
                r.n_blocks = 12;
                rows.push(r);
            }
        }
    }
    rows
}

#[test]
fn shuffle_ranges_highlight_the_widest_above_threshold() {
    let (_temp, dir) = figure_dir();
    let rows = synthetic_shuffles();
    let paths = shuffle_ranges(&rows, 0.85, &dir.join("synthetic_shuffle")).unwrap();
    check_png(&paths[0], FIGURE_SIZE);
    let svg = read_svg(&paths[1]);
    // Width 4 gives 1 - 0.12 - 0.01 = 0.87 (mean over seeds); width 5 gives 0.84.
    // The first interior range of width 4 is 1-4.
    assert!(
        svg.contains("widest range at or above it: blocks 1-4 (4 of 12), mean 0.870"),
        "key"
    );
    assert!(svg.contains("threshold 0.85"));
    assert!(
        svg.contains("#ff7f0e") || svg.contains("#FF7F0E"),
        "highlight colour"
    );

    let paths = shuffle_ranges(&rows, 0.99, &dir.join("none")).unwrap();
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("threshold 0.99, which no range reaches"));
    assert!(!svg.to_ascii_lowercase().contains("#ff7f0e"));

    let error = shuffle_ranges(&rows, 1.5, &dir.join("bad")).unwrap_err();
    assert!(matches!(error, PlotError::InvalidThreshold(_)), "{error}");
    let mut empty_range = rows.clone();
    empty_range[0].i = Some(5);
    empty_range[0].j = Some(2);
    let error = shuffle_ranges(&empty_range, 0.9, &dir.join("bad")).unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");
}

/// Synthetic `linear_cka` rows of `model` against itself over layers `0..=n`.
fn synthetic_cka(model: &str, n: u32) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for a in 0..=n {
        for b in 0..=n {
            let gap = f64::from(a.abs_diff(b)) / f64::from(n);
            rows.push(ResultRow {
                model_a: model.into(),
                layer_a: a,
                layer_a_name: format!("hidden.{a}"),
                depth_a: f64::from(a) / f64::from(n),
                model_b: model.into(),
                layer_b: b,
                layer_b_name: format!("hidden.{b}"),
                depth_b: f64::from(b) / f64::from(n),
                metric: "linear_cka".into(),
                metric_kind: "similarity".into(),
                value: 1.0 - gap,
                n_stimuli: 50,
                manifest_a: "0".repeat(64),
                manifest_b: "0".repeat(64),
                p_value: None,
                ci_low: None,
                ci_high: None,
                n_permutations: 0,
                n_bootstrap: 0,
            });
        }
    }
    rows
}

#[test]
fn side_by_side_needs_the_self_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("pair");
    let rows = adjacent_swaps("top1_agreement");

    let mut other = synthetic_cka("model-x", 6);
    other.iter_mut().for_each(|r| r.model_b = "model-z".into());
    let error = side_by_side(&other, &rows, &stem).unwrap_err();
    assert!(
        matches!(error, PlotError::NoSelfComparison { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("(model-x, model-z, linear_cka)"),
        "{error}"
    );

    // A final_norm layer (index n_blocks + 1) is left out and named.
    let mut with_final = synthetic_cka("model-x", 6);
    with_final.extend(
        synthetic_cka("model-x", 7)
            .into_iter()
            .filter(|r| r.layer_a == 7),
    );
    let paths = side_by_side(&with_final, &rows, &stem).unwrap();
    check_png(&paths[0], SIDE_BY_SIDE_SIZE);
    let svg = read_svg(&paths[1]);
    assert!(svg.contains("CKA layers 7 left out"));
    let left = cell_grid(&svg, 7, 0..i64::from(SIDE_BY_SIDE_SIZE.0 / 2));
    assert_eq!(left[0][6].fill, left[6][0].fill);
}

#[test]
fn intervention_figures_draw_what_rows_allow() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = adjacent_swaps("kl");
    rows.extend(adjacent_swaps("top1_agreement"));
    rows.push(row("swap", Some(3), Some(3), "kl", 0.0));
    rows.push(row("repeat", Some(2), None, "kl", 0.4));
    rows.iter_mut().for_each(|r| r.model = "org/model x".into());
    let cka = synthetic_cka("org/model x", 6);
    let paths = intervention_figures(&rows, Some(&cka), 0.9, dir.path()).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "org_model_x__swap_kl.png",
            "org_model_x__swap_kl.svg",
            "org_model_x__swap_top1_agreement.png",
            "org_model_x__swap_top1_agreement.svg",
            "org_model_x__cka_vs_swap.png",
            "org_model_x__cka_vs_swap.svg",
        ]
    );

    let repeats = vec![row("repeat", Some(2), None, "kl", 0.4)];
    assert!(intervention_figures(&repeats, None, 0.9, dir.path())
        .unwrap()
        .is_empty());
    let error = intervention_figures(&[], None, 0.9, dir.path()).unwrap_err();
    assert!(matches!(error, PlotError::NoVariantRows { .. }), "{error}");
}

#[test]
fn read_parquet_names_file_and_column() {
    use polars::prelude::{Column, DataFrame, ParquetWriter};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let mut rows = adjacent_swaps("kl");
    rows.push(row("identity", None, None, "kl", 0.0));
    let mut shuffle = row("shuffle", Some(1), Some(4), "kl", 0.2);
    shuffle.seed = Some(u64::MAX);
    rows.push(shuffle);
    intervene::write_parquet(&rows, &good).unwrap();
    assert_eq!(intervene::read_parquet(&good).unwrap(), rows);

    // Rewrite the file with one column dropped or replaced.
    let frame = {
        let file = std::fs::File::open(&good).unwrap();
        use polars::prelude::SerReader;
        polars::prelude::ParquetReader::new(file).finish().unwrap()
    };
    let write = |name: &str, frame: &mut DataFrame| {
        let path = dir.path().join(name);
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(frame)
            .unwrap();
        path
    };

    let mut missing = frame.drop("seed").unwrap();
    let path = write("missing.parquet", &mut missing);
    let message = intervene::read_parquet(&path).unwrap_err().to_string();
    assert!(message.contains("missing.parquet"), "{message}");
    assert!(message.contains("`seed` is missing"), "{message}");

    let mut wrong_type = frame.clone();
    let as_i64: Vec<Option<i64>> = rows.iter().map(|r| r.i.map(i64::from)).collect();
    wrong_type
        .replace("i", Column::new("i".into(), as_i64))
        .unwrap();
    let path = write("wrong_type.parquet", &mut wrong_type);
    let message = intervene::read_parquet(&path).unwrap_err().to_string();
    assert!(message.contains("wrong_type.parquet"), "{message}");
    assert!(
        message.contains("`i` has type i64, expected u32"),
        "{message}"
    );

    let mut null_value = frame.clone();
    let values: Vec<Option<f64>> = (0..rows.len()).map(|r| (r != 2).then_some(0.5)).collect();
    null_value
        .replace("value", Column::new("value".into(), values))
        .unwrap();
    let path = write("null_value.parquet", &mut null_value);
    let message = intervene::read_parquet(&path).unwrap_err().to_string();
    assert!(message.contains("`value` is null in row 2"), "{message}");

    let message = intervene::read_parquet(&dir.path().join("absent.parquet"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("absent.parquet"), "{message}");
}
