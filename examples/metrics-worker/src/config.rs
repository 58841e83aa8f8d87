//! The worker's settings, read from environment variables with the original pipeline's names.

use std::time::Duration;

use anomaly_core::stream::SeriesParams;
use anomaly_core::{MovingAverageParams, StreamingIsolationForestParams};
use service_kit::{Auth, Env, ServeSettings};

use crate::error::WorkerError;

/// Everything the worker is configured with. [`Config::from_env`] reads the process environment;
/// [`Config::from_lookup`] takes any lookup (tests).
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: `HOST` (default `127.0.0.1`; any other address needs `API_TOKEN` or
    /// `ALLOW_UNAUTHENTICATED=true`), `PORT` (default 8000), `SHUTDOWN_TIMEOUT_SECONDS` (default 10), … : see
    /// [`ServeSettings`].
    pub serve: ServeSettings,
    /// `API_TOKEN`: when set, every request but `/health` and `/ready` must send `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// `NATS_URL` (default `nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// `NATS_SUBJECT_PREFIX` (default `metrics`): metrics arrive on `<prefix>.<series>`, refused messages go to
    /// `<prefix>-dead.<series>`.
    pub subject_prefix: String,
    /// `NATS_STREAM` (default `METRICS`): the JetStream stream over `<prefix>.>`, created when missing.
    pub stream: String,
    /// `NATS_CONSUMER` (default `metrics-worker`): the durable pull consumer's name.
    pub consumer: String,
    /// `NATS_ACK_WAIT_SECONDS` (default 30): how long the server waits for an acknowledgement before it
    /// redelivers a message.
    pub ack_wait: Duration,
    /// `NATS_STREAM_MAX_AGE_SECONDS` (default 86,400, a day; 0 keeps messages forever): how long the stream keeps
    /// a message, set when the worker creates the stream (an existing stream keeps its own limits).
    pub stream_max_age: Duration,
    /// `WORKER_COUNT` (default 1): workers sharing the stream, each owning the series that hash to its index.
    pub worker_count: u32,
    /// `WORKER_INDEX` (default 0, below `WORKER_COUNT`): this worker's share.
    pub worker_index: u32,
    /// `ALERT_WEBHOOK_URL`: when set, each detection is also POSTed there as a Slack-compatible message.
    pub alert_webhook_url: Option<String>,
    /// `ALERT_COOLDOWN_SECONDS` (default 300): least time between two webhook messages of one series.
    pub alert_cooldown: Duration,
    /// `ALERT_WEBHOOK_ATTEMPTS` (default 4): attempts per webhook message (retried on 5xx, 408, 429 and network
    /// errors, 1 s, 2 s, 4 s apart or as `Retry-After` asks).
    pub alert_webhook_attempts: u32,
    /// `PUBLIC_URL` (default `http://HOST:PORT`): where people reach the worker, for the dashboard link in alerts.
    pub public_url: String,
    /// `MA_WINDOW_SIZE` (default 5).
    pub ma_window_size: usize,
    /// `MA_THRESHOLD` (default 20): the absolute deviation from the window mean that flags.
    pub ma_threshold: f64,
    /// `IF_SMOOTHING_ALPHA` (default 0.25): the EMA weight of each new forest score.
    pub if_smoothing_alpha: f64,
    /// `IF_CONTAMINATION` (default 0.1): the adaptive threshold is never below the `1 − contamination` quantile of
    /// recent smoothed scores.
    pub if_contamination: f64,
    /// `IF_BATCH_SIZE` (default 20): points between two refits of a series' forest.
    pub if_batch_size: usize,
    /// `IF_MIN_ANOMALY_CONSEC` (default 3): forest points in a row above the threshold that raise a detection.
    pub if_min_anomaly_consec: usize,
    /// `MAX_SERIES` (default 10,000): series whose detector state is kept in memory (about 500 KiB each once the
    /// forest is grown, its 50 trees dominating); beyond it the least recently seen series is evicted (counted in
    /// `/metrics`) and starts over when it comes back.
    pub max_series: usize,
    /// `DATABASE_URL`; default an SQLite file `metrics_worker.db` under `METRICS_WORKER_DATA` (default `./tmp`),
    /// created if missing. PostgreSQL as `postgres://user:password@host/db`.
    pub database_url: String,
    /// `STORE_TIMEOUT_MS` (default 5,000): how long connecting to the database or waiting for a pooled
    /// connection may take.
    pub store_timeout: Duration,
}

impl Config {
    /// The configuration in the process environment.
    ///
    /// # Errors
    /// [`WorkerError::Config`] naming the variable whose value is unusable.
    pub fn from_env() -> Result<Self, WorkerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration `lookup` describes (empty values count as unset).
    ///
    /// # Errors
    /// [`WorkerError::Config`] naming the variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerError> {
        let env = Env::from_lookup(lookup);
        let serve = ServeSettings::from_env(&env, 8000)?;
        let subject_prefix = env
            .get("NATS_SUBJECT_PREFIX")
            .unwrap_or_else(|| "metrics".into());
        if !crate::message::is_subject_token_path(&subject_prefix) {
            return Err(bad(
                "NATS_SUBJECT_PREFIX",
                format!(
                    "`{subject_prefix}` is not a subject prefix: use letters, digits, `-`, `_` and `.` between tokens"
                ),
            ));
        }
        let stream = env.get("NATS_STREAM").unwrap_or_else(|| "METRICS".into());
        let consumer = env
            .get("NATS_CONSUMER")
            .unwrap_or_else(|| "metrics-worker".into());
        for (var, name) in [("NATS_STREAM", &stream), ("NATS_CONSUMER", &consumer)] {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || name.len() > 200
            {
                return Err(bad(
                    var,
                    format!("`{name}` may hold only letters, digits, `-` and `_` (at most 200)"),
                ));
            }
        }
        let data_dir = env
            .get("METRICS_WORKER_DATA")
            .unwrap_or_else(|| "./tmp".into());
        let database_url = env
            .get("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{data_dir}/metrics_worker.db?mode=rwc"));
        let config = Config {
            serve: serve.clone(),
            api_token: env.get("API_TOKEN"),
            nats_url: env
                .get("NATS_URL")
                .unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            subject_prefix,
            stream,
            consumer,
            ack_wait: env.seconds("NATS_ACK_WAIT_SECONDS", 30, 1, 3_600)?,
            stream_max_age: env.seconds(
                "NATS_STREAM_MAX_AGE_SECONDS",
                86_400,
                0,
                10 * 365 * 86_400,
            )?,
            worker_count: env.number("WORKER_COUNT", 1, 1, 1_024)?,
            worker_index: env.number("WORKER_INDEX", 0, 0, 1_023)?,
            alert_webhook_url: env.get("ALERT_WEBHOOK_URL"),
            alert_cooldown: env.seconds("ALERT_COOLDOWN_SECONDS", 300, 0, 7 * 86_400)?,
            alert_webhook_attempts: env.number("ALERT_WEBHOOK_ATTEMPTS", 4, 1, 20)?,
            public_url: env
                .get("PUBLIC_URL")
                .unwrap_or_else(|| format!("http://{}", serve.addr()))
                .trim_end_matches('/')
                .to_string(),
            ma_window_size: env.number("MA_WINDOW_SIZE", 5, 1, 100_000)?,
            ma_threshold: positive(&env, "MA_THRESHOLD", 20.0)?,
            if_smoothing_alpha: env.parse("IF_SMOOTHING_ALPHA", 0.25)?,
            if_contamination: env.parse("IF_CONTAMINATION", 0.1)?,
            if_batch_size: env.number("IF_BATCH_SIZE", 20, 1, 100_000)?,
            if_min_anomaly_consec: env.number("IF_MIN_ANOMALY_CONSEC", 3, 1, 100_000)?,
            max_series: env.number("MAX_SERIES", 10_000, 1, 10_000_000)?,
            database_url,
            store_timeout: Duration::from_millis(env.number(
                "STORE_TIMEOUT_MS",
                5_000,
                1,
                600_000,
            )?),
        };
        if !(config.if_smoothing_alpha > 0.0 && config.if_smoothing_alpha <= 1.0) {
            return Err(bad("IF_SMOOTHING_ALPHA", "must be in (0, 1]"));
        }
        if !(config.if_contamination > 0.0 && config.if_contamination <= 0.5) {
            return Err(bad("IF_CONTAMINATION", "must be in (0, 0.5]"));
        }
        if config.worker_index >= config.worker_count {
            return Err(bad(
                "WORKER_INDEX",
                format!(
                    "{} must be below WORKER_COUNT ({})",
                    config.worker_index, config.worker_count
                ),
            ));
        }
        if let Some(url) = &config.alert_webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            // The URL is a secret (a Slack webhook's is): never echoed.
            return Err(bad(
                "ALERT_WEBHOOK_URL",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(config)
    }

    /// The detectors' parameters these settings describe.
    pub fn series_params(&self) -> SeriesParams {
        SeriesParams {
            moving_average: MovingAverageParams::new()
                .window(self.ma_window_size)
                .threshold(self.ma_threshold),
            forest: StreamingIsolationForestParams::new()
                .smoothing_alpha(self.if_smoothing_alpha)
                .contamination(self.if_contamination)
                .batch_size(self.if_batch_size),
            min_consecutive: self.if_min_anomaly_consec,
            max_series: self.max_series,
            ..SeriesParams::default()
        }
    }

    /// The token every request but `/health` and `/ready` needs, when `API_TOKEN` is set; browsers sign in at
    /// `/login` with it and then carry the session cookie `metrics_worker_session`.
    pub fn auth(&self) -> Option<Auth> {
        self.api_token
            .as_deref()
            .map(|t| Auth::bearer(t).with_sign_in("metrics_worker_session"))
    }

    /// Refuses to serve beyond loopback without `API_TOKEN` (unless `ALLOW_UNAUTHENTICATED=true`).
    ///
    /// # Errors
    /// [`WorkerError::Config`].
    pub fn check_exposure(&self) -> Result<(), WorkerError> {
        Ok(self
            .serve
            .check_exposure(self.auth().as_ref(), "API_TOKEN")?)
    }

    /// The durable consumer of this worker: `NATS_CONSUMER`, or `<NATS_CONSUMER>-<index>-of-<count>` when
    /// `WORKER_COUNT` is above 1 (so a change of layout starts consumers of its own).
    pub fn consumer_name(&self) -> String {
        if self.worker_count == 1 {
            self.consumer.clone()
        } else {
            format!(
                "{}-{}-of-{}",
                self.consumer, self.worker_index, self.worker_count
            )
        }
    }

    /// Whether this worker handles the series whose subject tail is `series` (see
    /// [`partition`](crate::message::partition)).
    pub fn owns(&self, series: &str) -> bool {
        self.worker_count == 1
            || crate::message::partition(series, self.worker_count) == self.worker_index
    }

    /// The subject detections of `series` are announced on: `<prefix>-alerts.<series>`.
    pub fn alert_subject(&self, series: &str) -> String {
        format!("{}-alerts.{series}", self.subject_prefix)
    }

    /// The subjects the stream holds: `<prefix>.>`.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// The subject a metric of `series` is published on.
    pub fn subject(&self, series: &str) -> String {
        format!("{}.{series}", self.subject_prefix)
    }

    /// The dead-letter subject of a refused message: `<prefix>-dead.<series>` (`unknown` when the message names
    /// no usable series).
    pub fn dead_letter_subject(&self, series: Option<&str>) -> String {
        format!(
            "{}-dead.{}",
            self.subject_prefix,
            series.unwrap_or("unknown")
        )
    }
}

fn bad(variable: &str, reason: impl Into<String>) -> WorkerError {
    // The kit's constructor is private to it; its `Config` error is built through `Env`'s own message format.
    WorkerError::Config(service_kit::KitError::Config {
        variable: variable.into(),
        reason: reason.into(),
    })
}

fn positive(env: &Env<'_>, name: &str, default: f64) -> Result<f64, WorkerError> {
    let v: f64 = env.parse(name, default)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(bad(name, format!("`{v}` must be a finite number above 0")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, WorkerError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_the_original_ones() {
        let c = config(&[]).unwrap();
        assert_eq!(c.serve.addr().to_string(), "127.0.0.1:8000");
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(
            (c.subject_prefix.as_str(), c.stream.as_str()),
            ("metrics", "METRICS")
        );
        assert_eq!((c.ma_window_size, c.ma_threshold), (5, 20.0));
        assert_eq!((c.if_smoothing_alpha, c.if_contamination), (0.25, 0.1));
        assert_eq!((c.if_batch_size, c.if_min_anomaly_consec), (20, 3));
        assert_eq!(c.max_series, 10_000);
        assert_eq!(c.database_url, "sqlite://./tmp/metrics_worker.db?mode=rwc");
        assert_eq!(c.stream_subjects(), "metrics.>");
        assert_eq!(c.dead_letter_subject(None), "metrics-dead.unknown");
        assert_eq!(c.alert_subject("cpu.a"), "metrics-alerts.cpu.a");
        assert_eq!(c.consumer_name(), "metrics-worker");
        assert_eq!(c.public_url, "http://127.0.0.1:8000");
        assert_eq!(c.stream_max_age, Duration::from_secs(86_400));
        assert!(c.owns("anything") && c.alert_webhook_url.is_none());
        assert!(c.check_exposure().is_ok());
        anomaly_core::stream::SeriesDetectors::new(c.series_params()).unwrap();
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("MA_WINDOW_SIZE", "0"),
            ("MA_THRESHOLD", "-1"),
            ("MA_THRESHOLD", "NaN"),
            ("IF_SMOOTHING_ALPHA", "0"),
            ("IF_CONTAMINATION", "0.7"),
            ("IF_BATCH_SIZE", "many"),
            ("IF_MIN_ANOMALY_CONSEC", "0"),
            ("MAX_SERIES", "0"),
            ("NATS_SUBJECT_PREFIX", "a b"),
            ("NATS_SUBJECT_PREFIX", "metrics.>"),
            ("NATS_STREAM", "A.B"),
            ("NATS_ACK_WAIT_SECONDS", "0"),
            ("WORKER_INDEX", "1"),
            ("WORKER_COUNT", "0"),
            ("ALERT_WEBHOOK_URL", "hooks.slack.com/x"),
            ("PORT", "x"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn workers_split_the_series_between_them() {
        let layout: Vec<Config> = (0..3)
            .map(|i| config(&[("WORKER_COUNT", "3"), ("WORKER_INDEX", &i.to_string())]).unwrap())
            .collect();
        assert_eq!(layout[2].consumer_name(), "metrics-worker-2-of-3");
        let mut per_worker = [0; 3];
        for n in 0..3_000 {
            let series = format!("cpu.host-{n}");
            let owners: Vec<usize> = (0..3).filter(|&i| layout[i].owns(&series)).collect();
            assert_eq!(owners.len(), 1, "{series}: exactly one owner");
            per_worker[owners[0]] += 1;
        }
        assert!(
            per_worker.iter().all(|&n| (800..1_200).contains(&n)),
            "{per_worker:?}"
        );
    }

    #[test]
    fn beyond_loopback_needs_api_token() {
        let open = config(&[("HOST", "0.0.0.0")]).unwrap();
        assert!(
            open.check_exposure()
                .unwrap_err()
                .to_string()
                .contains("API_TOKEN")
        );
        assert!(
            config(&[("HOST", "0.0.0.0"), ("API_TOKEN", "t")])
                .unwrap()
                .check_exposure()
                .is_ok()
        );
    }
}
