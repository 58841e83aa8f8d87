//! [`FallbackChain`]: try providers in order until one gives a valid answer.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{info, warn};

use crate::error::{LlmError, ProviderFailure, Result};
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse, SkippedLink};

/// Providers tried in order (for example Claude → a local server → offline rules). Each link's answer is
/// validated against the request's schema (with its one repair attempt) before it is accepted; any failure —
/// outage, rate limit after retries, refusal, truncation, invalid JSON — moves on to the next link. The answer
/// names the providers passed over before it in [`fallback_from`](CompletionResponse::fallback_from), and among
/// them, in [`skipped`](CompletionResponse::skipped), those that were not asked at all because their
/// [`CircuitBreaker`](crate::CircuitBreaker) was open or their [`ConcurrencyLimit`](crate::ConcurrencyLimit) had
/// no free slot ([`LlmError::skip_reason`]). When no link answers, [`LlmError::AllFailed`] lists every link's
/// error, and [`ProviderFailure::skipped`] tells skipped links from failed ones.
///
/// ```
/// use std::sync::Arc;
/// use anomaly_llm::{FallbackChain, OfflineProvider, Provider};
///
/// let chain = FallbackChain::new(vec![Arc::new(OfflineProvider::new()) as Arc<dyn Provider>]);
/// assert_eq!(chain.names(), ["offline"]);
/// ```
#[derive(Clone)]
pub struct FallbackChain {
    links: Vec<Arc<dyn Provider>>,
    name: String,
}

impl std::fmt::Debug for FallbackChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackChain")
            .field("links", &self.names())
            .finish()
    }
}

impl FallbackChain {
    /// A chain of `links`, tried in order.
    pub fn new(links: Vec<Arc<dyn Provider>>) -> Self {
        let name = links.iter().map(|l| l.name()).collect::<Vec<_>>().join("→");
        FallbackChain { links, name }
    }

    /// The links' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.links.iter().map(|l| l.name()).collect()
    }

    /// The links.
    pub fn links(&self) -> &[Arc<dyn Provider>] {
        &self.links
    }
}

#[async_trait]
impl Provider for FallbackChain {
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether any link reads the prompt.
    fn reads_prompt(&self) -> bool {
        self.links.iter().any(|l| l.reads_prompt())
    }

    /// # Errors
    /// [`LlmError::AllFailed`] with every link's error when none answered (also for an empty chain).
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let mut failures = Vec::new();
        for link in &self.links {
            match link.complete_validated(request).await {
                Ok(mut response) => {
                    response.fallback_from = failures
                        .iter()
                        .map(|f: &ProviderFailure| f.provider.clone())
                        .chain(std::mem::take(&mut response.fallback_from))
                        .collect();
                    response.skipped = failures
                        .iter()
                        .filter_map(|f| {
                            f.skipped().map(|reason| SkippedLink {
                                provider: f.provider.clone(),
                                reason,
                            })
                        })
                        .chain(std::mem::take(&mut response.skipped))
                        .collect();
                    return Ok(response);
                }
                Err(error) => {
                    if error.skip_reason().is_some() {
                        info!(provider = link.name(), error = %error, "provider skipped; falling back");
                    } else {
                        warn!(provider = link.name(), error = %error, "provider failed; falling back");
                    }
                    failures.push(ProviderFailure {
                        provider: link.name().to_string(),
                        error: Box::new(error),
                    });
                }
            }
        }
        Err(LlmError::AllFailed { failures })
    }
}
