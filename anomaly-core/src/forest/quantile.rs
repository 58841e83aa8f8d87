//! Quantiles with numpy's default (`linear`) method, so thresholds match scikit-learn's `np.percentile`.

/// The `q`-th percentile (0–100) of `sorted` (ascending, non-empty), as `np.percentile(a, q)`.
pub(crate) fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let q = q / 100.0;
    let virtual_index = (n - 1) as f64 * q;
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let i = (previous as usize).min(n - 1);
    let j = (i + 1).min(n - 1);
    let (a, b) = (sorted[i], sorted[j]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Sorts a copy of `values` and returns the `q`-th percentile.
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
        assert_eq!(percentile_sorted(&v, 100.0), 10.0);
        assert_eq!(percentile_sorted(&v, 50.0), 3.0);
        // np.percentile([1,2,3,4,10], 90) == 7.6
        assert!((percentile_sorted(&v, 90.0) - 7.6).abs() < 1e-12);
        // np.percentile([1,2,3,4,10], 10) == 1.4
        assert!((percentile_sorted(&v, 10.0) - 1.4).abs() < 1e-12);
    }
}
