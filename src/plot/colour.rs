//! The viridis colour scale of heatmaps and its colour bar.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{
    failed, format_exact, format_tick, nice_ticks, text, DrawFailure, AXIS_DESC_SIZE, TICK_SIZE,
};

/// Margin around a heatmap and its colour bar, in pixels.
pub(super) const MARGIN: u32 = 12;
/// Width of the strip right of the colour-bar ticks that contains its description.
const BAR_DESC_STRIP: u32 = 30;
/// Resolution of the colour bar's integer axis (plotters takes custom key
/// points only on integer axes).
const BAR_STEPS: i32 = 1000;
/// Colour of cells without a finite value.
pub(super) const MISSING: RGBColor = RGBColor(200, 200, 200);

/// Viridis over a value range, with bright meaning more alike (or less change).
#[derive(Debug, Clone, Copy)]
pub(super) struct ColourScale {
    /// Smallest and largest finite value shown.
    pub range: (f64, f64),
    /// True when a lower value means more alike, which reverses the scale.
    pub lower_is_better: bool,
}

impl ColourScale {
    /// Maps a value to 0..=1 along the colour scale, 1 being the most alike.
    pub fn position(&self, value: f64) -> f64 {
        let (low, high) = self.padded_range();
        let t = (value - low) / (high - low);
        if self.lower_is_better {
            1.0 - t
        } else {
            t
        }
    }

    /// Maps a colour-scale position back to a value.
    fn value_at(&self, position: f64) -> f64 {
        let (low, high) = self.padded_range();
        let t = if self.lower_is_better {
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

    /// Returns the colour of `value`, grey when it is not finite.
    pub fn colour(&self, value: f64) -> RGBColor {
        if value.is_finite() {
            ViridisRGB::get_color(self.position(value).clamp(0.0, 1.0))
        } else {
            MISSING
        }
    }

    /// Draws the colour bar with tick values, `description` along its
    /// right side and the exact range under it. The bar spans the height of
    /// `area` less [`MARGIN`] at the top and `MARGIN + bottom` at the
    /// bottom, which lines it up with a heatmap whose x label area is `bottom`.
    pub fn draw_bar<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        description: &str,
        bottom: u32,
    ) -> Result<(), DrawFailure> {
        let (low, high) = self.padded_range();
        let (tick_values, step) = nice_ticks(low, high, 6);
        let tick_positions = tick_values
            .iter()
            .map(|&v| (self.position(v) * f64::from(BAR_STEPS)).round() as i32)
            .collect();

        let mut chart = ChartBuilder::on(area)
            .margin_top(MARGIN)
            .margin_bottom(MARGIN)
            .margin_left(8)
            .margin_right(BAR_DESC_STRIP)
            .x_label_area_size(bottom)
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
        self.draw_range_note(area, bottom)?;

        // Drawn by hand because plotters clips a y description on the right side.
        let (width, height) = area.dim_in_pixel();
        let style = text(AXIS_DESC_SIZE)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let centre_y = (MARGIN + (height - bottom - 2 * MARGIN) / 2) as i32;
        let x = (width - BAR_DESC_STRIP / 2) as i32;
        area.draw_text(description, &style, (x, centre_y))
            .map_err(failed)
    }

    /// Writes the exact value range under the colour bar.
    fn draw_range_note<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        bottom: u32,
    ) -> Result<(), DrawFailure> {
        let (_, height) = area.dim_in_pixel();
        let (low, high) = self.range;
        let style = text(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Top));
        let top = (height - MARGIN - bottom + 12) as i32;
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

/// Maps a step of the colour bar's axis to a colour-scale position in 0..=1.
fn bar_position(step: i32) -> f64 {
    f64::from(step) / f64::from(BAR_STEPS)
}
