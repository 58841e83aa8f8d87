//! [`Cached`]: a bounded response cache keyed by a hash of the request, with a time to live.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::debug;

use crate::error::Result;
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse};

/// A source of the current time, so that tests can move it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (for tests and simulations).
///
/// ```
/// use std::time::Duration;
/// use anomaly_llm::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at an arbitrary start.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward; a move past what `Instant` can represent is ignored.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(new) = offset.checked_add(by)
            && self.start.checked_add(new).is_some()
        {
            *offset = new;
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hits, misses and the current size of a [`Cached`] provider's cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Requests passed on to the provider.
    pub misses: u64,
    /// Entries held now (expired ones included until they are touched or evicted).
    pub entries: usize,
}

#[derive(Debug)]
struct Entry {
    response: CompletionResponse,
    /// `None`: never (a TTL past what `Instant` can hold).
    expires: Option<Instant>,
    used: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<[u8; 32], Entry>,
    /// Last use → key: the least recently used entry is the first.
    by_use: BTreeMap<u64, [u8; 32]>,
    tick: u64,
}

/// A provider whose validated answers are kept for `ttl`, at most `capacity` of them (the least recently used is
/// evicted first). Keys are [`CompletionRequest::cache_key`], a SHA-256 of everything that decides the answer.
///
/// Only answers that passed schema validation are kept, and only those of the first provider of a chain: an answer
/// that came through a fallback (a degraded one: non-empty
/// [`fallback_from`](CompletionResponse::fallback_from), whether the links before were tried and failed or were
/// skipped) is returned but not cached, so the preferred provider is asked again next time. Errors are not cached
/// either. This is why [`LlmSettings::chain`](crate::LlmSettings::chain) wraps the whole chain rather than each
/// link: the offline rules' answer after an outage is never pinned for the TTL.
///
/// Two identical requests that miss at the same time are both passed on (there is no single-flight).
///
/// ```
/// use std::time::Duration;
/// use anomaly_llm::{Cached, OfflineProvider};
///
/// let cached = Cached::new(OfflineProvider::new(), 1000, Duration::from_secs(600));
/// assert_eq!(cached.stats().entries, 0);
/// ```
#[derive(Debug)]
pub struct Cached<P> {
    inner: P,
    capacity: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<P: Provider> Cached<P> {
    /// A cache of at most `capacity` answers (0 disables caching), each kept for `ttl` (`Duration::MAX`, or any
    /// TTL past what the clock can represent, keeps them until evicted).
    pub fn new(inner: P, capacity: usize, ttl: Duration) -> Self {
        Self::with_clock(inner, capacity, ttl, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), with the clock that decides expiry.
    pub fn with_clock(inner: P, capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Cached {
            inner,
            capacity,
            ttl,
            clock,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Hits, misses and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().entries.len(),
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.by_use.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &[u8; 32]) -> Option<CompletionResponse> {
        let now = self.clock.now();
        let mut state = self.lock();
        let (expired, used) = {
            let entry = state.entries.get(key)?;
            (entry.expires.is_some_and(|e| e <= now), entry.used)
        };
        state.by_use.remove(&used);
        if expired {
            state.entries.remove(key);
            return None;
        }
        state.tick += 1;
        let tick = state.tick;
        state.by_use.insert(tick, *key);
        let entry = state.entries.get_mut(key)?;
        entry.used = tick;
        Some(entry.response.clone())
    }

    fn put(&self, key: [u8; 32], response: CompletionResponse) {
        if self.capacity == 0 {
            return;
        }
        let expires = self.clock.now().checked_add(self.ttl);
        let mut state = self.lock();
        if let Some(old) = state.entries.remove(&key) {
            state.by_use.remove(&old.used);
        }
        while state.entries.len() >= self.capacity {
            let Some((_, oldest)) = state.by_use.pop_first() else {
                break;
            };
            state.entries.remove(&oldest);
        }
        state.tick += 1;
        let used = state.tick;
        state.by_use.insert(used, key);
        state.entries.insert(
            key,
            Entry {
                response,
                expires,
                used,
            },
        );
    }
}

#[async_trait]
impl<P: Provider> Provider for Cached<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reads_prompt(&self) -> bool {
        self.inner.reads_prompt()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let key = request.cache_key();
        if let Some(mut hit) = self.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            debug!(provider = self.name(), "cache hit");
            hit.cached = true;
            hit.usage = Default::default();
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let response = self.inner.complete_validated(request).await?;
        if response.fallback_from.is_empty() && response.skipped.is_empty() {
            self.put(key, response.clone());
        }
        Ok(response)
    }
}
