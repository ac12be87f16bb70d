//! What the marketplace knows about the order behind a dispute: the facts a defense is built from.
//!
//! These are plain values. Where they come from (Verdict's own tables, or the marketplace's order service
//! over HTTP) is the `verdict-facts` crate's business; what they prove (which evidence they give, whether
//! Compelling Evidence 3.0 applies, which argument a defense makes) is decided from them by pure rules in
//! this crate. Personal fields (names, addresses, emails, IPs) are wrapped or kept out of `Debug` by the
//! types that carry them, so that no log line shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Locale, Money};

/// Everything known about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// The marketplace's order number, as the notification's order reference carries it.
    pub order_reference: String,
    /// Every payment reference the processors know the order by (Stripe charge and payment intent ids, Adyen
    /// PSP reference, PayPal capture id, Braintree transaction id).
    pub payment_references: Vec<String>,
    pub placed_at: DateTime<Utc>,
    pub total: Money,
    pub seller: SellerFacts,
    pub lines: Vec<OrderLine>,
    /// None for an order not shipped yet.
    pub shipment: Option<Shipment>,
    pub customer: CustomerFacts,
    /// How the payment was authenticated: the fraud defense's first argument.
    pub payment_checks: PaymentChecks,
    /// The customer's earlier undisputed payments, for Compelling Evidence 3.0.
    pub prior_transactions: Vec<PriorTransaction>,
    /// What the marketplace and the customer wrote to each other about this order.
    pub messages: Vec<OrderMessage>,
    /// The refund and warranty terms shown at checkout, and whether they were accepted.
    pub policies: CheckoutPolicies,
    /// Set when the order was cancelled, and when a refund or credit was already made for it.
    pub cancellation: Option<Cancellation>,
    pub refunds: Vec<OrderRefund>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerFacts {
    pub seller_id: String,
    pub name: String,
    /// Where the seller's notices go, when the marketplace gives one.
    pub email: Option<String>,
    /// The seller ships the order itself (not the marketplace's warehouse): the seller owns "not received".
    pub ships_itself: bool,
}

/// A refurbished device sold on the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// e.g. `iPhone 13 128 GB Midnight`.
    pub device_model: String,
    /// The marketplace's cosmetic grade as listed: `excellent`, `good`, `fair`.
    pub grade: String,
    /// IMEI for phones, serial number otherwise.
    pub imei_or_serial: Option<String>,
    pub price: Money,
    /// The listing's description as the customer saw it.
    pub description: Option<String>,
    /// The technician's grade report (battery health, cosmetic checks), when one was made.
    pub grade_report: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The delivery address as written on the order, one line per element.
    pub address: Address,
    /// The carrier's proof of delivery (a signature name, a photo reference, a GPS scan), as text.
    pub proof_of_delivery: Option<String>,
    pub signed_by: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub postal_code: String,
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Address")
            .field("country", &self.country)
            .finish_non_exhaustive()
    }
}

impl Address {
    /// One line, for documents and comparisons: `1 Main St, 75001 Paris, FR`.
    pub fn one_line(&self) -> String {
        let mut parts: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        let city = format!("{} {}", self.postal_code, self.city);
        parts.push(city.trim());
        parts.push(&self.country);
        parts.retain(|p| !p.is_empty());
        parts.join(", ")
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFacts {
    /// The marketplace's customer account id.
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub locale: Locale,
    pub account_created_at: DateTime<Utc>,
    /// Orders and disputes before this one.
    pub previous_orders: u32,
    pub previous_disputes: u32,
}

impl std::fmt::Debug for CustomerFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerFacts")
            .field("account_id", &self.account_id)
            .field("locale", &self.locale)
            .field("previous_orders", &self.previous_orders)
            .field("previous_disputes", &self.previous_disputes)
            .finish_non_exhaustive()
    }
}

/// The authentication results of the disputed payment, as the processor returned them at authorisation.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentChecks {
    /// AVS result code, e.g. `Y` (address and postal code match).
    pub avs_result: Option<String>,
    /// CVV/CVC result, e.g. `M` (match).
    pub cvv_result: Option<String>,
    /// 3-D Secure result, e.g. `authenticated`, `attempted`.
    pub three_d_secure: Option<String>,
    pub ip_address: Option<String>,
    pub device_id: Option<String>,
}

impl std::fmt::Debug for PaymentChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentChecks")
            .field("avs_result", &self.avs_result)
            .field("cvv_result", &self.cvv_result)
            .field("three_d_secure", &self.three_d_secure)
            .finish_non_exhaustive()
    }
}

/// An earlier payment by the same customer that was not disputed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorTransaction {
    /// The processor's payment reference (Stripe charge id for CE 3.0).
    pub payment_reference: String,
    pub paid_at: DateTime<Utc>,
    pub amount: Money,
    pub ip_address: Option<String>,
    pub device_id: Option<String>,
    pub shipping_address: Option<Address>,
    /// The customer account that paid.
    pub account_id: Option<String>,
    /// Was it ever disputed? A disputed one never counts for CE 3.0.
    pub disputed: bool,
}

impl std::fmt::Debug for PriorTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorTransaction")
            .field("payment_reference", &self.payment_reference)
            .field("paid_at", &self.paid_at)
            .field("amount", &self.amount)
            .field("disputed", &self.disputed)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageAuthor {
    Customer,
    Marketplace,
    Seller,
}

/// A message exchanged about the order, kept in the language it was written in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMessage {
    pub sent_at: DateTime<Utc>,
    pub author: MessageAuthor,
    pub locale: Locale,
    pub body: String,
}

impl std::fmt::Debug for OrderMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderMessage")
            .field("sent_at", &self.sent_at)
            .field("author", &self.author)
            .field("locale", &self.locale)
            .finish_non_exhaustive()
    }
}

/// The terms shown at checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutPolicies {
    pub refund_policy: Option<String>,
    pub warranty_policy: Option<String>,
    /// When the customer ticked "I accept the terms", if recorded.
    pub terms_accepted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub cancelled_at: DateTime<Utc>,
    /// Who cancelled and why, as the marketplace records it.
    pub reason: String,
}

/// A refund or credit already made for the order, outside the dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefund {
    pub refunded_at: DateTime<Utc>,
    pub amount: Money,
    pub reference: Option<String>,
}
