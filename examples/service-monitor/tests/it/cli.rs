//! The binary: the commands chained by hand, then `monitor` as a service (its routes, `/metrics` through
//! promtool, SIGTERM), and refused configuration.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use service_kit::testing::promtool_check;

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_service-monitor"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_LEVEL", "warn")
        .env("LOG_FORMAT", "json");
    c
}

fn run(dir: &Path, args: &[&str]) -> Value {
    let out = binary().env("DATA_DIR", dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Logs go to stderr: stdout holds the report alone.
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn commands_chain_and_the_monitor_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let traffic = dir.path().join("traffic.ndjson");
    let traffic_arg = traffic.to_str().unwrap();
    let at = |hours_ago: i64| {
        let now = chrono::Utc::now().timestamp() / 60 * 60;
        chrono::DateTime::from_timestamp(now - hours_ago * 3600, 0)
            .unwrap()
            .to_rfc3339()
    };
    let generated = run(
        dir.path(),
        &[
            "generate",
            "--output",
            traffic_arg,
            "--hours",
            "8",
            "--rate",
            "1",
            "--start",
            &at(10),
            "--no-incidents",
        ],
    );
    assert!(generated["events"].as_u64().unwrap() > 50_000);
    let fresh = dir.path().join("fresh.ndjson");
    let fresh_arg = fresh.to_str().unwrap();
    let incidents = run(
        dir.path(),
        &[
            "generate",
            "--output",
            fresh_arg,
            "--hours",
            "2",
            "--rate",
            "1",
            "--start",
            &at(2),
            "--seed",
            "3",
        ],
    );
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 6);
    let collected = run(dir.path(), &["collect", "--input", traffic_arg]);
    assert_eq!(collected["events"], generated["events"]);
    let trained = run(dir.path(), &["train"]);
    assert_eq!(trained["models"].as_array().unwrap().len(), 4);
    let report = run(
        dir.path(),
        &[
            "report",
            "--input",
            traffic_arg,
            "--labels",
            &format!("{traffic_arg}.incidents.json"),
        ],
    );
    assert!(Path::new(report["overview"].as_str().unwrap()).exists());

    // The monitor as a service, tailing a file that grows.
    let live = dir.path().join("live.ndjson");
    std::fs::write(&live, "").unwrap();
    let port = free_port();
    let mut child = binary()
        .env("DATA_DIR", dir.path())
        .env("PORT", port.to_string())
        .env("MONITOR_INTERVAL_SECONDS", "1")
        .args(["monitor", "--input", live.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> Option<(u16, String)> {
        let r = reqwest::blocking::get(format!("{base}{path}")).ok()?;
        Some((r.status().as_u16(), r.text().ok()?))
    };
    let started = Instant::now();
    while get("/health").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the monitor did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The file grows: its windows are read at the next interval.
    std::fs::copy(&fresh, &live).unwrap();
    let started = Instant::now();
    loop {
        let (_, metrics) = get("/metrics").unwrap();
        if metrics
            .lines()
            .any(|l| l.starts_with("service_monitor_windows_scored_total") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no window scored: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, metrics) = get("/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "service_monitor_events_read_total",
        "service_monitor_anomalies_written_total",
        "service_monitor_read_lag_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert!(promtool_check(&metrics).unwrap() || std::env::var_os("REQUIRE_PROMTOOL").is_none());
    let (_, health) = get("/health").unwrap();
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["scored_through"].is_number());
    let (_, anomalies) = get("/anomalies?limit=5").unwrap();
    let anomalies: Value = serde_json::from_str(&anomalies).unwrap();
    assert!(anomalies["results"].as_array().unwrap().len() <= 5);
    // SIGTERM: a clean exit, within the shutdown deadline.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn refused_settings_name_their_variable_and_exit_2() {
    let out = binary()
        .env("WINDOW_SECONDS", "0")
        .args(["monitor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WINDOW_SECONDS"));
    let out = binary()
        .env("HOST", "0.0.0.0")
        .args(["monitor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no token beyond loopback");
    assert!(String::from_utf8_lossy(&out.stderr).contains("API_TOKEN"));
    // No cluster and no file: said, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .env("DATA_DIR", dir.path())
        .args(["collect"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ES_URL"));
}
