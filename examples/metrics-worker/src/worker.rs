//! The consumer: JetStream messages through the detectors into the store, each acknowledged once its detections
//! are persisted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomaly_core::stream::{SeriesDetection, SeriesDetectors, SeriesOutcome};
use anomaly_store::{Anomaly, AnomalyQuery, Store, StoreError};
use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::alerts::Alerts;
use crate::config::Config;
use crate::error::WorkerError;
use crate::message::{MetricPoint, Refusal};
use crate::metrics::{MethodLabel, ReasonLabel, WorkerMetrics};

/// How far back (before the message's publication, by the server's clock) a redelivered message's earlier
/// detections are looked for: the clock difference tolerated between the NATS server and the worker.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest pause between two attempts to persist a message's detections.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Faults a test injects to stand for a worker that dies at the worst moment. Not for production use.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Never acknowledge (as if every acknowledgement were lost).
    pub never_ack: bool,
    /// Stop consuming, without acknowledging it, right after the message whose detections bring the number
    /// stored by this worker to this count (as if it died between the commit and the acknowledgement).
    pub die_after_detections: Option<u64>,
    /// Negatively acknowledge (redeliver at once) the first delivery of each message that made a detection,
    /// after persisting it.
    pub nak_first_delivery_of_detections: bool,
}

/// Connects to `NATS_URL`.
pub(crate) async fn connect_client(
    config: &Config,
    name: &str,
) -> Result<async_nats::Client, WorkerError> {
    let url = &config.nats_url;
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name(name)
        .connect(url.as_str())
        .await
        .map_err(|e| WorkerError::nats(url, format!("cannot connect: {e}")))
}

/// The stream `NATS_STREAM` over `<prefix>.>`, created when missing.
///
/// # Errors
/// [`WorkerError::Nats`] when the server refuses, or when a stream of that name exists over other subjects.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
) -> Result<jetstream::stream::Stream, WorkerError> {
    let url = &config.nats_url;
    let subjects = config.stream_subjects();
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![subjects.clone()],
            max_age: config.stream_max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| WorkerError::nats(url, format!("stream {}: {e}", config.stream)))?;
    let existing = &stream.cached_info().config.subjects;
    if !existing.contains(&subjects) {
        return Err(WorkerError::nats(
            url,
            format!(
                "stream {} exists with subjects {existing:?}, not {subjects}: set NATS_STREAM to another name or \
                 NATS_SUBJECT_PREFIX to match",
                config.stream
            ),
        ));
    }
    Ok(stream)
}

/// What [`connect`] attaches to.
pub(crate) struct Attached {
    pub(crate) client: async_nats::Client,
    pub(crate) stream: jetstream::stream::Stream,
    pub(crate) consumer: PullConsumer,
    /// When this worker's consumer was created beside consumers of another layout (`WORKER_COUNT` changed):
    /// the furthest stream sequence they had delivered. Messages up to it may have been handled by the old
    /// layout, so their detections are checked against the store as redeliveries are.
    pub(crate) replay_until: u64,
}

/// The worker count of the layout whose consumer over `base` is `name`: 1 for `base` itself, `n` for
/// `<base>-<i>-of-<n>`; `None` for any other consumer.
fn layout_of(name: &str, base: &str) -> Option<u32> {
    if name == base {
        return Some(1);
    }
    let rest = name.strip_prefix(base)?.strip_prefix('-')?;
    let (i, n) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(i) {
        return None;
    }
    n.parse().ok().filter(|_| digits(n))
}

/// Connects to NATS, creates the stream when it is missing, and this worker's durable consumer.
///
/// A new consumer starts at the stream's beginning, unless consumers of another layout of the same
/// `NATS_CONSUMER` exist (the worker count changed): then it starts after the lowest of their acknowledgement
/// floors, so nothing they had not finished is skipped. Whenever consumers of another layout exist (this worker's
/// consumer new or left from an earlier layout), messages up to the furthest one they delivered may have been
/// handled by them, so their detections are checked against the store before being stored.
pub(crate) async fn connect(config: &Config) -> Result<Attached, WorkerError> {
    let client = connect_client(config, "metrics-worker").await?;
    let js = jetstream::new(client.clone());
    let stream = ensure_stream(&js, config).await?;
    let nats = |what: String| WorkerError::nats(&config.nats_url, what);
    let name = config.consumer_name();
    let mut mine = false;
    let mut others = Vec::new();
    let mut infos = stream.consumers();
    while let Some(info) = infos.next().await {
        let info =
            info.map_err(|e| nats(format!("listing the consumers of {}: {e}", config.stream)))?;
        if info.name == name {
            mine = true;
        } else if layout_of(&info.name, &config.consumer).is_some_and(|n| n != config.worker_count)
        {
            others.push(info);
        }
    }
    let mut deliver_policy = jetstream::consumer::DeliverPolicy::All;
    let replay_until = others
        .iter()
        .map(|i| i.delivered.stream_sequence)
        .max()
        .unwrap_or(0);
    if !mine && let Some(floor) = others.iter().map(|i| i.ack_floor.stream_sequence).min() {
        deliver_policy = jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: floor + 1,
        };
    }
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|i| i.name.as_str()).collect();
        tracing::warn!(
            consumer = %name,
            new = !mine,
            replay_until,
            consumers = ?names,
            "consumers of another worker layout exist on this stream: messages up to replay_until are checked \
             against the store; stop that layout's workers before starting this one, and once every worker of \
             this layout runs, delete those consumers (`nats consumer rm`) or they keep the stream's messages pending"
        );
    }
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                filter_subject: config.stream_subjects(),
                deliver_policy,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| nats(format!("consumer {name}: {e}")))?;
    Ok(Attached {
        client,
        stream,
        consumer,
        replay_until,
    })
}

/// Reads the consumer's backlog from the server every `every` into `metrics`, until `stop`.
pub(crate) async fn watch_backlog(
    stream: jetstream::stream::Stream,
    name: String,
    metrics: WorkerMetrics,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match stream.consumer_info(&name).await {
            Ok(info) => metrics.backlog(&info),
            Err(e) => tracing::debug!(error = %e, "cannot read the consumer's backlog"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One message's place in the stream.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    sequence: u64,
    delivered: i64,
    published: DateTime<Utc>,
}

/// The consuming side of the worker.
pub(crate) struct Consumer {
    pub(crate) config: Arc<Config>,
    pub(crate) client: async_nats::Client,
    pub(crate) consumer: PullConsumer,
    pub(crate) detectors: SeriesDetectors,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) hooks: TestHooks,
    /// The detectors' configuration as stored with each detection.
    pub(crate) config_json: serde_json::Value,
    pub(crate) stored: u64,
    /// See [`Attached::replay_until`].
    pub(crate) replay_until: u64,
    /// Announces each stored detection (NATS, webhook).
    pub(crate) alerts: Alerts,
    /// Counts stored detections, for the dashboard's live updates.
    pub(crate) changes: watch::Sender<u64>,
}

impl Consumer {
    /// Consumes until `stop` turns true; the message in hand is finished (persisted, acknowledged) first.
    /// Returns the announcer, for its queued webhook messages.
    pub(crate) async fn run(mut self, stop: watch::Receiver<bool>) -> Alerts {
        self.consume(stop).await;
        self.alerts
    }

    async fn consume(&mut self, mut stop: watch::Receiver<bool>) {
        'connect: loop {
            let mut messages = match self.consumer.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from the consumer; retrying");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue 'connect,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    next = messages.next() => next,
                };
                match next {
                    None => continue 'connect,
                    Some(Err(e)) => {
                        // Missed heartbeats, a server restart: the stream recovers by itself; the pause keeps a
                        // lasting failure from spinning.
                        tracing::warn!(error = %e, "pulling messages failed; continuing");
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => return,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                    Some(Ok(message)) => {
                        if !self.handle(message).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Handles one message; `false` when the worker must stop (a test's simulated death).
    async fn handle(&mut self, message: jetstream::Message) -> bool {
        let received = Instant::now();
        let delivery = match message.info() {
            Ok(info) => Delivery {
                sequence: info.stream_sequence,
                delivered: info.delivered,
                published: DateTime::from_timestamp_nanos(
                    i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                ),
            },
            Err(e) => {
                tracing::warn!(error = %e, subject = %message.subject, "message without JetStream metadata; acknowledged and skipped");
                self.ack(&message).await;
                return true;
            }
        };
        let subject_series = message
            .subject
            .as_str()
            .strip_prefix(self.config.subject_prefix.as_str())
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or_default();
        if !self.config.owns(subject_series) {
            // Another worker's series: read by every worker, handled by its owner alone.
            self.metrics.foreign.inc();
            self.ack(&message).await;
            return true;
        }
        let point = match MetricPoint::parse(&message.payload) {
            Ok(p) if p.series != subject_series => {
                let refusal = Refusal::BadSeries(format!(
                    "the body names `{}` but was published on `{}`",
                    p.series, message.subject
                ));
                self.dead_letter(&message, delivery, &refusal, Some(&p.series))
                    .await;
                self.ack(&message).await;
                return true;
            }
            Ok(p) => p,
            Err((refusal, series)) => {
                self.dead_letter(&message, delivery, &refusal, series.as_deref())
                    .await;
                self.ack(&message).await;
                return true;
            }
        };
        let outcome = self
            .detectors
            .observe(&point.series, delivery.sequence, point.value);
        self.metrics.series(self.detectors.stats());
        let detections = match outcome {
            Ok(SeriesOutcome::Observed(d)) => d,
            Ok(SeriesOutcome::AlreadySeen { last_position }) => {
                tracing::debug!(series = %point.series, sequence = delivery.sequence, last_position, "redelivery of a processed message");
                self.metrics.redelivered.inc();
                self.ack(&message).await;
                return true;
            }
            Err(e) => {
                // Values are checked on parsing; kept as a refusal rather than a panic.
                let refusal = Refusal::Malformed(e.to_string());
                self.dead_letter(&message, delivery, &refusal, Some(&point.series))
                    .await;
                self.ack(&message).await;
                return true;
            }
        };
        let rows: Vec<Anomaly> = detections
            .iter()
            .map(|d| self.anomaly(&point, delivery, d))
            .collect();
        let stored = if rows.is_empty() {
            Vec::new()
        } else {
            self.persist(rows, &point.series, delivery).await
        };
        if !stored.is_empty() {
            self.changes.send_modify(|n| *n += stored.len() as u64);
            for a in &stored {
                self.alerts.announce(a).await;
            }
        }
        let stored = stored.len() as u64;
        self.metrics.processed.inc();
        self.stored += stored;
        let hooks = &self.hooks;
        if hooks
            .die_after_detections
            .is_some_and(|n| stored > 0 && self.stored >= n)
        {
            tracing::info!(
                sequence = delivery.sequence,
                "test hook: stopping before the acknowledgement"
            );
            return false;
        }
        if hooks.nak_first_delivery_of_detections
            && !detections.is_empty()
            && delivery.delivered == 1
        {
            let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
        } else {
            self.ack(&message).await;
        }
        self.metrics
            .processing
            .observe(received.elapsed().as_secs_f64());
        let since_publication = (Utc::now() - delivery.published)
            .to_std()
            .unwrap_or_default();
        self.metrics
            .end_to_end
            .observe(since_publication.as_secs_f64());
        true
    }

    async fn ack(&self, message: &jetstream::Message) {
        if self.hooks.never_ack {
            return;
        }
        if let Err(e) = message.ack().await {
            // The server redelivers it after NATS_ACK_WAIT_SECONDS; its detections are not stored twice.
            tracing::warn!(error = %e, "acknowledgement failed; the message will be redelivered");
        }
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        delivery: Delivery,
        refusal: &Refusal,
        series: Option<&str>,
    ) {
        let reason = match refusal {
            Refusal::Malformed(_) => "malformed",
            Refusal::NonFinite => "non_finite",
            Refusal::BadSeries(_) => "bad_series",
        };
        self.metrics
            .dead_letters
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
        let subject = self.config.dead_letter_subject(series);
        tracing::warn!(
            %subject,
            sequence = delivery.sequence,
            from = %message.subject,
            reason = %refusal,
            "message refused; sent to the dead-letter subject"
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Metrics-Refusal",
            refusal.to_string().replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert("Metrics-Subject", message.subject.as_str());
        headers.insert(
            "Metrics-Stream-Sequence",
            delivery.sequence.to_string().as_str(),
        );
        let sent = self
            .client
            .publish_with_headers(subject.clone(), headers, message.payload.clone())
            .await;
        let flushed = match sent {
            Ok(()) => self.client.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = flushed {
            tracing::warn!(%subject, error = %e, "cannot publish a dead letter; the refusal is logged above");
        }
    }

    /// The detection as stored, with everything that decided it.
    fn anomaly(&self, point: &MetricPoint, delivery: Delivery, d: &SeriesDetection) -> Anomaly {
        let context = json!({
            "series": point.series,
            "value": point.value,
            "timestamp": point.timestamp.map(|t| t.to_rfc3339()),
            "stream": self.config.stream,
            "stream_sequence": delivery.sequence,
            "published_at": delivery.published.to_rfc3339(),
            "method": d.method.as_str(),
            "score": d.score,
            "threshold": d.threshold,
            "z_score": d.z_score,
            "input_buffer": d.recent_values,
            "smoothed_scores": d.recent_smoothed_scores,
        });
        Anomaly {
            rationale: d.rationale.clone(),
            explanation: serde_json::to_value(&d.explanation).unwrap_or(serde_json::Value::Null),
            context,
            config: self.config_json.clone(),
            ..Anomaly::flagged(
                point.series.clone(),
                d.method.as_str(),
                d.score,
                d.threshold,
            )
        }
    }

    /// Stores `rows` (one message's detections) in one transaction, retrying until it succeeds: the message is
    /// acknowledged only afterwards. For a redelivered message, detections already stored by an earlier delivery
    /// (same series, method and stream sequence) are left out. Returns the ones stored.
    async fn persist(&self, rows: Vec<Anomaly>, series: &str, delivery: Delivery) -> Vec<Anomaly> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let rows = if delivery.delivered > 1 || delivery.sequence <= self.replay_until {
                    self.not_yet_stored(rows.clone(), series, delivery).await?
                } else {
                    rows.clone()
                };
                if !rows.is_empty() {
                    self.store.insert_anomalies(&rows).await?;
                }
                Ok::<_, StoreError>(rows)
            };
            match attempt.await {
                Ok(stored) => {
                    for a in &stored {
                        self.metrics
                            .anomalies
                            .get_or_create(&MethodLabel {
                                method: a.detector.clone(),
                            })
                            .inc();
                    }
                    return stored;
                }
                Err(e @ StoreError::InvalidInput { .. }) => {
                    // Retrying cannot help: logged whole, and the message acknowledged so it is not redelivered forever.
                    tracing::error!(error = %e, %series, sequence = delivery.sequence, rows = ?rows, "the database refuses these detections; dropped");
                    return Vec::new();
                }
                Err(e) => {
                    self.metrics.store_failures.inc();
                    tracing::warn!(error = %e, %series, sequence = delivery.sequence, retry_in_ms = backoff.as_millis() as u64, "cannot store detections; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// `rows` without those an earlier delivery of the same message already stored.
    async fn not_yet_stored(
        &self,
        rows: Vec<Anomaly>,
        series: &str,
        delivery: Delivery,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let since = delivery.published - chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let mut query = AnomalyQuery::new().key(series).limit(500);
        query.since = Some(since);
        let mut stored: HashSet<String> = HashSet::new();
        loop {
            let page = self.store.query_anomalies(&query).await?;
            for a in &page.items {
                if a.anomaly
                    .context
                    .get("stream_sequence")
                    .and_then(|s| s.as_u64())
                    == Some(delivery.sequence)
                    && a.anomaly.context.get("stream").and_then(|s| s.as_str())
                        == Some(self.config.stream.as_str())
                {
                    stored.insert(a.anomaly.detector.clone());
                }
            }
            match page.next {
                Some(cursor) => query = query.after(Some(cursor)),
                None => break,
            }
        }
        if !stored.is_empty() {
            tracing::info!(%series, sequence = delivery.sequence, methods = ?stored, "redelivered message: its detections were already stored");
        }
        Ok(rows
            .into_iter()
            .filter(|a| !stored.contains(&a.detector))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::layout_of;

    #[test]
    fn layout_consumers_are_recognised_by_name() {
        for (name, n) in [
            ("metrics-worker", 1),
            ("metrics-worker-0-of-2", 2),
            ("metrics-worker-11-of-12", 12),
        ] {
            assert_eq!(layout_of(name, "metrics-worker"), Some(n), "{name}");
        }
        for name in [
            "metrics-worker-x",
            "metrics-worker-1-of-",
            "metrics-worker-a-of-2",
            "metrics",
            "other-0-of-2",
        ] {
            assert_eq!(layout_of(name, "metrics-worker"), None, "{name}");
        }
    }
}
