//! `report`: a PNG chart per service (latency and error rate over time, anomalies marked, incidents shaded when
//! labels are given), an overview (`service_anomaly_detection.png`), and a Markdown summary that embeds them.
//! Text is drawn with the bundled font (DejaVu Sans, cut to ASCII and a few symbols): no system font is looked up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use anomaly_core::synth::Incident;
use anomaly_core::window::WindowRow;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;

use crate::error::{MonitorError, Result};

/// The bundled font.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
/// The overview chart's file name (the original's).
pub const OVERVIEW: &str = "service_anomaly_detection.png";

/// A flagged window to mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    /// The service.
    pub service: String,
    /// The window's start, epoch seconds.
    pub window_start: f64,
    /// Its score.
    pub score: f64,
    /// Whether it raised an alert.
    pub alerted: bool,
}

/// What the report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// Every window of every service.
    pub windows: Vec<WindowRow>,
    /// The flagged windows.
    pub marks: Vec<Mark>,
    /// Labelled incidents (from `generate`), shaded in the charts and checked in the summary.
    pub incidents: Vec<Incident>,
    /// The window width in seconds.
    pub window_seconds: f64,
}

/// The files written.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFiles {
    /// One chart per service.
    pub charts: Vec<PathBuf>,
    /// The overview.
    pub overview: PathBuf,
    /// The Markdown summary.
    pub summary: PathBuf,
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the bundled font cannot be read: charts will have no text");
        }
    });
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// Writes the charts and the summary into `dir`.
///
/// # Errors
/// [`MonitorError::Io`] when the directory cannot be made or the summary written; [`MonitorError::Chart`] when a
/// chart cannot be drawn.
pub fn write_report(dir: &Path, data: &ReportData) -> Result<ReportFiles> {
    register_font();
    std::fs::create_dir_all(dir)
        .map_err(|e| MonitorError::io(format!("creating {}", dir.display()), e))?;
    let mut by_service: BTreeMap<&str, Vec<&WindowRow>> = BTreeMap::new();
    for w in &data.windows {
        by_service.entry(&w.service).or_default().push(w);
    }
    let mut charts = Vec::new();
    for (service, rows) in &by_service {
        let path = dir.join(format!("{}.png", file_name(service)));
        service_chart(&path, service, rows, data).map_err(|e| chart_error(&path, e))?;
        charts.push(path);
    }
    let overview = dir.join(OVERVIEW);
    overview_chart(&overview, &by_service, data).map_err(|e| chart_error(&overview, e))?;
    let summary = dir.join("report.md");
    std::fs::write(&summary, markdown(&by_service, data, &charts))
        .map_err(|e| MonitorError::io(format!("writing {}", summary.display()), e))?;
    Ok(ReportFiles {
        charts,
        overview,
        summary,
    })
}

fn chart_error(path: &Path, e: Box<dyn std::error::Error>) -> MonitorError {
    MonitorError::Chart {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// A service name as a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_name(service: &str) -> String {
    let s: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

fn clock(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.format("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn span(rows: &[&WindowRow], width: f64) -> (f64, f64) {
    let t0 = rows
        .iter()
        .map(|r| r.window_start)
        .fold(f64::INFINITY, f64::min);
    let t1 = rows
        .iter()
        .map(|r| r.window_start + width)
        .fold(f64::NEG_INFINITY, f64::max);
    if t0.is_finite() && t1 > t0 {
        (t0, t1)
    } else {
        (0.0, 1.0)
    }
}

const INCIDENT: RGBColor = RGBColor(255, 224, 224);
const P50: RGBColor = RGBColor(31, 119, 180);
const P95: RGBColor = RGBColor(44, 160, 44);
const ERRORS: RGBColor = RGBColor(255, 127, 14);
const FLAG: RGBColor = RGBColor(214, 39, 40);

fn service_chart(path: &Path, service: &str, rows: &[&WindowRow], data: &ReportData) -> Drawn {
    let root = BitMapBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "{service}: latency and errors per {} s window",
            data.window_seconds
        ),
        ("sans-serif", 24),
    )?;
    let (upper, lower) = root.split_vertically(420);
    let (t0, t1) = span(rows, data.window_seconds);
    let marks: Vec<&Mark> = data.marks.iter().filter(|m| m.service == service).collect();
    let incidents: Vec<&Incident> = data
        .incidents
        .iter()
        .filter(|i| i.service() == service)
        .collect();
    let at = |t: f64| rows.iter().find(|r| r.window_start == t);

    let lat_max = rows
        .iter()
        .filter_map(|r| r.latency_p95)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&upper)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, 0.0..lat_max)?;
    c.configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|x| clock(*x))
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 14))
        .draw()?;
    c.draw_series(incidents.iter().map(|i| {
        Rectangle::new(
            [(i.start().max(t0), 0.0), (i.end().min(t1), lat_max)],
            INCIDENT.filled(),
        )
    }))?;
    let line = |pick: fn(&WindowRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| pick(r).map(|v| (r.window_start, v)))
            .collect()
    };
    c.draw_series(LineSeries::new(line(|r| r.latency_p50), &P50))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P50));
    c.draw_series(LineSeries::new(line(|r| r.latency_p95), &P95))?
        .label("p95")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P95));
    c.draw_series(marks.iter().map(|m| {
        let y = at(m.window_start)
            .and_then(|r| r.latency_p95)
            .unwrap_or(0.0);
        Circle::new(
            (m.window_start, y),
            if m.alerted { 6 } else { 4 },
            FLAG.filled(),
        )
    }))?
    .label("anomaly (large: alert)")
    .legend(|(x, y)| Circle::new((x + 10, y), 4, FLAG.filled()));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font(("sans-serif", 14))
        .draw()?;

    let err_max = rows
        .iter()
        .filter_map(|r| r.error_rate)
        .fold(0.02_f64, f64::max)
        * 110.0;
    let mut c = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, 0.0..err_max)?;
    c.configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|x| clock(*x))
        .y_desc("errors (% of requests)")
        .label_style(("sans-serif", 14))
        .draw()?;
    c.draw_series(incidents.iter().map(|i| {
        Rectangle::new(
            [(i.start().max(t0), 0.0), (i.end().min(t1), err_max)],
            INCIDENT.filled(),
        )
    }))?;
    c.draw_series(LineSeries::new(
        rows.iter()
            .filter_map(|r| r.error_rate.map(|e| (r.window_start, e * 100.0))),
        &ERRORS,
    ))?;
    c.draw_series(marks.iter().map(|m| {
        let y = at(m.window_start).and_then(|r| r.error_rate).unwrap_or(0.0) * 100.0;
        Circle::new((m.window_start, y), 4, FLAG.filled())
    }))?;
    root.present()?;
    Ok(())
}

fn overview_chart(
    path: &Path,
    services: &BTreeMap<&str, Vec<&WindowRow>>,
    data: &ReportData,
) -> Drawn {
    let n = services.len().max(1);
    let root = BitMapBackend::new(path, (1200, (180 * n + 60) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Service anomaly detection: requests per window, anomalies in red",
        ("sans-serif", 24),
    )?;
    let all: Vec<&WindowRow> = services.values().flatten().copied().collect();
    let (t0, t1) = span(&all, data.window_seconds);
    for (area, (service, rows)) in root.split_evenly((n, 1)).iter().zip(services) {
        let max = rows.iter().map(|r| r.count as f64).fold(1.0, f64::max) * 1.15;
        let mut c = ChartBuilder::on(area)
            .margin(8)
            .caption(*service, ("sans-serif", 16))
            .x_label_area_size(24)
            .y_label_area_size(70)
            .build_cartesian_2d(t0..t1, 0.0..max)?;
        c.configure_mesh()
            .x_labels(8)
            .y_labels(4)
            .x_label_formatter(&|x| clock(*x))
            .y_desc("requests")
            .label_style(("sans-serif", 12))
            .draw()?;
        c.draw_series(
            data.incidents
                .iter()
                .filter(|i| i.service() == *service)
                .map(|i| {
                    Rectangle::new(
                        [(i.start().max(t0), 0.0), (i.end().min(t1), max)],
                        INCIDENT.filled(),
                    )
                }),
        )?;
        c.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.window_start, r.count as f64)),
            &P50,
        ))?;
        c.draw_series(
            data.marks
                .iter()
                .filter(|m| m.service == *service)
                .map(|m| {
                    let y = rows
                        .iter()
                        .find(|r| r.window_start == m.window_start)
                        .map_or(0.0, |r| r.count as f64);
                    Circle::new(
                        (m.window_start, y),
                        if m.alerted { 6 } else { 4 },
                        FLAG.filled(),
                    )
                }),
        )?;
    }
    root.present()?;
    Ok(())
}

fn markdown(
    services: &BTreeMap<&str, Vec<&WindowRow>>,
    data: &ReportData,
    charts: &[PathBuf],
) -> String {
    let mut md = String::from("# Service anomaly report\n\n");
    let all: Vec<&WindowRow> = services.values().flatten().copied().collect();
    let (t0, t1) = span(&all, data.window_seconds);
    md.push_str(&format!(
        "From {} to {} UTC, in windows of {} s.\n\n![overview]({OVERVIEW})\n\n",
        clock(t0),
        clock(t1),
        data.window_seconds
    ));
    md.push_str("| service | windows | anomalies | alerts | highest score |\n| --- | ---: | ---: | ---: | ---: |\n");
    for (service, rows) in services {
        let marks: Vec<&Mark> = data
            .marks
            .iter()
            .filter(|m| m.service == *service)
            .collect();
        let top = marks.iter().map(|m| m.score).fold(f64::NAN, f64::max);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            escape(service),
            rows.len(),
            marks.len(),
            marks.iter().filter(|m| m.alerted).count(),
            if top.is_nan() {
                "–".into()
            } else {
                format!("{top:.3}")
            }
        ));
    }
    if !data.incidents.is_empty() {
        md.push_str("\n## Labelled incidents\n\n| service | kind | from | minutes | flagged windows | alerted |\n| --- | --- | --- | ---: | ---: | --- |\n");
        for i in &data.incidents {
            let inside: Vec<&Mark> = data
                .marks
                .iter()
                .filter(|m| {
                    m.service == i.service()
                        && m.window_start < i.end()
                        && m.window_start + data.window_seconds > i.start()
                })
                .collect();
            md.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {} |\n",
                escape(i.service()),
                i.kind().as_str(),
                clock(i.start()),
                i.duration_seconds().min(1e9) / 60.0,
                inside.len(),
                if inside.iter().any(|m| m.alerted) {
                    "yes"
                } else {
                    "no"
                }
            ));
        }
    }
    md.push('\n');
    for chart in charts {
        let name = chart
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let service = name.trim_end_matches(".png");
        md.push_str(&format!(
            "## {}\n\n![{}]({})\n\n",
            escape(service),
            escape(service),
            name
        ));
    }
    md
}

/// A name in a Markdown table cell.
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
