//! Settings from the environment, and the provider chain they describe.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::anthropic::AnthropicProvider;
use crate::error::{LlmError, Result};
use crate::fallback::FallbackChain;
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
/// | `LLM_TIMEOUT_SECONDS` | per-attempt timeout (default 60) |
///
/// Empty variables count as unset. The chain is Claude → the OpenAI-compatible server → offline rules, each
/// present link wrapped in [`Retrying`]; with no key and no server it is the offline rules alone.
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
/// assert_eq!(settings.chain()?.names(), ["anthropic", "openai", "offline"]);
///
/// let none = LlmSettings::from_lookup(|_| None)?;
/// assert_eq!(none.chain()?.names(), ["offline"]);
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
        Ok(LlmSettings {
            anthropic,
            openai,
            analyzer,
            retry: RetryPolicy::default(),
        })
    }

    /// The provider chain: Claude, then the OpenAI-compatible server (each as configured, with retries), then
    /// the offline rules, which are always last.
    ///
    /// # Errors
    /// [`LlmError::Config`] for an empty model; [`LlmError::Transport`] when an HTTP client cannot be built.
    pub fn chain(&self) -> Result<FallbackChain> {
        let mut links: Vec<Arc<dyn Provider>> = Vec::new();
        if let Some(a) = &self.anthropic {
            let mut p = AnthropicProvider::new(a.api_key.clone(), a.model.clone())?;
            if let Some(url) = &a.base_url {
                p = p.with_base_url(url.clone());
            }
            links.push(Arc::new(Retrying::new(p, self.retry.clone())));
        }
        if let Some(o) = &self.openai {
            let mut p = OpenAiProvider::new(o.model.clone(), o.api_key.clone())?;
            if let Some(url) = &o.base_url {
                p = p.with_base_url(url.clone());
            }
            links.push(Arc::new(Retrying::new(p, self.retry.clone())));
        }
        links.push(Arc::new(OfflineProvider::new()));
        let chain = FallbackChain::new(links);
        info!(chain = %chain.name(), "llm provider chain");
        Ok(chain)
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
        assert_eq!(s.chain().unwrap().names(), ["offline"]);
        let s = settings(&[("OPENAI_API_KEY", "sk-x"), ("LLM_MODEL", "gpt-4o-mini")]).unwrap();
        assert_eq!(s.chain().unwrap().names(), ["openai", "offline"]);
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
                .links()
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
        );
        assert!(!shown.contains("0123456789"));
    }
}
