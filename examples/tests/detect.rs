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

#[test]
fn non_numeric_cell_names_file_row_and_column() {
    let dir = scratch("non_numeric");
    std::fs::write(dir.join("data.csv"), "id,amount\n1,2\n2,3\n3,abc\n4,5\n").unwrap();
    let o = detect(&dir, &["--input", "data.csv"]);
    assert_fails(
        &o,
        &[r#"data.csv: row 3, column "amount": "abc" is not a number"#],
    );
}

#[test]
fn nan_and_infinity_name_file_row_and_column() {
    let dir = scratch("nan");
    std::fs::write(dir.join("nan.csv"), "a,b\n1,2\n3,NaN\n4,5\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "nan.csv"]),
        &["nan.csv", "row 2", r#"column "b""#, "NaN"],
    );
    std::fs::write(dir.join("inf.csv"), "a,b\n1,2\n3,4\n-inf,5\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "inf.csv"]),
        &["inf.csv", "row 3", r#"column "a""#, "inf"],
    );
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
    std::fs::write(dir.join("quoted.csv"), "a,b\n1,\"2\n3\"\n").unwrap();
    assert_fails(
        &detect(&dir, &["--input", "quoted.csv"]),
        &["quoted.csv", "row 1"],
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
