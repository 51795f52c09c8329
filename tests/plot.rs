//! Heatmap, best-match and plot-all figures drawn from synthetic grids.

use std::fs;
use std::path::Path;

use image::RgbImage;
use repatlas::plot::{best_match, heatmap, plot_all, sanitize, PlotError, FIGURE_SIZE};
use repatlas::results::{summarize, ResultRow};

/// Rows of an `n_a` x `n_b` grid whose value peaks where relative depths agree:
/// `exp(-(depth_a - depth_b)^2 / 0.02)`, or one minus that for a distance.
fn diagonal_grid(n_a: u32, n_b: u32, metric: &str, kind: &str) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for layer_a in 0..n_a {
        for layer_b in 0..n_b {
            let depth_a = f64::from(layer_a) / f64::from(n_a - 1);
            let depth_b = f64::from(layer_b) / f64::from(n_b - 1);
            let similarity = (-(depth_a - depth_b).powi(2) / 0.02).exp();
            let value = if kind == "distance" {
                1.0 - similarity
            } else {
                similarity
            };
            rows.push(ResultRow {
                model_a: "model-a".into(),
                layer_a,
                layer_a_name: format!("resid_post.{layer_a}"),
                depth_a,
                model_b: "model-b".into(),
                layer_b,
                layer_b_name: format!("resid_post.{layer_b}"),
                depth_b,
                metric: metric.into(),
                metric_kind: kind.into(),
                value,
                n_stimuli: 256,
                manifest_a: "0".repeat(64),
                manifest_b: "1".repeat(64),
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

fn decode_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("decoding {} failed: {e}", path.display()))
        .to_rgb8()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn heatmap_writes_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("grid.linear_cka");
    let rows = diagonal_grid(31, 25, "linear_cka", "similarity");
    let paths = heatmap(&rows, &stem).unwrap();
    assert_eq!(
        paths,
        vec![
            dir.path().join("grid.linear_cka.png"),
            dir.path().join("grid.linear_cka.svg")
        ]
    );
    assert_eq!(
        file_names(dir.path()),
        vec!["grid.linear_cka.png", "grid.linear_cka.svg"]
    );

    let png = decode_png(&paths[0]);
    assert_eq!(png.dimensions(), FIGURE_SIZE);
    let first = *png.get_pixel(0, 0);
    assert!(png.pixels().any(|p| *p != first), "PNG is one colour");
    let distinct: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 100, "only {} colours", distinct.len());

    let svg = fs::read_to_string(&paths[1]).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains("model-a vs model-b"));
    assert!(svg.contains("linear_cka (similarity), n_stimuli = 256"));
    assert!(svg.contains("layer index of model-a"));
    assert!(svg.contains("value (higher = more alike)"));
}

#[test]
fn heatmap_title_text_is_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let rows = diagonal_grid(31, 25, "linear_cka", "similarity");
    let paths = heatmap(&rows, &dir.path().join("title")).unwrap();
    let png = decode_png(&paths[0]);

    // The title band holds only text on white, so dark pixels mean glyphs were drawn.
    let dark_in_title = (0..FIGURE_SIZE.0)
        .flat_map(|x| (0..70).map(move |y| (x, y)))
        .filter(|&(x, y)| png.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count();
    assert!(
        dark_in_title > 200,
        "{dark_in_title} dark pixels in the title band"
    );
}

#[test]
fn heatmap_distance_has_similarity_colours() {
    let dir = tempfile::tempdir().unwrap();
    let similarity = diagonal_grid(31, 25, "metric", "similarity");
    let distance = diagonal_grid(31, 25, "metric", "distance");
    let similar_png = decode_png(&heatmap(&similarity, &dir.path().join("s")).unwrap()[0]);
    let distant_png = decode_png(&heatmap(&distance, &dir.path().join("d")).unwrap()[0]);

    // Inside the cell area both figures have the same layout, so the same colours.
    let mut compared = 0;
    for x in (200..700).step_by(7) {
        for y in (150..650).step_by(7) {
            // One unit per channel absorbs rounding of 1 - value; a reversed scale differs by far more.
            let (s, d) = (similar_png.get_pixel(x, y).0, distant_png.get_pixel(x, y).0);
            let close = s.iter().zip(&d).all(|(a, b)| a.abs_diff(*b) <= 1);
            assert!(close, "pixel ({x}, {y}): similarity {s:?}, distance {d:?}");
            compared += 1;
        }
    }
    assert!(compared > 4000);
    let colours: std::collections::HashSet<[u8; 3]> = (200..700)
        .map(|x| similar_png.get_pixel(x, 400).0)
        .collect();
    assert!(
        colours.len() > 10,
        "cell area has {} colours",
        colours.len()
    );
}

#[test]
fn heatmap_rejects_mixed_and_duplicate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut mixed = diagonal_grid(4, 3, "linear_cka", "similarity");
    mixed.extend(diagonal_grid(4, 3, "procrustes", "distance"));
    let error = heatmap(&mixed, &dir.path().join("mixed")).unwrap_err();
    assert!(matches!(error, PlotError::MixedRows { .. }), "{error}");
    assert!(error.to_string().contains("procrustes"));

    let mut duplicated = diagonal_grid(4, 3, "linear_cka", "similarity");
    duplicated.push(duplicated[5].clone());
    let error = heatmap(&duplicated, &dir.path().join("dup")).unwrap_err();
    assert!(
        matches!(
            error,
            PlotError::DuplicateCell {
                layer_a: 1,
                layer_b: 2,
                ..
            }
        ),
        "{error}"
    );

    assert!(matches!(
        heatmap(&[], &dir.path().join("none")),
        Err(PlotError::NoRows)
    ));
    assert!(file_names(dir.path()).is_empty());
}

#[test]
fn heatmap_of_all_nan_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = diagonal_grid(3, 3, "linear_cka", "similarity");
    rows.iter_mut().for_each(|r| r.value = f64::NAN);
    let error = heatmap(&rows, &dir.path().join("nan")).unwrap_err();
    assert!(matches!(error, PlotError::NoFiniteValues { .. }), "{error}");
}

#[test]
fn best_match_of_diagonal_grid_is_diagonal() {
    let square = summarize(&diagonal_grid(25, 25, "linear_cka", "similarity"));
    for &(a, b, value) in &square[0].best_match {
        assert_eq!(a, b);
        assert!((value - 1.0).abs() < 1e-12);
    }
    assert!((square[0].depth_correlation - 1.0).abs() < 1e-12);

    // On a 31 x 25 grid the best layer of B is the one nearest in relative depth.
    let rows = diagonal_grid(31, 25, "linear_cka", "similarity");
    let summary = &summarize(&rows)[0];
    assert_eq!(summary.best_match.len(), 31);
    for &(a, b, _) in &summary.best_match {
        let depth_a = f64::from(a) / 30.0;
        let depth_b = f64::from(b) / 24.0;
        assert!(
            (depth_a - depth_b).abs() <= 0.5 / 24.0 + 1e-12,
            "layer {a} -> {b}"
        );
    }
    assert!(summary.depth_correlation > 0.999);
}

#[test]
fn best_match_plot_has_one_curve_per_metric() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = diagonal_grid(31, 25, "linear_cka", "similarity");
    rows.extend(diagonal_grid(31, 25, "procrustes", "distance"));
    let paths = best_match(&rows, &dir.path().join("pair")).unwrap();

    let png = decode_png(&paths[0]);
    assert_eq!(png.dimensions(), FIGURE_SIZE);
    let first = *png.get_pixel(0, 0);
    assert!(png.pixels().any(|p| *p != first));

    let svg = fs::read_to_string(&paths[1]).unwrap();
    assert!(svg.contains("model-a vs model-b: best-matching layer"));
    assert!(svg.contains("linear_cka (r = "));
    assert!(svg.contains("procrustes (r = "));
    assert!(svg.contains("y = x (same relative depth)"));

    let mut other_pair = diagonal_grid(3, 3, "linear_cka", "similarity");
    other_pair[0].model_b = "model-c".into();
    let error = best_match(&other_pair, &dir.path().join("mixed")).unwrap_err();
    assert!(matches!(error, PlotError::MixedRows { .. }), "{error}");
}

#[test]
fn plot_all_names_files_per_pair_and_metric() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("figures");
    let mut rows = diagonal_grid(13, 9, "linear_cka", "similarity");
    rows.extend(diagonal_grid(
        13,
        9,
        "rsa:rdm=correlation,compare=spearman",
        "similarity",
    ));
    let mut second_pair = diagonal_grid(13, 13, "linear_cka", "similarity");
    for r in &mut second_pair {
        r.model_a = "org/model a".into();
    }
    rows.extend(second_pair);

    let paths = plot_all(&rows, &out).unwrap();
    assert_eq!(paths.len(), 10);
    let expected = [
        "model-a_vs_model-b__best_match.png",
        "model-a_vs_model-b__best_match.svg",
        "model-a_vs_model-b__linear_cka.png",
        "model-a_vs_model-b__linear_cka.svg",
        "model-a_vs_model-b__rsa_rdm_correlation_compare_spearman.png",
        "model-a_vs_model-b__rsa_rdm_correlation_compare_spearman.svg",
        "org_model_a_vs_model-b__best_match.png",
        "org_model_a_vs_model-b__best_match.svg",
        "org_model_a_vs_model-b__linear_cka.png",
        "org_model_a_vs_model-b__linear_cka.svg",
    ];
    assert_eq!(file_names(&out), expected);
    for path in &paths {
        assert!(
            fs::metadata(path).unwrap().len() > 1000,
            "{}",
            path.display()
        );
    }
}

#[test]
fn plot_all_disambiguates_colliding_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = diagonal_grid(3, 3, "a:b", "similarity");
    rows.extend(diagonal_grid(3, 3, "a_b", "similarity"));
    plot_all(&rows, dir.path()).unwrap();
    let names = file_names(dir.path());
    assert!(
        names.contains(&"model-a_vs_model-b__a_b.png".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"model-a_vs_model-b__a_b-2.png".to_owned()),
        "{names:?}"
    );
}

#[test]
fn sanitize_keeps_safe_characters() {
    assert_eq!(sanitize("EleutherAI/pythia-70m"), "EleutherAI_pythia-70m");
    assert_eq!(sanitize("..hidden"), "hidden");
    assert_eq!(sanitize("v1.2 beta"), "v1.2_beta");
    assert_eq!(sanitize(""), "_");
    assert_eq!(sanitize("é"), "_");
}

#[test]
fn heatmap_of_single_cell() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = diagonal_grid(2, 2, "linear_cka", "similarity");
    rows.truncate(1);
    let paths = heatmap(&rows, &dir.path().join("one")).unwrap();
    assert_eq!(decode_png(&paths[0]).dimensions(), FIGURE_SIZE);

    let paths = best_match(&rows, &dir.path().join("one_best")).unwrap();
    let svg = fs::read_to_string(&paths[1]).unwrap();
    assert!(
        svg.contains("linear_cka (r = NaN)"),
        "one layer of A has no correlation"
    );
}
