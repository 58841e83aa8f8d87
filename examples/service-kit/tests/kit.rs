//! The kit end to end: a small service on loopback, spoken to over real TCP.

// Skipped checks say so on stderr.
#![allow(clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn;
use axum::routing::{get, post};
use service_kit::{Auth, Env, ServeSettings, Telemetry, app, ready_response, require_json, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Duration>,
}

fn settings(vars: &'static [(&'static str, &'static str)]) -> ServeSettings {
    ServeSettings::from_env(
        &Env::from_lookup(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }),
        0,
    )
    .unwrap()
}

async fn start(settings: ServeSettings, auth: Option<Auth>) -> Running {
    let routes = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(|| async { ready_response(Err("models are loading".into())) }),
        )
        .route(
            "/echo",
            post(|body: String| async move { body }).route_layer(from_fn(require_json)),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                "finished"
            }),
        );
    let mut telemetry = Telemetry::new("kit_test");
    let counter = service_kit::prometheus_client::metrics::counter::Counter::<u64>::default();
    telemetry
        .registry()
        .register("things", "Things done", counter.clone());
    counter.inc();
    let router = app(routes, &settings, auth, Arc::new(telemetry));
    let listener = settings.bind().await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let deadline = serve(listener, router, &settings, async {
            let _ = stopped.await;
        })
        .await;
        deadline.remaining()
    });
    Running {
        base,
        stop: Some(stop),
        done,
    }
}

#[tokio::test]
async fn a_token_guards_every_route_but_the_probes() {
    let s = start(settings(&[]), Some(Auth::header("x-secret", "s3cret"))).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", s.base));
    assert_eq!(get("/health").send().await.unwrap().status(), 200);
    assert_eq!(get("/ready").send().await.unwrap().status(), 503);
    let refused = get("/metrics").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("x-secret"));
    assert_eq!(
        get("/nowhere").send().await.unwrap().status(),
        401,
        "no route probing without the token"
    );
    assert_eq!(
        get("/metrics")
            .header("x-secret", "s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/metrics")
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/metrics")
            .bearer_auth("s3cret ")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/metrics")
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn json_routes_refuse_other_content_types() {
    let s = start(settings(&[]), None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/echo", s.base);
    let plain = http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    assert!(plain.text().await.unwrap().contains("application/json"));
    let none = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(none.status(), 415);
    let form = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let ok = http
            .post(&url)
            .header("content-type", ct)
            .body("{\"a\":1}")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{ct}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let s = start(settings(&[("MAX_REQUEST_BYTES", "1000")]), None).await;
    let response = reqwest::Client::new()
        .post(format!("{}/echo", s.base))
        .header("content-type", "application/json")
        .body(format!("\"{}\"", "x".repeat(5_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let s = start(settings(&[("HEADER_TIMEOUT_SECONDS", "1")]), None).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close the connection after the header timeout"
    );
}

#[tokio::test]
async fn a_body_sent_too_slowly_times_out() {
    let s = start(settings(&[("REQUEST_TIMEOUT_SECONDS", "1")]), None).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_requests_per_route() {
    let s = start(settings(&[]), None).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        http.get(format!("{}/health", s.base)).send().await.unwrap();
    }
    let text = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kit_test_things_total 1"), "{text}");
    assert!(
        text.contains(r#"kit_test_request_duration_seconds_count{method="GET",route="/health",status="200"} 3"#),
        "{text}"
    );
    match service_kit::testing::promtool_check(&text) {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "SKIPPED promtool check: promtool is not installed (scripts/test installs it)"
        ),
        Err(e) => panic!("{e}"),
    }
    let open = http
        .get(format!("{}/metrics", s.base))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_returns_the_time_left() {
    let mut s = start(settings(&[("SHUTDOWN_TIMEOUT_SECONDS", "5")]), None).await;
    let slow = tokio::spawn(reqwest::get(format!("{}/slow", s.base)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop.take().unwrap().send(()).unwrap();
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(answer.text().await.unwrap(), "finished");
    let left = (&mut s.done).await.unwrap();
    assert!(
        left > Duration::ZERO && left < Duration::from_secs(5),
        "{left:?}"
    );
    assert!(
        reqwest::get(format!("{}/health", s.base)).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn shutdown_cuts_requests_after_half_the_deadline_and_leaves_the_rest_for_flushing() {
    let mut s = start(settings(&[("SHUTDOWN_TIMEOUT_SECONDS", "2")]), None).await;
    // The slow route takes 1.5 s: longer than the drain (half of 2 s).
    let slow = tokio::spawn(reqwest::get(format!("{}/slow", s.base)));
    // A client that sent part of its headers and then nothing (it would hold the drain until its header timeout).
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.take().unwrap().send(()).unwrap();
    let left = tokio::time::timeout(Duration::from_secs(5), &mut s.done)
        .await
        .expect("serve returns")
        .unwrap();
    assert!(
        left > Duration::from_millis(500),
        "about half the deadline is left for flushing: {left:?}"
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the request still running was cut off"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let s = start(settings(&[("MAX_CONNECTIONS", "2")]), None).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/health", s.base);
    let waiting = http
        .get(&url)
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a third connection is not served while two are open"
    );
    drop(idle1);
    let served = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_answered() {
    let s = start(settings(&[]), None).await;
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // What a page on a rebound name sends: its own host name.
    let rebound = http
        .get(format!("{}/metrics", s.base))
        .header("host", "attacker.example:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
}

#[tokio::test]
async fn made_up_methods_share_one_label() {
    let s = start(settings(&[]), None).await;
    let http = reqwest::Client::new();
    for i in 0..5 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        http.request(method, format!("{}/health", s.base))
            .send()
            .await
            .unwrap();
    }
    let text = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("BREW"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
}
