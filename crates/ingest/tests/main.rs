//! The one integration test binary of verdict-ingest: published fixtures and signature vectors, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerts;
mod fuzz;
mod parse_adyen;
mod parse_braintree;
mod parse_paypal;
mod parse_stripe;
mod references;
mod signatures;

use chrono::{DateTime, TimeZone, Utc};
use verdict_ingest::{Notification, Parsed};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/processors/");

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{path}")).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

pub fn fixture_str(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

pub fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// The single dispute a one-event payload must produce.
pub fn only_dispute(parsed: Vec<Parsed>) -> Notification {
    assert_eq!(parsed.len(), 1, "{parsed:?}");
    match parsed.into_iter().next().unwrap() {
        Parsed::Dispute(n) => n,
        other => panic!("expected a dispute, got {other:?}"),
    }
}

/// Every fixture file, for the fuzz tests.
pub fn all_fixture_files() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json" || e == "xml") {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new(FIXTURES), &mut out);
    out.sort();
    out
}
