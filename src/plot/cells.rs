//! A matrix of coloured cells with thinned tick labels, drawn beside its
//! colour bar. The layer heatmap and the intervention heatmaps share it.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::colour::{ColourScale, MARGIN};
use super::draw::{failed, label_step, text, text_width, DrawFailure, AXIS_DESC_SIZE, TICK_SIZE};

/// Width of the colour-bar column at the right of a heatmap panel, in pixels.
pub(super) const BAR_COLUMN: u32 = 170;
/// Height of the area under the cells for tick labels and the x description.
pub(super) const X_LABEL_AREA: u32 = 64;

/// One axis of a cell matrix.
pub(super) struct CellAxis {
    /// Tick label of each cell, in axis order.
    pub labels: Vec<String>,
    /// Axis description.
    pub description: String,
    /// Ticks go on cells whose position plus `tick_phase` is a multiple of
    /// the tick step, so that two panels offset by one cell share tick rows.
    pub tick_phase: usize,
}

impl CellAxis {
    /// Creates an axis whose ticks start at the first cell.
    pub fn new(labels: Vec<String>, description: String) -> Self {
        CellAxis {
            labels,
            description,
            tick_phase: 0,
        }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// Chooses tick positions that fit `axis_pixels` without overlapping labels.
    ///
    /// Axis coordinates are doubled cell positions: cell `i` spans
    /// `2i..2i + 2`, so its centre `2i + 1` is an integer. Plotters accepts
    /// custom key points only on integer axes.
    fn ticks<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        horizontal: bool,
        axis_pixels: u32,
    ) -> Vec<i32> {
        let extent = if horizontal {
            self.labels
                .iter()
                .map(|l| text_width(area, l, TICK_SIZE))
                .max()
                .unwrap_or(0)
        } else {
            TICK_SIZE as u32
        };
        let step = label_step(self.len(), extent, axis_pixels);
        (0..self.len())
            .filter(|p| (p + self.tick_phase) % step == 0)
            .map(|p| 2 * p as i32 + 1)
            .collect()
    }

    fn label(&self, coordinate: i32) -> String {
        let position = (coordinate.max(0) / 2) as usize;
        self.labels.get(position).cloned().unwrap_or_default()
    }
}

/// Sizes of the label areas left of and below the cells, and extra
/// margins outside them, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CellFrame {
    pub y_label_area: u32,
    pub x_label_area: u32,
    /// Margin added left of the y label area.
    pub inset_left: u32,
    /// Margin added under the x label area.
    pub inset_bottom: u32,
}

/// Values on a dense grid of cells, coloured by a scale.
pub(super) struct CellMatrix {
    pub x: CellAxis,
    pub y: CellAxis,
    /// Row-major by x position: `values[x * n_y + y]`, NaN where there is no value.
    pub values: Vec<f64>,
    pub scale: ColourScale,
}

impl CellMatrix {
    fn value(&self, x: usize, y: usize) -> f64 {
        self.values[x * self.y.len() + y]
    }

    /// Returns whether some cell has no finite value.
    pub fn has_missing(&self) -> bool {
        self.values.iter().any(|v| !v.is_finite())
    }

    /// Returns label areas that fit the widest y tick label.
    pub fn frame<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> CellFrame {
        let widest = self
            .y
            .labels
            .iter()
            .map(|l| text_width(area, l, TICK_SIZE))
            .max()
            .unwrap_or(0);
        CellFrame {
            y_label_area: widest + 48,
            x_label_area: X_LABEL_AREA,
            inset_left: 0,
            inset_bottom: 0,
        }
    }

    /// Draws the cells in `area` less a [`BAR_COLUMN`] strip at the right,
    /// and the colour bar, described by `bar_description`, in that strip.
    /// `frame` defaults to [`CellMatrix::frame`].
    pub fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        bar_description: &str,
        frame: Option<CellFrame>,
    ) -> Result<(), DrawFailure> {
        let (width, _) = area.dim_in_pixel();
        let (cell_area, bar_area) = area.split_horizontally(width.saturating_sub(BAR_COLUMN));
        let frame = frame.unwrap_or_else(|| self.frame(&cell_area));
        self.draw_cells(&cell_area, frame)?;
        let bar_bottom = frame.x_label_area + frame.inset_bottom;
        self.scale.draw_bar(&bar_area, bar_description, bar_bottom)
    }

    fn draw_cells<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        frame: CellFrame,
    ) -> Result<(), DrawFailure> {
        let (width, height) = area.dim_in_pixel();
        let x_axis_pixels =
            width.saturating_sub(frame.y_label_area + frame.inset_left + 2 * MARGIN);
        let y_axis_pixels =
            height.saturating_sub(frame.x_label_area + frame.inset_bottom + 2 * MARGIN);
        let x_ticks = self.x.ticks(area, true, x_axis_pixels);
        let y_ticks = self.y.ticks(area, false, y_axis_pixels);

        let n_x = 2 * self.x.len() as i32;
        let n_y = 2 * self.y.len() as i32;
        let mut chart = ChartBuilder::on(area)
            .margin(MARGIN)
            .margin_left(MARGIN + frame.inset_left)
            .margin_bottom(MARGIN + frame.inset_bottom)
            .x_label_area_size(frame.x_label_area)
            .y_label_area_size(frame.y_label_area)
            .build_cartesian_2d(
                (0..n_x).with_key_points(x_ticks),
                (0..n_y).with_key_points(y_ticks),
            )
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x.description.as_str())
            .y_desc(self.y.description.as_str())
            .x_label_formatter(&|x| self.x.label(*x))
            .y_label_formatter(&|y| self.y.label(*y))
            .label_style(text(TICK_SIZE))
            .axis_desc_style(text(AXIS_DESC_SIZE))
            .draw()
            .map_err(failed)?;

        let cells = (0..self.x.len()).flat_map(|a| {
            (0..self.y.len()).map(move |b| {
                let (x, y) = (2 * a as i32, 2 * b as i32);
                let colour = self.scale.colour(self.value(a, b));
                Rectangle::new([(x, y), (x + 2, y + 2)], colour.filled())
            })
        });
        chart.draw_series(cells).map_err(failed)?;
        Ok(())
    }
}
