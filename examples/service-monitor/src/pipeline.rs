//! The monitor's core, shared by `train` and `monitor`: events → windows per service → the record engine → verdicts,
//! explanations and alerts.

use std::collections::HashMap;
use std::sync::Arc;

use anomaly_core::alert::{AlertRule, AlertState, AlertTransition};
use anomaly_core::engine::{Engine, RecordExplanation, RecordVerdict};
use anomaly_core::window::{Vocabularies, WindowAggregator, WindowRow};
use serde_json::Value;

use crate::config::Config;
use crate::error::Result;
use crate::fields::{event_time, window_params, window_record};

/// Reasons of refused events kept for the summary (the first few; the rest are only counted).
const MAX_REASONS: usize = 5;

/// One closed window of one service, scored.
#[derive(Debug, Clone)]
pub struct ScoredWindow {
    /// The window's statistics.
    pub row: WindowRow,
    /// The record the engine scored.
    pub record: Value,
    /// The verdict; `None` while the service's model is still learning.
    pub verdict: Option<RecordVerdict>,
    /// Why it was flagged, in field names (flagged windows only).
    pub explanation: Option<RecordExplanation>,
    /// The version of the model that scored it.
    pub model_version: Option<u64>,
    /// Whether this window raised an alert (the alert rule's streak was reached).
    pub alert: bool,
}

impl ScoredWindow {
    /// Whether either detector flagged the window.
    pub fn is_anomaly(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| v.is_anomaly)
    }
}

/// Counts of what the pipeline has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events read into windows.
    pub events: u64,
    /// Events refused (not an object, no service or timestamp, a non-numeric status or latency).
    pub refused: u64,
    /// Events older than windows already scored in an earlier run (skipped, not counted again).
    pub already_scored: u64,
    /// Windows scored (or learnt, while a service has no model).
    pub windows: u64,
    /// Windows the engine could not take (its store unreadable): logged, left out.
    pub unscored: u64,
    /// Windows flagged.
    pub anomalies: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// Events in, closed windows out, as every reader needs them: events of windows an earlier run scored are skipped,
/// events from the future are refused, and a gap in the data longer than the aggregator's span is crossed window by
/// window rather than refused.
pub struct EventWindows {
    windows: WindowAggregator,
    /// Windows that end at or before this (epoch seconds) were scored by an earlier run: their events are skipped.
    resume_from: Option<f64>,
    /// The end of the last window closed (epoch seconds).
    closed_through: Option<f64>,
    width: f64,
    /// How far the watermark is moved at a time across a gap, in seconds (half the aggregator's span).
    gap_step: f64,
    /// How far ahead of the clock an event may be, in seconds.
    future_slack: f64,
    counts: Counts,
    reasons: Vec<String>,
    fields: crate::fields::Fields,
}

impl std::fmt::Debug for EventWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWindows")
            .field("counts", &self.counts)
            .field("closed_through", &self.closed_through)
            .finish_non_exhaustive()
    }
}

impl EventWindows {
    /// The windowing of `config`, resuming after `scored_through` with the services' known endpoints and methods.
    ///
    /// # Errors
    /// [`MonitorError::Engine`](crate::MonitorError::Engine) when the window settings are refused.
    pub fn new(
        config: &Config,
        scored_through: Option<f64>,
        vocabulary: &Vocabularies,
    ) -> Result<Self> {
        let mut windows = window_params(config).build()?;
        windows.learn_vocabulary(vocabulary);
        let width = config.window_seconds as f64;
        Ok(EventWindows {
            windows,
            resume_from: scored_through,
            closed_through: scored_through,
            width,
            gap_step: (crate::fields::max_span_windows(config) / 2).max(1) as f64 * width,
            future_slack: (config.lateness_seconds + config.window_seconds).max(300) as f64,
            counts: Counts::default(),
            reasons: Vec::new(),
            fields: config.fields.clone(),
        })
    }

    /// Adds one event; the windows it closed. A refused event is counted (its reason kept among the first few).
    ///
    /// # Errors
    /// The reason the event is refused, for a caller that is strict; the windows carry on either way.
    pub fn push(&mut self, event: &Value) -> Result<Vec<WindowRow>, String> {
        let t = event_time(event, &self.fields.timestamp);
        if let Some(through) = self.resume_from
            && let Some(t) = t
            && t < through
        {
            self.counts.already_scored += 1;
            return Ok(Vec::new());
        }
        // A clock far ahead (or a typo in a year) would close every window up to it and stall what follows.
        if let Some(t) = t
            && t > crate::commands::unix_now() + self.future_slack
        {
            return Err(self.refuse(format!(
                "field `{}`: {t} is more than {} s in the future",
                self.fields.timestamp, self.future_slack
            )));
        }
        // Across a gap in the data, close the silent windows a part of the span at a time.
        let mut rows = Vec::new();
        if let (Some(t), Some(mut w)) = (t, self.windows.watermark()) {
            let goal = t - self.windows.params().lateness();
            while goal - w > self.gap_step {
                w += self.gap_step;
                rows.extend(self.windows.advance(w));
            }
        }
        match self.windows.push(event) {
            Ok(closed) => {
                self.counts.events += 1;
                rows.extend(closed);
            }
            Err(e) => {
                let reason = self.refuse(e.to_string());
                self.note(&rows);
                return if rows.is_empty() {
                    Err(reason)
                } else {
                    Ok(rows)
                };
            }
        }
        self.note(&rows);
        Ok(rows)
    }

    /// Closes every window ending at or before `watermark` (epoch seconds), as when every event up to it has been
    /// read.
    pub fn advance(&mut self, watermark: f64) -> Vec<WindowRow> {
        let rows = self.windows.advance(watermark);
        self.note(&rows);
        rows
    }

    /// Closes every window that ended before the newest event's window began: for an input read to its end, whose
    /// last window may still be filling (the next run reads its events again).
    pub fn close_complete(&mut self) -> Vec<WindowRow> {
        let Some(newest) = self
            .windows
            .watermark()
            .map(|w| w + self.windows.params().lateness())
        else {
            return Vec::new();
        };
        self.advance((newest / self.width).floor() * self.width)
    }

    fn note(&mut self, rows: &[WindowRow]) {
        if let Some(end) = rows
            .iter()
            .map(|r| r.window_start + self.width)
            .reduce(f64::max)
        {
            self.closed_through = Some(self.closed_through.map_or(end, |t| t.max(end)));
        }
    }

    fn refuse(&mut self, reason: String) -> String {
        self.counts.refused += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason.clone());
        }
        reason
    }

    /// The end of the last window closed, epoch seconds.
    pub fn closed_through(&self) -> Option<f64> {
        self.closed_through
    }

    /// Events that arrived after their window was closed.
    pub fn late_events(&self) -> u64 {
        self.windows.late_events()
    }

    /// What has been seen (events; the window counts are the pipeline's).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The first few reasons events were refused.
    pub fn refusals(&self) -> &[String] {
        &self.reasons
    }

    /// The endpoints and methods each service has shown, to carry over to the next run.
    pub fn vocabulary(&self) -> Vocabularies {
        self.windows.vocabulary()
    }
}

/// Events in, scored windows out: [`EventWindows`], then each closed window through the engine and the alert rule.
/// Not thread-safe by itself: one reader feeds it.
pub struct Pipeline {
    name: String,
    windows: EventWindows,
    engine: Arc<Engine>,
    /// A service's alert state before its first window.
    fresh: AlertState,
    alerts: HashMap<String, AlertState>,
    max_services: usize,
    /// The end of the last window scored (epoch seconds).
    scored_through: Option<f64>,
    width: f64,
    counts: Counts,
    fields: crate::fields::Fields,
    weekday: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline over `engine` whose keys are `<name>/<service>`, resuming after `scored_through` (epoch seconds,
    /// the end of the last window an earlier run scored) with the services' known endpoints and methods.
    ///
    /// # Errors
    /// [`MonitorError::Engine`](crate::MonitorError::Engine) when the window or alert settings are refused.
    pub fn new(
        config: &Config,
        name: &str,
        engine: Arc<Engine>,
        scored_through: Option<f64>,
        vocabulary: &Vocabularies,
        weekday: bool,
    ) -> Result<Pipeline> {
        let rule = AlertRule {
            min_consecutive: config.alert_min_consecutive,
            cooldown: config.alert_cooldown_windows,
        };
        let fresh = rule.start()?;
        Ok(Pipeline {
            name: name.to_string(),
            windows: EventWindows::new(config, scored_through, vocabulary)?,
            engine,
            fresh,
            alerts: HashMap::new(),
            max_services: config.max_services,
            scored_through,
            width: config.window_seconds as f64,
            counts: Counts::default(),
            fields: config.fields.clone(),
            weekday,
        })
    }

    /// The engine key of `service` for the monitor `name`.
    pub fn key_of(name: &str, service: &str) -> String {
        format!("{name}/{service}")
    }

    /// The engine key of `service`.
    pub fn key(&self, service: &str) -> String {
        Self::key_of(&self.name, service)
    }

    /// Adds one event; returns the windows it closed, scored.
    ///
    /// # Errors
    /// The reason the event is refused (counted); the pipeline carries on either way.
    pub fn push(&mut self, event: &Value) -> Result<Vec<ScoredWindow>, String> {
        let rows = self.windows.push(event)?;
        Ok(self.score(rows))
    }

    /// Closes every window that ended before the newest event's window began, and scores them (see
    /// [`EventWindows::close_complete`]).
    pub fn close_complete(&mut self) -> Vec<ScoredWindow> {
        let rows = self.windows.close_complete();
        self.score(rows)
    }

    /// Closes every window ending at or before `watermark` (epoch seconds) and scores them.
    pub fn advance(&mut self, watermark: f64) -> Vec<ScoredWindow> {
        let rows = self.windows.advance(watermark);
        self.score(rows)
    }

    /// The end of the last window scored, epoch seconds.
    pub fn scored_through(&self) -> Option<f64> {
        self.scored_through
    }

    /// Events that arrived after their window was scored.
    pub fn late_events(&self) -> u64 {
        self.windows.late_events()
    }

    /// What has been seen: the events' counts and the windows'.
    pub fn counts(&self) -> Counts {
        let e = self.windows.counts();
        Counts {
            events: e.events,
            refused: e.refused,
            already_scored: e.already_scored,
            ..self.counts.clone()
        }
    }

    /// The first few reasons events were refused.
    pub fn refusals(&self) -> &[String] {
        self.windows.refusals()
    }

    /// The endpoints and methods each service has shown, to carry over to the next run.
    pub fn vocabulary(&self) -> Vocabularies {
        self.windows.vocabulary()
    }

    /// Whether windows carry their day of week.
    pub fn weekday(&self) -> bool {
        self.weekday
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Scores closed windows through the engine (each service's in time order; the engine learns the normal
    /// ones), explains the flagged ones with the model that scored them, and runs each service's alert rule.
    fn score(&mut self, rows: Vec<WindowRow>) -> Vec<ScoredWindow> {
        let mut scored = Vec::with_capacity(rows.len());
        for row in rows {
            let end = row.window_start + self.width;
            let key = self.key(&row.service);
            let record = window_record(&row, &self.fields, self.weekday);
            // Explained before it is observed: observing may retrain the key (drift, a lasting change), and the
            // explanation must be the scoring model's.
            let explanation = match self.engine.score(&key, &record) {
                Ok(o) if o.is_anomaly() => self.engine.explain(&key, &record).ok().flatten(),
                _ => None,
            };
            let outcome = match self.engine.observe(&key, &record) {
                Ok(o) => o,
                Err(e) => {
                    // A window the engine refuses (a store that cannot be read) is logged, counted and left out.
                    tracing::warn!(key, error = %e, "window not scored");
                    self.counts.unscored += 1;
                    continue;
                }
            };
            self.scored_through = Some(self.scored_through.map_or(end, |t| t.max(end)));
            self.counts.windows += 1;
            let verdict = outcome.verdict().cloned();
            let is_anomaly = verdict.as_ref().is_some_and(|v| v.is_anomaly);
            self.counts.anomalies += u64::from(is_anomaly);
            let explanation = explanation.filter(|_| is_anomaly);
            let model_version = verdict.as_ref().map(|v| v.model_version);
            let alert = verdict.is_some()
                && self.alert_state(&row.service).observe(is_anomaly) == AlertTransition::Raised;
            self.counts.alerts += u64::from(alert);
            scored.push(ScoredWindow {
                row,
                record,
                verdict,
                explanation,
                model_version,
                alert,
            });
        }
        scored
    }

    /// The service's alert state; at most `MAX_SERVICES` are kept (the idle ones go first when full).
    fn alert_state(&mut self, service: &str) -> &mut AlertState {
        if !self.alerts.contains_key(service) && self.alerts.len() >= self.max_services {
            self.alerts.retain(|_, s| s.is_open());
            if self.alerts.len() >= self.max_services
                && let Some(k) = self.alerts.keys().next().cloned()
            {
                self.alerts.remove(&k);
            }
        }
        let fresh = &self.fresh;
        self.alerts
            .entry(service.to_string())
            .or_insert_with(|| fresh.clone())
    }
}
