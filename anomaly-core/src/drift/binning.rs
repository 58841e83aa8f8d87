//! Quantile bins of one reference column and the PSI of new values against them.

use serde::{Deserialize, Serialize};

use crate::stats::distribution::psi_of_shares;

/// Bin edges cut at a reference column's quantiles, with the reference's share of each bin.
///
/// Edges are the reference's `k / bins` quantiles (numpy's `linear` method) for `k = 1, …, bins − 1`, equal edges
/// merged, so a constant column has one edge and two bins and a discrete column has at most one bin per gap between
/// its values. Bins are closed on the right: a value equal to an edge always falls in the bin below it, in the
/// reference and in the window alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Binning {
    edges: Vec<f64>,
    reference: Vec<f64>,
}

impl Binning {
    /// Bins of `values` (non-empty, finite).
    pub(crate) fn fit(values: impl Iterator<Item = f64>, bins: usize) -> Self {
        let mut sorted: Vec<f64> = values.collect();
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..bins)
            .map(|k| crate::forest::percentile_sorted(&sorted, 100.0 * k as f64 / bins as f64))
            .collect();
        edges.dedup();
        let mut counts = vec![0u64; edges.len() + 1];
        for &v in &sorted {
            counts[bin_of(&edges, v)] += 1;
        }
        let n = sorted.len().max(1) as f64;
        Binning {
            reference: counts.iter().map(|&c| c as f64 / n).collect(),
            edges,
        }
    }

    /// Number of bins.
    pub(crate) fn len(&self) -> usize {
        self.reference.len()
    }

    /// The bin of `x`.
    pub(crate) fn bin(&self, x: f64) -> usize {
        bin_of(&self.edges, x)
    }

    /// PSI of the bin `counts` (of `total` values) against the reference, shares floored at
    /// [`PSI_EPSILON`](crate::stats::distribution::PSI_EPSILON).
    pub(crate) fn psi(&self, counts: &[u32], total: usize) -> f64 {
        let total = total.max(1) as f64;
        let shares: Vec<f64> = counts.iter().map(|&c| f64::from(c) / total).collect();
        psi_of_shares(&self.reference, &shares)
    }

    /// Checks a binning restored from bytes.
    pub(crate) fn check(&self) -> Result<(), String> {
        let edges_ok =
            self.edges.iter().all(|e| e.is_finite()) && self.edges.windows(2).all(|w| w[0] < w[1]);
        let shares_ok = self.reference.len() == self.edges.len() + 1
            && self
                .reference
                .iter()
                .all(|s| s.is_finite() && (0.0..=1.0).contains(s));
        if edges_ok && shares_ok && self.reference.len() <= super::params::MAX_BINS {
            Ok(())
        } else {
            Err("inconsistent drift bins".into())
        }
    }
}

/// Number of edges strictly below `x`: bins closed on the right.
fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e < x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_column_gets_equal_shares() {
        let b = Binning::fit((0..1000).map(f64::from), 10);
        assert_eq!(b.len(), 10);
        assert!(b.reference.iter().all(|&s| (s - 0.1).abs() < 1e-12));
        assert_eq!(b.bin(-5.0), 0);
        assert_eq!(b.bin(1e9), 9);
    }

    #[test]
    fn constant_and_discrete_columns_merge_edges_and_keep_ties_below() {
        let c = Binning::fit(std::iter::repeat_n(3.0, 100), 10);
        assert_eq!(
            (c.edges.as_slice(), c.reference.as_slice()),
            (&[3.0][..], &[1.0, 0.0][..])
        );
        assert_eq!((c.bin(3.0), c.bin(3.5), c.bin(2.0)), (0, 1, 0));
        // 70 % zeros and 30 % ones.
        let d = Binning::fit((0..1000).map(|i| if i < 700 { 0.0 } else { 1.0 }), 10);
        assert!(d.edges.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(d.reference[d.bin(0.0)], 0.7);
        assert!((d.reference[d.bin(1.0)] - 0.3).abs() < 1e-12);
        let same = {
            let mut counts = vec![0u32; d.len()];
            counts[d.bin(0.0)] = 70;
            counts[d.bin(1.0)] = 30;
            d.psi(&counts, 100)
        };
        assert!(same.abs() < 1e-12);
    }
}
