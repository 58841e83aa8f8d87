//! Tables as records: CSV, JSON lines and Parquet files read row by row into JSON objects, which the record
//! vectorizer ([`crate::records`]) turns into features. One schema then learns numbers, booleans, dates and times,
//! categories, identifiers, free text and blanks, whatever the file format (see
//! [`records::role`](crate::records::role) for how each column's role is decided).
//!
//! | format | chosen by | a row becomes |
//! | --- | --- | --- |
//! | CSV | `.csv`, `.tsv`, `.tab`, `.txt`, or [`TableFormat::Csv`] | an object keyed by the header's names, each cell typed by [`cell_value`]; the delimiter (`,` `;` tab `\|`) is sniffed from the first lines unless given |
//! | JSON lines | `.jsonl`, `.ndjson`, or [`TableFormat::JsonLines`] | the line's object, as it is (blank lines skipped) |
//! | Parquet | `.parquet`, `.pq`, or [`TableFormat::Parquet`] | the row's columns: numbers, booleans and strings; dates and timestamps as RFC 3339 strings; groups as objects, lists as arrays |
//!
//! [`TableEncoding`] then learns each column's role from rows and makes them a matrix: a table of numbers as it is
//! (identifiers set aside), any other through the vectorizer.
//!
//! Rows stream: a reader holds one row (CSV, JSON lines) or one row group (Parquet) at a time, so a file of any
//! length is read in bounded memory. A JSON line longer than [`MAX_LINE_BYTES`] is an error rather than a reason to
//! grow without bound.
//!
//! ```
//! use anomaly_core::table::{TableOptions, TableReader};
//! let csv = "when,amount,region\n2014-07-01 00:00:00,10.5,north\n2014-07-01 00:30:00,,south\n";
//! let mut table = TableReader::from_csv_bytes("sales.csv", csv.as_bytes(), &TableOptions::default())?;
//! let rows = table.read_all()?;
//! assert_eq!(table.columns(), ["when", "amount", "region"]);
//! assert_eq!(rows[0]["amount"], 10.5);
//! assert!(rows[1]["amount"].is_null()); // a blank cell is a missing value
//! # Ok::<(), anomaly_core::Error>(())
//! ```

mod cell;
mod csv_rows;
mod encoding;
mod json_lines;
mod parquet_rows;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

pub use cell::{MISSING_TOKENS, cell_value};
pub use encoding::{NotANumber, TableEncoding};

use crate::error::{Error, Result};
use csv_rows::CsvRows;
use json_lines::JsonLines;
use parquet_rows::ParquetRows;

/// Longest JSON line accepted, in bytes (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Most columns a JSON-lines table lists ([`TableReader::columns`]): keys seen after that many are still read, not
/// listed.
pub const MAX_COLUMNS: usize = 65_536;

/// Bytes buffered from a file, which is also what the CSV delimiter is sniffed from.
const BUFFER_BYTES: usize = 256 << 10;

/// A table's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableFormat {
    /// Delimited text with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet.
    Parquet,
}

impl TableFormat {
    /// The format a file's extension names (case-insensitive), if any: see the [module documentation](self).
    pub fn from_path(path: &Path) -> Option<TableFormat> {
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "tab" | "txt" => Some(TableFormat::Csv),
            "jsonl" | "ndjson" => Some(TableFormat::JsonLines),
            "parquet" | "pq" => Some(TableFormat::Parquet),
            _ => None,
        }
    }

    /// `csv`, `jsonl` or `parquet`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::JsonLines => "jsonl",
            TableFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for TableFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TableFormat {
    type Err = Error;

    /// `csv`, `jsonl` (or `json`, `ndjson`) or `parquet`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Ok(TableFormat::Csv),
            "jsonl" | "json" | "ndjson" => Ok(TableFormat::JsonLines),
            "parquet" | "pq" => Ok(TableFormat::Parquet),
            other => Err(Error::invalid(
                "format",
                format!("`{other}` is not one of csv, jsonl, parquet"),
            )),
        }
    }
}

/// Parses a CSV delimiter as a user names it: one ASCII character other than a quote or a line break, or `tab`
/// (also `\t`, written out or as the character).
///
/// ```
/// assert_eq!(anomaly_core::table::parse_delimiter(";")?, b';');
/// assert_eq!(anomaly_core::table::parse_delimiter("tab")?, b'\t');
/// assert!(anomaly_core::table::parse_delimiter(";;").is_err());
/// # Ok::<(), anomaly_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] saying what is expected.
pub fn parse_delimiter(s: &str) -> Result<u8> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(Error::invalid(
            "delimiter",
            format!(
                "expected one ASCII character (other than a quote or a line break) or `tab`, got {s:?}"
            ),
        )),
    }
}

/// How to read a table: the format when the extension does not say, and the CSV delimiter when sniffing should not
/// decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// The format; `None` chooses by extension.
    pub format: Option<TableFormat>,
    /// The CSV delimiter (one ASCII byte); `None` sniffs it.
    pub delimiter: Option<u8>,
}

/// A table being read row by row: each row a JSON object. See the [module documentation](self).
pub struct TableReader {
    file: String,
    format: TableFormat,
    rows: Rows,
    read: u64,
}

enum Rows {
    Csv(Box<CsvRows>),
    JsonLines(JsonLines),
    Parquet(Box<ParquetRows>),
}

impl fmt::Debug for TableReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableReader")
            .field("file", &self.file)
            .field("format", &self.format)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl TableReader {
    /// Opens `path`, in the format `options` names or its extension says.
    ///
    /// # Errors
    /// [`Error::Table`] when the file cannot be opened, its format is unknown, a delimiter is given for another
    /// format than CSV, or its start is not a table of that
    /// format (an empty CSV file, a CSV header that is not UTF-8, a Parquet footer that does not parse).
    pub fn open(path: &Path, options: &TableOptions) -> Result<TableReader> {
        let file = path.display().to_string();
        let format = match options.format.or_else(|| TableFormat::from_path(path)) {
            Some(f) => f,
            None => {
                return Err(table_error(
                    &file,
                    "unknown table format: name the file .csv, .tsv, .jsonl, .ndjson or .parquet, or give the format",
                ));
            }
        };
        let handle =
            File::open(path).map_err(|e| table_error(&file, format!("cannot read: {e}")))?;
        let rows = match format {
            TableFormat::Parquet => Rows::Parquet(Box::new(ParquetRows::new(&file, handle)?)),
            _ => return Self::from_reader(&file, format, handle, options),
        };
        Ok(TableReader {
            file,
            format,
            rows,
            read: 0,
        })
    }

    /// Reads CSV from memory (a bundled table, a test), with `file` as its name in messages.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_csv_bytes(file: &str, bytes: &[u8], options: &TableOptions) -> Result<TableReader> {
        Self::from_reader(
            file,
            TableFormat::Csv,
            std::io::Cursor::new(bytes.to_vec()),
            options,
        )
    }

    /// Reads CSV or JSON lines from any byte stream (standard input, a decompressor), with `file` as its name in
    /// messages. Parquet needs a file: its index is at the end.
    ///
    /// # Errors
    /// As [`open`](Self::open); [`Error::Table`] for [`TableFormat::Parquet`].
    pub fn from_reader(
        file: &str,
        format: TableFormat,
        reader: impl Read + 'static,
        options: &TableOptions,
    ) -> Result<TableReader> {
        if options.delimiter.is_some() && format != TableFormat::Csv {
            return Err(table_error(
                file,
                format!("a delimiter applies to CSV, not to {format}"),
            ));
        }
        let buffered = BufReader::with_capacity(BUFFER_BYTES, reader);
        let rows = match format {
            TableFormat::Csv => Rows::Csv(Box::new(CsvRows::new(
                file,
                Box::new(buffered),
                options.delimiter,
            )?)),
            TableFormat::JsonLines => Rows::JsonLines(JsonLines::new(Box::new(buffered))),
            TableFormat::Parquet => {
                return Err(table_error(
                    file,
                    "Parquet is read from a file, not a stream",
                ));
            }
        };
        Ok(TableReader {
            file: file.to_string(),
            format,
            rows,
            read: 0,
        })
    }

    /// The file's name, as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The format being read.
    pub fn format(&self) -> TableFormat {
        self.format
    }

    /// The CSV delimiter in use (given or sniffed); `None` for other formats.
    pub fn delimiter(&self) -> Option<u8> {
        match &self.rows {
            Rows::Csv(c) => Some(c.delimiter()),
            _ => None,
        }
    }

    /// The table's columns in file order: the CSV header, the Parquet schema's top-level fields, or, for JSON lines,
    /// the top-level keys seen so far in the order rows brought them (a row's own keys sorted; at most
    /// [`MAX_COLUMNS`]).
    pub fn columns(&self) -> &[String] {
        match &self.rows {
            Rows::Csv(c) => c.columns(),
            Rows::JsonLines(j) => j.columns(),
            Rows::Parquet(p) => p.columns(),
        }
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.read
    }

    /// The next row, or `None` at the end of the table.
    ///
    /// # Errors
    /// [`Error::Table`] naming the row (from 1) and what is wrong: a CSV row with another number of fields than the
    /// header, a line that is not a JSON object, a Parquet page that does not decode, a read that fails.
    pub fn next_row(&mut self) -> Result<Option<Value>> {
        let row = self.read + 1;
        let next = match &mut self.rows {
            Rows::Csv(c) => {
                let mut v = Value::Null;
                c.next_row_into(row, &mut v).map(|found| found.then_some(v))
            }
            Rows::JsonLines(j) => j.next_row(row),
            Rows::Parquet(p) => p.next_row(row),
        };
        match next {
            Ok(Some(v)) => {
                self.read = row;
                Ok(Some(v))
            }
            Ok(None) => Ok(None),
            Err(reason) => Err(table_error(&self.file, reason)),
        }
    }

    /// Passes over the next row without making it a value, as a sample that does not keep it needs; false at the end.
    /// The row is checked as far as that is cheap: a CSV row's field count and encoding, a JSON line being an
    /// object; its cells are typed only when it is read.
    ///
    /// # Errors
    /// As [`next_row`](Self::next_row), for the framing.
    pub fn skip_row(&mut self) -> Result<bool> {
        let row = self.read + 1;
        let skipped = match &mut self.rows {
            Rows::Csv(c) => c.skip_row(row),
            Rows::JsonLines(j) => j.skip_row(row),
            Rows::Parquet(p) => p.next_row(row).map(|r| r.is_some()),
        };
        match skipped {
            Ok(true) => {
                self.read = row;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(reason) => Err(table_error(&self.file, reason)),
        }
    }

    /// The next `n` rows (fewer at the end) into `out[..k]`, reusing the rows `out` already holds (CSV rows are
    /// rewritten in place, without allocating their keys again); `out` is cut to the `k` rows read, and `k`
    /// returned.
    ///
    /// # Errors
    /// As [`next_row`](Self::next_row).
    pub fn read_block_into(&mut self, n: usize, out: &mut Vec<Value>) -> Result<usize> {
        let mut k = 0;
        while k < n {
            let row = self.read + 1;
            if k == out.len() {
                out.push(Value::Null);
            }
            let found = match &mut self.rows {
                Rows::Csv(c) => c.next_row_into(row, &mut out[k]),
                Rows::JsonLines(j) => j.next_row(row).map(|v| v.map(|v| out[k] = v).is_some()),
                Rows::Parquet(p) => p.next_row(row).map(|v| v.map(|v| out[k] = v).is_some()),
            }
            .map_err(|reason| table_error(&self.file, reason))?;
            if !found {
                break;
            }
            self.read = row;
            k += 1;
        }
        out.truncate(k);
        Ok(k)
    }

    /// Up to `n` next rows appended to `out`; how many were.
    ///
    /// # Errors
    /// As [`next_row`](Self::next_row); the rows before the failing one stay in `out`.
    pub fn read_block(&mut self, n: usize, out: &mut Vec<Value>) -> Result<usize> {
        let mut k = 0;
        while k < n {
            match self.next_row()? {
                Some(v) => out.push(v),
                None => break,
            }
            k += 1;
        }
        Ok(k)
    }

    /// Every remaining row.
    ///
    /// # Errors
    /// As [`next_row`](Self::next_row).
    pub fn read_all(&mut self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        self.read_block(usize::MAX, &mut out)?;
        Ok(out)
    }
}

impl Iterator for TableReader {
    type Item = Result<Value>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

fn table_error(file: &str, reason: impl Into<String>) -> Error {
    Error::Table {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// A buffered byte stream the readers share.
type Input = Box<dyn BufRead>;

#[cfg(test)]
mod tests;
