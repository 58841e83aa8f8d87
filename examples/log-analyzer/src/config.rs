//! The service's settings, from environment variables.

use std::time::Duration;

use anomaly_core::logs::{DrainParams, LogDetectorParams};
use service_kit::{Auth, Env, KitError, ServeSettings};

use crate::error::AnalyzerError;

/// Everything the service is configured with. [`Config::from_env`] reads the process environment;
/// [`Config::from_lookup`] takes any lookup (tests).
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: `HOST` (default `127.0.0.1`; any other address needs `API_TOKEN` or
    /// `ALLOW_UNAUTHENTICATED=true`), `PORT` (default 5000, the original's), `MAX_REQUEST_BYTES`,
    /// `REQUEST_TIMEOUT_SECONDS`, `SHUTDOWN_TIMEOUT_SECONDS`, … : see [`ServeSettings`].
    pub serve: ServeSettings,
    /// `API_TOKEN`: when set, every request but `/health` and `/ready` must send `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// `ANOMALY_THRESHOLD` (default 0.7, the original's): a line is an anomaly when its `anomaly_score` is above it.
    pub threshold: f64,
    /// `MAX_LINE_BYTES` (default 65,536): longer `log_text` is refused.
    pub max_line_bytes: usize,
    /// `MAX_BATCH_LINES` (default 10,000): longer `/analyze-batch` arrays are refused.
    pub max_batch_lines: usize,
    /// `MAX_TEMPLATES` (default 10,000): templates kept; beyond it the least recently matched is forgotten. Memory
    /// is bounded by it however many distinct lines arrive: per template at most 128 tokens of at most 64 bytes
    /// (longer ones are kept as `<LONG>`) and 8 parameter slots of 16 hashed values, about 10 KiB, so about
    /// 100 MiB at the default in the worst case (a few hundred bytes per template for usual lines).
    pub max_templates: usize,
    /// `WINDOW_SECONDS` (default 3,600): the window in which bursts of a template are counted.
    pub window_seconds: f64,
    /// `DATABASE_URL` (default `sqlite://<LOG_ANALYZER_DATA>/log_analyzer.db?mode=rwc`, `LOG_ANALYZER_DATA`
    /// default `./tmp`): where the detector's state and the flagged lines are kept.
    pub database_url: String,
    /// `STORE_TIMEOUT_MS` (default 5,000): how long connecting to the database may take.
    pub store_timeout: Duration,
    /// `STATE_KEY` (default `log-analyzer`): the key of the detector's state and detections in the store, so
    /// several analyzers can share one database.
    pub state_key: String,
    /// `CHECKPOINT_SECONDS` (default 30): how often the detector's state is saved when it changed (and always at
    /// shutdown).
    pub checkpoint_every: Duration,
    /// `SECOND_OPINION` (default `true`): flagged lines also get an assessment through `anomaly-llm` (offline
    /// rules unless `ANTHROPIC_API_KEY` or `OPENAI_BASE_URL` configure a model; see that crate's settings).
    pub second_opinion: bool,
    /// `SECOND_OPINION_TIMEOUT_MS` (default 2,000): how long a request waits for the second opinion before
    /// answering without it.
    pub second_opinion_timeout: Duration,
}

impl Config {
    /// The configuration in the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, AnalyzerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration `lookup` describes (empty values count as unset).
    ///
    /// # Errors
    /// [`AnalyzerError::Config`] naming the variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AnalyzerError> {
        let env = Env::from_lookup(lookup);
        let serve = ServeSettings::from_env(&env, 5000)?;
        let threshold: f64 = env.parse("ANOMALY_THRESHOLD", 0.7)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(bad(
                "ANOMALY_THRESHOLD",
                format!("{threshold} is not in 0..=1"),
            ));
        }
        let window_seconds: f64 = env.number("WINDOW_SECONDS", 3_600, 1, 30 * 86_400)? as f64;
        let data_dir = env
            .get("LOG_ANALYZER_DATA")
            .unwrap_or_else(|| "./tmp".into());
        let state_key = env
            .get("STATE_KEY")
            .unwrap_or_else(|| "log-analyzer".into());
        if state_key.len() > 200 {
            return Err(bad("STATE_KEY", "at most 200 bytes"));
        }
        Ok(Config {
            api_token: env.get("API_TOKEN"),
            threshold,
            max_line_bytes: env.number("MAX_LINE_BYTES", 65_536, 16, 16 << 20)?,
            max_batch_lines: env.number("MAX_BATCH_LINES", 10_000, 1, 1_000_000)?,
            max_templates: env.number("MAX_TEMPLATES", 10_000, 1, 1_000_000)?,
            window_seconds,
            database_url: env
                .get("DATABASE_URL")
                .unwrap_or_else(|| format!("sqlite://{data_dir}/log_analyzer.db?mode=rwc")),
            store_timeout: Duration::from_millis(env.number(
                "STORE_TIMEOUT_MS",
                5_000,
                1,
                600_000,
            )?),
            state_key,
            checkpoint_every: env.seconds("CHECKPOINT_SECONDS", 30, 1, 86_400)?,
            second_opinion: env.get("SECOND_OPINION").is_none() || env.flag("SECOND_OPINION")?,
            second_opinion_timeout: Duration::from_millis(env.number(
                "SECOND_OPINION_TIMEOUT_MS",
                2_000,
                1,
                600_000,
            )?),
            serve,
        })
    }

    /// The detector's settings.
    pub fn detector_params(&self) -> LogDetectorParams {
        LogDetectorParams {
            drain: DrainParams {
                max_templates: Some(self.max_templates),
                ..DrainParams::default()
            },
            window_seconds: self.window_seconds,
            ..LogDetectorParams::default()
        }
    }

    /// The bearer-token check, when `API_TOKEN` is set.
    pub fn auth(&self) -> Option<Auth> {
        self.api_token
            .as_deref()
            .map(|t| Auth::bearer(t).with_sign_in("log_analyzer_session"))
    }

    /// Refuses to serve beyond loopback without `API_TOKEN` (unless `ALLOW_UNAUTHENTICATED=true`).
    ///
    /// # Errors
    /// [`AnalyzerError::Config`].
    pub fn check_exposure(&self) -> Result<(), AnalyzerError> {
        Ok(self
            .serve
            .check_exposure(self.auth().as_ref(), "API_TOKEN")?)
    }
}

fn bad(variable: &str, reason: impl Into<String>) -> AnalyzerError {
    AnalyzerError::Config(KitError::Config {
        variable: variable.into(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, AnalyzerError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = config(&[]).unwrap();
        assert_eq!(c.serve.addr().to_string(), "127.0.0.1:5000");
        assert_eq!(c.threshold, 0.7);
        assert_eq!(c.database_url, "sqlite://./tmp/log_analyzer.db?mode=rwc");
        assert!(c.second_opinion);
        assert!(c.check_exposure().is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("ANOMALY_THRESHOLD", "1.5"),
            ("ANOMALY_THRESHOLD", "x"),
            ("MAX_BATCH_LINES", "0"),
            ("SECOND_OPINION", "maybe"),
        ] {
            let e = config(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        let e = config(&[("HOST", "0.0.0.0")])
            .unwrap()
            .check_exposure()
            .unwrap_err()
            .to_string();
        assert!(e.contains("API_TOKEN"), "{e}");
    }
}
