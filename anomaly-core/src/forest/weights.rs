//! Sample weights, as scikit-learn 1.9's `IsolationForest.fit(X, sample_weight=w)` uses them: they decide which
//! rows each tree draws, and nothing else.
//!
//! scikit-learn (since 1.8) draws each tree's `max_samples` rows with probabilities `w / sum(w)`: without
//! replacement by default (`numpy.random.choice(n, k, replace=False, p)`), with replacement under `bootstrap`. The
//! tree is then grown on the drawn rows as an unweighted tree would be: splits, depth and path lengths count rows,
//! not weights, and the contamination threshold is the unweighted quantile of the training scores. So a row of
//! weight 0 is never drawn, and scaling every weight by a constant changes nothing (but rounding).
//!
//! Without replacement, numpy draws successively: each pick has probability proportional to its weight among the
//! rows not yet picked. The same distribution is drawn here by Efraimidis and Spirakis's keys (each row with weight
//! `w` gets the key `ln(u) / w` for a uniform `u`, and the `k` largest keys win), from the core's own generator, so
//! the rows are not numpy's rows but follow the same law.

use rand::Rng;

use crate::error::{Error, Result};

/// Checks `weights` for a fit on `n` rows drawing `max_samples` rows per tree, with scikit-learn's rules: one weight
/// per row, finite, not negative, not all zero and, without replacement, at least `max_samples` of them above zero
/// (numpy's `choice` refuses fewer).
///
/// # Errors
/// [`Error::InvalidParameter`] (`sample_weight`) naming the first rule broken.
pub(crate) fn check(weights: &[f64], n: usize, max_samples: usize, bootstrap: bool) -> Result<()> {
    if weights.len() != n {
        return Err(Error::invalid(
            "sample_weight",
            format!("{} weights for {n} rows: one weight per row", weights.len()),
        ));
    }
    if let Some((row, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
        return Err(Error::invalid(
            "sample_weight",
            format!("the weight of row {row} is {w}: weights must be finite"),
        ));
    }
    if let Some((row, w)) = weights.iter().enumerate().find(|(_, w)| **w < 0.0) {
        return Err(Error::invalid(
            "sample_weight",
            format!("the weight of row {row} is {w}: weights must not be negative"),
        ));
    }
    let positive = weights.iter().filter(|w| **w > 0.0).count();
    if positive == 0 {
        return Err(Error::invalid(
            "sample_weight",
            "weights must contain at least one non-zero number",
        ));
    }
    if !bootstrap && positive < max_samples {
        return Err(Error::invalid(
            "sample_weight",
            format!(
                "{positive} rows have a non-zero weight, fewer than the {max_samples} rows each tree draws without \
                 replacement (max_samples); lower max_samples or set bootstrap"
            ),
        ));
    }
    Ok(())
}

/// The weights of one fit, ready for drawing: the rows of positive weight and, for draws with replacement, their
/// running totals.
#[derive(Debug)]
pub(crate) struct WeightedRows {
    /// `(row, weight)` of every row of positive weight, in row order.
    positive: Vec<(usize, f64)>,
    /// Running sums of `positive`'s weights (for draws with replacement).
    cumulative: Vec<f64>,
}

impl WeightedRows {
    /// The rows of `weights` (already [`check`]ed). Weights are divided by the largest first, so their sum stays
    /// finite (at most the row count) and tiny weights do not underflow the keys.
    pub(crate) fn new(weights: &[f64]) -> WeightedRows {
        let largest = weights.iter().copied().fold(0.0, f64::max);
        let positive: Vec<(usize, f64)> = weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0.0)
            .map(|(row, w)| (row, w / largest))
            .collect();
        let mut total = 0.0;
        let cumulative = positive
            .iter()
            .map(|(_, w)| {
                total += w;
                total
            })
            .collect();
        WeightedRows {
            positive,
            cumulative,
        }
    }

    /// `k` distinct rows (at most the rows of positive weight), each pick proportional to its weight among the
    /// rows not yet picked; in row order.
    pub(crate) fn draw_without_replacement<R: Rng>(&self, k: usize, rng: &mut R) -> Vec<usize> {
        let mut keyed: Vec<(f64, usize)> = self
            .positive
            .iter()
            .map(|&(row, w)| {
                // `1 - u` is in (0, 1], so the logarithm is finite or 0; the largest keys win.
                let u: f64 = rng.random();
                ((1.0 - u).ln() / w, row)
            })
            .collect();
        let k = k.min(keyed.len());
        if k < keyed.len() {
            keyed.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        let mut rows: Vec<usize> = keyed[..k].iter().map(|&(_, row)| row).collect();
        rows.sort_unstable();
        rows
    }

    /// `k` rows drawn independently, each with probability proportional to its weight.
    pub(crate) fn draw_with_replacement<R: Rng>(&self, k: usize, rng: &mut R) -> Vec<usize> {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let last = self.positive.len().saturating_sub(1);
        (0..k)
            .map(|_| {
                let x = rng.random::<f64>() * total;
                // The first running sum above `x`; rounding can put `x` at the total, which is the last row's.
                let i = self.cumulative.partition_point(|&c| c <= x).min(last);
                self.positive[i].0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn bad_weights_are_refused_with_the_reason() {
        let reason = |w: &[f64], k: usize, bootstrap: bool| match check(w, 4, k, bootstrap) {
            Err(Error::InvalidParameter { name, reason }) => {
                assert_eq!(name, "sample_weight");
                reason
            }
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(reason(&[1.0, 1.0, 1.0], 2, false).contains("3 weights for 4 rows"));
        assert!(reason(&[1.0, f64::NAN, 1.0, 1.0], 2, false).contains("row 1 is NaN"));
        assert!(reason(&[1.0, 1.0, f64::INFINITY, 1.0], 2, false).contains("finite"));
        assert!(reason(&[1.0, 1.0, 1.0, -0.5], 2, false).contains("negative"));
        assert!(reason(&[0.0; 4], 2, true).contains("at least one non-zero"));
        assert!(reason(&[0.0, 1.0, 0.0, 1.0], 3, false).contains("2 rows have a non-zero weight"));
        // With replacement, one row of positive weight is enough.
        assert!(check(&[0.0, 1.0, 0.0, 0.0], 4, 3, true).is_ok());
        assert!(check(&[0.0, 1.0, 0.0, 1.0], 4, 2, false).is_ok());
        assert!(check(&[-0.0, 1.0, 0.0, 1.0], 4, 2, false).is_ok());
    }

    #[test]
    fn draws_follow_the_weights_and_never_pick_a_zero() {
        // Weights 0, 1, 2, 3, 4 (rows 0..5). One pick without replacement is row i with probability w_i / 10.
        let weights = [0.0, 1.0, 2.0, 3.0, 4.0];
        let rows = WeightedRows::new(&weights);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut single = [0usize; 5];
        let mut pairs = [0usize; 5];
        let mut replaced = [0usize; 5];
        let draws = 40_000;
        for _ in 0..draws {
            single[rows.draw_without_replacement(1, &mut rng)[0]] += 1;
            let two = rows.draw_without_replacement(2, &mut rng);
            assert_eq!(two.len(), 2);
            assert!(two[0] < two[1], "distinct rows in row order");
            for r in two {
                pairs[r] += 1;
            }
            for r in rows.draw_with_replacement(3, &mut rng) {
                replaced[r] += 1;
            }
        }
        assert_eq!((single[0], pairs[0], replaced[0]), (0, 0, 0));
        for (i, &count) in single.iter().enumerate().skip(1) {
            let share = count as f64 / draws as f64;
            assert!((share - weights[i] / 10.0).abs() < 0.01, "row {i}: {share}");
        }
        // Successive sampling of two: P(i in pair) = p_i + sum over j != i of p_j * p_i / (1 - p_j).
        for i in 1..5 {
            let p = |j: usize| weights[j] / 10.0;
            let expected = p(i)
                + (1..5)
                    .filter(|&j| j != i)
                    .map(|j| p(j) * p(i) / (1.0 - p(j)))
                    .sum::<f64>();
            let share = pairs[i] as f64 / draws as f64;
            assert!(
                (share - expected).abs() < 0.015,
                "row {i}: {share} against {expected}"
            );
            let share = replaced[i] as f64 / (3 * draws) as f64;
            assert!(
                (share - p(i)).abs() < 0.01,
                "row {i} with replacement: {share}"
            );
        }
        // Weights near the ends of the double range draw as their ratios say.
        for scale in [1e300, 1e-300] {
            let scaled: Vec<f64> = weights.iter().map(|w| w * scale).collect();
            let rows = WeightedRows::new(&scaled);
            let mut counts = [0usize; 5];
            for _ in 0..20_000 {
                counts[rows.draw_with_replacement(1, &mut rng)[0]] += 1;
                counts[rows.draw_without_replacement(1, &mut rng)[0]] += 1;
            }
            for (i, &count) in counts.iter().enumerate() {
                let share = count as f64 / 40_000.0;
                assert!(
                    (share - weights[i] / 10.0).abs() < 0.015,
                    "scale {scale}, row {i}: {share}"
                );
            }
        }
        // Asking for every row gives every row of positive weight.
        assert_eq!(rows.draw_without_replacement(9, &mut rng), vec![1, 2, 3, 4]);
    }
}
