//! The service monitor's integration tests.

mod accuracy;
mod common;
