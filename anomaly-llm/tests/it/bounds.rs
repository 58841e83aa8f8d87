//! Bounded LLM work: the concurrency limit, the circuit breaker and the cache of the settings-built chain, against
//! a loopback server speaking Claude's wire format. No timing assertions: the server's delay only keeps calls in
//! flight, the breaker's clock is a `ManualClock`, and waits poll for a state with a generous bound.

use std::sync::Arc;
use std::time::Duration;

use anomaly_llm::query::{AnalyzerSettings, QueryAnalyzer, QueryContext, QueryReport};
use anomaly_llm::{
    CircuitBreaker, ConcurrencyLimit, FallbackChain, LlmError, LlmSettings, ManualClock,
    OfflineProvider, Provider, Retrying, SkipReason, SkippedLink,
};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{AnthropicWire, Scripted, Wire, answer_for, fast_retry, orders_context};

/// Settings for Claude at `uri` plus `extra` variables, retrying `retries` times (fast).
fn claude_settings(uri: &str, extra: &[(&str, &str)], retries: u32) -> LlmSettings {
    let mut settings = LlmSettings::from_lookup(|k| match k {
        "ANTHROPIC_API_KEY" => Some("sk-ant-test-key-123".into()),
        "CLAUDE_MODEL" => Some(AnthropicWire::MODEL.into()),
        "ANTHROPIC_BASE_URL" => Some(uri.to_string()),
        _ => extra
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap();
    settings.retry = fast_retry(retries);
    settings
}

async fn answer_with(server: &MockServer, response: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(server)
        .await;
}

fn success() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(AnthropicWire::success(&answer_for(&[0])))
}

fn server_error() -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_json(AnthropicWire::error("api_error", "Internal error"))
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Polls until `server` has received `n` requests (a bound against hanging, not a timing assertion).
async fn until_received(server: &MockServer, n: usize) {
    for _ in 0..2_000 {
        if received(server).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the server never received {n} requests");
}

/// Polls until `check` holds (a bound against hanging, not a timing assertion).
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

fn context() -> QueryContext {
    orders_context(1, "analyst")
}

fn only_batch(report: &QueryReport) -> &anomaly_llm::query::BatchInfo {
    assert_eq!(report.batches.len(), 1);
    &report.batches[0]
}

#[tokio::test]
async fn past_the_limit_calls_wait_and_past_the_queue_the_link_is_skipped_for_offline() {
    const MAX_CONCURRENT: usize = 2;
    const MAX_WAITING: usize = 2;
    let server = MockServer::start().await;
    // Slow enough that nothing answers during the test: the calls stay in flight until aborted.
    answer_with(&server, success().set_delay(Duration::from_secs(600))).await;
    let limited = Arc::new(ConcurrencyLimit::new(
        Retrying::new(AnthropicWire::provider(&server.uri()), fast_retry(0)),
        MAX_CONCURRENT,
        MAX_WAITING,
    ));
    let chain = Arc::new(FallbackChain::new(vec![
        limited.clone() as Arc<dyn Provider>,
        Arc::new(OfflineProvider::new()),
    ]));
    let settings = AnalyzerSettings {
        timeout: Duration::from_secs(3_600),
        ..AnalyzerSettings::default()
    };
    let analyzer = Arc::new(QueryAnalyzer::with_settings(chain.clone(), settings));

    let mut calls = Vec::new();
    let spawn = |calls: &mut Vec<tokio::task::JoinHandle<_>>| {
        let analyzer = analyzer.clone();
        calls.push(tokio::spawn(
            async move { analyzer.analyze(&context()).await },
        ));
    };
    for _ in 0..MAX_CONCURRENT {
        spawn(&mut calls);
    }
    until_received(&server, MAX_CONCURRENT).await;
    assert_eq!(limited.in_flight(), MAX_CONCURRENT);

    // The (N+1)th to (N+M)th calls wait: queued, not sent, not answered.
    for _ in 0..MAX_WAITING {
        spawn(&mut calls);
    }
    until("the callers past the limit are queued", || {
        limited.waiting() == MAX_WAITING
    })
    .await;
    assert_eq!(received(&server).await, MAX_CONCURRENT);
    assert!(calls.iter().all(|c| !c.is_finished()));

    // The (N+M+1)th is refused at once; the chain answers from the offline rules and says the link was skipped.
    let report = analyzer.analyze(&context()).await.unwrap();
    let batch = only_batch(&report);
    assert_eq!(batch.provider, "offline");
    assert_eq!(batch.fallback_from, ["anthropic"]);
    assert_eq!(
        batch.skipped,
        [SkippedLink {
            provider: "anthropic".into(),
            reason: SkipReason::Saturated,
        }]
    );
    assert_eq!(
        received(&server).await,
        MAX_CONCURRENT,
        "the refused call sent nothing"
    );
    let request = analyzer.request(&analyzer.batches(&context())[0]);
    match limited.complete(&request).await {
        Err(LlmError::Saturated {
            in_flight,
            waiting,
            waited,
            ..
        }) => {
            assert_eq!((in_flight, waiting), (MAX_CONCURRENT, MAX_WAITING));
            assert!(waited.is_zero());
        }
        other => panic!("{other:?}"),
    }

    for call in &calls {
        call.abort();
    }
    for call in calls {
        let _ = call.await;
    }
    assert_eq!((limited.in_flight(), limited.waiting()), (0, 0));
}

#[tokio::test]
async fn after_consecutive_failures_the_circuit_opens_then_one_trial_goes_through_after_the_cooldown()
 {
    let server = MockServer::start().await;
    answer_with(&server, server_error()).await;
    let settings = claude_settings(
        &server.uri(),
        &[
            ("LLM_BREAKER_FAILURES", "2"),
            ("LLM_BREAKER_COOLDOWN_SECONDS", "60"),
        ],
        1,
    );
    let clock = Arc::new(ManualClock::new());
    let chain = settings.chain_with_clock(clock.clone()).unwrap();
    let analyzer = QueryAnalyzer::with_settings(chain, settings.analyzer.clone());

    // Two calls fail after their retry (two requests each): two failures, not four.
    for _ in 0..2 {
        let report = analyzer.analyze(&context()).await.unwrap();
        let batch = only_batch(&report);
        assert_eq!(batch.provider, "offline");
        assert_eq!(batch.fallback_from, ["anthropic"]);
        assert!(batch.skipped.is_empty(), "tried and failed, not skipped");
    }
    assert_eq!(received(&server).await, 4);

    // The circuit is open: the next call does not reach the server, and the report says why.
    let report = analyzer.analyze(&context()).await.unwrap();
    let batch = only_batch(&report);
    assert_eq!((batch.provider.as_str(), batch.cached), ("offline", false));
    assert_eq!(batch.fallback_from, ["anthropic"]);
    assert_eq!(
        batch.skipped,
        [SkippedLink {
            provider: "anthropic".into(),
            reason: SkipReason::CircuitOpen,
        }]
    );
    assert_eq!(
        serde_json::to_value(&report).unwrap()["batches"][0]["skipped"],
        json!([{"provider": "anthropic", "reason": "circuit_open"}])
    );
    assert_eq!(received(&server).await, 4);
    clock.advance(Duration::from_secs(59));
    analyzer.analyze(&context()).await.unwrap();
    assert_eq!(received(&server).await, 4, "still cooling down");

    // After the cool-down one trial goes through; it fails, so the circuit opens again.
    clock.advance(Duration::from_secs(1));
    let report = analyzer.analyze(&context()).await.unwrap();
    assert!(
        only_batch(&report).skipped.is_empty(),
        "the trial was tried"
    );
    assert_eq!(received(&server).await, 6);
    let report = analyzer.analyze(&context()).await.unwrap();
    assert_eq!(
        only_batch(&report).skipped[0].reason,
        SkipReason::CircuitOpen
    );
    assert_eq!(received(&server).await, 6);

    // The provider is back: the next trial answers and closes the circuit.
    clock.advance(Duration::from_secs(60));
    answer_with(&server, success()).await;
    let report = analyzer.analyze(&context()).await.unwrap();
    let batch = only_batch(&report);
    assert_eq!(batch.provider, "anthropic");
    assert!(batch.fallback_from.is_empty() && batch.skipped.is_empty());
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn a_chain_with_no_answer_tells_skipped_links_from_failed_ones() {
    let clock = Arc::new(ManualClock::new());
    let failing = Scripted::new(
        "claude",
        vec![Err(LlmError::Timeout {
            provider: "claude".into(),
            timeout: Duration::from_secs(1),
        })],
    );
    let other = Scripted::new(
        "local",
        vec![Err(LlmError::Transport {
            provider: "local".into(),
            source: "connection refused".into(),
        })],
    );
    let chain = FallbackChain::new(vec![
        Arc::new(CircuitBreaker::with_clock(
            failing,
            1,
            Duration::from_secs(60),
            clock,
        )) as Arc<dyn Provider>,
        Arc::new(other),
    ]);
    let request = anomaly_llm::CompletionRequest::new("s", "u");
    let _ = chain.complete(&request).await;
    match chain.complete(&request).await {
        Err(LlmError::AllFailed { failures }) => {
            let seen: Vec<_> = failures
                .iter()
                .map(|f| (f.provider.as_str(), f.skipped()))
                .collect();
            assert_eq!(
                seen,
                [("claude", Some(SkipReason::CircuitOpen)), ("local", None)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_repeated_request_reaches_the_server_once_through_the_settings_chain() {
    let server = MockServer::start().await;
    answer_with(&server, success()).await;
    let settings = claude_settings(&server.uri(), &[], 0);
    let analyzer =
        QueryAnalyzer::with_settings(settings.chain().unwrap(), settings.analyzer.clone());
    let first = analyzer.analyze(&context()).await.unwrap();
    let second = analyzer.analyze(&context()).await.unwrap();
    assert_eq!(received(&server).await, 1);
    let (a, b) = (only_batch(&first), only_batch(&second));
    assert_eq!((a.provider.as_str(), a.cached), ("anthropic", false));
    assert_eq!((b.provider.as_str(), b.cached), ("anthropic", true));
    assert_eq!(first.analysis, second.analysis);
    assert_eq!(analyzer.provider().stats().hits, 1);

    // With the cache off, every request is sent.
    let settings = claude_settings(&server.uri(), &[("LLM_CACHE_SIZE", "0")], 0);
    let analyzer =
        QueryAnalyzer::with_settings(settings.chain().unwrap(), settings.analyzer.clone());
    analyzer.analyze(&context()).await.unwrap();
    analyzer.analyze(&context()).await.unwrap();
    assert_eq!(received(&server).await, 3);
}

#[tokio::test]
async fn an_offline_fallback_answer_is_not_served_from_cache_once_the_provider_is_back() {
    let server = MockServer::start().await;
    answer_with(&server, server_error()).await;
    let settings = claude_settings(&server.uri(), &[], 0);
    let analyzer =
        QueryAnalyzer::with_settings(settings.chain().unwrap(), settings.analyzer.clone());
    let degraded = analyzer.analyze(&context()).await.unwrap();
    assert_eq!(only_batch(&degraded).provider, "offline");
    assert_eq!(analyzer.provider().stats().entries, 0);

    answer_with(&server, success()).await;
    let recovered = analyzer.analyze(&context()).await.unwrap();
    let batch = only_batch(&recovered);
    assert_eq!(
        (batch.provider.as_str(), batch.cached),
        ("anthropic", false)
    );
    assert_eq!(received(&server).await, 1, "the provider was asked again");
    let again = analyzer.analyze(&context()).await.unwrap();
    assert!(only_batch(&again).cached, "the provider's answer is cached");
    assert_eq!(received(&server).await, 1);
}
