//! Whether the storage behind a [`WriteBehind`](super::WriteBehind) answers, as last seen.
//!
//! When a database goes down, every call would wait for its connection timeout before failing. So the first call
//! that fails marks the storage unavailable; from then on calls fail at once instead of waiting, and the
//! `WriteBehind`'s thread probes the storage every interval until it answers again. A refusal of the data a call
//! carried ([`Error::PersistenceRefused`](crate::Error::PersistenceRefused)) says nothing about the storage's health
//! and does not count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::Error;

/// Whether the storage answered the last time it was asked, how often it stopped answering, and why.
#[derive(Debug, Default)]
pub struct Availability {
    down: AtomicBool,
    outages: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Availability {
    /// Whether the storage is taken to answer.
    pub fn is_available(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Times the storage went from available to unavailable.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// The last failure's message.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a failure: the storage is unavailable until a probe gets an answer. Returns whether it was
    /// available until now.
    pub(crate) fn failed(&self, error: &str) -> bool {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        let went_down = !self.down.swap(true, Ordering::AcqRel);
        if went_down {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error,
                "the store is unavailable: calls fail at once and history waits until it answers"
            );
        }
        went_down
    }

    /// Records an answer: the storage is available.
    pub(crate) fn answered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("the store answers again");
        }
    }

    /// The error a call gets at once while the storage is unavailable.
    pub(crate) fn unavailable(&self) -> Error {
        Error::Persistence {
            reason: format!(
                "skipped: the store is unavailable ({})",
                self.last_error().unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Availability;

    #[test]
    fn outages_are_counted_once_each() {
        let a = Availability::default();
        assert!(a.is_available());
        assert!(a.failed("connection refused"));
        assert!(!a.failed("connection refused again"));
        assert!(!a.is_available());
        assert_eq!(a.outages(), 1);
        assert!(
            a.unavailable()
                .to_string()
                .contains("connection refused again")
        );
        a.answered();
        assert!(a.is_available());
        assert!(a.failed("timed out"));
        assert_eq!(a.outages(), 2);
        assert_eq!(a.last_error().as_deref(), Some("timed out"));
    }
}
