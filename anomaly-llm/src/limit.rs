//! [`ConcurrencyLimit`]: at most N calls of a provider in flight and at most M callers waiting for one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use tracing::{debug, warn};

use crate::error::{LlmError, Result};
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse};

/// A provider with at most `max_concurrent` calls in flight and at most `max_waiting` callers queued for a slot.
///
/// - A call that finds a free slot goes on at once.
/// - Otherwise it waits in a first-come, first-served queue, for at most the request's
///   [`timeout`](CompletionRequest::timeout); if no slot frees in that time it fails with
///   [`LlmError::Saturated`] (with `waited` set).
/// - A call that finds `max_waiting` callers already queued fails at once with [`LlmError::Saturated`] (`waited`
///   zero), so a burst never builds an unbounded backlog of tasks and sockets.
///
/// A call holds its slot for everything the wrapped provider does: wrap a [`Retrying`](crate::Retrying) provider
/// and its retries and backoff waits count as one call in flight. [`Saturated`](LlmError::Saturated) is not
/// retryable; a [`FallbackChain`](crate::FallbackChain) reports the link as skipped and asks the next one, and a
/// [`CircuitBreaker`](crate::CircuitBreaker) around this wrapper does not count it as the provider's failure.
///
/// A caller that is dropped while waiting leaves the queue; one dropped while in flight frees its slot.
///
/// ```
/// use anomaly_llm::{ConcurrencyLimit, OfflineProvider, Provider};
///
/// let limited = ConcurrencyLimit::new(OfflineProvider::new(), 4, 64);
/// assert_eq!(limited.name(), "offline");
/// assert_eq!((limited.in_flight(), limited.waiting()), (0, 0));
/// ```
#[derive(Debug)]
pub struct ConcurrencyLimit<P> {
    inner: P,
    max_concurrent: usize,
    max_waiting: usize,
    slots: Semaphore,
    waiting: AtomicUsize,
}

impl<P: Provider> ConcurrencyLimit<P> {
    /// Wraps `inner` with at most `max_concurrent` calls in flight (at least 1, at most
    /// [`Semaphore::MAX_PERMITS`]) and at most `max_waiting` callers queued (0: a call that finds no free slot
    /// fails at once).
    pub fn new(inner: P, max_concurrent: usize, max_waiting: usize) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        ConcurrencyLimit {
            inner,
            max_concurrent,
            max_waiting,
            slots: Semaphore::new(max_concurrent),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The most calls in flight.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The most callers waiting for a slot.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    /// Callers waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn saturated(&self, waited: Duration) -> LlmError {
        LlmError::Saturated {
            provider: self.inner.name().to_string(),
            in_flight: self.in_flight(),
            waiting: self.waiting(),
            waited,
        }
    }

    /// A slot: at once if one is free, else after waiting in the queue (if it has room) for at most `timeout`.
    async fn slot(&self, timeout: Duration) -> Result<SemaphorePermit<'_>> {
        match self.slots.try_acquire() {
            Ok(permit) => return Ok(permit),
            // The semaphore is never closed; treat it as full all the same.
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {}
        }
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.max_waiting).then_some(w + 1)
            });
        if joined.is_err() {
            let error = self.saturated(Duration::ZERO);
            warn!(provider = self.name(), error = %error, "call refused: the queue is full");
            return Err(error);
        }
        let _queued = Queued(&self.waiting);
        debug!(
            provider = self.name(),
            waiting = self.waiting(),
            "waiting for a call slot"
        );
        match tokio::time::timeout(timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => {
                drop(_queued);
                let error = self.saturated(timeout);
                warn!(provider = self.name(), error = %error, "call gave up waiting for a slot");
                Err(error)
            }
        }
    }
}

/// One place in the queue, given back when the wait ends or is abandoned.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<P: Provider> Provider for ConcurrencyLimit<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reads_prompt(&self) -> bool {
        self.inner.reads_prompt()
    }

    /// # Errors
    /// [`LlmError::Saturated`] when no slot was free and the queue was full, or none freed within the request's
    /// timeout; otherwise the wrapped provider's error.
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let _slot = self.slot(request.timeout).await?;
        self.inner.complete(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::sync::Notify;

    use super::*;
    use crate::request::StopReason;

    /// Answers once released; counts the calls that reached it.
    #[derive(Debug, Default)]
    struct Gate {
        open: Notify,
        reached: AtomicUsize,
    }

    #[async_trait]
    impl Provider for Gate {
        fn name(&self) -> &str {
            "gate"
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<CompletionResponse> {
            self.reached.fetch_add(1, Ordering::SeqCst);
            self.open.notified().await;
            Ok(CompletionResponse::new(
                "gate",
                "m",
                Some(json!({})),
                "{}",
                StopReason::EndTurn,
            ))
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn callers_past_the_limit_wait_then_past_the_queue_are_refused() {
        let limited = Arc::new(ConcurrencyLimit::new(Gate::default(), 2, 1));
        let request = CompletionRequest::new("s", "u").with_timeout(Duration::from_secs(3600));
        let mut calls = Vec::new();
        for _ in 0..3 {
            let (l, r) = (limited.clone(), request.clone());
            calls.push(tokio::spawn(async move { l.complete(&r).await }));
        }
        settle().await;
        assert_eq!((limited.in_flight(), limited.waiting()), (2, 1));
        assert_eq!(limited.inner().reached.load(Ordering::SeqCst), 2);
        match limited.complete(&request).await {
            Err(LlmError::Saturated {
                in_flight: 2,
                waiting: 1,
                waited,
                ..
            }) => assert!(waited.is_zero()),
            other => panic!("{other:?}"),
        }
        // One answer frees a slot; the queued caller takes it.
        limited.inner().open.notify_one();
        settle().await;
        assert_eq!(limited.inner().reached.load(Ordering::SeqCst), 3);
        assert_eq!((limited.in_flight(), limited.waiting()), (2, 0));
        limited.inner().open.notify_waiters();
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!((limited.in_flight(), limited.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_caller_gives_up_after_the_request_timeout_and_a_dropped_one_leaves() {
        let limited = Arc::new(ConcurrencyLimit::new(Gate::default(), 1, 5));
        let request = CompletionRequest::new("s", "u").with_timeout(Duration::from_secs(30));
        let l = limited.clone();
        let r = request.clone();
        let holder = tokio::spawn(async move { l.complete(&r).await });
        settle().await;
        // The paused clock moves on by itself once every task waits: no real sleep.
        match limited.complete(&request).await {
            Err(LlmError::Saturated { waited, .. }) => {
                assert_eq!(waited, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(limited.waiting(), 0);
        let l = limited.clone();
        let r = request.clone();
        let abandoned = tokio::spawn(async move { l.complete(&r).await });
        settle().await;
        assert_eq!(limited.waiting(), 1);
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(limited.waiting(), 0, "a dropped caller leaves the queue");
        holder.abort();
        let _ = holder.await;
        assert_eq!(limited.in_flight(), 0, "a dropped call frees its slot");
    }

    #[test]
    fn the_limits_are_clamped() {
        let limited = ConcurrencyLimit::new(Gate::default(), 0, 0);
        assert_eq!(limited.max_concurrent(), 1);
        let limited = ConcurrencyLimit::new(Gate::default(), usize::MAX, 0);
        assert_eq!(limited.max_concurrent(), Semaphore::MAX_PERMITS);
    }
}
