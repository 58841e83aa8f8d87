//! The crate's one error type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A boxed foreign error (the HTTP client's, the JSON parser's), kept as a source and never part of the API.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong when asking a model.
///
/// Messages never hold an API key or prompt contents: provider error messages are scrubbed of the key before
/// they are kept, and requests are described by provider name only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// A setting is missing or invalid (for example `CLAUDE_MODEL` unset while `ANTHROPIC_API_KEY` is set).
    #[error("invalid configuration `{setting}`: {reason}")]
    Config {
        /// The environment variable or builder setting.
        setting: String,
        /// Why it is refused.
        reason: String,
    },
    /// The request could not be sent or its answer not read (connection refused, reset, TLS).
    #[error("{provider}: transport error")]
    Transport {
        /// The provider's name.
        provider: String,
        /// The HTTP client's error.
        #[source]
        source: BoxError,
    },
    /// No answer within the request's timeout.
    #[error("{provider}: no answer within {timeout:?}")]
    Timeout {
        /// The provider's name.
        provider: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The provider refused the request with an HTTP error status (other than rate limiting and overload).
    #[error("{provider}: http {status} {kind}: {message}")]
    Api {
        /// The provider's name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The provider's error type (`invalid_request_error`, `authentication_error`, …) or `unknown`.
        kind: String,
        /// The provider's error message, scrubbed of the API key.
        message: String,
        /// Whether the status or the provider says a retry may succeed (5xx, `x-should-retry: true`).
        retryable: bool,
    },
    /// Rate limited (HTTP 429 with a `rate_limit_error`, or a server's plain 429).
    #[error("{provider}: rate limited{}", fmt_retry_after(*.retry_after))]
    RateLimited {
        /// The provider's name.
        provider: String,
        /// How long the provider asked to wait (`retry-after`), if it said.
        retry_after: Option<Duration>,
    },
    /// The provider is overloaded (Anthropic's 529 `overloaded_error`, or a 503).
    #[error("{provider}: overloaded (http {status}){}", fmt_retry_after(*.retry_after))]
    Overloaded {
        /// The provider's name.
        provider: String,
        /// The HTTP status (529, 503, or 429 with an `overloaded_error` body).
        status: u16,
        /// How long the provider asked to wait (`retry-after`), if it said.
        retry_after: Option<Duration>,
    },
    /// The answer stopped at the token limit (`max_tokens`, `length`) before the JSON was complete.
    #[error("{provider}: answer truncated at the token limit ({max_tokens} tokens)")]
    Truncated {
        /// The provider's name.
        provider: String,
        /// The request's `max_tokens`.
        max_tokens: u32,
    },
    /// The model declined to answer (`refusal`, `content_filter`).
    #[error("{provider}: the model refused to answer ({stop_reason})")]
    Refused {
        /// The provider's name.
        provider: String,
        /// The stop reason as the provider spelled it.
        stop_reason: String,
    },
    /// The HTTP body is not the provider's documented response shape.
    #[error("{provider}: unexpected response: {reason}")]
    Protocol {
        /// The provider's name.
        provider: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The model's JSON did not match the expected schema, even after the one repair attempt.
    #[error("{provider}: answer does not match the schema `{schema}`: {}", .errors.join("; "))]
    InvalidOutput {
        /// The provider's name.
        provider: String,
        /// The schema's name.
        schema: String,
        /// What did not match, one entry per problem (JSON pointer and reason), at most a few. The answer's
        /// values (which can be copies of record data) are quoted only when the request allowed logging contents
        /// ([`CompletionRequest::log_contents`](crate::CompletionRequest::log_contents)); the repair prompt
        /// always quotes them.
        errors: Vec<String>,
    },
    /// The provider cannot answer this kind of request (the offline analyser without a task).
    #[error("{provider}: unsupported request: {reason}")]
    Unsupported {
        /// The provider's name.
        provider: String,
        /// Why.
        reason: String,
    },
    /// A [`ConcurrencyLimit`](crate::ConcurrencyLimit)ed link had no free call slot: its queue of waiting callers
    /// was full (the call was refused at once, `waited` zero) or the call waited its request's whole timeout for a
    /// slot. The provider was not asked. Not retryable: a [`FallbackChain`](crate::FallbackChain) moves on to the
    /// next link and reports this one as [skipped](crate::SkipReason::Saturated).
    #[error("{provider}: {}, {in_flight} calls in flight and {waiting} waiting; not asked", fmt_waited(*.waited))]
    Saturated {
        /// The provider's name.
        provider: String,
        /// Calls in flight when the call gave up.
        in_flight: usize,
        /// Callers waiting for a slot when the call gave up.
        waiting: usize,
        /// How long the call waited for a slot (zero when the queue was full).
        waited: Duration,
    },
    /// A [`CircuitBreaker`](crate::CircuitBreaker)'s circuit is open after consecutive failures of its provider:
    /// the provider was not asked. Not retryable: a [`FallbackChain`](crate::FallbackChain) moves on to the next
    /// link and reports this one as [skipped](crate::SkipReason::CircuitOpen).
    #[error("{provider}: circuit open after {failures} consecutive failures, {}; not asked", fmt_retry_in(*.retry_in))]
    CircuitOpen {
        /// The provider's name.
        provider: String,
        /// The consecutive failures that opened the circuit.
        failures: u32,
        /// How long until a trial call is let through; zero while a trial call is under way.
        retry_in: Duration,
    },
    /// Every provider of a fallback chain failed; the last failure is the source.
    #[error("all {} providers failed: {}", .failures.len(), summarize(.failures))]
    AllFailed {
        /// Each provider's failure, in chain order.
        failures: Vec<ProviderFailure>,
    },
    /// An input the analysers cannot take.
    #[error("invalid input `{field}`: {reason}")]
    InvalidInput {
        /// Which input.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

/// One provider's failure inside a fallback chain: tried and failed, or [skipped](ProviderFailure::skipped)
/// without being asked.
#[derive(Debug)]
pub struct ProviderFailure {
    /// The provider's name.
    pub provider: String,
    /// Its error.
    pub error: Box<LlmError>,
}

impl ProviderFailure {
    /// Why the link was skipped without being asked (its circuit open, or no free call slot), or `None` when it
    /// was tried and failed.
    pub fn skipped(&self) -> Option<SkipReason> {
        self.error.skip_reason()
    }
}

/// Why a link of a fallback chain was skipped without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its [`CircuitBreaker`](crate::CircuitBreaker) was open ([`LlmError::CircuitOpen`]).
    CircuitOpen,
    /// Its [`ConcurrencyLimit`](crate::ConcurrencyLimit) had no free slot ([`LlmError::Saturated`]).
    Saturated,
}

impl LlmError {
    /// Whether retrying the same request on the same provider may succeed: rate limits, overload, timeouts,
    /// transport errors and server errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. }
            | LlmError::Overloaded { .. }
            | LlmError::Timeout { .. }
            | LlmError::Transport { .. } => true,
            LlmError::Api { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Why the provider was not asked at all, when this error says it was skipped rather than tried:
    /// [`LlmError::CircuitOpen`] and [`LlmError::Saturated`].
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            LlmError::CircuitOpen { .. } => Some(SkipReason::CircuitOpen),
            LlmError::Saturated { .. } => Some(SkipReason::Saturated),
            _ => None,
        }
    }

    /// How long the provider asked to wait before a retry, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. }
            | LlmError::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of a provider's error answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Api { status, .. } | LlmError::Overloaded { status, .. } => Some(*status),
            LlmError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
}

fn fmt_retry_after(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!(", retry after {d:?}"),
        None => String::new(),
    }
}

fn fmt_waited(waited: Duration) -> String {
    if waited.is_zero() {
        "no free call slot and the queue is full".into()
    } else {
        format!("no free call slot within {waited:?}")
    }
}

fn fmt_retry_in(retry_in: Duration) -> String {
    if retry_in.is_zero() {
        "a trial call is under way".into()
    } else {
        format!("next trial in {retry_in:?}")
    }
}

fn summarize(failures: &[ProviderFailure]) -> String {
    failures
        .iter()
        .map(|f| f.error.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `Result` with [`LlmError`].
pub type Result<T, E = LlmError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_carry_the_values() {
        let e = LlmError::RateLimited {
            provider: "anthropic".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(e.to_string(), "anthropic: rate limited, retry after 3s");
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = LlmError::Api {
            provider: "openai".into(),
            status: 401,
            kind: "invalid_api_key".into(),
            message: "bad key".into(),
            retryable: false,
        };
        assert!(!e.is_retryable());
        assert_eq!(e.status(), Some(401));
        let all = LlmError::AllFailed {
            failures: vec![ProviderFailure {
                provider: "openai".into(),
                error: Box::new(e),
            }],
        };
        assert!(
            all.to_string()
                .starts_with("all 1 providers failed: openai: http 401")
        );
    }

    #[test]
    fn skips_are_typed_not_retryable_and_say_why() {
        let open = LlmError::CircuitOpen {
            provider: "anthropic".into(),
            failures: 5,
            retry_in: Duration::from_secs(30),
        };
        assert_eq!(
            open.to_string(),
            "anthropic: circuit open after 5 consecutive failures, next trial in 30s; not asked"
        );
        let full = LlmError::Saturated {
            provider: "openai".into(),
            in_flight: 4,
            waiting: 64,
            waited: Duration::ZERO,
        };
        assert_eq!(
            full.to_string(),
            "openai: no free call slot and the queue is full, 4 calls in flight and 64 waiting; not asked"
        );
        for e in [&open, &full] {
            assert!(!e.is_retryable());
            assert!(e.status().is_none());
        }
        assert_eq!(open.skip_reason(), Some(SkipReason::CircuitOpen));
        assert_eq!(full.skip_reason(), Some(SkipReason::Saturated));
        let tried = ProviderFailure {
            provider: "x".into(),
            error: Box::new(LlmError::Timeout {
                provider: "x".into(),
                timeout: Duration::from_secs(1),
            }),
        };
        assert_eq!(tried.skipped(), None);
    }
}
