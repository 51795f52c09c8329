//! The all-layers heatmap of one (model A, model B, metric).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{
    draw_title, failed, format_exact, format_tick, label_step, nice_ticks, text, text_width,
    DrawFailure, Figure, AXIS_DESC_SIZE, TICK_SIZE, TITLE_BAND,
};
use super::grid::{Grid, Layer};
use super::output::write_figure;
use super::PlotError;
use crate::results::ResultRow;

/// Width of the colour-bar column at the right of the figure, in pixels.
const BAR_COLUMN: u32 = 170;
/// Margin around the heatmap and the colour bar, in pixels.
const MARGIN: u32 = 12;
/// Height of the area under the heatmap for tick labels and the x description.
const X_LABEL_AREA: u32 = 64;
/// Layer names wider than this (at tick size) are replaced by layer indices.
const MAX_NAME_WIDTH: u32 = 80;
/// Width of the strip right of the colour-bar ticks that contains its description.
const BAR_DESC_STRIP: u32 = 30;
/// Resolution of the colour bar's integer axis (see [`AxisTicks`] for why it is integer).
const BAR_STEPS: i32 = 1000;
/// Colour of cells without a finite value.
const MISSING: RGBColor = RGBColor(200, 200, 200);

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
    /// Maps a value to 0..=1 along the colour scale, 1 being the most alike.
    fn scale_position(&self, value: f64) -> f64 {
        let (low, high) = self.padded_range();
        let t = (value - low) / (high - low);
        if self.grid.lower_is_better {
            1.0 - t
        } else {
            t
        }
    }

    /// Maps a colour-scale position back to a value.
    fn value_at(&self, position: f64) -> f64 {
        let (low, high) = self.padded_range();
        let t = if self.grid.lower_is_better {
            1.0 - position
        } else {
            position
        };
        low + t * (high - low)
    }

    /// Returns the value range, widened when all values are equal so the scale has a span.
    fn padded_range(&self) -> (f64, f64) {
        let (low, high) = self.range;
        if high > low {
            (low, high)
        } else {
            let pad = (low.abs() * 0.05).max(0.05);
            (low - pad, high + pad)
        }
    }

    fn colour(&self, value: f64) -> RGBColor {
        if value.is_finite() {
            ViridisRGB::get_color(self.scale_position(value).clamp(0.0, 1.0))
        } else {
            MISSING
        }
    }

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
}

impl Figure for HeatmapFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!("{} vs {}", self.grid.model_a, self.grid.model_b);
        draw_title(&band, &title, &self.subtitle())?;

        let (width, _) = body.dim_in_pixel();
        let (plot_area, bar_area) = body.split_horizontally(width - BAR_COLUMN);
        self.draw_cells(&plot_area)?;
        self.draw_colour_bar(&bar_area)
    }
}

/// Tick positions and labels of one heatmap axis.
///
/// Axis coordinates are doubled layer positions: cell `i` spans `2i..2i + 2`,
/// so its centre `2i + 1` is an integer. Plotters accepts custom key points
/// only on integer axes (its f64 axis has no default formatter to wrap).
struct AxisTicks {
    positions: Vec<i32>,
    labels: Vec<String>,
    /// True when the labels are layer names, false for layer indices.
    named: bool,
}

impl AxisTicks {
    /// Chooses names or indices and thins the ticks to fit `axis_pixels`.
    fn new<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        layers: &[Layer],
        horizontal: bool,
        axis_pixels: u32,
    ) -> Self {
        let width = |label: &str| text_width(area, label, TICK_SIZE);
        let name_width = layers.iter().map(|l| width(&l.name)).max().unwrap_or(0);
        let named = name_width <= MAX_NAME_WIDTH;
        let labels: Vec<String> = layers
            .iter()
            .map(|l| {
                if named {
                    l.name.clone()
                } else {
                    l.index.to_string()
                }
            })
            .collect();

        let extent = if horizontal {
            labels.iter().map(|l| width(l)).max().unwrap_or(0)
        } else {
            TICK_SIZE as u32
        };
        let step = label_step(labels.len(), extent, axis_pixels);
        let positions = (0..labels.len())
            .step_by(step)
            .map(|i| 2 * i as i32 + 1)
            .collect();
        AxisTicks {
            positions,
            labels,
            named,
        }
    }

    fn label(&self, coordinate: i32) -> String {
        let position = (coordinate.max(0) / 2) as usize;
        self.labels.get(position).cloned().unwrap_or_default()
    }
}

/// Maps a step of the colour bar's axis to a colour-scale position in 0..=1.
fn bar_position(step: i32) -> f64 {
    f64::from(step) / f64::from(BAR_STEPS)
}

/// Returns the axis description, saying whether ticks are names or indices.
fn axis_description(model: &str, ticks: &AxisTicks) -> String {
    if ticks.named {
        format!("layer of {model}")
    } else {
        format!("layer index of {model}")
    }
}

impl HeatmapFigure {
    fn draw_cells<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawFailure> {
        let grid = &self.grid;
        let (width, height) = area.dim_in_pixel();
        let y_ticks_probe = AxisTicks::new(area, &grid.layers_b, false, height);
        let y_label_width = y_ticks_probe
            .labels
            .iter()
            .map(|l| text_width(area, l, TICK_SIZE))
            .max()
            .unwrap_or(0);
        let y_label_area = y_label_width + 48;
        let x_axis_pixels = width.saturating_sub(y_label_area + 2 * MARGIN);
        let y_axis_pixels = height.saturating_sub(X_LABEL_AREA + 2 * MARGIN);
        let x_ticks = AxisTicks::new(area, &grid.layers_a, true, x_axis_pixels);
        let y_ticks = AxisTicks::new(area, &grid.layers_b, false, y_axis_pixels);

        let n_a = 2 * grid.layers_a.len() as i32;
        let n_b = 2 * grid.layers_b.len() as i32;
        let mut chart = ChartBuilder::on(area)
            .margin(MARGIN)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(y_label_area)
            .build_cartesian_2d(
                (0..n_a).with_key_points(x_ticks.positions.clone()),
                (0..n_b).with_key_points(y_ticks.positions.clone()),
            )
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(axis_description(&grid.model_a, &x_ticks))
            .y_desc(axis_description(&grid.model_b, &y_ticks))
            .x_label_formatter(&|x| x_ticks.label(*x))
            .y_label_formatter(&|y| y_ticks.label(*y))
            .label_style(text(TICK_SIZE))
            .axis_desc_style(text(AXIS_DESC_SIZE))
            .draw()
            .map_err(failed)?;

        let cells = (0..grid.layers_a.len()).flat_map(|a| {
            (0..grid.layers_b.len()).map(move |b| {
                let (x, y) = (2 * a as i32, 2 * b as i32);
                let colour = self.colour(grid.value(a, b));
                Rectangle::new([(x, y), (x + 2, y + 2)], colour.filled())
            })
        });
        chart.draw_series(cells).map_err(failed)?;
        Ok(())
    }

    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawFailure> {
        let (low, high) = self.padded_range();
        let (tick_values, step) = nice_ticks(low, high, 6);
        let tick_positions = tick_values
            .iter()
            .map(|&v| (self.scale_position(v) * f64::from(BAR_STEPS)).round() as i32)
            .collect();
        let direction = if self.grid.lower_is_better {
            "value (lower = more alike)"
        } else {
            "value (higher = more alike)"
        };

        let mut chart = ChartBuilder::on(area)
            .margin_top(MARGIN)
            .margin_bottom(MARGIN)
            .margin_left(8)
            .margin_right(BAR_DESC_STRIP)
            .x_label_area_size(X_LABEL_AREA)
            .set_label_area_size(LabelAreaPosition::Right, 64)
            .build_cartesian_2d(0.0..1.0, (0..BAR_STEPS).with_key_points(tick_positions))
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_formatter(&|k| format_tick(self.value_at(bar_position(*k)), step))
            .label_style(text(TICK_SIZE))
            .axis_desc_style(text(AXIS_DESC_SIZE))
            .draw()
            .map_err(failed)?;

        let strip_height = BAR_STEPS / 200;
        let strips = (0..BAR_STEPS).step_by(strip_height as usize).map(|k| {
            let colour = ViridisRGB::get_color(bar_position(k) + 0.5 / 200.0);
            Rectangle::new([(0.0, k), (1.0, k + strip_height)], colour.filled())
        });
        chart.draw_series(strips).map_err(failed)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0), (1.0, BAR_STEPS)],
                BLACK.stroke_width(1),
            )))
            .map_err(failed)?;
        self.draw_range_note(area)?;

        // Drawn by hand because plotters clips a y description on the right side.
        let (width, height) = area.dim_in_pixel();
        let style = text(AXIS_DESC_SIZE)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let centre_y = (MARGIN + (height - X_LABEL_AREA - 2 * MARGIN) / 2) as i32;
        let x = (width - BAR_DESC_STRIP / 2) as i32;
        area.draw_text(direction, &style, (x, centre_y))
            .map_err(failed)
    }

    /// Writes the exact value range under the colour bar.
    fn draw_range_note<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawFailure> {
        let (_, height) = area.dim_in_pixel();
        let (low, high) = self.range;
        let style = text(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Top));
        let top = (height - MARGIN - X_LABEL_AREA + 12) as i32;
        area.draw_text(&format!("min {}", format_exact(low)), &style, (8, top))
            .map_err(failed)?;
        area.draw_text(
            &format!("max {}", format_exact(high)),
            &style,
            (8, top + 20),
        )
        .map_err(failed)?;
        Ok(())
    }
}
