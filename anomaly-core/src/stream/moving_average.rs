//! Moving-average detector: deviation from the mean of the last `window` observations.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::rolling::RollingStats;
use super::{StreamingDetector, check_observation, check_series, subject, z_score};
use crate::error::{Error, Result};
use crate::explanation::{Attribution, Details, Explanation, ThresholdRule, Verdict, fmt_num};

/// Parameters of a [`MovingAverage`] detector, named as the metric-stream system names them.
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `window` | 5 | observations in the rolling window (memory grows with the observations, up to the window) |
/// | `threshold` | 20 | absolute deviation from the window mean that flags |
/// | `sigma` | `None` | if set to k, flag when the deviation exceeds k window standard deviations instead |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovingAverageParams {
    window: usize,
    threshold: f64,
    sigma: Option<f64>,
}

impl Default for MovingAverageParams {
    fn default() -> Self {
        Self::new()
    }
}

impl MovingAverageParams {
    /// Defaults: window 5, absolute threshold 20.
    pub fn new() -> Self {
        MovingAverageParams {
            window: 5,
            threshold: 20.0,
            sigma: None,
        }
    }

    /// Observations in the rolling window (default 5).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Absolute deviation that flags (default 20).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Flag at k standard deviations of the window instead of an absolute deviation.
    pub fn sigma(mut self, k: Option<f64>) -> Self {
        self.sigma = k;
        self
    }

    /// Checks the parameters and builds an empty detector.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a zero window or a threshold that is not finite and positive.
    pub fn build(self) -> Result<MovingAverage> {
        if self.window == 0 {
            return Err(Error::invalid("window", "must be at least 1"));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(Error::invalid("threshold", "must be finite and positive"));
        }
        if let Some(k) = self.sigma
            && !(k.is_finite() && k > 0.0)
        {
            return Err(Error::invalid("sigma", "must be finite and positive"));
        }
        Ok(MovingAverage {
            params: self,
            stats: Vec::new(),
        })
    }
}

/// Flags observations that deviate from the rolling mean of the previous `window` observations.
///
/// Score: the absolute deviation `|x − mean|` (or, with `sigma`, the z-score `|x − mean| / std`, std the window's
/// population standard deviation), in `[0, ∞)`, finite. For a vector, the largest over its dimensions. Warm-up: the
/// first `window` observations, until the window is full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovingAverage {
    params: MovingAverageParams,
    stats: Vec<RollingStats>,
}

/// One dimension's numbers for the current observation.
struct DimScore {
    mean: f64,
    std: f64,
    deviation: f64,
    z: f64,
}

impl MovingAverage {
    /// The parameters.
    pub fn params(&self) -> &MovingAverageParams {
        &self.params
    }

    fn threshold(&self) -> f64 {
        self.params.sigma.unwrap_or(self.params.threshold)
    }

    fn rule(&self) -> ThresholdRule {
        if self.params.sigma.is_some() {
            ThresholdRule::Sigma
        } else {
            ThresholdRule::AbsoluteDeviation
        }
    }

    fn warm(&self) -> bool {
        self.stats.first().is_some_and(RollingStats::is_full)
    }

    #[inline]
    fn dim_score(stats: &RollingStats, x: f64) -> DimScore {
        let mean = stats.mean();
        let std = stats.std();
        let deviation = (x - mean).abs();
        DimScore {
            mean,
            std,
            deviation,
            z: z_score(deviation, std, mean),
        }
    }

    #[inline]
    fn value(&self, d: &DimScore) -> f64 {
        if self.params.sigma.is_some() {
            d.z
        } else {
            d.deviation.min(f64::MAX)
        }
    }

    /// Scores an already validated observation.
    #[inline]
    fn score_unchecked(&self, x: &[f64]) -> Option<Verdict> {
        if !self.warm() {
            return None;
        }
        let score = self
            .stats
            .iter()
            .zip(x)
            .map(|(s, &v)| self.value(&Self::dim_score(s, v)))
            .fold(0.0, f64::max);
        Some(Verdict::new(score, self.threshold()))
    }

    #[inline]
    fn update_unchecked(&mut self, x: &[f64]) {
        if self.stats.is_empty() {
            self.stats = vec![RollingStats::new(self.params.window); x.len()];
        }
        for (s, &v) in self.stats.iter_mut().zip(x) {
            s.push(v);
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.params.window == 0 || self.params.threshold.is_nan() || self.params.threshold <= 0.0
        {
            return Err("invalid moving-average parameters".into());
        }
        self.stats.iter().try_for_each(RollingStats::check)
    }
}

impl StreamingDetector for MovingAverage {
    fn dims(&self) -> Option<usize> {
        (!self.stats.is_empty()).then_some(self.stats.len())
    }

    fn score(&self, x: &[f64]) -> Result<Option<Verdict>> {
        check_observation(self.dims(), x)?;
        Ok(self.score_unchecked(x))
    }

    fn update(&mut self, x: &[f64]) -> Result<()> {
        check_observation(self.dims(), x)?;
        self.update_unchecked(x);
        Ok(())
    }

    fn score_and_update(&mut self, x: &[f64]) -> Result<Option<Verdict>> {
        check_observation(self.dims(), x)?;
        let v = self.score_unchecked(x);
        self.update_unchecked(x);
        Ok(v)
    }

    fn score_many(&mut self, series: ArrayView2<'_, f64>) -> Result<Vec<Option<Verdict>>> {
        check_series(self.dims(), series)?;
        let mut out = Vec::with_capacity(series.nrows());
        match series.as_slice() {
            Some(flat) => {
                for row in flat.chunks_exact(series.ncols().max(1)) {
                    out.push(self.score_unchecked(row));
                    self.update_unchecked(row);
                }
            }
            None => {
                let mut buf = Vec::with_capacity(series.ncols());
                for row in series.outer_iter() {
                    buf.clear();
                    buf.extend(row.iter().copied());
                    out.push(self.score_unchecked(&buf));
                    self.update_unchecked(&buf);
                }
            }
        }
        Ok(out)
    }

    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>> {
        let Some(verdict) = self.score(x)? else {
            return Ok(None);
        };
        let dims: Vec<DimScore> = self
            .stats
            .iter()
            .zip(x)
            .map(|(s, &v)| Self::dim_score(s, v))
            .collect();
        let values: Vec<f64> = dims.iter().map(|d| self.value(d)).collect();
        let total: f64 = values.iter().sum();
        let mut attributions: Vec<Attribution> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let half = match self.params.sigma {
                    Some(k) => k * d.std,
                    None => self.params.threshold,
                };
                Attribution {
                    feature: i,
                    name: None,
                    value: x[i],
                    contribution: if total > 0.0 { values[i] / total } else { 0.0 },
                    typical_low: d.mean - half,
                    typical_high: d.mean + half,
                }
            })
            .collect();
        attributions.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        let lead = attributions[0].feature;
        let d = &dims[lead];
        let rule = self.rule();
        let rationale = format!(
            "{}: {} deviates {} from the mean {} of the last {} observations ({} standard deviations); the {} threshold is {}.",
            if verdict.is_anomaly {
                "Anomalous"
            } else {
                "Normal"
            },
            subject(x, lead),
            fmt_num(d.deviation),
            fmt_num(d.mean),
            self.params.window,
            fmt_num(d.z),
            match rule {
                ThresholdRule::Sigma => "k-sigma",
                _ => "absolute deviation",
            },
            fmt_num(self.threshold()),
        );
        Ok(Some(Explanation {
            score: verdict.score,
            threshold: verdict.threshold,
            is_anomaly: verdict.is_anomaly,
            attributions,
            details: Details::MovingAverage {
                window_mean: d.mean,
                window_std: d.std,
                deviation: d.deviation,
                z_score: d.z,
                rule,
            },
            rationale,
        }))
    }
}
