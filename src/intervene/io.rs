//! Intervention rows as parquet: one row per (variant, measure), with the
//! columns and types of the fields of [`InterventionRow`]. `i`, `j` and
//! `seed` are nullable because not every kind of variant has them.

use std::path::Path;

use polars::prelude::{Column, DataFrame, DataType, ParquetReader, SerReader};

use super::{InterventionError, InterventionRow};
use crate::capture::CaptureError;

/// Storage type of one column.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    U32,
    NullableU32,
    U64,
    NullableU64,
    F64,
}

impl Kind {
    fn dtype(self) -> DataType {
        match self {
            Kind::Str => DataType::String,
            Kind::U32 | Kind::NullableU32 => DataType::UInt32,
            Kind::U64 | Kind::NullableU64 => DataType::UInt64,
            Kind::F64 => DataType::Float64,
        }
    }
}

/// The parquet schema in column order, the same as the fields of [`InterventionRow`].
const SCHEMA: [(&str, Kind); 11] = [
    ("model", Kind::Str),
    ("kind", Kind::Str),
    ("i", Kind::NullableU32),
    ("j", Kind::NullableU32),
    ("seed", Kind::NullableU64),
    ("order", Kind::Str),
    ("measure", Kind::Str),
    ("value", Kind::F64),
    ("n_blocks", Kind::U32),
    ("n_stimuli", Kind::U64),
    ("n_tokens", Kind::U64),
];

/// Writes the rows as parquet, atomically.
pub fn write_parquet(rows: &[InterventionRow], path: &Path) -> Result<(), InterventionError> {
    use polars::prelude::*;
    let err = |e: PolarsError| InterventionError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let strings = |f: fn(&InterventionRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let columns = vec![
        Column::new("model".into(), strings(|r| r.model.clone())),
        Column::new("kind".into(), strings(|r| r.kind.clone())),
        Column::new("i".into(), rows.iter().map(|r| r.i).collect::<Vec<_>>()),
        Column::new("j".into(), rows.iter().map(|r| r.j).collect::<Vec<_>>()),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
        ),
        Column::new("order".into(), strings(|r| r.order.clone())),
        Column::new("measure".into(), strings(|r| r.measure.clone())),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_blocks".into(),
            rows.iter().map(|r| r.n_blocks).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_stimuli".into(),
            rows.iter().map(|r| r.n_stimuli).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_tokens".into(),
            rows.iter().map(|r| r.n_tokens).collect::<Vec<_>>(),
        ),
    ];
    let mut df = DataFrame::new(rows.len(), columns).map_err(err)?;
    // Encoded in memory (a few rows per variant), so that a failed write
    // reports the disk's own error and leaves no temporary file.
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut df)
        .map_err(err)?;
    crate::capture::rundir::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads a parquet file written by [`write_parquet`].
///
/// Columns beyond the schema are ignored. A missing column, a column of
/// another data type (no implicit casts, so an `Int64` `i` column is
/// rejected) or a null outside `i`, `j` and `seed` is an error that names
/// the file and the column.
pub fn read_parquet(path: &Path) -> Result<Vec<InterventionRow>, InterventionError> {
    let file = std::fs::File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|e| invalid(path, format!("reading parquet failed: {e}")))?;
    for (name, kind) in SCHEMA {
        checked_column(&frame, path, name, kind)?;
    }

    let columns = Columns {
        frame: &frame,
        path,
    };
    let model = columns.strings("model")?;
    let kind = columns.strings("kind")?;
    let i = columns.nullable_u32s("i")?;
    let j = columns.nullable_u32s("j")?;
    let seed = columns.nullable_u64s("seed")?;
    let order = columns.strings("order")?;
    let measure = columns.strings("measure")?;
    let value = columns.f64s("value")?;
    let n_blocks = columns.u32s("n_blocks")?;
    let n_stimuli = columns.u64s("n_stimuli")?;
    let n_tokens = columns.u64s("n_tokens")?;
    let rows = (0..frame.height())
        .map(|r| InterventionRow {
            model: model[r].clone(),
            kind: kind[r].clone(),
            i: i[r],
            j: j[r],
            seed: seed[r],
            order: order[r].clone(),
            measure: measure[r].clone(),
            value: value[r],
            n_blocks: n_blocks[r],
            n_stimuli: n_stimuli[r],
            n_tokens: n_tokens[r],
        })
        .collect();
    Ok(rows)
}

/// An error about the contents of intervention file `path`.
// NOTE: InterventionError has no variant for reading, so the message is
// carried as an InvalidData I/O error of the file. A dedicated variant
// would let callers match on the column.
fn invalid(path: &Path, message: String) -> InterventionError {
    CaptureError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    }
    .into()
}

/// Returns the column `name`, checking that it exists and has the schema's type.
fn checked_column<'a>(
    frame: &'a DataFrame,
    path: &Path,
    name: &str,
    kind: Kind,
) -> Result<&'a Column, InterventionError> {
    let column = frame.column(name).map_err(|_| {
        invalid(
            path,
            format!(
                "column `{name}` is missing from the intervention file; \
                 write it with repatlas intervene"
            ),
        )
    })?;
    let expected = kind.dtype();
    if column.dtype() != &expected {
        return Err(invalid(
            path,
            format!(
                "column `{name}` has type {}, expected {expected}; \
                 write the file with repatlas intervene or cast the column",
                column.dtype()
            ),
        ));
    }
    Ok(column)
}

/// Typed access to the checked columns of one frame read from `path`.
struct Columns<'a> {
    frame: &'a DataFrame,
    path: &'a Path,
}

impl Columns<'_> {
    fn polars(&self, name: &str, error: polars::prelude::PolarsError) -> InterventionError {
        invalid(
            self.path,
            format!("decoding column `{name}` failed: {error}"),
        )
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, InterventionError> {
        let column = checked_column(self.frame, self.path, name, Kind::Str)?;
        let values = column.str().map_err(|e| self.polars(name, e))?;
        self.non_null(name, values.iter().map(|v| v.map(str::to_owned)))
    }

    fn u32s(&self, name: &str) -> Result<Vec<u32>, InterventionError> {
        self.non_null(name, self.nullable_u32s(name)?.into_iter())
    }

    fn u64s(&self, name: &str) -> Result<Vec<u64>, InterventionError> {
        self.non_null(name, self.nullable_u64s(name)?.into_iter())
    }

    fn f64s(&self, name: &str) -> Result<Vec<f64>, InterventionError> {
        let column = checked_column(self.frame, self.path, name, Kind::F64)?;
        let values = column.f64().map_err(|e| self.polars(name, e))?;
        self.non_null(name, values.iter())
    }

    fn nullable_u32s(&self, name: &str) -> Result<Vec<Option<u32>>, InterventionError> {
        let column = checked_column(self.frame, self.path, name, Kind::NullableU32)?;
        let values = column.u32().map_err(|e| self.polars(name, e))?;
        Ok(values.iter().collect())
    }

    fn nullable_u64s(&self, name: &str) -> Result<Vec<Option<u64>>, InterventionError> {
        let column = checked_column(self.frame, self.path, name, Kind::NullableU64)?;
        let values = column.u64().map_err(|e| self.polars(name, e))?;
        Ok(values.iter().collect())
    }

    /// Collects a column that must not contain nulls.
    fn non_null<T>(
        &self,
        name: &str,
        values: impl Iterator<Item = Option<T>>,
    ) -> Result<Vec<T>, InterventionError> {
        values
            .enumerate()
            .map(|(row, value)| {
                value.ok_or_else(|| {
                    invalid(
                        self.path,
                        format!("column `{name}` is null in row {row}, but it must be set"),
                    )
                })
            })
            .collect()
    }
}
