//! The worker against the local NATS server (`TEST_NATS_URL`) and SQLite (and PostgreSQL when `TEST_PG_URL` is
//! set). Each test has its own subject prefix, stream and consumer, so tests never see each other's messages.

mod alerts;
mod common;
mod dashboard;
mod deploy;
mod pipeline;
mod process;
