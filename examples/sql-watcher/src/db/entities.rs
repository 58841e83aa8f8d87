//! The application's tables, as sea-orm entities. Private: the rest of the crate speaks in [`super`]'s types.
#![allow(unreachable_pub, missing_docs)]

macro_rules! entity {
    ($module:ident, $table:literal, { $($field:ident : $ty:ty),* $(,)? }) => {
        pub(crate) mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i64,
                $(pub $field: $ty,)*
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

entity!(user, "watch_users", {
    username: String,
    password_hash: String,
    created_at: DateTimeUtc,
});

entity!(token, "watch_tokens", {
    user_id: i64,
    digest: String,
    label: String,
    created_at: DateTimeUtc,
});

entity!(session, "watch_sessions", {
    digest: String,
    user_id: i64,
    csrf: String,
    expires_at: DateTimeUtc,
    created_at: DateTimeUtc,
});

entity!(source, "watch_sources", {
    user_id: i64,
    alias: String,
    engine: String,
    host: String,
    port: Option<i32>,
    name: String,
    db_user: String,
    password: String,
    sql_text: String,
    timestamp_column: String,
    series_columns: String,
    sensitivity: Option<f64>,
    fetch_interval_seconds: i64,
    status: String,
    last_run: Option<DateTimeUtc>,
    last_error: Option<String>,
    watermark: Option<String>,
    failures: i64,
    next_run_at: DateTimeUtc,
    revision: i64,
    created_at: DateTimeUtc,
});

entity!(run, "watch_runs", {
    source_id: i64,
    trigger: String,
    started_at: DateTimeUtc,
    rows_fetched: i64,
    anomalies: i64,
    duration_ms: i64,
    error: Option<String>,
});

entity!(row, "watch_rows", {
    source_id: i64,
    run_id: i64,
    row_json: String,
    row_timestamp: String,
    row_time: Option<DateTimeUtc>,
    series: String,
    score: Option<f64>,
    is_anomaly: bool,
    explanation: Option<String>,
});
