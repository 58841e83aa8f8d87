//! The plugin's state and one hook call: per query and dataset, the record engine's batch report (both detectors'
//! verdicts, the explanations, the batch against the dataset's baseline), the LLM (or offline) query analysis within
//! the response budget, the detections queued for the store, and the query's pattern. Everything a dataset lives
//! through (history, baseline, models, restore, outages) is the engine's; this module wires and answers.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anomaly_core::engine::{BatchReport, Engine, EngineParams, Persistence, WriteBehind};
use anomaly_core::forest::Contamination;
use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_llm::hybrid::HybridReport;
use anomaly_llm::query::{QueryAnalyzer, QueryContext};
use anomaly_llm::{Cached, FallbackChain};
use anomaly_store::{
    Anomaly, AnomalyQueue, CleanupSchedule, MAX_KEY_CHARS, QueryPattern, QueueConfig,
    RetentionPolicy, SeaOrmStore, Store,
};
use chrono::Utc;
use serde_json::{Value, json};

use crate::config::Config;
use crate::error::PluginError;
use crate::late::LateAnswers;
use crate::metrics::{Metrics, Snapshot};
use crate::patterns::PatternBook;
use crate::protocol::{HookRequest, query_id, records_of};

/// How long a call may wait for a pooled SQLite connection (contention, not an outage).
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often query-pattern counts are written to the store.
pub const PATTERN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the engine's pending history records are written, and how often a store that is down is probed (see
/// [`WriteBehind`]): the history a crash can lose.
pub const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often a database server that did not answer at start-up is asked to connect again.
pub const CONNECT_RETRY: Duration = Duration::from_secs(1);

/// The running plugin: engine, store, LLM chain and counters, shared by every request.
pub struct Plugin {
    config: Config,
    engine: Arc<Engine>,
    history: Arc<WriteBehind>,
    store: Arc<dyn Store>,
    queue: AnomalyQueue,
    analyzer: Arc<QueryAnalyzer<Cached<FallbackChain>>>,
    providers: Vec<String>,
    late: Arc<Mutex<LateAnswers>>,
    /// LLM analyses that missed their response budget and are still running (waited for at shutdown).
    late_tasks: Mutex<tokio::task::JoinSet<()>>,
    metrics: Arc<Metrics>,
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

/// The dataset of a key (`{query_id}:{dataset}`; a GraphQL name holds no colon).
fn dataset_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, d)| d)
}

/// Locks `m`, recovering the data of a poisoned lock (every use keeps it consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs an engine call off the async workers (it may restore a dataset from the database, or train).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anomaly_core::Result<T> + Send + 'static,
) -> Result<T, PluginError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PluginError::Internal(e.to_string()))??)
}

impl Plugin {
    /// Connects the store (creating the SQLite directory when needed; a database server that cannot be reached
    /// is connected later, the store starting unavailable), restores nothing eagerly (datasets are restored on first
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
        // A database server that cannot be reached at start-up does not stop the plugin: it starts with the store
        // unavailable (every dataset skipped, as none can be restored) and connects, migrating the schema, once the
        // server answers. The engine and the plugin share the store (its clones share one pool).
        let (store, down_at_start) = SeaOrmStore::connect_or_lazy(
            &config.database_url,
            pool_timeout,
            max_history,
            CONNECT_RETRY,
        )
        .await?;
        let persistence: Arc<dyn Persistence> = Arc::new(store.clone());
        let store: Arc<dyn Store> = Arc::new(store);
        // The engine appends history on the request path: the appends are buffered and written once a second per
        // key (one transaction instead of one per call); model versions are written through. While the store is
        // down, engine calls that need it fail at once, pending history waits, and the writer probes the store
        // every second until it answers.
        let history = Arc::new(WriteBehind::new(
            persistence,
            config.max_historical_records,
            HISTORY_FLUSH_INTERVAL,
        )?);
        if let Some(reason) = down_at_start {
            history.mark_unavailable(&reason);
        }
        let mut params = EngineParams::new()
            .min_training_records(config.minimum_training_records)
            .max_history(config.max_historical_records)
            .max_keys_in_memory(config.max_keys_in_memory)
            .retrain_every(config.minimum_training_records.max(100) * 5)
            .retrain_growth(1.0)
            .min_retrain_interval(config.min_retrain_interval)
            // A retrain never holds a response: it runs on the rayon pool and its model is swapped in when done.
            .train_in_background(true)
            .vectorizer(VectorizerParams::new().max_columns(config.max_schema_columns));
        if let Some(t) = config.anomaly_threshold {
            params = params.sensitivity(Contamination::Fraction(t));
        }
        let roles = config.field_roles.clone();
        let engine = Arc::new(
            Engine::new(params, history.clone())?.with_field_roles(move |key| {
                roles.get(dataset_of(key)).cloned().unwrap_or_default()
            }),
        );
        let chain = config.llm.chain().map_err(|e| PluginError::Config {
            variable: "LLM settings".into(),
            reason: e.to_string(),
        })?;
        let providers = chain
            .inner()
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect();
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
        let patterns = PatternBook::start(
            store.clone(),
            PATTERN_FLUSH_INTERVAL,
            config.max_keys_in_memory,
        );
        let late = Arc::new(Mutex::new(LateAnswers::new(config.max_keys_in_memory)));
        Ok(Plugin {
            config,
            engine,
            history,
            store,
            queue,
            analyzer,
            providers,
            late,
            late_tasks: Mutex::default(),
            metrics: Arc::new(Metrics::default()),
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

    /// The engine's history writer: pending records, write counters, and whether the store answers.
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

    /// Whether the store is taken to answer, as last seen.
    pub fn store_available(&self) -> bool {
        self.history.availability().is_available()
    }

    /// The datasets known for a query: held by the engine, with history waiting to be written, or in the store
    /// (only the first two while the store is unavailable).
    pub async fn datasets_of(&self, query_id: &str) -> Result<BTreeSet<String>, PluginError> {
        let prefix = format!("{query_id}:");
        let mut keys = self.engine.keys();
        let engine = self.engine.clone();
        match blocking(move || engine.persistence().keys()).await {
            Ok(stored) => keys.extend(stored),
            Err(e) => {
                tracing::debug!(error = %e, "stored datasets unknown; answering with the held ones")
            }
        }
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_string)
            .collect())
    }

    /// Analyses one hook call and answers the plugin's response document.
    ///
    /// # Errors
    /// [`PluginError::BadRequest`] for a dataset that is not an object or an array of objects, or records the
    /// engine refuses.
    pub async fn analyze_hook(&self, req: HookRequest) -> Result<Value, PluginError> {
        let started = Instant::now();
        let qid = query_id(&req.query);
        let previous = lock(&self.late).take(&qid);
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
            let (engine, k) = (self.engine.clone(), key.clone());
            let (records, report) = match blocking(move || {
                engine.observe_batch(&k, &records).map(|r| (records, r))
            })
            .await
            {
                Ok(done) => done,
                // Only a restore reads the store: a dataset whose stored model cannot be read yet is skipped,
                // not started from scratch (its next model would supersede the stored one).
                Err(PluginError::Engine(
                    e @ (anomaly_core::Error::Persistence { .. }
                    | anomaly_core::Error::PersistenceRefused { .. }),
                )) => {
                    tracing::debug!(key, error = %e, "could not restore a dataset");
                    skipped.push(json!({
                            "dataset": dataset,
                            "reason": "the store is unavailable and this dataset's model is not loaded yet",
                        }));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if report.persistence_failures > 0 {
                unpersisted.push(dataset.clone());
            }
            let flagged = report.flagged().count();
            total_records += records.len();
            total_anomalies += flagged;
            anomalous_query |= flagged > 0;
            self.metrics
                .records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            self.metrics
                .anomalies
                .fetch_add(flagged as u64, Ordering::Relaxed);
            let ctx = self.llm_context(&req, &records, &report);
            let analyzer = self.analyzer.clone();
            let metrics = self.metrics.clone();
            metrics.llm_calls.fetch_add(1, Ordering::Relaxed);
            let task = tokio::spawn(async move {
                match analyzer.analyze(&ctx).await {
                    Ok(report) => {
                        if report.batches.iter().any(|b| !b.fallback_from.is_empty()) {
                            metrics.llm_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(HybridReport::merge(&ctx, &report))
                    }
                    Err(e) => {
                        metrics.llm_failures.fetch_add(1, Ordering::Relaxed);
                        Err(e.to_string())
                    }
                }
            });
            let (q, r) = self.store_detections(&req, &qid, dataset, &key, &records, &report);
            queued += q;
            refused += r;
            pending.push((dataset.clone(), report, task));
        }
        for (dataset, report, task) in pending {
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
                    self.metrics.llm_late.fetch_add(1, Ordering::Relaxed);
                    let late = self.late.clone();
                    let (qid, dataset) = (qid.clone(), dataset.clone());
                    let mut late_tasks = lock(&self.late_tasks);
                    // Reap the finished ones, so the set holds only analyses still running.
                    while late_tasks.try_join_next().is_some() {}
                    late_tasks.spawn(async move {
                        let value = match task.await {
                            Ok(Ok(report)) => serde_json::to_value(report).unwrap_or(Value::Null),
                            Ok(Err(e)) => json!({"error": e}),
                            Err(e) => json!({"error": e.to_string()}),
                        };
                        lock(&late).put(qid, dataset, value);
                    });
                    None
                }
            };
            if let Some(Ok(report)) = &llm {
                anomalous_query |= report.anomalies_detected;
            }
            results.insert(
                dataset.clone(),
                dataset_result(
                    &report,
                    llm,
                    previous.as_ref().and_then(|p| p.get(&dataset)),
                ),
            );
        }
        let store_available = self.store_available();
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

    fn llm_context(
        &self,
        req: &HookRequest,
        records: &[Value],
        report: &BatchReport,
    ) -> QueryContext {
        // Every flagged record, and a sample of the others for the rules and the model to see what is returned.
        let sample = self.config.llm.analyzer.max_records_per_batch;
        let mut ctx = QueryContext::from_batch(req.query.clone(), records, report, sample);
        ctx.operation_name = req.operation_name.clone();
        ctx.variables = req.variables.clone();
        ctx.role = req.role.clone();
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
        records: &[Value],
        report: &BatchReport,
    ) -> (usize, usize) {
        let (mut queued, mut refused) = (0, 0);
        for i in report.flagged() {
            let Some(v) = report.outcomes[i].verdict() else {
                continue;
            };
            let explanation = report.explanations.get(&i);
            let detector = v
                .flagged_by
                .primary()
                .map_or("isolation_forest", |d| d.as_str());
            let anomaly = Anomaly {
                rationale: explanation.map(|e| e.rationale.clone()).unwrap_or_default(),
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
                    "record": records[i],
                    "flagged_by": v.flagged_by,
                }),
                config: json!({
                    "minimum_training_records": self.config.minimum_training_records,
                    "anomaly_threshold": self.config.anomaly_threshold,
                }),
                model_version: Some(v.model_version),
                ..Anomaly::flagged(key, detector, v.score, v.threshold)
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

    /// Names of the LLM providers as one string (`anthropic → openai → offline`).
    pub fn provider_chain(&self) -> String {
        self.providers.join(" → ")
    }

    /// Everything `/metrics` reports, read now.
    pub fn snapshot(&self) -> Snapshot {
        let queue = self.queue.stats();
        let availability = self.history.availability();
        let mut snapshot = Snapshot {
            queue_depth: queue.depth,
            queue_failures: queue.failures,
            queue_set_aside: queue.rejected,
            history: self.history.stats(),
            store_available: availability.is_available(),
            store_outages: availability.outages(),
            engine: self.engine.totals(),
            patterns: self.patterns.stats(),
            ..Snapshot::default()
        };
        self.metrics.read_into(&mut snapshot);
        snapshot
    }

    /// The stop after the last request: writes query-pattern counts and pending history, waits for LLM analyses
    /// still running (at most half the time left), stores the late answers no call will collect as detections
    /// (`llm_analysis`), and writes the queued detections, all by `deadline`. What could not be written is logged
    /// with counts; the return value says whether everything was.
    pub async fn shutdown(&self, deadline: service_kit::Deadline) -> bool {
        let mut complete = true;
        let waiting = self.patterns.close(deadline.instant()).await;
        if waiting > 0 {
            complete = false;
            tracing::error!(
                queries = waiting,
                "shutting down with query-pattern counts unwritten"
            );
        }
        if !flush_history(self, deadline).await {
            complete = false;
        }
        let mut running = std::mem::take(&mut *lock(&self.late_tasks));
        let half = deadline.remaining() / 2;
        let all_done =
            tokio::time::timeout(half, async { while running.join_next().await.is_some() {} })
                .await
                .is_ok();
        if !all_done {
            tracing::warn!(
                analyses = running.len(),
                "LLM analyses still running at shutdown were abandoned"
            );
            running.abort_all();
        }
        let uncollected = lock(&self.late).drain();
        let now = Utc::now();
        for (query_id, dataset, analysis) in uncollected {
            let anomaly = Anomaly {
                key: dataset_key(&query_id, &dataset),
                detector: "llm_analysis".into(),
                score: 0.0,
                threshold: 0.0,
                is_anomaly: analysis["anomalies_detected"].as_bool().unwrap_or(false),
                rationale: "an LLM analysis that arrived after its response budget; the plugin stopped before \
                            the query's next call could report it"
                    .into(),
                explanation: analysis,
                context: json!({"query_id": query_id, "dataset": dataset, "late": true}),
                config: json!({}),
                model_version: None,
                created_at: now,
            };
            if let Err(e) = self.queue.try_push(anomaly) {
                complete = false;
                tracing::error!(error = %e, "a late LLM analysis was not stored");
            }
        }
        if !self.queue.flush(deadline.remaining()).await {
            complete = false;
            tracing::error!(
                unwritten = self.queue.depth(),
                "shutting down with detections unwritten"
            );
        }
        complete
    }

    /// Whether the store answers (see [`WriteBehind::check`]): asked now while it is taken to be available (a probe
    /// gives up after `STORE_TIMEOUT_MS` of waiting to connect), the background probe's last answer (at most a
    /// second old) while it is down, so this never waits on a database known to be down.
    pub async fn store_reachable(&self) -> bool {
        let history = self.history.clone();
        tokio::task::spawn_blocking(move || history.check())
            .await
            .unwrap_or(false)
    }
}

/// Writes the engine's pending history, retrying (the database may be blinking) until `deadline`; whether all was
/// written.
async fn flush_history(plugin: &Plugin, deadline: service_kit::Deadline) -> bool {
    loop {
        let writer = plugin.history.clone();
        let attempt = deadline
            .run(tokio::task::spawn_blocking(move || writer.flush()))
            .await;
        let error = match attempt {
            Some(Ok(Ok(()))) => return true,
            Some(Ok(Err(e))) => e.to_string(),
            Some(Err(e)) => format!("the history flush panicked: {e}"),
            None => "the shutdown deadline passed".into(),
        };
        if deadline.remaining() < Duration::from_millis(250) {
            tracing::error!(
                error,
                unwritten = plugin.history.stats().pending,
                "shutting down with history records unwritten"
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The answer for one dataset: its verdicts, its model, and the query analysis.
fn dataset_result(
    report: &BatchReport,
    llm: Option<Result<HybridReport, String>>,
    previous: Option<&Value>,
) -> Value {
    let anomalous_records: Vec<Value> = report
        .flagged()
        .map(|i| {
            let e = report.explanations.get(&i);
            let v = report.outcomes[i].verdict();
            json!({
                "index": i,
                "score": v.map(|v| v.score),
                "detector": v.and_then(|v| v.flagged_by.primary()).map(|d| d.as_str()),
                "flagged_by": v.map(|v| v.flagged_by),
                "explanation": e.map(|e| e.rationale.as_str()).unwrap_or_default(),
                "fields": e.map(|e| serde_json::to_value(&e.fields).unwrap_or(Value::Null)),
            })
        })
        .collect();
    let max_score = report
        .outcomes
        .iter()
        .filter_map(|o| o.verdict().map(|v| v.score))
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let (status, needed) = match report.learning() {
        Some((seen, needed)) => ("learning", Some(json!({"seen": seen, "needed": needed}))),
        None => ("active", None),
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
    let model = report.model.as_ref();
    json!({
        "is_anomaly": !anomalous_records.is_empty() || llm_anomalous,
        "score": max_score,
        "anomalous_records": anomalous_records,
        "model_details": {
            "model_type": "isolation_forest",
            "detectors": ["isolation_forest", "range_rule"],
            "features_used": model.map(|m| m.features.clone()).unwrap_or_default(),
            "model_version": model.map(|m| m.version),
            "left_out_fields": model.map_or(0, |m| m.left_out_fields),
            "status": status,
            "learning": needed,
        },
        "security_concerns": security_concerns,
        "llm_analysis": llm_analysis,
        "previous_llm_analysis": previous,
    })
}

/// The file path of an SQLite URL (`sqlite://path?…`), `None` for other databases and `sqlite::memory:`.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}
