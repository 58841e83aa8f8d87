//! Announcing detections (the original's notification service): every stored detection is published on
//! `<prefix>-alerts.<series>`, and, when `ALERT_WEBHOOK_URL` is set, POSTed as a Slack-compatible message through
//! the kit's [`Webhook`] (queued off the consuming path, retried, one message per series per cool-down).

use std::sync::Arc;

use anomaly_store::Anomaly;
use serde_json::{Value, json};
use service_kit::{Deadline, Webhook, WebhookSettings, WebhookTask};

use crate::config::Config;
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;

/// Where detections are announced.
pub(crate) struct Alerts {
    client: async_nats::Client,
    config: Arc<Config>,
    webhook: Option<Webhook>,
    metrics: WorkerMetrics,
}

impl Alerts {
    /// Starts the webhook sender when `ALERT_WEBHOOK_URL` is set.
    pub(crate) fn start(
        client: async_nats::Client,
        config: Arc<Config>,
        metrics: WorkerMetrics,
    ) -> Result<(Alerts, Option<WebhookTask>), WorkerError> {
        let (webhook, task) = match &config.alert_webhook_url {
            None => (None, None),
            Some(url) => {
                let mut settings = WebhookSettings::new(url.clone());
                settings.cooldown = config.alert_cooldown;
                settings.attempts = config.alert_webhook_attempts;
                let counted = metrics.clone();
                let (hook, task) = Webhook::start(settings, move |outcome| {
                    counted.alert("webhook", outcome.as_str());
                })
                .map_err(|reason| {
                    WorkerError::Config(service_kit::KitError::Config {
                        variable: "ALERT_WEBHOOK_URL".into(),
                        reason,
                    })
                })?;
                (Some(hook), Some(task))
            }
        };
        Ok((
            Alerts {
                client,
                config,
                webhook,
                metrics,
            },
            task,
        ))
    }

    /// Announces one stored detection. Never waits on the webhook; a failed NATS publish is logged and counted
    /// (the detection itself is stored).
    pub(crate) async fn announce(&self, a: &Anomaly) {
        let body = alert_body(a, &self.config.public_url);
        let subject = self.config.alert_subject(&a.key);
        let published = self
            .client
            .publish(subject.clone(), body.to_string().into())
            .await;
        match published {
            Ok(()) => self.metrics.alert("nats", "published"),
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot publish an alert");
                self.metrics.alert("nats", "failed");
            }
        }
        if let Some(hook) = &self.webhook {
            hook.send(&a.key, slack_message(&body));
        }
    }

    /// Sends the webhook messages still queued, within `deadline`.
    pub(crate) async fn close(self, task: Option<WebhookTask>, deadline: &Deadline) {
        let _ = self.client.flush().await;
        if let (Some(hook), Some(task)) = (self.webhook, task) {
            hook.close(task, deadline).await;
        }
    }
}

/// The alert as published on NATS: the detection's essentials and a link to the dashboard.
fn alert_body(a: &Anomaly, public_url: &str) -> Value {
    let query = serde_urlencoded::to_string([("series", a.key.as_str())]).unwrap_or_default();
    json!({
        "series": a.key,
        "value": a.context.get("value"),
        "timestamp": a.context.get("timestamp"),
        "method": a.detector,
        "score": a.score,
        "threshold": a.threshold,
        "rationale": a.rationale,
        "detected_at": a.created_at.to_rfc3339(),
        "stream_sequence": a.context.get("stream_sequence"),
        "dashboard": format!("{public_url}/ui?{query}"),
    })
}

/// A Slack incoming-webhook message (`text` for notifications and clients without blocks, `blocks` for the
/// layout); other chat bridges that take Slack's format read the same.
fn slack_message(alert: &Value) -> Value {
    let s = |k: &str| service_kit::slack_text(&alert[k]);
    let esc = |t: String| service_kit::slack_escape(&t);
    let score = alert["score"]
        .as_f64()
        .map_or_else(|| s("score"), |v| format!("{v:.3}"));
    let text = format!(
        "Anomaly in {}: value {} ({}, score {}). {}",
        s("series"),
        s("value"),
        s("method"),
        score,
        s("rationale")
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Anomaly in `{}`*\n{}", esc(s("series")), esc(s("rationale")))}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Value*\n{}", esc(s("value")))},
                {"type": "mrkdwn", "text": format!("*Method*\n{}", esc(s("method")))},
                {"type": "mrkdwn", "text": format!("*Score*\n{score} (threshold {})", esc(s("threshold")))},
                {"type": "mrkdwn", "text": format!("*Metric time*\n{}", esc(s("timestamp")))},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("<{}|Open the dashboard> · detected {}", s("dashboard"), esc(s("detected_at")))},
            ]},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_message_carries_the_detection_and_a_link() {
        let mut a = Anomaly::flagged("cpu.web-1", "moving_average", 4.25, 3.0);
        a.rationale = "value 93 deviates <by> 80 from the mean 13 & more".into();
        a.context = json!({"value": 93.0, "timestamp": null, "stream_sequence": 17});
        let body = alert_body(&a, "https://worker.example.com");
        assert_eq!(body["series"], "cpu.web-1");
        assert_eq!(body["value"], 93.0);
        assert_eq!(
            body["dashboard"],
            "https://worker.example.com/ui?series=cpu.web-1"
        );
        let slack = slack_message(&body);
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("cpu.web-1") && text.contains("93") && text.contains("moving_average")
        );
        assert!(text.contains("4.250"), "{text}");
        let blocks = slack["blocks"].to_string();
        assert!(
            blocks.contains("&lt;by&gt;") && blocks.contains("&amp; more"),
            "{blocks}"
        );
        assert!(
            blocks.contains("<https://worker.example.com/ui?series=cpu.web-1|Open the dashboard>")
        );
    }
}
