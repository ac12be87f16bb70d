//! `verdict import`: replays exported processor payloads through the same inbox-then-apply path as the
//! webhooks, so a dispute history can be rebuilt (or a missed delivery window filled) from a processor's
//! export.
//!
//! Signatures are not verified: exports carry none that could be checked (and webhook signatures expire after
//! minutes). The operator who runs the import vouches for the files. Redelivered events are absorbed by the
//! inbox's (processor, event id) key, so importing the same file twice changes nothing.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use verdict_engine::{Engine, Source};
use verdict_ingest::{ParseError, Parsed};

/// What an import did, summed over every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub records: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub ignored: usize,
    /// `file:line` and why, for each record that could not be read; the import goes on past them.
    pub malformed: Vec<String>,
}

/// One record to ingest: its text (stored as the raw payload) and where it came from.
struct Record {
    origin: String,
    text: String,
}

/// An Adyen export line may be a whole notification body or a single item; items are wrapped into a body.
fn adyen_body(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) if value.get("notificationItems").is_none() && value.get("type").is_none() => {
            let item = if value.get("NotificationRequestItem").is_some() {
                value
            } else {
                serde_json::json!({ "NotificationRequestItem": value })
            };
            serde_json::json!({ "live": "false", "notificationItems": [item] }).to_string()
        }
        _ => text.to_owned(),
    }
}

fn parse(source: Source, text: &str) -> Result<Vec<Parsed>, ParseError> {
    match source {
        Source::Stripe => verdict_ingest::parse_stripe(text.as_bytes()),
        Source::Adyen => verdict_ingest::parse_adyen(adyen_body(text).as_bytes()),
        Source::Paypal => verdict_ingest::parse_paypal(text.as_bytes()),
        Source::Alerts => verdict_ingest::parse_alert(text.as_bytes()),
        Source::Braintree if text.trim_start().starts_with('<') => verdict_ingest::parse_braintree_xml(text),
        Source::Braintree => verdict_ingest::parse_braintree(text),
    }
}

/// Splits a file into records: one JSON event per line, or for Braintree either one XML document per file or
/// one base64 `bt_payload` per line.
fn records(source: Source, path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if source == Source::Braintree && text.trim_start().starts_with('<') {
        return Ok(vec![Record {
            origin: path.display().to_string(),
            text,
        }]);
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| Record {
            origin: format!("{}:{}", path.display(), i + 1),
            text: line.trim().to_owned(),
        })
        .collect())
}

/// Imports `files` as `source` notifications; `progress` shows a bar on a terminal.
pub async fn import(
    engine: &Engine,
    source: Source,
    files: &[PathBuf],
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let mut all = Vec::new();
    for path in files {
        all.extend(records(source, path)?);
    }
    let bar = if progress {
        ProgressBar::new(all.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} notifications {msg}") {
        bar.set_style(style);
    }
    let mut report = ImportReport::default();
    for record in all {
        report.records += 1;
        match parse(source, &record.text) {
            Ok(parsed) => {
                // A storage failure stops the import: what follows may depend on it (same dispute, later event).
                let received = engine
                    .receive(source, parsed, &record.text)
                    .await
                    .with_context(|| format!("storing {}", record.origin))?;
                report.stored += received.stored;
                report.duplicates += received.duplicates;
                report.ignored += received.ignored;
            }
            Err(err) => report.malformed.push(format!("{}: {err}", record.origin)),
        }
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use verdict_domain::{Processor, Status};
    use verdict_engine::{Engine, SystemClock};
    use verdict_store::testing::test_databases;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/processors/");

    fn one_line(path: &str) -> String {
        let text = std::fs::read_to_string(format!("{FIXTURES}{path}")).unwrap();
        serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn an_export_is_replayed_once_and_malformed_lines_are_reported() {
        for db in test_databases().await.unwrap() {
            let engine = Engine::new(db.store().await.unwrap(), Arc::new(SystemClock));
            let dir = tempfile::tempdir().unwrap();
            let created = one_line("stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json");
            let lines = format!("{created}\n\nnot json\n{created}\n");
            let stripe_file = dir.path().join("stripe.jsonl");
            std::fs::write(&stripe_file, lines).unwrap();
            let report = import(&engine, Source::Stripe, &[stripe_file], false).await.unwrap();
            assert_eq!(
                (report.records, report.stored, report.duplicates),
                (3, 1, 1),
                "{}",
                db.label
            );
            assert_eq!(report.malformed.len(), 1);
            assert!(report.malformed[0].contains("stripe.jsonl:3"), "{:?}", report.malformed);

            let xml = PathBuf::from(format!(
                "{FIXTURES}braintree/ruby-sdk-sample-notification-dispute_won.xml"
            ));
            let report = import(&engine, Source::Braintree, &[xml], false).await.unwrap();
            assert_eq!(report.stored, 1, "{}", db.label);
            let won = engine
                .store()
                .find_by_processor_id(Processor::Braintree, "my_id")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(won.status, Status::Won);

            let item = serde_json::from_str::<Value>(&one_line("adyen/openapi-webhooks-v1-chargeback.json")).unwrap()
                ["notificationItems"][0]
                .to_string();
            let adyen_file = dir.path().join("adyen.jsonl");
            std::fs::write(&adyen_file, item).unwrap();
            let report = import(&engine, Source::Adyen, &[adyen_file], false).await.unwrap();
            assert_eq!(report.stored, 1, "a single item is wrapped into a body: {report:?}");
        }
    }
}
