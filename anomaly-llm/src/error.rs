//! The crate's one error type.

use std::time::Duration;

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

/// One provider's failure inside a fallback chain.
#[derive(Debug)]
pub struct ProviderFailure {
    /// The provider's name.
    pub provider: String,
    /// Its error.
    pub error: Box<LlmError>,
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
}
