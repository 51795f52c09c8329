//! The best-match plot: relative depth of the most similar layer of B for
//! each layer of A, one curve per metric.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{
    draw_title, failed, text, DrawFailure, Figure, AXIS_DESC_SIZE, TICK_SIZE, TITLE_BAND,
};
use super::output::write_figure;
use super::PlotError;
use crate::results::{best_rows, summarize, ResultRow};

/// Curve colours from the Tableau 10 palette. Metrics past the tenth reuse them in order.
const CURVE_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Space for tick labels and the axis description on each axis, in pixels.
const LABEL_AREA: u32 = 64;

/// Draws, for each layer of A, the relative depth (`depth_b`) of its best
/// match in B against the diagonal y = x, and writes it as
/// `out_stem.png` and `out_stem.svg`.
///
/// The rows must belong to one (model A, model B) pair. Each metric among
/// them becomes one curve, and its legend entry shows the Pearson r of the
/// depths. The best match follows [`crate::results::summarize`]: maximum
/// for similarities, minimum for distances, ties to the lower layer of B.
/// Creates missing parent directories. Returns the two paths written.
pub fn best_match(rows: &[ResultRow], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let figure = BestMatchFigure::from_rows(rows)?;
    write_figure(&figure, out_stem)
}

/// One curve: the best-match depths of one metric.
struct Curve {
    metric: String,
    depth_correlation: f64,
    /// (depth of layer of A, depth of its best match in B), by ascending layer of A.
    points: Vec<(f64, f64)>,
}

struct BestMatchFigure {
    model_a: String,
    model_b: String,
    curves: Vec<Curve>,
}

impl BestMatchFigure {
    fn from_rows(rows: &[ResultRow]) -> Result<Self, PlotError> {
        let first = rows.first().ok_or(PlotError::NoRows)?;
        let key = |r: &ResultRow| format!("({}, {})", r.model_a, r.model_b);
        let first_key = key(first);
        if let Some(other) = rows.iter().find(|r| key(r) != first_key) {
            return Err(PlotError::MixedRows {
                figure: "best_match",
                expected_key: "(model_a, model_b)",
                first: first_key,
                other: key(other),
            });
        }

        let mut by_metric: BTreeMap<&str, Vec<&ResultRow>> = BTreeMap::new();
        for row in rows {
            by_metric.entry(&row.metric).or_default().push(row);
        }
        let summaries = summarize(rows);
        let curves = by_metric
            .into_iter()
            .map(|(metric, group)| Curve {
                metric: metric.to_owned(),
                depth_correlation: summaries
                    .iter()
                    .find(|s| s.metric == metric)
                    .map_or(f64::NAN, |s| s.depth_correlation),
                points: best_rows(&group)
                    .iter()
                    .map(|r| (r.depth_a, r.depth_b))
                    .collect(),
            })
            .collect();
        Ok(BestMatchFigure {
            model_a: first.model_a.clone(),
            model_b: first.model_b.clone(),
            curves,
        })
    }
}

impl Figure for BestMatchFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!("{} vs {}: best-matching layer", self.model_a, self.model_b);
        let subtitle = "for each layer of A, the relative depth of the most similar layer of B";
        draw_title(&band, &title, subtitle)?;

        // Side margins that make the plotting square keep the diagonal at 45 degrees.
        let (width, height) = body.dim_in_pixel();
        let side = height.saturating_sub(LABEL_AREA + 24);
        let spare = width.saturating_sub(side + LABEL_AREA);
        let mut chart = ChartBuilder::on(&body)
            .margin_top(12)
            .margin_bottom(12)
            .margin_left(spare / 2)
            .margin_right(spare - spare / 2)
            .x_label_area_size(LABEL_AREA)
            .y_label_area_size(LABEL_AREA)
            .build_cartesian_2d(-0.02..1.02, -0.02..1.02)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc(format!("relative depth in {} (A)", self.model_a))
            .y_desc(format!(
                "relative depth of best match in {} (B)",
                self.model_b
            ))
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .label_style(text(TICK_SIZE))
            .axis_desc_style(text(AXIS_DESC_SIZE))
            .draw()
            .map_err(failed)?;

        self.draw_curves(&mut chart)
    }
}

type DepthChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

impl BestMatchFigure {
    fn draw_curves<'a, DB: DrawingBackend + 'a>(
        &self,
        chart: &mut DepthChart<'a, DB>,
    ) -> Result<(), DrawFailure> {
        let diagonal = ShapeStyle::from(&BLACK.mix(0.55)).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                10,
                6,
                diagonal,
            ))
            .map_err(failed)?
            .label("y = x (same relative depth)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], diagonal));

        // Later curves are thinner, so a curve that coincides with an earlier one stays visible.
        let n_curves = self.curves.len() as u32;
        for (k, curve) in self.curves.iter().enumerate() {
            let colour = CURVE_COLOURS[k % CURVE_COLOURS.len()];
            let width = 2 + 2 * (n_curves - 1 - k as u32).min(3);
            let line = colour.stroke_width(width);
            let label = format!("{} (r = {:.3})", curve.metric, curve.depth_correlation);
            chart
                .draw_series(LineSeries::new(curve.points.iter().copied(), line))
                .map_err(failed)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], line));
            let dots = curve
                .points
                .iter()
                .map(|&point| Circle::new(point, width + 1, colour.filled()));
            chart.draw_series(dots).map_err(failed)?;
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(text(TICK_SIZE))
            .draw()
            .map_err(failed)
    }
}
