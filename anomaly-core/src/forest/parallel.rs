//! Running work on rayon's global pool or on a pool of a given size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// Pools by size, built once per process: building one per call would cost a thread spawn per call.
static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();

fn pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(Arc::clone(p));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("anomaly-{threads}-{i}"))
        .build()
        .map_err(|e| Error::invalid("n_threads", e.to_string()))?;
    let p = Arc::new(p);
    pools.insert(threads, Arc::clone(&p));
    Ok(p)
}

/// Runs `f` on the pool the thread setting asks for: `None` is rayon's global pool. `Some(1)` callers should use
/// their serial path instead.
pub(crate) fn install<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None => Ok(f()),
        Some(k) => Ok(pool(k)?.install(f)),
    }
}

/// Runs `f` on the threads a forest built with `n_threads(threads)` uses: rayon's global pool for `None`, else the
/// process's pool of that size. Work the caller splits with rayon inside `f` then shares those threads with the
/// forest's own splits instead of adding threads of its own.
///
/// # Errors
/// [`Error::InvalidParameter`] when the pool cannot be built.
pub fn on_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    install(threads.filter(|&k| k > 0), f)
}
