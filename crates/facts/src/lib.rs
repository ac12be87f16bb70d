//! Where the marketplace facts behind a dispute come from.
//!
//! The engine, the evidence drawer and the document renderer ask one trait, [`MarketplaceFacts`], for the
//! order behind a dispute; which implementation answers is configuration: Verdict's own tables (the default,
//! fed by GraphQL, `verdict import` and the demo) or the marketplace's order service over HTTP.

use verdict_domain::Processor;
use verdict_domain::facts::OrderFacts;

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

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The source could not be asked (network, database, a 5xx): try again later.
    #[error("marketplace facts are unavailable: {0}")]
    Unavailable(String),
    /// The source answered something Verdict cannot read.
    #[error("marketplace facts are malformed: {0}")]
    Malformed(String),
}

/// The marketplace's knowledge of orders.
#[async_trait::async_trait]
pub trait MarketplaceFacts: Send + Sync + 'static {
    /// For logs and events: `tables`, `http`.
    fn name(&self) -> &'static str;

    /// The order the references point to; `Ok(None)` when no order matches.
    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError>;
}
