//! `--output`: one line per input row with the row's identifiers (or its number), its score, whether it is an
//! anomaly and, for anomalies, why; as CSV or as JSON lines.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::DetectError;
use crate::input::display_name;

/// The format of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A header, then one CSV row per input row.
    Csv,
    /// One JSON object per input row.
    JsonLines,
}

impl OutputFormat {
    /// JSON lines for a `.jsonl`, `.ndjson` or `.json` file, CSV otherwise.
    pub fn for_path(path: &Path) -> OutputFormat {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => OutputFormat::JsonLines,
            _ => OutputFormat::Csv,
        }
    }
}

/// Writes one line per scored row. Columns: the identifier columns, or `row` (from 1) when there are none; then
/// `score`, `is_anomaly` and `explanation` (empty, or null in JSON, for rows that are not anomalies).
pub struct RowWriter {
    file: String,
    format: OutputFormat,
    identifiers: Vec<String>,
    csv: Option<csv::Writer<BufWriter<File>>>,
    json: Option<BufWriter<File>>,
}

impl RowWriter {
    /// Creates `path` (replacing it) and writes the CSV header.
    ///
    /// # Errors
    /// [`DetectError::Write`] naming the file.
    pub fn create(
        path: &Path,
        format: OutputFormat,
        identifiers: Vec<String>,
    ) -> Result<RowWriter, DetectError> {
        let file = display_name(path);
        let handle = File::create(path).map_err(|e| write_error(&file, &e))?;
        let out = BufWriter::new(handle);
        let mut w = RowWriter {
            file,
            format,
            identifiers,
            csv: None,
            json: None,
        };
        match format {
            OutputFormat::Csv => {
                let mut c = csv::Writer::from_writer(out);
                let mut header: Vec<&str> = w.identifiers.iter().map(String::as_str).collect();
                if header.is_empty() {
                    header.push("row");
                }
                header.extend(["score", "is_anomaly", "explanation"]);
                c.write_record(&header).map_err(|e| w.csv_error(&e))?;
                w.csv = Some(c);
            }
            OutputFormat::JsonLines => w.json = Some(out),
        }
        Ok(w)
    }

    /// Writes the line of row `row` (from 1).
    ///
    /// # Errors
    /// [`DetectError::Write`] naming the file.
    pub fn write(
        &mut self,
        row: usize,
        record: Option<&Value>,
        score: f64,
        is_anomaly: bool,
        explanation: Option<&str>,
    ) -> Result<(), DetectError> {
        let ids: Vec<Value> = self
            .identifiers
            .iter()
            .map(|c| record.map_or(Value::Null, |r| crate::scan::value_at(r, c)))
            .collect();
        match self.format {
            OutputFormat::Csv => {
                let mut fields: Vec<String> = ids.iter().map(cell_text).collect();
                if fields.is_empty() {
                    fields.push(row.to_string());
                }
                fields.push(score.to_string());
                fields.push(is_anomaly.to_string());
                fields.push(explanation.unwrap_or_default().to_string());
                let result = self.csv.as_mut().map(|c| c.write_record(&fields));
                if let Some(Err(e)) = result {
                    return Err(self.csv_error(&e));
                }
            }
            OutputFormat::JsonLines => {
                let mut object = Map::new();
                if self.identifiers.is_empty() {
                    object.insert("row".into(), Value::from(row));
                }
                for (c, v) in self.identifiers.iter().zip(ids) {
                    object.insert(c.clone(), v);
                }
                object.insert(
                    "score".into(),
                    serde_json::Number::from_f64(score).map_or(Value::Null, Value::Number),
                );
                object.insert("is_anomaly".into(), Value::Bool(is_anomaly));
                object.insert(
                    "explanation".into(),
                    explanation.map_or(Value::Null, |e| Value::String(e.to_string())),
                );
                let line = Value::Object(object).to_string();
                if let Some(j) = self.json.as_mut()
                    && let Err(e) = j
                        .write_all(line.as_bytes())
                        .and_then(|()| j.write_all(b"\n"))
                {
                    return Err(write_error(&self.file, &e));
                }
            }
        }
        Ok(())
    }

    /// Flushes what is buffered.
    ///
    /// # Errors
    /// [`DetectError::Write`] naming the file.
    pub fn finish(mut self) -> Result<(), DetectError> {
        let result = match (self.csv.take(), self.json.take()) {
            (Some(mut c), _) => c.flush(),
            (_, Some(mut j)) => j.flush(),
            _ => Ok(()),
        };
        result.map_err(|e| write_error(&self.file, &e))
    }

    fn csv_error(&self, e: &csv::Error) -> DetectError {
        DetectError::Write {
            file: self.file.clone(),
            reason: e.to_string(),
        }
    }
}

/// A cell of the CSV output: a string as it is, null as empty, anything else as JSON.
fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_error(file: &str, e: &std::io::Error) -> DetectError {
    DetectError::Write {
        file: file.to_string(),
        reason: e.to_string(),
    }
}
