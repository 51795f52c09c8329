//! Intervention rows as parquet.

use std::path::Path;

use super::{InterventionError, InterventionRow};

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
    let tmp = crate::capture::rundir::tmp_path(path);
    let file = std::fs::File::create(&tmp).map_err(|e| InterventionError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    ParquetWriter::new(file).finish(&mut df).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| InterventionError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
