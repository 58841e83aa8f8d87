#![allow(clippy::print_stdout, clippy::print_stderr)]
//! `snapshot`: the Rust side of the cross-language pickling tests (`tests/test_pickle.py`).
//!
//! ```text
//! snapshot fit ROWS.json OUT.snap SEED TREES   fit an isolation forest in Rust, write its snapshot,
//!                                              print its score_samples on the rows
//! snapshot score IN.snap INPUT.json            load any snapshot written by Python or Rust and print what it
//!                                              gives on INPUT: score_samples of a forest (INPUT: rows), the
//!                                              verdicts of a streaming detector run over a series (INPUT: rows),
//!                                              the verdicts of a record model (INPUT: records)
//! ```
//!
//! Output is one JSON object on stdout; floats are written so they read back to the same bits.

use std::process::ExitCode;

use anomaly_core::{IsolationForestParams, Model, Snapshot, StreamingDetector};
use ndarray::Array2;
use serde_json::{Value, json};

fn rows(v: &Value) -> Result<Array2<f64>, String> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((flat.len() / d.max(1), d), flat).map_err(|e| e.to_string())
}

fn read_json(path: &str) -> Result<Value, String> {
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("{path}: {e}"))
}

fn run(args: &[String]) -> Result<Value, String> {
    match args {
        [cmd, input, out, seed, trees] if cmd == "fit" => {
            let x = rows(&read_json(input)?)?;
            let seed = seed.parse().map_err(|e| format!("seed: {e}"))?;
            let trees = trees.parse().map_err(|e| format!("trees: {e}"))?;
            let model = IsolationForestParams::new()
                .seed(seed)
                .n_estimators(trees)
                .fit(x.view())
                .map_err(|e| e.to_string())?;
            std::fs::write(out, model.to_snapshot_bytes()).map_err(|e| format!("{out}: {e}"))?;
            let scores = model.score_samples(x.view()).map_err(|e| e.to_string())?;
            Ok(json!({ "kind": "isolation_forest", "score_samples": scores.to_vec() }))
        }
        [cmd, snap, input] if cmd == "score" => {
            let bytes = std::fs::read(snap).map_err(|e| format!("{snap}: {e}"))?;
            let snapshot = Snapshot::from_bytes(&bytes).map_err(|e| e.to_string())?;
            let input = read_json(input)?;
            let kind = snapshot.model.kind();
            let stream = |d: &mut dyn StreamingDetector| -> Result<Value, String> {
                let verdicts = d
                    .score_many(rows(&input)?.view())
                    .map_err(|e| e.to_string())?;
                Ok(json!(
                    verdicts
                        .iter()
                        .map(|v| v.map(|v| v.score))
                        .collect::<Vec<_>>()
                ))
            };
            let result = match snapshot.model {
                Model::IsolationForest(m) => {
                    let x = rows(&input)?;
                    json!(
                        m.score_samples(x.view())
                            .map_err(|e| e.to_string())?
                            .to_vec()
                    )
                }
                Model::MovingAverage(mut d) => stream(&mut d)?,
                Model::Ema(mut d) => stream(&mut d)?,
                Model::StreamingIsolationForest(mut d) => stream(&mut d)?,
                Model::RecordModel(m) => {
                    let records = input.as_array().ok_or("records: expected a JSON array")?;
                    let scores = records
                        .iter()
                        .map(|r| m.score(r).map(|v| v.score))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    json!(scores)
                }
                other => return Err(format!("unexpected model kind {}", other.kind())),
            };
            Ok(json!({ "kind": kind, "scores": result }))
        }
        _ => Err(
            "usage: snapshot fit ROWS.json OUT.snap SEED TREES | snapshot score IN.snap INPUT.json"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
