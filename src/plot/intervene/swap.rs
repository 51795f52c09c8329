//! The swap matrix: one measure over every pair of swapped blocks.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{check_measure, identity_value, lower_is_less_change, select, RunInfo};
use crate::intervene::InterventionRow;
use crate::plot::cells::{CellAxis, CellMatrix};
use crate::plot::colour::ColourScale;
use crate::plot::draw::{draw_title, failed, DrawFailure, Figure, TITLE_BAND};
use crate::plot::PlotError;

/// Values of one measure on the dense `n_blocks x n_blocks` swap grid.
pub(super) struct SwapMatrix {
    pub info: RunInfo,
    pub measure: String,
    /// Row-major by block i: `values[i * n_blocks + j]`, NaN where no pair was measured.
    pub values: Vec<f64>,
    /// Smallest and largest finite value, diagonal included.
    pub range: (f64, f64),
}

impl SwapMatrix {
    /// Builds the grid from the swap rows of `measure`; `figure` names the
    /// calling figure in errors.
    pub fn from_rows(
        rows: &[InterventionRow],
        measure: &str,
        figure: &'static str,
    ) -> Result<Self, PlotError> {
        check_measure(measure)?;
        let hint = "run repatlas intervene with --variants swap:adjacent or swap:all";
        let (info, chosen) = select(rows, "swap", measure, figure, hint)?;
        let n = info.n_blocks;

        let mut sums = vec![0.0f64; n * n];
        let mut counts = vec![0u32; n * n];
        for (row, blocks) in chosen {
            let cells = [blocks.i * n + blocks.j, blocks.j * n + blocks.i];
            // A pair with i == j names one cell twice; count it once.
            let distinct = if blocks.i == blocks.j { 1 } else { 2 };
            for &cell in &cells[..distinct] {
                sums[cell] += row.value;
                counts[cell] += 1;
            }
        }
        let mut values: Vec<f64> = sums
            .iter()
            .zip(&counts)
            .map(|(&sum, &count)| {
                if count == 0 {
                    f64::NAN
                } else {
                    sum / f64::from(count)
                }
            })
            .collect();
        for b in 0..n {
            if counts[b * n + b] == 0 {
                values[b * n + b] = identity_value(measure);
            }
        }

        let range = finite_range(&values).ok_or_else(|| PlotError::NoFiniteValues {
            model_a: info.model.clone(),
            model_b: info.model.clone(),
            metric: measure.to_owned(),
        })?;
        Ok(SwapMatrix {
            info,
            measure: measure.to_owned(),
            values,
            range,
        })
    }

    /// Returns the cell matrix with block labels and the given axis descriptions.
    pub fn cells(&self, x_description: String, y_description: String) -> CellMatrix {
        let labels: Vec<String> = (0..self.info.n_blocks).map(|b| b.to_string()).collect();
        CellMatrix {
            x: CellAxis::new(labels.clone(), x_description),
            y: CellAxis::new(labels, y_description),
            values: self.values.clone(),
            scale: ColourScale {
                range: self.range,
                lower_is_better: lower_is_less_change(&self.measure),
            },
        }
    }

    /// Describes the colour direction, for the colour bar.
    pub fn direction(&self) -> String {
        if lower_is_less_change(&self.measure) {
            format!("{} (lower = less change)", self.measure)
        } else {
            format!("{} (higher = less change)", self.measure)
        }
    }

    /// Returns the number of pairs of two different blocks that have a value.
    pub fn measured_pairs(&self) -> usize {
        let n = self.info.n_blocks;
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| self.values[i * n + j].is_finite())
            .count()
    }
}

/// Returns the smallest and largest finite value, or None when there is none.
pub(super) fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })
}

/// The swap-matrix figure of one measure.
pub(super) struct SwapFigure(pub SwapMatrix);

impl Figure for SwapFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        let matrix = &self.0;
        let n = matrix.info.n_blocks;
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!(
            "{}: swapping blocks i and j, {}",
            matrix.info.model, matrix.measure
        );
        let mut subtitle = format!(
            "vs the unmodified model over {}; {} of {} pairs measured, diagonal = no swap",
            matrix.info.stimuli(),
            matrix.measured_pairs(),
            n * n.saturating_sub(1) / 2
        );
        let cells = matrix.cells("block i".into(), "block j (swapped with i)".into());
        if cells.has_missing() {
            subtitle.push_str(", grey = not measured");
        }
        draw_title(&band, &title, &subtitle)?;
        cells.draw_panel(&body, &matrix.direction(), None)
    }
}
