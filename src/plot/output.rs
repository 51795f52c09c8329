//! Writing figures as PNG and SVG files, and plotting a whole result set.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::draw::{DrawFailure, Figure};
use super::{best_match, font, heatmap, PlotError};
use crate::results::{AtomicFile, ResultRow};

/// Draws `figure` and writes `out_stem.png` and `out_stem.svg` atomically.
///
/// The extensions are appended, so dots in the stem are kept. Returns the
/// PNG and SVG paths, in that order.
pub(super) fn write_figure(
    figure: &impl Figure,
    out_stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    font::ensure_registered()?;
    if let Some(parent) = out_stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| PlotError::Io {
            action: "creating directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let png = with_extension_appended(out_stem, "png");
    let svg = with_extension_appended(out_stem, "svg");
    write_png(figure, &png)?;
    write_svg(figure, &svg)?;
    Ok(vec![png, svg])
}

fn with_extension_appended(stem: &Path, extension: &str) -> PathBuf {
    let mut name = OsString::from(stem.as_os_str());
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn write_png(figure: &impl Figure, path: &Path) -> Result<(), PlotError> {
    let drawing_error = |DrawFailure(message)| PlotError::Drawing {
        path: path.to_path_buf(),
        message,
    };
    let atomic = AtomicFile::new(path);
    {
        let root = BitMapBackend::new(atomic.path(), figure.size()).into_drawing_area();
        figure.draw(&root).map_err(drawing_error)?;
        root.present()
            .map_err(|e| drawing_error(DrawFailure(e.to_string())))?;
    }
    atomic.commit().map_err(|source| PlotError::Io {
        action: "renaming the temporary file onto",
        path: path.to_path_buf(),
        source,
    })
}

fn write_svg(figure: &impl Figure, path: &Path) -> Result<(), PlotError> {
    let drawing_error = |DrawFailure(message)| PlotError::Drawing {
        path: path.to_path_buf(),
        message,
    };
    let mut document = String::new();
    {
        let root = SVGBackend::with_string(&mut document, figure.size()).into_drawing_area();
        figure.draw(&root).map_err(drawing_error)?;
        root.present()
            .map_err(|e| drawing_error(DrawFailure(e.to_string())))?;
    }

    let atomic = AtomicFile::new(path);
    let io_error = |action, source| PlotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    fs::write(atomic.path(), document).map_err(|e| io_error("writing", e))?;
    atomic
        .commit()
        .map_err(|e| io_error("renaming the temporary file onto", e))
}

/// Draws a heatmap for every (model A, model B, metric) and a best-match
/// plot for every (model A, model B) in `rows`, into `out_dir`.
///
/// File stems are `<model_a>_vs_<model_b>__<metric>` for heatmaps and
/// `<model_a>_vs_<model_b>__best_match` for best-match plots, with names
/// passed through [`sanitize`]; a stem that collides with an earlier one
/// gets a `-2`, `-3`, ... suffix. Creates `out_dir` if needed. Returns every
/// path written, pair by pair in sorted order.
pub fn plot_all(rows: &[ResultRow], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    if rows.is_empty() {
        return Err(PlotError::NoRows);
    }
    let mut pairs: BTreeMap<(&str, &str), BTreeMap<&str, Vec<ResultRow>>> = BTreeMap::new();
    for row in rows {
        pairs
            .entry((&row.model_a, &row.model_b))
            .or_default()
            .entry(&row.metric)
            .or_default()
            .push(row.clone());
    }

    let mut stems = UniqueStems::default();
    let mut written = Vec::new();
    for ((model_a, model_b), metrics) in pairs {
        let pair = format!("{}_vs_{}", sanitize(model_a), sanitize(model_b));
        for (metric, metric_rows) in &metrics {
            let stem = stems.claim(format!("{pair}__{}", sanitize(metric)));
            written.extend(heatmap(metric_rows, &out_dir.join(stem))?);
        }
        let pair_rows: Vec<ResultRow> = metrics.into_values().flatten().collect();
        let stem = stems.claim(format!("{pair}__best_match"));
        written.extend(best_match(&pair_rows, &out_dir.join(stem))?);
    }
    Ok(written)
}

/// Stems already used in one output directory.
#[derive(Default)]
pub(super) struct UniqueStems {
    used: HashSet<String>,
}

impl UniqueStems {
    /// Returns `stem`, or `stem-2`, `stem-3`, ... when it was used before.
    pub(super) fn claim(&mut self, stem: String) -> String {
        let mut candidate = stem.clone();
        let mut suffix = 2;
        while self.used.contains(&candidate) {
            candidate = format!("{stem}-{suffix}");
            suffix += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Turns a model or metric name into a file-name part: ASCII letters,
/// digits, `-` and `.` are kept, every other character becomes `_`, and
/// leading dots are dropped so no file is hidden. An empty result becomes `_`.
///
/// ```
/// use repatlas::plot::sanitize;
/// assert_eq!(sanitize("EleutherAI/pythia-70m"), "EleutherAI_pythia-70m");
/// assert_eq!(sanitize("rsa:rdm=correlation,compare=spearman"), "rsa_rdm_correlation_compare_spearman");
/// ```
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned.to_owned()
    }
}
