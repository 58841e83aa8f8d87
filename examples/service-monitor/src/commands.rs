//! The commands: `collect`, `train` and `monitor` (the binary parses, this runs).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use service_kit::{Webhook, WebhookOutcome, WebhookSettings};
use tokio::sync::watch;

use crate::anomalies::{self, Recent, Sink};
use crate::context::Context;
use crate::error::{MonitorError, Result};
use crate::metrics::{DetectorLabel, MonitorMetrics};
use crate::pipeline::{EventWindows, Pipeline, ScoredWindow};
use crate::source::{self, Source};
use crate::state::{self, Progress};

/// Events handed to the pipeline at a time while a cluster is read.
const BATCH: usize = 10_000;

/// What `collect` did.
#[derive(Debug, Clone, Serialize)]
pub struct CollectReport {
    /// Events written.
    pub events: u64,
    /// Lines that were not JSON events (files only; skipped).
    pub refused: u64,
    /// The file written.
    pub output: PathBuf,
}

/// Copies the source's events in `[from, until)` (epoch seconds) to an NDJSON file, for training and for the
/// record: a cluster through a point in time and `search_after`; a file line by line (events outside the range and
/// lines that are not JSON left out).
///
/// # Errors
/// When the source cannot be read or the file written.
pub async fn collect(
    config: &crate::Config,
    source: &Source,
    (from, until): (f64, f64),
    output: &Path,
) -> Result<CollectReport> {
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| MonitorError::io(format!("creating {}", dir.display()), e))?;
    }
    let what = || format!("writing {}", output.display());
    let file = std::fs::File::create(output).map_err(|e| MonitorError::io(what(), e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut report = CollectReport {
        events: 0,
        refused: 0,
        output: output.to_path_buf(),
    };
    let field = config.fields.timestamp.clone();
    let mut write = |event: &Value, report: &mut CollectReport| -> Result<()> {
        serde_json::to_writer(&mut out, event).map_err(|e| MonitorError::io(what(), e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| MonitorError::io(what(), e))?;
        report.events += 1;
        Ok(())
    };
    match source {
        Source::Elastic { client, index } => {
            let range = ((from * 1000.0) as i64, (until * 1000.0) as i64);
            let mut written = Ok(());
            source::scan(client, index, &field, range, |event| {
                if written.is_ok() {
                    written = write(&event, &mut report);
                }
                Ok(())
            })
            .await?;
            written?;
        }
        Source::File(path) => {
            source::read_ndjson(path, 0, true, 0, |line| {
                match line {
                    Ok(event) => {
                        let t = crate::fields::event_time(&event, &field);
                        if t.is_none_or(|t| t >= from && t < until) {
                            write(&event, &mut report)?;
                        }
                    }
                    Err(reason) => {
                        report.refused += 1;
                        tracing::warn!(reason, "line skipped");
                    }
                }
                Ok(())
            })?;
        }
    }
    out.flush().map_err(|e| MonitorError::io(what(), e))?;
    tracing::info!(events = report.events, output = %output.display(), "collected");
    Ok(report)
}

/// The times of a file's first and last events (the first and last lines that have one, within 1 MiB of either
/// end): a file written in time order spans from one to the other.
fn file_span(path: &Path, field: &str) -> Option<(f64, f64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = vec![0u8; len.min(1 << 20) as usize];
    file.read_exact(&mut head).ok()?;
    let first = head
        .split(|&b| b == b'\n')
        .find_map(|l| crate::fields::event_time(&serde_json::from_slice(l).ok()?, field))?;
    let tail_len = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - tail_len)).ok()?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail).ok()?;
    let last = tail
        .rsplit(|&b| b == b'\n')
        .find_map(|l| crate::fields::event_time(&serde_json::from_slice(l).ok()?, field))?;
    Some((first, last))
}

/// What `train` did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Events read into windows.
    pub events: u64,
    /// Lines or events refused (skipped).
    pub refused: u64,
    /// The first reasons events were refused.
    pub refusals: Vec<String>,
    /// Events after their window had closed (not counted).
    pub late: u64,
    /// Windows of the file (every service's).
    pub windows: u64,
    /// Windows each service's first model flagged, left out of its final one.
    pub flagged: u64,
    /// Per service: its model version and the windows it was trained on.
    pub models: Vec<ServiceModel>,
    /// Wall time.
    pub seconds: f64,
}

/// One service's model after `train`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceModel {
    /// The service.
    pub service: String,
    /// Its model version (none: fewer windows than a quarter of `MIN_TRAINING_WINDOWS`).
    pub version: Option<u64>,
    /// Windows it was trained on.
    pub trained_on: u64,
    /// Training windows its first model flagged, left out of its final one.
    pub left_out: u64,
}

/// Trains `key` on `records` (its history replaced by them), then scores them with that model and, when it flags
/// some, trains again without them: an incident in the training data is not learnt as normal either.
fn train_service(
    engine: &anomaly_core::engine::Engine,
    service: String,
    key: &str,
    records: Vec<Value>,
    min: usize,
) -> ServiceModel {
    let mut model = ServiceModel {
        service,
        version: None,
        trained_on: 0,
        left_out: 0,
    };
    let result = (|| -> anomaly_core::Result<()> {
        engine.replace_history(key, &records)?;
        if records.len() < min {
            tracing::warn!(service = %model.service, windows = records.len(), needed = min, "too few windows for a model yet");
            return Ok(());
        }
        engine.train(key)?;
        let mut normal = Vec::with_capacity(records.len());
        for record in records {
            if engine.score(key, &record)?.is_anomaly() {
                model.left_out += 1;
            } else {
                normal.push(record);
            }
        }
        if model.left_out > 0 {
            engine.replace_history(key, &normal)?;
            engine.train(key)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(service = %model.service, error = %e, "training failed");
    }
    if let Ok(Some(info)) = engine.model_info(key) {
        model.version = Some(info.version);
        model.trained_on = info.trained_on as u64;
    }
    model
}

/// Reads `input` (an NDJSON file) into windows per service, nothing scored yet, then trains each service's model
/// on its windows (its history replaced by them), scores them with it and trains again without those it flags;
/// the progress is stored so that `monitor` starts after the training data with the endpoints and methods it showed.
/// A service's training windows are its newest [`MAX_HISTORY_WINDOWS`](crate::context::MAX_HISTORY_WINDOWS).
///
/// # Errors
/// When the file cannot be read or the store written.
pub async fn train(ctx: &Context, input: &Path) -> Result<TrainReport> {
    let started = Instant::now();
    let config = ctx.config.clone();
    let weekday = config.weekday_features.unwrap_or_else(|| {
        file_span(input, &config.fields.timestamp)
            .is_some_and(|(a, b)| b - a >= crate::fields::WEEK_SECONDS)
    });
    let path = input.to_path_buf();
    let reader_config = config.clone();
    let (windows, per_service, rows) = tokio::task::spawn_blocking(move || -> Result<_> {
        let config = reader_config;
        let mut windows = EventWindows::new(&config, None, &Default::default())?;
        let mut per_service: BTreeMap<String, VecDeque<Value>> = BTreeMap::new();
        let mut rows = 0u64;
        let mut keep = |closed: Vec<anomaly_core::window::WindowRow>| {
            for row in closed {
                rows += 1;
                let records = per_service.entry(row.service.clone()).or_default();
                if records.len() == crate::context::MAX_HISTORY_WINDOWS {
                    records.pop_front();
                }
                records.push_back(crate::fields::window_record(&row, &config.fields, weekday));
            }
        };
        source::read_ndjson(&path, 0, true, 0, |line| {
            match line {
                Ok(event) => {
                    if let Ok(closed) = windows.push(&event) {
                        keep(closed);
                    }
                }
                Err(reason) => tracing::warn!(reason, "line skipped"),
            }
            Ok(())
        })?;
        keep(windows.close_complete());
        Ok((windows, per_service, rows))
    })
    .await
    .map_err(|e| MonitorError::io("training", std::io::Error::other(e)))??;
    let engine = ctx.engine.clone();
    let name = ctx.name.clone();
    let min = (config.min_training_windows / 4).max(2);
    let models = tokio::task::spawn_blocking(move || {
        per_service
            .into_iter()
            .map(|(service, records)| {
                let key = Pipeline::key_of(&name, &service);
                train_service(&engine, service, &key, records.into(), min)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| MonitorError::io("training", std::io::Error::other(e)))?;
    ctx.flush();
    let progress = Progress {
        scored_through: windows.closed_through(),
        vocabulary: windows.vocabulary(),
        weekday,
    };
    state::save(
        ctx.store.as_ref(),
        &ctx.name,
        &config,
        &format!("file {}", input.display()),
        &progress,
    )
    .await?;
    let counts = windows.counts();
    Ok(TrainReport {
        events: counts.events,
        refused: counts.refused,
        refusals: windows.refusals().to_vec(),
        late: windows.late_events(),
        windows: rows,
        flagged: models.iter().map(|m| m.left_out).sum(),
        models,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// How `monitor` runs.
#[derive(Debug, Clone, Default)]
pub struct MonitorOptions {
    /// Read once and return: a file is read to its end and its last windows are closed; a cluster is read up to
    /// now (less the lateness).
    pub once: bool,
    /// Keep the scored windows in the report (for charts): every window of the run, so for bounded runs only.
    pub keep_windows: bool,
}

/// What `monitor` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorReport {
    /// Reads done.
    pub ticks: u64,
    /// Events read into windows.
    pub events: u64,
    /// Events refused (skipped).
    pub refused: u64,
    /// Events of windows scored by an earlier run (skipped).
    pub already_scored: u64,
    /// Events after their window had been scored.
    pub late: u64,
    /// Windows scored.
    pub windows: u64,
    /// Windows the engine could not take (its store unreadable): logged, left out.
    pub unscored: u64,
    /// Windows flagged.
    pub anomalies: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Anomaly documents written.
    pub written: u64,
    /// Wall time.
    pub seconds: f64,
    /// The windows scored, when asked for ([`MonitorOptions::keep_windows`]).
    #[serde(skip)]
    pub scored: Vec<ScoredWindow>,
}

/// What a running monitor shares with its HTTP routes.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The newest anomalies.
    pub recent: Recent,
    /// The figures.
    pub metrics: MonitorMetrics,
    /// The end of the last window scored (epoch seconds, as bits; 0 before any).
    pub scored_through: Arc<std::sync::atomic::AtomicU64>,
}

/// The monitor's running state.
struct Monitor<'a> {
    ctx: &'a Context,
    source: &'a Source,
    sink: Sink,
    pipeline: Pipeline,
    webhook: Option<Webhook>,
    shared: Shared,
    report: MonitorReport,
    /// Documents the sink could not take yet: sent again first at the next read (at most 10,000).
    pending: Vec<(String, Value)>,
    /// Where the next read of a cluster starts (epoch seconds, a window boundary).
    read_from: f64,
    /// After a read that failed part-way: the last event's millisecond and how many events at it were taken.
    resume: Option<(i64, u64)>,
    /// Lines of a file that were not JSON.
    lines_refused: u64,
    /// Where the next read of a file starts, and its lines so far.
    file_at: (u64, u64),
    keep_windows: bool,
    late_seen: u64,
}

/// Documents kept for a sink that is down; beyond it the oldest are dropped (and logged).
const MAX_PENDING: usize = 10_000;

/// Reads new events every `MONITOR_INTERVAL_SECONDS` (or once), scores the closed windows, writes the anomalies to
/// `sink`, raises alerts (the log, and `ALERT_WEBHOOK_URL`), and keeps the progress in the store, until `stop`
/// turns true; then writes what is pending and returns.
///
/// # Errors
/// When the store cannot be read at the start, or a webhook cannot be set up. Read and write failures during the
/// run are logged, counted and retried at the next interval.
pub async fn monitor(
    ctx: &Context,
    source: &Source,
    sink: Sink,
    shared: Shared,
    options: MonitorOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<MonitorReport> {
    let started = Instant::now();
    let config = ctx.config.clone();
    let progress = state::load(ctx.store.as_ref(), &ctx.name).await?;
    let pipeline = Pipeline::new(
        &config,
        &ctx.name,
        ctx.engine.clone(),
        progress.scored_through,
        &progress.vocabulary,
        config.weekday_features.unwrap_or(progress.weekday),
    )?;
    let webhook = match &config.alert_webhook_url {
        None => None,
        Some(url) => {
            let metrics = shared.metrics.clone();
            let settings = WebhookSettings {
                attempts: config.alert_webhook_attempts,
                // The alert rule already sends one alert per incident.
                cooldown: Duration::ZERO,
                ..WebhookSettings::new(url.clone())
            };
            let (webhook, task) = Webhook::start(settings, move |outcome: WebhookOutcome| {
                metrics.alert("webhook", outcome.as_str());
            })
            .map_err(|reason| {
                MonitorError::Config(service_kit::KitError::Config {
                    variable: "ALERT_WEBHOOK_URL".into(),
                    reason,
                })
            })?;
            Some((webhook, task))
        }
    };
    if let Err(e) = sink.prepare().await {
        tracing::warn!(error = %e, "cannot create the anomaly index yet; retried with the first write");
    }
    let now = unix_now();
    let width = config.window_seconds as f64;
    let read_from = match progress.scored_through {
        Some(t) => t.max(((now - config.max_backlog_seconds as f64) / width).floor() * width),
        None => (now / width).floor() * width,
    };
    let (webhook, task) = match webhook {
        Some((w, t)) => (Some(w), Some(t)),
        None => (None, None),
    };
    let mut m = Monitor {
        ctx,
        source,
        sink,
        pipeline,
        webhook,
        shared,
        report: MonitorReport::default(),
        pending: Vec::new(),
        read_from,
        resume: None,
        lines_refused: 0,
        file_at: (0, 0),
        keep_windows: options.keep_windows,
        late_seen: 0,
    };
    tracing::info!(source = %source.describe(), sink = m.sink.label(), "monitoring");
    loop {
        if let Err(e) = m.tick(options.once).await {
            m.shared.metrics.read_failures.inc();
            tracing::error!(error = %e, "read failed; trying again at the next interval");
            if options.once {
                m.finish(task).await;
                return Err(e);
            }
        }
        if options.once || *stop.borrow() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(config.monitor_interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    m.report.seconds = started.elapsed().as_secs_f64();
    m.finish(task).await;
    Ok(m.report)
}

impl Monitor<'_> {
    /// One read: new events in, closed windows scored and handled, progress saved. Windows scored before a read
    /// fails are handled all the same, and the next read starts after the last event taken.
    async fn tick(&mut self, once: bool) -> Result<()> {
        self.report.ticks += 1;
        let mut scored = Vec::new();
        let read = self.read(once, &mut scored).await;
        self.handle(scored).await;
        let now = unix_now();
        let metrics = &self.shared.metrics;
        if read.is_ok() {
            metrics.last_read.set(now);
        }
        if let Some(t) = self.pipeline.scored_through() {
            metrics.read_lag.set((now - t).max(0.0));
            self.shared
                .scored_through
                .store(t.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
        self.sync_counts();
        self.save().await?;
        read
    }

    /// Saves where the monitor got to (documents still pending for the sink are kept in memory meanwhile).
    async fn save(&self) -> Result<()> {
        let progress = Progress {
            scored_through: self.pipeline.scored_through(),
            vocabulary: self.pipeline.vocabulary(),
            weekday: self.pipeline.weekday(),
        };
        state::save(
            self.ctx.store.as_ref(),
            &self.ctx.name,
            &self.ctx.config,
            &self.source.describe(),
            &progress,
        )
        .await
    }

    /// Reads the new events into the pipeline, adding the windows they close to `scored`.
    async fn read(&mut self, once: bool, scored: &mut Vec<ScoredWindow>) -> Result<()> {
        let config = self.ctx.config.clone();
        match self.source {
            Source::File(path) => {
                let (offset, lines) = self.file_at;
                let pipeline = &mut self.pipeline;
                let refused = &mut self.lines_refused;
                let read = tokio::task::block_in_place(|| {
                    source::read_ndjson(path, offset, once, lines, |line| {
                        match line {
                            Ok(event) => match pipeline.push(&event) {
                                Ok(s) => scored.extend(s),
                                Err(reason) => tracing::debug!(reason, "event refused"),
                            },
                            Err(reason) => {
                                *refused += 1;
                                tracing::warn!(reason, "line skipped");
                            }
                        }
                        Ok(())
                    })
                });
                let (offset, read) = read?;
                self.file_at = (offset, lines + read);
                if once {
                    scored.extend(tokio::task::block_in_place(|| {
                        self.pipeline.close_complete()
                    }));
                }
            }
            Source::Elastic { client, index } => {
                let width = config.window_seconds as f64;
                let until = ((unix_now() - config.lateness_seconds as f64) / width).floor() * width;
                // From where the last read ended, or from the last event taken when it failed part-way (skipping
                // the events at that millisecond already taken).
                let (from_ms, mut skip) = self
                    .resume
                    .unwrap_or(((self.read_from * 1000.0).round() as i64, 0));
                let until_ms = (until * 1000.0).round() as i64;
                if until_ms > from_ms {
                    let mut batch = Vec::with_capacity(BATCH);
                    let mut last: Option<(i64, u64)> = self.resume;
                    let pipeline = &mut self.pipeline;
                    let field = config.fields.timestamp.as_str();
                    let push = |batch: &mut Vec<Value>,
                                pipeline: &mut Pipeline,
                                scored: &mut Vec<ScoredWindow>| {
                        tokio::task::block_in_place(|| {
                            for event in batch.drain(..) {
                                if let Ok(s) = pipeline.push(&event) {
                                    scored.extend(s);
                                }
                            }
                        });
                    };
                    let result = source::scan(client, index, field, (from_ms, until_ms), |event| {
                        let ms = crate::fields::event_time(&event, field)
                            .map(|t| (t * 1000.0).round() as i64);
                        if skip > 0 && ms == Some(from_ms) {
                            skip -= 1;
                            return Ok(());
                        }
                        if let Some(ms) = ms {
                            last = match last {
                                Some((t, n)) if t == ms => Some((t, n + 1)),
                                _ => Some((ms, 1)),
                            };
                        }
                        batch.push(event);
                        if batch.len() >= BATCH {
                            push(&mut batch, pipeline, scored);
                        }
                        Ok(())
                    })
                    .await;
                    push(&mut batch, pipeline, scored);
                    if let Err(e) = result {
                        self.resume = last.or(self.resume);
                        return Err(e);
                    }
                    scored.extend(tokio::task::block_in_place(|| pipeline.advance(until)));
                    self.read_from = until;
                    self.resume = None;
                }
            }
        }
        Ok(())
    }

    /// Counts, documents, alerts and the sink for newly scored windows.
    async fn handle(&mut self, scored: Vec<ScoredWindow>) {
        let config = &self.ctx.config;
        let metrics = &self.shared.metrics;
        let mut docs = Vec::new();
        for w in &scored {
            metrics.windows_scored.inc();
            if !w.is_anomaly() {
                continue;
            }
            let (id, doc) = anomalies::document(&self.ctx.name, w, config.window_seconds);
            metrics
                .anomalies
                .get_or_create(&DetectorLabel {
                    detector: doc["detector"].as_str().unwrap_or_default().to_string(),
                })
                .inc();
            if w.alert {
                tracing::warn!(
                    service = %w.row.service,
                    window_start = %doc["window_start"].as_str().unwrap_or_default(),
                    score = ?doc["score"].as_f64(),
                    rationale = %doc["rationale"].as_str().unwrap_or_default(),
                    "ALERT"
                );
                metrics.alert("log", "raised");
                if let Some(webhook) = &self.webhook {
                    webhook.send(&w.row.service, anomalies::alert_message(&doc));
                }
            }
            docs.push((id, doc));
        }
        self.shared.recent.add(docs.iter().map(|(_, d)| d.clone()));
        if self.keep_windows {
            self.report.scored.extend(scored);
        }
        self.pending.extend(docs);
        if self.pending.len() > MAX_PENDING {
            let dropped = self.pending.len() - MAX_PENDING;
            tracing::error!(
                dropped,
                "the anomaly sink has been down too long: oldest documents dropped"
            );
            self.pending.drain(..dropped);
        }
        if self.pending.is_empty() {
            return;
        }
        match self.sink.write(&self.pending).await {
            Ok(n) => {
                self.report.written += n;
                metrics.anomalies_written.inc_by(n);
                self.pending.clear();
            }
            Err(e) => {
                tracing::error!(error = %e, pending = self.pending.len(), "anomalies not written yet; trying again at the next read")
            }
        }
    }

    fn sync_counts(&mut self) {
        let c = self.pipeline.counts();
        let metrics = &self.shared.metrics;
        let refused = c.refused + self.lines_refused;
        metrics
            .events_read
            .inc_by(c.events.saturating_sub(self.report.events));
        metrics
            .events_refused
            .inc_by(refused.saturating_sub(self.report.refused));
        let late = self.pipeline.late_events();
        metrics
            .events_late
            .inc_by(late.saturating_sub(self.late_seen));
        self.late_seen = late;
        self.report.events = c.events;
        self.report.refused = refused;
        self.report.already_scored = c.already_scored;
        self.report.late = late;
        metrics
            .windows_unscored
            .inc_by(c.unscored.saturating_sub(self.report.unscored));
        self.report.unscored = c.unscored;
        self.report.windows = c.windows;
        self.report.anomalies = c.anomalies;
        self.report.alerts = c.alerts;
    }

    /// Writes what is pending, sends the queued alerts and the buffered history, within the shutdown deadline.
    async fn finish(&mut self, task: Option<service_kit::WebhookTask>) {
        if !self.pending.is_empty() {
            match self.sink.write(&self.pending).await {
                Ok(n) => {
                    self.report.written += n;
                    self.pending.clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, lost = self.pending.len(), "anomalies not written at exit")
                }
            }
        }
        if let (Some(webhook), Some(task)) = (self.webhook.take(), task) {
            let deadline = service_kit::Deadline::after(self.ctx.config.serve.shutdown_timeout);
            webhook.close(task, &deadline).await;
        }
        if let Err(e) = self.save().await {
            tracing::error!(error = %e, "progress not saved at exit: the next run scores the last windows again");
        }
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || ctx.flush()).await;
    }
}

/// Now, epoch seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The report's data for `[from, until)` (epoch seconds): the windows of the source's events (aggregated again,
/// not scored), and the anomalies the sink holds for them: the store's rows under `<monitor>/<service>`, or the
/// anomaly index's documents of this monitor.
///
/// # Errors
/// When the source, the store or the index cannot be read.
pub async fn report_data(
    ctx: &Context,
    source: &Source,
    sink: &Sink,
    (from, until): (f64, f64),
) -> Result<crate::report::ReportData> {
    use crate::report::{Mark, ReportData};
    let config = &ctx.config;
    let mut windows = EventWindows::new(config, None, &Default::default())?;
    let mut rows = Vec::new();
    let field = config.fields.timestamp.clone();
    match source {
        Source::File(path) => {
            tokio::task::block_in_place(|| {
                source::read_ndjson(path, 0, true, 0, |line| {
                    if let Ok(event) = line
                        && crate::fields::event_time(&event, &field)
                            .is_some_and(|t| t >= from && t < until)
                        && let Ok(closed) = windows.push(&event)
                    {
                        rows.extend(closed);
                    }
                    Ok(())
                })
            })?;
        }
        Source::Elastic { client, index } => {
            let range = ((from * 1000.0) as i64, (until * 1000.0) as i64);
            source::scan(client, index, &field, range, |event| {
                if let Ok(closed) = windows.push(&event) {
                    rows.extend(closed);
                }
                Ok(())
            })
            .await?;
        }
    }
    // The newest window may still be filling: left out, as the monitor leaves it.
    rows.extend(windows.close_complete());
    let mut marks = Vec::new();
    let mark = |doc: &Value| -> Option<Mark> {
        let start = doc["window_start"].as_str()?;
        Some(Mark {
            service: doc["service"].as_str()?.to_string(),
            window_start: chrono::DateTime::parse_from_rfc3339(start)
                .ok()?
                .timestamp_millis() as f64
                / 1000.0,
            score: doc["score"].as_f64().unwrap_or(0.0),
            alerted: doc["alerted"] == true,
        })
    };
    match sink {
        Sink::Store(store) => {
            let services: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r.service.as_str()).collect();
            for service in services {
                let mut query = anomaly_store::AnomalyQuery {
                    key: Some(format!("{}/{service}", ctx.name)),
                    since: chrono::DateTime::from_timestamp(from as i64, 0),
                    until: chrono::DateTime::from_timestamp(until.ceil() as i64, 0),
                    limit: 1_000,
                    ..anomaly_store::AnomalyQuery::default()
                };
                loop {
                    let page = store.query_anomalies(&query).await?;
                    marks.extend(page.items.iter().filter_map(|a| mark(&a.anomaly.context)));
                    match page.next {
                        Some(next) => query.after = Some(next),
                        None => break,
                    }
                }
            }
        }
        Sink::Elastic { client, index } => {
            let range = ((from * 1000.0) as i64, (until * 1000.0) as i64);
            let name = ctx.name.clone();
            let scan = source::scan(client, index, "@timestamp", range, |doc| {
                if doc["monitor"] == name.as_str() {
                    marks.extend(mark(&doc));
                }
                Ok(())
            })
            .await;
            if let Err(e) = scan {
                tracing::warn!(error = %e, "anomalies not read from the index; the charts show none");
            }
        }
    }
    Ok(ReportData {
        windows: rows,
        marks,
        incidents: Vec::new(),
        window_seconds: config.window_seconds as f64,
    })
}
