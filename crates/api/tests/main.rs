//! The one integration-test binary of verdict-api. Each test runs against SQLite and, when
//! `VERDICT_TEST_DATABASE_URL` is set, PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webhooks;
