//! The plugin's settings, read from environment variables with the original plugin's names.

use std::time::Duration;

use std::collections::BTreeMap;

use anomaly_core::records::role::{FieldRoles, parse_field_roles};
use anomaly_llm::{LlmSettings, Secret};
use regex::Regex;
use service_kit::{Auth, Env, ServeSettings};

use crate::error::PluginError;

/// Everything the service is configured with. [`Config::from_env`] reads the process environment;
/// [`Config::from_lookup`] takes any lookup (tests).
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: `HOST` (default `127.0.0.1`; any other address needs `PLUGIN_SECRET` or
    /// `ALLOW_UNAUTHENTICATED=true`), `PORT` (default 8787), `MAX_REQUEST_BYTES` (default 10 MiB: a larger hook
    /// body gets a 400 naming the limit), `REQUEST_TIMEOUT_SECONDS`, `HEADER_TIMEOUT_SECONDS`, `SHUTDOWN_TIMEOUT_SECONDS` (default 10),
    /// `LOG_LEVEL`, `LOG_FORMAT`: see [`ServeSettings`].
    pub serve: ServeSettings,
    /// `DATABASE_URL`; default an SQLite file `anomaly_detection.db` under `ANOMALY_DETECTION_DATA` (default
    /// `./tmp`), created if missing.
    pub database_url: String,
    /// `HISTORICAL_RETENTION_DAYS` (default 14).
    pub history_retention_days: u64,
    /// `ANOMALY_RETENTION_DAYS` (default 90).
    pub anomaly_retention_days: u64,
    /// `MODEL_RETENTION_DAYS` (default 360).
    pub model_retention_days: u64,
    /// `ANOMALY_THRESHOLD` (default 0.01): the contamination of each query's model, in (0, 0.5]: the share of
    /// its training records that score above its threshold; `auto` for scikit-learn's fixed threshold (score 0.5),
    /// which flags too much on results with few, categorical fields.
    pub anomaly_threshold: Option<f64>,
    /// `MINIMUM_TRAINING_RECORDS` (default 100): records a query's dataset needs before its first model.
    pub minimum_training_records: usize,
    /// `MAX_HISTORICAL_RECORDS` (default 10,000): history kept per query and dataset.
    pub max_historical_records: usize,
    /// `MIN_RETRAIN_INTERVAL_SECONDS` (default 60): the shortest time between two automatic retrains of a query's
    /// dataset, so a dataset flooded with records does not retrain, and store a model version, many times a second.
    pub min_retrain_interval: Duration,
    /// `EXCLUDED_DATASETS`: comma-separated regular expressions of root fields never analysed.
    pub excluded_datasets: Vec<Regex>,
    /// `FIELD_ROLES`: roles pinned per dataset (root field) and field path, as
    /// `orders.id=identifier,orders.note=ignore` (roles: `measurement`, `category`, `timestamp`, `identifier`,
    /// `text`, `ignore`); other fields get the role their values show.
    pub field_roles: BTreeMap<String, FieldRoles>,
    /// `MAX_SCHEMA_COLUMNS` (default 1,000, at least 1): columns of a dataset's model; records with more fields keep
    /// their most frequent ones, and the answer counts the rest (`left_out_fields`).
    pub max_schema_columns: usize,
    /// `MAX_KEYS_IN_MEMORY` (default 1,000, at least 1): datasets (query and root field) held in memory, each with
    /// up to `MAX_HISTORICAL_RECORDS` records of history; the least recently used idle ones beyond it are evicted
    /// and restored from the database on their next call. It also bounds the late LLM answers kept.
    pub max_keys_in_memory: usize,
    /// `PLUGIN_SECRET`: when set, every request but `/health` and `/ready` must carry it in `hasura-m-auth` (or as
    /// `Authorization: Bearer <secret>`, which Prometheus can send).
    pub plugin_secret: Option<Secret>,
    /// `RESPONSE_BUDGET_MS` (default 2,000): how long a request may wait for the LLM analysis; a later analysis is
    /// stored and reported on the query's next call.
    pub response_budget: Duration,
    /// `CLEANUP_INTERVAL_SECONDS` (default 3,600): how often retention runs.
    pub cleanup_interval: Duration,
    /// `STORE_TIMEOUT_MS` (default 1,000, at least 1): how long a store operation may wait to connect or for a
    /// pooled connection before it fails, and how long `/health` waits for the store. A hook request waits on the
    /// database only to restore a dataset or store its first model, for at most this long (not at all while the
    /// store is known to be down), so keep it below `RESPONSE_BUDGET_MS`. On SQLite,
    /// where a wait for a pooled connection is contention rather than an outage, pool waits may last up to
    /// [`SQLITE_POOL_TIMEOUT`](crate::plugin::SQLITE_POOL_TIMEOUT).
    pub store_timeout: Duration,
    /// The LLM providers (`ANTHROPIC_API_KEY`, `CLAUDE_MODEL`, `ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`,
    /// `OPENAI_API_KEY`, `LLM_MODEL`, `MAX_TOKENS`, `MAX_RECORDS_PER_BATCH`); offline rules when none is set.
    pub llm: LlmSettings,
}

impl Config {
    /// The configuration in the process environment.
    ///
    /// # Errors
    /// [`PluginError::Config`] naming the variable whose value is unusable.
    pub fn from_env() -> Result<Self, PluginError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration `lookup` describes (empty values count as unset).
    ///
    /// # Errors
    /// [`PluginError::Config`] naming the variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PluginError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let serve =
            ServeSettings::from_env(&Env::from_lookup(get), 8787).map_err(PluginError::from)?;
        let data_dir = get("ANOMALY_DETECTION_DATA").unwrap_or_else(|| "./tmp".into());
        let database_url = get("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{data_dir}/anomaly_detection.db?mode=rwc"));
        let anomaly_threshold = match get("ANOMALY_THRESHOLD") {
            None => Some(0.01),
            Some(v) if v.trim().eq_ignore_ascii_case("auto") => None,
            Some(v) => {
                let t: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| bad("ANOMALY_THRESHOLD", "not a number"))?;
                if !(t > 0.0 && t <= 0.5) {
                    return Err(bad("ANOMALY_THRESHOLD", "must be in (0, 0.5]"));
                }
                Some(t)
            }
        };
        let excluded_datasets = get("EXCLUDED_DATASETS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        Regex::new(&format!("^(?:{p})$"))
                            .map_err(|e| bad("EXCLUDED_DATASETS", &format!("`{p}`: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let minimum_training_records: usize = parse(&get, "MINIMUM_TRAINING_RECORDS", 100)?;
        if minimum_training_records < 2 {
            return Err(bad("MINIMUM_TRAINING_RECORDS", "must be at least 2"));
        }
        let max_historical_records: usize = parse(&get, "MAX_HISTORICAL_RECORDS", 10_000)?;
        if max_historical_records < minimum_training_records {
            return Err(bad(
                "MAX_HISTORICAL_RECORDS",
                "must be at least MINIMUM_TRAINING_RECORDS",
            ));
        }
        let field_roles = match get("FIELD_ROLES") {
            None => BTreeMap::new(),
            Some(v) => dataset_roles(&v)?,
        };
        let max_schema_columns: usize = parse(&get, "MAX_SCHEMA_COLUMNS", 1_000)?;
        if max_schema_columns == 0 {
            return Err(bad("MAX_SCHEMA_COLUMNS", "must be at least 1"));
        }
        let max_keys_in_memory: usize = parse(&get, "MAX_KEYS_IN_MEMORY", 1_000)?;
        if max_keys_in_memory == 0 {
            return Err(bad("MAX_KEYS_IN_MEMORY", "must be at least 1"));
        }
        let store_timeout_ms: u64 = parse(&get, "STORE_TIMEOUT_MS", 1_000)?;
        if store_timeout_ms == 0 {
            return Err(bad("STORE_TIMEOUT_MS", "must be at least 1"));
        }
        let llm = LlmSettings::from_lookup(|name| get(name)).map_err(|e| PluginError::Config {
            variable: "LLM settings".into(),
            reason: e.to_string(),
        })?;
        Ok(Config {
            serve,
            database_url,
            history_retention_days: parse(&get, "HISTORICAL_RETENTION_DAYS", 14)?,
            anomaly_retention_days: parse(&get, "ANOMALY_RETENTION_DAYS", 90)?,
            model_retention_days: parse(&get, "MODEL_RETENTION_DAYS", 360)?,
            anomaly_threshold,
            minimum_training_records,
            max_historical_records,
            min_retrain_interval: Duration::from_secs(parse(
                &get,
                "MIN_RETRAIN_INTERVAL_SECONDS",
                60,
            )?),
            excluded_datasets,
            field_roles,
            max_schema_columns,
            max_keys_in_memory,
            plugin_secret: get("PLUGIN_SECRET").map(Secret::new),
            response_budget: Duration::from_millis(parse(&get, "RESPONSE_BUDGET_MS", 2_000)?),
            cleanup_interval: Duration::from_secs(
                parse::<u64>(&get, "CLEANUP_INTERVAL_SECONDS", 3_600)?.max(1),
            ),
            store_timeout: Duration::from_millis(store_timeout_ms),
            llm,
        })
    }

    /// The authentication `PLUGIN_SECRET` asks for.
    pub fn auth(&self) -> Option<Auth> {
        self.plugin_secret
            .as_ref()
            .map(|s| Auth::header("hasura-m-auth", s.expose()))
    }

    /// Refuses to listen beyond loopback without `PLUGIN_SECRET` (unless `ALLOW_UNAUTHENTICATED=true`).
    ///
    /// # Errors
    /// [`PluginError::Config`] saying how to set a secret.
    pub fn check_exposure(&self) -> Result<(), PluginError> {
        self.serve
            .check_exposure(self.auth().as_ref(), "PLUGIN_SECRET")
            .map_err(PluginError::from)
    }

    /// Whether a root field is excluded by `EXCLUDED_DATASETS`.
    pub fn is_excluded(&self, dataset: &str) -> bool {
        self.excluded_datasets.iter().any(|r| r.is_match(dataset))
    }
}

/// `dataset.field.path=role` pairs, by dataset.
fn dataset_roles(text: &str) -> Result<BTreeMap<String, FieldRoles>, PluginError> {
    let pins = parse_field_roles(text).map_err(|e| bad("FIELD_ROLES", &e.to_string()))?;
    let mut out: BTreeMap<String, FieldRoles> = BTreeMap::new();
    for (path, role) in pins {
        let Some((dataset, field)) = path
            .split_once('.')
            .filter(|(d, f)| !d.is_empty() && !f.is_empty())
        else {
            return Err(bad(
                "FIELD_ROLES",
                &format!("`{path}` names no dataset: write `dataset.field={role}`"),
            ));
        };
        out.entry(dataset.to_string())
            .or_default()
            .insert(field.to_string(), role);
    }
    Ok(out)
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, PluginError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| bad(name, "not a valid non-negative integer")),
    }
}

fn bad(variable: &str, reason: &str) -> PluginError {
    PluginError::Config {
        variable: variable.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::Config;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, crate::error::PluginError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_original_plugins() {
        let c = config(&[]).unwrap();
        assert_eq!(c.serve.port, 8787);
        assert_eq!(
            c.database_url,
            "sqlite://./tmp/anomaly_detection.db?mode=rwc"
        );
        assert_eq!(
            (
                c.history_retention_days,
                c.anomaly_retention_days,
                c.model_retention_days
            ),
            (14, 90, 360)
        );
        assert_eq!(c.minimum_training_records, 100);
        assert_eq!(c.min_retrain_interval, std::time::Duration::from_secs(60));
        assert_eq!(c.store_timeout, std::time::Duration::from_millis(1_000));
        assert_eq!((c.max_schema_columns, c.max_keys_in_memory), (1_000, 1_000));
        assert!(c.field_roles.is_empty());
        assert!(c.plugin_secret.is_none());
        let with_secret = config(&[("PLUGIN_SECRET", "s3cret-value")]).unwrap();
        assert!(
            !format!("{with_secret:?}").contains("s3cret-value"),
            "the secret never reaches a log"
        );
        assert!(
            c.serve.host.is_loopback(),
            "listens on loopback unless told otherwise"
        );
        assert!(c.check_exposure().is_ok());
        let public = config(&[("HOST", "0.0.0.0")]).unwrap();
        let refused = public.check_exposure().unwrap_err().to_string();
        assert!(refused.contains("PLUGIN_SECRET"), "{refused}");
        assert!(
            config(&[("HOST", "0.0.0.0"), ("PLUGIN_SECRET", "s")])
                .unwrap()
                .check_exposure()
                .is_ok()
        );
        assert_eq!(c.anomaly_threshold, Some(0.01));
        assert_eq!(
            config(&[("ANOMALY_THRESHOLD", "auto")])
                .unwrap()
                .anomaly_threshold,
            None
        );
        assert!(c.llm.anthropic.is_none() && c.llm.openai.is_none());
    }

    #[test]
    fn values_are_read_and_checked() {
        let c = config(&[
            ("PORT", "9000"),
            ("ANOMALY_DETECTION_DATA", "/data"),
            ("EXCLUDED_DATASETS", "audit_.*, users"),
            ("ANOMALY_THRESHOLD", "0.05"),
            ("PLUGIN_SECRET", "s3cret"),
            ("STORE_TIMEOUT_MS", "250"),
            (
                "FIELD_ROLES",
                "orders.id=identifier, orders.customer.note=ignore, users.email=text",
            ),
        ])
        .unwrap();
        use anomaly_core::records::role::FieldRole;
        assert_eq!(c.field_roles["orders"]["id"], FieldRole::Identifier);
        assert_eq!(c.field_roles["orders"]["customer.note"], FieldRole::Ignore);
        assert_eq!(c.field_roles["users"]["email"], FieldRole::Text);
        assert_eq!(c.store_timeout, std::time::Duration::from_millis(250));
        assert_eq!(c.serve.port, 9000);
        assert_eq!(
            c.database_url,
            "sqlite:///data/anomaly_detection.db?mode=rwc"
        );
        assert!(c.is_excluded("audit_log") && c.is_excluded("users") && !c.is_excluded("users_x"));
        assert_eq!(c.anomaly_threshold, Some(0.05));
        for (var, value) in [
            ("PORT", "eighty"),
            ("HOST", "everywhere"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "0"),
            ("ANOMALY_THRESHOLD", "0.9"),
            ("EXCLUDED_DATASETS", "("),
            ("MINIMUM_TRAINING_RECORDS", "1"),
            ("STORE_TIMEOUT_MS", "0"),
            ("STORE_TIMEOUT_MS", "soon"),
            ("FIELD_ROLES", "id=identifier"),
            ("FIELD_ROLES", "orders.id=key"),
            ("MAX_SCHEMA_COLUMNS", "0"),
            ("MAX_KEYS_IN_MEMORY", "0"),
            ("ANTHROPIC_API_KEY", "sk-test"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var) || err.contains("LLM"), "{var}: {err}");
        }
    }
}
