//! The plugin's state and the analysis of one hook call: per query and dataset, the record engine's verdicts, the
//! dataset's statistics against its history, and the LLM (or offline) query analysis, merged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anomaly_core::engine::{Engine, EngineParams, Outcome, WriteBehind};
use anomaly_core::forest::Contamination;
use anomaly_core::records::flatten::Limits;
use anomaly_core::stats::{CompareThresholds, DatasetStats};
use anomaly_llm::FallbackChain;
use anomaly_llm::hybrid::HybridReport;
use anomaly_llm::query::{FlaggedRecord, QueryAnalyzer, QueryContext, StatisticalVerdict};
use anomaly_store::{
    Anomaly, AnomalyQueue, BlockingStore, CleanupSchedule, MAX_KEY_CHARS, QueryPattern,
    QueueConfig, RetentionPolicy, SeaOrmStore, Store, StoreError,
};
use chrono::Utc;
use serde_json::{Value, json};

use crate::availability::{GuardedPersistence, StoreMonitor, StoreStatus};
use crate::config::Config;
use crate::error::PluginError;
use crate::metrics::Metrics;
use crate::patterns::PatternBook;
use crate::protocol::{HookRequest, query_id, records_of};

/// The detector name stored with each detection.
pub const DETECTOR: &str = "isolation_forest";

/// How long a call may wait for a pooled SQLite connection (contention, not an outage).
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often query-pattern counts are written to the store.
pub const PATTERN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the engine's pending history records are written (see [`WriteBehind`]): the history a crash can lose.
pub const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The running plugin: engine, store, LLM chain and counters, shared by every request.
pub struct Plugin {
    config: Config,
    engine: Arc<Engine>,
    history: Arc<WriteBehind>,
    store: Arc<dyn Store>,
    queue: AnomalyQueue,
    analyzer: Arc<QueryAnalyzer<FallbackChain>>,
    providers: Vec<String>,
    history_stats: Mutex<HashMap<String, DatasetStats>>,
    late: Arc<Mutex<HashMap<String, BTreeMap<String, Value>>>>,
    datasets: Mutex<HashMap<String, BTreeSet<String>>>,
    metrics: Arc<Metrics>,
    monitor: StoreMonitor,
    patterns: PatternBook,
    _cleanup: CleanupSchedule,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

/// The key of a query's dataset in the engine and the store.
pub fn dataset_key(query_id: &str, dataset: &str) -> String {
    format!("{query_id}:{dataset}")
}

/// Locks `m`, recovering the data of a poisoned lock (every use keeps it consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Plugin {
    /// Connects the store (creating the SQLite directory when needed; a database server that cannot be reached
    /// is connected later, the store starting unavailable), restores nothing eagerly (datasets are loaded on first
    /// use), builds the LLM chain and starts the retention schedule. Call inside a tokio runtime.
    ///
    /// # Errors
    /// [`PluginError::Store`] when the database cannot be opened (a bad URL, an SQLite file that cannot be
    /// created, a server that refuses the credentials or the database, a failed migration),
    /// [`PluginError::Config`] for an unusable LLM configuration, [`PluginError::Engine`] for engine parameters it
    /// refuses.
    pub async fn start(config: Config) -> Result<Self, PluginError> {
        if let Some(path) = sqlite_path(&config.database_url)
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Config {
                variable: "ANOMALY_DETECTION_DATA".into(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let max_history = config.max_historical_records as u64;
        // One pool for the engine's history and models and for the plugin's detections and patterns: on SQLite two
        // pools would contend for the file's write lock and wait out SQLite's busy back-off. On a database server its
        // short timeout (`STORE_TIMEOUT_MS`) bounds how long a call waits for a connection when the server is down.
        // On SQLite a wait for a pooled connection is contention under load, never an outage (a broken file fails at
        // once), and taking it for one would mark the store unavailable (skipping query patterns, failing model
        // saves): the pool waits as long as the store's default.
        let pool_timeout = if config.database_url.starts_with("sqlite:") {
            config.store_timeout.max(SQLITE_POOL_TIMEOUT)
        } else {
            config.store_timeout
        };
        // A database server that cannot be reached at start-up (refused, timed out, host not found) does not stop
        // the plugin: it starts with the store unavailable (every dataset skipped, as none is loaded) and connects,
        // migrating the schema, once the server answers. A bad URL, a server that answers with an error (wrong
        // credentials, unknown database), a failed migration, or an SQLite file that cannot be opened stop it.
        let (store, down_at_start): (Arc<dyn Store>, Option<String>) =
            match SeaOrmStore::connect_with_timeout(&config.database_url, pool_timeout).await {
                Ok(store) => (Arc::new(store.with_max_history(max_history)), None),
                Err(e @ StoreError::Connect { .. })
                    if e.is_unreachable() && !config.database_url.starts_with("sqlite:") =>
                {
                    let reason = e.chain();
                    tracing::warn!(error = %reason, "the database does not answer: starting without it");
                    let lazy = SeaOrmStore::lazy(
                        &config.database_url,
                        pool_timeout,
                        max_history,
                        crate::availability::PROBE_INTERVAL,
                    )?;
                    (Arc::new(lazy), Some(reason))
                }
                Err(e) => return Err(e.into()),
            };
        let monitor = StoreMonitor::start(store.clone(), config.store_timeout);
        if let Some(reason) = down_at_start {
            monitor.status().failed(&reason);
        }
        // The engine appends history on the request path: the appends are buffered and written once a second per
        // key (one transaction instead of one per call); model versions are written through. While the store is
        // down, calls fail at once instead of each waiting for the pool, and pending history waits for it.
        let guarded =
            GuardedPersistence::new(BlockingStore::new(store.clone())?, monitor.status().clone());
        let history = Arc::new(WriteBehind::new(
            Arc::new(guarded),
            config.max_historical_records,
            HISTORY_FLUSH_INTERVAL,
        )?);
        let mut params = EngineParams::new()
            .min_training_records(config.minimum_training_records)
            .max_history(config.max_historical_records)
            .retrain_every(config.minimum_training_records.max(100) * 5)
            .retrain_growth(1.0)
            .min_retrain_interval(config.min_retrain_interval)
            // A retrain never holds a response: it runs on the rayon pool and its model is swapped in when done.
            .train_in_background(true);
        if let Some(t) = config.anomaly_threshold {
            params = params.sensitivity(Contamination::Fraction(t));
        }
        let engine = Arc::new(Engine::new(params, history.clone())?);
        let chain = config.llm.chain().map_err(|e| PluginError::Config {
            variable: "LLM settings".into(),
            reason: e.to_string(),
        })?;
        let providers = chain.names().iter().map(|s| s.to_string()).collect();
        let analyzer = Arc::new(QueryAnalyzer::with_settings(
            chain,
            config.llm.analyzer.clone(),
        ));
        let queue = AnomalyQueue::new(store.clone(), QueueConfig::default());
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let policy = RetentionPolicy {
            history: days(config.history_retention_days),
            anomalies: days(config.anomaly_retention_days),
            models: days(config.model_retention_days),
        };
        let cleanup = CleanupSchedule::start(store.clone(), policy, config.cleanup_interval);
        let patterns = PatternBook::start(store.clone(), PATTERN_FLUSH_INTERVAL);
        Ok(Plugin {
            config,
            engine,
            history,
            store,
            queue,
            analyzer,
            providers,
            history_stats: Mutex::new(HashMap::new()),
            late: Arc::new(Mutex::new(HashMap::new())),
            datasets: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            monitor,
            patterns,
            _cleanup: cleanup,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the store answers, as last seen.
    pub fn store_status(&self) -> &StoreStatus {
        self.monitor.status()
    }

    /// The engine's history writer: pending records and write counters.
    pub fn history_writer(&self) -> &WriteBehind {
        &self.history
    }

    /// The detection queue in front of the store.
    pub fn queue(&self) -> &AnomalyQueue {
        &self.queue
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Names of the LLM providers, in fallback order.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// The datasets seen for a query: in this process, and in the store from earlier runs (only this process's
    /// while the store is unavailable).
    pub async fn datasets_of(&self, query_id: &str) -> Result<BTreeSet<String>, PluginError> {
        let mut found = lock(&self.datasets)
            .get(query_id)
            .cloned()
            .unwrap_or_default();
        if !self.store_status().available() {
            return Ok(found);
        }
        let keys = match self.store.keys().await {
            Ok(keys) => keys,
            Err(e) => {
                self.store_status().failed(&e.to_string());
                tracing::warn!(error = %e, "stored datasets unknown; answering with this process's");
                return Ok(found);
            }
        };
        let prefix = format!("{query_id}:");
        for key in keys {
            if let Some(dataset) = key.strip_prefix(&prefix) {
                found.insert(dataset.to_string());
            }
        }
        Ok(found)
    }

    /// Analyses one hook call and answers the plugin's response document.
    ///
    /// # Errors
    /// [`PluginError::BadRequest`] for a dataset that is not an object or an array of objects, or records the
    /// engine refuses.
    pub async fn analyze_hook(&self, req: HookRequest) -> Result<Value, PluginError> {
        let started = Instant::now();
        let qid = query_id(&req.query);
        let previous = lock(&self.late).remove(&qid);
        let mut results = serde_json::Map::new();
        let mut skipped = Vec::new();
        let mut total_records = 0usize;
        let mut total_anomalies = 0usize;
        let mut pending = Vec::new();
        let mut anomalous_query = false;
        // Datasets whose model version could not be written, and detections queued or refused by the queue.
        let mut unpersisted = Vec::new();
        let (mut queued, mut refused) = (0usize, 0usize);
        for (dataset, value) in &req.datasets {
            if self.config.is_excluded(dataset) {
                skipped
                    .push(json!({"dataset": dataset, "reason": "excluded by EXCLUDED_DATASETS"}));
                continue;
            }
            let records = records_of(dataset, value)?;
            if records.is_empty() {
                skipped.push(json!({"dataset": dataset, "reason": "no records"}));
                continue;
            }
            let key = dataset_key(&qid, dataset);
            if key.chars().count() > MAX_KEY_CHARS {
                skipped.push(json!({
                    "dataset": dataset,
                    "reason": format!("the dataset name is too long to store (query id, colon and name: at most {MAX_KEY_CHARS} characters)"),
                }));
                continue;
            }
            // A dataset this process has not loaded yet is loaded from the store first. If the store cannot be
            // read, it is skipped: scoring it would start it from scratch, and its next model would supersede the
            // stored one. (While the store is known to be down the load fails at once.)
            if !self.engine.holds(&key)
                && let Err(e) = self.load_dataset(&key).await
            {
                tracing::debug!(key, error = %e, "could not load a dataset");
                skipped.push(json!({
                    "dataset": dataset,
                    "reason": "the store is unavailable and this dataset's model is not loaded yet",
                }));
                continue;
            }
            lock(&self.datasets)
                .entry(qid.clone())
                .or_default()
                .insert(dataset.clone());
            let scored = self.score_dataset(&key, records).await?;
            if scored.persistence_failures > 0 {
                unpersisted.push(dataset.clone());
            }
            total_records += scored.records.len();
            total_anomalies += scored.flagged.len();
            anomalous_query |= !scored.flagged.is_empty();
            self.metrics.records.fetch_add(
                scored.records.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.metrics.anomalies.fetch_add(
                scored.flagged.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let ctx = self.llm_context(&req, &scored);
            let analyzer = self.analyzer.clone();
            let metrics = self.metrics.clone();
            metrics
                .llm_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let task = tokio::spawn(async move {
                match analyzer.analyze(&ctx).await {
                    Ok(report) => {
                        if report.batches.iter().any(|b| !b.fallback_from.is_empty()) {
                            metrics
                                .llm_failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(HybridReport::merge(&ctx, &report))
                    }
                    Err(e) => {
                        metrics
                            .llm_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Err(e.to_string())
                    }
                }
            });
            let (q, r) = self.store_detections(&req, &qid, dataset, &key, &scored);
            queued += q;
            refused += r;
            pending.push((dataset.clone(), scored, task));
        }
        for (dataset, scored, task) in pending {
            let remaining = self
                .config
                .response_budget
                .saturating_sub(started.elapsed());
            let mut task = task;
            let llm = match tokio::time::timeout(remaining, &mut task).await {
                Ok(Ok(Ok(report))) => Some(Ok(report)),
                Ok(Ok(Err(e))) => Some(Err(e)),
                Ok(Err(join)) => Some(Err(join.to_string())),
                Err(_) => {
                    self.metrics
                        .llm_late
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let late = self.late.clone();
                    let (qid, dataset) = (qid.clone(), dataset.clone());
                    tokio::spawn(async move {
                        let value = match task.await {
                            Ok(Ok(report)) => serde_json::to_value(report).unwrap_or(Value::Null),
                            Ok(Err(e)) => json!({"error": e}),
                            Err(e) => json!({"error": e.to_string()}),
                        };
                        lock(&late).entry(qid).or_default().insert(dataset, value);
                    });
                    None
                }
            };
            if let Some(Ok(report)) = &llm {
                anomalous_query |= report.anomalies_detected;
            }
            results.insert(
                dataset.clone(),
                self.dataset_result(
                    &scored,
                    llm,
                    previous.as_ref().and_then(|p| p.get(&dataset)),
                ),
            );
        }
        let store_available = self.store_status().available();
        let mut store_skipped = Vec::new();
        if !unpersisted.is_empty() {
            store_skipped.push(json!({
                "step": "persistence",
                "datasets": unpersisted,
                "reason": "a model version trained on these records was used in memory but could not be written to the database",
            }));
        }
        if store_available {
            self.record_pattern(&req, &qid, total_anomalies, anomalous_query);
        } else {
            store_skipped.push(json!({
                "step": "query_pattern",
                "reason": "the store is unavailable: the query's pattern counters were not updated",
            }));
        }
        if refused > 0 {
            store_skipped.push(json!({
                "step": "detections",
                "count": refused,
                "reason": "the detection queue refused them (full, or closing): these detections were not stored",
            }));
        }
        let status = if results.is_empty() { "skipped" } else { "ok" };
        Ok(json!({
            "results": results,
            "metadata": {
                "timestamp": Utc::now().to_rfc3339(),
                "query_hash": qid,
                "operation_name": req.operation_name,
                "total_records": total_records,
                "total_anomalies": total_anomalies,
                "datasets_processed": results.len(),
                "datasets_skipped": skipped,
                "status": status,
                "store": if store_available { "ok" } else { "unavailable" },
                "skipped": store_skipped,
                "detections_queued": queued,
                "history_pending": self.history.stats().pending,
            }
        }))
    }

    /// Loads a dataset's history and model from the store into the engine (see [`Engine::load`]).
    async fn load_dataset(&self, key: &str) -> Result<bool, PluginError> {
        let (engine, key) = (self.engine.clone(), key.to_string());
        Ok(tokio::task::spawn_blocking(move || engine.load(&key))
            .await
            .map_err(|e| PluginError::Internal(e.to_string()))??)
    }

    async fn score_dataset(
        &self,
        key: &str,
        records: Vec<Value>,
    ) -> Result<ScoredDataset, PluginError> {
        let engine = self.engine.clone();
        let key_owned = key.to_string();
        let (records, outcomes, explanations, after, persistence_failures) =
            tokio::task::spawn_blocking(move || {
                let failures_before = engine.stats(&key_owned).persistence_failures;
                let outcomes = engine.observe_many(&key_owned, &records)?;
                let mut explanations = BTreeMap::new();
                for (i, o) in outcomes.iter().enumerate() {
                    if o.is_anomaly()
                        && let Some(e) = engine.explain(&key_owned, &records[i])?
                    {
                        explanations.insert(i, e);
                    }
                }
                let after = engine.model_info(&key_owned);
                let failures = engine
                    .stats(&key_owned)
                    .persistence_failures
                    .saturating_sub(failures_before);
                Ok::<_, anomaly_core::Error>((records, outcomes, explanations, after, failures))
            })
            .await
            .map_err(|e| PluginError::Internal(e.to_string()))??;
        let batch = DatasetStats::from_records(&records, &Limits::default())?;
        let comparison = {
            let mut all = lock(&self.history_stats);
            let after = &after;
            let history = all
                .entry(key.to_string())
                .or_insert_with(|| rebuild_stats(&self.engine, key, records.len()));
            let comparison = (history.n_records() > 0)
                .then(|| history.compare(&batch, &CompareThresholds::default()));
            let violations = if after.is_some() {
                range_violations(history, &records)
            } else {
                BTreeMap::new()
            };
            // The baseline learns the records neither detector flagged, so an anomaly does not widen what
            // counts as normal for the next call.
            let normal: Vec<Value> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| !outcomes[*i].is_anomaly() && !violations.contains_key(i))
                .map(|(_, r)| r.clone())
                .collect();
            if normal.len() == records.len() {
                history.merge(&batch);
            } else if let Ok(clean) = DatasetStats::from_records(&normal, &Limits::default()) {
                history.merge(&clean);
            }
            (comparison, violations)
        };
        let (comparison, violations) = comparison;
        let flagged: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(i, o)| o.is_anomaly() || violations.contains_key(i))
            .map(|(i, _)| i)
            .collect();
        Ok(ScoredDataset {
            violations,
            model: after,
            records,
            outcomes,
            explanations,
            flagged,
            stats: batch,
            comparison,
            persistence_failures,
        })
    }

    fn llm_context(&self, req: &HookRequest, scored: &ScoredDataset) -> QueryContext {
        let mut ctx = QueryContext::new(req.query.clone(), scored.stats.clone());
        ctx.operation_name = req.operation_name.clone();
        ctx.variables = req.variables.clone();
        ctx.role = req.role.clone();
        ctx.comparison = scored.comparison.clone();
        // Every flagged record, and a sample of the others for the rules and the model to see what is returned.
        let sample = self.config.llm.analyzer.max_records_per_batch;
        ctx.flagged = scored
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| scored.flagged.contains(i) || *i < sample)
            .map(|(i, record)| FlaggedRecord {
                index: i,
                record: record.clone(),
                verdict: scored.outcomes[i].verdict().map(|v| StatisticalVerdict {
                    detector: detector_of(scored, i).into(),
                    score: v.score,
                    threshold: v.threshold,
                    is_anomaly: scored.flagged.contains(&i),
                    rationale: Some(rationale(scored, i)).filter(|r| !r.is_empty()),
                }),
            })
            .collect();
        ctx
    }

    /// Queues the dataset's detections (written in the background; held while the database is down); returns how
    /// many were queued and how many a full queue refused.
    fn store_detections(
        &self,
        req: &HookRequest,
        qid: &str,
        dataset: &str,
        key: &str,
        scored: &ScoredDataset,
    ) -> (usize, usize) {
        let (mut queued, mut refused) = (0, 0);
        for &i in &scored.flagged {
            let Some(v) = scored.outcomes[i].verdict() else {
                continue;
            };
            let explanation = scored.explanations.get(&i);
            let anomaly = Anomaly {
                rationale: rationale(scored, i),
                explanation: explanation
                    .map(|e| serde_json::to_value(&e.fields).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null),
                context: json!({
                    "query_id": qid,
                    "dataset": dataset,
                    "query": req.query,
                    "operation_name": req.operation_name,
                    "variables": req.variables,
                    "role": req.role,
                    "user": req.user,
                    "record_index": i,
                    "record": scored.records[i],
                }),
                config: json!({
                    "minimum_training_records": self.config.minimum_training_records,
                    "anomaly_threshold": self.config.anomaly_threshold,
                }),
                model_version: Some(v.model_version),
                ..Anomaly::flagged(key, detector_of(scored, i), v.score, v.threshold)
            };
            match self.queue.try_push(anomaly) {
                Ok(()) => queued += 1,
                Err(e) => {
                    refused += 1;
                    tracing::error!(error = %e, "detection not stored");
                }
            }
        }
        (queued, refused)
    }

    fn record_pattern(&self, req: &HookRequest, qid: &str, anomalies: usize, anomalous: bool) {
        let now = Utc::now();
        self.patterns.record(QueryPattern {
            query_hash: qid.to_string(),
            text: req.query.clone(),
            operation_name: req.operation_name.clone(),
            variables: req.variables.clone(),
            role: req.role.clone(),
            count: 1,
            anomaly_count: anomalies as u64,
            anomalous,
            first_seen: now,
            last_seen: now,
        });
    }

    /// Query-pattern counts on their way to the store.
    pub fn patterns(&self) -> &PatternBook {
        &self.patterns
    }

    fn dataset_result(
        &self,
        scored: &ScoredDataset,
        llm: Option<Result<HybridReport, String>>,
        previous: Option<&Value>,
    ) -> Value {
        let anomalous_records: Vec<Value> = scored
            .flagged
            .iter()
            .map(|&i| {
                let e = scored.explanations.get(&i);
                json!({
                    "index": i,
                    "score": scored.outcomes[i].verdict().map(|v| v.score),
                    "detector": detector_of(scored, i),
                    "explanation": rationale(scored, i),
                    "fields": e.map(|e| serde_json::to_value(&e.fields).unwrap_or(Value::Null)),
                })
            })
            .collect();
        let max_score = scored
            .outcomes
            .iter()
            .filter_map(|o| o.verdict().map(|v| v.score))
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
        let (status, needed) = match scored.outcomes.last() {
            Some(Outcome::Learning { seen, needed }) if scored.model.is_none() => {
                ("learning", Some(json!({"seen": seen, "needed": needed})))
            }
            _ => ("active", None),
        };
        let (llm_analysis, security_concerns, llm_anomalous) = match llm {
            Some(Ok(report)) => (
                serde_json::to_value(&report).unwrap_or(Value::Null),
                serde_json::to_value(&report.security_concerns).unwrap_or(Value::Null),
                report.anomalies_detected,
            ),
            Some(Err(e)) => (json!({"status": "failed", "error": e}), json!([]), false),
            None => (
                json!({"status": "pending", "detail": "the analysis missed the response budget; it is reported on the query's next call"}),
                json!([]),
                false,
            ),
        };
        json!({
            "is_anomaly": !scored.flagged.is_empty() || llm_anomalous,
            "score": max_score,
            "anomalous_records": anomalous_records,
            "model_details": {
                "model_type": DETECTOR,
                "features_used": scored.model.as_ref().map(|m| m.features.clone()).unwrap_or_default(),
                "model_version": scored.model.as_ref().map(|m| m.version),
                "status": status,
                "learning": needed,
            },
            "security_concerns": security_concerns,
            "llm_analysis": llm_analysis,
            "previous_llm_analysis": previous,
        })
    }

    /// The range rule's reason for `record` against the key's history, if it fires.
    pub fn range_violation(&self, key: &str, record: &Value) -> Option<String> {
        let mut all = lock(&self.history_stats);
        let history = all
            .entry(key.to_string())
            .or_insert_with(|| rebuild_stats(&self.engine, key, 100));
        range_violations(history, std::slice::from_ref(record)).remove(&0)
    }

    /// Names of the LLM providers as one string (`anthropic → openai → offline`).
    pub fn provider_chain(&self) -> String {
        self.providers.join(" → ")
    }

    /// Whether the store answers: asked within `STORE_TIMEOUT_MS` while it is taken to be available, the
    /// background probe's last answer (at most a second old) while it is down, so this never waits on a database
    /// known to be down.
    pub async fn store_reachable(&self) -> bool {
        self.monitor.reachable().await
    }
}

/// One dataset of a hook call, scored.
pub(crate) struct ScoredDataset {
    pub(crate) records: Vec<Value>,
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) explanations: BTreeMap<usize, anomaly_core::engine::RecordExplanation>,
    pub(crate) flagged: Vec<usize>,
    pub(crate) stats: DatasetStats,
    pub(crate) comparison: Option<anomaly_core::stats::Comparison>,
    pub(crate) model: Option<anomaly_core::engine::ModelInfo>,
    /// Records with a numeric field far outside everything the dataset's history holds, and why.
    pub(crate) violations: BTreeMap<usize, String>,
    /// What the engine could not persist while scoring this dataset (model versions, and key restores; history
    /// goes through the [`WriteBehind`] and waits there instead), as counted in its `persistence_failures`.
    pub(crate) persistence_failures: u64,
}

/// How many widths of the history's central 90 % a value must lie beyond the history's extremes to be flagged by
/// the range rule.
pub const RANGE_TOLERANCE: f64 = 3.0;

/// The range rule, beside the isolation forest: a record whose top-level numeric field lies further than
/// [`RANGE_TOLERANCE`] widths of the history's 5–95 % range beyond the history's minimum or maximum. An isolation
/// forest cannot see how far outside its training range a value is (it follows the extreme training point's path),
/// so `amount = 99,999` among amounts of 20–200 may score like an ordinary large order; this rule says what any
/// analyst would.
fn range_violations(history: &DatasetStats, records: &[Value]) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        let Some(obj) = record.as_object() else {
            continue;
        };
        let mut reasons = Vec::new();
        for (field, value) in obj {
            let (Some(v), Some(stats)) = (value.as_f64(), history.field(field)) else {
                continue;
            };
            let Some(n) = &stats.numeric else { continue };
            let (q5, q95) = (n.quantiles.get(1), n.quantiles.get(19));
            let width = match (q5, q95) {
                (Some(a), Some(b)) => (b - a).max(f64::EPSILON),
                _ => continue,
            };
            let slack = RANGE_TOLERANCE * width;
            if v > n.max + slack || v < n.min - slack {
                reasons.push(format!(
                    "`{field}` = {} is far outside everything seen ({}–{})",
                    fmt_num(v),
                    fmt_num(n.min),
                    fmt_num(n.max)
                ));
            }
        }
        if !reasons.is_empty() {
            out.insert(i, reasons.join("; "));
        }
    }
    out
}

/// A key's history statistics after a restart, rebuilt from the persisted history in batches of `batch` records.
fn rebuild_stats(engine: &Engine, key: &str, batch: usize) -> DatasetStats {
    let mut h = DatasetStats::new();
    for chunk in engine.history(key).chunks(batch.max(1)) {
        if let Ok(s) = DatasetStats::from_records(chunk, &Limits::default()) {
            h.merge(&s);
        }
    }
    h
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The rationale of a flagged record: the forest's explanation, and the range rule's reason when it fired.
fn rationale(scored: &ScoredDataset, i: usize) -> String {
    let forest = scored.explanations.get(&i).map(|e| e.rationale.clone());
    let rule = scored
        .violations
        .get(&i)
        .map(|r| format!("Range rule: {r}."));
    match (forest, rule) {
        (Some(f), Some(r)) => format!("{f} {r}"),
        (Some(f), None) => f,
        (None, Some(r)) => r,
        (None, None) => String::new(),
    }
}

/// The detector that flagged record `i`: the forest when it did, else the range rule.
fn detector_of(scored: &ScoredDataset, i: usize) -> &'static str {
    if scored.outcomes[i].is_anomaly() {
        DETECTOR
    } else {
        RANGE_RULE
    }
}

/// The detector name stored with detections of the range rule.
pub const RANGE_RULE: &str = "range_rule";

/// The file path of an SQLite URL (`sqlite://path?…`), `None` for other databases and `sqlite::memory:`.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}
