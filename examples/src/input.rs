//! Reading the input table (CSV with a header row, or a 2-D float64 `.npy`) and the optional labels.
//!
//! Readers take the file's bytes and a display name, so the bundled sample (embedded in the binary) and files on
//! disk go through the same code. Errors name the file, the row (from 1, data rows only) and the column.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::Array2;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt};

use crate::error::{DetectError, one_line, shorten};

/// Longest piece of user data quoted in an error message, in characters.
const QUOTE_MAX: usize = 60;

/// Largest `.npy` header accepted, in bytes (numpy itself refuses headers above 10,000 bytes by default).
const NPY_HEADER_MAX: usize = 65_535;

/// Bytes of an `.npy` file before its header: magic string, version and header length.
const NPY_PREAMBLE_MAX: usize = 12;

/// A numeric table: one row per sample, one column per feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The file it came from, as given (used in messages).
    pub file: String,
    /// Column names: the CSV header, or `x0`, `x1`, … for `.npy` files.
    pub names: Vec<String>,
    /// Whether `names` came from the file (a CSV header) rather than being generated.
    pub named: bool,
    /// The values, row-major.
    pub x: Array2<f64>,
}

impl Dataset {
    /// Number of rows.
    pub fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// The name of column `j` (zero-based), or `x{j}` if there is none.
    pub fn column_name(&self, j: usize) -> String {
        self.names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("x{j}"))
    }

    /// Translates an `anomaly_core` error on this table into one that names the file, the row (from 1) and the
    /// column. `anomaly_core` reports rows and columns from 0.
    pub fn describe(&self, err: anomaly_core::Error) -> DetectError {
        match err {
            anomaly_core::Error::NonFinite { row, column, value } => DetectError::NonFinite {
                file: self.file.clone(),
                row: row + 1,
                column: self.column_name(column),
                value,
            },
            anomaly_core::Error::EmptyInput { what } if what.contains("column") => {
                DetectError::NoColumns {
                    file: self.file.clone(),
                }
            }
            anomaly_core::Error::EmptyInput { .. } => DetectError::NoRows {
                file: self.file.clone(),
            },
            anomaly_core::Error::InvalidParameter { name, reason } => DetectError::Parameter {
                flag: flag_of(name),
                reason,
            },
            source => DetectError::Model {
                file: self.file.clone(),
                source,
            },
        }
    }
}

/// The command-line flag behind an `anomaly_core` parameter name.
fn flag_of(parameter: &str) -> String {
    match parameter {
        "n_estimators" => "--trees".into(),
        "max_samples" => "--sample-size".into(),
        "contamination" => "--contamination".into(),
        "n_threads" => "--threads".into(),
        "seed" => "--seed".into(),
        other => format!("parameter `{other}`"),
    }
}

/// How a path is shown in messages: as given, on one line.
pub fn display_name(path: &Path) -> String {
    one_line(&path.display().to_string())
}

/// Reads a whole file.
///
/// # Errors
/// [`DetectError::Read`] naming the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DetectError> {
    std::fs::read(path).map_err(|e| DetectError::Read {
        file: display_name(path),
        reason: e.to_string(),
    })
}

/// Reads a `.csv` (header row, numeric columns) or `.npy` (2-D float64) file, chosen by extension.
///
/// # Errors
/// [`DetectError::UnsupportedFormat`] for another extension, [`DetectError::Read`] when the file cannot be read,
/// and the errors of [`parse_csv`] and [`parse_npy`].
pub fn read_input(path: &Path) -> Result<Dataset, DetectError> {
    let file = display_name(path);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("csv") => parse_csv(&file, &read_file(path)?),
        Some("npy") => read_npy(path),
        _ => Err(DetectError::UnsupportedFormat { file }),
    }
}

/// Parses CSV bytes: a header row of column names, then rows of numbers (surrounding spaces allowed).
///
/// Empty lines are skipped. A cell that is not a number, a row with another number of fields than the header, an
/// empty file or a header without rows is an error naming `file`, the row (from 1, data rows only) and the column.
/// `NaN` and `inf` parse here; the model rejects them, and [`Dataset::describe`] names their row and column.
///
/// # Errors
/// [`DetectError::EmptyFile`], [`DetectError::NoColumns`], [`DetectError::NoRows`], [`DetectError::FieldCount`],
/// [`DetectError::NotANumber`] or [`DetectError::Csv`].
pub fn parse_csv(file: &str, bytes: &[u8]) -> Result<Dataset, DetectError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(DetectError::EmptyFile {
                file: file.to_string(),
            });
        }
        Some(Err(e)) => return Err(csv_error(file, 0, &e)),
        Some(Ok(h)) => h,
    };
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let name = String::from_utf8_lossy(name).trim().to_string();
            if name.is_empty() {
                format!("x{j}")
            } else {
                name
            }
        })
        .collect();
    let d = names.len();
    if d == 0 {
        return Err(DetectError::NoColumns {
            file: file.to_string(),
        });
    }
    let mut values = Vec::new();
    let mut n = 0usize;
    for record in records {
        let row = n + 1;
        let record = record.map_err(|e| csv_error(file, row, &e))?;
        if record.len() != d {
            return Err(DetectError::FieldCount {
                file: file.to_string(),
                row,
                expected: d,
                got: record.len(),
            });
        }
        for (j, cell) in record.iter().enumerate() {
            let value = std::str::from_utf8(cell)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok());
            match value {
                Some(v) => values.push(v),
                None => {
                    return Err(DetectError::NotANumber {
                        file: file.to_string(),
                        row,
                        column: names[j].clone(),
                        value: shorten(&String::from_utf8_lossy(cell), QUOTE_MAX),
                    });
                }
            }
        }
        n += 1;
    }
    if n == 0 {
        return Err(DetectError::NoRows {
            file: file.to_string(),
        });
    }
    let x = Array2::from_shape_vec((n, d), values).map_err(|e| DetectError::Csv {
        file: file.to_string(),
        row: n,
        reason: e.to_string(),
    })?;
    Ok(Dataset {
        file: file.to_string(),
        names,
        named: true,
        x,
    })
}

fn csv_error(file: &str, row: usize, e: &csv::Error) -> DetectError {
    DetectError::Csv {
        file: file.to_string(),
        row,
        reason: e.to_string(),
    }
}

/// Parses the bytes of an `.npy` file holding a 2-D float64 array (rows × features, either byte order, C or
/// Fortran order). Columns are named `x0`, `x1`, ….
///
/// The header is checked before any data is read: the number of dimensions, the data type, and that the file
/// holds exactly the bytes the shape announces, so a corrupt header cannot trigger a huge allocation.
///
/// # Errors
/// [`DetectError::Npy`] describing the problem, [`DetectError::NoRows`] or [`DetectError::NoColumns`].
pub fn parse_npy(file: &str, bytes: &[u8]) -> Result<Dataset, DetectError> {
    let d = check_npy(file, bytes, bytes.len())?;
    let x = Array2::<f64>::read_npy(bytes).map_err(|e| npy_error(file, e.to_string()))?;
    Ok(npy_dataset(file, x, d))
}

/// Reads an `.npy` file as [`parse_npy`] does, without holding the file's bytes and the array at once.
///
/// # Errors
/// [`DetectError::Read`] and the errors of [`parse_npy`].
pub fn read_npy(path: &Path) -> Result<Dataset, DetectError> {
    let file = display_name(path);
    let read_error = |e: std::io::Error| DetectError::Read {
        file: file.clone(),
        reason: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(read_error)?;
    let total = f.metadata().map_err(read_error)?.len();
    let total = usize::try_from(total).map_err(|_| npy_error(&file, "file too large".into()))?;
    // The preamble and header come first and are at most NPY_PREAMBLE_MAX + NPY_HEADER_MAX bytes.
    let mut prefix = Vec::new();
    (&mut f)
        .take((NPY_PREAMBLE_MAX + NPY_HEADER_MAX) as u64)
        .read_to_end(&mut prefix)
        .map_err(read_error)?;
    let d = check_npy(&file, &prefix, total)?;
    f.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let x = Array2::<f64>::read_npy(BufReader::new(f)).map_err(|e| match e {
        ReadNpyError::Io(e) => read_error(e),
        e => npy_error(&file, e.to_string()),
    })?;
    Ok(npy_dataset(&file, x, d))
}

fn npy_error(file: &str, reason: String) -> DetectError {
    DetectError::Npy {
        file: file.to_string(),
        reason,
    }
}

fn npy_dataset(file: &str, x: Array2<f64>, d: usize) -> Dataset {
    let x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    Dataset {
        file: file.to_string(),
        names: (0..d).map(|j| format!("x{j}")).collect(),
        named: false,
        x,
    }
}

/// Checks the header at the start of `prefix` against a file of `total` bytes; returns the number of columns.
fn check_npy(file: &str, prefix: &[u8], total: usize) -> Result<usize, DetectError> {
    check_npy_preamble(prefix).map_err(|r| npy_error(file, r.to_string()))?;
    let mut rest = prefix;
    let header =
        Header::from_reader(&mut rest).map_err(|e| npy_error(file, format!("bad header: {e}")))?;
    let data_len = total.saturating_sub(prefix.len() - rest.len());
    let shape = &header.shape;
    if shape.len() != 2 {
        return Err(npy_error(
            file,
            format!(
                "the array has {} dimension{} (shape {shape:?}), expected 2 (rows × features)",
                shape.len(),
                if shape.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let descr = header.type_descriptor.to_string();
    if descr != "'<f8'" && descr != "'>f8'" {
        return Err(npy_error(
            file,
            format!(
                "the data type is {}, expected float64 ('<f8')",
                shorten(&descr, QUOTE_MAX)
            ),
        ));
    }
    let (n, d) = (shape[0], shape[1]);
    if n.checked_mul(d).and_then(|v| v.checked_mul(8)) != Some(data_len) {
        return Err(npy_error(
            file,
            format!(
                "the header announces {n} × {d} values, but the file holds {data_len} bytes of data"
            ),
        ));
    }
    if n == 0 {
        return Err(DetectError::NoRows {
            file: file.to_string(),
        });
    }
    if d == 0 {
        return Err(DetectError::NoColumns {
            file: file.to_string(),
        });
    }
    Ok(d)
}

/// Checks the magic string, the version and the header length of an `.npy` file.
fn check_npy_preamble(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing the .npy magic string (is it an .npy file?)");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err("truncated header"),
        _ => return Err("unknown .npy format version"),
    };
    if header_len > NPY_HEADER_MAX {
        return Err("header too large");
    }
    let Some(text) = bytes.get(start..start + header_len) else {
        return Err("truncated header");
    };
    // A valid header nests at most a few brackets deep; refuse pathological nesting before parsing it.
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > 16 {
                    return Err("header nested too deeply");
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Reads a labels file: one `0` or `1` per line (1 = anomaly), as many lines as `data` has rows.
///
/// # Errors
/// [`DetectError::Read`] and the errors of [`parse_labels`].
pub fn read_labels(path: &Path, data: &Dataset) -> Result<Vec<bool>, DetectError> {
    parse_labels(&display_name(path), &read_file(path)?, data)
}

/// Parses labels: one `0` or `1` per line (`0.0` and `1.0` are accepted too; trailing empty lines are ignored).
///
/// # Errors
/// [`DetectError::BadLabel`] naming the line, or [`DetectError::LabelCount`] when the count differs from the
/// rows of `data`.
pub fn parse_labels(file: &str, bytes: &[u8], data: &Dataset) -> Result<Vec<bool>, DetectError> {
    parse_labels_for(file, bytes, data.n_samples(), &data.file)
}

/// As [`parse_labels`], for a table of `rows` rows read from `data_file`.
///
/// # Errors
/// As [`parse_labels`].
pub fn parse_labels_for(
    file: &str,
    bytes: &[u8],
    rows: usize,
    data_file: &str,
) -> Result<Vec<bool>, DetectError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut labels = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let label = match line.trim().parse::<f64>() {
            Ok(0.0) => false,
            Ok(1.0) => true,
            _ => {
                return Err(DetectError::BadLabel {
                    file: file.to_string(),
                    row: i + 1,
                    value: shorten(line, QUOTE_MAX),
                });
            }
        };
        labels.push(label);
    }
    if labels.len() != rows {
        return Err(DetectError::LabelCount {
            file: file.to_string(),
            got: labels.len(),
            data: data_file.to_string(),
            expected: rows,
        });
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Dataset, DetectError> {
        parse_csv("t.csv", text.as_bytes())
    }

    #[test]
    fn reads_a_table() {
        let d = csv("a, b\n1,2\n 3 ,4e1\n\n-5,.5\n").unwrap();
        assert_eq!(d.names, ["a", "b"]);
        assert_eq!(d.x, ndarray::array![[1.0, 2.0], [3.0, 40.0], [-5.0, 0.5]]);
    }

    #[test]
    fn names_the_bad_cell() {
        let e = csv("a,amount\n1,2\n3,abc\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"t.csv: row 2, column "amount": "abc" is not a number"#
        );
        let e = csv("a,b\n1,\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"t.csv: row 1, column "b": "" is not a number"#
        );
    }

    #[test]
    fn ragged_rows_and_empty_files() {
        let e = csv("a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv: row 2 has 1 fields, but the header has 2"
        );
        assert!(matches!(
            csv("").unwrap_err(),
            DetectError::EmptyFile { .. }
        ));
        assert!(matches!(
            csv("a,b\n").unwrap_err(),
            DetectError::NoRows { .. }
        ));
    }

    #[test]
    fn non_finite_values_are_mapped_to_row_and_column() {
        let d = csv("a,b\n1,2\n3,NaN\n").unwrap();
        let err = anomaly_core::IsolationForestParams::new()
            .fit(d.x.view())
            .unwrap_err();
        assert_eq!(
            d.describe(err).to_string(),
            r#"t.csv: row 2, column "b": NaN is not a finite number"#
        );
    }

    #[test]
    fn npy_round_trip_and_rejections() {
        let x = ndarray::array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let mut bytes = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&x, &mut bytes).unwrap();
        let d = parse_npy("t.npy", &bytes).unwrap();
        assert_eq!(d.x, x);
        assert_eq!(d.names, ["x0", "x1", "x2"]);

        let v = ndarray::array![1.0, 2.0];
        let mut one_d = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&v, &mut one_d).unwrap();
        let e = parse_npy("t.npy", &one_d).unwrap_err().to_string();
        assert!(e.contains("1 dimension"), "{e}");

        let i = ndarray::array![[1i32, 2], [3, 4]];
        let mut ints = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&i, &mut ints).unwrap();
        let e = parse_npy("t.npy", &ints).unwrap_err().to_string();
        assert!(e.contains("'<i4'"), "{e}");

        let e = parse_npy("t.npy", &bytes[..bytes.len() - 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes of data"), "{e}");
        for cut in 0..bytes.len() {
            assert!(parse_npy("t.npy", &bytes[..cut]).is_err());
        }
        assert!(parse_npy("t.npy", b"a,b\n1,2\n").is_err());
    }

    #[test]
    fn corrupt_npy_headers_are_errors_not_panics() {
        let x = ndarray::array![[1.0, 2.0], [3.0, 4.0]];
        let mut bytes = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&x, &mut bytes).unwrap();
        let header_end = bytes.len() - 32;
        for i in 0..header_end {
            for b in [0u8, b'(', b')', b'9', b'\'', b'f', 0xff] {
                let mut m = bytes.clone();
                m[i] = b;
                let _ = parse_npy("t.npy", &m);
            }
        }
        let npy = |dict: &str, data: &[u8]| {
            let mut h = dict.to_string();
            while !(h.len() + 11).is_multiple_of(64) {
                h.push(' ');
            }
            h.push('\n');
            let mut out = b"\x93NUMPY\x01\x00".to_vec();
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out
        };
        let ok = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &bytes[header_end..],
        );
        assert_eq!(parse_npy("t.npy", &ok).unwrap().x, x);
        let huge = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 9), }",
            &[0; 32],
        );
        let e = parse_npy("t.npy", &huge).unwrap_err().to_string();
        assert!(e.contains("announces 99999999999 × 9 values"), "{e}");
        let overflow = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[],
        );
        assert!(parse_npy("t.npy", &overflow).is_err());
        let deep = npy(&format!("{}{}", "(".repeat(5000), ")".repeat(5000)), &[]);
        let e = parse_npy("t.npy", &deep).unwrap_err().to_string();
        assert!(e.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn labels() {
        let d = csv("a\n1\n2\n3\n").unwrap();
        assert_eq!(
            parse_labels("l.txt", b"0\n1\n0.0\n\n", &d).unwrap(),
            [false, true, false]
        );
        let e = parse_labels("l.txt", b"0\n2\n0\n", &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"l.txt: row 2: "2" is not a label (expected 0 or 1)"#
        );
        let e = parse_labels("l.txt", b"0\n1\n", &d).unwrap_err();
        assert_eq!(e.to_string(), "l.txt: 2 labels, but t.csv has 3 rows");
    }
}
