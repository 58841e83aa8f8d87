//! `Retrying` on tokio's paused clock: what it waits for, measured on the virtual clock.

use std::time::Duration;

use anomaly_llm::{CompletionRequest, LlmError, Provider, RetryPolicy, Retrying};
use serde_json::json;
use tokio::time::Instant;

use crate::common::Scripted;

fn limited(retry_after: Option<Duration>) -> LlmError {
    LlmError::RateLimited {
        provider: "claude".into(),
        retry_after,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(60),
        seed: Some(1),
    }
}

#[tokio::test(start_paused = true)]
async fn the_servers_retry_after_is_waited_for() {
    let provider = Retrying::new(
        Scripted::new(
            "claude",
            vec![
                Err(limited(Some(Duration::from_secs(5)))),
                Ok(json!({"ok": true})),
            ],
        ),
        policy(),
    );
    let started = Instant::now();
    let answer = provider
        .complete(&CompletionRequest::new("s", "u"))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.json, Some(json!({"ok": true})));
    assert_eq!(provider.inner().requests().len(), 2);
    assert!(waited >= Duration::from_secs(5), "waited {waited:?}");
    assert!(
        waited < Duration::from_secs(6),
        "the retry-after replaces the backoff: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_retry_after_the_backoff_is_waited_for() {
    let provider = Retrying::new(
        Scripted::new("claude", vec![Err(limited(None)), Ok(json!({"ok": true}))]),
        policy(),
    );
    let started = Instant::now();
    provider
        .complete(&CompletionRequest::new("s", "u"))
        .await
        .unwrap();
    let waited = started.elapsed();
    // Equal jitter on the first retry: between half the base delay and the base delay.
    assert!(
        (Duration::from_millis(5)..=Duration::from_millis(10)).contains(&waited),
        "waited {waited:?}"
    );
}
