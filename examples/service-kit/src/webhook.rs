//! [`Webhook`]: JSON notifications POSTed to an outside URL (a Slack incoming webhook, a chat or paging bridge)
//! off the service's hot path: a bounded queue, a cool-down per key, retries with backoff as the receiver asks
//! (`Retry-After`), a timeout per attempt, and a drain at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Deadline;

/// A JSON value as text in a chat message: a string as it is, `null` as "–", anything else as JSON.
pub fn slack_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        v => v.to_string(),
    }
}

/// Text made safe for Slack's `mrkdwn`, where `<`, `>` and `&` are control characters.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Longest pause between two attempts, whatever the receiver's `Retry-After` asks.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How a webhook is called. [`WebhookSettings::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where to POST. It often holds a secret (a Slack webhook URL does), so it is never logged: logs name its
    /// host only.
    pub url: String,
    /// Attempts per notification (default 4: the first and three retries, `first_retry` apart and doubling,
    /// unless the receiver's `Retry-After` says otherwise; at most 30 s).
    pub attempts: u32,
    /// Pause before the first retry (default 1 s).
    pub first_retry: Duration,
    /// Longest wait for one attempt's answer (default 10 s).
    pub timeout: Duration,
    /// Least time between two notifications of the same key (default 5 minutes); the ones in between are
    /// suppressed. Zero sends every one.
    pub cooldown: Duration,
    /// Notifications waiting to be sent (default 1,000); beyond it new ones are dropped (and counted).
    pub queue: usize,
    /// Keys whose last notification time is remembered for the cool-down (default 10,000); when it is full and
    /// no key's cool-down has passed, a new key's notification is suppressed.
    pub max_keys: usize,
}

impl WebhookSettings {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookSettings {
            url: url.into(),
            attempts: 4,
            first_retry: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            cooldown: Duration::from_secs(300),
            queue: 1_000,
            max_keys: 10_000,
        }
    }

    /// The URL's host, the part that may be logged.
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "(unparsable URL)".into())
    }
}

/// What became of one notification, for the service's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Not sent: the key's last notification is more recent than the cool-down.
    Suppressed,
    /// Not sent: the queue was full.
    Dropped,
    /// Every attempt failed, or the receiver refused it for good (a 4xx other than 408 and 429).
    Failed,
    /// One attempt failed and another follows.
    Retried,
}

impl WebhookOutcome {
    /// The outcome's name as a metric label: `delivered`, `suppressed`, `dropped`, `failed`, `retried`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Suppressed => "suppressed",
            WebhookOutcome::Dropped => "dropped",
            WebhookOutcome::Failed => "failed",
            WebhookOutcome::Retried => "retried",
        }
    }
}

type Report = Arc<dyn Fn(WebhookOutcome) + Send + Sync>;

/// The sending side of a webhook; cheap to clone. Dropping every clone (or [`Webhook::close`]) ends the sender
/// task once the queue is empty.
#[derive(Clone)]
pub struct Webhook {
    queue: mpsc::Sender<(String, Value)>,
    last_sent: Arc<Mutex<HashMap<String, Instant>>>,
    settings: Arc<WebhookSettings>,
    report: Report,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.settings.host())
            .finish_non_exhaustive()
    }
}

/// The task that POSTs queued notifications; await it through [`Webhook::close`].
#[derive(Debug)]
pub struct WebhookTask(JoinHandle<()>);

impl Webhook {
    /// Starts the sender task (on the current Tokio runtime). `report` is called with every outcome.
    ///
    /// # Errors
    /// A description when the URL is not an absolute `http`/`https` URL or the HTTP client cannot be built.
    pub fn start(
        settings: WebhookSettings,
        report: impl Fn(WebhookOutcome) + Send + Sync + 'static,
    ) -> Result<(Webhook, WebhookTask), String> {
        let url = reqwest::Url::parse(&settings.url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{}` URLs are not supported", url.scheme()));
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let settings = Arc::new(settings);
        let report: Report = Arc::new(report);
        let last_sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let task = tokio::spawn(deliver(
            client,
            url,
            rx,
            settings.clone(),
            report.clone(),
            last_sent.clone(),
        ));
        Ok((
            Webhook {
                queue: tx,
                last_sent,
                settings,
                report,
            },
            WebhookTask(task),
        ))
    }

    /// Queues `body` for `key` unless the key is cooling down or the queue is full (both reported, never
    /// waited for). Returns whether it was queued. The key's cool-down starts when a notification is queued, and is
    /// lifted again if that notification cannot be delivered, so a failure does not silence the key.
    pub fn send(&self, key: &str, body: Value) -> bool {
        let cooldown = self.settings.cooldown;
        let now = Instant::now();
        let mut last = self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        if !cooldown.is_zero() {
            let cooling = last
                .get(key)
                .is_some_and(|t| now.duration_since(*t) < cooldown);
            if !cooling && !last.contains_key(key) && last.len() >= self.settings.max_keys {
                last.retain(|_, t| now.duration_since(*t) < cooldown);
            }
            if cooling || (!last.contains_key(key) && last.len() >= self.settings.max_keys) {
                drop(last);
                (self.report)(WebhookOutcome::Suppressed);
                return false;
            }
        }
        match self.queue.try_send((key.to_string(), body)) {
            Ok(()) => {
                if !cooldown.is_zero() {
                    last.insert(key.to_string(), now);
                }
                true
            }
            Err(_) => {
                drop(last);
                tracing::warn!(host = %self.settings.host(), "webhook queue full; notification dropped");
                (self.report)(WebhookOutcome::Dropped);
                false
            }
        }
    }

    /// Stops taking notifications and sends the queued ones until `deadline` (what is left then is dropped).
    pub async fn close(self, task: WebhookTask, deadline: &Deadline) {
        drop(self);
        if deadline.run(task.0).await.is_none() {
            tracing::warn!(
                "webhook notifications still queued at the shutdown deadline were dropped"
            );
        }
    }
}

async fn deliver(
    client: reqwest::Client,
    url: reqwest::Url,
    mut rx: mpsc::Receiver<(String, Value)>,
    settings: Arc<WebhookSettings>,
    report: Report,
    last_sent: Arc<Mutex<HashMap<String, Instant>>>,
) {
    let host = settings.host();
    // A notification that cannot be delivered lifts its key's cool-down, so the next one is tried.
    let lift = |key: &str| {
        last_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    };
    while let Some((key, body)) = rx.recv().await {
        let mut pause = settings.first_retry;
        let mut attempt = 1;
        loop {
            let failure = match client.post(url.clone()).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    report(WebhookOutcome::Delivered);
                    break;
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let transient = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !transient {
                        tracing::warn!(%host, %status, "the webhook refused a notification; not retried");
                        report(WebhookOutcome::Failed);
                        lift(&key);
                        break;
                    }
                    if let Some(wait) = retry_after {
                        pause = wait.min(MAX_RETRY_PAUSE);
                    }
                    format!("status {status}")
                }
                // The error's text can hold the URL; only its kind is logged.
                Err(e) if e.is_timeout() => "timed out".to_string(),
                Err(e) if e.is_connect() => "cannot connect".to_string(),
                Err(_) => "request failed".to_string(),
            };
            if attempt >= settings.attempts {
                tracing::warn!(%host, attempts = attempt, last = %failure, "webhook notification failed; dropped");
                report(WebhookOutcome::Failed);
                lift(&key);
                break;
            }
            tracing::info!(%host, attempt, retry_in_ms = pause.as_millis() as u64, reason = %failure, "webhook attempt failed; retrying");
            report(WebhookOutcome::Retried);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    /// A receiver that answers the statuses in `script` in turn (then 200), counting the calls and keeping bodies.
    async fn receiver(
        script: Vec<(u16, Option<&'static str>)>,
    ) -> (String, Arc<Mutex<Vec<Value>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = bodies.clone();
        let app = Router::new().route(
            "/hook",
            post(move |axum::Json(body): axum::Json<Value>| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push(body);
                    match script.get(n) {
                        Some((status, retry_after)) => {
                            let mut r = axum::response::Response::new(axum::body::Body::empty());
                            *r.status_mut() = StatusCode::from_u16(*status).unwrap();
                            if let Some(v) = retry_after {
                                r.headers_mut().insert("retry-after", v.parse().unwrap());
                            }
                            r
                        }
                        None => axum::response::Response::new(axum::body::Body::empty()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), bodies)
    }

    fn recorder() -> (
        Arc<Mutex<Vec<WebhookOutcome>>>,
        impl Fn(WebhookOutcome) + Send + Sync,
    ) {
        let seen: Arc<Mutex<Vec<WebhookOutcome>>> = Arc::default();
        let s = seen.clone();
        (seen, move |o| s.lock().unwrap().push(o))
    }

    async fn closed(hook: Webhook, task: WebhookTask) {
        hook.close(task, &Deadline::after(Duration::from_secs(30)))
            .await;
    }

    #[tokio::test]
    async fn retries_transient_failures_and_gives_up_on_refusals() {
        // 503, then 429 with Retry-After 0, then 200: one notification, two retries.
        // Then 400: refused for good, no retry.
        let (url, bodies) = receiver(vec![
            (503, None),
            (429, Some("0")),
            (200, None),
            (400, None),
        ])
        .await;
        let (seen, report) = recorder();
        let mut settings = WebhookSettings::new(url);
        settings.cooldown = Duration::ZERO;
        settings.first_retry = Duration::from_millis(10);
        let (hook, task) = Webhook::start(settings, report).unwrap();
        assert!(hook.send("a", serde_json::json!({"text": "first"})));
        assert!(hook.send("a", serde_json::json!({"text": "second"})));
        closed(hook, task).await;
        use WebhookOutcome::*;
        assert_eq!(*seen.lock().unwrap(), [Retried, Retried, Delivered, Failed]);
        let texts: Vec<Value> = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["text"].clone())
            .collect();
        assert_eq!(texts, ["first", "first", "first", "second"]);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts() {
        let (url, bodies) = receiver(vec![(500, None); 10]).await;
        let (seen, report) = recorder();
        let mut settings = WebhookSettings::new(url);
        settings.attempts = 3;
        settings.first_retry = Duration::from_millis(10);
        let (hook, task) = Webhook::start(settings, report).unwrap();
        hook.send("a", serde_json::json!({"text": "x"}));
        closed(hook, task).await;
        use WebhookOutcome::*;
        assert_eq!(*seen.lock().unwrap(), [Retried, Retried, Failed]);
        assert_eq!(bodies.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_failed_notification_does_not_silence_its_key() {
        let (url, bodies) = receiver(vec![(400, None)]).await;
        let (seen, report) = recorder();
        let (hook, task) = Webhook::start(WebhookSettings::new(url), report).unwrap();
        assert!(hook.send("a", serde_json::json!({"n": 1})));
        let started = Instant::now();
        while seen.lock().unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            hook.send("a", serde_json::json!({"n": 2})),
            "the refusal lifted the cool-down"
        );
        assert!(
            !hook.send("a", serde_json::json!({"n": 3})),
            "the second is cooling down"
        );
        closed(hook, task).await;
        use WebhookOutcome::*;
        let mut outcomes = seen.lock().unwrap().clone();
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(outcomes, [Delivered, Failed, Suppressed]);
        assert_eq!(bodies.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn cools_down_per_key_within_a_bounded_memory() {
        let (url, bodies) = receiver(vec![]).await;
        let (seen, report) = recorder();
        let mut settings = WebhookSettings::new(url);
        settings.max_keys = 2;
        let (hook, task) = Webhook::start(settings, report).unwrap();
        assert!(hook.send("a", serde_json::json!({"n": 1})));
        assert!(
            !hook.send("a", serde_json::json!({"n": 2})),
            "a is cooling down"
        );
        assert!(hook.send("b", serde_json::json!({"n": 3})));
        assert!(
            !hook.send("c", serde_json::json!({"n": 4})),
            "no room for a third key"
        );
        closed(hook, task).await;
        use WebhookOutcome::*;
        let mut outcomes = seen.lock().unwrap().clone();
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(outcomes, [Delivered, Delivered, Suppressed, Suppressed]);
        assert_eq!(bodies.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn refuses_what_is_not_an_http_url_and_never_logs_it() {
        assert!(Webhook::start(WebhookSettings::new("ftp://x/y"), |_| {}).is_err());
        assert!(Webhook::start(WebhookSettings::new("no url"), |_| {}).is_err());
        let s = WebhookSettings::new("https://hooks.example.com/services/T000/B000/SECRET");
        assert_eq!(s.host(), "hooks.example.com");
    }
}
