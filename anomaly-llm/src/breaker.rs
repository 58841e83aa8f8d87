//! [`CircuitBreaker`]: stop asking a provider that keeps failing, for a cool-down, then try it once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{info, warn};

use crate::cache::{Clock, SystemClock};
use crate::error::{LlmError, Result};
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse};

/// Where a [`CircuitBreaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive failures so far (fewer than the threshold).
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls fail at once with [`LlmError::CircuitOpen`] until the cool-down has passed.
    Open {
        /// The consecutive failures that opened it.
        failures: u32,
        /// How long until a trial call is let through.
        retry_in: Duration,
    },
    /// The cool-down has passed: the next call is let through as a trial (`trial_in_flight` while it runs; other
    /// calls meanwhile fail at once). Its success closes the circuit, its failure opens it again.
    HalfOpen {
        /// The consecutive failures that opened it.
        failures: u32,
        /// Whether the trial call is under way.
        trial_in_flight: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        failures: u32,
        since: Instant,
    },
    HalfOpen {
        failures: u32,
        trial_in_flight: bool,
    },
}

/// What a call's outcome says about the provider's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// It answered (an answer, or an error about this request only).
    Answered,
    /// It failed in a way the next request would likely share.
    Failed,
    /// The outcome says nothing about the provider: it was not asked.
    Unknown,
}

fn health(outcome: &Result<CompletionResponse>) -> Health {
    let Err(error) = outcome else {
        return Health::Answered;
    };
    match error {
        LlmError::Transport { .. }
        | LlmError::Timeout { .. }
        | LlmError::RateLimited { .. }
        | LlmError::Overloaded { .. }
        | LlmError::Protocol { .. } => Health::Failed,
        // A key refused, an unknown model or address: every request will fail the same way.
        LlmError::Api {
            status, retryable, ..
        } => {
            if *retryable || *status >= 500 || matches!(status, 401 | 403 | 404) {
                Health::Failed
            } else {
                Health::Answered
            }
        }
        LlmError::Truncated { .. } | LlmError::Refused { .. } | LlmError::InvalidOutput { .. } => {
            Health::Answered
        }
        _ => Health::Unknown,
    }
}

/// Whether a call was let through normally or as the half-open trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Normal,
    Trial,
}

/// A provider that stops being asked after `threshold` consecutive failures, for `cooldown`.
///
/// - **Closed**: calls go through. A failure adds one to the count of consecutive failures; an answer resets it.
///   At `threshold` the circuit opens.
/// - **Open**: calls fail at once with [`LlmError::CircuitOpen`], without reaching the provider, until `cooldown`
///   has passed since it opened.
/// - **Half-open**: the first call after the cool-down is let through as a trial (others meanwhile fail at once);
///   an answer closes the circuit, a failure opens it for another cool-down.
///
/// What counts is what the wrapped provider finally returns: wrap a [`Retrying`](crate::Retrying) provider and a
/// call that failed after all its retries is one failure. Failures are errors the next request would likely
/// share: transport errors, timeouts, rate limits and overload (after the retries), protocol errors, HTTP 5xx and
/// 401/403/404 (a refused key, an unknown model or address). An error about this request only (another 4xx, a
/// truncated or refused answer) means the provider answered, and resets the count. [`LlmError::Saturated`] (from a
/// [`ConcurrencyLimit`](crate::ConcurrencyLimit) inside) and other errors that say nothing about the provider
/// leave the count as it is. Schema validation happens outside (in
/// [`complete_validated`](Provider::complete_validated)): an answer that fails it still counts as an answer.
///
/// A [`FallbackChain`](crate::FallbackChain) reports a link whose circuit is open as
/// [skipped](crate::SkipReason::CircuitOpen). The clock is injectable ([`with_clock`](Self::with_clock)), so tests
/// move time with a [`ManualClock`](crate::ManualClock) instead of sleeping.
///
/// ```
/// use std::time::Duration;
/// use anomaly_llm::{BreakerState, CircuitBreaker, OfflineProvider};
///
/// let breaker = CircuitBreaker::new(OfflineProvider::new(), 5, Duration::from_secs(60));
/// assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
/// ```
#[derive(Debug)]
pub struct CircuitBreaker<P> {
    inner: P,
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl<P: Provider> CircuitBreaker<P> {
    /// Wraps `inner`: the circuit opens after `threshold` consecutive failures (at least 1) and stays open for
    /// `cooldown`.
    pub fn new(inner: P, threshold: u32, cooldown: Duration) -> Self {
        Self::with_clock(inner, threshold, cooldown, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), with the clock that measures the cool-down.
    pub fn with_clock(inner: P, threshold: u32, cooldown: Duration, clock: Arc<dyn Clock>) -> Self {
        CircuitBreaker {
            inner,
            threshold: threshold.max(1),
            cooldown,
            clock,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Where the breaker stands now (an open circuit whose cool-down has passed reads as half-open).
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { failures } => BreakerState::Closed { failures },
            State::Open { failures, since } => match self.remaining(since) {
                Some(retry_in) => BreakerState::Open { failures, retry_in },
                None => BreakerState::HalfOpen {
                    failures,
                    trial_in_flight: false,
                },
            },
            State::HalfOpen {
                failures,
                trial_in_flight,
            } => BreakerState::HalfOpen {
                failures,
                trial_in_flight,
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rest of the cool-down of a circuit opened at `since`, or `None` when it has passed.
    fn remaining(&self, since: Instant) -> Option<Duration> {
        let elapsed = self.clock.now().saturating_duration_since(since);
        (elapsed < self.cooldown).then(|| self.cooldown - elapsed)
    }

    fn open_error(&self, failures: u32, retry_in: Duration) -> LlmError {
        LlmError::CircuitOpen {
            provider: self.inner.name().to_string(),
            failures,
            retry_in,
        }
    }

    /// Lets a call through (normally, or as the trial), or refuses it.
    fn admit(&self) -> Result<Pass> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Pass::Normal),
            State::Open { failures, since } => match self.remaining(since) {
                Some(retry_in) => Err(self.open_error(failures, retry_in)),
                None => {
                    *state = State::HalfOpen {
                        failures,
                        trial_in_flight: true,
                    };
                    info!(
                        provider = self.name(),
                        "cool-down over; letting one trial call through"
                    );
                    Ok(Pass::Trial)
                }
            },
            State::HalfOpen {
                failures,
                trial_in_flight,
            } => {
                if trial_in_flight {
                    Err(self.open_error(failures, Duration::ZERO))
                } else {
                    *state = State::HalfOpen {
                        failures,
                        trial_in_flight: true,
                    };
                    Ok(Pass::Trial)
                }
            }
        }
    }

    /// Records a call's outcome.
    fn record(&self, pass: Pass, health: Health) {
        let mut state = self.lock();
        match (pass, health, *state) {
            (Pass::Trial, Health::Answered, _) => {
                info!(
                    provider = self.name(),
                    "trial call answered; circuit closed"
                );
                *state = State::Closed { failures: 0 };
            }
            (Pass::Trial, Health::Failed, State::HalfOpen { failures, .. }) => {
                warn!(
                    provider = self.name(),
                    cooldown_s = self.cooldown.as_secs(),
                    "trial call failed; circuit open again"
                );
                *state = State::Open {
                    failures: failures.saturating_add(1),
                    since: self.clock.now(),
                };
            }
            (Pass::Trial, Health::Unknown, State::HalfOpen { failures, .. }) => {
                *state = State::HalfOpen {
                    failures,
                    trial_in_flight: false,
                };
            }
            (Pass::Normal, Health::Answered, State::Closed { .. }) => {
                *state = State::Closed { failures: 0 };
            }
            (Pass::Normal, Health::Failed, State::Closed { failures }) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    warn!(
                        provider = self.name(),
                        failures,
                        cooldown_s = self.cooldown.as_secs(),
                        "consecutive failures; circuit open"
                    );
                    *state = State::Open {
                        failures,
                        since: self.clock.now(),
                    };
                } else {
                    *state = State::Closed { failures };
                }
            }
            // A call let through before the circuit opened, ending after: the trial decides.
            _ => {}
        }
    }
}

/// Hands the trial back when a trial call is dropped before it ends, so that the next call can be the trial.
struct TrialGuard<'a, P: Provider> {
    breaker: &'a CircuitBreaker<P>,
    pass: Pass,
    done: bool,
}

impl<P: Provider> Drop for TrialGuard<'_, P> {
    fn drop(&mut self) {
        if !self.done && self.pass == Pass::Trial {
            self.breaker.record(Pass::Trial, Health::Unknown);
        }
    }
}

#[async_trait]
impl<P: Provider> Provider for CircuitBreaker<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reads_prompt(&self) -> bool {
        self.inner.reads_prompt()
    }

    /// # Errors
    /// [`LlmError::CircuitOpen`] while the circuit is open (or a trial call is under way); otherwise the wrapped
    /// provider's error.
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let pass = self.admit()?;
        let mut guard = TrialGuard {
            breaker: self,
            pass,
            done: false,
        };
        let outcome = self.inner.complete(request).await;
        guard.done = true;
        self.record(pass, health(&outcome));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::cache::ManualClock;
    use crate::request::StopReason;

    /// Fails with a server error while `failing`, and counts the calls that reached it.
    #[derive(Debug, Default)]
    struct Flaky {
        failing: std::sync::atomic::AtomicBool,
        reached: AtomicUsize,
    }

    impl Flaky {
        fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }
        fn reached(&self) -> usize {
            self.reached.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Provider for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<CompletionResponse> {
            self.reached.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                Err(LlmError::Api {
                    provider: "flaky".into(),
                    status: 500,
                    kind: "api_error".into(),
                    message: "boom".into(),
                    retryable: true,
                })
            } else {
                Ok(CompletionResponse::new(
                    "flaky",
                    "m",
                    Some(json!({})),
                    "{}",
                    StopReason::EndTurn,
                ))
            }
        }
    }

    fn breaker() -> (CircuitBreaker<Flaky>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let flaky = Flaky::default();
        flaky.set_failing(true);
        let breaker = CircuitBreaker::with_clock(flaky, 3, Duration::from_secs(60), clock.clone());
        (breaker, clock)
    }

    fn request() -> CompletionRequest {
        CompletionRequest::new("s", "u")
    }

    #[tokio::test]
    async fn opens_after_consecutive_failures_and_lets_one_trial_through_after_the_cooldown() {
        let (breaker, clock) = breaker();
        for _ in 0..3 {
            assert!(matches!(
                breaker.complete(&request()).await,
                Err(LlmError::Api { .. })
            ));
        }
        assert_eq!(breaker.inner().reached(), 3);
        match breaker.complete(&request()).await {
            Err(LlmError::CircuitOpen {
                failures: 3,
                retry_in,
                ..
            }) => assert_eq!(retry_in, Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        assert_eq!(breaker.inner().reached(), 3, "an open circuit asks nobody");
        clock.advance(Duration::from_secs(59));
        assert!(breaker.complete(&request()).await.is_err());
        assert_eq!(breaker.inner().reached(), 3);

        // The trial fails: open again for a whole cool-down.
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen {
                failures: 3,
                trial_in_flight: false
            }
        );
        assert!(matches!(
            breaker.complete(&request()).await,
            Err(LlmError::Api { .. })
        ));
        assert_eq!(breaker.inner().reached(), 4);
        assert!(matches!(
            breaker.state(),
            BreakerState::Open { failures: 4, .. }
        ));
        assert!(matches!(
            breaker.complete(&request()).await,
            Err(LlmError::CircuitOpen { .. })
        ));
        assert_eq!(breaker.inner().reached(), 4);

        // The next trial answers: closed, and calls go through again.
        clock.advance(Duration::from_secs(60));
        breaker.inner().set_failing(false);
        assert!(breaker.complete(&request()).await.is_ok());
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        assert!(breaker.complete(&request()).await.is_ok());
        assert_eq!(breaker.inner().reached(), 6);
    }

    #[tokio::test]
    async fn an_answer_resets_the_count() {
        let (breaker, _clock) = breaker();
        for _ in 0..2 {
            let _ = breaker.complete(&request()).await;
        }
        breaker.inner().set_failing(false);
        breaker.complete(&request()).await.unwrap();
        breaker.inner().set_failing(true);
        for _ in 0..2 {
            let _ = breaker.complete(&request()).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 2 });
    }

    #[test]
    fn only_errors_the_next_request_would_share_count() {
        let api = |status: u16, retryable: bool| -> Result<CompletionResponse> {
            Err(LlmError::Api {
                provider: "p".into(),
                status,
                kind: String::new(),
                message: String::new(),
                retryable,
            })
        };
        assert_eq!(health(&api(401, false)), Health::Failed);
        assert_eq!(health(&api(503, true)), Health::Failed);
        assert_eq!(health(&api(400, false)), Health::Answered);
        let truncated = Err(LlmError::Truncated {
            provider: "p".into(),
            max_tokens: 1,
        });
        assert_eq!(health(&truncated), Health::Answered);
        let saturated = Err(LlmError::Saturated {
            provider: "p".into(),
            in_flight: 1,
            waiting: 0,
            waited: Duration::ZERO,
        });
        assert_eq!(health(&saturated), Health::Unknown);
    }

    /// Not asked: the limit inside says there is no slot.
    #[derive(Debug)]
    struct Full;

    #[async_trait]
    impl Provider for Full {
        fn name(&self) -> &str {
            "full"
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<CompletionResponse> {
            Err(LlmError::Saturated {
                provider: "full".into(),
                in_flight: 1,
                waiting: 0,
                waited: Duration::ZERO,
            })
        }
    }

    #[tokio::test]
    async fn saturation_is_not_a_failure_and_hands_the_trial_back() {
        let clock = Arc::new(ManualClock::new());
        let breaker = CircuitBreaker::with_clock(Full, 1, Duration::from_secs(10), clock.clone());
        for _ in 0..5 {
            let _ = breaker.complete(&request()).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        *breaker.lock() = State::HalfOpen {
            failures: 1,
            trial_in_flight: false,
        };
        let _ = breaker.complete(&request()).await;
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen {
                failures: 1,
                trial_in_flight: false
            }
        );
    }

    #[tokio::test]
    async fn a_dropped_trial_hands_the_trial_back() {
        let (breaker, clock) = breaker();
        for _ in 0..3 {
            let _ = breaker.complete(&request()).await;
        }
        clock.advance(Duration::from_secs(60));
        // A trial admitted and then dropped mid-call (as `complete` would be when its caller is cancelled).
        assert_eq!(breaker.admit().unwrap(), Pass::Trial);
        let guard = TrialGuard {
            breaker: &breaker,
            pass: Pass::Trial,
            done: false,
        };
        assert!(matches!(
            breaker.complete(&request()).await,
            Err(LlmError::CircuitOpen { retry_in, .. }) if retry_in.is_zero()
        ));
        drop(guard);
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen {
                failures: 3,
                trial_in_flight: false
            }
        );
    }
}
