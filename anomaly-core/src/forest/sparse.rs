//! Sparse input: a borrowed compressed-sparse-row matrix ([`CsrMatrix`]), and the one interface the forest reads
//! its rows through, dense or sparse ([`Rows`]).
//!
//! The matrix is never made dense. A tree's sample (at most `max_samples` rows) is copied column by column into the
//! same buffer a dense fit uses, leaving out the columns that are zero in every sampled row (constant, so never
//! split on), and scoring scatters a block of rows into a dense block (then zeroes what it wrote), so both paths
//! run the same kernels on the same values: a sparse matrix fits and scores bit for bit as its dense twin. An
//! absent entry is `0.0`; a stored `-0.0` stays `-0.0`.
//!
//! Memory: a fit takes about 30 bytes per column (the typical ranges and each tree's column map) plus each tree's
//! sample of the columns it touches; scoring takes a dense block of at most [`BLOCK_VALUES`] values per thread (one
//! row when a row is wider), released after use when it grew beyond that. Wider than [`MAX_SPARSE_COLUMNS`] is
//! refused.

use ndarray::ArrayView2;

use crate::error::{Error, Result};
use crate::forest::quantile::percentile_select;

/// Most columns a sparse matrix may have for the forest (2^24): per-column state (typical ranges, column maps, a
/// scoring row) stays within a few hundred MiB.
pub const MAX_SPARSE_COLUMNS: usize = 1 << 24;

/// Values in a scoring block (8 MiB): 128 rows while rows are at most 8,192 wide, fewer (at least one) beyond.
pub(crate) const BLOCK_VALUES: usize = 1 << 20;

/// A tree's sample in column-major order: `slots[f]` is the place of feature `f`'s column in `data` (`m` values),
/// or `u32::MAX` for a column left out (zero in every sampled row).
pub(crate) struct Sample {
    m: usize,
    data: Vec<f64>,
    slots: Vec<u32>,
}

impl Sample {
    /// The sampled values of feature `fi`, or `None` for a column left out (all zeros).
    pub(crate) fn column(&self, fi: usize) -> Option<&[f64]> {
        let slot = *self.slots.get(fi)?;
        (slot != u32::MAX).then(|| &self.data[slot as usize * self.m..][..self.m])
    }
}

/// Clears a scratch buffer if the code using it unwinds, so it never keeps values where zeros are expected.
struct ZeroOnUnwind<'s>(&'s mut Vec<f64>);

impl Drop for ZeroOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.clear();
        }
    }
}

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

    /// Copies `rows` × `features` column by column (a dense matrix: every column; a sparse one: the columns with a
    /// stored value in some sampled row).
    fn copy_sample(&self, rows: &[usize], features: &[usize]) -> Sample;

    /// The 5th and 95th percentiles (numpy's `linear`) of every column's values at `rows`.
    fn typical_ranges(&self, rows: &[usize]) -> Vec<(f64, f64)>;

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

    fn copy_sample(&self, rows: &[usize], features: &[usize]) -> Sample {
        let m = rows.len();
        let mut data = vec![0.0; m * features.len()];
        for (fi, &f) in features.iter().enumerate() {
            let col = self.column(f);
            for (d, &r) in data[fi * m..(fi + 1) * m].iter_mut().zip(rows) {
                *d = col[r];
            }
        }
        Sample {
            m,
            data,
            slots: (0..features.len() as u32).collect(),
        }
    }

    fn typical_ranges(&self, rows: &[usize]) -> Vec<(f64, f64)> {
        let mut column = Vec::with_capacity(rows.len());
        (0..ArrayView2::ncols(self))
            .map(|f| {
                column.clear();
                column.extend(rows.iter().map(|&r| self[[r, f]]));
                let low = percentile_select(&mut column, 5.0);
                (low, percentile_select(&mut column, 95.0))
            })
            .collect()
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
                let guard = ZeroOnUnwind(scratch);
                guard.0.clear();
                guard.0.extend(rows.iter().copied());
                let out = f(guard.0);
                guard.0.clear();
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

    fn copy_sample(&self, rows: &[usize], features: &[usize]) -> Sample {
        let m = rows.len();
        // The place of each column among `features` (the identity when every column is used, in order).
        let place: Option<Vec<usize>> = (features.len() != self.n_cols).then(|| {
            let mut place = vec![usize::MAX; self.n_cols];
            for (fi, &f) in features.iter().enumerate() {
                place[f] = fi;
            }
            place
        });
        let feature_of = |c: usize| match &place {
            Some(place) => place[c],
            None => c,
        };
        // A slot for every feature with a stored value in some sampled row, in order of appearance.
        let mut slots = vec![u32::MAX; features.len()];
        let mut used = 0u32;
        for &r in rows {
            for &c in self.row(r).0 {
                let fi = feature_of(c);
                if fi != usize::MAX && slots[fi] == u32::MAX {
                    slots[fi] = used;
                    used += 1;
                }
            }
        }
        let mut data = vec![0.0; m * used as usize];
        for (i, &r) in rows.iter().enumerate() {
            let (columns, values) = self.row(r);
            for (&c, &v) in columns.iter().zip(values) {
                let fi = feature_of(c);
                if fi != usize::MAX {
                    data[slots[fi] as usize * m + i] = v;
                }
            }
        }
        Sample { m, data, slots }
    }

    fn typical_ranges(&self, rows: &[usize]) -> Vec<(f64, f64)> {
        // Each column's stored values at `rows`; the rest of the column is zeros. Sorted by column, then by value
        // in the order `f64::total_cmp` gives (the order the dense path selects in).
        let mut stored: Vec<(usize, f64)> = rows
            .iter()
            .flat_map(|&r| {
                let (columns, values) = self.row(r);
                columns.iter().copied().zip(values.iter().copied())
            })
            .collect();
        stored.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut ranges = vec![(0.0, 0.0); self.n_cols];
        for run in stored.chunk_by(|a, b| a.0 == b.0) {
            let values: Vec<f64> = run.iter().map(|&(_, v)| v).collect();
            let zeros = rows.len() - values.len();
            ranges[run[0].0] = (
                percentile_with_zeros(&values, zeros, 5.0),
                percentile_with_zeros(&values, zeros, 95.0),
            );
        }
        ranges
    }

    fn block<R>(
        &self,
        start: usize,
        n: usize,
        scratch: &mut Vec<f64>,
        f: impl FnOnce(&[f64]) -> R,
    ) -> R {
        let d = self.n_cols;
        let guard = ZeroOnUnwind(scratch);
        let scratch = &mut *guard.0;
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
        if scratch.len() > BLOCK_VALUES {
            // A row wider than a block: give the memory back rather than keep it per thread.
            *scratch = Vec::new();
        } else {
            for i in 0..n {
                for &c in self.row(start + i).0 {
                    scratch[i * d + c] = 0.0;
                }
            }
        }
        out
    }
}

/// The `q`-th percentile of `values` (sorted by `f64::total_cmp`) together with `zeros` more `0.0`s, exactly as
/// [`percentile_select`] computes it on the whole column.
fn percentile_with_zeros(values: &[f64], zeros: usize, q: f64) -> f64 {
    let n = values.len() + zeros;
    // The zeros sit after every value that orders below 0.0 (negatives and -0.0).
    let below = values.partition_point(|v| v.total_cmp(&0.0).is_lt());
    let at = |i: usize| match i {
        i if i < below => values[i],
        i if i < below + zeros => 0.0,
        i => values[i - zeros],
    };
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    let i = (virtual_index.floor() as usize).min(n - 1);
    let (a, b) = (at(i), at((i + 1).min(n - 1)));
    let gamma = virtual_index - virtual_index.floor();
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
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
        for (rows, features) in [
            (vec![3, 1, 1, 0], vec![0, 1, 2]),
            (vec![2, 3], vec![2, 0]),
            (vec![2], vec![0, 1, 2]),
        ] {
            let a = view.copy_sample(&rows, &features);
            let b = csr.copy_sample(&rows, &features);
            for fi in 0..features.len() {
                let bits = |v: Option<&[f64]>| {
                    v.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                };
                let dense = bits(a.column(fi)).expect("a dense sample has every column");
                match bits(b.column(fi)) {
                    Some(sparse) => assert_eq!(dense, sparse, "rows {rows:?}, feature {fi}"),
                    // Left out: zero in every sampled row.
                    None => assert!(dense.iter().all(|&v| v == 0), "rows {rows:?}, feature {fi}"),
                }
            }
        }
        // Row 2 is empty: its sample has no column at all.
        assert!(csr.copy_sample(&[2], &[0, 1, 2]).data.is_empty());
        // Typical ranges agree bit for bit, zeros and -0.0 included.
        let all: Vec<usize> = (0..4).collect();
        let ranges = |r: Vec<(f64, f64)>| {
            r.iter()
                .map(|(a, b)| (a.to_bits(), b.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ranges(view.typical_ranges(&all)),
            ranges(csr.typical_ranges(&all))
        );
        assert_eq!(
            ranges(view.typical_ranges(&[1, 1, 3])),
            ranges(csr.typical_ranges(&[1, 1, 3]))
        );
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
