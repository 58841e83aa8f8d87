//! Ranking metrics for labelled evaluation: ROC-AUC and average precision, as scikit-learn defines them.

use crate::error::{Error, Result};

fn check(scores: &[f64], labels: &[bool]) -> Result<(usize, usize)> {
    if scores.len() != labels.len() {
        return Err(Error::DimensionMismatch {
            expected: labels.len(),
            got: scores.len(),
        });
    }
    if let Some(row) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::NonFinite {
            row,
            column: 0,
            value: scores[row],
        });
    }
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(Error::invalid(
            "labels",
            "need at least one positive and one negative label",
        ));
    }
    Ok((pos, neg))
}

/// Area under the ROC curve of `scores` (higher = more likely positive) against `labels`, ties counted half
/// (the Mann–Whitney U statistic, equal to `sklearn.metrics.roc_auc_score`).
///
/// # Errors
/// [`Error::DimensionMismatch`] for different lengths, [`Error::NonFinite`] for a non-finite score,
/// [`Error::InvalidParameter`] when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let (pos, neg) = check(scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the average ranks (1-based) of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Ok(u / (pos as f64 * neg as f64))
}

/// Average precision of `scores` against `labels`, as `sklearn.metrics.average_precision_score`
/// (sum over thresholds of precision × recall increment; tied scores form one threshold).
///
/// # Errors
/// As [`roc_auc`].
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let (pos, _) = check(scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        tp += order[i..=j].iter().filter(|&&k| labels[k]).count();
        seen += j - i + 1;
        let recall = tp as f64 / pos as f64;
        ap += (recall - prev_recall) * (tp as f64 / seen as f64);
        prev_recall = recall;
        i = j + 1;
    }
    Ok(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_hand_cases() {
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &labels).unwrap(), 0.75);
        // average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333…
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &labels).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12);
        // All tied: 0.5.
        assert_eq!(roc_auc(&[1.0; 4], &labels).unwrap(), 0.5);
    }

    #[test]
    fn rejects_one_class_and_mismatch() {
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_err());
        assert!(roc_auc(&[0.1], &[true, false]).is_err());
    }
}
