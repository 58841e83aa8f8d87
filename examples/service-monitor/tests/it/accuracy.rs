//! On generated traffic with labelled incidents: every kind of incident flagged in at least one of its windows,
//! few normal windows flagged, and one alert per incident.

use anomaly_core::synth::Incident;
use service_monitor::Context;
use service_monitor::anomalies::Sink;
use service_monitor::pipeline::ScoredWindow;

use crate::common;

/// Windows right after an incident are not counted as normal: the service is recovering (a window that began in
/// the incident's last minute, a level that comes back).
const RECOVERY_SECONDS: f64 = 600.0;

/// What one seed gave.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) caught: usize,
    pub(crate) incidents: usize,
    pub(crate) missed: Vec<String>,
    pub(crate) false_windows: usize,
    pub(crate) normal_windows: usize,
    /// Alerts per incident, in the plan's order.
    pub(crate) alerts_per_incident: Vec<usize>,
    pub(crate) false_alerts: usize,
}

fn overlaps(w: &ScoredWindow, i: &Incident, width: f64, after: f64) -> bool {
    w.row.service == i.service()
        && w.row.window_start < i.end() + after
        && w.row.window_start + width > i.start()
}

pub(crate) fn judge(
    scored: &[ScoredWindow],
    incidents: &[Incident],
    width: f64,
    from: f64,
) -> Outcome {
    let mut o = Outcome {
        incidents: incidents.len(),
        ..Outcome::default()
    };
    let live: Vec<&ScoredWindow> = scored
        .iter()
        .filter(|w| w.row.window_start >= from && w.verdict.is_some())
        .collect();
    for i in incidents {
        let inside: Vec<&&ScoredWindow> =
            live.iter().filter(|w| overlaps(w, i, width, 0.0)).collect();
        if std::env::var("SHOW_FP").is_ok() && i.kind().as_str() == "rare_category" {
            for w in inside.iter().take(7) {
                eprintln!(
                    "RARE {} {:?} {} {:?}",
                    w.row.window_start,
                    w.record["new_endpoint_share"],
                    w.record["count"],
                    w.verdict
                );
            }
        }
        if inside.iter().any(|w| w.is_anomaly()) {
            o.caught += 1;
        } else {
            o.missed
                .push(format!("{} {}", i.service(), i.kind().as_str()));
        }
        o.alerts_per_incident.push(
            live.iter()
                .filter(|w| w.alert && overlaps(w, i, width, 0.0))
                .count(),
        );
    }
    for w in &live {
        if incidents
            .iter()
            .any(|i| overlaps(w, i, width, RECOVERY_SECONDS))
        {
            continue;
        }
        o.normal_windows += 1;
        o.false_windows += usize::from(w.is_anomaly());
        if w.is_anomaly() && std::env::var("SHOW_FP").is_ok() {
            let v = w.verdict.as_ref().unwrap();
            eprintln!(
                "FP {} h{:.1} {:.3}/{:.3} {:?} v{:?} {}",
                w.row.service,
                (w.row.window_start % 86400.0) / 3600.0,
                v.score,
                v.threshold,
                v.flagged_by,
                w.model_version,
                w.explanation
                    .as_ref()
                    .map(|e| e.rationale.clone())
                    .unwrap_or_default()
            );
        }
        o.false_alerts += usize::from(w.alert);
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_flagged_normal_windows_are_not() {
    let (mut caught, mut incidents, mut false_windows, mut normal_windows, mut false_alerts) =
        (0, 0, 0, 0, 0);
    let mut one_alert_each = true;
    for seed in std::env::var("SEEDS")
        .map(|s| {
            s.split(',')
                .map(|x| x.parse().unwrap())
                .collect::<Vec<u64>>()
        })
        .unwrap_or(vec![1, 2, 3])
    {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config(dir.path(), &[]);
        let traffic = common::traffic(&config, dir.path(), seed, 24.0, 6.0).await;
        let ctx = Context::open(config, "accuracy").await.unwrap();
        let report =
            common::train_and_monitor(&ctx, &traffic, Sink::Store(ctx.store.clone())).await;
        let o = judge(
            &report.scored,
            &traffic.incidents,
            60.0,
            traffic.training_end,
        );
        eprintln!(
            "seed {seed}: {}/{} incidents flagged (missed {:?}); {}/{} normal windows flagged; alerts per incident {:?}, {} false alerts",
            o.caught,
            o.incidents,
            o.missed,
            o.false_windows,
            o.normal_windows,
            o.alerts_per_incident,
            o.false_alerts
        );
        caught += o.caught;
        incidents += o.incidents;
        false_windows += o.false_windows;
        normal_windows += o.normal_windows;
        false_alerts += o.false_alerts;
        one_alert_each &= o.alerts_per_incident.iter().all(|&n| n == 1);
    }
    let recall = caught as f64 / incidents as f64;
    let fp = false_windows as f64 / normal_windows as f64;
    eprintln!(
        "incidents flagged {caught}/{incidents} = {recall:.3}; normal windows flagged {false_windows}/{normal_windows} = {fp:.4}; {false_alerts} false alerts"
    );
    assert!(recall >= 0.95, "recall {recall}");
    assert!(fp <= 0.02, "false-positive rate {fp}");
    assert!(one_alert_each, "each incident raises one alert");
}
