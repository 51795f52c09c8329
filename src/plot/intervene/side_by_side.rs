//! The within-model linear CKA heatmap beside the top-1 swap matrix.

use std::collections::BTreeSet;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::swap::{finite_range, SwapMatrix};
use crate::plot::cells::{CellAxis, CellFrame, CellMatrix, BAR_COLUMN, X_LABEL_AREA};
use crate::plot::colour::{ColourScale, MARGIN};
use crate::plot::draw::{draw_title, failed, DrawFailure, Figure, TITLE_BAND};
use crate::plot::PlotError;
use crate::results::ResultRow;

/// Width and height of the side-by-side figure, in pixels.
pub const SIDE_BY_SIDE_SIZE: (u32, u32) = (1700, 820);

/// Space between the two panels, in pixels.
const PANEL_GAP: u32 = 60;
/// The metric of the left panel.
const CKA_METRIC: &str = "linear_cka";

/// Returns whether `cka_rows` contain a `linear_cka` comparison of `model` with itself.
pub(super) fn has_self_comparison(cka_rows: &[ResultRow], model: &str) -> bool {
    cka_rows.iter().any(|r| is_self_cka(r, model))
}

fn is_self_cka(row: &ResultRow, model: &str) -> bool {
    row.model_a == model && row.model_b == model && row.metric == CKA_METRIC
}

/// Linear CKA between layers `0..=n_blocks` of one model.
struct CkaGrid {
    /// Row-major by layer of A: `values[a * (n_blocks + 1) + b]`, NaN where no row exists.
    values: Vec<f64>,
    range: (f64, f64),
    n_stimuli: u64,
    /// Layer indices above `n_blocks` that were left out, such as `final_norm`.
    left_out: BTreeSet<u32>,
}

impl CkaGrid {
    fn from_rows(rows: &[ResultRow], model: &str, n_blocks: usize) -> Result<Self, PlotError> {
        let chosen: Vec<&ResultRow> = rows.iter().filter(|r| is_self_cka(r, model)).collect();
        let Some(first) = chosen.first() else {
            return Err(PlotError::NoSelfComparison {
                model: model.to_owned(),
                found: found_keys(rows),
            });
        };

        let side = n_blocks + 1;
        let mut values = vec![f64::NAN; side * side];
        let mut filled = vec![false; side * side];
        let mut left_out = BTreeSet::new();
        for row in &chosen {
            let (a, b) = (row.layer_a as usize, row.layer_b as usize);
            if a >= side || b >= side {
                left_out.insert(row.layer_a.max(row.layer_b));
                continue;
            }
            if filled[a * side + b] {
                return Err(PlotError::DuplicateCell {
                    model_a: row.model_a.clone(),
                    model_b: row.model_b.clone(),
                    metric: row.metric.clone(),
                    layer_a: row.layer_a,
                    layer_b: row.layer_b,
                });
            }
            filled[a * side + b] = true;
            values[a * side + b] = row.value;
        }
        let range = finite_range(&values).ok_or_else(|| PlotError::NoFiniteValues {
            model_a: model.to_owned(),
            model_b: model.to_owned(),
            metric: CKA_METRIC.to_owned(),
        })?;
        Ok(CkaGrid {
            values,
            range,
            n_stimuli: first.n_stimuli,
            left_out,
        })
    }
}

/// Lists the distinct (model_a, model_b, metric) keys of `rows`, at most five.
fn found_keys(rows: &[ResultRow]) -> String {
    let keys: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("({}, {}, {})", r.model_a, r.model_b, r.metric))
        .collect();
    if keys.is_empty() {
        return "no rows".to_owned();
    }
    let mut listed: Vec<String> = keys.iter().take(5).cloned().collect();
    if keys.len() > 5 {
        listed.push(format!("and {} more", keys.len() - 5));
    }
    listed.join(", ")
}

/// The two-panel figure.
pub(super) struct SideBySide {
    cka: CkaGrid,
    swaps: SwapMatrix,
}

impl SideBySide {
    pub fn new(cka_rows: &[ResultRow], swaps: SwapMatrix) -> Result<Self, PlotError> {
        let cka = CkaGrid::from_rows(cka_rows, &swaps.info.model, swaps.info.n_blocks)?;
        Ok(SideBySide { cka, swaps })
    }

    fn cka_cells(&self) -> CellMatrix {
        let side = self.swaps.info.n_blocks + 1;
        let labels: Vec<String> = (0..side).map(|l| l.to_string()).collect();
        let description = "layer L (0 = embedding, L = output of block L - 1)";
        CellMatrix {
            x: CellAxis::new(labels.clone(), description.to_owned()),
            y: CellAxis::new(labels, "layer L".to_owned()),
            values: self.cka.values.clone(),
            scale: ColourScale {
                range: self.cka.range,
                lower_is_better: false,
            },
        }
    }

    /// Returns the swap cells with ticks on the blocks level with the left panel's ticks.
    fn swap_cells(&self) -> CellMatrix {
        let mut cells = self.swaps.cells(
            "block i (level with its output, layer i + 1)".to_owned(),
            "block j (swapped with i)".to_owned(),
        );
        cells.x.tick_phase = 1;
        cells.y.tick_phase = 1;
        cells
    }

    fn subtitle(&self) -> String {
        let mut subtitle = format!(
            "left: linear CKA between layers over {} stimuli; right: top-1 agreement \
             after swapping blocks i and j, over {}",
            self.cka.n_stimuli,
            self.swaps.info.stimuli()
        );
        if !self.cka.left_out.is_empty() {
            let indices: Vec<String> = self.cka.left_out.iter().map(u32::to_string).collect();
            subtitle.push_str(&format!("; CKA layers {} left out", indices.join(", ")));
        }
        subtitle
    }
}

impl Figure for SideBySide {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!(
            "{}: how alike the layers are, and how well their blocks swap",
            self.swaps.info.model
        );
        draw_title(&band, &title, &self.subtitle())?;

        // Both panels are equally wide, with a gap between them.
        let (width, height) = body.dim_in_pixel();
        let panel_width = (width - PANEL_GAP) / 2;
        let (left, rest) = body.split_horizontally(panel_width);
        let (_, right) = rest.split_horizontally(PANEL_GAP);
        let (cka, swaps) = (self.cka_cells(), self.swap_cells());
        let (left_frame, right_frame) = aligned_frames(&cka, &swaps, &left, panel_width, height);
        cka.draw_panel(&left, "linear_cka (higher = more alike)", Some(left_frame))?;
        swaps.draw_panel(&right, &self.swaps.direction(), Some(right_frame))
    }

    fn size(&self) -> (u32, u32) {
        SIDE_BY_SIDE_SIZE
    }
}

/// Returns label areas that put block `b` of the right panel level with
/// layer `b + 1` of the left panel, both panels `panel_width` x `height`.
///
/// The left panel has one more cell per axis (the embedding, layer 0), so
/// the right panel gets one cell of extra margin at the left and bottom.
/// Its cells then have the left panel's size and start one cell further
/// right and up.
fn aligned_frames<DB: DrawingBackend>(
    cka: &CellMatrix,
    swaps: &CellMatrix,
    area: &DrawingArea<DB, Shift>,
    panel_width: u32,
    height: u32,
) -> (CellFrame, CellFrame) {
    let y_label_area = cka
        .frame(area)
        .y_label_area
        .max(swaps.frame(area).y_label_area);
    let side = f64::from(cka.x.labels.len() as u32);
    let plot_width = panel_width.saturating_sub(BAR_COLUMN + 2 * MARGIN + y_label_area);
    let plot_height = height.saturating_sub(2 * MARGIN + X_LABEL_AREA);
    let cell_width = (f64::from(plot_width) / side).round() as u32;
    let cell_height = (f64::from(plot_height) / side).round() as u32;
    let left = CellFrame {
        y_label_area,
        x_label_area: X_LABEL_AREA,
        inset_left: 0,
        inset_bottom: 0,
    };
    let right = CellFrame {
        inset_left: cell_width,
        inset_bottom: cell_height,
        ..left
    };
    (left, right)
}
