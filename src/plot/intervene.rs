//! Figures of layer interventions: how a decoder's output changes when its
//! blocks are swapped, skipped or shuffled.
//!
//! The input is the [`InterventionRow`]s of `repatlas intervene`, one per
//! (variant, measure), each measured against the unmodified model.
//!
//! - [`swap_matrix`]: one measure for every swapped pair, block `i` on x and
//!   block `j` on y, both triangles filled.
//! - [`skip_curve`]: top-1 agreement (and KL) for each skipped block, over
//!   block index and relative depth.
//! - [`shuffle_ranges`]: each shuffled range as a bar at its mean top-1
//!   agreement over seeds, with a threshold line.
//! - [`side_by_side`]: the within-model linear CKA heatmap beside the top-1
//!   swap matrix, aligned so that a block sits level with its output layer.
//! - [`intervention_figures`]: every figure that a set of rows allows.
//!
//! Colours and directions agree across figures: bright cells and high
//! curves mean less change (for `kl` and `delta_nll` a lower value is less
//! change, for `top1_agreement` and `linear_cka_final` a higher one).

mod shuffle;
mod side_by_side;
mod skip;
mod swap;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use log::{info, warn};
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colour::MARGIN;
use super::draw::{failed, label_step, text, text_width, DrawFailure, AXIS_DESC_SIZE, TICK_SIZE};
use super::output::{write_figure, UniqueStems};
use super::{sanitize, PlotError};
use crate::intervene::{InterventionRow, MEASURES};
use crate::results::ResultRow;

pub use side_by_side::SIDE_BY_SIDE_SIZE;

/// Draws the swap matrix of `measure` and writes `out_stem.png` and
/// `out_stem.svg`.
///
/// Uses the rows of kind `swap` with that measure and ignores the others.
/// Block `i` runs along x and block `j` along y. A swap is symmetric, so
/// each measured pair fills both (i, j) and (j, i), and a pair measured
/// more than once shows the mean. The diagonal is the unmodified model
/// (`kl` and `delta_nll` 0, `top1_agreement` and `linear_cka_final` 1)
/// unless a row measured it, and unmeasured pairs are grey. The colour
/// range covers the diagonal. Returns the PNG and SVG paths.
///
/// Errors: an unknown measure, no such rows, rows of several models, or a
/// row whose blocks are missing or out of range.
pub fn swap_matrix(
    rows: &[InterventionRow],
    measure: &str,
    out_stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let matrix = swap::SwapMatrix::from_rows(rows, measure, "swap_matrix")?;
    write_figure(&swap::SwapFigure(matrix), out_stem)
}

/// Draws, for every skipped block, the top-1 agreement (upper panel) and
/// the KL divergence (lower panel) against the unmodified model, and writes
/// `out_stem.png` and `out_stem.svg`.
///
/// The KL axis is logarithmic when all values are positive and the largest
/// is 20 or more times the smallest.
///
/// Uses the rows of kind `skip`. The x axis is the block index, with the
/// relative depth (block `b` spans `b / n_blocks` to `(b + 1) / n_blocks`)
/// along the top. Without `kl` rows the figure has only the upper panel.
/// Returns the PNG and SVG paths.
pub fn skip_curve(rows: &[InterventionRow], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let figure = skip::SkipFigure::from_rows(rows)?;
    write_figure(&figure, out_stem)
}

/// Draws every shuffled range as a horizontal bar from its first to its
/// last block at the mean top-1 agreement over its seeds, with a whisker
/// from the lowest to the highest seed, and writes `out_stem.png` and
/// `out_stem.svg`.
///
/// Uses the rows of kind `shuffle` with measure `top1_agreement`. A dashed
/// line marks `threshold`, and the widest range whose mean reaches it is
/// highlighted, chosen as `repatlas intervene` chooses it
/// ([`crate::intervene::widest_shuffle`]). Returns the PNG and SVG paths.
///
/// Errors: a threshold outside 0..=1, no shuffle rows, rows of several
/// models, or a range whose blocks are missing or out of range.
pub fn shuffle_ranges(
    rows: &[InterventionRow],
    threshold: f64,
    out_stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let figure = shuffle::ShuffleFigure::from_rows(rows, threshold)?;
    write_figure(&figure, out_stem)
}

/// Draws one figure of two panels and writes `out_stem.png` and
/// `out_stem.svg`: at the left the linear CKA between the layers of the
/// intervened model, at the right its swap matrix of `top1_agreement`.
///
/// `cka_rows` must contain the `linear_cka` rows of the model compared with
/// itself (`model_a == model_b ==` the model of `rows`); other rows are
/// ignored. Their layers are indexed as in a capture: layer 0 is the
/// embedding and layer `L` the output of block `L - 1`, so layers
/// `0..=n_blocks` are shown and higher indices (such as `final_norm`) are
/// left out. The panels are aligned so that block `b` sits level with
/// layer `b + 1`, its output. The figure is [`SIDE_BY_SIDE_SIZE`].
/// Returns the PNG and SVG paths.
pub fn side_by_side(
    cka_rows: &[ResultRow],
    rows: &[InterventionRow],
    out_stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let swaps = swap::SwapMatrix::from_rows(rows, "top1_agreement", "side_by_side")?;
    let figure = side_by_side::SideBySide::new(cka_rows, swaps)?;
    write_figure(&figure, out_stem)
}

/// Draws every figure that `rows` allow into `out_dir`, per model, and
/// returns the paths written (PNG then SVG of each figure).
///
/// For a model named `m` (passed through [`sanitize`]) the figures are
/// `m__swap_<measure>` for each measure with a swap of two different
/// blocks, `m__skip` when there are skips and `m__shuffle` when there are
/// shuffles. `m__cka_vs_swap` is drawn when there are swaps and `cka_rows`
/// contain the model's `linear_cka` self-comparison. A stem that collides
/// with an earlier one gets a `-2`, `-3`, ... suffix. Repeat rows have no
/// figure. Creates `out_dir` if needed. Rows that allow no figure give an
/// empty list, logged at info level.
pub fn intervention_figures(
    rows: &[InterventionRow],
    cka_rows: Option<&[ResultRow]>,
    threshold: f64,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if rows.is_empty() {
        return Err(PlotError::NoVariantRows {
            figure: "intervention_figures",
            expected: "intervention rows".into(),
            n_rows: 0,
            hint: "run repatlas intervene first",
        });
    }
    let mut by_model: BTreeMap<&str, Vec<InterventionRow>> = BTreeMap::new();
    for row in rows {
        by_model.entry(&row.model).or_default().push(row.clone());
    }

    let mut stems = UniqueStems::default();
    let mut written = Vec::new();
    for (model, model_rows) in by_model {
        let base = sanitize(model);
        let mut stem = |name: &str| out_dir.join(stems.claim(format!("{base}__{name}")));
        written.extend(model_figures(&model_rows, cka_rows, threshold, &mut stem)?);
    }
    if written.is_empty() {
        info!("no intervention figure: the rows have no swaps, skips or shuffles");
    }
    Ok(written)
}

/// Draws the figures of one model's rows (at least one), each at the stem
/// that `stem` returns for its name.
fn model_figures(
    rows: &[InterventionRow],
    cka_rows: Option<&[ResultRow]>,
    threshold: f64,
    stem: &mut impl FnMut(&str) -> PathBuf,
) -> Result<Vec<PathBuf>, PlotError> {
    // Each figure needs rows of one kind with one measure; swaps must be of two blocks.
    let has = |kind: &str, measure: &str| {
        rows.iter()
            .any(|r| r.kind == kind && r.measure == measure && (kind != "swap" || is_swap_pair(r)))
    };
    let mut written = Vec::new();
    for measure in MEASURES {
        if has("swap", measure) {
            let path = stem(&format!("swap_{measure}"));
            written.extend(swap_matrix(rows, measure, &path)?);
        }
    }
    if has("skip", "top1_agreement") {
        written.extend(skip_curve(rows, &stem("skip"))?);
    }
    if has("shuffle", "top1_agreement") {
        written.extend(shuffle_ranges(rows, threshold, &stem("shuffle"))?);
    }

    let model = &rows[0].model;
    match cka_rows {
        Some(cka)
            if has("swap", "top1_agreement") && side_by_side::has_self_comparison(cka, model) =>
        {
            written.extend(side_by_side(cka, rows, &stem("cka_vs_swap"))?);
        }
        Some(cka) if has("swap", "top1_agreement") => {
            let mut selves: Vec<&str> = cka
                .iter()
                .filter(|r| r.model_a == r.model_b && r.metric == "linear_cka")
                .map(|r| r.model_a.as_str())
                .collect();
            selves.sort_unstable();
            selves.dedup();
            warn!(
                "{model}: no CKA-vs-swap figure, because the CKA rows have no linear_cka \
                 self-comparison of {model:?} (they have one of {selves:?}); give the \
                 intervention the same model name with --name"
            );
        }
        Some(_) => info!(
            "{model}: no CKA-vs-swap figure, because it needs top-1 rows of swaps of two blocks"
        ),
        None => {}
    }
    Ok(written)
}

/// Returns whether `row` swaps two different blocks.
fn is_swap_pair(row: &InterventionRow) -> bool {
    row.kind == "swap" && row.i.is_some() && row.j.is_some() && row.i != row.j
}

/// Run-level columns shared by the rows of one model's intervention run.
#[derive(Debug, Clone)]
struct RunInfo {
    model: String,
    n_blocks: usize,
    n_stimuli: u64,
    n_tokens: u64,
}

impl RunInfo {
    /// Describes the stimuli behind the measures, for subtitles.
    fn stimuli(&self) -> String {
        format!("{} stimuli, {} tokens", self.n_stimuli, self.n_tokens)
    }
}

/// The blocks of one row, checked against the model.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    i: usize,
    /// `j` of a swap or the end of a shuffled range; `i` for a skip.
    j: usize,
}

/// Rows of one kind and measure, each with its checked blocks.
type Selected<'a> = Vec<(&'a InterventionRow, Blocks)>;

/// Selects the rows of `kind` with `measure`, checks that they come from
/// one model and that their blocks exist, and returns them with their
/// blocks. `figure` and `hint` go into the error messages.
fn select<'a>(
    rows: &'a [InterventionRow],
    kind: &'static str,
    measure: &str,
    figure: &'static str,
    hint: &'static str,
) -> Result<(RunInfo, Selected<'a>), PlotError> {
    let chosen: Vec<&InterventionRow> = rows
        .iter()
        .filter(|r| r.kind == kind && r.measure == measure)
        .collect();
    let first = *chosen.first().ok_or_else(|| PlotError::NoVariantRows {
        figure,
        expected: format!("{kind} rows with measure {measure}"),
        n_rows: rows.len(),
        hint,
    })?;
    if let Some(other) = chosen.iter().find(|r| r.model != first.model) {
        return Err(PlotError::MixedRows {
            figure,
            expected_key: "model",
            first: first.model.clone(),
            other: other.model.clone(),
        });
    }

    let info = RunInfo {
        model: first.model.clone(),
        n_blocks: chosen.iter().map(|r| r.n_blocks).max().unwrap_or(0) as usize,
        n_stimuli: first.n_stimuli,
        n_tokens: first.n_tokens,
    };
    let with_blocks = chosen
        .into_iter()
        .map(|row| Ok((row, blocks(row, info.n_blocks)?)))
        .collect::<Result<Vec<_>, PlotError>>()?;
    Ok((info, with_blocks))
}

/// Reads and checks the blocks of a swap, skip or shuffle row.
fn blocks(row: &InterventionRow, n_blocks: usize) -> Result<Blocks, PlotError> {
    let invalid = |message| PlotError::InvalidInterventionRow {
        model: row.model.clone(),
        kind: row.kind.clone(),
        i: row.i,
        j: row.j,
        n_blocks: row.n_blocks,
        message,
    };
    let i = row.i.ok_or_else(|| invalid("column i is null"))? as usize;
    let j = match (row.kind.as_str(), row.j) {
        ("skip", _) => i,
        (_, Some(j)) => j as usize,
        (_, None) => return Err(invalid("column j is null")),
    };
    if i.max(j) >= n_blocks {
        return Err(invalid("a block index is not below n_blocks"));
    }
    if row.kind == "shuffle" && i > j {
        return Err(invalid("the shuffled range is empty (i > j)"));
    }
    Ok(Blocks { i, j })
}

/// Returns the value of `measure` for the unmodified model.
fn identity_value(measure: &str) -> f64 {
    match measure {
        "top1_agreement" | "linear_cka_final" => 1.0,
        _ => 0.0,
    }
}

/// Returns whether a lower value of `measure` means less change.
// NOTE: a negative delta_nll (the variant predicts the text better) is drawn
// brighter than the unmodified model's 0, although it is a change too.
fn lower_is_less_change(measure: &str) -> bool {
    matches!(measure, "kl" | "delta_nll")
}

/// Rejects a measure that `repatlas intervene` does not write.
fn check_measure(measure: &str) -> Result<(), PlotError> {
    if MEASURES.contains(&measure) {
        Ok(())
    } else {
        Err(PlotError::UnknownMeasure {
            measure: measure.to_owned(),
        })
    }
}

/// Space left of a block chart for y tick labels and the y description, in pixels.
const Y_LABEL_AREA: u32 = 84;
/// Space under a block chart for x tick labels and the x description, in pixels.
const X_LABEL_AREA: u32 = 56;
/// Space above a block chart for the relative-depth axis, in pixels.
const DEPTH_AXIS_AREA: u32 = 52;

/// A chart with blocks on x and a measure on y.
type BlockChart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<WithKeyPoints<RangedCoordi32>, Y>>;

/// Builds and draws the axes of a chart with blocks `0..n_blocks` on x and
/// `y` on y, with the relative depth along the top when `depth_axis`.
///
/// The x coordinates are doubled block positions, as in the heatmaps:
/// block `b` spans `2b..2b + 2` and is drawn at `2b + 1`, which maps x
/// exactly onto relative depth 0..=1 (block `b` spans depth `b / n` to
/// `(b + 1) / n`).
fn block_chart<'a, DB, Y>(
    area: &'a DrawingArea<DB, Shift>,
    n_blocks: usize,
    y: Y,
    x_description: &str,
    y_description: &str,
    depth_axis: bool,
) -> Result<BlockChart<'a, DB, Y::CoordDescType>, DrawFailure>
where
    DB: DrawingBackend + 'a,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let (width, _) = area.dim_in_pixel();
    let widest = text_width(area, &n_blocks.saturating_sub(1).to_string(), TICK_SIZE);
    let axis_pixels = width.saturating_sub(Y_LABEL_AREA + 2 * MARGIN + 12);
    let step = label_step(n_blocks, widest, axis_pixels);
    let key_points: Vec<i32> = (0..n_blocks)
        .step_by(step)
        .map(|b| 2 * b as i32 + 1)
        .collect();

    let top = if depth_axis { DEPTH_AXIS_AREA } else { 0 };
    let mut chart = ChartBuilder::on(area)
        .margin(MARGIN)
        .margin_top(MARGIN + top)
        .margin_right(MARGIN + 12)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d((0..2 * n_blocks as i32).with_key_points(key_points), y)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc(x_description)
        .y_desc(y_description)
        .x_label_formatter(&|x| ((x - 1) / 2).to_string())
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .label_style(text(TICK_SIZE))
        .axis_desc_style(text(AXIS_DESC_SIZE))
        .draw()
        .map_err(failed)?;
    if depth_axis {
        draw_depth_axis(area, &chart.plotting_area().get_pixel_range())?;
    }
    Ok(chart)
}

/// Draws relative depth 0..=1 along the top of the plotting area whose
/// backend pixel ranges are `plot`.
///
/// Drawn by hand because plotters 0.3.7 also repeats the primary x labels
/// in a top label area.
fn draw_depth_axis<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    plot: &(std::ops::Range<i32>, std::ops::Range<i32>),
) -> Result<(), DrawFailure> {
    let (base_x, base_y) = area.get_base_pixel();
    let (left, right) = (plot.0.start - base_x, plot.0.end - base_x);
    let top = plot.1.start - base_y;
    let line = BLACK.stroke_width(1);
    area.draw(&PathElement::new([(left, top), (right, top)], line))
        .map_err(failed)?;

    let label_style = text(TICK_SIZE).pos(Pos::new(HPos::Center, VPos::Bottom));
    for step in 0..=5 {
        let depth = f64::from(step) / 5.0;
        let x = left + (f64::from(right - left) * depth).round() as i32;
        area.draw(&PathElement::new([(x, top), (x, top - 5)], line))
            .map_err(failed)?;
        area.draw_text(&format!("{depth:.1}"), &label_style, (x, top - 7))
            .map_err(failed)?;
    }
    let description_style = text(AXIS_DESC_SIZE).pos(Pos::new(HPos::Center, VPos::Bottom));
    area.draw_text(
        "relative depth",
        &description_style,
        ((left + right) / 2, top - 28),
    )
    .map_err(failed)
}
