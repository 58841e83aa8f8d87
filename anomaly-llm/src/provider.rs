//! The [`Provider`] trait: one async method that turns a request into an answer.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::request::{CompletionRequest, CompletionResponse};

/// Something that answers completion requests: an HTTP API, a local server, a rule engine, or a wrapper that adds
/// retries ([`Retrying`](crate::Retrying)), a fallback chain ([`FallbackChain`](crate::FallbackChain)) or a cache
/// ([`Cached`](crate::Cached)).
///
/// Implementations make one attempt per [`complete`](Provider::complete) call within the request's timeout and
/// report failures as typed [`LlmError`](crate::LlmError)s; retrying, validating and falling back are the
/// wrappers' job. Implementations are `Send + Sync` and can be shared behind `Arc`.
///
/// The one exception is [`OpenAiProvider`](crate::OpenAiProvider): when a server says it does not support the
/// structured-output format asked, the same call asks again at once with a weaker one, so a call can send up to
/// three requests (each within the timeout). The step is remembered, so later calls send one.
///
/// ```
/// use anomaly_llm::{async_trait, CompletionRequest, CompletionResponse, Provider, Result, StopReason};
/// use serde_json::json;
///
/// /// Always says the batch is fine (a test double).
/// struct Calm;
///
/// #[async_trait]
/// impl Provider for Calm {
///     fn name(&self) -> &str {
///         "calm"
///     }
///     async fn complete(&self, _request: &CompletionRequest) -> Result<CompletionResponse> {
///         Ok(CompletionResponse::new("calm", "rules", Some(json!({"ok": true})), "", StopReason::EndTurn))
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let answer = Calm.complete(&CompletionRequest::new("system", "user")).await?;
/// assert_eq!(answer.json, Some(json!({"ok": true})));
/// # Ok::<(), anomaly_llm::LlmError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Provider: Send + Sync {
    /// A short name for logs, errors and provenance (`anthropic`, `openai`, `offline`, …).
    fn name(&self) -> &str;

    /// Sends one request and returns the answer.
    ///
    /// # Errors
    /// Any [`LlmError`](crate::LlmError): transport, timeout, HTTP status, truncation, refusal, protocol.
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse>;

    /// Whether the provider reads the rendered prompt (true for every model). A provider that answers from the
    /// request's [`Task`](crate::Task) alone, as the offline rules do, says false, and the analysers then skip
    /// rendering prompts and budgeting tokens for it (batches still hold at most `max_records_per_batch` items).
    fn reads_prompt(&self) -> bool {
        true
    }

    /// [`complete`](Provider::complete), then checks the answer against the request's schema, asking once for a
    /// repair when it does not match (see [`complete_validated`](crate::validate::complete_validated)).
    ///
    /// # Errors
    /// As `complete`, and [`LlmError::InvalidOutput`](crate::LlmError::InvalidOutput) when the repaired answer
    /// still does not match.
    async fn complete_validated(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        crate::validate::complete_validated(self, request).await
    }
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: Provider + ?Sized> Provider for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn reads_prompt(&self) -> bool {
                (**self).reads_prompt()
            }
            async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
                (**self).complete(request).await
            }
            async fn complete_validated(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
                (**self).complete_validated(request).await
            }
        }
    )*};
}

forward!(&T, Box<T>, Arc<T>);
