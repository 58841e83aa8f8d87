//! What a flagged window becomes: an anomaly document (written back to the `api-anomalies` index with a
//! deterministic id, or to the store), and an alert message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anomaly_store::{Anomaly, AnomalyQuery, Store};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::elastic::Elastic;
use crate::error::Result;
use crate::pipeline::ScoredWindow;

/// Anomalies kept in memory for `GET /anomalies`.
pub const RECENT_ANOMALIES: usize = 1_000;

/// The id of a window's anomaly document: the same service and window always give the same id, so writing it again
/// replaces it instead of adding a second one.
pub fn document_id(monitor: &str, service: &str, window_start: f64) -> String {
    let millis = (window_start * 1000.0).round() as i64;
    let digest = Sha256::digest(format!("{monitor}\n{service}\n{millis}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(epoch_seconds: f64) -> String {
    DateTime::<Utc>::from_timestamp_millis((epoch_seconds * 1000.0).round() as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The anomaly document of a flagged window: `@timestamp` (the window's start), the service, the window, the score
/// and threshold, which detector flagged it, the rationale, each field's part in field names, the window's
/// features, the model version, whether it raised an alert, and when it was detected.
pub fn document(monitor: &str, w: &ScoredWindow, window_seconds: u64) -> (String, Value) {
    let verdict = w.verdict.as_ref();
    let explanation = w.explanation.as_ref();
    let detector = verdict
        .and_then(|v| v.flagged_by.primary())
        .map_or("isolation_forest", |d| d.as_str());
    let fields: Vec<Value> = explanation
        .map(|e| {
            e.fields
                .iter()
                .filter(|f| f.unusual || f.contribution > 0.0)
                .take(8)
                .map(|f| {
                    json!({
                        "field": f.field,
                        "value": f.value,
                        "contribution": f.contribution,
                        "unusual": f.unusual,
                        "description": f.description,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let id = document_id(monitor, &w.row.service, w.row.window_start);
    let doc = json!({
        "@timestamp": rfc3339(w.row.window_start),
        "monitor": monitor,
        "service": w.row.service,
        "window_start": rfc3339(w.row.window_start),
        "window_end": rfc3339(w.row.window_start + window_seconds as f64),
        "window_seconds": window_seconds,
        "score": verdict.map(|v| v.score),
        "threshold": verdict.map(|v| v.threshold),
        "detector": detector,
        "flagged_by": verdict.map(|v| v.flagged_by),
        "rationale": explanation.map(|e| e.rationale.clone()),
        "explanation": fields,
        "features": w.record,
        "model_version": w.model_version,
        "alerted": w.alert,
        "detected_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    (id, doc)
}

/// The mappings of the anomaly index: dates as dates, names as keywords, the rationale as text.
pub fn index_mappings() -> Value {
    json!({
        "properties": {
            "@timestamp": {"type": "date"},
            "window_start": {"type": "date"},
            "window_end": {"type": "date"},
            "detected_at": {"type": "date"},
            "monitor": {"type": "keyword"},
            "service": {"type": "keyword"},
            "detector": {"type": "keyword"},
            "score": {"type": "double"},
            "threshold": {"type": "double"},
            "window_seconds": {"type": "integer"},
            "model_version": {"type": "long"},
            "alerted": {"type": "boolean"},
            "rationale": {"type": "text"},
            "explanation": {"type": "object", "enabled": false},
            "features": {"type": "object", "enabled": false},
            "flagged_by": {"type": "object", "enabled": false}
        }
    })
}

/// Where anomaly documents go.
#[derive(Clone)]
pub enum Sink {
    /// The cluster's anomaly index (`ES_ANOMALY_INDEX`), through `_bulk`.
    Elastic {
        /// The connection.
        client: Elastic,
        /// The index.
        index: String,
    },
    /// The store's anomaly table: key `<monitor>/<service>`, `created_at` the window's start (so a window is stored
    /// once, whatever reruns).
    Store(Arc<dyn Store>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Elastic { index, .. } => write!(f, "Sink::Elastic({index})"),
            Sink::Store(_) => write!(f, "Sink::Store"),
        }
    }
}

impl Sink {
    /// The sink's name as a metric label: `elasticsearch` or `store`.
    pub fn label(&self) -> &'static str {
        match self {
            Sink::Elastic { .. } => "elasticsearch",
            Sink::Store(_) => "store",
        }
    }

    /// Creates the anomaly index when missing (the cluster sink only).
    ///
    /// # Errors
    /// When the cluster refuses.
    pub async fn prepare(&self) -> Result<()> {
        if let Sink::Elastic { client, index } = self {
            client.ensure_index(index, &index_mappings()).await?;
        }
        Ok(())
    }

    /// Writes documents; returns how many were written (a window already stored is not written again).
    ///
    /// # Errors
    /// When the cluster or the store refuses the write as a whole; documents the cluster refuses one by one are
    /// logged and left out of the count.
    pub async fn write(&self, docs: &[(String, Value)]) -> Result<u64> {
        if docs.is_empty() {
            return Ok(0);
        }
        match self {
            Sink::Elastic { client, index } => {
                let report = client.bulk_index(index, docs).await?;
                for (id, refusal) in &report.refused {
                    tracing::warn!(id, %refusal, "anomaly document refused");
                }
                Ok(report.written)
            }
            Sink::Store(store) => {
                let mut fresh = Vec::with_capacity(docs.len());
                for (_, doc) in docs {
                    let anomaly = to_anomaly(doc);
                    let query = AnomalyQuery {
                        key: Some(anomaly.key.clone()),
                        since: Some(anomaly.created_at),
                        until: Some(anomaly.created_at + chrono::Duration::milliseconds(1)),
                        limit: 1,
                        ..AnomalyQuery::default()
                    };
                    if store.count_anomalies(&query).await? == 0 {
                        fresh.push(anomaly);
                    }
                }
                Ok(store.insert_anomalies(&fresh).await?)
            }
        }
    }
}

/// A document as the store's anomaly row.
fn to_anomaly(doc: &Value) -> Anomaly {
    let window_start = doc["window_start"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    Anomaly {
        rationale: doc["rationale"].as_str().unwrap_or_default().to_string(),
        explanation: doc["explanation"].clone(),
        context: doc.clone(),
        config: json!({"window_seconds": doc["window_seconds"]}),
        model_version: doc["model_version"].as_u64(),
        created_at: window_start,
        ..Anomaly::flagged(
            format!(
                "{}/{}",
                doc["monitor"].as_str().unwrap_or_default(),
                doc["service"].as_str().unwrap_or_default()
            ),
            doc["detector"].as_str().unwrap_or("isolation_forest"),
            doc["score"].as_f64().unwrap_or(0.0),
            doc["threshold"].as_f64().unwrap_or(0.0),
        )
    }
}

/// The newest anomaly documents, for `GET /anomalies` (at most [`RECENT_ANOMALIES`]).
#[derive(Debug, Clone, Default)]
pub struct Recent(Arc<Mutex<VecDeque<Value>>>);

impl Recent {
    /// Remembers documents, dropping the oldest beyond the bound.
    pub fn add(&self, docs: impl IntoIterator<Item = Value>) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for d in docs {
            if q.len() == RECENT_ANOMALIES {
                q.pop_front();
            }
            q.push_back(d);
        }
    }

    /// The newest first, optionally of one service, at most `limit`.
    pub fn list(&self, service: Option<&str>, limit: usize) -> Vec<Value> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter()
            .rev()
            .filter(|d| service.is_none_or(|s| d["service"] == s))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The Slack-compatible message of an alert: `text` for notifications, `blocks` for the layout, and the alert's
/// fields by name (`service`, `window_start`, `window_end`, `score`, `threshold`, `detector`, `rationale`,
/// `explanation`) for receivers that read JSON.
pub fn alert_message(doc: &Value) -> Value {
    let s = |k: &str| service_kit::slack_text(&doc[k]);
    let esc = |t: String| service_kit::slack_escape(&t);
    let score = doc["score"]
        .as_f64()
        .map_or_else(|| s("score"), |v| format!("{v:.3}"));
    let fields: Vec<String> = doc["explanation"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["unusual"] == true)
        .filter_map(|f| f["description"].as_str().map(str::to_string))
        .collect();
    let text = format!(
        "Anomaly in {} for the window {} – {} (score {score}). {}",
        s("service"),
        s("window_start"),
        s("window_end"),
        s("rationale")
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Anomaly in `{}`*\n{}", esc(s("service")), esc(s("rationale")))}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Window*\n{} – {}", esc(s("window_start")), esc(s("window_end")))},
                {"type": "mrkdwn", "text": format!("*Score*\n{score} (threshold {})", esc(s("threshold")))},
                {"type": "mrkdwn", "text": format!("*Detector*\n{}", esc(s("detector")))},
                {"type": "mrkdwn", "text": format!("*Unusual*\n{}", esc(if fields.is_empty() { "–".into() } else { fields.join("\n") }))},
            ]},
        ],
        "service": doc["service"],
        "window_start": doc["window_start"],
        "window_end": doc["window_end"],
        "score": doc["score"],
        "threshold": doc["threshold"],
        "detector": doc["detector"],
        "rationale": doc["rationale"],
        "explanation": doc["explanation"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = document_id("m", "api", 1_700_000_000.0);
        assert_eq!(a, document_id("m", "api", 1_700_000_000.0));
        assert_ne!(a, document_id("m", "api", 1_700_000_060.0));
        assert_ne!(a, document_id("m", "auth", 1_700_000_000.0));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn alert_messages_escape_and_name_fields() {
        let doc = json!({"service": "a<b", "window_start": "2026-11-01T12:00:00.000Z", "window_end": "2026-11-01T12:01:00.000Z",
            "score": 0.71234, "threshold": 0.6, "detector": "isolation_forest", "rationale": "`latency_p95` = 900 & up",
            "explanation": [{"field": "latency_p95", "unusual": true, "description": "`latency_p95` = 900 is above the typical 80–120"}]});
        let m = alert_message(&doc);
        assert!(m["text"].as_str().unwrap().contains("score 0.712"));
        let blocks = m["blocks"].to_string();
        assert!(
            blocks.contains("a&lt;b") && blocks.contains("&amp; up"),
            "{blocks}"
        );
        assert!(blocks.contains("latency_p95"));
        assert_eq!(m["service"], "a<b");
    }
}
