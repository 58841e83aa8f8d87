//! Sparse input: a borrowed compressed-sparse-row matrix ([`CsrMatrix`]), and the one interface the forest reads
//! its rows through, dense or sparse ([`Rows`]).
//!
//! The matrix is never made dense. A tree's sample (at most `max_samples` rows) is copied column by column into the
//! same buffer a dense fit uses, and scoring scatters a block of rows into a dense block (then zeroes what it
//! wrote), so both paths run the same kernels on the same values: a sparse matrix scores bit for bit as its dense
//! twin. An absent entry is `0.0`; a stored `-0.0` stays `-0.0`.

use ndarray::ArrayView2;

use crate::error::{Error, Result};

/// A read-only matrix in compressed-sparse-row form, borrowed from its arrays (scipy's `csr_matrix` layout): row
/// `r`'s entries are `indices[indptr[r]..indptr[r + 1]]` (columns, strictly increasing) and the same range of
/// `data` (values, finite). Checked once by [`CsrMatrix::new`].
///
/// ```
/// use anomaly_core::{CsrMatrix, IsolationForestParams};
///
/// // [[0, 2], [1, 0], [0, 0]]
/// let x = CsrMatrix::new((3, 2), &[0, 1, 2, 2], &[1, 0], &[2.0, 1.0])?;
/// assert_eq!(x.nnz(), 2);
/// assert_eq!(x.row(0), (&[1usize][..], &[2.0][..]));
/// let model = IsolationForestParams::new().n_estimators(10).fit_sparse(&x, None)?;
/// assert_eq!(model.score_sparse(&x)?.len(), 3);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CsrMatrix<'a> {
    n_rows: usize,
    n_cols: usize,
    indptr: &'a [usize],
    indices: &'a [usize],
    data: &'a [f64],
}

impl<'a> CsrMatrix<'a> {
    /// A CSR matrix of `shape` (rows, columns) over its three arrays.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (`x`) when the arrays do not describe a matrix of that shape in canonical form
    /// (`indptr` of `rows + 1` non-decreasing offsets from 0 to `nnz`, columns in range and strictly increasing
    /// within a row, as many values as columns); [`Error::NonFinite`] for a NaN or infinite value, with its row and
    /// column.
    pub fn new(
        shape: (usize, usize),
        indptr: &'a [usize],
        indices: &'a [usize],
        data: &'a [f64],
    ) -> Result<Self> {
        let (n_rows, n_cols) = shape;
        let bad = |reason: String| Err(Error::invalid("x", reason));
        if indptr.len() != n_rows.saturating_add(1) {
            return bad(format!(
                "indptr has {} offsets for {n_rows} rows (expected rows + 1)",
                indptr.len()
            ));
        }
        if indices.len() != data.len() {
            return bad(format!(
                "{} column indices for {} values",
                indices.len(),
                data.len()
            ));
        }
        if indptr[0] != 0 || indptr[n_rows] != data.len() {
            return bad(format!(
                "indptr runs from {} to {}, expected 0 to {} (the number of values)",
                indptr[0],
                indptr[n_rows],
                data.len()
            ));
        }
        if let Some(r) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return bad(format!("indptr decreases at row {r}"));
        }
        for r in 0..n_rows {
            let (start, end) = (indptr[r], indptr[r + 1]);
            let columns = &indices[start..end];
            if let Some(&c) = columns.iter().find(|&&c| c >= n_cols) {
                return bad(format!("row {r} has column {c}, past the {n_cols} columns"));
            }
            if columns.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "row {r} has unsorted or repeated columns (sum duplicates and sort indices first)"
                ));
            }
            if let Some(i) = data[start..end].iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    row: r,
                    column: columns[i],
                    value: data[start + i],
                });
            }
        }
        Ok(CsrMatrix {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.n_rows
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// The columns and values stored in row `r` (`r < nrows()`).
    pub fn row(&self, r: usize) -> (&'a [usize], &'a [f64]) {
        let (start, end) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[start..end], &self.data[start..end])
    }
}

/// What the forest reads rows from: a dense matrix or a [`CsrMatrix`], checked (shape, finite values) before use.
pub(crate) trait Rows: Sync {
    fn nrows(&self) -> usize;

    fn ncols(&self) -> usize;

    /// Copies `rows` × `features` column by column into `out` (`features.len()` runs of `rows.len()` values).
    fn copy_sample(&self, rows: &[usize], features: &[usize], out: &mut [f64]);

    /// Calls `visit(column)` for every column in order with its values at `rows` (in any order: the caller takes
    /// quantiles).
    fn for_each_column(&self, rows: &[usize], visit: impl FnMut(&mut Vec<f64>));

    /// The values of rows `start..start + n` (row-major, `ncols()` a row) as a dense block: borrowed when the matrix
    /// is dense and contiguous, else written into `scratch` (which must hold zeros and is left holding zeros).
    fn block<R>(
        &self,
        start: usize,
        n: usize,
        scratch: &mut Vec<f64>,
        f: impl FnOnce(&[f64]) -> R,
    ) -> R;
}

impl Rows for ArrayView2<'_, f64> {
    fn nrows(&self) -> usize {
        ArrayView2::nrows(self)
    }

    fn ncols(&self) -> usize {
        ArrayView2::ncols(self)
    }

    fn copy_sample(&self, rows: &[usize], features: &[usize], out: &mut [f64]) {
        let m = rows.len();
        for (fi, &f) in features.iter().enumerate() {
            let col = self.column(f);
            for (d, &r) in out[fi * m..(fi + 1) * m].iter_mut().zip(rows) {
                *d = col[r];
            }
        }
    }

    fn for_each_column(&self, rows: &[usize], mut visit: impl FnMut(&mut Vec<f64>)) {
        let mut column = Vec::with_capacity(rows.len());
        for f in 0..ArrayView2::ncols(self) {
            column.clear();
            column.extend(rows.iter().map(|&r| self[[r, f]]));
            visit(&mut column);
        }
    }

    fn block<R>(
        &self,
        start: usize,
        n: usize,
        scratch: &mut Vec<f64>,
        f: impl FnOnce(&[f64]) -> R,
    ) -> R {
        let rows = self.slice(ndarray::s![start..start + n, ..]);
        match rows.as_slice() {
            Some(s) => f(s),
            None => {
                scratch.clear();
                scratch.extend(rows.iter().copied());
                let out = f(scratch);
                scratch.clear();
                out
            }
        }
    }
}

impl Rows for CsrMatrix<'_> {
    fn nrows(&self) -> usize {
        self.n_rows
    }

    fn ncols(&self) -> usize {
        self.n_cols
    }

    fn copy_sample(&self, rows: &[usize], features: &[usize], out: &mut [f64]) {
        let m = rows.len();
        out.fill(0.0);
        // The place of each column among `features` (every column when all are used).
        let all = features.len() == self.n_cols;
        let mut place = Vec::new();
        if !all {
            place = vec![usize::MAX; self.n_cols];
            for (fi, &f) in features.iter().enumerate() {
                place[f] = fi;
            }
        }
        for (i, &r) in rows.iter().enumerate() {
            let (columns, values) = self.row(r);
            for (&c, &v) in columns.iter().zip(values) {
                let fi = if all { c } else { place[c] };
                if fi != usize::MAX {
                    out[fi * m + i] = v;
                }
            }
        }
    }

    fn for_each_column(&self, rows: &[usize], mut visit: impl FnMut(&mut Vec<f64>)) {
        // One pass over the rows gathers each column's stored values; the rest of a column is zeros.
        let mut stored: Vec<Vec<f64>> = vec![Vec::new(); self.n_cols];
        for &r in rows {
            let (columns, values) = self.row(r);
            for (&c, &v) in columns.iter().zip(values) {
                stored[c].push(v);
            }
        }
        for mut column in stored {
            column.resize(rows.len(), 0.0);
            visit(&mut column);
        }
    }

    fn block<R>(
        &self,
        start: usize,
        n: usize,
        scratch: &mut Vec<f64>,
        f: impl FnOnce(&[f64]) -> R,
    ) -> R {
        let d = self.n_cols;
        if scratch.len() < n * d {
            scratch.resize(n * d, 0.0);
        }
        for i in 0..n {
            let (columns, values) = self.row(start + i);
            for (&c, &v) in columns.iter().zip(values) {
                scratch[i * d + c] = v;
            }
        }
        let out = f(&scratch[..n * d]);
        for i in 0..n {
            for &c in self.row(start + i).0 {
                scratch[i * d + c] = 0.0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_arrays_are_refused_with_the_reason() {
        let reason = |shape, indptr: &[usize], indices: &[usize], data: &[f64]| match CsrMatrix::new(
            shape, indptr, indices, data,
        ) {
            Err(Error::InvalidParameter { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(reason((2, 2), &[0, 1], &[0], &[1.0]).contains("2 offsets for 2 rows"));
        assert!(reason((1, 2), &[0, 1], &[0, 1], &[1.0]).contains("2 column indices for 1 values"));
        assert!(reason((1, 2), &[0, 2], &[0], &[1.0]).contains("expected 0 to 1"));
        assert!(reason((2, 2), &[0, 2, 1], &[0], &[1.0]).contains("decreases at row 1"));
        assert!(reason((2, 2), &[0, 1, 0], &[0], &[1.0]).contains("0 to 1"));
        assert!(reason((1, 2), &[0, 1], &[2], &[1.0]).contains("column 2"));
        assert!(reason((1, 3), &[0, 2], &[1, 1], &[1.0, 2.0]).contains("repeated"));
        assert!(reason((1, 3), &[0, 2], &[2, 1], &[1.0, 2.0]).contains("unsorted"));
        assert!(matches!(
            CsrMatrix::new((2, 3), &[0, 0, 1], &[2], &[f64::NAN]),
            Err(Error::NonFinite {
                row: 1,
                column: 2,
                ..
            })
        ));
        let ok = CsrMatrix::new((0, 3), &[0], &[], &[]).unwrap();
        assert_eq!((ok.nrows(), ok.ncols(), ok.nnz()), (0, 3, 0));
    }

    #[test]
    fn samples_and_blocks_read_as_the_dense_matrix() {
        // [[0, 2, 0], [1, 0, -0.0], [0, 0, 0], [0, 3, 4]]
        let dense = ndarray::array![
            [0.0, 2.0, 0.0],
            [1.0, 0.0, -0.0],
            [0.0, 0.0, 0.0],
            [0.0, 3.0, 4.0]
        ];
        let csr = CsrMatrix::new(
            (4, 3),
            &[0, 1, 3, 3, 5],
            &[1, 0, 2, 1, 2],
            &[2.0, 1.0, -0.0, 3.0, 4.0],
        )
        .unwrap();
        let view = dense.view();
        for (rows, features) in [(vec![3, 1, 1, 0], vec![0, 1, 2]), (vec![2, 3], vec![2, 0])] {
            let mut a = vec![7.0; rows.len() * features.len()];
            let mut b = vec![7.0; rows.len() * features.len()];
            view.copy_sample(&rows, &features, &mut a);
            csr.copy_sample(&rows, &features, &mut b);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "rows {rows:?}, features {features:?}");
        }
        let mut scratch = Vec::new();
        let from_csr = csr.block(1, 3, &mut scratch, |b| b.to_vec());
        assert!(
            scratch.iter().all(|&v| v.to_bits() == 0),
            "left holding zeros"
        );
        let from_dense = view.block(1, 3, &mut Vec::new(), |b| b.to_vec());
        assert_eq!(
            from_csr.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            from_dense.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
