//! JSON lines: one object per line, blank lines skipped.

use std::collections::HashSet;
use std::io::{BufRead, Read};

use serde_json::Value;

use super::{Input, MAX_COLUMNS, MAX_LINE_BYTES};

pub(super) struct JsonLines {
    input: Input,
    line: u64,
    buf: Vec<u8>,
    columns: Vec<String>,
    seen: HashSet<String>,
}

impl JsonLines {
    pub(super) fn new(input: Input) -> JsonLines {
        JsonLines {
            input,
            line: 0,
            buf: Vec::new(),
            columns: Vec::new(),
            seen: HashSet::new(),
        }
    }

    pub(super) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Reads the next line that is not blank into the buffer; false at the end.
    fn advance(&mut self) -> Result<bool, String> {
        loop {
            self.buf.clear();
            let n = (&mut self.input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| format!("line {}: cannot read: {e}", self.line + 1))?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(format!(
                    "line {}: longer than {MAX_LINE_BYTES} bytes",
                    self.line
                ));
            }
            let text = self.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.buf);
            if !text.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }

    /// Passes over the next row, checking that it is a JSON object but making no value of it.
    pub(super) fn skip_row(&mut self, row: u64) -> Result<bool, String> {
        if !self.advance()? {
            return Ok(false);
        }
        let text = self.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.buf);
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(format!("row {row} (line {}): not a JSON object", self.line));
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(text)
            .map_err(|e| format!("row {row} (line {}): not JSON: {e}", self.line))?;
        Ok(true)
    }

    pub(super) fn next_row(&mut self, row: u64) -> Result<Option<Value>, String> {
        if !self.advance()? {
            return Ok(None);
        }
        let text = self.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.buf);
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| format!("row {row} (line {}): not JSON: {e}", self.line))?;
        let Value::Object(object) = &value else {
            return Err(format!(
                "row {row} (line {}): {}, not a JSON object",
                self.line,
                crate::records::flatten::type_name(&value)
            ));
        };
        for key in object.keys() {
            if self.columns.len() < MAX_COLUMNS && !self.seen.contains(key) {
                self.seen.insert(key.clone());
                self.columns.push(key.clone());
            }
        }
        Ok(Some(value))
    }
}
