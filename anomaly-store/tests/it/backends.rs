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

/// How long the first test of a run waits for a server named by `TEST_PG_URL` / `TEST_MYSQL_URL` to accept a TCP
/// connection.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The URL in `var`, or `None` (and a loud line) when the variable is unset.
///
/// A set variable means the server must answer: CI sets `TEST_PG_URL` / `TEST_MYSQL_URL` only when the server is
/// up, so a server that does not accept connections is a FAILURE of every test that needs it, never a skip, and a
/// fast one: the first test of the run tries a TCP connection to the URL's host and port (within
/// [`PROBE_TIMEOUT`]); when that fails, it and every later test of the run panic at once with the same message
/// naming the variable and the reason, instead of each waiting for the driver's timeouts.
pub(crate) fn url_from_env(var: &str, test: &str) -> Option<String> {
    let Ok(url) = std::env::var(var) else {
        skipped(test, var);
        return None;
    };
    if let Err(reason) = server_answers(var, &url) {
        panic!("{var} is set but its server does not answer: {reason}");
    }
    Some(url)
}

#[allow(clippy::print_stderr)]
fn skipped(test: &str, var: &str) {
    eprintln!("SKIPPED {test}: no database server (set {var})");
}

/// Whether the server of `url` accepts a TCP connection; tried once per variable and run, remembered after.
fn server_answers(var: &str, url: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static PROBES: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let probes = PROBES.get_or_init(Default::default);
    // Held while probing: the other tests of the run wait for the first one's answer (at most PROBE_TIMEOUT).
    let mut probes = probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    probes
        .entry(var.to_string())
        .or_insert_with(|| probe(url))
        .clone()
}

/// One TCP connection to the host and port of `url` (the scheme's default port when it names none).
fn probe(url: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the URL has no scheme://".to_string())?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.starts_with("postgres") {
        5432
    } else {
        3306
    };
    let host_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_string()
    } else {
        format!("{host_port}:{default_port}")
    };
    let addresses = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?;
    let mut last = format!("{host_port} resolves to no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{address}: {e} (waited at most {PROBE_TIMEOUT:?})"),
        }
    }
    Err(last)
}

/// The store at the URL in `var`, or `None` (and a loud line) when the variable is unset; a set variable whose
/// server does not answer fails the test at once (see [`url_from_env`]).
pub(crate) async fn from_env(var: &str, test: &str) -> Option<Arc<dyn Store>> {
    let url = url_from_env(var, test)?;
    let store = SeaOrmStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{var} is set but the store cannot connect: {}", e.chain()));
    Some(Arc::new(store.with_max_history(MAX_HISTORY)))
}
