//! The stores the conformance suite runs against.

use std::sync::Arc;

use anomaly_store::{InMemoryStore, SeaOrmStore, Store};

/// History cap of every store under test (the cap test relies on it).
pub(crate) const MAX_HISTORY: u64 = 10;

pub(crate) fn in_memory() -> Arc<dyn Store> {
    Arc::new(InMemoryStore::new(MAX_HISTORY))
}

pub(crate) async fn sqlite_memory() -> Arc<dyn Store> {
    let store = SeaOrmStore::connect("sqlite::memory:")
        .await
        .expect("sqlite::memory:");
    Arc::new(store.with_max_history(MAX_HISTORY))
}

pub(crate) async fn sqlite_file() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = SeaOrmStore::connect(&url).await.expect("sqlite file");
    (Arc::new(store.with_max_history(MAX_HISTORY)), dir)
}

/// The URL in `var`, or `None` (and a loud line) when the variable is unset.
#[allow(clippy::print_stderr)]
pub(crate) fn url_from_env(var: &str, test: &str) -> Option<String> {
    let url = std::env::var(var).ok();
    if url.is_none() {
        eprintln!("SKIPPED {test}: no database server (set {var})");
    }
    url
}

/// The store at the URL in `var`, or `None` (and a loud line) when the variable is unset.
#[allow(clippy::print_stderr)]
pub(crate) async fn from_env(var: &str, test: &str) -> Option<Arc<dyn Store>> {
    let Ok(url) = std::env::var(var) else {
        eprintln!("SKIPPED {test}: no database server (set {var})");
        return None;
    };
    let store = SeaOrmStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{var} is set but the store cannot connect: {e:?}"));
    Some(Arc::new(store.with_max_history(MAX_HISTORY)))
}
