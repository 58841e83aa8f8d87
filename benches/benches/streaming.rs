#![allow(missing_docs)]
//! Streaming detectors: points per second through `score_many_values` on a univariate series, and across 1,000
//! series as the metric worker runs them (each point to its own series' detector, round robin, so every detector's
//! state is cold in cache as in production; and through `SeriesDetectors`, which adds the lookup by name, the
//! context kept per series and the alert rule).
//!
//! The series is a sine (period 1000 points, amplitude 10) plus N(0, 1) noise, seeded: 1M points under
//! `cargo bench`, 10k under `cargo test --benches` (criterion's test mode, which runs each benchmark once). Every
//! iteration starts from a fresh detector, so warm-up and (for the forest) the first fit are included, as they would
//! be for a new stream.

use std::hint::black_box;
use std::time::Duration;

use anomaly_benches::{full_run, sine_series};
use anomaly_core::stream::{SeriesDetectors, SeriesParams};
use anomaly_core::{
    EmaParams, MovingAverageParams, StreamingDetector, StreamingIsolationForestParams, Verdict,
};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// Seed of the generated series.
const SERIES_SEED: u64 = 7;

fn series_len() -> usize {
    if full_run() { 1_000_000 } else { 10_000 }
}

/// Runs a fresh detector over the whole series and returns its verdicts.
fn run<D: StreamingDetector>(mut detector: D, series: &[f64]) -> Vec<Option<Verdict>> {
    detector
        .score_many_values(series)
        .expect("score_many_values")
}

fn bench_streaming(c: &mut Criterion) {
    let series = sine_series(series_len(), SERIES_SEED);
    let mut group = c.benchmark_group("streaming");
    group
        .throughput(Throughput::Elements(series.len() as u64))
        .warm_up_time(Duration::from_secs(1));
    let id = |name: &str| BenchmarkId::new(name, series.len());

    // O(1) per point: a ring of 5 values and sliding Welford sums; ~20 ms per 1M-point iteration.
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function(id("moving_average_w5"), |b| {
        let params = MovingAverageParams::new().window(5);
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });
    group.bench_function(id("ema"), |b| {
        let params = EmaParams::new();
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });

    // 50 trees scored per point and 4 trees regrown every 20 points: several seconds per 1M-point iteration, so
    // the 10 samples take about a minute.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(id("streaming_isolation_forest"), |b| {
        let params = StreamingIsolationForestParams::new();
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });
    group.finish();
}

/// Series of the multi-series benchmarks.
const SERIES: usize = 1_000;

/// Points per series: 1,000 under `cargo bench` (a million points in all), 20 in test mode.
fn points_per_series() -> usize {
    if full_run() { 1_000 } else { 20 }
}

/// Feeds `points` to `detectors` round robin (point `i` of every series before point `i + 1` of any).
fn round_robin<D: StreamingDetector>(detectors: &mut [D], points: &[Vec<f64>]) -> usize {
    let mut flagged = 0;
    for i in 0..points[0].len() {
        for (d, series) in detectors.iter_mut().zip(points) {
            let v = d.score_and_update(&[series[i]]).expect("score");
            flagged += usize::from(v.is_some_and(|v| v.is_anomaly));
        }
    }
    flagged
}

fn bench_many_series(c: &mut Criterion) {
    let n = points_per_series();
    let points: Vec<Vec<f64>> = (0..SERIES)
        .map(|s| sine_series(n, SERIES_SEED + s as u64))
        .collect();
    let names: Vec<String> = (0..SERIES).map(|s| format!("cpu.host-{s}")).collect();
    let mut group = c.benchmark_group("series_1000");
    group
        .throughput(Throughput::Elements((SERIES * n) as u64))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5));
    let id = |name: &str| BenchmarkId::new(name, SERIES * n);
    group.bench_function(id("moving_average_w5"), |b| {
        let params = MovingAverageParams::new().window(5).threshold(20.0);
        b.iter_batched_ref(
            || {
                (0..SERIES)
                    .map(|_| params.clone().build().expect("build"))
                    .collect::<Vec<_>>()
            },
            |detectors| round_robin(detectors, black_box(&points)),
            criterion::BatchSize::LargeInput,
        );
    });
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(id("streaming_isolation_forest"), |b| {
        let params = StreamingIsolationForestParams::new();
        b.iter_batched_ref(
            || {
                (0..SERIES)
                    .map(|_| params.clone().build().expect("build"))
                    .collect::<Vec<_>>()
            },
            |detectors| round_robin(detectors, black_box(&points)),
            criterion::BatchSize::LargeInput,
        );
    });
    // The same forests after a first pass over the points: what a long-running worker sees, where every series
    // is past its warm-up and each batch replaces one tree.
    group.bench_function(id("streaming_isolation_forest_warm"), |b| {
        let params = StreamingIsolationForestParams::new();
        b.iter_batched_ref(
            || {
                let mut detectors = (0..SERIES)
                    .map(|_| params.clone().build().expect("build"))
                    .collect::<Vec<_>>();
                round_robin(&mut detectors, &points);
                detectors
            },
            |detectors| round_robin(detectors, black_box(&points)),
            criterion::BatchSize::LargeInput,
        );
    });
    group.bench_function(id("series_detectors"), |b| {
        b.iter_batched_ref(
            || SeriesDetectors::new(SeriesParams::default()).expect("build"),
            |detectors| {
                let mut found = 0;
                for i in 0..n {
                    for (name, series) in names.iter().zip(&points) {
                        let outcome = detectors.observe(name, i as u64 + 1, series[i]).expect("observe");
                        found += usize::from(matches!(outcome, anomaly_core::stream::SeriesOutcome::Observed(d) if !d.is_empty()));
                    }
                }
                found
            },
            criterion::BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_streaming, bench_many_series);
criterion_main!(benches);
