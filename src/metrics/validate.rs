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
        if values.to_slice().is_some_and(all_finite) {
            continue;
        }
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

/// Returns whether every value is finite. `v * 0` is 0 for a finite `v`
/// and NaN for an infinite or NaN one, and the sum of such terms is 0 only
/// if all are. Unlike a search for the first bad value, the loop vectorises.
fn all_finite(values: &[f64]) -> bool {
    let mut acc = [0.0f64; 4];
    let chunks = values.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|v| v * 0.0).sum();
    for chunk in chunks {
        for lane in 0..4 {
            acc[lane] += chunk[lane] * 0.0;
        }
    }
    (acc[0] + acc[1] + acc[2] + acc[3] + tail) == 0.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_finds_any_bad_value() {
        let mut values = vec![1e308, -1e308, 5e-324, 0.0, -0.0, 3.5, 7.0];
        assert!(all_finite(&values));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            // In the four-wide body and in the tail.
            for at in [1, 6] {
                let saved = values[at];
                values[at] = bad;
                assert!(!all_finite(&values), "{bad} at {at}");
                values[at] = saved;
            }
        }
    }
}
