//! Times anomaly-core's log analysis on the loghub 2k sets for `compare_drain3.py`: per set, Drain with Drain3's
//! defaults on the `Content` column (the same input Drain3 gets) and the whole `LogDetector` on the raw lines, best
//! of `--repeat` runs, one thread. Prints one JSON object per set.

use std::io::Write;
use std::time::Instant;

use anomaly_benches::{loghub_contents, loghub_raw_lines, shared_data};
use anomaly_core::logs::{Drain, DrainParams, LogDetector, LogDetectorParams};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let Some(dir) = shared_data() else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("no shared data folder (set ANOMALY_SHARED_DATA)");
        }
        std::process::exit(2);
    };
    let sets = [
        "Android",
        "Apache",
        "BGL",
        "HDFS",
        "HPC",
        "Hadoop",
        "HealthApp",
        "Linux",
        "Mac",
        "OpenSSH",
        "OpenStack",
        "Proxifier",
        "Spark",
        "Windows",
        "Zookeeper",
    ];
    let mut out = std::io::stdout().lock();
    for set in sets {
        let contents = loghub_contents(&dir, set);
        let raw = loghub_raw_lines(&dir, set);
        let drain = (0..repeat)
            .map(|_| {
                let started = Instant::now();
                let mut d = Drain::new(DrainParams::drain3()).expect("miner");
                for l in &contents {
                    std::hint::black_box(d.add(l).template);
                }
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let detector = (0..repeat)
            .map(|_| {
                let started = Instant::now();
                let mut d = LogDetector::new(LogDetectorParams::default()).expect("detector");
                for l in &raw {
                    std::hint::black_box(d.analyze(l, 1e9).expect("finite time").score);
                }
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let line = serde_json::json!({
            "set": set,
            "lines": contents.len(),
            "drain_seconds": drain,
            "detector_seconds": detector,
        });
        writeln!(out, "{line}").expect("stdout");
    }
}
