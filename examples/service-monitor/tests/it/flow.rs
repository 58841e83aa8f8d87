//! Whole runs: against the fake cluster (anomalies written back once, whatever reruns), alerts to a webhook (one
//! per incident), the report's PNG files, and the routes while monitoring.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use serde_json::Value;
use service_monitor::Context;
use service_monitor::anomalies::{Sink, document_id};
use service_monitor::commands::{self, MonitorOptions, unix_now};
use service_monitor::elastic::{Elastic, ElasticSettings};
use service_monitor::generate::{self, GenerateOptions, Target};
use service_monitor::report::{self, OVERVIEW};
use service_monitor::source::Source;

use crate::common;
use crate::fake_es::{Fake, Flavor};

/// Traffic of the last 30 hours into the fake cluster (incidents in the last 6), two monitors trained alike: the
/// first writes its anomalies, a rerun adds nothing, and the second monitor replaces the same documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_written_back_once() {
    let fake = Fake::new(Flavor::Elasticsearch);
    let url = fake.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [("ES_URL", url.as_str()), ("ES_PAGE_SIZE", "2000")];
    let config = common::config(dir.path(), &vars);
    let client = Elastic::connect(ElasticSettings {
        page_size: 2_000,
        ..ElasticSettings::new(&url)
    })
    .await
    .unwrap();
    // The traffic ends five minutes ago, so every window is complete (past the 30 s of allowed lateness) when the
    // first monitor reads: a rerun seconds later finds nothing new however slowly the machine runs the test.
    let now = (unix_now() / 60.0).floor() * 60.0 - 300.0;
    let options = GenerateOptions {
        hours: 30.0,
        rate: 0.5,
        quiet_hours: 24.0,
        start: Some(now - 30.0 * 3600.0),
        ..GenerateOptions::default()
    };
    let generated = generate::generate(&config, &options, &Target::Elastic(client.clone()))
        .await
        .unwrap();
    let indices: Vec<String> = fake.lock().indices.keys().cloned().collect();
    assert!(
        indices.len() >= 2 && indices.iter().all(|i| i.starts_with("api-logs-")),
        "{indices:?}"
    );

    let mut written = Vec::new();
    for run in 0..2 {
        let mut config = common::config(dir.path(), &vars);
        config.database_url = format!("sqlite://{}/run{run}.db?mode=rwc", dir.path().display());
        let ctx = Context::open(config, "flow").await.unwrap();
        let source = Source::open(&ctx.config, None).await.unwrap();
        let training = dir.path().join(format!("training{run}.ndjson"));
        let start = generated.span.0;
        let collected = commands::collect(
            &ctx.config,
            &source,
            (start, start + 24.0 * 3600.0),
            &training,
        )
        .await
        .unwrap();
        assert!(collected.events > 150_000, "{}", collected.events);
        commands::train(&ctx, &training).await.unwrap();
        let sink = Sink::Elastic {
            client: client.clone(),
            index: "api-anomalies".into(),
        };
        let options = MonitorOptions {
            once: true,
            keep_windows: true,
        };
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let report = commands::monitor(
            &ctx,
            &source,
            sink.clone(),
            common::shared(),
            options.clone(),
            rx.clone(),
        )
        .await
        .unwrap();
        let summary = serde_json::to_string(&report).unwrap();
        assert!(report.events > 20_000, "{summary}");
        assert!(
            report.anomalies > 0 && report.written == report.anomalies,
            "{summary}"
        );
        let ids: Vec<String> = report
            .scored
            .iter()
            .filter(|w| w.is_anomaly())
            .map(|w| document_id("flow", &w.row.service, w.row.window_start))
            .collect();
        let stored = fake.docs("api-anomalies");
        for id in &ids {
            let doc = stored
                .iter()
                .find(|d| &d.id == id)
                .expect("each anomaly under its own id");
            assert_eq!(doc.source["monitor"], "flow");
            assert!(doc.source["rationale"].as_str().unwrap().contains('`'));
        }
        // A rerun reads from where the last one stopped: nothing new.
        let again = commands::monitor(&ctx, &source, sink, common::shared(), options, rx)
            .await
            .unwrap();
        assert_eq!(
            (again.windows, again.written),
            (0, 0),
            "{}",
            serde_json::to_string(&again).unwrap()
        );
        written.push((ids, fake.docs("api-anomalies").len()));
    }
    // The second monitor, trained alike, made the same decisions: its documents replaced the first one's.
    assert_eq!(written[0].0, written[1].0);
    assert_eq!(written[0].1, written[1].1, "no duplicate documents");
    assert!(fake.docs("api-anomalies").iter().all(|d| d.version == 2));
}

/// One webhook POST per incident, in Slack's format with the alert's fields; the report's PNG files decode and
/// show every service; the summary lists the incidents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_per_incident_and_a_report() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let sink_received = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let received = sink_received.clone();
            async move {
                received.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), &[("ALERT_WEBHOOK_URL", hook.as_str())]);
    let traffic = common::traffic(&config, dir.path(), 5, 24.0, 6.0).await;
    let ctx = Context::open(config, "alerts").await.unwrap();
    let sink = Sink::Store(ctx.store.clone());
    let report = common::train_and_monitor(&ctx, &traffic, sink.clone()).await;
    let alerts = received.lock().unwrap().clone();
    eprintln!(
        "{} alerts for {} incidents",
        alerts.len(),
        traffic.incidents.len()
    );
    assert_eq!(alerts.len(), traffic.incidents.len());
    for incident in &traffic.incidents {
        let matching = alerts
            .iter()
            .filter(|a| {
                let t = chrono::DateTime::parse_from_rfc3339(a["window_start"].as_str().unwrap())
                    .unwrap()
                    .timestamp() as f64;
                a["service"] == incident.service()
                    && t >= incident.start() - 60.0
                    && t < incident.end()
            })
            .count();
        assert_eq!(
            matching,
            1,
            "{} {}",
            incident.service(),
            incident.kind().as_str()
        );
    }
    let a = &alerts[0];
    assert!(a["text"].as_str().unwrap().contains("Anomaly in"));
    assert!(a["blocks"].is_array() && a["score"].is_number() && a["explanation"].is_array());

    // The store holds the anomalies, once each even when written again.
    let docs: Vec<(String, Value)> = report
        .scored
        .iter()
        .filter(|w| w.is_anomaly())
        .map(|w| service_monitor::anomalies::document("alerts", w, 60))
        .collect();
    assert_eq!(sink.write(&docs).await.unwrap(), 0, "already stored");

    let data = commands::report_data(
        &ctx,
        &Source::File(traffic.file.clone()),
        &sink,
        (traffic.training_end, f64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(data.marks.len() as u64, report.anomalies);
    let mut data = data;
    data.incidents = traffic.incidents.clone();
    let files = report::write_report(&dir.path().join("report"), &data).unwrap();
    assert_eq!(files.charts.len(), 4);
    for png in files.charts.iter().chain(std::iter::once(&files.overview)) {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert!(info.width >= 1_000, "{}", png.display());
        // Drawn, not blank: many colours.
        let colours: std::collections::BTreeSet<&[u8]> =
            buf[..info.buffer_size()].chunks(3).collect();
        assert!(
            colours.len() > 20,
            "{}: {} colours",
            png.display(),
            colours.len()
        );
    }
    assert!(files.overview.ends_with(OVERVIEW));
    let overview = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&files.overview).unwrap(),
    ));
    assert_eq!(
        overview.read_info().unwrap().info().height,
        180 * 4 + 60,
        "a panel per service"
    );
    let md = std::fs::read_to_string(&files.summary).unwrap();
    for s in [
        "api",
        "auth",
        "billing",
        "search",
        "rare_category",
        "traffic_drop",
        OVERVIEW,
    ] {
        assert!(md.contains(s), "{s} missing from the summary");
    }
}
