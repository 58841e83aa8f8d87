//! Runs the built `detect` binary end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory for one test's files, under cargo's per-target temporary directory.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("detect-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `detect` with `args` in `dir` (so relative paths resolve there).
fn detect(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detect"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `detect` failed with status 2 and a one-line message containing every `part`.
fn assert_fails(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    for part in parts {
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
}

/// A small CSV with a clear outlier in the last row.
fn small_csv(rows: usize) -> String {
    let mut s = String::from("a,b,c\n");
    for i in 0..rows - 1 {
        let i = i as f64;
        s += &format!(
            "{},{},{}\n",
            (i * 0.618).fract(),
            (i * 0.755).fract(),
            (i * 0.57).fract()
        );
    }
    s + "9,9,9\n"
}

#[test]
fn default_run_finds_labelled_anomalies_from_any_directory() {
    let dir = scratch("default");
    let o = detect(&dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("cardio"), "{out}");
    assert!(out.contains("1831 rows × 21 features"), "{out}");
    // Ten ranked rows, each with an explanation.
    assert_eq!(
        out.matches("labelled anomaly").count() + out.matches("labelled normal").count(),
        10
    );
    assert_eq!(out.matches("the threshold 0.5").count(), 10, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("are labelled anomalies"))
        .expect("a top-N line");
    let hits: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(hits >= 7, "{line}");
    let auc: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("ROC-AUC"))
        .expect("a ROC-AUC line")
        .trim()
        .parse()
        .unwrap();
    assert!(auc > 0.85 && auc < 1.0, "{auc}");
}

#[test]
fn report_has_the_documented_keys() {
    let dir = scratch("report");
    let o = detect(&dir, &["--report", "r.json", "--top", "0", "--trees", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(dir.join("r.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "fit_seconds",
            "n_anomalies",
            "n_features",
            "n_samples",
            "roc_auc",
            "score_seconds",
            "threshold"
        ]
    );
    assert_eq!(v["n_samples"], 1831);
    assert_eq!(v["n_features"], 21);
    assert_eq!(v["threshold"], 0.5);
    assert!(v["fit_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["score_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["roc_auc"].as_f64().unwrap() > 0.85);

    // Without labels there is no roc_auc.
    std::fs::write(dir.join("small.csv"), small_csv(30)).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "small.csv",
            "--report",
            "s.json",
            "--contamination",
            "0.1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap();
    assert!(v.get("roc_auc").is_none());
    assert_eq!(v["n_samples"], 30);
    assert_eq!(v["n_anomalies"], 3);
}

#[test]
fn scores_has_one_line_per_row() {
    let dir = scratch("scores");
    std::fs::write(dir.join("small.csv"), small_csv(40)).unwrap();
    let o = detect(
        &dir,
        &["--input", "small.csv", "--scores", "s.txt", "--top", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let scores: Vec<f64> = std::fs::read_to_string(dir.join("s.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 40);
    assert!(scores.iter().all(|&s| s > 0.0 && s <= 1.0));
    // The outlier, last row, scores highest and is listed first.
    let max = scores.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(scores[39], max);
    assert!(stdout(&o).contains("1. row 40 "), "{}", stdout(&o));
}

/// A uniform draw in [0, 1) for row `i` and stream `k` (a multiplicative hash: deterministic, no dependency).
fn draw(i: usize, k: u64) -> f64 {
    let h = (i as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(k.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let h = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A mixed table: an id, a time stamp in business hours, a region, an amount with blanks and bad cells, a
/// boolean. Row 200 (from 1) is the outlier: 3 a.m. on a Sunday, a region seen once, an amount far off.
fn mixed_csv(rows: usize) -> String {
    let mut s = String::from("order_id,created,region,amount,express\n");
    for i in 0..rows {
        let (when, region, amount) = if i == 199 {
            (
                "2024-03-03 03:17:00".to_string(),
                "atlantis".to_string(),
                "9999".to_string(),
            )
        } else {
            let day = 4 + (draw(i, 1) * 5.0) as usize; // Monday to Friday
            let hour = 9 + (draw(i, 2) * 8.0) as usize;
            let minute = (draw(i, 3) * 60.0) as usize;
            let amount = match i {
                10 | 20 => String::new(),
                30 => "abc".to_string(),
                40 => "NaN".to_string(),
                _ => format!("{:.2}", 100.0 + 50.0 * draw(i, 4)),
            };
            (
                format!("2024-03-{day:02} {hour:02}:{minute:02}:00"),
                ["north", "south", "east", "west"][(draw(i, 5) * 4.0) as usize].to_string(),
                amount,
            )
        };
        s += &format!(
            "{},{when},{region},{amount},{}\n",
            5000 + i,
            draw(i, 6) < 0.3
        );
    }
    s
}

#[test]
fn mixed_table_roles_blanks_and_bad_cells() {
    let dir = scratch("mixed");
    std::fs::write(dir.join("orders.csv"), mixed_csv(400)).unwrap();
    let o = detect(&dir, &["--input", "orders.csv", "--top", "3"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in [
        "order_id  identifier",
        "created   timestamp",
        "region    category",
        "amount    measurement",
        "express   measurement",
    ] {
        assert!(out.contains(line), "{line:?} not in\n{out}");
    }
    assert!(out.contains("  1. row 200 "), "{out}");
    // Blanks and NaN are missing values; `abc` is a bad cell, counted and listed, not a refusal.
    assert!(out.contains("bad cells   1 did not parse"), "{out}");
    assert!(
        out.contains(r#"row 31, column "amount": "abc" is not a number"#),
        "{out}"
    );
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));

    let o = detect(&dir, &["--input", "orders.csv", "--strict"]);
    assert_fails(
        &o,
        &[
            r#"orders.csv: row 31, column "amount": "abc" is not a number"#,
            "--strict",
        ],
    );
    // A role pinned by hand wins; unknown columns and roles are refused.
    let o = detect(
        &dir,
        &[
            "--input",
            "orders.csv",
            "--column",
            "amount=category",
            "--top",
            "1",
        ],
    );
    assert!(
        stdout(&o).contains("amount    category     pinned"),
        "{}",
        stdout(&o)
    );
    assert_fails(
        &detect(
            &dir,
            &["--input", "orders.csv", "--column", "nope=category"],
        ),
        &["--column", "no column \"nope\""],
    );
    assert_fails(
        &detect(
            &dir,
            &["--input", "orders.csv", "--column", "amount=colour"],
        ),
        &["--column", "colour"],
    );
}

#[test]
fn dates_give_hour_and_weekday_features() {
    let dir = scratch("dates");
    let mut s = String::from("ts,value\n");
    for i in 0..300 {
        // Weekdays in office hours, one value; the odd row comes at 03:00 on a Sunday with the same value.
        let (day, hour) = if i == 150 {
            (3, 3)
        } else {
            (4 + i % 5, 9 + i % 8)
        };
        s += &format!("2024-03-{day:02}T{hour:02}:00:00Z,1\n");
    }
    std::fs::write(dir.join("t.csv"), s).unwrap();
    let o = detect(
        &dir,
        &["--input", "t.csv", "--top", "1", "--report", "r.json"],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("  1. row 151 "), "{out}");
    assert!(out.contains("on a Sunday"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    // Hour and weekday, each on the unit circle, and the value.
    assert!(v["n_features"].as_u64().unwrap() >= 5, "{v}");

    // Epoch seconds and milliseconds named like a time are timestamps too; free text is measured by its length.
    let mut s = String::from("created_at,ts,note,value\n");
    for i in 0..300u64 {
        let seconds = 1_709_542_800 + i * 3_600; // hourly from 2024-03-04 09:00 UTC
        s += &format!(
            "{seconds},{},\"customer {i} asked for a refund\",{}\n",
            seconds * 1000,
            i % 7
        );
    }
    std::fs::write(dir.join("epoch.csv"), s).unwrap();
    let o = detect(&dir, &["--input", "epoch.csv", "--top", "1"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in [
        "created_at  timestamp",
        "ts          timestamp",
        "note        text",
        "value       measurement",
    ] {
        assert!(out.contains(line), "{line:?} not in\n{out}");
    }
}

/// The bundled sample as CSV text, and its labels.
fn cardio() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cardio");
    (
        std::fs::read_to_string(root.join("cardio.csv")).unwrap(),
        std::fs::read_to_string(root.join("labels.txt")).unwrap(),
    )
}

fn roc_auc(o: &Output) -> f64 {
    let out = stdout(o);
    let line = out
        .lines()
        .find(|l| l.contains("ROC-AUC"))
        .unwrap_or_else(|| panic!("{out}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn numeric_tables_keep_their_scores_with_or_without_an_identifier() {
    let dir = scratch("identifier");
    let (csv, labels) = cardio();
    std::fs::write(dir.join("cardio.csv"), &csv).unwrap();
    std::fs::write(dir.join("labels.txt"), &labels).unwrap();
    let mut with_id = String::new();
    for (i, line) in csv.lines().enumerate() {
        let id = if i == 0 {
            "id".to_string()
        } else {
            format!("{}", 90_000 + i)
        };
        with_id += &format!("{id},{line}\n");
    }
    std::fs::write(dir.join("with_id.csv"), with_id).unwrap();
    // The same values as a 2-D float64 .npy: a numeric table is scored as the matrix it is.
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|c| c.parse().unwrap()).collect())
        .collect();
    let x = ndarray::Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
    ndarray_npy::write_npy(dir.join("cardio.npy"), &x).unwrap();

    let mut runs = Vec::new();
    for input in ["cardio.csv", "with_id.csv", "cardio.npy"] {
        let scores = format!("{input}.scores");
        let o = detect(
            &dir,
            &[
                "--input",
                input,
                "--labels",
                "labels.txt",
                "--scores",
                &scores,
                "--output",
                "rows.csv",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        runs.push((
            roc_auc(&o),
            std::fs::read_to_string(dir.join(&scores)).unwrap(),
        ));
        if input == "with_id.csv" {
            let out = stdout(&o);
            assert!(
                out.lines()
                    .any(|l| l.starts_with("  id ") && l.contains(" identifier ")),
                "{out}"
            );
            // The output names rows by their identifier.
            let rows = std::fs::read_to_string(dir.join("rows.csv")).unwrap();
            assert!(
                rows.starts_with("id,score,is_anomaly,explanation\n90001,"),
                "{rows:.200}"
            );
        }
    }
    // Bit for bit: the identifier changes nothing, and a CSV of numbers is scored as the .npy of its values.
    assert_eq!(runs[0].1, runs[1].1);
    assert_eq!(runs[0].1, runs[2].1);
    assert!((runs[0].0 - runs[1].0).abs() < 0.002);
    assert!(runs[0].0 > 0.9, "{}", runs[0].0);
}

#[test]
fn blanks_nan_and_infinity_are_missing_or_bad_cells() {
    let dir = scratch("nan");
    std::fs::write(dir.join("nan.csv"), "a,b\n1,2\n3,NaN\n4,\n5,6\n-inf,5\n").unwrap();
    let o = detect(&dir, &["--input", "nan.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(r#"row 5, column "a": "-inf" is not a number"#),
        "{out}"
    );
}

#[test]
fn json_lines_and_parquet_inputs() {
    let dir = scratch("formats");
    let mut jsonl = String::new();
    for i in 0..200 {
        let amount = if i == 77 {
            5000.0
        } else {
            10.0 + (i % 10) as f64
        };
        jsonl += &format!(
            "{{\"id\": \"o-{i}\", \"amount\": {amount}, \"customer\": {{\"tier\": \"{}\", \"age\": {}}}}}\n",
            ["gold", "basic"][i % 2],
            30 + i % 20
        );
    }
    std::fs::write(dir.join("orders.jsonl"), &jsonl).unwrap();
    std::fs::write(dir.join("orders.txt"), &jsonl).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "orders.jsonl",
            "--top",
            "1",
            "--output",
            "out.jsonl",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("customer.tier"), "{out}");
    assert!(out.contains("  1. row 78 "), "{out}");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("out.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], "o-0");
    assert!(
        first["score"].is_f64() && first["is_anomaly"].is_boolean(),
        "{first}"
    );
    // The format named by hand.
    let o = detect(
        &dir,
        &["--input", "orders.txt", "--format", "jsonl", "--top", "1"],
    );
    assert!(stdout(&o).contains("  1. row 78 "), "{}", stdout(&o));

    let parquet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../anomaly-core/tests/data/table/sales.parquet");
    let o = detect(&dir, &["--input", parquet.to_str().unwrap(), "--top", "3"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("3 rows × 6 columns"), "{out}");
    assert!(out.contains("when"), "{out}");
}

#[test]
fn numeric_tables_beyond_the_sample_keep_order_and_impute_blanks() {
    let dir = scratch("numeric_sample");
    // `seq` is an auto-increment key not named like an identifier: only file order shows it.
    let mut s = String::from("seq,x,y\n");
    for i in 0..20_000 {
        let x = if i == 15_000 {
            String::new()
        } else {
            format!("{:.4}", draw(i, 7))
        };
        s += &format!("{},{x},{:.4}\n", i + 1, draw(i, 8));
    }
    std::fs::write(dir.join("n.csv"), s).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "n.csv",
            "--train-rows",
            "2000",
            "--output",
            "o.csv",
            "--quiet",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.lines()
            .any(|l| l.starts_with("  seq ") && l.contains(" identifier ")),
        "{out}"
    );
    // The blank beyond the sample takes its column's median and is reported; the run goes on.
    assert!(
        out.contains(r#"row 15001, column "x": "" is not a number"#),
        "{out}"
    );
    let rows = std::fs::read_to_string(dir.join("o.csv")).unwrap();
    assert_eq!(rows.lines().count(), 20_001);
    assert!(
        rows.starts_with("seq,score,is_anomaly,explanation\n1,"),
        "{rows:.100}"
    );
    let o = detect(
        &dir,
        &["--input", "n.csv", "--train-rows", "2000", "--strict"],
    );
    assert_fails(&o, &[r#"row 15001, column "x""#]);
}

#[test]
fn flags_that_do_not_apply_are_refused() {
    let dir = scratch("flags");
    std::fs::write(dir.join("a.jsonl"), "{\"a\": 1}\n{\"a\": 2}\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "a.jsonl", "--delimiter", ";"]),
        &["a.jsonl", "a delimiter applies to CSV, not to jsonl"],
    );
    assert_fails(
        &detect(&dir, &["--output-format", "jsonl"]),
        &["--output-format", "needs --output"],
    );
    assert_fails(
        &detect(&dir, &["--train-rows", "100"]),
        &["--train-rows", "not to .npy files"],
    );
    // A nested identifier names each row of the output.
    let mut jsonl = String::new();
    for i in 0..3000 {
        jsonl += &format!("{{\"a\": {}, \"who\": {{\"id\": \"u{i}\"}}}}\n", draw(i, 9));
    }
    std::fs::write(dir.join("late.jsonl"), jsonl).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "late.jsonl",
            "--train-rows",
            "2000",
            "--output",
            "o.csv",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = std::fs::read_to_string(dir.join("o.csv")).unwrap();
    assert!(
        rows.starts_with("who.id,score,is_anomaly,explanation\nu0,"),
        "{rows:.100}"
    );
}

#[test]
fn large_tables_are_learnt_from_a_sample_and_scored_in_full() {
    let dir = scratch("sample");
    std::fs::write(dir.join("big.csv"), mixed_csv(20_000)).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "big.csv",
            "--train-rows",
            "2000",
            "--scores",
            "s.txt",
            "--top",
            "1",
            "--quiet",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("Learnt from a uniform sample of 2000 rows"),
        "{out}"
    );
    let scores: Vec<f64> = std::fs::read_to_string(dir.join("s.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 20_000);
    // The outlier, most likely outside the sample, still ranks in the top 1 %.
    let above = scores.iter().filter(|&&s| s > scores[199]).count();
    assert!(above < 200, "{above} rows score above the outlier");
    // Semicolons and tabs: sniffed, or given.
    std::fs::write(dir.join("semi.csv"), mixed_csv(300).replace(',', ";")).unwrap();
    let o = detect(&dir, &["--input", "semi.csv", "--top", "1"]);
    assert!(stdout(&o).contains("  1. row 200 "), "{}", stdout(&o));
    std::fs::write(dir.join("tabs.txt"), mixed_csv(300).replace(',', "\t")).unwrap();
    let o = detect(
        &dir,
        &["--input", "tabs.txt", "--delimiter", "tab", "--top", "1"],
    );
    assert!(stdout(&o).contains("  1. row 200 "), "{}", stdout(&o));
}

#[test]
fn ragged_and_empty_csv_files() {
    let dir = scratch("ragged");
    std::fs::write(dir.join("ragged.csv"), "a,b,c\n1,2,3\n4,5,6\n7,8\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "ragged.csv"]),
        &["ragged.csv", "row 3 has 2 fields, but the header has 3"],
    );
    std::fs::write(dir.join("empty.csv"), "").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "empty.csv"]),
        &["empty.csv", "empty"],
    );
    std::fs::write(dir.join("header.csv"), "a,b\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "header.csv"]),
        &["header.csv", "no data rows"],
    );
    assert_fails(
        &detect(&dir, &["--input", "missing.csv"]),
        &["missing.csv", "cannot read"],
    );
    // A quoted newline in a cell still gives a one-line message.
    std::fs::write(dir.join("quoted.csv"), "a,b\n1,\"2\n3\"\n4\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "quoted.csv"]),
        &["quoted.csv", "row 2"],
    );
}

#[test]
fn npy_input() {
    let dir = scratch("npy");
    let x = ndarray::Array2::from_shape_fn((60, 4), |(i, j)| {
        if i == 59 {
            10.0
        } else {
            ((i * (j + 2)) % 13) as f64 / 13.0
        }
    });
    ndarray_npy::write_npy(dir.join("x.npy"), &x).unwrap();
    let labels: String = (0..60)
        .map(|i| if i == 59 { "1\n" } else { "0\n" })
        .collect();
    std::fs::write(dir.join("y.txt"), labels).unwrap();
    let o = detect(
        &dir,
        &[
            "--input",
            "x.npy",
            "--labels",
            "y.txt",
            "--report",
            "r.json",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("60 rows × 4 features"), "{out}");
    assert!(out.contains("1. row 60 "), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(v["n_features"], 4);
    assert_eq!(v["roc_auc"], 1.0);

    // Wrong shape or type.
    ndarray_npy::write_npy(dir.join("v.npy"), &ndarray::Array1::<f64>::zeros(5)).unwrap();
    assert_fails(
        &detect(&dir, &["--input", "v.npy"]),
        &["v.npy", "expected 2"],
    );
    ndarray_npy::write_npy(dir.join("i.npy"), &ndarray::Array2::<i32>::zeros((3, 2))).unwrap();
    assert_fails(&detect(&dir, &["--input", "i.npy"]), &["i.npy", "float64"]);
    std::fs::write(dir.join("junk.npy"), "a,b\n1,2\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "junk.npy"]),
        &["junk.npy", ".npy"],
    );
    // NaN in an .npy is reported with its row and generated column name.
    let mut y = x.clone();
    y[[4, 2]] = f64::NAN;
    ndarray_npy::write_npy(dir.join("nan.npy"), &y).unwrap();
    assert_fails(
        &detect(&dir, &["--input", "nan.npy"]),
        &[r#"nan.npy: row 5, column "x2""#],
    );
}

#[test]
fn labels_must_match_the_rows() {
    let dir = scratch("labels");
    std::fs::write(dir.join("small.csv"), small_csv(10)).unwrap();
    std::fs::write(dir.join("short.txt"), "0\n1\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "small.csv", "--labels", "short.txt"]),
        &["short.txt: 2 labels, but small.csv has 10 rows"],
    );
    std::fs::write(dir.join("bad.txt"), "0\n0\nyes\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "small.csv", "--labels", "bad.txt"]),
        &["bad.txt", "row 3", "\"yes\""],
    );
}

#[test]
fn bad_contamination_is_refused() {
    let dir = scratch("contamination");
    for bad in ["0.7", "0", "-0.1", "abc", "NaN"] {
        assert_fails(
            &detect(&dir, &["--contamination", bad]),
            &["--contamination"],
        );
    }
    assert_fails(&detect(&dir, &["--sample-size", "1"]), &["--sample-size"]);
    assert_fails(&detect(&dir, &["--trees", "0"]), &["--trees"]);
}

#[test]
fn the_bundled_taxi_series_finds_its_labelled_windows_through_the_time_of_day() {
    let dir = scratch("taxi");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nyc_taxi");
    let (csv, labels) = (data.join("nyc_taxi.csv"), data.join("labels.txt"));
    let args = [
        "--input",
        csv.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ];
    let o = detect(&dir, &args);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("top 10      9 of 10 are labelled anomalies"),
        "{out}"
    );
    assert!((roc_auc(&o) - 0.6111).abs() < 5e-5, "{out}");
    let o = detect(
        &dir,
        &[&args[..], &["--column", "timestamp=ignore"]].concat(),
    );
    let out = stdout(&o);
    // The values alone: the extreme counts still rank first, but the whole ranking is worse.
    assert!(
        out.contains("top 10      10 of 10 are labelled anomalies"),
        "{out}"
    );
    assert!((roc_auc(&o) - 0.5636).abs() < 5e-5, "{out}");
}
