//! Shuffled ranges: each range of blocks as a bar at its mean top-1
//! agreement over seeds.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{block_chart, select, RunInfo};
use crate::intervene::{widest_shuffle, InterventionRow, ShuffleSummary, Variant};
use crate::plot::draw::{
    draw_key, draw_title, failed, DrawFailure, Figure, KeyMark, KEY_LINE, TITLE_BAND,
};
use crate::plot::PlotError;

const RANGE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const WIDEST_COLOUR: RGBColor = RGBColor(255, 127, 14);
const THRESHOLD_COLOUR: RGBColor = RGBColor(80, 80, 80);

/// One shuffled range of blocks and its top-1 agreement per seed.
struct ShuffledRange {
    start: usize,
    end: usize,
    values: Vec<f64>,
}

impl ShuffledRange {
    fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    fn min_max(&self) -> (f64, f64) {
        let low = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (low, high)
    }

    /// Returns the centre of the range in doubled block coordinates.
    fn centre(&self) -> i32 {
        (self.start + self.end + 1) as i32
    }
}

/// The shuffled-range figure of one model.
pub(super) struct ShuffleFigure {
    info: RunInfo,
    threshold: f64,
    /// Ranges by ascending (start, end).
    ranges: Vec<ShuffledRange>,
    widest: Option<ShuffleSummary>,
}

impl ShuffleFigure {
    pub fn from_rows(rows: &[InterventionRow], threshold: f64) -> Result<Self, PlotError> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(PlotError::InvalidThreshold(threshold));
        }
        let hint = "run repatlas intervene with --variants shuffle:START-END or shuffle:scan";
        let (info, chosen) = select(rows, "shuffle", "top1_agreement", "shuffle_ranges", hint)?;

        let mut by_range: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
        let mut variants = Vec::with_capacity(chosen.len());
        for (row, blocks) in &chosen {
            by_range
                .entry((blocks.i, blocks.j))
                .or_default()
                .push(row.value);
            let variant = Variant::Shuffle {
                start: blocks.i,
                end: blocks.j,
                seed: row.seed.unwrap_or(0),
            };
            variants.push((variant, row.value));
        }
        let ranges = by_range
            .into_iter()
            .map(|((start, end), values)| ShuffledRange { start, end, values })
            .collect();
        Ok(ShuffleFigure {
            info,
            threshold,
            ranges,
            widest: widest_shuffle(&variants, threshold),
        })
    }

    fn subtitle(&self) -> String {
        let seeds = self
            .ranges
            .iter()
            .map(|r| r.values.len())
            .max()
            .unwrap_or(0);
        let ranges = match self.ranges.len() {
            1 => "1 range".to_owned(),
            n => format!("{n} ranges"),
        };
        // Seeds that repeat an order are dropped, so ranges differ in count.
        let orders = match seeds {
            1 => "one order each".to_owned(),
            n => format!("up to {n} orders each"),
        };
        format!(
            "top-1 agreement vs the unmodified model over {}; {ranges}, {orders}",
            self.info.stimuli()
        )
    }

    fn is_widest(&self, range: &ShuffledRange) -> bool {
        self.widest
            .as_ref()
            .is_some_and(|w| w.start == range.start && w.end == range.end)
    }

    fn key(&self) -> Vec<(KeyMark, String)> {
        let mut key = vec![
            (
                KeyMark::Line(RANGE_COLOUR.stroke_width(5)),
                "shuffled blocks, at the mean over seeds".to_owned(),
            ),
            (
                KeyMark::Whisker(RANGE_COLOUR.stroke_width(1)),
                "lowest to highest seed".to_owned(),
            ),
        ];
        let threshold = KeyMark::Dashed(THRESHOLD_COLOUR.stroke_width(2));
        match &self.widest {
            Some(w) => {
                key.push((threshold, format!("threshold {:.2}", self.threshold)));
                let label = format!(
                    "widest range at or above it: blocks {}-{} ({} of {}), mean {:.3}",
                    w.start,
                    w.end,
                    w.end - w.start + 1,
                    self.info.n_blocks,
                    w.top1_agreement
                );
                key.push((KeyMark::Line(WIDEST_COLOUR.stroke_width(7)), label));
            }
            None => key.push((
                threshold,
                format!("threshold {:.2}, which no range reaches", self.threshold),
            )),
        }
        key
    }
}

impl Figure for ShuffleFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!("{}: shuffling a range of blocks", self.info.model);
        draw_title(&band, &title, &self.subtitle())?;

        let (_, height) = body.dim_in_pixel();
        let (plot_area, key_band) = body.split_vertically(height - 2 * KEY_LINE - 8);
        draw_key(&key_band, &self.key())?;

        let n = self.info.n_blocks;
        let mut chart = block_chart(
            &plot_area,
            n,
            -0.02..1.02,
            "shuffled blocks",
            "top-1 agreement",
            true,
        )?;
        let threshold = self.threshold;
        chart
            .draw_series(DashedLineSeries::new(
                [(0, threshold), (2 * n as i32, threshold)],
                10,
                6,
                THRESHOLD_COLOUR.stroke_width(2),
            ))
            .map_err(failed)?;

        // The highlighted range goes last so that no other bar covers it.
        let (widest, others): (Vec<_>, Vec<_>) =
            self.ranges.iter().partition(|r| self.is_widest(r));
        for range in others {
            draw_range(&mut chart, range, RANGE_COLOUR.mix(0.75), 5)?;
        }
        for range in widest {
            draw_range(&mut chart, range, WIDEST_COLOUR.to_rgba(), 7)?;
        }
        Ok(())
    }
}

/// Draws one range's bar and, with several seeds, its whisker and seed dots.
fn draw_range<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    range: &ShuffledRange,
    colour: RGBAColor,
    width: u32,
) -> Result<(), DrawFailure>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (i32, f64)>,
{
    // Caps at both ends tell apart ranges that meet at the same height.
    let mean = range.mean();
    let ends = [
        (2 * range.start as i32, mean),
        (2 * range.end as i32 + 2, mean),
    ];
    let reach = width as i32 + 3;
    let end_cap = |end| {
        EmptyElement::at(end) + PathElement::new([(0, -reach), (0, reach)], colour.stroke_width(2))
    };
    chart
        .draw_series(std::iter::once(PathElement::new(
            ends,
            colour.stroke_width(width),
        )))
        .map_err(failed)?;
    chart.draw_series(ends.map(end_cap)).map_err(failed)?;
    if range.values.len() < 2 {
        return Ok(());
    }

    let x = range.centre();
    let (low, high) = range.min_max();
    let thin = colour.stroke_width(1);
    let cap = |y: f64| EmptyElement::at((x, y)) + PathElement::new([(-5, 0), (5, 0)], thin);
    chart
        .draw_series([PathElement::new([(x, low), (x, high)], thin)])
        .map_err(failed)?;
    chart.draw_series([cap(low), cap(high)]).map_err(failed)?;
    let dots = range
        .values
        .iter()
        .map(|&v| Circle::new((x, v), 3, colour.filled()));
    chart.draw_series(dots).map_err(failed)?;
    Ok(())
}
