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

/// The `q`-th percentile of `values` (non-empty, reordered in place) in linear time, equal to
/// [`percentile_sorted`] of the sorted values.
pub(crate) fn percentile_select(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    let i = (virtual_index.floor() as usize).min(n - 1);
    let (_, &mut a, above) = values.select_nth_unstable_by(i, f64::total_cmp);
    let b = above.iter().copied().min_by(f64::total_cmp).unwrap_or(a);
    let pair = [a, b];
    // Reuse the interpolation rule on the two neighbours.
    let gamma = virtual_index - virtual_index.floor();
    let diff = pair[1] - pair[0];
    if gamma >= 0.5 {
        pair[1] - diff * (1.0 - gamma)
    } else {
        pair[0] + diff * gamma
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

    #[test]
    fn selection_equals_sorting() {
        let v: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f64 * 0.37)
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 5.0, 12.5, 50.0, 95.0, 99.9, 100.0] {
            let mut w = v.clone();
            assert_eq!(
                percentile_select(&mut w, q),
                percentile_sorted(&sorted, q),
                "q = {q}"
            );
        }
    }
}
