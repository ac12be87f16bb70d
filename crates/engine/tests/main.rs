//! The one integration-test binary of verdict-engine (one binary links faster than one per file); each
//! module runs against SQLite and, when `VERDICT_TEST_DATABASE_URL` is set, PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod effects;
mod ingest;
mod linking;
mod reconcile;
mod scheduling;
