//! The marketplace facts sources: the own tables on a fresh SQLite database (and PostgreSQL when
//! `VERDICT_TEST_DATABASE_URL` is set), the HTTP source against a local mock that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http;
mod tables;

use verdict_domain::facts::OrderFacts;

pub fn example() -> OrderFacts {
    serde_json::from_str(include_str!("fixtures/order-a17.json")).unwrap()
}

/// The example under another order number and payment references.
pub fn another(order: &str, payments: &[&str]) -> OrderFacts {
    let mut facts = example();
    facts.order_reference = order.into();
    facts.payment_references = payments.iter().map(|p| (*p).to_owned()).collect();
    facts
}
