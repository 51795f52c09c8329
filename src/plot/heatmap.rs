//! The all-layers heatmap of one (model A, model B, metric).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::cells::{CellAxis, CellMatrix};
use super::colour::ColourScale;
use super::draw::{draw_title, failed, text_width, DrawFailure, Figure, TICK_SIZE, TITLE_BAND};
use super::grid::{Grid, Layer};
use super::output::write_figure;
use super::PlotError;
use crate::results::ResultRow;

/// Layer names wider than this (at tick size) are replaced by layer indices.
const MAX_NAME_WIDTH: u32 = 80;

/// Draws the heatmap of the rows of one (model A, model B, metric) and
/// writes it as `out_stem.png` and `out_stem.svg`.
///
/// Layers of A run along x and layers of B along y, both by ascending layer
/// index, with tick labels thinned so they do not overlap. The colour map
/// is viridis with bright meaning more alike: for distances the scale is
/// reversed (low values bright) and the colour bar labels the direction. Cells without a
/// row or with a non-finite value are grey. Creates missing parent
/// directories. Returns the two paths written.
pub fn heatmap(rows: &[ResultRow], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let grid = Grid::from_rows(rows)?;
    let range = grid.finite_range()?;
    write_figure(&HeatmapFigure { grid, range }, out_stem)
}

/// A grid with its finite value range.
struct HeatmapFigure {
    grid: Grid,
    range: (f64, f64),
}

impl HeatmapFigure {
    fn subtitle(&self) -> String {
        let grid = &self.grid;
        let kind = if grid.lower_is_better {
            "distance"
        } else {
            "similarity"
        };
        let stimuli = match grid.n_stimuli {
            (low, high) if low == high => format!("n_stimuli = {low}"),
            (low, high) => format!("n_stimuli = {low} to {high}"),
        };
        let mut subtitle = format!("{} ({kind}), {stimuli}", grid.metric);
        if grid.has_missing() {
            subtitle.push_str(", grey = no value");
        }
        subtitle
    }

    /// Builds the cell matrix, labelling each axis by layer names when
    /// they are short enough and by layer indices otherwise.
    fn matrix<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> CellMatrix {
        let grid = &self.grid;
        CellMatrix {
            x: layer_axis(area, &grid.layers_a, &grid.model_a),
            y: layer_axis(area, &grid.layers_b, &grid.model_b),
            values: grid.values.clone(),
            scale: ColourScale {
                range: self.range,
                lower_is_better: grid.lower_is_better,
            },
        }
    }
}

impl Figure for HeatmapFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!("{} vs {}", self.grid.model_a, self.grid.model_b);
        draw_title(&band, &title, &self.subtitle())?;

        let direction = if self.grid.lower_is_better {
            "value (lower = more alike)"
        } else {
            "value (higher = more alike)"
        };
        self.matrix(&body).draw_panel(&body, direction, None)
    }
}

/// Returns the axis of `layers`, with names as ticks when every name fits
/// in [`MAX_NAME_WIDTH`] and indices otherwise. The description names which.
fn layer_axis<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layers: &[Layer],
    model: &str,
) -> CellAxis {
    let name_width = layers
        .iter()
        .map(|l| text_width(area, &l.name, TICK_SIZE))
        .max()
        .unwrap_or(0);
    if name_width <= MAX_NAME_WIDTH {
        let labels = layers.iter().map(|l| l.name.clone()).collect();
        CellAxis::new(labels, format!("layer of {model}"))
    } else {
        let labels = layers.iter().map(|l| l.index.to_string()).collect();
        CellAxis::new(labels, format!("layer index of {model}"))
    }
}
