//! What the HTTP providers share: sending a JSON POST within a timeout, reading `retry-after`, and turning an
//! error status into the right [`LlmError`].

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::error::{LlmError, Result};

/// An HTTP answer, status and body read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    /// Anthropic's `x-should-retry` header, when present.
    pub(crate) should_retry: Option<bool>,
    pub(crate) body: String,
}

/// Largest answer body read, in bytes (16 MiB); a longer one is a [`LlmError::Protocol`] error. An answer of
/// `max_tokens` tokens is a few hundred kilobytes at most, so only a broken or hostile server sends more.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Longest wait a server's `retry-after` or `retry-after-ms` is read as (larger values are ignored).
const MAX_RETRY_AFTER_SECS: f64 = 1e9;

/// A client with rustls and no per-client timeout (each request sets its own).
pub(crate) fn client(provider: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("anomaly-llm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::Transport {
            provider: provider.to_string(),
            source: Box::new(e.without_url()),
        })
}

/// Posts `body` to `url` with `headers`, waiting at most `timeout` for the whole answer.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    provider: &str,
    url: &str,
    headers: Vec<(&'static str, String)>,
    body: &Value,
    timeout: Duration,
) -> Result<Reply> {
    let mut builder = client.post(url).timeout(timeout).json(body);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let map_err = |e: reqwest::Error| {
        if e.is_timeout() {
            LlmError::Timeout {
                provider: provider.to_string(),
                timeout,
            }
        } else {
            LlmError::Transport {
                provider: provider.to_string(),
                source: Box::new(e.without_url()),
            }
        }
    };
    let response = builder.send().await.map_err(map_err)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let should_retry = response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(map_err)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(LlmError::Protocol {
                provider: provider.to_string(),
                reason: format!(
                    "the answer body is larger than {} MiB",
                    MAX_BODY_BYTES / (1024 * 1024)
                ),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(Reply {
        status,
        retry_after,
        should_retry,
        body,
    })
}

/// The wait a server asked for: `retry-after-ms` (milliseconds), else `retry-after` in seconds or as an HTTP date
/// (relative to `now`; a date in the past is zero).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = get("retry-after")?;
    parse_retry_after(value, now)
}

/// `secs` as a duration when it is a wait a server could mean: finite, not negative, below 10⁹ s (~31 years).
fn seconds(secs: f64) -> Option<Duration> {
    if (0.0..MAX_RETRY_AFTER_SECS).contains(&secs) {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// Parses a `retry-after` value: seconds (integer or decimal) or an IMF-fixdate.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let when = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The error for a non-success status. `kind` and `message` come from the provider's error body (already scrubbed
/// of the key).
pub(crate) fn status_error(
    provider: &str,
    reply: &Reply,
    kind: String,
    message: String,
) -> LlmError {
    let status = reply.status;
    let provider = provider.to_string();
    let overloaded = kind.contains("overloaded");
    let error = match status {
        429 if overloaded => LlmError::Overloaded {
            provider,
            status,
            retry_after: reply.retry_after,
        },
        // OpenAI's "you ran out of credit" is a 429 that no retry can fix.
        429 if kind == "insufficient_quota" => LlmError::Api {
            provider,
            status,
            kind,
            message,
            retryable: false,
        },
        429 => LlmError::RateLimited {
            provider,
            retry_after: reply.retry_after,
        },
        503 | 529 => LlmError::Overloaded {
            provider,
            status,
            retry_after: reply.retry_after,
        },
        _ if overloaded => LlmError::Overloaded {
            provider,
            status,
            retry_after: reply.retry_after,
        },
        _ => LlmError::Api {
            provider,
            status,
            kind,
            message,
            retryable: matches!(status, 408 | 409 | 500..=599),
        },
    };
    match (reply.should_retry, error) {
        (Some(false), e @ (LlmError::RateLimited { .. } | LlmError::Overloaded { .. })) => {
            LlmError::Api {
                provider: match &e {
                    LlmError::RateLimited { provider, .. }
                    | LlmError::Overloaded { provider, .. } => provider.clone(),
                    _ => String::new(),
                },
                status,
                kind: "not_retryable".to_string(),
                message: "the provider said not to retry".to_string(),
                retryable: false,
            }
        }
        (
            Some(flag),
            LlmError::Api {
                provider,
                status,
                kind,
                message,
                ..
            },
        ) => LlmError::Api {
            provider,
            status,
            kind,
            message,
            retryable: flag,
        },
        (_, e) => e,
    }
}

/// Shortens a provider's error message for keeping in an error (bodies can be HTML pages).
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_millis_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "9".parse().unwrap());
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn absurd_waits_are_ignored_not_panicked_on() {
        let now = SystemTime::UNIX_EPOCH;
        for ms in [
            "1e308",
            "1e300",
            "inf",
            "NaN",
            "-5",
            "18446744073709551616000",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after-ms", ms.parse().unwrap());
            assert_eq!(retry_after(&headers, now), None, "{ms}");
            headers.insert("retry-after", "3".parse().unwrap());
            assert_eq!(
                retry_after(&headers, now),
                Some(Duration::from_secs(3)),
                "{ms}: falls back to retry-after"
            );
        }
        for secs in ["1e308", "inf", "1e9", "NaN"] {
            assert_eq!(parse_retry_after(secs, now), None, "{secs}");
        }
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(ms in proptest::num::f64::ANY, secs in proptest::num::f64::ANY) {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after-ms", ms.to_string().parse().unwrap());
            headers.insert("retry-after", secs.to_string().parse().unwrap());
            if let Some(wait) = retry_after(&headers, SystemTime::now()) {
                proptest::prop_assert!(wait.as_secs_f64() < MAX_RETRY_AFTER_SECS);
            }
        }
    }

    fn reply(status: u16, should_retry: Option<bool>) -> Reply {
        Reply {
            status,
            retry_after: Some(Duration::from_secs(2)),
            should_retry,
            body: String::new(),
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let e =
            |status, kind: &str, sr| status_error("p", &reply(status, sr), kind.into(), "m".into());
        assert!(matches!(
            e(429, "rate_limit_error", None),
            LlmError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            e(429, "overloaded_error", None),
            LlmError::Overloaded { status: 429, .. }
        ));
        assert!(!e(429, "insufficient_quota", None).is_retryable());
        assert!(matches!(
            e(529, "overloaded_error", None),
            LlmError::Overloaded { status: 529, .. }
        ));
        assert!(e(500, "api_error", None).is_retryable());
        assert!(!e(400, "invalid_request_error", None).is_retryable());
        assert!(!e(401, "authentication_error", None).is_retryable());
        assert!(!e(500, "api_error", Some(false)).is_retryable());
        assert!(e(400, "x", Some(true)).is_retryable());
        assert!(!e(429, "rate_limit_error", Some(false)).is_retryable());
    }
}
