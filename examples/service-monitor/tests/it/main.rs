//! The service monitor's integration tests.
// Tests say what they measured and what they skipped.
#![allow(clippy::print_stderr)]

mod accuracy;
mod cli;
mod common;
mod elastic;
mod fake_es;
mod flow;
