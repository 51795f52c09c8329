//! Heatmaps and best-match plots of comparison results.
//!
//! [`heatmap`] draws the all-layers grid of one (model A, model B, metric):
//! layers of A on x, layers of B on y, the metric value as colour.
//! [`best_match`] draws, for each layer of A, the relative depth of the most
//! similar layer of B against the diagonal y = x, one curve per metric. A
//! curve near the diagonal means the two models order their representations
//! alike. [`plot_all`] draws both kinds for every pair in a set of rows.
//!
//! The [`intervene`] figures draw the rows of `repatlas intervene`: swap
//! matrices, skip curves, shuffled ranges, and the within-model CKA heatmap
//! beside the swap matrix ([`intervention_figures`] draws all of them).
//!
//! Every figure is written as PNG and SVG, each atomically (temporary file
//! in the same directory, then rename), at [`FIGURE_SIZE`] except the
//! two-panel [`side_by_side`] figure ([`SIDE_BY_SIDE_SIZE`]). Text uses
//! DejaVu Sans embedded in the binary, so rendering needs no system fonts.

mod best_match;
mod cells;
mod colour;
mod draw;
mod font;
mod grid;
mod heatmap;
pub mod intervene;
mod output;

use std::path::PathBuf;

pub use best_match::best_match;
pub use heatmap::heatmap;
pub use intervene::{
    intervention_figures, shuffle_ranges, side_by_side, skip_curve, swap_matrix, SIDE_BY_SIDE_SIZE,
};
pub use output::{plot_all, sanitize};

/// Width and height of every PNG figure but [`side_by_side`], in pixels.
pub const FIGURE_SIZE: (u32, u32) = (900, 800);

/// Errors of drawing and writing figures.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The function received no rows.
    #[error("no result rows to plot: pass the rows of at least one comparison")]
    NoRows,
    /// A figure for one pair (and metric) received rows of several.
    #[error(
        "{figure} draws one {expected_key}, but the rows contain {first} and {other}: \
         filter the rows first or use plot_all"
    )]
    MixedRows {
        /// The figure kind, `heatmap` or `best_match`.
        figure: &'static str,
        /// The key that must be unique, for example `(model_a, model_b, metric)`.
        expected_key: &'static str,
        /// The key of the first row.
        first: String,
        /// A different key found later.
        other: String,
    },
    /// Two rows describe the same cell of a heatmap.
    #[error(
        "rows for {model_a} vs {model_b}, metric {metric} contain layer pair \
         ({layer_a}, {layer_b}) twice: remove the duplicate rows"
    )]
    DuplicateCell {
        /// Model A.
        model_a: String,
        /// Model B.
        model_b: String,
        /// Metric name.
        metric: String,
        /// Layer of A of the duplicated cell.
        layer_a: u32,
        /// Layer of B of the duplicated cell.
        layer_b: u32,
    },
    /// No row has a finite value, so there is no colour range.
    #[error("all values of {metric} for {model_a} vs {model_b} are NaN or infinite")]
    NoFiniteValues {
        /// Model A.
        model_a: String,
        /// Model B.
        model_b: String,
        /// Metric name.
        metric: String,
    },
    /// A figure of intervention rows found none of the kind it draws.
    #[error("{figure} found no {expected} among the {n_rows} rows given: {hint}")]
    NoVariantRows {
        /// The figure function, for example `swap_matrix`.
        figure: &'static str,
        /// The rows it draws, for example `swap rows with measure kl`.
        expected: String,
        /// How many rows it received.
        n_rows: usize,
        /// The command that produces such rows.
        hint: &'static str,
    },
    /// The measure is not one that `repatlas intervene` writes.
    #[error(
        "unknown intervention measure {measure:?}: use one of \
         kl, top1_agreement, delta_nll, linear_cka_final"
    )]
    UnknownMeasure {
        /// The measure requested.
        measure: String,
    },
    /// An intervention row names no block, or a block outside the model.
    #[error(
        "invalid {kind} row of {model} (i = {i:?}, j = {j:?}, n_blocks = {n_blocks}): {message}"
    )]
    InvalidInterventionRow {
        /// The model of the row.
        model: String,
        /// The variant kind of the row.
        kind: String,
        /// The `i` column.
        i: Option<u32>,
        /// The `j` column.
        j: Option<u32>,
        /// The `n_blocks` column.
        n_blocks: u32,
        /// The problem with the row.
        message: &'static str,
    },
    /// The threshold of the shuffled-range figure is not a top-1 agreement.
    #[error("threshold {0} is outside 0..=1: pass a top-1 agreement, for example 0.9")]
    InvalidThreshold(f64),
    /// The CKA rows contain no comparison of the intervened model with itself.
    #[error(
        "the CKA rows contain no linear_cka comparison of {model} with itself \
         (found: {found}): compare the model's run with itself using linear_cka, \
         with the same model name as the intervention run"
    )]
    NoSelfComparison {
        /// The model of the intervention rows.
        model: String,
        /// The (model_a, model_b, metric) keys present, comma-separated.
        found: String,
    },
    /// Registering the embedded font with plotters failed.
    #[error("registering the embedded DejaVu Sans font failed")]
    Font,
    /// Plotters failed to draw or encode a figure.
    #[error("drawing {path} failed: {message}")]
    Drawing {
        /// The figure file.
        path: PathBuf,
        /// The plotters error, as text because its type depends on the backend.
        message: String,
    },
    /// A file operation failed.
    #[error("{action} {path} failed: {source}")]
    Io {
        /// The attempted operation, for example `creating directory`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
