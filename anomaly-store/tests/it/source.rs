//! `SqlSource` against real databases: the watermark (no row twice, none skipped, runs of equal timestamps), the
//! JSON of each column type, and the read-only guard and session.

use std::collections::BTreeSet;

use anomaly_store::{SqlSource, StoreError, Watermark};
use sea_orm::sqlx::{self, Executor};
use serde_json::{Value, json};

/// A writer on the database under test, which creates the table and inserts rows the source then reads.
pub(crate) enum Writer {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

impl Writer {
    async fn execute(&self, sql: &str) {
        let result = match self {
            Writer::Postgres(p) => p.execute(sql).await.map(drop),
            Writer::MySql(p) => p.execute(sql).await.map(drop),
            Writer::Sqlite(p) => p.execute(sql).await.map(drop),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn create_table(&self, table: &str) -> String {
        match self {
            Writer::Postgres(_) => format!(
                "CREATE TABLE {table} (id INTEGER NOT NULL, ts TIMESTAMPTZ(6), host VARCHAR(32) NOT NULL, \
                 amount NUMERIC(10, 2), ok BOOLEAN, attrs JSONB, note TEXT)"
            ),
            Writer::MySql(_) => format!(
                "CREATE TABLE {table} (id INTEGER NOT NULL, ts DATETIME(6), host VARCHAR(32) NOT NULL, \
                 amount DECIMAL(10, 2), ok BOOLEAN, attrs JSON, note TEXT)"
            ),
            Writer::Sqlite(_) => format!(
                "CREATE TABLE {table} (id INTEGER NOT NULL, ts TEXT, host TEXT NOT NULL, amount REAL, \
                 ok INTEGER, attrs TEXT, note TEXT)"
            ),
        }
    }

    /// A timestamp literal `micros` microseconds after 2026-01-01T00:00:00Z.
    fn ts(&self, micros: i64) -> String {
        let t = chrono::DateTime::from_timestamp_micros(1_767_225_600_000_000 + micros).unwrap();
        match self {
            Writer::Postgres(_) => format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
            Writer::MySql(_) => format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")),
            Writer::Sqlite(_) => format!("'{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
        }
    }

    fn boolean(&self, b: bool) -> &'static str {
        match (self, b) {
            (Writer::Sqlite(_), true) => "1",
            (Writer::Sqlite(_), false) => "0",
            (_, true) => "TRUE",
            (_, false) => "FALSE",
        }
    }

    async fn insert(&self, table: &str, rows: &[(i64, i64)]) {
        let values: Vec<String> = rows
            .iter()
            .map(|&(id, micros)| {
                let host = if id % 2 == 0 { "web-1" } else { "web-2" };
                format!(
                    "({id}, {}, '{host}', {}.25, {}, '{{\"k\": {id}}}', 'it''s row {id}')",
                    self.ts(micros),
                    id * 10,
                    self.boolean(id % 3 == 0)
                )
            })
            .collect();
        self.execute(&format!(
            "INSERT INTO {table} (id, ts, host, amount, ok, attrs, note) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
}

pub(crate) struct Fixture {
    writer: Writer,
    url: String,
    table: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn new(url: String, dir: Option<tempfile::TempDir>) -> Fixture {
        let writer = if url.starts_with("postgres") {
            Writer::Postgres(sqlx::PgPool::connect(&url).await.expect("postgres"))
        } else if url.starts_with("mysql") {
            Writer::MySql(sqlx::MySqlPool::connect(&url).await.expect("mysql"))
        } else {
            Writer::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("sqlite"))
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let table = format!(
            "anomaly_src_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000
        );
        writer.execute(&writer.create_table(&table)).await;
        Fixture {
            writer,
            url,
            table,
            _dir: dir,
        }
    }

    async fn source(&self, batch_size: u64) -> SqlSource {
        let query = format!(
            "SELECT id, ts, host, amount, ok, attrs, note FROM {};",
            self.table
        );
        SqlSource::connect(&self.url, &query, "ts", &["host".to_string()])
            .await
            .expect("source")
            .with_batch_size(batch_size)
    }

    async fn drop_table(&self) {
        self.writer
            .execute(&format!("DROP TABLE {}", self.table))
            .await;
    }
}

/// The SQLite file fixture, always available.
pub(crate) async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("source.db").display()
    );
    Fixture::new(url, Some(dir)).await
}

/// The fixture on the server in `var`, or `None` (and a loud line) when it is unset.
pub(crate) async fn server_fixture(var: &str, test: &str) -> Option<Fixture> {
    let url = crate::backends::url_from_env(var, test)?;
    Some(Fixture::new(url, None).await)
}

/// Reads everything in batches; returns the ids in the order read and the batches' sizes.
async fn drain(
    source: &SqlSource,
    watermark: &mut Option<Watermark>,
) -> (Vec<i64>, Vec<usize>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut records = Vec::new();
    for _ in 0..1_000 {
        let batch = source.fetch(watermark.as_ref()).await.expect("fetch");
        sizes.push(batch.rows.len());
        for pair in batch.rows.windows(2) {
            assert!(
                pair[0].timestamp == pair[1].timestamp
                    || ts_micros(&pair[0].timestamp) < ts_micros(&pair[1].timestamp),
                "rows out of timestamp order"
            );
        }
        for row in &batch.rows {
            ids.push(row.record["id"].as_i64().expect("id"));
            records.push(row.record.clone());
        }
        // The watermark survives the trip through the data source's JSON column.
        *watermark = batch
            .watermark
            .map(|w| Watermark::from_json(&w.to_json()).unwrap().unwrap());
        if !batch.more {
            return (ids, sizes, records);
        }
    }
    panic!("the source never ran dry");
}

fn ts_micros(w: &Watermark) -> i64 {
    match w {
        Watermark::Timestamp(t) => t.timestamp_micros(),
        Watermark::DateTime(t) => t.and_utc().timestamp_micros(),
        Watermark::Text(s) => chrono::DateTime::parse_from_rfc3339(s)
            .expect("ISO text")
            .timestamp_micros(),
        other => panic!("unexpected watermark {other:?}"),
    }
}

/// Rows 0..60: runs of equal timestamps of lengths 1, 2, 3, … (one run of 12, longer than a batch), one microsecond
/// apart between runs so that sub-second precision matters.
fn first_rows() -> Vec<(i64, i64)> {
    let mut rows = Vec::new();
    let mut id = 0;
    let mut run = 1;
    let mut micros = 0;
    while id < 60 {
        for _ in 0..run.min(60 - id) {
            rows.push((id, micros));
            id += 1;
        }
        micros += 1;
        run = if run == 4 { 12 } else { run % 5 + 1 };
    }
    rows
}

pub(crate) async fn watermark_reads_every_row_once(fx: Fixture) {
    let rows = first_rows();
    // Insert out of order: the source orders by timestamp, not by insertion.
    let (a, b) = rows.split_at(31);
    fx.writer.insert(&fx.table, b).await;
    fx.writer.insert(&fx.table, a).await;
    fx.writer
        .execute(&format!(
            "INSERT INTO {} (id, ts, host) VALUES (999, NULL, 'web-1')",
            fx.table
        ))
        .await;
    let source = fx.source(5).await;
    let mut watermark = None;
    let (ids, sizes, records) = drain(&source, &mut watermark).await;

    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row was read twice: {ids:?}");
    assert_eq!(
        unique,
        (0..60).collect(),
        "rows skipped (the NULL timestamp is never read)"
    );
    assert!(
        sizes.iter().any(|&s| s > 5),
        "the run of 12 came whole: {sizes:?}"
    );

    // Column types come back as JSON.
    let r7 = records.iter().find(|r| r["id"] == 7).unwrap();
    assert_eq!(r7["amount"].as_f64(), Some(70.25), "{r7}");
    assert_eq!(r7["note"], "it's row 7");
    assert_eq!(r7["host"], "web-2");
    assert!(r7["ts"].as_str().unwrap().starts_with("2026-01-01"), "{r7}");
    let attrs = &r7["attrs"];
    assert!(
        attrs == &json!({"k": 7}) || attrs == &json!("{\"k\": 7}"),
        "{attrs}"
    );

    // New rows later; the watermark (stored as JSON between polls) resumes exactly after the old ones.
    let later: Vec<(i64, i64)> = (60..75).map(|id| (id, 1_000 + (id % 4))).collect();
    fx.writer.insert(&fx.table, &later).await;
    let (ids, _, _) = drain(&source, &mut watermark).await;
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (60..75).collect::<Vec<_>>());

    // Nothing new: an empty batch that keeps the watermark.
    let before = watermark.clone();
    let batch = source.fetch(watermark.as_ref()).await.unwrap();
    assert!(batch.rows.is_empty() && !batch.more);
    assert_eq!(batch.watermark, before);

    // Grouped by series.
    let batch = source.fetch(None).await.unwrap();
    let groups = batch.by_series(source.series_columns());
    assert!(
        groups
            .keys()
            .all(|k| k == "host=web-1" || k == "host=web-2"),
        "{groups:?}"
    );
    fx.drop_table().await;
}

pub(crate) async fn writes_are_refused(fx: Fixture) {
    for query in [
        format!("DELETE FROM {}", fx.table),
        format!("SELECT * FROM {}; DROP TABLE {}", fx.table, fx.table),
        format!("SELECT * INTO copy_of FROM {}", fx.table),
        format!("SELECT * FROM {} FOR UPDATE", fx.table),
        // Settings, sleeps and the reviewer's ways past the old lexer.
        "SELECT set_config('default_transaction_read_only', 'off', false)".to_string(),
        r#"SELECT "pg_sleep"(3600)"#.to_string(),
        "SELECT pg_sleep_for('1 hour')".to_string(),
    ]
    .into_iter()
    .chain(
        // In MySQL, `--` without a space is no comment, and `/*! … */` is run.
        matches!(fx.writer, Writer::MySql(_))
            .then(|| {
                [
                    "SELECT 1--1, SLEEP(3600)".to_string(),
                    "SELECT 1 /*! , SLEEP(3600) */".to_string(),
                ]
            })
            .into_iter()
            .flatten(),
    ) {
        let err = SqlSource::connect(&fx.url, &query, "ts", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotReadOnly { .. }),
            "{query}: {err}"
        );
    }
    // A column the SELECT does not return.
    let source = SqlSource::connect(
        &fx.url,
        &format!("SELECT id FROM {}", fx.table),
        "id",
        &["nope".into()],
    )
    .await
    .unwrap();
    fx.writer.insert(&fx.table, &[(1, 1)]).await;
    let err = source.fetch(None).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::SourceColumn { column, .. } if column == "nope"),
        "{err}"
    );
    fx.drop_table().await;
}

/// PostgreSQL: a function that writes gets past the guard (it cannot know what a function does), and the
/// read-only session stops it.
pub(crate) async fn read_only_session_stops_writing_functions(fx: Fixture) {
    let Writer::Postgres(_) = fx.writer else {
        return;
    };
    let function = format!("{}_writer", fx.table);
    fx.writer
        .execute(&format!(
            "CREATE FUNCTION {function}() RETURNS INTEGER AS $$ \
             INSERT INTO {t} (id, ts, host) VALUES (1, now(), 'x') RETURNING 1 $$ LANGUAGE sql",
            t = fx.table
        ))
        .await;
    let source = SqlSource::connect(&fx.url, &format!("SELECT {function}() AS ts"), "ts", &[])
        .await
        .expect("the guard lets an unknown function through");
    let err = source.fetch(None).await.unwrap_err();
    let chain = format!("{:?}", err);
    assert!(chain.contains("read-only"), "{chain}");
    fx.writer
        .execute(&format!("DROP FUNCTION {function}()"))
        .await;
    fx.drop_table().await;
}

/// A statement that runs past the statement timeout is cancelled by the database (or, on SQLite, interrupted by the
/// progress handler) in about the timeout, and the fetch fails with the typed error naming it; the source stays
/// usable.
pub(crate) async fn statement_timeout_cancels_slow_queries(fx: Fixture) {
    let slow = match fx.writer {
        Writer::Postgres(_) => "SELECT now() AS ts, count(*) AS n \
             FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b"
            .to_string(),
        Writer::MySql(_) => {
            "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) \
             SELECT NOW(6) AS ts, COUNT(*) AS n FROM r a, r b, r c, r d"
                .to_string()
        }
        Writer::Sqlite(_) => "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
             SELECT '2026-01-01' AS ts, count(*) AS n FROM (SELECT n FROM r LIMIT 10000000000)"
            .to_string(),
    };
    let timeout = std::time::Duration::from_secs(1);
    let source = SqlSource::connect(&fx.url, &slow, "ts", &[])
        .await
        .expect("source")
        .with_statement_timeout(timeout);
    assert_eq!(source.statement_timeout(), timeout);
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let err = source.fetch(None).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, StoreError::StatementTimeout { timeout: t, .. } if *t == timeout),
            "{}",
            err.chain()
        );
        assert!(err.to_string().contains("1000 ms"), "{err}");
        assert!(
            took >= timeout.mul_f64(0.9) && took < timeout * 8,
            "cancelled after {took:?}"
        );
    }
    fx.drop_table().await;
}

/// PostgreSQL: a query that switches the session's read-only default off (through a function the guard cannot see
/// into) cannot open the way for the next fetch to write: each fetch is its own read-only transaction, rolled back.
pub(crate) async fn settings_do_not_outlive_a_fetch(fx: Fixture) {
    let Writer::Postgres(_) = fx.writer else {
        return;
    };
    let unlock = format!("{}_unlock", fx.table);
    let writer = format!("{}_write", fx.table);
    fx.writer
        .execute(&format!(
            "CREATE FUNCTION {unlock}() RETURNS TEXT AS $$ \
             SELECT set_config('default_transaction_read_only', 'off', false) $$ LANGUAGE sql"
        ))
        .await;
    fx.writer
        .execute(&format!(
            "CREATE FUNCTION {writer}() RETURNS TEXT AS $$ \
             INSERT INTO {t} (id, ts, host) VALUES (1, now(), 'x') RETURNING 'wrote' $$ LANGUAGE sql",
            t = fx.table
        ))
        .await;
    // The first fetch unlocks; were the setting to survive, the next would write.
    let query = format!(
        "SELECT now() AS ts, CASE WHEN current_setting('default_transaction_read_only') = 'off' \
         THEN {writer}() ELSE {unlock}() END AS did"
    );
    let source = SqlSource::connect(&fx.url, &query, "ts", &[])
        .await
        .expect("the guard cannot see inside user functions");
    for _ in 0..4 {
        match source.fetch(None).await {
            Ok(batch) => assert_eq!(batch.rows[0].record["did"], "off", "{batch:?}"),
            Err(e) => assert!(e.chain().contains("read-only"), "{}", e.chain()),
        }
    }
    let Writer::Postgres(pool) = &fx.writer else {
        unreachable!()
    };
    let written: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", fx.table))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        written, 0,
        "a fetch wrote through a setting an earlier fetch changed"
    );
    fx.writer
        .execute(&format!(
            "DROP FUNCTION {unlock}(); DROP FUNCTION {writer}()"
        ))
        .await;
    fx.drop_table().await;
}

/// A run of equal timestamps longer than the run limit is not loaded whole: the fetch fails naming the timestamp
/// and the number of rows.
pub(crate) async fn long_runs_of_equal_timestamps_are_bounded(fx: Fixture) {
    let total = 10_005_i64;
    let rows: Vec<(i64, i64)> = (0..total).map(|id| (id, 7)).collect();
    for chunk in rows.chunks(1_000) {
        fx.writer.insert(&fx.table, chunk).await;
    }
    fx.writer.insert(&fx.table, &[(total, 8)]).await;
    let source = fx.source(1).await;
    assert_eq!(source.run_limit(), 10_000);
    let err = source.fetch(None).await.unwrap_err();
    match &err {
        StoreError::TimestampRunTooLong {
            timestamp,
            rows,
            limit,
        } => {
            assert_eq!((*rows, *limit), (10_005, 10_000), "{err}");
            assert!(timestamp.starts_with("2026-01-01"), "{timestamp}");
        }
        other => panic!("{}", other.chain()),
    }
    assert!(err.to_string().contains("10005 rows"), "{err}");
    // With batches large enough for the run, it is read whole.
    let source = fx.source(2_000).await;
    let batch = source.fetch(None).await.expect("fetch");
    assert_eq!(batch.rows.len(), total as usize);
    fx.drop_table().await;
}

/// A number JSON cannot hold becomes null (and is reported) instead of failing every fetch; as the timestamp column
/// it is a typed error. MariaDB cannot store such a number: its largest DECIMAL decodes as a number.
pub(crate) async fn numbers_beyond_f64_do_not_stop_the_source(fx: Fixture) {
    fx.writer.insert(&fx.table, &[(1, 1), (2, 2), (3, 3)]).await;
    match fx.writer {
        Writer::Postgres(_) => {
            let query = format!(
                "SELECT id, ts, CASE WHEN id = 2 THEN 1e309::numeric ELSE id END AS big FROM {}",
                fx.table
            );
            let source = SqlSource::connect(&fx.url, &query, "ts", &[])
                .await
                .unwrap();
            let batch = source.fetch(None).await.expect("the fetch goes on");
            let ids: Vec<_> = batch.rows.iter().map(|r| r.record["id"].clone()).collect();
            assert_eq!(ids, [json!(1), json!(2), json!(3)]);
            assert_eq!(batch.rows[1].record["big"], Value::Null);
            assert_eq!(batch.rows[2].record["big"], json!(3));
            assert_eq!(batch.dropped_values.len(), 1, "{batch:?}");
            assert_eq!(batch.dropped_values[0].column, "big");
            assert_eq!(batch.dropped_values[0].timestamp, batch.rows[1].timestamp);
            assert_eq!(batch.watermark.as_ref(), Some(&batch.rows[2].timestamp));

            let source = SqlSource::connect(&fx.url, "SELECT 1e309::numeric AS ts", "ts", &[])
                .await
                .unwrap();
            let err = source.fetch(None).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::SourceColumn { column, .. } if column == "ts"),
                "{err}"
            );
        }
        Writer::MySql(_) => {
            let query = format!(
                "SELECT id, ts, CAST(REPEAT('9', 65) AS DECIMAL(65, 0)) AS big FROM {}",
                fx.table
            );
            let source = SqlSource::connect(&fx.url, &query, "ts", &[])
                .await
                .unwrap();
            let batch = source.fetch(None).await.expect("fetch");
            assert_eq!(batch.rows.len(), 3);
            let big = batch.rows[0].record["big"].as_f64().expect("a number");
            assert!((big - 1e65).abs() < 1e50, "{big}");
            assert!(batch.dropped_values.is_empty());
        }
        Writer::Sqlite(_) => {}
    }
    fx.drop_table().await;
}
