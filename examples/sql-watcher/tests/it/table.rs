//! A watched table: three hosts' metrics with planted anomalies, on SQLite, MariaDB or PostgreSQL.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

/// Rows of the first load (three series of 400).
pub(crate) const ROWS: u64 = 1_200;
/// Ids of the planted rows: CPU and latency far above every series' normal.
pub(crate) const PLANTED: [u64; 3] = [700, 851, 1_002];
pub(crate) const HOSTS: [&str; 3] = ["web-0", "web-1", "web-2"];

/// A watched database: where it is and the source fields that reach it.
pub(crate) struct Watched {
    pub(crate) engine: &'static str,
    pub(crate) table: String,
    /// `host`, `port`, `name`, `user`, `password` for the form.
    pub(crate) fields: Value,
    conn: DatabaseConnection,
    _dir: Option<tempfile::TempDir>,
}

/// A value in -1..1 from `i` (splitmix64), the same everywhere.
fn noise(i: u64, salt: u64) -> f64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(salt);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// `scheme://user:password@host:port/name` → the form's fields.
fn url_fields(url: &str) -> Value {
    let rest = url.split_once("://").unwrap().1;
    let (auth, hostpath) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, name) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let name = name.split('?').next().unwrap_or_default();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    json!({"host": host, "port": port, "name": name, "user": user, "password": password})
}

impl Watched {
    /// A fresh table `name` on the engine (`sqlite`: a new file; otherwise the server at `url`).
    pub(crate) async fn create(engine: &'static str, url: Option<&str>, name: &str) -> Watched {
        let (url, dir, fields) = match url {
            None => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("watched.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let fields = json!({"host": "", "name": path.display().to_string(), "user": ""});
                (url, Some(dir), fields)
            }
            Some(u) => (u.to_string(), None, url_fields(u)),
        };
        let conn = Database::connect(&url).await.unwrap();
        let table = format!("{name}_{}", std::process::id());
        let ddl = match engine {
            "sqlite" => format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, host TEXT NOT NULL, \
                 cpu REAL NOT NULL, latency REAL NOT NULL, status TEXT NOT NULL)"
            ),
            "postgres" => format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, ts TIMESTAMP NOT NULL, host TEXT NOT NULL, \
                 cpu DOUBLE PRECISION NOT NULL, latency DOUBLE PRECISION NOT NULL, status TEXT NOT NULL)"
            ),
            _ => format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, ts DATETIME(6) NOT NULL, host VARCHAR(32) NOT NULL, \
                 cpu DOUBLE NOT NULL, latency DOUBLE NOT NULL, status VARCHAR(16) NOT NULL)"
            ),
        };
        conn.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        conn.execute_unprepared(&ddl).await.unwrap();
        let w = Watched {
            engine,
            table,
            fields,
            conn,
            _dir: dir,
        };
        w.insert(0..ROWS).await;
        w
    }

    /// Inserts rows `ids` (a minute apart from 2026-11-01, round robin over the hosts).
    pub(crate) async fn insert(&self, ids: std::ops::Range<u64>) {
        let ids: Vec<u64> = ids.collect();
        for chunk in ids.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|&i| {
                    let host = HOSTS[(i % 3) as usize];
                    let (cpu, latency) = if PLANTED.contains(&i) {
                        (0.99, 950.0)
                    } else {
                        (0.4 + 0.05 * noise(i, 1), 100.0 + 10.0 * noise(i, 2))
                    };
                    // Within a series, every other row.
                    let status = if (i / 3) % 2 == 0 { "warn" } else { "ok" };
                    let ts = chrono::DateTime::from_timestamp(1_793_491_200 + i as i64 * 60, 0)
                        .unwrap()
                        .format("%Y-%m-%d %H:%M:%S");
                    format!("({i}, '{ts}', '{host}', {cpu}, {latency}, '{status}')")
                })
                .collect();
            self.conn
                .execute_unprepared(&format!(
                    "INSERT INTO {} (id, ts, host, cpu, latency, status) VALUES {}",
                    self.table,
                    values.join(", ")
                ))
                .await
                .unwrap();
        }
    }

    /// Rows in the table now.
    pub(crate) async fn count(&self) -> i64 {
        let row = self
            .conn
            .query_one(sea_orm::Statement::from_string(
                self.conn.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {}", self.table),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// The source's JSON for the API.
    pub(crate) fn source(&self, alias: &str) -> Value {
        let mut v = self.fields.clone();
        let o = v.as_object_mut().unwrap();
        o.insert("alias".into(), json!(alias));
        o.insert("engine".into(), json!(self.engine));
        o.insert(
            "sql".into(),
            json!(format!(
                "SELECT id, ts, host, cpu, latency, status FROM {}",
                self.table
            )),
        );
        o.insert("timestamp_column".into(), json!("ts"));
        o.insert("series_columns".into(), json!(["host"]));
        o.insert("sensitivity".into(), json!(0.01));
        v
    }

    pub(crate) async fn drop_table(&self) {
        let _ = self
            .conn
            .execute_unprepared(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await;
    }
}
