//! [`SeriesDetectors`]: the two explainable streaming detectors kept per named series, with a bound on the series
//! in memory and replay protection by stream position.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{
    MovingAverage, MovingAverageParams, StreamingIsolationForest, StreamingIsolationForestParams,
};
use crate::alert::{AlertRule, AlertState, AlertTransition};
use crate::error::{Error, Result};
use crate::explanation::{Details, Explanation};
use crate::stream::StreamingDetector;

/// Which detector made a [`SeriesDetection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesMethod {
    /// The moving average: every point whose deviation from the window mean exceeds the threshold.
    MovingAverage,
    /// The streaming isolation forest: one detection per incident, when the smoothed score has exceeded the adaptive
    /// threshold `min_consecutive` points in a row (the [`AlertRule`]).
    IsolationForest,
}

impl SeriesMethod {
    /// The method's name as stored and filtered on: `moving_average` or `isolation_forest`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesMethod::MovingAverage => "moving_average",
            SeriesMethod::IsolationForest => "isolation_forest",
        }
    }
}

/// Parameters of [`SeriesDetectors`].
///
/// | field | default | meaning |
/// | --- | --- | --- |
/// | `moving_average` | window 5, threshold 20 | the moving-average detector of each series |
/// | `forest` | see [`StreamingIsolationForestParams`] | the streaming forest of each series (its `min_consecutive` is replaced by the one here) |
/// | `min_consecutive` | 3 | forest points in a row above the adaptive threshold that raise one detection |
/// | `cooldown` | 5 | normal forest points in a row that close an incident, so the next streak raises again |
/// | `context_len` | 32 | recent values and smoothed scores kept per series and stored with each detection |
/// | `max_series` | 10,000 | series in memory (about 500 KiB each once the default forest is grown); the least recently seen one is evicted beyond it |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesParams {
    /// The moving average of each series.
    pub moving_average: MovingAverageParams,
    /// The streaming isolation forest of each series.
    pub forest: StreamingIsolationForestParams,
    /// Anomalous forest points in a row that raise a detection (at least 1).
    pub min_consecutive: usize,
    /// Normal forest points in a row that close an incident.
    pub cooldown: usize,
    /// Recent values and smoothed scores kept per series (at least 1).
    pub context_len: usize,
    /// Series in memory (at least 1).
    pub max_series: usize,
}

impl Default for SeriesParams {
    fn default() -> Self {
        SeriesParams {
            moving_average: MovingAverageParams::new(),
            forest: StreamingIsolationForestParams::new(),
            min_consecutive: 3,
            cooldown: 5,
            context_len: 32,
            max_series: 10_000,
        }
    }
}

/// One detection, with everything that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesDetection {
    /// The detector.
    pub method: SeriesMethod,
    /// The position the point was observed at (a stream sequence number).
    pub position: u64,
    /// The point's value.
    pub value: f64,
    /// The detector's score (moving average: absolute deviation; forest: smoothed score).
    pub score: f64,
    /// The threshold at that moment (forest: the adaptive one).
    pub threshold: f64,
    /// Deviation in standard deviations (moving average: of the window; forest: of the smoothed score from the
    /// rolling mean of smoothed scores), when the standard deviation is not zero.
    pub z_score: Option<f64>,
    /// One sentence a person can read.
    pub rationale: String,
    /// The detector's full explanation.
    pub explanation: Explanation,
    /// The series' most recent values, oldest first, this one last (at most `context_len`).
    pub recent_values: Vec<f64>,
    /// The forest's most recent smoothed scores, oldest first (at most `context_len`; empty during its warm-up).
    pub recent_smoothed_scores: Vec<f64>,
}

/// What [`SeriesDetectors::observe`] did with a point.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesOutcome {
    /// The point was learnt; these detections were made (often none).
    Observed(Vec<SeriesDetection>),
    /// The series has already seen this position or a later one: a redelivery, ignored (nothing learnt twice).
    AlreadySeen {
        /// The series' last position.
        last_position: u64,
    },
}

/// Counts of a [`SeriesDetectors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeriesStats {
    /// Series in memory.
    pub in_memory: usize,
    /// Series evicted so far (least recently seen, beyond `max_series`).
    pub evicted: u64,
}

struct SeriesState {
    moving_average: MovingAverage,
    forest: StreamingIsolationForest,
    alert: AlertState,
    last_position: Option<u64>,
    recent_values: VecDeque<f64>,
    recent_smoothed: VecDeque<f64>,
    last_used: u64,
}

/// A moving average and a streaming isolation forest per named series (a metric stream's `cpu.web-1`), created on
/// a series' first point.
///
/// - **Bounded**: at most `max_series` series are kept; a new series beyond that evicts the least recently seen one
///   (its state starts over if it comes back), counted in [`stats`](Self::stats).
/// - **Replay-safe**: each point comes with a position that increases along the stream (a broker's sequence
///   number); a point at or before a series' last position is not learnt again
///   ([`SeriesOutcome::AlreadySeen`]), so a redelivered message changes nothing. Positions need only increase per
///   series.
/// - **Explained**: every detection carries its explanation, rationale, threshold and recent context.
///
/// ```
/// use anomaly_core::stream::{SeriesDetectors, SeriesOutcome, SeriesParams};
///
/// let mut detectors = SeriesDetectors::new(SeriesParams::default())?;
/// let mut found = Vec::new();
/// for (i, v) in [10.0, 11.0, 10.0, 9.0, 10.0, 10.5, 95.0].into_iter().enumerate() {
///     if let SeriesOutcome::Observed(d) = detectors.observe("cpu.web-1", i as u64 + 1, v)? {
///         found.extend(d);
///     }
/// }
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].value, 95.0);
/// assert!(found[0].rationale.starts_with("Anomalous"));
/// // The same position again is a replay.
/// assert!(matches!(detectors.observe("cpu.web-1", 7, 95.0)?, SeriesOutcome::AlreadySeen { .. }));
/// # Ok::<(), anomaly_core::Error>(())
/// ```
pub struct SeriesDetectors {
    params: SeriesParams,
    series: HashMap<String, SeriesState>,
    by_use: BTreeMap<u64, String>,
    clock: u64,
    evicted: u64,
}

impl std::fmt::Debug for SeriesDetectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesDetectors")
            .field("params", &self.params)
            .field("series", &self.series.len())
            .field("evicted", &self.evicted)
            .finish_non_exhaustive()
    }
}

impl SeriesDetectors {
    /// Checks the parameters (by building each detector once) and starts with no series.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad parameter.
    pub fn new(params: SeriesParams) -> Result<Self> {
        if params.context_len == 0 {
            return Err(Error::invalid("context_len", "must be at least 1"));
        }
        if params.max_series == 0 {
            return Err(Error::invalid("max_series", "must be at least 1"));
        }
        let detectors = SeriesDetectors {
            params,
            series: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
            evicted: 0,
        };
        detectors.fresh_state()?;
        Ok(detectors)
    }

    /// The parameters.
    pub fn params(&self) -> &SeriesParams {
        &self.params
    }

    /// Series in memory and evicted.
    pub fn stats(&self) -> SeriesStats {
        SeriesStats {
            in_memory: self.series.len(),
            evicted: self.evicted,
        }
    }

    fn fresh_state(&self) -> Result<SeriesState> {
        let p = &self.params;
        Ok(SeriesState {
            moving_average: p.moving_average.clone().build()?,
            forest: p
                .forest
                .clone()
                .min_consecutive(p.min_consecutive)
                .build()?,
            alert: AlertRule {
                min_consecutive: p.min_consecutive,
                cooldown: p.cooldown,
            }
            .start()?,
            last_position: None,
            recent_values: VecDeque::new(),
            recent_smoothed: VecDeque::new(),
            last_used: 0,
        })
    }

    /// Learns `value` of `series` at `position` and returns the detections it makes.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite value (nothing is learnt).
    pub fn observe(&mut self, series: &str, position: u64, value: f64) -> Result<SeriesOutcome> {
        if !value.is_finite() {
            return Err(Error::NonFinite {
                row: 0,
                column: 0,
                value,
            });
        }
        self.clock += 1;
        let now = self.clock;
        if !self.series.contains_key(series) {
            let fresh = self.fresh_state()?;
            while self.series.len() >= self.params.max_series {
                let Some((_, oldest)) = self.by_use.pop_first() else {
                    break;
                };
                self.series.remove(&oldest);
                self.evicted += 1;
                tracing::debug!(series = %oldest, "series evicted (least recently seen)");
            }
            self.series.insert(series.to_string(), fresh);
        }
        let context_len = self.params.context_len;
        let state = self
            .series
            .get_mut(series)
            .expect("the series was just inserted");
        self.by_use.remove(&state.last_used);
        state.last_used = now;
        self.by_use.insert(now, series.to_string());
        if let Some(last) = state.last_position
            && position <= last
        {
            return Ok(SeriesOutcome::AlreadySeen {
                last_position: last,
            });
        }
        state
            .observe(position, value, context_len)
            .map(SeriesOutcome::Observed)
    }
}

fn push_bounded(ring: &mut VecDeque<f64>, v: f64, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(v);
}

impl SeriesState {
    fn observe(
        &mut self,
        position: u64,
        value: f64,
        context_len: usize,
    ) -> Result<Vec<SeriesDetection>> {
        let x = [value];
        self.last_position = Some(position);
        push_bounded(&mut self.recent_values, value, context_len);
        let mut found = Vec::new();

        // Moving average: judge against the window before this point, then learn it.
        if self.moving_average.score(&x)?.is_some_and(|v| v.is_anomaly)
            && let Some(explanation) = self.moving_average.explain(&x)?
        {
            let z_score = match explanation.details {
                Details::MovingAverage { z_score, .. } if z_score.is_finite() => Some(z_score),
                _ => None,
            };
            found.push(self.detection(
                SeriesMethod::MovingAverage,
                position,
                value,
                z_score,
                explanation,
                None,
            ));
        }
        self.moving_average.update(&x)?;

        // Forest: a smoothed score above the adaptive threshold feeds the alert rule; a raised alert is one
        // detection, explained before the point is learnt.
        let verdict = self.forest.score(&x)?;
        if let Some(v) = verdict {
            push_bounded(&mut self.recent_smoothed, v.score, context_len);
        }
        let candidate = verdict.is_some_and(|v| v.score > v.threshold);
        if self.alert.observe(candidate) == AlertTransition::Raised
            && let Some(explanation) = self.forest.explain(&x)?
        {
            let z_score = match explanation.details {
                Details::StreamingIsolationForest {
                    smoothed_score,
                    threshold_mean,
                    threshold_std,
                    ..
                } if threshold_std > 0.0 => Some((smoothed_score - threshold_mean) / threshold_std),
                _ => None,
            };
            let rule = self.alert.rule();
            let extra = format!(
                " One detection per incident: raised after {} points in a row above the threshold; the incident \
                 closes after {} normal points.",
                rule.min_consecutive,
                rule.cooldown.max(1)
            );
            found.push(self.detection(
                SeriesMethod::IsolationForest,
                position,
                value,
                z_score,
                explanation,
                Some(extra),
            ));
        }
        self.forest.update(&x)?;
        Ok(found)
    }

    fn detection(
        &self,
        method: SeriesMethod,
        position: u64,
        value: f64,
        z_score: Option<f64>,
        explanation: Explanation,
        extra: Option<String>,
    ) -> SeriesDetection {
        let mut rationale = explanation.rationale.clone();
        if let Some(extra) = extra {
            rationale.push_str(&extra);
        }
        SeriesDetection {
            method,
            position,
            value,
            score: explanation.score,
            threshold: explanation.threshold,
            z_score,
            rationale,
            explanation,
            recent_values: self.recent_values.iter().copied().collect(),
            recent_smoothed_scores: self.recent_smoothed.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn noisy(rng: &mut ChaCha8Rng) -> f64 {
        50.0 + rng.random_range(-2.0..2.0)
    }

    fn run(detectors: &mut SeriesDetectors, series: &str, values: &[f64]) -> Vec<SeriesDetection> {
        let mut out = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            if let SeriesOutcome::Observed(d) = detectors.observe(series, i as u64 + 1, v).unwrap()
            {
                out.extend(d);
            }
        }
        out
    }

    #[test]
    fn a_spike_is_detected_by_both_methods_with_context() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut values: Vec<f64> = (0..400).map(|_| noisy(&mut rng)).collect();
        for v in &mut values[300..306] {
            *v += 200.0;
        }
        let mut detectors = SeriesDetectors::new(SeriesParams::default()).unwrap();
        let found = run(&mut detectors, "cpu", &values);
        let ma: Vec<_> = found
            .iter()
            .filter(|d| d.method == SeriesMethod::MovingAverage)
            .collect();
        let forest: Vec<_> = found
            .iter()
            .filter(|d| d.method == SeriesMethod::IsolationForest)
            .collect();
        let ma_positions: Vec<u64> = ma.iter().map(|d| d.position).collect();
        // The spike's first point, then each point while the window still holds spike values (and the return).
        assert_eq!(ma_positions.first(), Some(&301), "{ma_positions:?}");
        assert!(
            ma_positions.iter().all(|p| (301..=312).contains(p)),
            "{ma_positions:?}"
        );
        assert_eq!(forest.len(), 1, "{} forest detections", forest.len());
        assert!((301..=306).contains(&(forest[0].position as usize)));
        let d = ma[0];
        assert_eq!(d.recent_values.last(), Some(&d.value));
        assert_eq!(d.recent_values.len(), 32);
        assert!(d.z_score.is_some());
        assert!(d.rationale.contains("deviates"));
        assert!(d.score > d.threshold);
        let f = forest[0];
        assert!(f.recent_smoothed_scores.len() > 1);
        assert!(
            f.rationale.contains("One detection per incident"),
            "{}",
            f.rationale
        );
    }

    #[test]
    fn a_stationary_series_stays_quiet() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let values: Vec<f64> = (0..2_000).map(|_| noisy(&mut rng)).collect();
        let mut detectors = SeriesDetectors::new(SeriesParams::default()).unwrap();
        let found = run(&mut detectors, "quiet", &values);
        assert!(
            found
                .iter()
                .all(|d| d.method == SeriesMethod::IsolationForest),
            "{found:?}"
        );
        assert!(
            found.len() <= 20,
            "{} forest incidents in 2,000 stationary points",
            found.len()
        );
    }

    #[test]
    fn a_replayed_position_is_not_learnt_twice() {
        let mut detectors = SeriesDetectors::new(SeriesParams::default()).unwrap();
        let values = [10.0, 10.0, 10.0, 10.0, 10.0, 90.0];
        let found = run(&mut detectors, "s", &values);
        assert_eq!(found.len(), 1);
        // The spike redelivered: ignored, whereas learning it again would flag it a second time.
        assert_eq!(
            detectors.observe("s", 6, 90.0).unwrap(),
            SeriesOutcome::AlreadySeen { last_position: 6 }
        );
        assert_eq!(
            detectors.observe("s", 3, 10.0).unwrap(),
            SeriesOutcome::AlreadySeen { last_position: 6 }
        );
        // Positions are per series.
        assert_eq!(
            detectors.observe("other", 3, 10.0).unwrap(),
            SeriesOutcome::Observed(vec![])
        );
    }

    #[test]
    fn the_least_recently_seen_series_is_evicted() {
        let params = SeriesParams {
            max_series: 2,
            ..SeriesParams::default()
        };
        let mut detectors = SeriesDetectors::new(params).unwrap();
        detectors.observe("a", 1, 1.0).unwrap();
        detectors.observe("b", 2, 1.0).unwrap();
        detectors.observe("a", 3, 1.0).unwrap();
        detectors.observe("c", 4, 1.0).unwrap(); // evicts b, seen least recently
        assert_eq!(
            detectors.stats(),
            SeriesStats {
                in_memory: 2,
                evicted: 1
            }
        );
        // a kept its state: position 3 is a replay; b starts over: position 2 is new again.
        assert!(matches!(
            detectors.observe("a", 3, 1.0).unwrap(),
            SeriesOutcome::AlreadySeen { .. }
        ));
        assert_eq!(
            detectors.observe("b", 2, 1.0).unwrap(),
            SeriesOutcome::Observed(vec![])
        );
        assert_eq!(
            detectors.stats(),
            SeriesStats {
                in_memory: 2,
                evicted: 2
            }
        );
    }

    #[test]
    fn bad_input_and_parameters_are_errors() {
        let mut detectors = SeriesDetectors::new(SeriesParams::default()).unwrap();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                detectors.observe("s", 1, v),
                Err(Error::NonFinite { .. })
            ));
        }
        assert_eq!(detectors.stats().in_memory, 0);
        for params in [
            SeriesParams {
                max_series: 0,
                ..SeriesParams::default()
            },
            SeriesParams {
                context_len: 0,
                ..SeriesParams::default()
            },
            SeriesParams {
                min_consecutive: 0,
                ..SeriesParams::default()
            },
            SeriesParams {
                moving_average: MovingAverageParams::new().window(0),
                ..SeriesParams::default()
            },
            SeriesParams {
                forest: StreamingIsolationForestParams::new().contamination(0.9),
                ..SeriesParams::default()
            },
        ] {
            assert!(matches!(
                SeriesDetectors::new(params),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }
}
