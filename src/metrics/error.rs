//! The error type of the metric stage.

use thiserror::Error;

/// Everything that can go wrong while parsing a measure or computing it.
///
/// Each message names the value that failed (metric, layer, row, column)
/// and says what to change.
#[derive(Debug, Error)]
pub enum MetricError {
    /// The metric name is not one of the canonical names.
    #[error("unknown metric '{name}'; valid metrics: {valid}")]
    UnknownMetric {
        /// The name as written.
        name: String,
        /// The canonical names, comma-separated.
        valid: String,
    },

    /// A `key=value` parameter that the metric does not take.
    #[error("unknown parameter '{key}' for metric '{metric}'; valid parameters: {valid}")]
    UnknownParameter {
        /// The metric name.
        metric: String,
        /// The key as written.
        key: String,
        /// The keys this metric takes, or "none".
        valid: String,
    },

    /// A parameter whose value cannot be used.
    #[error("invalid value '{value}' for parameter '{key}' of metric '{metric}': {reason}")]
    InvalidParameter {
        /// The metric name.
        metric: String,
        /// The parameter key.
        key: String,
        /// The value as written.
        value: String,
        /// Why it is invalid and what is accepted.
        reason: String,
    },

    /// A grid or outlier option outside its valid range.
    #[error("invalid option {option} = {value}: {reason}")]
    InvalidOption {
        /// The option name.
        option: &'static str,
        /// The value as given.
        value: String,
        /// The valid range.
        reason: String,
    },

    /// One side of a grid has no layers.
    #[error("no layers in {side}; pass at least one representation")]
    NoLayers {
        /// "the first model" or "the second model".
        side: &'static str,
    },

    /// A representation with no rows or no columns.
    #[error(
        "representation '{layer}' is empty ({rows} x {columns}); \
         pass a matrix with one row per stimulus and at least one column"
    )]
    Empty {
        /// The layer name.
        layer: String,
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        columns: usize,
    },

    /// A NaN or infinite activation.
    #[error(
        "representation '{layer}' has {value} at row {row}, column {column}; \
         replace or remove non-finite activations before comparing"
    )]
    NonFinite {
        /// The layer name.
        layer: String,
        /// Row (stimulus) index, from 0.
        row: usize,
        /// Column index, from 0.
        column: usize,
        /// The offending value.
        value: f64,
    },

    /// Every row of the representation is identical.
    #[error(
        "representation '{layer}' is constant (all {rows} rows are identical), so it has \
         zero variance and no similarity is defined; check that this layer was captured \
         correctly or leave it out"
    )]
    ConstantRepresentation {
        /// The layer name.
        layer: String,
        /// Number of rows.
        rows: usize,
    },

    /// A single row for which the measure is undefined (for example a zero
    /// row under cosine similarity).
    #[error("row {row} of representation '{layer}' {problem}, so {metric} is undefined; {fix}")]
    DegenerateRow {
        /// The layer name.
        layer: String,
        /// Row (stimulus) index, from 0.
        row: usize,
        /// The canonical metric name.
        metric: String,
        /// What is wrong with the row.
        problem: &'static str,
        /// What to do instead.
        fix: &'static str,
    },

    /// Two representations with different numbers of stimuli.
    #[error(
        "representations '{layer_a}' ({rows_a} rows) and '{layer_b}' ({rows_b} rows) have \
         different numbers of stimuli; both need one row per stimulus, in the same order"
    )]
    RowMismatch {
        /// First layer name.
        layer_a: String,
        /// Its number of rows.
        rows_a: usize,
        /// Second layer name.
        layer_b: String,
        /// Its number of rows.
        rows_b: usize,
    },

    /// Fewer stimuli than the measure needs.
    #[error("{metric} needs at least {needed} stimuli but got {got}; {fix}")]
    TooFewStimuli {
        /// The canonical metric name.
        metric: String,
        /// Minimum number of rows.
        needed: usize,
        /// Number of rows given.
        got: usize,
        /// What to do instead.
        fix: String,
    },

    /// A CCA-family measure asked to keep as many dimensions as there are
    /// stimuli, where every canonical correlation is 1 by construction.
    #[error(
        "{metric} keeps {kept} dimensions of representation '{layer}', which has only {n} \
         stimuli, so the canonical correlations are 1 by construction; keep fewer \
         components (k < {n}) or use a kernel measure such as linear_cka_debiased"
    )]
    KeptDimensionTooLarge {
        /// The canonical metric name.
        metric: String,
        /// The layer name.
        layer: String,
        /// Dimensions kept.
        kept: usize,
        /// Number of stimuli.
        n: usize,
    },

    /// SVCCA asked for more components than the representation's rank.
    #[error(
        "{metric} keeps {kept} components but representation '{layer}' has numerical rank \
         {rank}; use svcca:k={rank} or fewer, or svcca:var=0.99"
    )]
    RankTooLow {
        /// The canonical metric name.
        metric: String,
        /// The layer name.
        layer: String,
        /// Components requested.
        kept: usize,
        /// Numerical rank of the centred representation.
        rank: usize,
    },

    /// The measure is undefined for this input (a zero denominator).
    #[error("{metric} is undefined for representation '{layer}': {reason}")]
    Undefined {
        /// The canonical metric name.
        metric: String,
        /// The layer name.
        layer: String,
        /// Why, and what to do instead.
        reason: String,
    },

    /// A LAPACK routine reported failure.
    #[error("{operation} failed for representation '{layer}': {detail}")]
    Linalg {
        /// The decomposition that failed.
        operation: &'static str,
        /// The layer name.
        layer: String,
        /// The message of the linear-algebra library.
        detail: String,
    },

    /// A bootstrap resample on which the measure failed.
    #[error(
        "bootstrap resample {index} (seed {seed}) failed: {source}; a resample repeats \
         stimuli, so use more stimuli or fewer bootstrap resamples"
    )]
    Resample {
        /// Index of the resample, from 0.
        index: usize,
        /// The grid seed.
        seed: u64,
        /// The error on the resampled data.
        source: Box<MetricError>,
    },
}
