//! Where events come from: an NDJSON file (one event per line) or a cluster.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use crate::config::Config;
use crate::elastic::Elastic;
use crate::error::{MonitorError, Result};

/// Bytes read from a file at a time; its lines are parsed in parallel.
const CHUNK_BYTES: usize = 8 << 20;
/// The longest line read; a longer one is refused (and skipped) rather than held in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// An event source.
#[derive(Debug, Clone)]
pub enum Source {
    /// Events in an NDJSON file.
    File(PathBuf),
    /// Events in the indices `index` of a cluster.
    Elastic {
        /// The connection.
        client: Elastic,
        /// The index pattern (`ES_INDEX`).
        index: String,
    },
}

impl Source {
    /// `input` when given, else the cluster at `ES_URL`.
    ///
    /// # Errors
    /// [`MonitorError::Config`] when there is neither; the cluster's refusal when it cannot be reached.
    pub async fn open(config: &Config, input: Option<&Path>) -> Result<Source> {
        if let Some(path) = input {
            return Ok(Source::File(path.to_path_buf()));
        }
        let Some(settings) = &config.elastic else {
            return Err(MonitorError::Config(service_kit::KitError::Config {
                variable: "ES_URL".into(),
                reason:
                    "no cluster is configured: set ES_URL, or read a file with --input FILE.ndjson \
                         (or try `service-monitor all --demo`)"
                        .into(),
            }));
        };
        Ok(Source::Elastic {
            client: Elastic::connect(settings.clone()).await?,
            index: config.index.clone(),
        })
    }

    /// A description for logs and the stored progress (credentials left out).
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => format!("file {}", p.display()),
            Source::Elastic { index, .. } => format!("index {index}"),
        }
    }
}

/// One line of a file: the event, or why it is not one (with its line number).
pub type Line = std::result::Result<Value, String>;

/// Reads the NDJSON file `path` from byte `offset`, handing each line's event (or its error, naming the line) to
/// `on_line` in order; blank lines are skipped. Only complete lines are read unless `complete` (a last line without
/// its newline is then read too). Returns the offset after the last line read and how many lines were read.
/// Lines are parsed in parallel, chunk by chunk, so memory stays bounded by the chunk.
///
/// # Errors
/// [`MonitorError::Io`] when the file cannot be read; what `on_line` returns.
pub fn read_ndjson(
    path: &Path,
    offset: u64,
    complete: bool,
    first_line: u64,
    mut on_line: impl FnMut(Line) -> Result<()>,
) -> Result<(u64, u64)> {
    let what = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| MonitorError::io(what(), e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| MonitorError::io(what(), e))?;
    let mut position = offset;
    let mut line_no = first_line;
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    // Inside a line longer than the bound: its bytes are dropped up to its newline, and it is refused once.
    let mut skipping = false;
    let mut skip_start = position;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| MonitorError::io(what(), e))?;
        let eof = n == 0;
        let mut chunk = &buf[..n];
        if skipping {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    skipping = false;
                    position += (i + 1) as u64;
                    chunk = &chunk[i + 1..];
                }
                None => {
                    position += n as u64;
                    if eof {
                        // A file still being written: the rest of the long line is not read as a line of its own
                        // next time; the next read starts at the line again (and refuses it again).
                        return if complete {
                            Ok((position, line_no - first_line))
                        } else {
                            Ok((skip_start, line_no - first_line - 1))
                        };
                    }
                    continue;
                }
            }
        }
        carry.extend_from_slice(chunk);
        let end = if eof {
            if complete { carry.len() } else { 0 }
        } else {
            match carry.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // No newline in the carried bytes: keep reading unless the line is already too long.
                None if carry.len() <= MAX_LINE_BYTES => continue,
                None => {
                    line_no += 1;
                    on_line(Err(format!(
                        "line {line_no}: longer than {MAX_LINE_BYTES} bytes"
                    )))?;
                    skip_start = position;
                    position += carry.len() as u64;
                    carry.clear();
                    skipping = true;
                    continue;
                }
            }
        };
        let mut lines: Vec<&[u8]> = carry[..end].split(|&b| b == b'\n').collect();
        if carry[..end].last() == Some(&b'\n') || end == 0 {
            // The piece after the last newline is the next chunk's.
            lines.pop();
        }
        let parsed: Vec<Option<Line>> = lines
            .par_iter()
            .map(|l| {
                if l.len() > MAX_LINE_BYTES {
                    return Some(Err(format!("longer than {MAX_LINE_BYTES} bytes")));
                }
                if l.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                Some(serde_json::from_slice::<Value>(l).map_err(|e| e.to_string()))
            })
            .collect();
        for line in parsed {
            line_no += 1;
            if let Some(line) = line {
                on_line(line.map_err(|e| format!("line {line_no}: {e}")))?;
            }
        }
        position += end as u64;
        carry.drain(..end);
        if eof {
            return Ok((position, line_no - first_line));
        }
    }
}

/// Reads every event of the cluster's `index` in `[from, until)` (epoch milliseconds), in time order.
///
/// # Errors
/// As [`Elastic::scan`]; what `on_event` returns.
pub async fn scan(
    client: &Elastic,
    index: &str,
    timestamp_field: &str,
    range: (i64, i64),
    on_event: impl FnMut(Value) -> Result<()>,
) -> Result<u64> {
    client
        .scan::<MonitorError>(index, timestamp_field, range, on_event)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_complete_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "{{\"a\":1}}\n\n{{bad\n{{\"a\":2}}\n{{\"a\":3}}").unwrap();
        drop(f);
        let mut seen = Vec::new();
        let (offset, lines) = read_ndjson(&path, 0, false, 0, |l| {
            seen.push(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(lines, 4, "the blank line counts: {seen:?}");
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0].as_ref().unwrap()["a"], 1, "{seen:?}");
        assert!(seen[1].as_ref().unwrap_err().starts_with("line 3:"));
        assert_eq!(seen[2].as_ref().unwrap()["a"], 2);
        // The unfinished last line is read once it is complete, or when the file is.
        let mut rest = Vec::new();
        let (end, _) = read_ndjson(&path, offset, true, lines, |l| {
            rest.push(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].as_ref().unwrap()["a"], 3);
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn an_overlong_line_is_refused_once_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.ndjson");
        let text = format!(
            "{{\"a\":1}}\n{}{{\"tail\":1}}\n{{\"a\":2}}\n\n",
            " ".repeat(3 * MAX_LINE_BYTES)
        );
        std::fs::write(&path, text).unwrap();
        let mut seen = Vec::new();
        let (end, lines) = read_ndjson(&path, 0, true, 0, |l| {
            seen.push(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            seen[1]
                .as_ref()
                .unwrap_err()
                .starts_with("line 2: longer than")
        );
        assert_eq!(seen[2].as_ref().unwrap()["a"], 2);
        assert_eq!(lines, 4);
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());

        // A line longer than a whole chunk, at the end of a file still being written: the next read starts at it.
        let path = dir.path().join("growing.ndjson");
        let text = format!("{{\"a\":1}}\n{}", "x".repeat(CHUNK_BYTES + 10));
        std::fs::write(&path, text).unwrap();
        let (offset, lines) = read_ndjson(&path, 0, false, 0, |_| Ok(())).unwrap();
        assert_eq!((offset, lines), (8, 1));
    }
}
