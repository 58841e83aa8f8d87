//! What `detect` reports: the ranking of rows and the JSON summary.

use serde::Serialize;

/// The JSON report written by `detect --report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Number of rows scored.
    pub n_samples: usize,
    /// Number of features.
    pub n_features: usize,
    /// Seconds to fit the forest (file reading excluded).
    pub fit_seconds: f64,
    /// Seconds to score every row (file reading and writing excluded).
    pub score_seconds: f64,
    /// The model's threshold: rows scoring above it are flagged.
    pub threshold: f64,
    /// Number of rows scoring above the threshold.
    pub n_anomalies: usize,
    /// ROC-AUC against the labels: absent without labels, `null` when the labels hold only one class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<Option<f64>>,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers cannot fail; non-finite floats become `null`.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_string())
    }
}

/// Indices of the `n` highest scores, highest first; ties keep row order. NaN scores rank last.
pub fn top_rows(scores: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        sa.is_nan()
            .cmp(&sb.is_nan())
            .then(sb.total_cmp(&sa))
            .then(a.cmp(&b))
    });
    order.truncate(n);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_highest_first_ties_by_row() {
        let s = [0.2, 0.9, f64::NAN, 0.5, 0.9];
        assert_eq!(top_rows(&s, 3), [1, 4, 3]);
        assert_eq!(top_rows(&s, 10), [1, 4, 3, 0, 2]);
        assert!(top_rows(&s, 0).is_empty());
    }

    #[test]
    fn report_keys() {
        let r = Report {
            n_samples: 3,
            n_features: 2,
            fit_seconds: 0.1,
            score_seconds: 0.01,
            threshold: 0.5,
            n_anomalies: 1,
            roc_auc: None,
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v.get("roc_auc").is_none());
        assert_eq!(v["n_anomalies"], 1);
        let r = Report {
            roc_auc: Some(Some(0.75)),
            ..r
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["roc_auc"], 0.75);
    }
}
