//! The application's tables, as sea-orm migrations, beside the engine store's own (which keep their own
//! migration table, `anomaly_store_migrations`; these are in `sql_watcher_migrations`).
//!
//! Column types that differ by backend follow the store's: timestamps are `timestamp with time zone` on
//! PostgreSQL, `DATETIME(6)` on MariaDB, text on SQLite; long text is `LONGTEXT` on MariaDB (a `TEXT` stops at
//! 64 KiB); MariaDB tables are `utf8mb4` with a binary collation, so names compare exactly as elsewhere.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTables)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("sql_watcher_migrations").into_iden()
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261206_000001_create_tables"
    }
}

fn table(b: DbBackend, name: &str) -> TableCreateStatement {
    let mut s = Table::create();
    s.table(Alias::new(name)).if_not_exists();
    if b == DbBackend::MySql {
        s.character_set("utf8mb4").collate("utf8mb4_bin");
    }
    s
}

fn col(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
}

fn id() -> ColumnDef {
    let mut c = col("id");
    c.big_integer().not_null().auto_increment().primary_key();
    c
}

fn short(name: &str) -> ColumnDef {
    let mut c = col(name);
    c.string_len(255).not_null();
    c
}

fn long_text(b: DbBackend, name: &str, null: bool) -> ColumnDef {
    let mut c = col(name);
    match b {
        DbBackend::MySql => c.custom(Alias::new("LONGTEXT")),
        _ => c.text(),
    };
    if null {
        c.null()
    } else {
        c.not_null()
    };
    c
}

fn timestamp(b: DbBackend, name: &str, null: bool) -> ColumnDef {
    let mut c = col(name);
    match b {
        DbBackend::MySql => c.custom(Alias::new("DATETIME(6)")),
        _ => c.timestamp_with_time_zone(),
    };
    if null {
        c.null()
    } else {
        c.not_null()
    };
    c
}

fn big(name: &str) -> ColumnDef {
    let mut c = col(name);
    c.big_integer().not_null();
    c
}

fn index(name: &str, table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table)).if_not_exists();
    if unique {
        i.unique();
    }
    for c in cols {
        i.col(Alias::new(*c));
    }
    i
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let b = m.get_database_backend();
        let t = |name: &str| table(b, name);
        m.create_table(
            t("watch_users")
                .col(id())
                .col(short("username"))
                .col(short("password_hash"))
                .col(timestamp(b, "created_at", false))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_users_username",
            "watch_users",
            &["username"],
            true,
        ))
        .await?;
        m.create_table(
            t("watch_tokens")
                .col(id())
                .col(big("user_id"))
                .col(short("digest"))
                .col(short("label"))
                .col(timestamp(b, "created_at", false))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_tokens_digest",
            "watch_tokens",
            &["digest"],
            true,
        ))
        .await?;
        m.create_index(index(
            "watch_tokens_user",
            "watch_tokens",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_table(
            t("watch_sessions")
                .col(id())
                .col(short("digest"))
                .col(big("user_id"))
                .col(short("csrf"))
                .col(timestamp(b, "expires_at", false))
                .col(timestamp(b, "created_at", false))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_sessions_digest",
            "watch_sessions",
            &["digest"],
            true,
        ))
        .await?;
        m.create_index(index(
            "watch_sessions_user",
            "watch_sessions",
            &["user_id"],
            false,
        ))
        .await?;
        let mut port = col("port");
        port.integer().null();
        let mut sensitivity = col("sensitivity");
        sensitivity.double().null();
        m.create_table(
            t("watch_sources")
                .col(id())
                .col(big("user_id"))
                .col(short("alias"))
                .col(short("engine"))
                .col(short("host"))
                .col(port)
                .col(long_text(b, "name", false))
                .col(short("db_user"))
                .col(long_text(b, "password", false))
                .col(long_text(b, "sql_text", false))
                .col(short("timestamp_column"))
                .col(long_text(b, "series_columns", false))
                .col(sensitivity)
                .col(big("fetch_interval_seconds"))
                .col(short("status"))
                .col(timestamp(b, "last_run", true))
                .col(long_text(b, "last_error", true))
                .col(long_text(b, "watermark", true))
                .col(big("failures"))
                .col(timestamp(b, "next_run_at", false))
                .col(big("revision"))
                .col(timestamp(b, "created_at", false))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_sources_user_alias",
            "watch_sources",
            &["user_id", "alias"],
            true,
        ))
        .await?;
        m.create_index(index(
            "watch_sources_due",
            "watch_sources",
            &["next_run_at"],
            false,
        ))
        .await?;
        let mut error = col("error");
        match b {
            DbBackend::MySql => error.custom(Alias::new("LONGTEXT")),
            _ => error.text(),
        };
        error.null();
        m.create_table(
            t("watch_runs")
                .col(id())
                .col(big("source_id"))
                .col(short("trigger"))
                .col(timestamp(b, "started_at", false))
                .col(big("rows_fetched"))
                .col(big("anomalies"))
                .col(big("duration_ms"))
                .col(error)
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_runs_source",
            "watch_runs",
            &["source_id", "id"],
            false,
        ))
        .await?;
        let mut score = col("score");
        score.double().null();
        let mut is_anomaly = col("is_anomaly");
        is_anomaly.boolean().not_null();
        m.create_table(
            t("watch_rows")
                .col(id())
                .col(big("source_id"))
                .col(big("run_id"))
                .col(long_text(b, "row_json", false))
                .col(short("row_timestamp"))
                .col(timestamp(b, "row_time", true))
                .col(short("series"))
                .col(score)
                .col(is_anomaly)
                .col(long_text(b, "explanation", true))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "watch_rows_source",
            "watch_rows",
            &["source_id", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "watch_rows_anomalies",
            "watch_rows",
            &["source_id", "is_anomaly", "score"],
            false,
        ))
        .await?;
        Ok(())
    }
}
