//! The integration tests of `anomaly-store`: one conformance suite run against every backend.

mod backends;
mod conformance;
mod engine_restart;
mod outage;
mod persistence;
mod queue;
mod retention;
mod source;

/// Generates one test per (backend, conformance function) pair.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$test(crate::backends::in_memory()).await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$test(crate::backends::sqlite_memory().await).await;
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (store, _dir) = crate::backends::sqlite_file().await;
                    crate::$test(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(store) = crate::backends::from_env("TEST_PG_URL", concat!("postgres::", stringify!($test))).await else {
                        return;
                    };
                    crate::$test(store).await;
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(store) = crate::backends::from_env("TEST_MYSQL_URL", concat!("mariadb::", stringify!($test))).await else {
                        return;
                    };
                    crate::$test(store).await;
                }
            )*
        }
    };
}

conformance!(
    history_round_trip_and_cap,
    anomaly_round_trip,
    anomaly_batch_round_trip,
    anomaly_pagination_and_filters,
    model_versions_round_trip,
    large_snapshot,
    concurrent_version_race,
    query_pattern_upsert,
    hostile_and_unicode_strings,
    overlong_key_refused,
    nul_characters,
    concurrent_writers,
    data_sources,
    retention_cleanup,
);

use conformance::{
    anomaly_batch_round_trip, anomaly_pagination_and_filters, anomaly_round_trip,
    concurrent_version_race, concurrent_writers, data_sources, history_round_trip_and_cap,
    hostile_and_unicode_strings, large_snapshot, model_versions_round_trip, nul_characters,
    overlong_key_refused, query_pattern_upsert,
};
use retention::retention_cleanup;

/// The global cleanup, on stores no other test shares.
mod global_cleanup {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory() {
        crate::retention::global_cleanup(crate::backends::in_memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_memory() {
        crate::retention::global_cleanup(crate::backends::sqlite_memory().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_file() {
        let (store, _dir) = crate::backends::sqlite_file().await;
        crate::retention::global_cleanup(store).await;
    }
}

/// Generates one test per (database, source function) pair: `SqlSource` reads real databases, never the
/// in-memory store.
macro_rules! source_suite {
    ($($test:ident),* $(,)?) => {
        mod source_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::source::$test(crate::source::sqlite_fixture().await).await;
                }
            )*
        }
        mod source_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(fx) = crate::source::server_fixture("TEST_PG_URL", concat!("source_postgres::", stringify!($test))).await else {
                        return;
                    };
                    crate::source::$test(fx).await;
                }
            )*
        }
        mod source_mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(fx) = crate::source::server_fixture("TEST_MYSQL_URL", concat!("source_mariadb::", stringify!($test))).await else {
                        return;
                    };
                    crate::source::$test(fx).await;
                }
            )*
        }
    };
}

source_suite!(
    watermark_reads_every_row_once,
    writes_are_refused,
    read_only_session_stops_writing_functions,
    statement_timeout_cancels_slow_queries,
    settings_do_not_outlive_a_fetch,
    long_runs_of_equal_timestamps_are_bounded,
    numbers_beyond_f64_do_not_stop_the_source,
);
