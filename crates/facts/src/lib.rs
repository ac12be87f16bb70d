//! Where the marketplace facts behind a dispute come from.
//!
//! The engine, the evidence drawer and the document renderer ask one trait, [`MarketplaceFacts`], for the
//! order behind a dispute; which implementation answers is configuration (`[marketplace]`): Verdict's own
//! tables ([`TablesFacts`], the default, fed by GraphQL, `verdict import orders` and the demo) or the
//! marketplace's order service over HTTP ([`HttpFacts`], contract in docs/marketplace-api.md).

mod config;
mod http;
mod tables;

use verdict_domain::Processor;
use verdict_domain::facts::{OrderFacts, TaggedReference};

pub use config::{DEFAULT_TIMEOUT_SECS, FactsSource, MarketplaceConfig, from_config};
pub use http::{HttpFacts, MAX_RESPONSE_BYTES};
pub use tables::{Recorded, TablesFacts};

/// What a notification carries that can find its order: the references, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLookup {
    pub processor: Processor,
    /// The order number when the notification carries one (Adyen merchant reference, PayPal invoice id,
    /// Braintree order id, Stripe `metadata[order_id]`).
    pub order_reference: Option<String>,
    /// Payment references (Stripe charge and payment intent, Adyen PSP reference, PayPal capture or
    /// transaction id, Braintree transaction id).
    pub payment_references: Vec<String>,
}

impl OrderLookup {
    /// A lookup by the references of a link step, order references first (a second order-like reference,
    /// such as PayPal's custom id beside its invoice id, is tried after the first, before payments).
    pub fn from_references(processor: Processor, references: &[TaggedReference]) -> Self {
        let mut order_reference = None;
        let mut payment_references = Vec::new();
        for reference in references {
            if reference.kind.names_the_order() && order_reference.is_none() {
                order_reference = Some(reference.value.clone());
            } else if !payment_references.contains(&reference.value) {
                payment_references.push(reference.value.clone());
            }
        }
        Self {
            processor,
            order_reference,
            payment_references,
        }
    }

    /// A lookup by one order number (an analyst's `linkOrder`).
    pub fn by_order(processor: Processor, order_reference: impl Into<String>) -> Self {
        Self {
            processor,
            order_reference: Some(order_reference.into()),
            payment_references: Vec::new(),
        }
    }

    /// Every reference, most specific first, each once.
    pub fn references(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for reference in self.order_reference.iter().chain(&self.payment_references) {
            if !all.contains(&reference.as_str()) {
                all.push(reference);
            }
        }
        all
    }

    pub fn is_empty(&self) -> bool {
        self.order_reference.is_none() && self.payment_references.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The source could not be asked (network, database, a 5xx): try again later.
    #[error("marketplace facts are unavailable: {0}")]
    Unavailable(String),
    /// The source answered something Verdict cannot read.
    #[error("marketplace facts are malformed: {0}")]
    Malformed(String),
    /// Facts given to record are invalid (the message names the field, never its value).
    #[error("invalid order facts: {0}")]
    Invalid(String),
    /// Recording would take a reference another order is known by.
    #[error("{0}")]
    Conflict(String),
    /// This source does not record orders (the marketplace's order service is read over HTTP).
    #[error("the {0} source of marketplace facts does not record orders; the marketplace's order service holds them")]
    ReadOnly(&'static str),
}

/// The marketplace's knowledge of orders.
#[async_trait::async_trait]
pub trait MarketplaceFacts: Send + Sync + 'static {
    /// For logs and events: `tables`, `http`.
    fn name(&self) -> &'static str;

    /// The order the references point to; `Ok(None)` when no order matches.
    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError>;

    /// Records (or replaces) an order, where this source keeps its own copy; the HTTP source does not.
    async fn record_order(
        &self,
        facts: OrderFacts,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Recorded, FactsError> {
        let _ = (facts, now);
        Err(FactsError::ReadOnly(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verdict_domain::facts::ReferenceKind;

    #[test]
    fn a_lookup_tries_the_order_reference_first_and_each_reference_once() {
        let lookup = OrderLookup::from_references(
            Processor::Paypal,
            &[
                TaggedReference::new(ReferenceKind::InvoiceId, "INV-1"),
                TaggedReference::new(ReferenceKind::CustomId, "A-17"),
                TaggedReference::new(ReferenceKind::TransactionId, "TX-1"),
                TaggedReference::new(ReferenceKind::TransactionId, "TX-1"),
            ],
        );
        assert_eq!(lookup.order_reference.as_deref(), Some("INV-1"));
        assert_eq!(lookup.references(), vec!["INV-1", "A-17", "TX-1"]);
    }
}
