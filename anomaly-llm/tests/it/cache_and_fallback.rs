//! The cache, the fallback chain and the settings-built chain.

use std::sync::Arc;
use std::time::Duration;

use anomaly_llm::query::QueryAnalyzer;
use anomaly_llm::{
    AnthropicProvider, Cached, CompletionRequest, FallbackChain, LlmError, LlmSettings,
    ManualClock, OfflineProvider, OpenAiProvider, Provider, Retrying,
};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{
    AnthropicWire, Scripted, Wire, answer_for, fast_retry, orders_context, prompt_reader,
};

fn request(text: &str) -> CompletionRequest {
    CompletionRequest::new("sys", text)
}

fn rate_limited() -> LlmError {
    LlmError::RateLimited {
        provider: "scripted".into(),
        retry_after: None,
    }
}

#[tokio::test]
async fn answers_are_cached_until_their_ttl() {
    let clock = Arc::new(ManualClock::new());
    let inner = Scripted::new("s", (0..3).map(|i| Ok(json!({"n": i}))).collect());
    let cached = Cached::with_clock(&inner, 10, Duration::from_secs(60), clock.clone());
    let first = cached.complete(&request("a")).await.unwrap();
    let second = cached
        .complete(&request("a").with_timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!((first.cached, second.cached), (false, true));
    assert_eq!(first.json, second.json);
    assert_eq!(
        second.usage.output_tokens, 0,
        "a cached answer costs nothing"
    );
    clock.advance(Duration::from_secs(59));
    assert!(cached.complete(&request("a")).await.unwrap().cached);
    clock.advance(Duration::from_secs(1));
    let third = cached.complete(&request("a")).await.unwrap();
    assert!(!third.cached);
    assert_eq!(third.json, Some(json!({"n": 1})));
    assert_eq!(inner.requests().len(), 2);
    let stats = cached.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 1));
}

#[tokio::test]
async fn a_ttl_past_the_clocks_range_never_expires() {
    let clock = Arc::new(ManualClock::new());
    let inner = Scripted::new("s", vec![Ok(json!({"n": 0})), Ok(json!({"n": 1}))]);
    let cached = Cached::with_clock(&inner, 10, Duration::MAX, clock.clone());
    assert!(!cached.complete(&request("a")).await.unwrap().cached);
    clock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    clock.advance(Duration::MAX);
    assert!(cached.complete(&request("a")).await.unwrap().cached);
    assert_eq!(inner.requests().len(), 1);
}

#[tokio::test]
async fn the_least_recently_used_answer_is_evicted() {
    let inner = Scripted::new("s", (0..10).map(|i| Ok(json!({"n": i}))).collect());
    let cached = Cached::new(&inner, 2, Duration::from_secs(60));
    for text in ["a", "b", "a", "c", "a", "b"] {
        cached.complete(&request(text)).await.unwrap();
    }
    // a, b miss; a hits; c evicts b; a hits; b misses again and evicts c.
    let asked: Vec<String> = inner
        .requests()
        .iter()
        .map(|r| r.messages[0].content.clone())
        .collect();
    assert_eq!(asked, ["a", "b", "c", "b"]);
    assert_eq!(cached.stats().entries, 2);
    cached.clear();
    assert_eq!(cached.stats().entries, 0);
}

#[tokio::test]
async fn degraded_and_invalid_answers_are_not_cached() {
    let ctx = orders_context(1, "analyst");
    let analyzer = QueryAnalyzer::new(prompt_reader());
    let req = analyzer.request(&analyzer.batches(&ctx)[0]);
    let failing = Arc::new(Scripted::new(
        "claude",
        vec![Err(rate_limited()), Err(rate_limited())],
    ));
    let chain = FallbackChain::new(vec![
        failing.clone() as Arc<dyn Provider>,
        Arc::new(OfflineProvider::new()),
    ]);
    let cached = Cached::new(chain, 10, Duration::from_secs(60));
    for _ in 0..2 {
        let r = cached.complete(&req).await.unwrap();
        assert_eq!((r.provider.as_str(), r.cached), ("offline", false));
    }
    assert_eq!(
        failing.requests().len(),
        2,
        "the preferred provider is asked again"
    );

    let invalid = Scripted::new(
        "s",
        vec![
            Ok(json!({"wrong": 1})),
            Ok(json!({"wrong": 2})),
            Ok(answer_for(&[0])),
        ],
    );
    let cached = Cached::new(&invalid, 10, Duration::from_secs(60));
    assert!(matches!(
        cached.complete(&req).await,
        Err(LlmError::InvalidOutput { .. })
    ));
    assert!(!cached.complete(&req).await.unwrap().cached);
    assert!(cached.complete(&req).await.unwrap().cached);
}

#[tokio::test]
async fn a_chain_reports_every_failure_in_order() {
    let a = Scripted::new("a", vec![Err(rate_limited())]);
    let b = Scripted::new(
        "b",
        vec![Err(LlmError::Timeout {
            provider: "b".into(),
            timeout: Duration::from_secs(1),
        })],
    );
    let chain = FallbackChain::new(vec![Arc::new(a), Arc::new(b)]);
    assert_eq!(chain.name(), "a→b");
    match chain.complete(&request("x")).await.unwrap_err() {
        LlmError::AllFailed { failures } => {
            let names: Vec<&str> = failures.iter().map(|f| f.provider.as_str()).collect();
            assert_eq!(names, ["a", "b"]);
            assert!(matches!(*failures[1].error, LlmError::Timeout { .. }));
        }
        other => panic!("{other:?}"),
    }
    let empty = FallbackChain::new(Vec::new());
    assert!(
        matches!(empty.complete(&request("x")).await, Err(LlmError::AllFailed { failures }) if failures.is_empty())
    );
}

#[tokio::test]
async fn retrying_wraps_any_provider() {
    let flaky = Scripted::new(
        "s",
        vec![
            Err(rate_limited()),
            Err(rate_limited()),
            Ok(json!({"ok": true})),
        ],
    );
    let r = Retrying::new(&flaky, fast_retry(2))
        .complete(&request("x"))
        .await
        .unwrap();
    assert_eq!(r.json, Some(json!({"ok": true})));
    assert_eq!(flaky.requests().len(), 3);
}

#[tokio::test]
async fn the_settings_chain_falls_back_from_an_overloaded_claude_to_offline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(529)
                .set_body_json(AnthropicWire::error("overloaded_error", "Overloaded")),
        )
        .mount(&server)
        .await;
    let uri = server.uri();
    let mut settings = LlmSettings::from_lookup(|k| match k {
        "ANTHROPIC_API_KEY" => Some("sk-ant-test-key-123".into()),
        "CLAUDE_MODEL" => Some("claude-test-model".into()),
        "ANTHROPIC_BASE_URL" => Some(uri.clone()),
        "MAX_RECORDS_PER_BATCH" => Some("2".into()),
        _ => None,
    })
    .unwrap();
    settings.retry = fast_retry(1);
    let chain = settings.chain().unwrap();
    assert_eq!(chain.inner().names(), ["anthropic", "offline"]);
    let analyzer = QueryAnalyzer::with_settings(chain, settings.analyzer.clone());
    let report = analyzer
        .analyze(&orders_context(3, "analyst"))
        .await
        .unwrap();
    assert_eq!(
        report.batches.len(),
        2,
        "MAX_RECORDS_PER_BATCH=2 over 3 records"
    );
    assert!(
        report
            .batches
            .iter()
            .all(|b| b.provider == "offline" && b.fallback_from == ["anthropic"])
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        4,
        "two attempts per batch"
    );
    assert!(report.analysis.anomalies_detected);
}

#[test]
fn providers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AnthropicProvider>();
    check::<OpenAiProvider>();
    check::<OfflineProvider>();
    check::<FallbackChain>();
    check::<Cached<OfflineProvider>>();
    check::<Retrying<AnthropicProvider>>();
    check::<QueryAnalyzer<FallbackChain>>();
    check::<LlmError>();
    let _ = AnthropicWire::NAME;
}
