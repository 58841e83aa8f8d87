//! The tables, as sea-orm entities. Private: the API speaks in domain types.
#![allow(unreachable_pub, missing_docs)]

pub(crate) mod history {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_history")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub key: String,
        pub payload: Json,
        pub ts: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod detection {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_detections")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub key: String,
        pub detector: String,
        pub score: f64,
        pub threshold: f64,
        pub is_anomaly: bool,
        pub rationale: String,
        pub explanation: Json,
        pub context: Json,
        pub config: Json,
        pub model_version: Option<i64>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod model {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_models")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub key: String,
        pub version: i64,
        pub kind: String,
        pub snapshot: Vec<u8>,
        pub records_trained_on: i64,
        pub features: Json,
        pub trained_at: DateTimeUtc,
        pub metrics: Json,
        pub saved_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod query_pattern {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_query_patterns")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub query_hash: String,
        pub text: String,
        pub operation_name: Option<String>,
        pub variables: Json,
        pub role: Option<String>,
        pub count: i64,
        pub anomaly_count: i64,
        pub anomalous: bool,
        pub first_seen: DateTimeUtc,
        pub last_seen: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod data_source {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_data_sources")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub url: String,
        pub query: String,
        pub timestamp_column: String,
        pub series_columns: Json,
        pub poll_interval_seconds: i64,
        pub sensitivity: Option<f64>,
        pub watermark: Option<Json>,
        pub status: String,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
