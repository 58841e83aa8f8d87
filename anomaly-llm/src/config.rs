//! Settings from the environment, and the provider chain they describe.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::anthropic::AnthropicProvider;
use crate::breaker::CircuitBreaker;
use crate::cache::{Cached, Clock, SystemClock};
use crate::error::{LlmError, Result};
use crate::fallback::FallbackChain;
use crate::limit::ConcurrencyLimit;
use crate::offline::OfflineProvider;
use crate::openai::OpenAiProvider;
use crate::provider::Provider;
use crate::query::AnalyzerSettings;
use crate::retry::{RetryPolicy, Retrying};
use crate::secret::Secret;

/// Claude's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicSettings {
    /// `ANTHROPIC_API_KEY`.
    pub api_key: Secret,
    /// `CLAUDE_MODEL` (required when the key is set).
    pub model: String,
    /// `ANTHROPIC_BASE_URL` (default `https://api.anthropic.com`).
    pub base_url: Option<String>,
}

/// An OpenAI-compatible server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// `OPENAI_API_KEY` (optional for local servers).
    pub api_key: Option<Secret>,
    /// `LLM_MODEL` (required).
    pub model: String,
    /// `OPENAI_BASE_URL` (default `https://api.openai.com/v1`).
    pub base_url: Option<String>,
}

/// How [`LlmSettings::chain`] bounds the work given to the HTTP providers: concurrency, circuit breaker, cache.
///
/// | setting | default | environment | range |
/// | --- | --- | --- | --- |
/// | `max_concurrent` | 4 | `LLM_MAX_CONCURRENT` | 1 – 1,000 |
/// | `max_waiting` | 64 | `LLM_MAX_WAITING` | 0 – 100,000 |
/// | `breaker_failures` | 5 | `LLM_BREAKER_FAILURES` | 1 – 1,000 |
/// | `breaker_cooldown` | 60 s | `LLM_BREAKER_COOLDOWN_SECONDS` | 1 – 86,400 |
/// | `cache_size` | 1,000 | `LLM_CACHE_SIZE` | 0 (no cache) – 1,000,000 |
/// | `cache_ttl` | 3,600 s | `LLM_CACHE_TTL_SECONDS` | 1 – 2,592,000 (30 days) |
///
/// The concurrency limit and the breaker apply to each HTTP link on its own; the cache to the whole chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceSettings {
    /// Most calls of one HTTP link in flight at once (its retries included).
    pub max_concurrent: usize,
    /// Most callers waiting for one of those slots; a caller beyond them is refused at once
    /// ([`LlmError::Saturated`]), and a queued one waits at most its request's timeout.
    pub max_waiting: usize,
    /// Consecutive failures of one HTTP link (each after its retries) that open its circuit.
    pub breaker_failures: u32,
    /// How long an open circuit stays open before one trial call is let through.
    pub breaker_cooldown: Duration,
    /// Most answers the chain's cache holds (0 disables it).
    pub cache_size: usize,
    /// How long a cached answer is served.
    pub cache_ttl: Duration,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        ResilienceSettings {
            max_concurrent: 4,
            max_waiting: 64,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
            cache_size: 1_000,
            cache_ttl: Duration::from_secs(3_600),
        }
    }
}

/// Everything the environment configures.
///
/// | variable | meaning |
/// | --- | --- |
/// | `ANTHROPIC_API_KEY` | enables Claude |
/// | `CLAUDE_MODEL` | Claude's model; required when `ANTHROPIC_API_KEY` is set |
/// | `ANTHROPIC_BASE_URL` | another address for the Messages API (a proxy or gateway) |
/// | `OPENAI_BASE_URL` | enables an OpenAI-compatible server at this address (Ollama, vLLM, llama.cpp, …) |
/// | `OPENAI_API_KEY` | enables OpenAI (at its default address unless `OPENAI_BASE_URL` is set); sent as a bearer token |
/// | `LLM_MODEL` | the OpenAI-compatible server's model; required when either variable above is set |
/// | `MAX_TOKENS` | the answer's token limit per request (default 4,096) |
/// | `MAX_RECORDS_PER_BATCH` | records or log lines per request (default 50) |
/// | `LLM_TIMEOUT_SECONDS` | per-attempt timeout, also the longest wait for a call slot (default 60) |
/// | `LLM_MAX_CONCURRENT` | calls in flight per HTTP provider (default 4) |
/// | `LLM_MAX_WAITING` | callers waiting for a slot per HTTP provider; beyond, a call skips the provider at once (default 64) |
/// | `LLM_BREAKER_FAILURES` | consecutive failed calls (each after its retries) that open a provider's circuit (default 5) |
/// | `LLM_BREAKER_COOLDOWN_SECONDS` | how long an open circuit skips its provider before one trial call (default 60) |
/// | `LLM_CACHE_SIZE` | answers kept in the chain's cache, 0 for none (default 1,000) |
/// | `LLM_CACHE_TTL_SECONDS` | how long a cached answer is served (default 3,600) |
///
/// Empty variables count as unset; ranges are in [`ResilienceSettings`]. The chain is Claude → the
/// OpenAI-compatible server → offline rules; with no key and no server it is the offline rules alone. See
/// [`chain`](Self::chain) for how each link is wrapped.
///
/// ```
/// use std::collections::HashMap;
/// use anomaly_llm::LlmSettings;
///
/// let env = HashMap::from([
///     ("ANTHROPIC_API_KEY", "sk-ant-test"),
///     ("CLAUDE_MODEL", "claude-sonnet-4-5"),
///     ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
///     ("LLM_MODEL", "llama3.1:8b"),
///     ("MAX_RECORDS_PER_BATCH", "20"),
/// ]);
/// let settings = LlmSettings::from_lookup(|k| env.get(k).map(|v| v.to_string()))?;
/// assert_eq!(settings.analyzer.max_records_per_batch, 20);
/// assert_eq!(settings.resilience.max_concurrent, 4);
/// assert_eq!(settings.chain()?.inner().names(), ["anthropic", "openai", "offline"]);
///
/// let none = LlmSettings::from_lookup(|_| None)?;
/// assert_eq!(none.chain()?.inner().names(), ["offline"]);
/// # Ok::<(), anomaly_llm::LlmError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// Claude, when configured.
    pub anthropic: Option<AnthropicSettings>,
    /// An OpenAI-compatible server, when configured.
    pub openai: Option<OpenAiSettings>,
    /// Batching, token limit, timeout.
    pub analyzer: AnalyzerSettings,
    /// Retries of each HTTP link.
    pub retry: RetryPolicy,
    /// Concurrency limit and circuit breaker of each HTTP link, and the chain's cache.
    pub resilience: ResilienceSettings,
}

impl LlmSettings {
    /// Reads the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (a variable's value, or `None`), so tests need not touch the process
    /// environment.
    ///
    /// # Errors
    /// [`LlmError::Config`] naming the variable: `CLAUDE_MODEL` missing while `ANTHROPIC_API_KEY` is set,
    /// `LLM_MODEL` missing while `OPENAI_BASE_URL` or `OPENAI_API_KEY` is set, a number that does not parse or is
    /// out of range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let anthropic = match get("ANTHROPIC_API_KEY") {
            Some(key) => Some(AnthropicSettings {
                api_key: Secret::new(key),
                model: get("CLAUDE_MODEL").ok_or_else(|| LlmError::Config {
                    setting: "CLAUDE_MODEL".into(),
                    reason:
                        "required when ANTHROPIC_API_KEY is set (for example claude-sonnet-4-5)"
                            .into(),
                })?,
                base_url: get("ANTHROPIC_BASE_URL"),
            }),
            None => {
                if get("CLAUDE_MODEL").is_some() || get("ANTHROPIC_BASE_URL").is_some() {
                    warn!(
                        "CLAUDE_MODEL or ANTHROPIC_BASE_URL is set but ANTHROPIC_API_KEY is not: Claude is off"
                    );
                }
                None
            }
        };
        let openai_key = get("OPENAI_API_KEY");
        let openai_url = get("OPENAI_BASE_URL");
        let openai = if openai_key.is_some() || openai_url.is_some() {
            Some(OpenAiSettings {
                api_key: openai_key.map(Secret::new),
                model: get("LLM_MODEL").ok_or_else(|| LlmError::Config {
                    setting: "LLM_MODEL".into(),
                    reason: "required when OPENAI_BASE_URL or OPENAI_API_KEY is set".into(),
                })?,
                base_url: openai_url,
            })
        } else {
            None
        };
        let mut analyzer = AnalyzerSettings::default();
        if let Some(v) = get("MAX_TOKENS") {
            analyzer.max_tokens = parse_number("MAX_TOKENS", &v, 1, u64::from(u32::MAX))? as u32;
        }
        if let Some(v) = get("MAX_RECORDS_PER_BATCH") {
            analyzer.max_records_per_batch =
                parse_number("MAX_RECORDS_PER_BATCH", &v, 1, 100_000)? as usize;
        }
        if let Some(v) = get("LLM_TIMEOUT_SECONDS") {
            analyzer.timeout =
                Duration::from_secs(parse_number("LLM_TIMEOUT_SECONDS", &v, 1, 3_600)?);
        }
        analyzer.validate()?;
        let mut resilience = ResilienceSettings::default();
        if let Some(v) = get("LLM_MAX_CONCURRENT") {
            resilience.max_concurrent = parse_number("LLM_MAX_CONCURRENT", &v, 1, 1_000)? as usize;
        }
        if let Some(v) = get("LLM_MAX_WAITING") {
            resilience.max_waiting = parse_number("LLM_MAX_WAITING", &v, 0, 100_000)? as usize;
        }
        if let Some(v) = get("LLM_BREAKER_FAILURES") {
            resilience.breaker_failures =
                parse_number("LLM_BREAKER_FAILURES", &v, 1, 1_000)? as u32;
        }
        if let Some(v) = get("LLM_BREAKER_COOLDOWN_SECONDS") {
            resilience.breaker_cooldown =
                Duration::from_secs(parse_number("LLM_BREAKER_COOLDOWN_SECONDS", &v, 1, 86_400)?);
        }
        if let Some(v) = get("LLM_CACHE_SIZE") {
            resilience.cache_size = parse_number("LLM_CACHE_SIZE", &v, 0, 1_000_000)? as usize;
        }
        if let Some(v) = get("LLM_CACHE_TTL_SECONDS") {
            resilience.cache_ttl =
                Duration::from_secs(parse_number("LLM_CACHE_TTL_SECONDS", &v, 1, 2_592_000)?);
        }
        Ok(LlmSettings {
            anthropic,
            openai,
            analyzer,
            retry: RetryPolicy::default(),
            resilience,
        })
    }

    /// The provider chain: Claude, then the OpenAI-compatible server (each as configured), then the offline rules,
    /// which are always last; the whole chain behind the cache.
    ///
    /// ```text
    /// Cached( FallbackChain[ CircuitBreaker(ConcurrencyLimit(Retrying(Claude))),
    ///                        CircuitBreaker(ConcurrencyLimit(Retrying(OpenAI-compatible))),
    ///                        Offline ] )
    /// ```
    ///
    /// Why this order, from the inside out:
    /// - [`Retrying`] is innermost, so the others see one outcome per call, after its retries.
    /// - [`ConcurrencyLimit`] holds a slot for the whole call, retries and backoff included: at most
    ///   `max_concurrent` calls of a provider are under way, however many analyses run.
    /// - [`CircuitBreaker`] is outside the limit: while the circuit is open a call is refused before it takes a
    ///   slot or a place in the queue, and a refusal for want of a slot ([`LlmError::Saturated`], the local
    ///   load, not the provider's health) does not count as the provider's failure.
    /// - A refused link ([`LlmError::CircuitOpen`], [`LlmError::Saturated`]) is a failed link for the
    ///   [`FallbackChain`], which asks the next one and reports the link as
    ///   [skipped](crate::CompletionResponse::skipped); the offline rules always answer.
    /// - [`Cached`] wraps the whole chain: one lookup per request, and a hit needs no slot. It keeps only answers
    ///   of the first link that nothing was passed over for (empty
    ///   [`fallback_from`](crate::CompletionResponse::fallback_from)), so an answer from the offline rules (or
    ///   from the second provider) because the first failed or was skipped is returned but not cached: once the
    ///   provider is back, the same request reaches it. With no provider configured, the offline rules' answers are
    ///   cached (they are deterministic).
    ///
    /// # Errors
    /// [`LlmError::Config`] for an empty model; [`LlmError::Transport`] when an HTTP client cannot be built.
    pub fn chain(&self) -> Result<Cached<FallbackChain>> {
        self.chain_with_clock(Arc::new(SystemClock))
    }

    /// As [`chain`](Self::chain), with the clock that measures the circuit breakers' cool-downs and the cache's
    /// TTL (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// # Errors
    /// As [`chain`](Self::chain).
    pub fn chain_with_clock(&self, clock: Arc<dyn Clock>) -> Result<Cached<FallbackChain>> {
        let r = &self.resilience;
        let guard = |provider: Retrying<Box<dyn Provider>>| -> Arc<dyn Provider> {
            Arc::new(CircuitBreaker::with_clock(
                ConcurrencyLimit::new(provider, r.max_concurrent, r.max_waiting),
                r.breaker_failures,
                r.breaker_cooldown,
                clock.clone(),
            ))
        };
        let mut links: Vec<Arc<dyn Provider>> = Vec::new();
        if let Some(a) = &self.anthropic {
            let mut p = AnthropicProvider::new(a.api_key.clone(), a.model.clone())?;
            if let Some(url) = &a.base_url {
                p = p.with_base_url(url.clone());
            }
            links.push(guard(Retrying::new(Box::new(p), self.retry.clone())));
        }
        if let Some(o) = &self.openai {
            let mut p = OpenAiProvider::new(o.model.clone(), o.api_key.clone())?;
            if let Some(url) = &o.base_url {
                p = p.with_base_url(url.clone());
            }
            links.push(guard(Retrying::new(Box::new(p), self.retry.clone())));
        }
        links.push(Arc::new(OfflineProvider::new()));
        let chain = FallbackChain::new(links);
        info!(
            chain = %chain.name(),
            max_concurrent = r.max_concurrent,
            max_waiting = r.max_waiting,
            breaker_failures = r.breaker_failures,
            breaker_cooldown_s = r.breaker_cooldown.as_secs(),
            cache_size = r.cache_size,
            cache_ttl_s = r.cache_ttl.as_secs(),
            "llm provider chain"
        );
        Ok(Cached::with_clock(chain, r.cache_size, r.cache_ttl, clock))
    }
}

fn parse_number(setting: &str, value: &str, min: u64, max: u64) -> Result<u64> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(LlmError::Config {
            setting: setting.into(),
            reason: format!("`{value}` is not a whole number between {min} and {max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<LlmSettings> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LlmSettings::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn offline_is_the_default_and_always_last() {
        let s = settings(&[]).unwrap();
        assert!(s.anthropic.is_none() && s.openai.is_none());
        assert_eq!(s.chain().unwrap().inner().names(), ["offline"]);
        let s = settings(&[("OPENAI_API_KEY", "sk-x"), ("LLM_MODEL", "gpt-4o-mini")]).unwrap();
        assert_eq!(s.chain().unwrap().inner().names(), ["openai", "offline"]);
        assert_eq!(s.openai.unwrap().base_url, None);
    }

    #[test]
    fn a_claude_key_without_model_is_a_clear_error() {
        let err = settings(&[("ANTHROPIC_API_KEY", "sk-ant-secret-value")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("CLAUDE_MODEL") && text.contains("ANTHROPIC_API_KEY"),
            "{text}"
        );
        assert!(!text.contains("sk-ant-secret-value"));
        let err = settings(&[("OPENAI_BASE_URL", "http://localhost:8000/v1")]).unwrap_err();
        assert!(err.to_string().contains("LLM_MODEL"));
    }

    #[test]
    fn numbers_are_checked_and_empty_means_unset() {
        assert!(
            settings(&[("MAX_TOKENS", "lots")])
                .unwrap_err()
                .to_string()
                .contains("MAX_TOKENS")
        );
        assert!(settings(&[("MAX_RECORDS_PER_BATCH", "0")]).is_err());
        assert!(
            settings(&[("MAX_TOKENS", "100")]).is_err(),
            "too small for any answer"
        );
        let s = settings(&[
            ("MAX_TOKENS", "8192"),
            ("ANTHROPIC_API_KEY", " "),
            ("LLM_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(s.analyzer.max_tokens, 8192);
        assert_eq!(s.analyzer.timeout, Duration::from_secs(5));
        assert!(s.anthropic.is_none());
    }

    #[test]
    fn resilience_settings_have_defaults_and_are_range_checked() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.resilience, ResilienceSettings::default());
        assert_eq!(
            (s.resilience.max_concurrent, s.resilience.max_waiting),
            (4, 64)
        );
        assert_eq!(s.resilience.breaker_failures, 5);
        assert_eq!(s.resilience.breaker_cooldown, Duration::from_secs(60));
        assert_eq!(
            (s.resilience.cache_size, s.resilience.cache_ttl),
            (1_000, Duration::from_secs(3_600))
        );
        let s = settings(&[
            ("LLM_MAX_CONCURRENT", "2"),
            ("LLM_MAX_WAITING", "0"),
            ("LLM_BREAKER_FAILURES", "3"),
            ("LLM_BREAKER_COOLDOWN_SECONDS", "10"),
            ("LLM_CACHE_SIZE", "0"),
            ("LLM_CACHE_TTL_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(
            s.resilience,
            ResilienceSettings {
                max_concurrent: 2,
                max_waiting: 0,
                breaker_failures: 3,
                breaker_cooldown: Duration::from_secs(10),
                cache_size: 0,
                cache_ttl: Duration::from_secs(5),
            }
        );
        for (var, bad) in [
            ("LLM_MAX_CONCURRENT", "0"),
            ("LLM_MAX_CONCURRENT", "1001"),
            ("LLM_MAX_WAITING", "-1"),
            ("LLM_MAX_WAITING", "100001"),
            ("LLM_BREAKER_FAILURES", "0"),
            ("LLM_BREAKER_COOLDOWN_SECONDS", "0"),
            ("LLM_BREAKER_COOLDOWN_SECONDS", "86401"),
            ("LLM_CACHE_SIZE", "many"),
            ("LLM_CACHE_TTL_SECONDS", "0"),
            ("LLM_CACHE_TTL_SECONDS", "1.5"),
        ] {
            match settings(&[(var, bad)]) {
                Err(LlmError::Config { setting, reason }) => {
                    assert_eq!(setting, var);
                    assert!(reason.contains(bad), "{reason}");
                }
                other => panic!("{var}={bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_keys() {
        let s = settings(&[
            ("ANTHROPIC_API_KEY", "sk-ant-0123456789"),
            ("CLAUDE_MODEL", "claude-x"),
            ("OPENAI_API_KEY", "sk-oa-0123456789"),
            ("LLM_MODEL", "m"),
        ])
        .unwrap();
        let shown = format!("{s:?} {:?}", s.chain().unwrap());
        assert!(!shown.contains("0123456789"), "{shown}");
        let shown = format!(
            "{:?}",
            s.chain()
                .unwrap()
                .inner()
                .links()
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
        );
        assert!(!shown.contains("0123456789"));
    }
}
