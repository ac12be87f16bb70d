//! `verdict import orders FILE...`: marketplace orders into Verdict's own tables, one `OrderFacts` JSON object
//! per line (the shape of docs/marketplace-api.md).
//!
//! A line that cannot be read or is refused (invalid facts, a reference of another order) is reported as
//! `file:line` and the import goes on. Recording an order again replaces its facts, and the same facts change
//! nothing, so importing a file twice leaves the tables as they were.

use std::path::PathBuf;

use anyhow::Context as _;
use verdict_domain::facts::OrderFacts;
use verdict_engine::Engine;
use verdict_facts::{FactsError, Recorded};

/// What an order import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderImportReport {
    pub lines: usize,
    pub created: usize,
    pub replaced: usize,
    pub unchanged: usize,
    /// `file:line` and why, for each line that was not recorded.
    pub refused: Vec<String>,
}

/// Records every order of `files` through the engine's marketplace facts (the own tables).
pub async fn import_orders(engine: &Engine, files: &[PathBuf]) -> anyhow::Result<OrderImportReport> {
    let facts = engine.facts();
    let mut report = OrderImportReport::default();
    for path in files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            report.lines += 1;
            let origin = format!("{}:{}", path.display(), i + 1);
            let order: OrderFacts = match serde_json::from_str(line) {
                Ok(order) => order,
                Err(err) => {
                    report.refused.push(format!("{origin}: not an order ({err})"));
                    continue;
                }
            };
            match facts.record_order(order, engine.clock().now()).await {
                Ok(Recorded::Created) => report.created += 1,
                Ok(Recorded::Replaced) => report.replaced += 1,
                Ok(Recorded::Unchanged) => report.unchanged += 1,
                Err(err @ (FactsError::Invalid(_) | FactsError::Conflict(_) | FactsError::Malformed(_))) => {
                    report.refused.push(format!("{origin}: {err}"));
                }
                // The database is down, or the orders live in the order service: nothing more can be recorded.
                Err(err @ (FactsError::Unavailable(_) | FactsError::ReadOnly(_))) => {
                    return Err(anyhow::anyhow!("{err}")).with_context(|| format!("recording {origin}"));
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use verdict_engine::SystemClock;
    use verdict_facts::OrderLookup;
    use verdict_store::testing::test_databases;

    use super::*;

    const ORDER: &str = include_str!("../tests/fixtures/orders/order-a17.json");

    fn one_line(order: &str, payments: &[&str]) -> String {
        let mut value: serde_json::Value = serde_json::from_str(ORDER).unwrap();
        value["order_reference"] = serde_json::json!(order);
        value["payment_references"] = serde_json::json!(payments);
        value.to_string()
    }

    #[tokio::test]
    async fn orders_are_imported_once_and_bad_lines_are_reported_by_file_and_line() {
        for db in test_databases().await.unwrap() {
            let engine = Engine::new(db.store().await.unwrap(), Arc::new(SystemClock));
            let dir = tempfile::tempdir().unwrap();
            let mut invalid: serde_json::Value = serde_json::from_str(&one_line("C-3", &["ch_c3"])).unwrap();
            invalid["customer"]["email"] = serde_json::json!("nobody");
            let lines = [
                one_line("A-1", &["ch_a1", "pi_a1"]),
                String::new(),
                "{not json".to_owned(),
                one_line("B-2", &["ch_b2"]),
                invalid.to_string(),
                one_line("D-4", &["ch_a1"]),
            ];
            let file = dir.path().join("orders.jsonl");
            std::fs::write(&file, lines.join("\n")).unwrap();

            let first = import_orders(&engine, std::slice::from_ref(&file)).await.unwrap();
            assert_eq!(
                (first.lines, first.created, first.replaced, first.unchanged),
                (5, 2, 0, 0),
                "{}",
                db.label
            );
            assert_eq!(first.refused.len(), 3, "{:?}", first.refused);
            assert!(first.refused[0].contains("orders.jsonl:3"), "{:?}", first.refused);
            assert!(first.refused[1].contains("orders.jsonl:5") && first.refused[1].contains("customer.email"));
            assert!(first.refused[2].contains("orders.jsonl:6") && first.refused[2].contains("ch_a1"));

            let again = import_orders(&engine, &[file]).await.unwrap();
            assert_eq!(
                (again.created, again.replaced, again.unchanged),
                (0, 0, 2),
                "{}",
                db.label
            );

            let found = engine
                .facts()
                .find_order(&OrderLookup::by_order(verdict_domain::Processor::Stripe, "pi_a1"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found.order_reference, "A-1");
        }
    }
}
