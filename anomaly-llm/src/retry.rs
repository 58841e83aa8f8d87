//! Retries with exponential backoff and jitter, honouring `retry-after`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{info, warn};

use crate::error::{LlmError, Result};
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse};

/// When and how long [`Retrying`] waits.
///
/// | setting | default | meaning |
/// | --- | --- | --- |
/// | `max_retries` | 3 | retries after the first attempt |
/// | `base_delay` | 500 ms | the first backoff; it doubles with each retry |
/// | `max_delay` | 20 s | the backoff's cap |
/// | `max_retry_after` | 60 s | a `retry-after` longer than this is not waited for: the error is returned at once, so a fallback chain moves on |
/// | `seed` | `None` | the jitter's seed; `None` seeds from the clock and the process id so that clients do not retry in step |
///
/// The wait before retry `n` (0-based) is the provider's `retry-after` when it sent one, else equal jitter:
/// `d/2 + U(0, d/2)` with `d = min(max_delay, base_delay · 2ⁿ)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff.
    pub base_delay: Duration,
    /// The backoff's cap.
    pub max_delay: Duration,
    /// Longest `retry-after` waited for.
    pub max_retry_after: Duration,
    /// The jitter's seed (`None`: from the clock and process id).
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The backoff before retry `retry` (0-based) for a jitter draw `unit` in `[0, 1)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use anomaly_llm::RetryPolicy;
    ///
    /// let p = RetryPolicy { base_delay: Duration::from_millis(100), ..RetryPolicy::default() };
    /// assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
    /// assert_eq!(p.backoff(2, 0.0), Duration::from_millis(200));
    /// assert!(p.backoff(2, 0.999) < Duration::from_millis(400));
    /// ```
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let factor = 2f64.powi(retry.min(62) as i32);
        let full = (self.base_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // `full` can be as large as `max_delay` (up to `Duration::MAX`, which f64 rounds up past what a Duration
        // holds), so convert without panicking and never return more than the cap.
        Duration::try_from_secs_f64(full / 2.0 + unit * full / 2.0)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// How long to wait before retry `retry` (0-based) after `error`, or `None` to give up: the error is not
    /// retryable, the retries are spent, or the provider asked for a longer wait than `max_retry_after`.
    pub fn delay_for(&self, retry: u32, error: &LlmError, unit: f64) -> Option<Duration> {
        if retry >= self.max_retries || !error.is_retryable() {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(retry, unit)),
        }
    }
}

/// A provider that retries another on rate limits, overload, server errors, timeouts and transport errors.
///
/// ```
/// use std::time::Duration;
/// use anomaly_llm::{OfflineProvider, Retrying, RetryPolicy, Provider};
///
/// let provider = Retrying::new(
///     OfflineProvider::new(),
///     RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(200), ..RetryPolicy::default() },
/// );
/// assert_eq!(provider.name(), "offline");
/// ```
#[derive(Debug)]
pub struct Retrying<P> {
    inner: P,
    policy: RetryPolicy,
    rng: Mutex<ChaCha8Rng>,
}

impl<P: Provider> Retrying<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, policy: RetryPolicy) -> Self {
        let seed = policy.seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        Retrying {
            inner,
            policy,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn draw(&self) -> f64 {
        match self.rng.lock() {
            Ok(mut rng) => rng.random::<f64>(),
            Err(poisoned) => poisoned.into_inner().random::<f64>(),
        }
    }
}

#[async_trait]
impl<P: Provider> Provider for Retrying<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reads_prompt(&self) -> bool {
        self.inner.reads_prompt()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let mut retry = 0;
        loop {
            match self.inner.complete(request).await {
                Ok(response) => {
                    if retry > 0 {
                        info!(
                            provider = self.name(),
                            retries = retry,
                            "succeeded after retrying"
                        );
                    }
                    return Ok(response);
                }
                Err(error) => {
                    let Some(wait) = self.policy.delay_for(retry, &error, self.draw()) else {
                        return Err(error);
                    };
                    warn!(
                        provider = self.name(),
                        error = %error,
                        retry = retry + 1,
                        wait_ms = wait.as_millis() as u64,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(after: Option<u64>) -> LlmError {
        LlmError::RateLimited {
            provider: "p".into(),
            retry_after: after.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_in_the_jitter_band() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for retry in 0..10 {
            let full = (100.0 * 2f64.powi(retry as i32)).min(1000.0);
            let lo = p.backoff(retry, 0.0).as_secs_f64() * 1000.0;
            let hi = p.backoff(retry, 1.0).as_secs_f64() * 1000.0;
            assert!((lo - full / 2.0).abs() < 1e-6, "{retry}: {lo}");
            assert!((hi - full).abs() < 1e-6, "{retry}: {hi}");
        }
        assert_eq!(p.backoff(1000, f64::NAN), Duration::from_millis(500));
    }

    #[test]
    fn huge_delays_saturate_at_the_cap() {
        let p = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(62, 1.0), Duration::MAX);
        assert!(p.backoff(0, 0.0) <= Duration::MAX);
    }

    proptest::proptest! {
        #[test]
        fn backoff_never_panics_and_stays_under_the_cap(
            base in proptest::num::u64::ANY, base_nanos in 0u32..1_000_000_000,
            max in proptest::num::u64::ANY, max_nanos in 0u32..1_000_000_000,
            retry in proptest::num::u32::ANY, unit in proptest::num::f64::ANY,
        ) {
            let p = RetryPolicy {
                base_delay: Duration::new(base, base_nanos),
                max_delay: Duration::new(max, max_nanos),
                ..RetryPolicy::default()
            };
            proptest::prop_assert!(p.backoff(retry, unit) <= p.max_delay);
        }
    }

    #[test]
    fn retry_after_wins_and_a_long_one_gives_up() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay_for(0, &limited(Some(7)), 0.5),
            Some(Duration::from_secs(7))
        );
        assert_eq!(p.delay_for(0, &limited(Some(3600)), 0.5), None);
        assert_eq!(p.delay_for(3, &limited(None), 0.5), None);
        assert!(p.delay_for(2, &limited(None), 0.5).is_some());
        let denied = LlmError::Api {
            provider: "p".into(),
            status: 401,
            kind: "authentication_error".into(),
            message: String::new(),
            retryable: false,
        };
        assert_eq!(p.delay_for(0, &denied, 0.5), None);
    }
}
