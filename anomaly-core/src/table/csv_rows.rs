//! CSV rows: the header names the columns, the delimiter is sniffed from the first lines unless given.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::cell::cell_value_into;
use super::{Input, cell_value, table_error};
use crate::error::Result;

/// Delimiters sniffing chooses from, in order of preference on a tie.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Lines sniffing looks at, header included.
const SNIFF_LINES: usize = 50;

pub(super) struct CsvRows {
    reader: csv::Reader<Input>,
    columns: Vec<String>,
    delimiter: u8,
    record: csv::ByteRecord,
    /// For each entry of a row's object, in the object's iteration order, its column: rows are rewritten in place.
    order: Vec<usize>,
}

impl CsvRows {
    pub(super) fn new(file: &str, mut input: Input, delimiter: Option<u8>) -> Result<CsvRows> {
        let start = input
            .fill_buf()
            .map_err(|e| table_error(file, format!("cannot read: {e}")))?;
        // A UTF-8 byte-order mark (as spreadsheet programs write) is not part of the first column's name.
        let bom = start.starts_with(b"\xEF\xBB\xBF");
        let start = if bom { &start[3..] } else { start };
        let delimiter = match delimiter {
            Some(d) => d,
            None => sniff(start),
        };
        if bom {
            input.consume(3);
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(input);
        let mut header = csv::ByteRecord::new();
        let found = reader
            .read_byte_record(&mut header)
            .map_err(|e| table_error(file, format!("header: {e}")))?;
        if !found {
            return Err(table_error(
                file,
                "the file is empty (expected a header row and data rows)",
            ));
        }
        let mut seen = HashSet::new();
        let mut columns = Vec::with_capacity(header.len());
        for (j, name) in header.iter().enumerate() {
            let name = std::str::from_utf8(name)
                .map_err(|_| table_error(file, format!("header: column {} is not UTF-8", j + 1)))?
                .trim();
            let base = if name.is_empty() {
                format!("x{j}")
            } else {
                name.to_string()
            };
            // Repeated names get a suffix, as pandas gives them (`a`, `a.1`, `a.2`).
            let mut unique = base.clone();
            let mut k = 1;
            while !seen.insert(unique.clone()) {
                unique = format!("{base}.{k}");
                k += 1;
            }
            columns.push(unique);
        }
        Ok(CsvRows {
            reader,
            columns,
            delimiter,
            record: csv::ByteRecord::new(),
            order: Vec::new(),
        })
    }

    pub(super) fn columns(&self) -> &[String] {
        &self.columns
    }

    pub(super) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Reads the next record that is not an empty line; false at the end.
    fn advance(&mut self, row: u64) -> Result<bool, String> {
        loop {
            let found = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| format!("row {row}: {e}"))?;
            if !found {
                return Ok(false);
            }
            // An empty line is not a row.
            if !(self.record.len() == 1 && self.record[0].is_empty()) {
                return Ok(true);
            }
        }
    }

    /// Passes over the next row, checking its field count and encoding but making no value of it.
    pub(super) fn skip_row(&mut self, row: u64) -> Result<bool, String> {
        if !self.advance(row)? {
            return Ok(false);
        }
        self.check(row)?;
        if std::str::from_utf8(self.record.as_slice()).is_err() {
            return Err(format!("row {row}: not UTF-8"));
        }
        Ok(true)
    }

    fn check(&self, row: u64) -> Result<(), String> {
        if self.record.len() != self.columns.len() {
            return Err(format!(
                "row {row} has {} fields, but the header has {}",
                self.record.len(),
                self.columns.len()
            ));
        }
        Ok(())
    }

    /// The next row into `slot`, rewriting its values in place when it is a row this reader made.
    pub(super) fn next_row_into(&mut self, row: u64, slot: &mut Value) -> Result<bool, String> {
        if !self.advance(row)? {
            return Ok(false);
        }
        self.check(row)?;
        let text = |j: usize| -> Result<&str, String> {
            std::str::from_utf8(&self.record[j])
                .map_err(|_| format!("row {row}, column {:?}: not UTF-8", self.columns[j]))
        };
        if let Value::Object(object) = slot
            && !self.order.is_empty()
            && object.len() == self.columns.len()
            && object
                .keys()
                .zip(&self.order)
                .all(|(k, &j)| *k == self.columns[j])
        {
            for (value, &j) in object.values_mut().zip(&self.order) {
                cell_value_into(text(j)?, value);
            }
            return Ok(true);
        }
        let mut object = Map::new();
        for (j, name) in self.columns.iter().enumerate() {
            object.insert(name.clone(), cell_value(text(j)?));
        }
        if self.order.is_empty() {
            let index: HashMap<&str, usize> = self
                .columns
                .iter()
                .enumerate()
                .map(|(j, c)| (c.as_str(), j))
                .collect();
            self.order = object
                .keys()
                .map(|k| index.get(k.as_str()).copied().unwrap_or(0))
                .collect();
        }
        *slot = Value::Object(object);
        Ok(true)
    }
}

/// The delimiter of CSV text starting with `start`: among `,` `;` tab `|`, the one that splits the header and the
/// complete lines after it (up to [`SNIFF_LINES`]) into the same number of fields, more than one, most often; on a
/// tie, the one giving more fields, then the first in that list. Quoted text is not counted. `,` when none splits.
fn sniff(start: &[u8]) -> u8 {
    // Only complete lines: the buffer may end mid-line.
    let complete = match start.iter().rposition(|&b| b == b'\n') {
        Some(end) => &start[..end],
        None => start,
    };
    let mut best = (0usize, 0usize, b',');
    for &d in &CANDIDATES {
        let counts: Vec<usize> = lines_outside_quotes(complete, d)
            .into_iter()
            .take(SNIFF_LINES)
            .collect();
        let Some(&header) = counts.first() else {
            continue;
        };
        if header == 0 {
            continue;
        }
        let agreeing = counts.iter().filter(|&&c| c == header).count();
        if (agreeing, header) > (best.0, best.1) {
            best = (agreeing, header, d);
        }
    }
    best.2
}

/// Per line (quoted line breaks do not end one), how often `d` occurs outside double quotes.
fn lines_outside_quotes(text: &[u8], d: u8) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut quoted, mut count, mut empty) = (false, 0usize, true);
    for &b in text {
        match b {
            b'"' => {
                quoted = !quoted;
                empty = false;
            }
            b'\n' if !quoted => {
                if !empty {
                    out.push(count);
                }
                count = 0;
                empty = true;
            }
            b'\r' => {}
            _ if b == d && !quoted => {
                count += 1;
                empty = false;
            }
            _ => empty = false,
        }
    }
    if !empty {
        out.push(count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniffs_the_delimiter_that_splits_every_line_alike() {
        assert_eq!(sniff(b"a,b,c\n1,2,3\n4,5,6\n"), b',');
        assert_eq!(sniff(b"a;b;c\n1,5;2;3\n4;5,5;6\n"), b';');
        assert_eq!(sniff(b"a\tb\n1\t2\n"), b'\t');
        assert_eq!(sniff(b"a|b\n\"x|y\"|2\n"), b'|');
        // Commas inside quotes do not count; the semicolon splits every line.
        assert_eq!(sniff(b"name;note\nx;\"a, b, c\"\ny;\"d, e\"\n"), b';');
        // One column: the default.
        assert_eq!(sniff(b"value\n1\n2\n"), b',');
        assert_eq!(sniff(b""), b',');
    }
}
