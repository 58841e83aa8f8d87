use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use super::*;

fn csv(text: &str) -> Result<(Vec<String>, Vec<Value>, u8)> {
    let mut t = TableReader::from_csv_bytes("t.csv", text.as_bytes(), &TableOptions::default())?;
    let rows = t.read_all()?;
    Ok((t.columns().to_vec(), rows, t.delimiter().unwrap_or(0)))
}

fn reason(e: Error) -> String {
    match e {
        Error::Table { reason, .. } => reason,
        other => panic!("expected a table error, got {other:?}"),
    }
}

#[test]
fn csv_cells_are_typed_blanks_are_missing() {
    let (cols, rows, d) = csv("\u{feff}id,when,amount,region,ok,note\n\
         12345678901234567891,2014-07-01 00:00:00,10.5,north,TRUE,\"a, b\"\n\
         \n\
         2,2014-07-01 00:30:00,,south,false,NA\n\
         3,2014-07-01 01:00:00,inf,NaN,1,-0\n")
    .unwrap();
    assert_eq!(d, b',');
    assert_eq!(cols, ["id", "when", "amount", "region", "ok", "note"]);
    assert_eq!(rows.len(), 3, "the empty line is not a row");
    assert_eq!(
        rows[0],
        json!({"id": 12345678901234567891u64, "when": "2014-07-01 00:00:00", "amount": 10.5, "region": "north",
               "ok": true, "note": "a, b"})
    );
    assert_eq!(rows[1]["amount"], Value::Null);
    assert_eq!(rows[1]["note"], Value::Null);
    assert_eq!(rows[1]["ok"], json!(false));
    // `inf` is text in a numeric column: the vectorizer counts it as a value of another type.
    assert_eq!(rows[2]["amount"], json!("inf"));
    assert_eq!(rows[2]["region"], Value::Null);
    assert_eq!(rows[2]["ok"], json!(1));
    assert_eq!(
        rows[2]["note"].as_f64().map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
}

#[test]
fn numbers_read_as_a_float_parser_reads_them() {
    for cell in [
        "0",
        "-0",
        "1e300",
        "0.1",
        "-17",
        "+4",
        ".5",
        "9007199254740993",
        "123456789012345678901234",
    ] {
        let v = cell_value(cell).as_f64().unwrap();
        assert_eq!(
            v.to_bits(),
            cell.parse::<f64>().unwrap().to_bits(),
            "{cell}"
        );
    }
}

#[test]
fn csv_delimiter_is_sniffed_or_given_and_names_are_unique() {
    let (cols, rows, d) = csv("a;b;a;\n1,5;x;2;3\n").unwrap();
    assert_eq!(d, b';');
    assert_eq!(cols, ["a", "b", "a.1", "x3"]);
    assert_eq!(rows[0]["a"], json!("1,5"));
    let options = TableOptions {
        delimiter: Some(b'\t'),
        ..TableOptions::default()
    };
    let mut t = TableReader::from_csv_bytes("t.tsv", b"a,b\tc\n1,2\t3\n", &options).unwrap();
    assert_eq!(t.columns(), ["a,b", "c"]);
    assert_eq!(t.read_all().unwrap()[0], json!({"a,b": "1,2", "c": 3}));
}

#[test]
fn csv_errors_name_the_row_and_line() {
    let e = reason(csv("a,b\n1,2\n\n3\n").unwrap_err());
    assert_eq!(e, "row 2 has 1 fields, but the header has 2");
    assert!(reason(csv("").unwrap_err()).contains("empty"));
    let mut t =
        TableReader::from_csv_bytes("t.csv", b"a\n\xff\xfe\n", &TableOptions::default()).unwrap();
    assert_eq!(
        reason(t.read_all().unwrap_err()),
        "row 1, column \"a\": not UTF-8"
    );
    // A header alone is a table without rows.
    assert!(csv("a,b\n").unwrap().1.is_empty());
}

fn json_lines(text: &str) -> TableReader {
    let input = std::io::Cursor::new(text.as_bytes().to_vec());
    TableReader::from_reader(
        "t.jsonl",
        TableFormat::JsonLines,
        input,
        &TableOptions::default(),
    )
    .unwrap()
}

#[test]
fn json_lines_are_objects_with_columns_in_first_seen_order() {
    let mut t = json_lines(
        "{\"b\": 1, \"a\": {\"x\": \"y\"}}\n\n  \n{\"c\": null, \"b\": 2}\r\n{\"a\": 3}",
    );
    let rows = t.read_all().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], json!({"c": null, "b": 2}));
    // New keys in the order rows bring them (a row's own keys sorted).
    assert_eq!(t.columns(), ["a", "b", "c"]);
    assert_eq!(t.rows_read(), 3);
}

#[test]
fn json_lines_errors_name_the_row_and_line() {
    let e = reason(
        json_lines("{\"a\": 1}\n\n{\"a\": \n")
            .read_all()
            .unwrap_err(),
    );
    assert!(e.starts_with("row 2 (line 3): not JSON"), "{e}");
    let e = reason(json_lines("[1, 2]\n").read_all().unwrap_err());
    assert_eq!(e, "row 1 (line 1): an array, not a JSON object");
}

#[test]
fn formats_come_from_extensions_or_names() {
    assert_eq!(
        TableFormat::from_path(Path::new("a/b.CSV")),
        Some(TableFormat::Csv)
    );
    assert_eq!(
        TableFormat::from_path(Path::new("x.ndjson")),
        Some(TableFormat::JsonLines)
    );
    assert_eq!(
        TableFormat::from_path(Path::new("x.pq")),
        Some(TableFormat::Parquet)
    );
    assert_eq!(TableFormat::from_path(Path::new("x.npy")), None);
    assert_eq!(
        "JSON".parse::<TableFormat>().unwrap(),
        TableFormat::JsonLines
    );
    assert!("xlsx".parse::<TableFormat>().is_err());
    let e = TableReader::open(Path::new("table.xlsx"), &TableOptions::default()).unwrap_err();
    assert!(reason(e).starts_with("unknown table format"));
    let e = TableReader::open(Path::new("no/such/file.csv"), &TableOptions::default()).unwrap_err();
    assert!(reason(e).starts_with("cannot read"));
}

/// Written by pandas 3 / pyarrow with their defaults (snappy); see `tests/data/table/README.md`.
fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/table")
        .join(name)
}

#[test]
fn parquet_rows_keep_types_dates_and_blanks() {
    for name in ["sales.parquet", "sales.zstd.parquet"] {
        let mut t = TableReader::open(&fixture(name), &TableOptions::default()).unwrap();
        assert_eq!(t.format(), TableFormat::Parquet);
        assert_eq!(
            t.columns(),
            ["id", "when", "amount", "region", "express", "day"]
        );
        let rows = t.read_all().unwrap();
        assert_eq!(rows.len(), 3, "{name}");
        assert_eq!(
            rows[0],
            json!({"id": 1, "when": "2014-07-01T00:00:00+00:00", "amount": 10.5, "region": "north",
                   "express": true, "day": "2014-07-01"})
        );
        // NaN, None and NaT are missing values.
        assert_eq!(rows[1]["amount"], Value::Null);
        assert_eq!(rows[1]["region"], Value::Null);
        assert_eq!(rows[2]["when"], Value::Null);
    }
}

#[test]
fn parquet_nanosecond_timestamps_are_dates() {
    let mut t = TableReader::open(&fixture("nanos.parquet"), &TableOptions::default()).unwrap();
    let rows = t.read_all().unwrap();
    assert_eq!(
        rows[0]["when"],
        json!("2014-07-01T00:00:00.000000001+00:00")
    );
    assert_eq!(rows[1]["when"], json!("2014-07-01T13:30:00+00:00"));
}

#[test]
fn a_corrupt_parquet_file_is_an_error_not_a_panic() {
    let good = std::fs::read(fixture("sales.parquet")).unwrap();
    let dir = std::env::temp_dir().join(format!("anomaly-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"a,b\n1,2\n".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("scrambled", {
            // Every byte of the data pages flipped, the footer kept: decoding fails, not the footer.
            let mut b = good.clone();
            let end = b.len().saturating_sub(600);
            for x in &mut b[4..end] {
                *x ^= 0x5a;
            }
            b
        }),
    ];
    for (name, bytes) in cases {
        let path = dir.join(format!("{name}.parquet"));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let result =
            TableReader::open(&path, &TableOptions::default()).and_then(|mut t| t.read_all());
        assert!(
            matches!(result, Err(Error::Table { .. })),
            "{name}: {result:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn blocks_reuse_rows_and_skipping_counts_rows() {
    let text = "a,b,c\n1,x,\n\n2,y,true\n3,,4.5\n4,zz,NA\n5,w,1\n";
    let all = csv(text).unwrap().1;
    for n in [1, 2, 3, 10] {
        let mut t = TableReader::from_csv_bytes("t.csv", text.as_bytes(), &TableOptions::default())
            .unwrap();
        let (mut block, mut got) = (Vec::new(), Vec::new());
        while t.read_block_into(n, &mut block).unwrap() > 0 {
            got.extend(block.iter().cloned());
        }
        assert_eq!(got, all, "blocks of {n}");
        assert_eq!(t.rows_read(), 5);
    }
    // A slot holding something else is replaced, not rewritten.
    let mut t =
        TableReader::from_csv_bytes("t.csv", text.as_bytes(), &TableOptions::default()).unwrap();
    let mut block = vec![json!({"a": 0, "b": 0, "zz": 0}), json!("text")];
    t.read_block_into(2, &mut block).unwrap();
    assert_eq!(block, all[..2]);
    // Skipping passes over rows (not empty lines) without reading them, and keeps the count.
    let mut t =
        TableReader::from_csv_bytes("t.csv", text.as_bytes(), &TableOptions::default()).unwrap();
    assert!(t.skip_row().unwrap() && t.skip_row().unwrap());
    assert_eq!(t.next_row().unwrap().unwrap(), all[2]);
    assert!(t.skip_row().unwrap() && t.skip_row().unwrap() && !t.skip_row().unwrap());
    assert_eq!(t.rows_read(), 5);
    let mut j = json_lines("{\"a\": 1}\n\n{\"a\": 2}\n{\"a\": 3}\n[4]\n{\"a\": \n");
    assert!(j.skip_row().unwrap() && j.skip_row().unwrap());
    assert_eq!(j.next_row().unwrap().unwrap(), json!({"a": 3}));
    assert_eq!(j.rows_read(), 3);
    // Skipping still finds rows that are not objects, or not JSON, naming them.
    assert_eq!(
        reason(j.skip_row().unwrap_err()),
        "row 4 (line 5): not a JSON object"
    );
    assert!(reason(j.skip_row().unwrap_err()).starts_with("row 4 (line 6): not JSON"));
    let mut t =
        TableReader::from_csv_bytes("t.csv", b"a,b\n1,2\n3\n", &TableOptions::default()).unwrap();
    assert!(t.skip_row().unwrap());
    assert_eq!(
        reason(t.skip_row().unwrap_err()),
        "row 2 has 1 fields, but the header has 2"
    );
}

#[test]
fn every_missing_token_is_missing() {
    for t in MISSING_TOKENS {
        assert_eq!(cell_value(t), Value::Null, "{t:?}");
        assert_eq!(cell_value(&format!("  {t} ")), Value::Null, "{t:?}");
    }
    for t in ["NAN", "none", "N/A/", "1.#INDX", "<na>", "-", "#"] {
        assert_ne!(cell_value(t), Value::Null, "{t:?}");
    }
}
