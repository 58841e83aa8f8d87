#![doc = include_str!("../README.md")]

mod anthropic;
mod breaker;
mod cache;
mod config;
mod error;
mod fallback;
mod http;
pub mod hybrid;
mod limit;
pub mod logs;
mod offline;
mod openai;
pub mod prompt;
mod provider;
pub mod query;
mod request;
mod retry;
mod secret;
pub mod validate;

pub use anthropic::{ANTHROPIC_DEFAULT_BASE_URL, ANTHROPIC_VERSION, AnthropicProvider};
pub use async_trait::async_trait;
pub use breaker::{BreakerState, CircuitBreaker};
pub use cache::{CacheStats, Cached, Clock, ManualClock, SystemClock};
pub use config::{AnthropicSettings, LlmSettings, OpenAiSettings, ResilienceSettings};
pub use error::{LlmError, ProviderFailure, Result, SkipReason};
pub use fallback::FallbackChain;
pub use limit::ConcurrencyLimit;
pub use offline::{OFFLINE_MODEL, OfflineProvider};
pub use openai::{JsonMode, OPENAI_DEFAULT_BASE_URL, OpenAiProvider, TokenLimitField};
pub use provider::Provider;
pub use request::{
    CompletionRequest, CompletionResponse, Message, OutputSchema, Role, SkippedLink, StopReason,
    Task, Usage,
};
pub use retry::{RetryPolicy, Retrying};
pub use secret::Secret;
