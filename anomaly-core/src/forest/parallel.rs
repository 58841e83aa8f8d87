//! Running work serially, on rayon's global pool, or on a pool of a given size.

use crate::error::{Error, Result};

/// Runs `f` on the pool the thread setting asks for. `Some(1)` callers should use their serial path instead.
pub(crate) fn install<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None => Ok(f()),
        Some(k) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .map_err(|e| Error::invalid("n_threads", e.to_string()))?;
            Ok(pool.install(f))
        }
    }
}
