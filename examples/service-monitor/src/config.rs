//! The monitor's settings, from environment variables (the original's names where it had them).

use std::path::PathBuf;
use std::time::Duration;

use service_kit::{Auth, Env, KitError, ServeSettings};

use crate::elastic::ElasticSettings;
use crate::error::{MonitorError, Result};
use crate::fields::Fields;

/// Everything the monitor is configured with. [`Config::from_env`] reads the process environment;
/// [`Config::from_lookup`] takes any lookup (tests).
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: `HOST` (default `127.0.0.1`; any other address needs `API_TOKEN` or
    /// `ALLOW_UNAUTHENTICATED=true`), `PORT` (default 8081), `SHUTDOWN_TIMEOUT_SECONDS`, … : see
    /// [`ServeSettings`].
    pub serve: ServeSettings,
    /// `API_TOKEN`: when set, every request but `/health` and `/ready` must send `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// `ES_URL` and the rest of the cluster's settings; `None` without `ES_URL` (files and the store only).
    pub elastic: Option<ElasticSettings>,
    /// `ES_INDEX` (default `api-logs-*`): the indices (a pattern or a comma-separated list) the API logs are in.
    pub index: String,
    /// `ES_ANOMALY_INDEX` (default `api-anomalies`): where anomalies are written back.
    pub anomaly_index: String,
    /// The event field names: `TIMESTAMP_FIELD` (`@timestamp`), `SERVICE_FIELD` (`service`), `ENDPOINT_FIELD`
    /// (`endpoint`), `METHOD_FIELD` (`method`), `STATUS_FIELD` (`status`), `LATENCY_FIELD` (`response_time_ms`).
    pub fields: Fields,
    /// `WINDOW_SECONDS` (default 60): the width of a window.
    pub window_seconds: u64,
    /// `ALLOWED_LATENESS_SECONDS` (default 30): how long after a window ends its events may still arrive. A
    /// monitor reading a cluster scores a window once the clock is this far past its end; reading a file, once an
    /// event this far past its end has been read. Events that come later are counted as late, not scored.
    pub lateness_seconds: u64,
    /// `MONITOR_INTERVAL_SECONDS` (default 60): how often the monitor reads new events.
    pub monitor_interval: Duration,
    /// `MAX_BACKLOG_SECONDS` (default 86,400): the furthest back a monitor starts reading a cluster when its last
    /// scored window is older (a monitor stopped for a week does not read the whole week before it catches up).
    pub max_backlog_seconds: u64,
    /// `TRAIN_LOOKBACK_HOURS` (default 24): what `collect` (and so `all`) reads from a cluster.
    pub train_lookback_hours: u64,
    /// `MIN_TRAINING_WINDOWS` (default 1,440, a day of one-minute windows, so that a model has seen the daily
    /// cycle): windows of a service before its first model while monitoring. `train` makes a model from a quarter
    /// of it.
    pub min_training_windows: usize,
    /// `RETRAIN_EVERY_WINDOWS` (default 360): new normal windows between two retrains of a service.
    pub retrain_every_windows: usize,
    /// `DRIFT_WINDOWS` (default 1,440, a day of one-minute windows): the windows a drift check compares with the
    /// training data; a change that lasts about this long retrains the model on it (flagged windows are otherwise
    /// never learnt). Shorter than the traffic's daily cycle, it would see the time of day as drift. Drift is
    /// watched once a model is trained on two such spans.
    pub drift_windows: usize,
    /// `SENSITIVITY` (default 0.003): the share of training windows the model's threshold leaves above it.
    pub sensitivity: f64,
    /// `WEEKDAY_FEATURES` (`auto`, `on` or `off`; default `auto`): whether windows carry their day of week.
    /// `auto` turns it on when `train` reads data spanning a week or more; over less, the day of week would make
    /// every hour of a new day look unseen.
    pub weekday_features: Option<bool>,
    /// `NEW_VALUE_WINDOWS` (default 5): windows in which an endpoint or method a service never showed counts as
    /// new.
    pub new_value_windows: u64,
    /// `ALERT_MIN_CONSECUTIVE` (default 2): anomalous windows in a row of a service that raise an alert.
    pub alert_min_consecutive: usize,
    /// `ALERT_COOLDOWN_WINDOWS` (default 15): normal windows in a row that end an incident (no second alert
    /// before).
    pub alert_cooldown_windows: usize,
    /// `ALERT_WEBHOOK_URL`: when set, each alert is also POSTed there as a Slack-compatible message.
    pub alert_webhook_url: Option<String>,
    /// `ALERT_WEBHOOK_ATTEMPTS` (default 4): attempts per webhook message (retried on 5xx, 408, 429 and network
    /// errors).
    pub alert_webhook_attempts: u32,
    /// `MAX_SERVICES` (default 10,000): services with a model and alert state in memory (the engine evicts the
    /// least recently used and restores it from the store).
    pub max_services: usize,
    /// `DATABASE_URL`: the store of models, history, progress and (without a cluster) anomalies; default an
    /// SQLite file `service-monitor.db` under `DATA_DIR`.
    pub database_url: String,
    /// `DATA_DIR` (default `./service-monitor-data`): collected events, the demo's traffic and the report.
    pub data_dir: PathBuf,
    /// `STORE_TIMEOUT_MS` (default 5,000): how long connecting to the database may take.
    pub store_timeout: Duration,
}

impl Config {
    /// The configuration in the process environment.
    ///
    /// # Errors
    /// [`MonitorError::Config`] naming the variable whose value is unusable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration `lookup` describes (empty values count as unset).
    ///
    /// # Errors
    /// [`MonitorError::Config`] naming the variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Env::from_lookup(lookup);
        let serve = ServeSettings::from_env(&env, 8081)?;
        let elastic = match env.get("ES_URL") {
            None => None,
            Some(url) => Some(ElasticSettings {
                url,
                api_key: env.get("ES_API_KEY"),
                username: env.get("ES_USERNAME"),
                password: env.get("ES_PASSWORD"),
                ca_cert: env.get("ES_CA_CERT").map(PathBuf::from),
                timeout: env.seconds("ES_TIMEOUT_SECONDS", 30, 1, 3_600)?,
                attempts: env.number("ES_ATTEMPTS", 5, 1, 20)?,
                page_size: env.number("ES_PAGE_SIZE", 5_000, 1, 10_000)?,
                first_retry: Duration::from_millis(env.number(
                    "ES_FIRST_RETRY_MS",
                    500,
                    1,
                    60_000,
                )?),
            }),
        };
        if let Some(e) = &elastic {
            e.check().map_err(|reason| bad("ES_URL", reason))?;
            if e.username.is_some() != e.password.is_some() {
                return Err(bad(
                    "ES_USERNAME",
                    "ES_USERNAME and ES_PASSWORD go together",
                ));
            }
        }
        let field = |name: &str, default: &str| env.get(name).unwrap_or_else(|| default.into());
        let fields = Fields {
            timestamp: field("TIMESTAMP_FIELD", "@timestamp"),
            service: field("SERVICE_FIELD", "service"),
            endpoint: field("ENDPOINT_FIELD", "endpoint"),
            method: field("METHOD_FIELD", "method"),
            status: field("STATUS_FIELD", "status"),
            latency: field("LATENCY_FIELD", "response_time_ms"),
        };
        let data_dir = PathBuf::from(
            env.get("DATA_DIR")
                .unwrap_or_else(|| "./service-monitor-data".into()),
        );
        let database_url = env.get("DATABASE_URL").unwrap_or_else(|| {
            format!(
                "sqlite://{}/service-monitor.db?mode=rwc",
                data_dir.display()
            )
        });
        let sensitivity: f64 = env.parse("SENSITIVITY", 0.003)?;
        if !(sensitivity > 0.0 && sensitivity <= 0.5) {
            return Err(bad("SENSITIVITY", "must be in (0, 0.5]"));
        }
        let config = Config {
            serve,
            api_token: env.get("API_TOKEN"),
            elastic,
            index: env.get("ES_INDEX").unwrap_or_else(|| "api-logs-*".into()),
            anomaly_index: env
                .get("ES_ANOMALY_INDEX")
                .unwrap_or_else(|| "api-anomalies".into()),
            fields,
            window_seconds: env.number("WINDOW_SECONDS", 60, 1, 86_400)?,
            lateness_seconds: env.number("ALLOWED_LATENESS_SECONDS", 30, 0, 86_400)?,
            monitor_interval: env.seconds("MONITOR_INTERVAL_SECONDS", 60, 1, 86_400)?,
            max_backlog_seconds: env.number("MAX_BACKLOG_SECONDS", 86_400, 60, 365 * 86_400)?,
            train_lookback_hours: env.number("TRAIN_LOOKBACK_HOURS", 24, 1, 24 * 366)?,
            min_training_windows: env.number("MIN_TRAINING_WINDOWS", 1_440, 8, 1_000_000)?,
            retrain_every_windows: env.number("RETRAIN_EVERY_WINDOWS", 360, 1, 1_000_000)?,
            drift_windows: env.number("DRIFT_WINDOWS", 1_440, 20, 1_000_000)?,
            sensitivity,
            weekday_features: match env.get("WEEKDAY_FEATURES").as_deref() {
                None | Some("auto") => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => {
                    return Err(bad(
                        "WEEKDAY_FEATURES",
                        format!("`{other}` is not auto, on or off"),
                    ));
                }
            },
            new_value_windows: env.number("NEW_VALUE_WINDOWS", 5, 1, 1_000)?,
            alert_min_consecutive: env.number("ALERT_MIN_CONSECUTIVE", 2, 1, 1_000)?,
            alert_cooldown_windows: env.number("ALERT_COOLDOWN_WINDOWS", 15, 0, 100_000)?,
            alert_webhook_url: env.get("ALERT_WEBHOOK_URL"),
            alert_webhook_attempts: env.number("ALERT_WEBHOOK_ATTEMPTS", 4, 1, 20)?,
            max_services: env.number("MAX_SERVICES", 10_000, 1, 10_000_000)?,
            database_url,
            data_dir,
            store_timeout: Duration::from_millis(env.number(
                "STORE_TIMEOUT_MS",
                5_000,
                1,
                600_000,
            )?),
        };
        for (var, name) in [
            ("TIMESTAMP_FIELD", &config.fields.timestamp),
            ("SERVICE_FIELD", &config.fields.service),
            ("ENDPOINT_FIELD", &config.fields.endpoint),
            ("METHOD_FIELD", &config.fields.method),
            ("STATUS_FIELD", &config.fields.status),
            ("LATENCY_FIELD", &config.fields.latency),
        ] {
            if name.chars().any(|c| c.is_control() || c == '"') {
                return Err(bad(
                    var,
                    "a field name cannot hold quotes or control characters",
                ));
            }
        }
        if config
            .anomaly_index
            .chars()
            .any(|c| c.is_ascii_uppercase() || r#"\/*?"<>| ,#:"#.contains(c))
            || config.anomaly_index.starts_with(['-', '_', '+'])
        {
            return Err(bad(
                "ES_ANOMALY_INDEX",
                "not a valid index name (lowercase, none of \\ / * ? \" < > | space , # :)",
            ));
        }
        if config.index.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("ES_INDEX", "an index pattern cannot hold spaces"));
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

    /// The bearer token every request must carry, if `API_TOKEN` is set.
    pub fn auth(&self) -> Option<Auth> {
        self.api_token.as_ref().map(Auth::bearer)
    }

    /// Refuses to listen beyond loopback without `API_TOKEN` (unless `ALLOW_UNAUTHENTICATED=true`).
    ///
    /// # Errors
    /// [`MonitorError::Config`] when the service would serve anyone.
    pub fn check_exposure(&self) -> Result<()> {
        Ok(self
            .serve
            .check_exposure(self.auth().as_ref(), "API_TOKEN")?)
    }
}

fn bad(variable: &str, reason: impl Into<String>) -> MonitorError {
    MonitorError::Config(KitError::Config {
        variable: variable.into(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = config(&[]).unwrap();
        assert_eq!(c.serve.port, 8081);
        assert_eq!(
            (c.index.as_str(), c.anomaly_index.as_str()),
            ("api-logs-*", "api-anomalies")
        );
        assert_eq!(c.fields.timestamp, "@timestamp");
        assert_eq!(c.window_seconds, 60);
        assert_eq!(c.monitor_interval, Duration::from_secs(60));
        assert!(c.elastic.is_none());
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("WINDOW_SECONDS", "0"),
            ("SENSITIVITY", "0.9"),
            ("ES_URL", "ftp://cluster"),
            ("ES_ANOMALY_INDEX", "Anomalies"),
            ("ALERT_WEBHOOK_URL", "hooks.example.com/x"),
            ("ALERT_MIN_CONSECUTIVE", "0"),
            ("WEEKDAY_FEATURES", "sometimes"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        let err = config(&[
            ("ES_URL", "http://127.0.0.1:9200"),
            ("ES_PAGE_SIZE", "20000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("ES_PAGE_SIZE"), "{err}");
        let err = config(&[
            ("ES_URL", "http://127.0.0.1:9200"),
            ("ES_USERNAME", "elastic"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("ES_PASSWORD"), "{err}");
    }
}
