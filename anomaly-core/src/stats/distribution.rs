//! Comparing two distributions known only by their quantile functions.
//!
//! A field's statistics keep 21 quantiles (0 %, 5 %, …, 100 %). Between two consecutive quantile points the
//! distribution function is taken as linear, i.e. the values are assumed spread evenly; where several quantiles
//! coincide (a value repeated over more than 5 % of the data) it jumps. Both statistics below are computed from
//! these piecewise-linear distribution functions, so they are estimates: exact for the quantile points themselves,
//! and smoother than the empirical distribution in between.
//!
//! - **PSI** over the history's deciles: bins are cut at the history's 10 %, …, 90 % quantiles (equal edges merged,
//!   bins closed on the right), each side's share of a bin is the difference of its distribution function at the
//!   bin's edges, and `PSI = Σ (b − h) · ln(b / h)` with shares floored at [`PSI_EPSILON`].
//! - **Kolmogorov–Smirnov D**: `sup |F_h(x) − F_b(x)|`; both functions are linear between the union of their
//!   quantile points, so the supremum is reached at one of those points or at the left limit of a jump there.
//!
//! Significance: with `n` and `m` values behind the two quantile functions, D is compared with the two-sample
//! critical value `c(α) · √((n + m) / (n m))`, `c(α) = √(−ln(α / 2) / 2)`; the bin shares are judged by Pearson's
//! statistic `n m / (n + m) · Σ (b − h)² / h` against `χ²_{k−1}(1 − α)` for `k` bins (Wilson and Hilferty's
//! approximation of the quantile). PSI itself is not used for significance: an empty tail bin in a small batch makes
//! its logarithm large (0.69 for a 10 % bin) far more often than a chi-square would allow.

/// Share given to an empty bin in PSI, so that the logarithm stays finite (a bin empty on one side and holding 10 %
/// on the other contributes `0.1 · ln(0.1 / 1e-4) ≈ 0.69`).
pub(crate) const PSI_EPSILON: f64 = 1e-4;

/// Whether `q` is usable as a quantile function: at least two finite, non-decreasing points.
pub(crate) fn valid(q: &[f64]) -> bool {
    q.len() >= 2 && q.iter().all(|v| v.is_finite()) && q.windows(2).all(|w| w[0] <= w[1])
}

/// `P(X ≤ x)` from the quantile points `q` (levels `i / (len − 1)`), linear between points.
pub(crate) fn cdf(q: &[f64], x: f64) -> f64 {
    let last = q.len() - 1;
    // Largest i with q[i] <= x.
    let above = q.partition_point(|&v| v <= x);
    if above == 0 {
        return 0.0;
    }
    let i = above - 1;
    if i == last {
        return 1.0;
    }
    let (lo, hi) = (q[i], q[i + 1]);
    (i as f64 + (x - lo) / (hi - lo)) / last as f64
}

/// `P(X < x)` from the quantile points `q`, linear between points.
pub(crate) fn cdf_left(q: &[f64], x: f64) -> f64 {
    let last = q.len() - 1;
    // Smallest j with q[j] >= x.
    let j = q.partition_point(|&v| v < x);
    if j == 0 {
        return 0.0;
    }
    if j > last {
        return 1.0;
    }
    let (lo, hi) = (q[j - 1], q[j]);
    ((j - 1) as f64 + (x - lo) / (hi - lo)) / last as f64
}

/// The history's decile edges (its 10 %, …, 90 % quantiles), equal edges merged.
fn decile_edges(history: &[f64]) -> Vec<f64> {
    let last = history.len() - 1;
    let mut edges: Vec<f64> = (1..10)
        .map(|k| {
            // Level k / 10 on the quantile grid, linear between grid points.
            let pos = k as f64 / 10.0 * last as f64;
            let i = (pos.floor() as usize).min(last);
            let j = (i + 1).min(last);
            history[i] + (history[j] - history[i]) * (pos - i as f64)
        })
        .collect();
    edges.dedup();
    edges
}

/// Bin shares of a distribution given by quantile points `q` between `edges` (bins closed on the right).
fn shares(q: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut prev = 0.0;
    for &e in edges {
        let c = cdf(q, e);
        out.push((c - prev).max(0.0));
        prev = c;
    }
    out.push((1.0 - prev).max(0.0));
    out
}

/// PSI and Pearson's chi-square of the batch's bin shares against the history's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BinComparison {
    /// Population stability index.
    pub(crate) psi: f64,
    /// `Σ (b − h)² / h` (shares, `h` floored at [`PSI_EPSILON`]); times `n m / (n + m)` it is Pearson's statistic.
    pub(crate) pearson: f64,
    /// Bins after merging equal edges.
    pub(crate) bins: usize,
}

/// PSI of `batch` against `history` over the history's deciles, with the chi-square distance used to judge its
/// significance. `None` when either quantile function is unusable.
pub(crate) fn bins(history: &[f64], batch: &[f64]) -> Option<BinComparison> {
    if !(valid(history) && valid(batch)) {
        return None;
    }
    let edges = decile_edges(history);
    let h = shares(history, &edges);
    let b = shares(batch, &edges);
    let pearson = h
        .iter()
        .zip(&b)
        .map(|(&h, &b)| (b - h) * (b - h) / h.max(PSI_EPSILON))
        .sum();
    Some(BinComparison {
        psi: psi_of_shares(&h, &b),
        pearson,
        bins: h.len(),
    })
}

/// `Σ (b − h) · ln(b / h)` with both shares floored at [`PSI_EPSILON`].
pub(crate) fn psi_of_shares(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let (r, c) = (r.max(PSI_EPSILON), c.max(PSI_EPSILON));
            (c - r) * (c / r).ln()
        })
        .sum::<f64>()
        .max(0.0)
}

/// Two-sample Kolmogorov–Smirnov statistic estimated from two quantile functions. `None` when either is unusable.
pub(crate) fn ks(history: &[f64], batch: &[f64]) -> Option<f64> {
    if !(valid(history) && valid(batch)) {
        return None;
    }
    let d = history
        .iter()
        .chain(batch)
        .map(|&x| {
            let right = (cdf(history, x) - cdf(batch, x)).abs();
            let left = (cdf_left(history, x) - cdf_left(batch, x)).abs();
            right.max(left)
        })
        .fold(0.0, f64::max);
    Some(d.min(1.0))
}

/// The upper-tail standard normal quantile `z` with `P(Z > z) = p`, for `p` in `(0, 0.5]` (Abramowitz & Stegun
/// 26.2.23, absolute error below 4.5e-4).
fn normal_upper_quantile(p: f64) -> f64 {
    let t = (-2.0 * p.ln()).sqrt();
    t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
        / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t)
}

/// Critical values at level `alpha` for samples of `n` and `m` values: `(chi-square, D)`, the first to compare with
/// Pearson's statistic `n m / (n + m) · pearson` for `bins` bins, the second with D. `alpha` outside `(0, 0.5]`
/// disables the tests (both critical values 0).
pub(crate) fn critical(alpha: f64, bins: usize, n: u64, m: u64) -> (f64, f64) {
    if !(alpha > 0.0 && alpha <= 0.5) || n == 0 || m == 0 {
        return (0.0, 0.0);
    }
    let (n, m) = (n as f64, m as f64);
    let ks = (-(alpha / 2.0).ln() / 2.0).sqrt() * ((n + m) / (n * m)).sqrt();
    let k = bins.saturating_sub(1) as f64;
    let pearson = if k == 0.0 {
        0.0
    } else {
        let z = normal_upper_quantile(alpha);
        let a = 2.0 / (9.0 * k);
        k * (1.0 - a + z * a.sqrt()).max(0.0).powi(3)
    };
    (pearson, ks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(f: impl Fn(f64) -> f64) -> Vec<f64> {
        (0..21).map(|i| f(i as f64 / 20.0)).collect()
    }

    #[test]
    fn cdf_inverts_the_quantile_function() {
        let q = grid(|p| 10.0 * p); // uniform on [0, 10]
        assert_eq!(cdf(&q, -1.0), 0.0);
        assert_eq!(cdf(&q, 10.0), 1.0);
        assert!((cdf(&q, 2.5) - 0.25).abs() < 1e-12);
        assert!((cdf_left(&q, 2.5) - 0.25).abs() < 1e-12);
        // A point mass at 5 over the middle half.
        let q = grid(|p| {
            if (0.25..=0.75).contains(&p) {
                5.0
            } else {
                10.0 * p
            }
        });
        assert!((cdf(&q, 5.0) - 0.75).abs() < 1e-12);
        assert!((cdf_left(&q, 5.0) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn identical_distributions_score_zero() {
        let q = grid(|p| p * p * 7.0 - 3.0);
        assert_eq!(bins(&q, &q).map(|c| (c.psi, c.pearson)), Some((0.0, 0.0)));
        assert_eq!(ks(&q, &q), Some(0.0));
        let constant = vec![4.0; 21];
        assert_eq!(
            bins(&constant, &constant).map(|c| (c.psi, c.bins)),
            Some((0.0, 2))
        );
        assert_eq!(ks(&constant, &constant), Some(0.0));
    }

    #[test]
    fn shifted_uniform_has_known_ks_and_large_psi() {
        let h = grid(|p| p); // U(0, 1)
        let b = grid(|p| p + 0.3); // U(0.3, 1.3)
        assert!((ks(&h, &b).unwrap() - 0.3).abs() < 1e-12);
        // Batch shares over the history's deciles: 0, 0, 0, 0.1 × 7, plus 0.3 above 0.9 → well above 0.2.
        let c = bins(&h, &b).unwrap();
        assert_eq!(c.bins, 10);
        let p = c.psi;
        let expected = 3.0 * (PSI_EPSILON - 0.1) * (PSI_EPSILON / 0.1).ln()
            + (0.4 - 0.1) * (0.4f64 / 0.1).ln();
        assert!((p - expected).abs() < 1e-9, "{p} vs {expected}");
        // A point mass moved entirely: D = 1.
        assert_eq!(ks(&[1.0; 21], &[2.0; 21]), Some(1.0));
    }

    #[test]
    fn critical_values_match_tables() {
        // KS: c(0.05) = 1.358; chi-square with 9 degrees of freedom at 0.999 is 27.88.
        let (_, d) = critical(0.05, 10, 100, 100);
        assert!((d - 1.358 * (0.02f64).sqrt()).abs() < 1e-3);
        let (p, _) = critical(0.001, 10, 1000, 1000);
        assert!((p - 27.88).abs() < 0.3, "{p}");
        assert_eq!(critical(0.0, 10, 10, 10), (0.0, 0.0));
        assert!((normal_upper_quantile(0.025) - 1.96).abs() < 1e-3);
    }
}
