//! The schema, as sea-orm migrations. Private: [`SeaOrmStore::migrate`](super::SeaOrmStore::migrate) runs them.
//!
//! Column types that differ by backend: timestamps are `timestamp with time zone` on PostgreSQL (microseconds),
//! `DATETIME(6)` on MySQL/MariaDB (a plain `timestamp` there keeps whole seconds), text on SQLite (RFC 3339 with
//! the fraction); snapshots are `bytea` / `LONGBLOB` (a MySQL `BLOB` stops at 64 KiB) / `blob`; long text is
//! `LONGTEXT` on MySQL for the same reason.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTables), Box::new(CreateDataSources)]
    }

    // Not `seaql_migrations`: the application may run sea-orm migrations of its own in the same database.
    fn migration_table_name() -> DynIden {
        Alias::new("anomaly_store_migrations").into_iden()
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261121_000001_create_tables"
    }
}

struct CreateDataSources;

impl MigrationName for CreateDataSources {
    fn name(&self) -> &str {
        "m20261121_000002_create_data_sources"
    }
}

fn table(b: DbBackend, name: &str) -> TableCreateStatement {
    let mut s = Table::create();
    s.table(Alias::new(name)).if_not_exists();
    if b == DbBackend::MySql {
        // Exact, case- and accent-sensitive keys, as on the other backends; emoji included.
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

/// An indexed short string (keys, detectors, kinds, hashes).
fn short(name: &str) -> ColumnDef {
    let mut c = col(name);
    c.string_len(255).not_null();
    c
}

fn long_text(b: DbBackend, name: &str) -> ColumnDef {
    let mut c = col(name);
    match b {
        DbBackend::MySql => c.custom(Alias::new("LONGTEXT")),
        _ => c.text(),
    };
    c
}

fn timestamp(b: DbBackend, name: &str) -> ColumnDef {
    let mut c = col(name);
    match b {
        DbBackend::MySql => c.custom(Alias::new("DATETIME(6)")),
        _ => c.timestamp_with_time_zone(),
    };
    c.not_null();
    c
}

fn json(name: &str) -> ColumnDef {
    let mut c = col(name);
    c.json_binary().not_null();
    c
}

fn big(name: &str) -> ColumnDef {
    let mut c = col(name);
    c.big_integer().not_null();
    c
}

fn index(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table)).if_not_exists();
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
            t("anomaly_history")
                .col(id())
                .col(short("key"))
                .col(json("payload"))
                .col(timestamp(b, "ts"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "idx_anomaly_history_key_ts",
            "anomaly_history",
            &["key", "ts", "id"],
        ))
        .await?;

        m.create_table(
            t("anomaly_detections")
                .col(id())
                .col(short("key"))
                .col(short("detector"))
                .col(col("score").double().not_null())
                .col(col("threshold").double().not_null())
                .col(col("is_anomaly").boolean().not_null())
                .col(long_text(b, "rationale").not_null())
                .col(json("explanation"))
                .col(json("context"))
                .col(json("config"))
                .col(col("model_version").big_integer().null())
                .col(timestamp(b, "created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "idx_anomaly_detections_created",
            "anomaly_detections",
            &["created_at", "id"],
        ))
        .await?;
        m.create_index(index(
            "idx_anomaly_detections_key_created",
            "anomaly_detections",
            &["key", "created_at"],
        ))
        .await?;

        let mut snapshot = col("snapshot");
        match b {
            DbBackend::MySql => snapshot.custom(Alias::new("LONGBLOB")),
            _ => snapshot.blob(),
        };
        m.create_table(
            t("anomaly_models")
                .col(id())
                .col(short("key"))
                .col(big("version"))
                .col(short("kind"))
                .col(snapshot.not_null())
                .col(big("records_trained_on"))
                .col(json("features"))
                .col(timestamp(b, "trained_at"))
                .col(json("metrics"))
                .col(timestamp(b, "saved_at"))
                .to_owned(),
        )
        .await?;
        // The unique (key, version) pair is what makes concurrent saves get distinct versions.
        m.create_index(
            index(
                "idx_anomaly_models_key_version",
                "anomaly_models",
                &["key", "version"],
            )
            .unique()
            .to_owned(),
        )
        .await?;

        m.create_table(
            t("anomaly_query_patterns")
                .col(id())
                .col(short("query_hash"))
                .col(long_text(b, "text").not_null())
                .col(long_text(b, "operation_name").null())
                .col(json("variables"))
                .col(col("role").string_len(255).null())
                .col(big("count"))
                .col(big("anomaly_count"))
                .col(col("anomalous").boolean().not_null())
                .col(timestamp(b, "first_seen"))
                .col(timestamp(b, "last_seen"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            index(
                "idx_anomaly_query_patterns_hash",
                "anomaly_query_patterns",
                &["query_hash"],
            )
            .unique()
            .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "anomaly_query_patterns",
            "anomaly_models",
            "anomaly_detections",
            "anomaly_history",
        ] {
            m.drop_table(Table::drop().table(Alias::new(name)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDataSources {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let b = m.get_database_backend();
        m.create_table(
            table(b, "anomaly_data_sources")
                .col(id())
                .col(short("name"))
                .col(long_text(b, "url").not_null())
                .col(long_text(b, "query").not_null())
                .col(short("timestamp_column"))
                .col(json("series_columns"))
                .col(big("poll_interval_seconds"))
                .col(col("sensitivity").double().null())
                .col(col("watermark").json_binary().null())
                .col(col("status").string_len(32).not_null())
                .col(long_text(b, "last_error").null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            index(
                "idx_anomaly_data_sources_name",
                "anomaly_data_sources",
                &["name"],
            )
            .unique()
            .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("anomaly_data_sources"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}
