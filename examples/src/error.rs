//! The one error type of the example: every variant names the file and, where it applies, the row and column.

/// Everything that can go wrong in `detect`.
///
/// `file` is the path as the user gave it. Rows are numbered from 1, counting data rows only (not a CSV header).
/// Each message is one line (see [`DetectError::one_line`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// An output file could not be written.
    #[error("{file}: cannot write: {reason}")]
    Write {
        /// The file.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The input's extension is neither `.csv` nor `.npy`.
    #[error("{file}: unsupported file type (expected a .csv or .npy file)")]
    UnsupportedFormat {
        /// The file.
        file: String,
    },
    /// A CSV file without even a header row.
    #[error("{file}: the file is empty (expected a header row and data rows)")]
    EmptyFile {
        /// The file.
        file: String,
    },
    /// A table without data rows.
    #[error("{file}: no data rows")]
    NoRows {
        /// The file.
        file: String,
    },
    /// A table without columns.
    #[error("{file}: no columns")]
    NoColumns {
        /// The file.
        file: String,
    },
    /// A CSV row whose number of fields differs from the header's.
    #[error("{file}: row {row} has {got} fields, but the header has {expected}")]
    FieldCount {
        /// The file.
        file: String,
        /// Data row, from 1.
        row: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        got: usize,
    },
    /// A CSV cell that does not parse as a number.
    #[error("{file}: row {row}, column {column:?}: {value:?} is not a number")]
    NotANumber {
        /// The file.
        file: String,
        /// Data row, from 1.
        row: usize,
        /// The column's name.
        column: String,
        /// The cell's text (shortened when very long).
        value: String,
    },
    /// A NaN or infinite value (reported by `anomaly_core` as [`anomaly_core::Error::NonFinite`]).
    #[error("{file}: row {row}, column {column:?}: {value} is not a finite number")]
    NonFinite {
        /// The file.
        file: String,
        /// Data row, from 1.
        row: usize,
        /// The column's name.
        column: String,
        /// The value (NaN or ±inf).
        value: f64,
    },
    /// A CSV file the parser rejects outright.
    #[error("{file}: row {row}: {reason}")]
    Csv {
        /// The file.
        file: String,
        /// Data row, from 1 (0 for the header).
        row: usize,
        /// The parser's reason.
        reason: String,
    },
    /// An `.npy` file that is not a 2-D float64 array.
    #[error("{file}: not a 2-D float64 .npy array: {reason}")]
    Npy {
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a labels file that is not 0 or 1.
    #[error("{file}: row {row}: {value:?} is not a label (expected 0 or 1)")]
    BadLabel {
        /// The labels file.
        file: String,
        /// Line of the labels file, from 1 (= data row).
        row: usize,
        /// The line's text (shortened when very long).
        value: String,
    },
    /// A labels file whose length differs from the data's row count.
    #[error("{file}: {got} labels, but {data} has {expected} rows")]
    LabelCount {
        /// The labels file.
        file: String,
        /// Number of labels.
        got: usize,
        /// The data file.
        data: String,
        /// Number of data rows.
        expected: usize,
    },
    /// A command-line value the model rejects.
    #[error("invalid {flag}: {reason}")]
    Parameter {
        /// The command-line flag, e.g. `--sample-size`.
        flag: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A table (CSV, JSON lines, Parquet) that cannot be read.
    #[error("{file}: {reason}")]
    Table {
        /// The file.
        file: String,
        /// What is wrong, and where.
        reason: String,
    },
    /// Under `--strict`, a cell that does not parse as its column's type.
    #[error(
        "{file}: row {row}, column {column:?}: {value} is not {expected} (without --strict, such cells count as missing)"
    )]
    BadCell {
        /// The file.
        file: String,
        /// Data row, from 1.
        row: usize,
        /// The column.
        column: String,
        /// The column's type, in words ("a number").
        expected: String,
        /// The cell, as JSON text (shortened when very long).
        value: String,
    },
    /// Any other error of the model on this data (e.g. fewer than 2 rows).
    #[error("{file}: {source}")]
    Model {
        /// The data file.
        file: String,
        /// The model's error.
        source: anomaly_core::Error,
    },
}

impl DetectError {
    /// The message on one line: control characters (newlines in a quoted CSV cell, say) are escaped.
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// Escapes control characters so `s` prints on one line.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s`, cut to at most `max` characters with an ellipsis, for quoting user data in messages.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        let e = DetectError::NotANumber {
            file: "a.csv".into(),
            row: 3,
            column: "x\ny".into(),
            value: "1\n2".into(),
        };
        assert_eq!(
            e.one_line(),
            r#"a.csv: row 3, column "x\ny": "1\n2" is not a number"#
        );
        assert!(!one_line("a\r\nb\tc").contains(['\n', '\r', '\t']));
    }

    #[test]
    fn long_values_are_shortened() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
    }
}
