//! Input checks shared by every measure.

use ndarray::ArrayView2;

use super::MetricError;

/// Checks one representation: at least one row and one column, every value
/// finite, and not every row identical.
///
/// The first non-finite value in row-major order is reported with its row
/// and column. A constant column is fine; only a representation whose rows
/// are all equal (zero variance in every column) is rejected.
pub(crate) fn check_representation(name: &str, x: ArrayView2<f64>) -> Result<(), MetricError> {
    let (rows, columns) = x.dim();
    if rows == 0 || columns == 0 {
        return Err(MetricError::Empty {
            layer: name.to_string(),
            rows,
            columns,
        });
    }
    for (row, values) in x.rows().into_iter().enumerate() {
        if let Some((column, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricError::NonFinite {
                layer: name.to_string(),
                row,
                column,
                value,
            });
        }
    }
    let first = x.row(0);
    let constant = x.rows().into_iter().all(|row| row == first);
    if constant {
        return Err(MetricError::ConstantRepresentation {
            layer: name.to_string(),
            rows,
        });
    }
    Ok(())
}

/// Checks that two representations have the same number of stimuli.
pub(crate) fn check_rows(
    a_name: &str,
    a_rows: usize,
    b_name: &str,
    b_rows: usize,
) -> Result<(), MetricError> {
    if a_rows == b_rows {
        return Ok(());
    }
    Err(MetricError::RowMismatch {
        layer_a: a_name.to_string(),
        rows_a: a_rows,
        layer_b: b_name.to_string(),
        rows_b: b_rows,
    })
}
