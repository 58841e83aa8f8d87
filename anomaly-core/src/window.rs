//! Time windows: event records to one row per service per window.
