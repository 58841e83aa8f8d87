//! ROC-AUC of anomaly scores against labels.

/// Area under the ROC curve of `scores` (higher = more anomalous) against `labels` (`true` = anomaly).
///
/// Computed as the Mann–Whitney U statistic with average ranks for tied scores, so a tie between an anomaly and a
/// normal row counts one half; this equals `sklearn.metrics.roc_auc_score`. O(n log n).
///
/// Returns `None` when it is undefined: lengths differ, a score is NaN, or the labels hold only one class.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the anomalies.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        rank_sum += mean_rank * positives as f64;
        start = end;
    }
    let n_pos = n_pos as f64;
    let u = rank_sum - n_pos * (n_pos + 1.0) / 2.0;
    Some(u / (n_pos * n_neg as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Definition: the share of (anomaly, normal) pairs ranked correctly, ties counting one half.
    fn pairwise(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if si > sj {
                        wins += 1.0;
                    } else if si == sj {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn known_values() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[1.0, 2.0, 3.0], &[false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[3.0, 2.0, 1.0], &[false, true, true]), Some(0.0));
    }

    #[test]
    fn ties_count_half() {
        assert_eq!(roc_auc(&[0.5; 4], &[true, false, true, false]), Some(0.5));
        // Anomalies score 2 and 1, normal rows 1, 2 and 3. Pairs: 2>1 wins, 2=2 and 1=1 tie, the rest lose:
        // (1 + 0.5 + 0.5) / 6 = 1/3, as sklearn.metrics.roc_auc_score([0, 0, 0, 1, 1], [1, 2, 3, 2, 1]).
        let scores = [1.0, 2.0, 3.0, 2.0, 1.0];
        let labels = [false, false, false, true, true];
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!((auc - 1.0 / 3.0).abs() < 1e-15, "{auc}");
        assert!((pairwise(&scores, &labels) - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn matches_the_pairwise_definition() {
        // Deterministic pseudo-random cases with many ties.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..200 {
            let n = 2 + case % 40;
            let scores: Vec<f64> = (0..n).map(|_| (next() % 7) as f64 / 7.0).collect();
            let mut labels: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
            labels[0] = true;
            labels[1] = false;
            let got = roc_auc(&scores, &labels).unwrap();
            let want = pairwise(&scores, &labels);
            assert!((got - want).abs() < 1e-12, "case {case}: {got} vs {want}");
        }
    }

    #[test]
    fn undefined_cases() {
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(roc_auc(&[1.0, 2.0], &[false, false]), None);
        assert_eq!(roc_auc(&[1.0], &[true, false]), None);
        assert_eq!(roc_auc(&[f64::NAN, 2.0], &[true, false]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }
}
