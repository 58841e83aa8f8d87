//! Why a detector reached its verdict: the [`Explanation`] every detector can attach to a score.

use serde::{Deserialize, Serialize};

/// The verdict on one observation, without the explanation: cheap to compute and `Copy`.
///
/// `score` follows the crate-wide convention: higher means more anomalous, always finite. Each detector documents
/// its range. `is_anomaly` is `score > threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Anomaly score; higher means more anomalous.
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// Whether the score exceeded the threshold.
    pub is_anomaly: bool,
}

impl Verdict {
    /// Builds a verdict, deciding `score > threshold`.
    pub fn new(score: f64, threshold: f64) -> Self {
        Verdict {
            score,
            threshold,
            is_anomaly: score > threshold,
        }
    }
}

/// How much one feature contributed to a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Zero-based feature (column) index.
    pub feature: usize,
    /// The feature's name when the model knows it.
    pub name: Option<String>,
    /// The observation's value for this feature.
    pub value: f64,
    /// Share of the verdict credited to this feature, in `[0, 1]`; attributions of one explanation sum to 1
    /// (or are all 0 when nothing could be credited).
    pub contribution: f64,
    /// Lower end of the range that was typical in training (for example the 5th percentile).
    pub typical_low: f64,
    /// Upper end of the range that was typical in training (for example the 95th percentile).
    pub typical_high: f64,
}

impl Attribution {
    /// The feature's display name: its name, or `x{index}`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("x{}", self.feature))
    }

    /// Whether the value lies outside the typical range.
    pub fn is_atypical(&self) -> bool {
        self.value < self.typical_low || self.value > self.typical_high
    }
}

/// Which rule of a threshold detector fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The absolute deviation from the mean exceeded a fixed amount.
    AbsoluteDeviation,
    /// The deviation exceeded k standard deviations.
    Sigma,
    /// The (smoothed) score exceeded an adaptive threshold.
    Adaptive,
    /// The score exceeded a threshold fitted on training data or fixed by contamination.
    Fitted,
}

/// Detector-specific numbers behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Details {
    /// Isolation forest: path lengths.
    IsolationForest {
        /// Mean path length E[h(x)] over the trees.
        mean_path_length: f64,
        /// Normalising constant c(max_samples).
        normaliser: f64,
        /// Number of trees.
        n_trees: usize,
    },
    /// Moving average over a window (per dimension; the most deviant dimension is reported).
    MovingAverage {
        /// Mean of the window before this observation.
        window_mean: f64,
        /// Standard deviation of the window before this observation.
        window_std: f64,
        /// Absolute deviation of the observation from the window mean.
        deviation: f64,
        /// Deviation in units of the window's standard deviation.
        z_score: f64,
        /// Which rule the score is compared with.
        rule: ThresholdRule,
    },
    /// Exponentially weighted mean and variance.
    Ema {
        /// Exponentially weighted mean before this observation.
        mean: f64,
        /// Exponentially weighted standard deviation before this observation.
        std: f64,
        /// Absolute deviation of the observation from the mean.
        deviation: f64,
        /// Deviation in standard deviations.
        z_score: f64,
    },
    /// Streaming isolation forest with EMA smoothing and an adaptive threshold.
    StreamingIsolationForest {
        /// The forest's raw score for this point, in (0, 1).
        raw_score: f64,
        /// The EMA-smoothed score.
        smoothed_score: f64,
        /// Rolling mean of the smoothed scores.
        threshold_mean: f64,
        /// Rolling standard deviation of the smoothed scores.
        threshold_std: f64,
        /// Length of the current run of anomalous points, this one included.
        consecutive: usize,
        /// Whether the run is long enough (`min_consecutive`) to report.
        reported: bool,
        /// The most recent points the detector holds, oldest first (the context of the detection).
        buffer: Vec<Vec<f64>>,
        /// Raw scores of the buffered points.
        raw_scores: Vec<f64>,
        /// Smoothed scores of the buffered points.
        smoothed_scores: Vec<f64>,
    },
}

/// A verdict with everything needed to understand it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Anomaly score; higher means more anomalous.
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// Whether the observation is anomalous.
    pub is_anomaly: bool,
    /// Per-feature attributions, most important first.
    pub attributions: Vec<Attribution>,
    /// Detector-specific numbers.
    pub details: Details,
    /// One sentence a person can read.
    pub rationale: String,
}

impl Explanation {
    /// The verdict part of the explanation.
    pub fn verdict(&self) -> Verdict {
        Verdict {
            score: self.score,
            threshold: self.threshold,
            is_anomaly: self.is_anomaly,
        }
    }
}

/// Formats a number for a rationale: few digits, thousands separators for large values.
pub(crate) fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if (1000.0..1e15).contains(&a) {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 1.0 {
        let s = format!("{:.2}", v);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else if a >= 1e-3 {
        let s = format!("{:.4}", v);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{:.3e}", v)
    }
}

/// A sentence fragment describing where an attributed value lies against its typical range.
pub(crate) fn describe_attribution(a: &Attribution) -> String {
    let name = a.label();
    let (low, high) = (fmt_num(a.typical_low), fmt_num(a.typical_high));
    let range = if a.typical_low == a.typical_high {
        format!("value {low}")
    } else if a.typical_low < 0.0 || a.typical_high < 0.0 {
        format!("{low} to {high}")
    } else {
        format!("{low}–{high}")
    };
    if a.value > a.typical_high {
        format!(
            "`{name}` = {} is above the typical {range}",
            fmt_num(a.value)
        )
    } else if a.value < a.typical_low {
        format!(
            "`{name}` = {} is below the typical {range}",
            fmt_num(a.value)
        )
    } else {
        format!(
            "`{name}` = {} is within the typical {range}",
            fmt_num(a.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(99812.0), "99,812");
        assert_eq!(fmt_num(-1234567.0), "-1,234,567");
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(480.0), "480");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(0.0), "0");
    }

    #[test]
    fn attribution_sentence() {
        let a = Attribution {
            feature: 0,
            name: Some("amount".into()),
            value: 99812.0,
            contribution: 0.9,
            typical_low: 12.0,
            typical_high: 480.0,
        };
        assert_eq!(
            describe_attribution(&a),
            "`amount` = 99,812 is above the typical 12–480"
        );
        let b = Attribution {
            value: 15.1,
            typical_low: -0.06,
            typical_high: -0.06,
            ..a.clone()
        };
        assert_eq!(
            describe_attribution(&b),
            "`amount` = 15.1 is above the typical value -0.06"
        );
        let c = Attribution {
            value: -3.0,
            typical_low: -1.7,
            typical_high: 1.5,
            ..a
        };
        assert_eq!(
            describe_attribution(&c),
            "`amount` = -3 is below the typical -1.7 to 1.5"
        );
    }
}
