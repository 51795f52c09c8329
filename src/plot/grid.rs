//! The all-layers grid of one (model A, model B, metric), built from rows.

use std::collections::BTreeMap;

use super::PlotError;
use crate::results::{lower_is_better, ResultRow};

/// One layer on a heatmap axis.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layer {
    pub index: u32,
    pub name: String,
}

/// Values of one (model A, model B, metric) on a dense layer-by-layer grid.
#[derive(Debug, Clone)]
pub(super) struct Grid {
    pub model_a: String,
    pub model_b: String,
    pub metric: String,
    /// True for distances, where a lower value means more alike.
    pub lower_is_better: bool,
    /// Smallest and largest `n_stimuli` over the rows (equal in a normal run).
    pub n_stimuli: (u64, u64),
    /// Layers of A by ascending index (the x axis).
    pub layers_a: Vec<Layer>,
    /// Layers of B by ascending index (the y axis).
    pub layers_b: Vec<Layer>,
    /// Row-major by layer of A: `values[a * layers_b.len() + b]`, NaN where no row exists.
    pub values: Vec<f64>,
}

impl Grid {
    /// Builds the grid, rejecting rows of several (pair, metric) and duplicate cells.
    pub fn from_rows(rows: &[ResultRow]) -> Result<Self, PlotError> {
        let first = rows.first().ok_or(PlotError::NoRows)?;
        let key = |r: &ResultRow| format!("({}, {}, {})", r.model_a, r.model_b, r.metric);
        let first_key = key(first);
        if let Some(other) = rows.iter().find(|r| key(r) != first_key) {
            return Err(PlotError::MixedRows {
                figure: "heatmap",
                expected_key: "(model_a, model_b, metric)",
                first: first_key,
                other: key(other),
            });
        }

        let layers_a = axis(rows.iter().map(|r| (r.layer_a, &r.layer_a_name)));
        let layers_b = axis(rows.iter().map(|r| (r.layer_b, &r.layer_b_name)));
        let position = |layers: &[Layer], index: u32| {
            layers
                .binary_search_by_key(&index, |l| l.index)
                .expect("every layer of a row is on its axis")
        };

        let mut values = vec![f64::NAN; layers_a.len() * layers_b.len()];
        let mut filled = vec![false; values.len()];
        for row in rows {
            let cell = position(&layers_a, row.layer_a) * layers_b.len()
                + position(&layers_b, row.layer_b);
            if filled[cell] {
                return Err(PlotError::DuplicateCell {
                    model_a: row.model_a.clone(),
                    model_b: row.model_b.clone(),
                    metric: row.metric.clone(),
                    layer_a: row.layer_a,
                    layer_b: row.layer_b,
                });
            }
            filled[cell] = true;
            values[cell] = row.value;
        }

        let n_stimuli = rows.iter().fold((u64::MAX, 0), |(low, high), r| {
            (low.min(r.n_stimuli), high.max(r.n_stimuli))
        });
        Ok(Grid {
            model_a: first.model_a.clone(),
            model_b: first.model_b.clone(),
            metric: first.metric.clone(),
            lower_is_better: lower_is_better(&first.metric_kind),
            n_stimuli,
            layers_a,
            layers_b,
            values,
        })
    }

    /// Returns the smallest and largest finite value, or an error when there is none.
    pub fn finite_range(&self) -> Result<(f64, f64), PlotError> {
        let finite = self.values.iter().copied().filter(|v| v.is_finite());
        let range = finite.fold(None, |range: Option<(f64, f64)>, v| match range {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        });
        range.ok_or_else(|| PlotError::NoFiniteValues {
            model_a: self.model_a.clone(),
            model_b: self.model_b.clone(),
            metric: self.metric.clone(),
        })
    }

    /// Returns whether some cell has no finite value.
    pub fn has_missing(&self) -> bool {
        self.values.iter().any(|v| !v.is_finite())
    }
}

/// Collects the distinct layers of one axis, sorted by index. The first name seen for an index wins.
fn axis<'a>(layers: impl Iterator<Item = (u32, &'a String)>) -> Vec<Layer> {
    let mut by_index: BTreeMap<u32, &String> = BTreeMap::new();
    for (index, name) in layers {
        by_index.entry(index).or_insert(name);
    }
    by_index
        .into_iter()
        .map(|(index, name)| Layer {
            index,
            name: name.clone(),
        })
        .collect()
}
