//! End-to-end tests: the real server on a random port, against a fresh database per test (SQLite always,
//! PostgreSQL when `VERDICT_TEST_DATABASE_URL` is set), driven over HTTP like a frontend would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apikeys;
mod app;
mod cli;
mod contract;
mod crash;
mod disputes;
mod documents;
mod evidence;
mod facts;
mod identity;
mod limits;
mod observability;
mod outbound;
mod patterns;
mod policy;
mod readiness;
mod respond;
mod sandbox;
mod schema;
mod search;
mod sellers;
mod subscriptions;
