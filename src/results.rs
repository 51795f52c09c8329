//! Tidy comparison rows: parquet, JSON lines and per-pair summaries.
//!
//! A comparison of model A with model B produces one [`ResultRow`] per
//! (layer of A, layer of B, metric). [`write_parquet`] and [`read_parquet`]
//! store a slice of rows as one parquet file whose columns are the struct
//! fields, and [`write_jsonl`] writes the same fields as one JSON object per
//! line. `docs/results-schema.md` documents both formats. [`summarize`]
//! reduces the rows of each (model A, model B, metric) to a [`PairSummary`]:
//! the best-matching layer of B for every layer of A, and how well the
//! relative depths of matched layers agree.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use polars::prelude::{
    Column, DataFrame, DataType, ParquetReader, ParquetWriter, PolarsError, SerReader,
};

/// One comparison of a layer of model A with a layer of model B under one metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultRow {
    /// Model A, as named in its run manifest (for example a Hugging Face model id).
    pub model_a: String,
    /// Layer index of model A (0 is the embedding output).
    pub layer_a: u32,
    /// Layer name of model A, for example `resid_post.3`.
    pub layer_a_name: String,
    /// Relative depth of the layer of A, `layer_a / n_layers_a`, in 0..=1.
    pub depth_a: f64,
    /// Model B, as named in its run manifest.
    pub model_b: String,
    /// Layer index of model B.
    pub layer_b: u32,
    /// Layer name of model B.
    pub layer_b_name: String,
    /// Relative depth of the layer of B, `layer_b / n_layers_b`, in 0..=1.
    pub depth_b: f64,
    /// Canonical metric name, for example `linear_cka` or
    /// `rsa:rdm=correlation,compare=spearman`.
    pub metric: String,
    /// `similarity` (higher is more alike) or `distance` (lower is more alike).
    pub metric_kind: String,
    /// Metric value.
    pub value: f64,
    /// Number of stimuli (rows of each representation) the value was computed on.
    pub n_stimuli: u64,
    /// SHA-256 hex digest of the run manifest of model A.
    pub manifest_a: String,
    /// SHA-256 hex digest of the run manifest of model B.
    pub manifest_b: String,
    /// Permutation-test p-value, when permutations were run.
    pub p_value: Option<f64>,
    /// Lower bound of the bootstrap confidence interval, when bootstrapped.
    pub ci_low: Option<f64>,
    /// Upper bound of the bootstrap confidence interval, when bootstrapped.
    pub ci_high: Option<f64>,
    /// Number of permutations behind `p_value` (0 when none were run).
    pub n_permutations: u32,
    /// Number of bootstrap resamples behind `ci_low` and `ci_high` (0 when none).
    pub n_bootstrap: u32,
}

/// Errors of reading and writing result files.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file operation failed.
    #[error("{action} {path} failed: {source}")]
    Io {
        /// The attempted operation, for example `creating`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Polars failed to encode or decode the parquet file.
    #[error("{action} parquet file {path} failed: {source}")]
    Parquet {
        /// `writing` or `reading`.
        action: &'static str,
        /// The parquet file.
        path: PathBuf,
        /// The underlying error.
        source: PolarsError,
    },
    /// A required column is absent.
    #[error(
        "column `{column}` is missing from results file {path}. Write the file with \
         repatlas or add the column as described in docs/results-schema.md"
    )]
    MissingColumn {
        /// The parquet file.
        path: PathBuf,
        /// The absent column.
        column: &'static str,
    },
    /// A column has an unexpected data type.
    #[error(
        "column `{column}` of results file {path} has type {actual}, expected {expected}. \
         Write the file with repatlas or cast the column (docs/results-schema.md lists the types)"
    )]
    ColumnType {
        /// The parquet file.
        path: PathBuf,
        /// The mistyped column.
        column: &'static str,
        /// The data type the schema requires.
        expected: String,
        /// The data type found in the file.
        actual: String,
    },
    /// A non-nullable column contains a null.
    #[error("column `{column}` of results file {path} is null in row {row}, but it must be set")]
    NullValue {
        /// The parquet file.
        path: PathBuf,
        /// The column with the null.
        column: &'static str,
        /// Zero-based row index of the first null.
        row: usize,
    },
    /// Serializing a row as JSON failed.
    #[error("writing a result row as JSON failed: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing a JSON line to the output failed.
    #[error("writing JSON lines failed: {0}")]
    JsonlIo(#[source] io::Error),
}

/// Storage type of one column, mapped to a polars [`DataType`].
#[derive(Debug, Clone, Copy)]
enum ColumnKind {
    Str,
    U32,
    U64,
    F64,
    NullableF64,
}

impl ColumnKind {
    fn dtype(self) -> DataType {
        match self {
            ColumnKind::Str => DataType::String,
            ColumnKind::U32 => DataType::UInt32,
            ColumnKind::U64 => DataType::UInt64,
            ColumnKind::F64 | ColumnKind::NullableF64 => DataType::Float64,
        }
    }
}

/// The parquet schema in column order, the same as the fields of [`ResultRow`].
const SCHEMA: [(&str, ColumnKind); 19] = [
    ("model_a", ColumnKind::Str),
    ("layer_a", ColumnKind::U32),
    ("layer_a_name", ColumnKind::Str),
    ("depth_a", ColumnKind::F64),
    ("model_b", ColumnKind::Str),
    ("layer_b", ColumnKind::U32),
    ("layer_b_name", ColumnKind::Str),
    ("depth_b", ColumnKind::F64),
    ("metric", ColumnKind::Str),
    ("metric_kind", ColumnKind::Str),
    ("value", ColumnKind::F64),
    ("n_stimuli", ColumnKind::U64),
    ("manifest_a", ColumnKind::Str),
    ("manifest_b", ColumnKind::Str),
    ("p_value", ColumnKind::NullableF64),
    ("ci_low", ColumnKind::NullableF64),
    ("ci_high", ColumnKind::NullableF64),
    ("n_permutations", ColumnKind::U32),
    ("n_bootstrap", ColumnKind::U32),
];

/// A temporary file beside a target path, renamed onto the target by
/// [`AtomicFile::commit`] and removed when dropped uncommitted.
///
/// The temporary name is hidden (leading dot), contains `.tmp-` and keeps
/// the target's extension, because some encoders pick the format from it.
pub(crate) struct AtomicFile {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Reserves a temporary path in the directory of `target` without creating a file.
    pub(crate) fn new(target: &Path) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name = target
            .file_name()
            .map_or_else(|| "output".into(), |name| name.to_string_lossy());
        let extension = target
            .extension()
            .map_or_else(String::new, |ext| format!(".{}", ext.to_string_lossy()));
        let temp_name = format!(
            ".{file_name}.tmp-{}-{serial}{extension}",
            std::process::id()
        );
        Self {
            temp: target.with_file_name(temp_name),
            target: target.to_path_buf(),
            committed: false,
        }
    }

    /// Returns the temporary path to write to.
    pub(crate) fn path(&self) -> &Path {
        &self.temp
    }

    /// Flushes the temporary file to disk and renames it onto the target.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        File::open(&self.temp)?.sync_all()?;
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        sync_parent_dir(&self.target);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // The temporary file may never have been created, so a failure is expected.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Flushes the directory entry of a rename on Unix. Best effort: the data
/// itself is already synced, so a failure here only weakens crash safety.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if let Ok(handle) = File::open(dir) {
            let _ = handle.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Writes `rows` as a parquet file (zstd-compressed) at `path`.
///
/// The file is written under a temporary name in the same directory and
/// renamed onto `path` after it is complete and synced, so an interrupted
/// write leaves either the old file or none at all. An empty slice writes a
/// file with the schema and no rows.
pub fn write_parquet(rows: &[ResultRow], path: &Path) -> Result<(), ResultsError> {
    let mut frame = rows_to_frame(rows).map_err(|source| ResultsError::Parquet {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })?;

    let atomic = AtomicFile::new(path);
    let io_error = |action, source| ResultsError::Io {
        action,
        path: atomic.path().to_path_buf(),
        source,
    };
    let file = File::create_new(atomic.path()).map_err(|e| io_error("creating", e))?;
    let mut writer = BufWriter::new(file);
    ParquetWriter::new(&mut writer)
        .finish(&mut frame)
        .map_err(|source| ResultsError::Parquet {
            action: "writing",
            path: path.to_path_buf(),
            source,
        })?;
    writer.flush().map_err(|e| io_error("writing", e))?;
    drop(writer);

    atomic.commit().map_err(|source| ResultsError::Io {
        action: "renaming the temporary file onto",
        path: path.to_path_buf(),
        source,
    })
}

fn rows_to_frame(rows: &[ResultRow]) -> Result<DataFrame, PolarsError> {
    fn strings(rows: &[ResultRow], field: fn(&ResultRow) -> &str) -> Vec<&str> {
        rows.iter().map(field).collect()
    }
    fn numbers<T>(rows: &[ResultRow], field: fn(&ResultRow) -> T) -> Vec<T> {
        rows.iter().map(field).collect()
    }

    let columns = vec![
        Column::new("model_a".into(), strings(rows, |r| &r.model_a)),
        Column::new("layer_a".into(), numbers(rows, |r| r.layer_a)),
        Column::new("layer_a_name".into(), strings(rows, |r| &r.layer_a_name)),
        Column::new("depth_a".into(), numbers(rows, |r| r.depth_a)),
        Column::new("model_b".into(), strings(rows, |r| &r.model_b)),
        Column::new("layer_b".into(), numbers(rows, |r| r.layer_b)),
        Column::new("layer_b_name".into(), strings(rows, |r| &r.layer_b_name)),
        Column::new("depth_b".into(), numbers(rows, |r| r.depth_b)),
        Column::new("metric".into(), strings(rows, |r| &r.metric)),
        Column::new("metric_kind".into(), strings(rows, |r| &r.metric_kind)),
        Column::new("value".into(), numbers(rows, |r| r.value)),
        Column::new("n_stimuli".into(), numbers(rows, |r| r.n_stimuli)),
        Column::new("manifest_a".into(), strings(rows, |r| &r.manifest_a)),
        Column::new("manifest_b".into(), strings(rows, |r| &r.manifest_b)),
        Column::new("p_value".into(), numbers(rows, |r| r.p_value)),
        Column::new("ci_low".into(), numbers(rows, |r| r.ci_low)),
        Column::new("ci_high".into(), numbers(rows, |r| r.ci_high)),
        Column::new("n_permutations".into(), numbers(rows, |r| r.n_permutations)),
        Column::new("n_bootstrap".into(), numbers(rows, |r| r.n_bootstrap)),
    ];
    DataFrame::new(rows.len(), columns)
}

/// Reads a parquet file written by [`write_parquet`].
///
/// Columns beyond the schema are ignored. A missing column, a column of
/// another data type (no implicit casts, so an `Int64` layer column is
/// rejected) or a null in a non-nullable column is an error that names the
/// file and the column.
pub fn read_parquet(path: &Path) -> Result<Vec<ResultRow>, ResultsError> {
    let file = File::open(path).map_err(|source| ResultsError::Io {
        action: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|source| ResultsError::Parquet {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })?;
    for (name, kind) in SCHEMA {
        checked_column(&frame, path, name, kind)?;
    }
    frame_to_rows(&frame, path)
}

/// Returns the column `name`, checking that it exists and has the schema's type.
fn checked_column<'a>(
    frame: &'a DataFrame,
    path: &Path,
    name: &'static str,
    kind: ColumnKind,
) -> Result<&'a Column, ResultsError> {
    let column = frame
        .column(name)
        .map_err(|_| ResultsError::MissingColumn {
            path: path.to_path_buf(),
            column: name,
        })?;
    let expected = kind.dtype();
    if column.dtype() != &expected {
        return Err(ResultsError::ColumnType {
            path: path.to_path_buf(),
            column: name,
            expected: expected.to_string(),
            actual: column.dtype().to_string(),
        });
    }
    Ok(column)
}

/// Decodes the rows of a frame whose columns passed [`checked_column`].
fn frame_to_rows(frame: &DataFrame, path: &Path) -> Result<Vec<ResultRow>, ResultsError> {
    let columns = Decoder { frame, path };
    let model_a = columns.strings("model_a")?;
    let layer_a = columns.u32s("layer_a")?;
    let layer_a_name = columns.strings("layer_a_name")?;
    let depth_a = columns.f64s("depth_a")?;
    let model_b = columns.strings("model_b")?;
    let layer_b = columns.u32s("layer_b")?;
    let layer_b_name = columns.strings("layer_b_name")?;
    let depth_b = columns.f64s("depth_b")?;
    let metric = columns.strings("metric")?;
    let metric_kind = columns.strings("metric_kind")?;
    let value = columns.f64s("value")?;
    let n_stimuli = columns.u64s("n_stimuli")?;
    let manifest_a = columns.strings("manifest_a")?;
    let manifest_b = columns.strings("manifest_b")?;
    let p_value = columns.nullable_f64s("p_value")?;
    let ci_low = columns.nullable_f64s("ci_low")?;
    let ci_high = columns.nullable_f64s("ci_high")?;
    let n_permutations = columns.u32s("n_permutations")?;
    let n_bootstrap = columns.u32s("n_bootstrap")?;

    let rows = (0..frame.height())
        .map(|i| ResultRow {
            model_a: model_a[i].clone(),
            layer_a: layer_a[i],
            layer_a_name: layer_a_name[i].clone(),
            depth_a: depth_a[i],
            model_b: model_b[i].clone(),
            layer_b: layer_b[i],
            layer_b_name: layer_b_name[i].clone(),
            depth_b: depth_b[i],
            metric: metric[i].clone(),
            metric_kind: metric_kind[i].clone(),
            value: value[i],
            n_stimuli: n_stimuli[i],
            manifest_a: manifest_a[i].clone(),
            manifest_b: manifest_b[i].clone(),
            p_value: p_value[i],
            ci_low: ci_low[i],
            ci_high: ci_high[i],
            n_permutations: n_permutations[i],
            n_bootstrap: n_bootstrap[i],
        })
        .collect();
    Ok(rows)
}

/// Typed access to the columns of one frame read from `path`.
struct Decoder<'a> {
    frame: &'a DataFrame,
    path: &'a Path,
}

impl Decoder<'_> {
    fn column(&self, name: &'static str, kind: ColumnKind) -> Result<&Column, ResultsError> {
        checked_column(self.frame, self.path, name, kind)
    }

    fn polars_error(&self, source: PolarsError) -> ResultsError {
        ResultsError::Parquet {
            action: "reading",
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn strings(&self, name: &'static str) -> Result<Vec<String>, ResultsError> {
        let column = self.column(name, ColumnKind::Str)?;
        let values = column.str().map_err(|e| self.polars_error(e))?.iter();
        non_null(values.map(|v| v.map(str::to_owned)), self.path, name)
    }

    fn u32s(&self, name: &'static str) -> Result<Vec<u32>, ResultsError> {
        let column = self.column(name, ColumnKind::U32)?;
        let values = column.u32().map_err(|e| self.polars_error(e))?.iter();
        non_null(values, self.path, name)
    }

    fn u64s(&self, name: &'static str) -> Result<Vec<u64>, ResultsError> {
        let column = self.column(name, ColumnKind::U64)?;
        let values = column.u64().map_err(|e| self.polars_error(e))?.iter();
        non_null(values, self.path, name)
    }

    fn f64s(&self, name: &'static str) -> Result<Vec<f64>, ResultsError> {
        let column = self.column(name, ColumnKind::F64)?;
        let values = column.f64().map_err(|e| self.polars_error(e))?.iter();
        non_null(values, self.path, name)
    }

    fn nullable_f64s(&self, name: &'static str) -> Result<Vec<Option<f64>>, ResultsError> {
        let column = self.column(name, ColumnKind::NullableF64)?;
        let values = column.f64().map_err(|e| self.polars_error(e))?;
        Ok(values.iter().collect())
    }
}

/// Collects a column that must not contain nulls.
fn non_null<T>(
    values: impl Iterator<Item = Option<T>>,
    path: &Path,
    column: &'static str,
) -> Result<Vec<T>, ResultsError> {
    values
        .enumerate()
        .map(|(row, value)| {
            value.ok_or_else(|| ResultsError::NullValue {
                path: path.to_path_buf(),
                column,
                row,
            })
        })
        .collect()
}

/// Writes `rows` as JSON lines: one object per row with the fields of
/// [`ResultRow`], `None` as `null`.
///
/// JSON has no NaN or infinity, so serde_json writes a non-finite float as
/// `null`. A line with a non-finite `value` or depth then fails to parse back
/// into a [`ResultRow`], and a non-finite optional field parses back as `None`.
pub fn write_jsonl(rows: &[ResultRow], out: &mut impl Write) -> Result<(), ResultsError> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n").map_err(ResultsError::JsonlIo)?;
    }
    out.flush().map_err(ResultsError::JsonlIo)
}

/// Best-match summary of one (model A, model B, metric).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairSummary {
    /// Model A.
    pub model_a: String,
    /// Model B.
    pub model_b: String,
    /// Canonical metric name.
    pub metric: String,
    /// Number of distinct layers of A in the rows.
    pub n_layers_a: usize,
    /// Number of distinct layers of B in the rows.
    pub n_layers_b: usize,
    /// Mean over layers of A of the metric value of the best match (NaN when
    /// no layer of A has a non-NaN value).
    pub mean_best_match: f64,
    /// Pearson correlation between the relative depth of each layer of A and
    /// the relative depth of its best match in B (NaN with fewer than two
    /// layers of A or when either depth is constant).
    pub depth_correlation: f64,
    /// `(layer_a, best layer_b, value)` for each layer of A, by ascending `layer_a`.
    pub best_match: Vec<(u32, u32, f64)>,
}

/// Returns whether a lower value of `metric_kind` means more alike.
pub(crate) fn lower_is_better(metric_kind: &str) -> bool {
    metric_kind == "distance"
}

/// Groups rows by (model A, model B, metric) and, in each group, finds the
/// best-matching layer of B for every layer of A.
///
/// The best match is the maximum value for similarities and the minimum for
/// distances (`metric_kind == "distance"`). Any other kind counts as a
/// similarity, and the first row of a group decides its kind. Ties go to the
/// lower `layer_b`. NaN values are never a best match, and a layer of A whose
/// values are all NaN is left out of `best_match`. Summaries are sorted by
/// (model A, model B, metric).
pub fn summarize(rows: &[ResultRow]) -> Vec<PairSummary> {
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&ResultRow>> = BTreeMap::new();
    for row in rows {
        let key = (
            row.model_a.as_str(),
            row.model_b.as_str(),
            row.metric.as_str(),
        );
        groups.entry(key).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|((model_a, model_b, metric), group)| {
            summarize_group(model_a, model_b, metric, &group)
        })
        .collect()
}

fn count_distinct(layers: impl Iterator<Item = u32>) -> usize {
    layers.collect::<std::collections::BTreeSet<_>>().len()
}

fn summarize_group(
    model_a: &str,
    model_b: &str,
    metric: &str,
    group: &[&ResultRow],
) -> PairSummary {
    let best = best_rows(group);
    let values: Vec<f64> = best.iter().map(|r| r.value).collect();
    let depths_a: Vec<f64> = best.iter().map(|r| r.depth_a).collect();
    let depths_b: Vec<f64> = best.iter().map(|r| r.depth_b).collect();
    PairSummary {
        model_a: model_a.to_owned(),
        model_b: model_b.to_owned(),
        metric: metric.to_owned(),
        n_layers_a: count_distinct(group.iter().map(|r| r.layer_a)),
        n_layers_b: count_distinct(group.iter().map(|r| r.layer_b)),
        mean_best_match: values.iter().sum::<f64>() / values.len() as f64,
        depth_correlation: pearson(&depths_a, &depths_b),
        best_match: best
            .iter()
            .map(|r| (r.layer_a, r.layer_b, r.value))
            .collect(),
    }
}

/// Returns, for each layer of A in ascending order, its best-matching row.
pub(crate) fn best_rows<'a>(group: &[&'a ResultRow]) -> Vec<&'a ResultRow> {
    let Some(first) = group.first() else {
        return Vec::new();
    };
    let minimize = lower_is_better(&first.metric_kind);
    let mut best: BTreeMap<u32, &ResultRow> = BTreeMap::new();
    for &row in group.iter().filter(|r| !r.value.is_nan()) {
        let entry = best.entry(row.layer_a).or_insert(row);
        let better = if minimize {
            row.value < entry.value
        } else {
            row.value > entry.value
        };
        let tie_to_lower = row.value == entry.value && row.layer_b < entry.layer_b;
        if better || tie_to_lower {
            *entry = row;
        }
    }
    best.into_values().collect()
}

/// Returns the Pearson correlation of two equally long samples, accumulated
/// in f64, or NaN with fewer than two points or a constant sample.
fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 || y.len() != n {
        return f64::NAN;
    }
    let mean_x = x.iter().sum::<f64>() / n as f64;
    let mean_y = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (xi, yi) in x.iter().zip(y) {
        let (dx, dy) = (xi - mean_x, yi - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}
