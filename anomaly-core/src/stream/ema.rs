//! Exponentially weighted mean and variance with a k-sigma threshold.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::{StreamingDetector, check_observation, check_series, subject, z_score};
use crate::error::{Error, Result};
use crate::explanation::{Attribution, Details, Explanation, Verdict, fmt_num};

/// Parameters of an [`Ema`] detector.
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `alpha` | 0.1 | weight of each new observation, in `(0, 1]` |
/// | `sigma` | 3 | flag when the deviation exceeds this many weighted standard deviations |
/// | `warmup` | 20 | observations learnt before the first score |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmaParams {
    alpha: f64,
    sigma: f64,
    warmup: u64,
}

impl Default for EmaParams {
    fn default() -> Self {
        Self::new()
    }
}

impl EmaParams {
    /// Defaults: alpha 0.1, 3 sigma, 20 warm-up observations.
    pub fn new() -> Self {
        EmaParams {
            alpha: 0.1,
            sigma: 3.0,
            warmup: 20,
        }
    }

    /// Weight of each new observation (default 0.1).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Standard deviations that flag (default 3).
    pub fn sigma(mut self, k: f64) -> Self {
        self.sigma = k;
        self
    }

    /// Observations learnt before the first score (default 20; at least 2).
    pub fn warmup(mut self, n: u64) -> Self {
        self.warmup = n;
        self
    }

    /// Checks the parameters and builds an empty detector.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `alpha` outside `(0, 1]`, a non-positive `sigma` or a warm-up below 2.
    pub fn build(self) -> Result<Ema> {
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(Error::invalid("alpha", "must be in (0, 1]"));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::invalid("sigma", "must be finite and positive"));
        }
        if self.warmup < 2 {
            return Err(Error::invalid("warmup", "must be at least 2"));
        }
        Ok(Ema {
            params: self,
            seen: 0,
            mean: Vec::new(),
            var: Vec::new(),
        })
    }
}

/// Exponentially weighted moving mean and variance (West 1979; Finch, "Incremental calculation of weighted mean
/// and variance", 2009), flagging deviations beyond k weighted standard deviations.
///
/// Score: the z-score `|x − mean| / std` against the state before `x`, in `[0, ∞)`, finite; for a vector, the
/// largest over its dimensions. Warm-up: the first `warmup` observations. The state starts from the first
/// observation and counts what it has seen, so data centred at zero is handled like any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    params: EmaParams,
    seen: u64,
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl Ema {
    /// The parameters.
    pub fn params(&self) -> &EmaParams {
        &self.params
    }

    /// Observations learnt so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    #[inline]
    fn score_unchecked(&self, x: &[f64]) -> Option<Verdict> {
        if self.seen < self.params.warmup {
            return None;
        }
        let mut score = 0.0f64;
        for ((&v, &m), &var) in x.iter().zip(&self.mean).zip(&self.var) {
            score = score.max(z_score((v - m).abs(), var.sqrt(), m));
        }
        Some(Verdict::new(score, self.params.sigma))
    }

    #[inline]
    fn update_unchecked(&mut self, x: &[f64]) {
        if self.seen == 0 {
            self.mean = x.to_vec();
            self.var = vec![0.0; x.len()];
        } else {
            let a = self.params.alpha;
            for ((&v, m), var) in x.iter().zip(&mut self.mean).zip(&mut self.var) {
                let diff = v - *m;
                let incr = a * diff;
                *m += incr;
                *var = ((1.0 - a) * (*var + diff * incr)).min(f64::MAX);
            }
        }
        self.seen += 1;
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.mean.len() != self.var.len() || (self.seen > 0 && self.mean.is_empty()) {
            return Err("EMA state of inconsistent size".into());
        }
        if self.mean.iter().chain(&self.var).any(|v| !v.is_finite()) {
            return Err("non-finite EMA state".into());
        }
        Ok(())
    }
}

impl StreamingDetector for Ema {
    fn dims(&self) -> Option<usize> {
        (!self.mean.is_empty()).then_some(self.mean.len())
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
        let mut buf = Vec::with_capacity(series.ncols());
        for row in series.outer_iter() {
            let row: &[f64] = match row.to_slice() {
                Some(s) => s,
                None => {
                    buf.clear();
                    buf.extend(row.iter().copied());
                    &buf
                }
            };
            out.push(self.score_unchecked(row));
            self.update_unchecked(row);
        }
        Ok(out)
    }

    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>> {
        let Some(verdict) = self.score(x)? else {
            return Ok(None);
        };
        let k = self.params.sigma;
        let zs: Vec<f64> = x
            .iter()
            .zip(&self.mean)
            .zip(&self.var)
            .map(|((&v, &m), &var)| z_score((v - m).abs(), var.sqrt(), m))
            .collect();
        let total: f64 = zs.iter().sum();
        let mut attributions: Vec<Attribution> = (0..x.len())
            .map(|i| Attribution {
                feature: i,
                name: None,
                value: x[i],
                contribution: if total > 0.0 { zs[i] / total } else { 0.0 },
                typical_low: self.mean[i] - k * self.var[i].sqrt(),
                typical_high: self.mean[i] + k * self.var[i].sqrt(),
            })
            .collect();
        attributions.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        let lead = attributions[0].feature;
        let (mean, std) = (self.mean[lead], self.var[lead].sqrt());
        let rationale = format!(
            "{}: {} is {} weighted standard deviations from the moving mean {} (std {}); the threshold is {}.",
            if verdict.is_anomaly {
                "Anomalous"
            } else {
                "Normal"
            },
            subject(x, lead),
            fmt_num(zs[lead]),
            fmt_num(mean),
            fmt_num(std),
            fmt_num(k),
        );
        Ok(Some(Explanation {
            score: verdict.score,
            threshold: verdict.threshold,
            is_anomaly: verdict.is_anomaly,
            attributions,
            details: Details::Ema {
                mean,
                std,
                deviation: (x[lead] - mean).abs(),
                z_score: zs[lead],
            },
            rationale,
        }))
    }
}
