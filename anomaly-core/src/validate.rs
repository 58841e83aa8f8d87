//! Input checks shared by every detector: shape and finiteness.

use ndarray::ArrayView2;

use crate::error::{Error, Result};

/// Checks that a matrix of this shape has rows and columns.
pub(crate) fn not_empty(rows: usize, columns: usize) -> Result<()> {
    if rows == 0 {
        return Err(Error::EmptyInput { what: "no rows" });
    }
    if columns == 0 {
        return Err(Error::EmptyInput { what: "no columns" });
    }
    Ok(())
}

/// Checks that `x` has rows and columns and only finite values.
pub(crate) fn matrix(x: ArrayView2<'_, f64>) -> Result<()> {
    not_empty(x.nrows(), x.ncols())?;
    if let Some(flat) = x.as_slice()
        && all_finite(flat)
    {
        return Ok(());
    }
    for (row, r) in x.outer_iter().enumerate() {
        if let Some(column) = r.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                row,
                column,
                value: r[column],
            });
        }
    }
    Ok(())
}

/// Whether every value is finite: a branch-free scan (it vectorises), in parallel on large inputs. Memory bandwidth
/// bounds it, so the parallel scan helps only past a few megabytes.
fn all_finite(values: &[f64]) -> bool {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let scan = |c: &[f64]| c.iter().fold(true, |ok, v| ok & v.is_finite());
    if values.len() > 16 * CHUNK {
        values.par_chunks(CHUNK).all(scan)
    } else {
        values.chunks(CHUNK).all(scan)
    }
}

/// Checks a matrix against the expected number of features.
pub(crate) fn matrix_with_width(x: ArrayView2<'_, f64>, expected: usize) -> Result<()> {
    if x.ncols() != expected && x.nrows() > 0 {
        return Err(Error::DimensionMismatch {
            expected,
            got: x.ncols(),
        });
    }
    matrix(x)
}

/// Checks one row: width and finiteness. `row` is reported in the error.
pub(crate) fn row(x: &[f64], expected: usize, row: usize) -> Result<()> {
    if x.len() != expected {
        return Err(Error::DimensionMismatch {
            expected,
            got: x.len(),
        });
    }
    if let Some(column) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            row,
            column,
            value: x[column],
        });
    }
    Ok(())
}
