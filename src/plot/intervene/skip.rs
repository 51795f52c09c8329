//! The skip curve: top-1 agreement and KL for each skipped block.

use std::collections::BTreeMap;

use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{block_chart, select, Blocks, RunInfo};
use crate::intervene::InterventionRow;
use crate::plot::draw::{draw_title, failed, DrawFailure, Figure, TITLE_BAND};
use crate::plot::PlotError;

const TOP1_COLOUR: RGBColor = RGBColor(31, 119, 180);
const KL_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// KL values whose maximum is at least this many times their minimum get a log axis.
const LOG_SPAN: f64 = 20.0;

/// Top-1 agreement and KL by skipped block.
pub(super) struct SkipFigure {
    info: RunInfo,
    /// (block, mean top-1 agreement of its rows), by ascending block.
    top1: Vec<(usize, f64)>,
    /// (block, mean KL), by ascending block; empty without `kl` rows.
    kl: Vec<(usize, f64)>,
}

impl SkipFigure {
    pub fn from_rows(rows: &[InterventionRow]) -> Result<Self, PlotError> {
        let hint = "run repatlas intervene with --variants skip:each";
        let (info, top1) = select(rows, "skip", "top1_agreement", "skip_curve", hint)?;
        let kl = match select(rows, "skip", "kl", "skip_curve", hint) {
            Ok((_, kl)) => by_block(&kl),
            Err(PlotError::NoVariantRows { .. }) => Vec::new(),
            Err(error) => return Err(error),
        };
        Ok(SkipFigure {
            top1: by_block(&top1),
            kl,
            info,
        })
    }

    /// Returns whether the KL panel gets a log axis, and its value range.
    fn kl_axis(&self) -> (bool, f64, f64) {
        let finite = self.kl.iter().map(|p| p.1).filter(|v| v.is_finite());
        let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        if low > 0.0 && high / low >= LOG_SPAN {
            (true, low / 1.5, high * 1.5)
        } else if high > low.min(0.0) {
            (false, low.min(0.0), high * 1.08)
        } else {
            (false, 0.0, 1.0)
        }
    }
}

/// Averages the values of rows that skip the same block.
fn by_block(rows: &[(&InterventionRow, Blocks)]) -> Vec<(usize, f64)> {
    let mut sums: BTreeMap<usize, (f64, u32)> = BTreeMap::new();
    for (row, blocks) in rows {
        let entry = sums.entry(blocks.i).or_default();
        entry.0 += row.value;
        entry.1 += 1;
    }
    sums.into_iter()
        .map(|(block, (sum, count))| (block, sum / f64::from(count)))
        .collect()
}

impl Figure for SkipFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE).map_err(failed)?;
        let (band, body) = root.split_vertically(TITLE_BAND);
        let title = format!("{}: skipping one block", self.info.model);
        let subtitle = format!(
            "{} of {} blocks skipped in turn, measured against the unmodified model over {}",
            self.top1.len(),
            self.info.n_blocks,
            self.info.stimuli()
        );
        draw_title(&band, &title, &subtitle)?;

        let n = self.info.n_blocks;
        let top1 = Panel {
            description: "top-1 agreement",
            points: &self.top1,
            colour: TOP1_COLOUR,
            depth_axis: true,
        };
        if self.kl.is_empty() {
            return top1.draw(&body, n, -0.02..1.02);
        }
        let (_, height) = body.dim_in_pixel();
        let (upper, lower) = body.split_vertically(height / 2 + 28);
        top1.draw(&upper, n, -0.02..1.02)?;

        let (log, low, high) = self.kl_axis();
        let kl = Panel {
            description: if log {
                "KL (nats, log scale)"
            } else {
                "KL (nats)"
            },
            points: &self.kl,
            colour: KL_COLOUR,
            depth_axis: false,
        };
        if log {
            kl.draw(&lower, n, (low..high).log_scale())
        } else {
            kl.draw(&lower, n, low..high)
        }
    }
}

/// One panel of the skip figure: a measure by skipped block.
struct Panel<'a> {
    description: &'static str,
    points: &'a [(usize, f64)],
    colour: RGBColor,
    /// Whether the relative depth goes along the top.
    depth_axis: bool,
}

impl Panel<'_> {
    fn draw<DB, Y>(
        &self,
        area: &DrawingArea<DB, Shift>,
        n_blocks: usize,
        y: Y,
    ) -> Result<(), DrawFailure>
    where
        DB: DrawingBackend,
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = block_chart(
            area,
            n_blocks,
            y,
            "skipped block",
            self.description,
            self.depth_axis,
        )?;
        let points: Vec<(i32, f64)> = self
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(block, value)| (2 * block as i32 + 1, value))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), self.colour.stroke_width(2)))
            .map_err(failed)?;
        let dots = points
            .into_iter()
            .map(|point| Circle::new(point, 4, self.colour.filled()));
        chart.draw_series(dots).map_err(failed)?;
        Ok(())
    }
}
