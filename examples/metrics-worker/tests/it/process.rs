//! The binary as an operator runs it: refusing to start open on a network, a token beyond loopback, and SIGTERM
//! while messages flow.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metrics_worker::TestHooks;

use crate::common::{Harness, nats_url, stationary, unique};

fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_metrics-worker"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let out = worker()
        .env("HOST", "0.0.0.0")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("API_TOKEN") && said.contains("0.0.0.0"),
        "{said}"
    );
    let out = worker().env("MA_THRESHOLD", "-3").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MA_THRESHOLD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_probes_needs_the_token() {
    let Some(url) = nats_url("token") else { return };
    let h = Harness::new(&url, "token", None).await;
    let w = h
        .start(h.config(&[("API_TOKEN", "s3cret")]), TestHooks::default())
        .await;
    for path in ["/anomalies", "/anomalies/1", "/metrics"] {
        let r = w.http.get(w.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = w
            .http
            .get(w.url(path))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 401, "{path}");
    }
    for path in ["/health", "/ready"] {
        assert_eq!(
            w.http.get(w.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    // A browser signs in at /login and then carries a session cookie.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .get(w.url("/ui?series=a.b"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a page request is sent to the form");
    assert_eq!(r.headers()["location"], "/login?next=%2Fui%3Fseries%3Da.b");
    let form = browser
        .get(w.url("/login?next=%2Fui"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"token\""));
    let wrong = browser
        .post(w.url("/login"))
        .form(&[("token", "guess"), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = browser
        .post(w.url("/login"))
        .form(&[("token", "s3cret"), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(
        right.headers()["location"],
        "/",
        "only local paths are followed"
    );
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("metrics_worker_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("s3cret"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    for path in ["/ui", "/anomalies", "/ui/rows", "/metrics"] {
        let r = browser
            .get(w.url(path))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the session cookie");
    }
    let page = browser
        .get(w.url("/ui"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("action=\"/logout\""),
        "the page offers to sign out"
    );
    let out = browser
        .post(w.url("/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    w.stop().await;
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while !http
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_messages_flow_exits_zero_and_loses_nothing() {
    let Some(url) = nats_url("sigterm") else {
        return;
    };
    let h = Harness::new(&url, "sigterm", None).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let series = unique("s");
    let start = |h: &Harness| {
        worker()
            .env("NATS_URL", &h.nats_url)
            .env("NATS_SUBJECT_PREFIX", &h.prefix)
            .env("NATS_STREAM", &h.stream)
            .env("NATS_ACK_WAIT_SECONDS", "2")
            .env("METRICS_WORKER_DATA", dir.path())
            .env("PORT", port.to_string())
            .env("SHUTDOWN_TIMEOUT_SECONDS", "5")
            .spawn()
            .unwrap()
    };
    let mut child = start(&h);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    let values = stationary(400, 2);
    let publishing = {
        let js = h.js.clone();
        let subject = format!("{}.{series}", h.prefix);
        let series = series.clone();
        tokio::spawn(async move {
            for v in values {
                let body = serde_json::json!({"series": series, "value": v}).to_string();
                js.publish(subject.clone(), body.into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("the worker did not stop within its shutdown timeout");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "SIGTERM ends it cleanly");
    publishing.await.unwrap();
    // A second run takes every message the first did not acknowledge: in the end all 400 are acknowledged.
    let mut child = start(&h);
    wait_ready(&http, &base).await;
    let started = Instant::now();
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            h.js.get_stream(&h.stream)
                .await
                .unwrap()
                .get_consumer("metrics-worker")
                .await
                .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            assert_eq!(info.delivered.stream_sequence, 400);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "messages left: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// `sample` in the Prometheus text at `base`, 0 when absent.
async fn scrape(http: &reqwest::Client, base: &str, sample: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    crate::common::sample_value(&text, sample)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_split_the_series_and_process_every_message_once() {
    let Some(url) = nats_url("two workers") else {
        return;
    };
    let h = Harness::new(&url, "split", None).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let mut children: Vec<std::process::Child> = (0..2)
        .map(|i| {
            worker()
                .env("NATS_URL", &h.nats_url)
                .env("NATS_SUBJECT_PREFIX", &h.prefix)
                .env("NATS_STREAM", &h.stream)
                .env("WORKER_COUNT", "2")
                .env("WORKER_INDEX", i.to_string())
                .env("METRICS_WORKER_DATA", dirs[i].path())
                .env("PORT", ports[i].to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let http = reqwest::Client::new();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for b in &bases {
        wait_ready(&http, b).await;
    }
    // 12 series of 40 points, each with one spike the moving average flags.
    let series: Vec<String> = (0..12).map(|i| format!("cpu.host-{i}")).collect();
    for (i, s) in series.iter().enumerate() {
        let mut values = stationary(40, i as u64);
        values[30] = 500.0;
        h.publish(s, &values).await;
    }
    let total = 12.0 * 40.0;
    let started = Instant::now();
    let (mut processed, mut foreign) = ([0.0; 2], [0.0; 2]);
    loop {
        for i in 0..2 {
            processed[i] = scrape(&http, &bases[i], "metrics_processed_total").await;
            foreign[i] = scrape(&http, &bases[i], "metrics_foreign_total").await;
        }
        if processed[0] + processed[1] >= total && foreign[0] + foreign[1] >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "processed {processed:?}, foreign {foreign:?} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        processed[0] + processed[1],
        total,
        "every message processed once"
    );
    assert_eq!(
        (foreign[0], foreign[1]),
        (processed[1], processed[0]),
        "each skipped what the other took"
    );
    assert!(
        processed[0] > 0.0 && processed[1] > 0.0,
        "both took a share: {processed:?}"
    );
    // Each series' detections are in exactly one worker's store, the one its partition names.
    let mut owners = std::collections::BTreeMap::new();
    for (i, base) in bases.iter().enumerate() {
        let body: serde_json::Value = http
            .get(format!(
                "{base}/anomalies?page_size=500&method=moving_average"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in body["results"].as_array().unwrap() {
            let s = r["series"].as_str().unwrap().to_string();
            assert_eq!(metrics_worker::message::partition(&s, 2), i as u32, "{s}");
            let previous = owners.insert(s.clone(), i);
            assert!(
                previous.is_none_or(|p| p == i),
                "{s} detected by both workers"
            );
        }
    }
    assert_eq!(owners.len(), 12, "every spiked series detected: {owners:?}");
    for child in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for mut child in children {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}
