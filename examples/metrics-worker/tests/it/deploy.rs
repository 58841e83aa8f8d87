//! `deploy/`: the Prometheus configuration and rules pass promtool, and every metric the rules and the Grafana
//! dashboard query is one the worker exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use metrics_worker::TestHooks;
use service_kit::testing::{promtool, promtool_check};

use crate::common::{Harness, nats_url, stationary};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Names that look like the worker's metrics in `text`: `metrics_…` and `anomaly_events_total`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if is_name(bytes[i]) && (i == 0 || !is_name(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && is_name(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if (word.starts_with("metrics_") && word.len() > "metrics_".len())
                || word == "anomaly_events_total"
            {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

#[allow(clippy::print_stderr)]
#[test]
fn the_prometheus_files_pass_promtool() {
    let dir = deploy_dir();
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "metrics-worker.rules.yml"],
    ] {
        let path = dir.join(args[2]);
        let checked = promtool(&[args[0], args[1], path.to_str().unwrap()]).unwrap();
        if !checked {
            eprintln!(
                "SKIPPED promtool {} {}: promtool is not installed",
                args[1], args[2]
            );
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/metrics-worker.json")).unwrap(),
    )
    .expect("the Grafana dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_rules_query_is_exported() {
    let Some(url) = nats_url("deploy metrics") else {
        return;
    };
    let h = Harness::new(&url, "deploy", None).await;
    let w = h.start(h.config(&[]), TestHooks::default()).await;
    // Traffic that makes every family appear: points, a detection (and its alert), a dead letter.
    let mut values = stationary(30, 4);
    values[25] = 900.0;
    h.publish("web.api", &values).await;
    h.publish_raw("web.api", b"not json").await;
    w.wait_until(
        Duration::from_secs(20),
        "the traffic is processed",
        |w| async move {
            w.metric("metrics_processed_total").await >= 30.0
                && w.metric("metrics_dead_letters_total{reason=\"malformed\"}")
                    .await
                    >= 1.0
                && w.metric("metrics_alerts_total{channel=\"nats\",outcome=\"published\"}")
                    .await
                    >= 1.0
                && w.metrics_text()
                    .await
                    .contains("metrics_consumer_pending_messages ")
        },
    )
    .await;
    let exposition = w.metrics_text().await;
    assert!(
        promtool_check(&exposition).unwrap() || std::env::var_os("REQUIRE_PROMTOOL").is_none(),
        "promtool check metrics"
    );
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    assert!(
        exported.contains("anomaly_events_total"),
        "the original's name, unprefixed"
    );
    for file in [
        "grafana/metrics-worker.json",
        "metrics-worker.rules.yml",
        "README.md",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        let names = referenced(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            let family = ["", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| exported.contains(&format!("{name}{suffix}")));
            assert!(
                family,
                "{file} queries `{name}`, which the worker does not export"
            );
        }
    }
    w.stop().await;
    h.cleanup().await;
}
