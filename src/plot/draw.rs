//! Drawing helpers shared by the figures: titles, tick choice and number format.

use std::fmt::Display;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::FAMILY;
use super::FIGURE_SIZE;

/// Text sizes as passed to plotters 0.3.7, which draws text at `size / 1.24` pixels per em.
pub(super) const TITLE_SIZE: f64 = 27.0;
pub(super) const SUBTITLE_SIZE: f64 = 20.0;
pub(super) const AXIS_DESC_SIZE: f64 = 20.0;
pub(super) const TICK_SIZE: f64 = 17.0;

/// Height of the title band at the top of every figure, in pixels.
pub(super) const TITLE_BAND: u32 = 76;

/// A drawing failure, as text because the plotters error type depends on the backend.
#[derive(Debug)]
pub(super) struct DrawFailure(pub String);

/// Converts any plotters error into a [`DrawFailure`].
pub(super) fn failed<E: Display>(error: E) -> DrawFailure {
    DrawFailure(error.to_string())
}

/// A figure that can be drawn on any plotters backend.
pub(super) trait Figure {
    /// Draws the whole figure on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure>;

    /// Width and height of the PNG in pixels (and of the SVG in user units).
    fn size(&self) -> (u32, u32) {
        FIGURE_SIZE
    }
}

/// Returns the text style of the embedded font at `size` pixels.
pub(super) fn text(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// Draws a bold title line and a regular subtitle line, centred in `band`.
/// A line wider than the band is drawn smaller until it fits.
pub(super) fn draw_title<DB: DrawingBackend>(
    band: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<(), DrawFailure> {
    let (width, _) = band.dim_in_pixel();
    let centre = Pos::new(HPos::Center, VPos::Top);
    let fit = |line: &str, style: FontStyle, size: f64| {
        let mut size = size;
        while size > 10.0 && styled_width(band, line, style, size) + 24 > width {
            size -= 1.0;
        }
        TextStyle::from((FAMILY, size, style).into_font()).pos(centre)
    };
    let title_style = fit(title, FontStyle::Bold, TITLE_SIZE);
    band.draw_text(title, &title_style, (width as i32 / 2, 12))
        .map_err(failed)?;
    let subtitle_style = fit(subtitle, FontStyle::Normal, SUBTITLE_SIZE);
    band.draw_text(subtitle, &subtitle_style, (width as i32 / 2, 44))
        .map_err(failed)
}

fn styled_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    style: FontStyle,
    size: f64,
) -> u32 {
    let font = TextStyle::from((FAMILY, size, style).into_font());
    area.estimate_text_size(label, &font)
        .map_or(label.len() as u32 * size as u32, |(width, _)| width)
}

/// Returns the width in pixels of `label` at `size`, as plotters lays it out.
pub(super) fn text_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    size: f64,
) -> u32 {
    styled_width(area, label, FontStyle::Normal, size)
}

/// Returns the smallest step of 1, 2, 5, 10, 20, 50, ... such that every
/// `step`-th of `n` labels, each `extent` pixels long plus a gap, fits in
/// `axis_pixels`.
pub(super) fn label_step(n: usize, extent: u32, axis_pixels: u32) -> usize {
    let slot = f64::from(extent) + 8.0;
    let mut decade = 1;
    loop {
        for factor in [1, 2, 5] {
            let step = factor * decade;
            let shown = n.div_ceil(step);
            if shown as f64 * slot <= f64::from(axis_pixels) || step >= n {
                return step;
            }
        }
        decade *= 10;
    }
}

/// Returns round tick values (steps of 1, 2, 2.5 or 5 times a power of ten)
/// inside `low..=high`, about `target` of them, and the step.
pub(super) fn nice_ticks(low: f64, high: f64, target: usize) -> (Vec<f64>, f64) {
    let span = high - low;
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|f| f * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, step)
}

/// Formats `value` with enough decimals to tell apart ticks `step` apart.
pub(super) fn format_tick(value: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let decimals = if (step * 10f64.powi(decimals as i32)).fract().abs() > 1e-9 {
        decimals + 1
    } else {
        decimals
    };
    // Avoids printing "-0.0" for a tick at zero that came out as a tiny negative.
    let value = if value.abs() < step * 1e-9 {
        0.0
    } else {
        value
    };
    format!("{value:.decimals$}")
}

/// Formats a value shown as an exact number (range ends), with 4 significant digits.
pub(super) fn format_exact(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor();
    if !(-3.0..5.0).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    format!("{value:.decimals$}")
}

/// The sample drawn before a label in a figure key.
#[derive(Debug, Clone, Copy)]
pub(super) enum KeyMark {
    /// A solid horizontal line.
    Line(ShapeStyle),
    /// A dashed horizontal line.
    Dashed(ShapeStyle),
    /// A vertical whisker with caps.
    Whisker(ShapeStyle),
}

/// Width of a key mark, in pixels.
const MARK_WIDTH: i32 = 30;
/// Height of one line of a key, in pixels.
pub(super) const KEY_LINE: u32 = 26;

/// Draws a key of (mark, label) entries in `band`, centred, on as many lines
/// as the band's width needs. A figure puts the key in its own band, so it
/// never covers data.
pub(super) fn draw_key<DB: DrawingBackend>(
    band: &DrawingArea<DB, Shift>,
    entries: &[(KeyMark, String)],
) -> Result<(), DrawFailure> {
    let (width, _) = band.dim_in_pixel();
    let entry_width = |label: &str| MARK_WIDTH + 8 + text_width(band, label, TICK_SIZE) as i32 + 28;

    // Greedy line breaking: an entry goes on the next line when it does not fit.
    let mut lines: Vec<Vec<&(KeyMark, String)>> = vec![Vec::new()];
    let mut used = 0;
    for entry in entries {
        let w = entry_width(&entry.1);
        let line = lines.last_mut().expect("at least one line");
        if !line.is_empty() && used + w > width as i32 {
            lines.push(vec![entry]);
            used = w;
        } else {
            line.push(entry);
            used += w;
        }
    }

    let style = text(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
    for (row, line) in lines.iter().enumerate() {
        let total: i32 = line.iter().map(|e| entry_width(&e.1)).sum::<i32>() - 28;
        let mut x = (width as i32 - total) / 2;
        let y = KEY_LINE as i32 * row as i32 + KEY_LINE as i32 / 2;
        for (mark, label) in line.iter().copied() {
            draw_mark(band, *mark, x, y)?;
            band.draw_text(label, &style, (x + MARK_WIDTH + 8, y))
                .map_err(failed)?;
            x += entry_width(label);
        }
    }
    Ok(())
}

fn draw_mark<DB: DrawingBackend>(
    band: &DrawingArea<DB, Shift>,
    mark: KeyMark,
    x: i32,
    y: i32,
) -> Result<(), DrawFailure> {
    match mark {
        KeyMark::Line(style) => band.draw(&PathElement::new([(x, y), (x + MARK_WIDTH, y)], style)),
        KeyMark::Dashed(style) => {
            for start in (x..x + MARK_WIDTH).step_by(10) {
                band.draw(&PathElement::new([(start, y), (start + 6, y)], style))
                    .map_err(failed)?;
            }
            Ok(())
        }
        KeyMark::Whisker(style) => {
            let centre = x + MARK_WIDTH / 2;
            band.draw(&PathElement::new([(centre, y - 9), (centre, y + 9)], style))
                .map_err(failed)?;
            band.draw(&PathElement::new(
                [(centre - 5, y - 9), (centre + 5, y - 9)],
                style,
            ))
            .map_err(failed)?;
            band.draw(&PathElement::new(
                [(centre - 5, y + 9), (centre + 5, y + 9)],
                style,
            ))
        }
    }
    .map_err(failed)
}
