//! What the marketplace knows about the order behind a dispute: the facts a defense is built from.
//!
//! These are plain values. Where they come from (Verdict's own tables, or the marketplace's order service
//! over HTTP) is the `verdict-facts` crate's business; what they prove (which evidence they give, whether
//! Compelling Evidence 3.0 applies, which argument a defense makes) is decided from them by pure rules in
//! this crate. Personal fields (names, addresses, emails, IPs) are wrapped or kept out of `Debug` by the
//! types that carry them, so that no log line shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Customer, CustomerEmail, CustomerName, DomainError, Locale, Money};

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

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerFacts {
    pub seller_id: String,
    pub name: String,
    /// Where the seller's notices go, when the marketplace gives one.
    pub email: Option<String>,
    /// The seller ships the order itself (not the marketplace's warehouse): the seller owns "not received".
    pub ships_itself: bool,
}

/// The seller's name and email stay out of `Debug`: a seller is often a person trading under their own name.
impl std::fmt::Debug for SellerFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SellerFacts")
            .field("seller_id", &self.seller_id)
            .field("ships_itself", &self.ships_itself)
            .finish_non_exhaustive()
    }
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

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Who signed for the parcel is a person's name: left out of `Debug`, with the address.
impl std::fmt::Debug for Shipment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipment")
            .field("carrier", &self.carrier)
            .field("tracking_number", &self.tracking_number)
            .field("shipped_at", &self.shipped_at)
            .field("delivered_at", &self.delivered_at)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
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

/// Which kind of reference a notification carried: what the marketplace's order or a processor's payment is
/// known by. Stored in the link step's payload and named (never its value) in `order_not_found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// An order number with no processor-specific name (an analyst's input, the alert feed).
    OrderReference,
    /// Stripe `metadata[order_id]`, Braintree `order-id`.
    OrderId,
    /// Adyen `merchantReference`.
    MerchantReference,
    /// PayPal `invoice_number` / `invoice_id`.
    InvoiceId,
    /// PayPal `custom` (the merchant's custom id).
    CustomId,
    /// A payment reference with no processor-specific name.
    PaymentReference,
    /// Stripe charge id (`ch_...`).
    Charge,
    /// Stripe payment intent id (`pi_...`).
    PaymentIntent,
    /// Adyen PSP reference of the original payment (`originalReference`).
    PspReference,
    /// PayPal `seller_transaction_id`, Braintree transaction id.
    TransactionId,
}

impl ReferenceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReferenceKind::OrderReference => "order_reference",
            ReferenceKind::OrderId => "order_id",
            ReferenceKind::MerchantReference => "merchant_reference",
            ReferenceKind::InvoiceId => "invoice_id",
            ReferenceKind::CustomId => "custom_id",
            ReferenceKind::PaymentReference => "payment_reference",
            ReferenceKind::Charge => "charge",
            ReferenceKind::PaymentIntent => "payment_intent",
            ReferenceKind::PspReference => "psp_reference",
            ReferenceKind::TransactionId => "transaction_id",
        }
    }

    /// Whether the reference names the marketplace's order (rather than a payment): order references are tried
    /// first, being the most specific.
    pub fn names_the_order(&self) -> bool {
        match self {
            ReferenceKind::OrderReference
            | ReferenceKind::OrderId
            | ReferenceKind::MerchantReference
            | ReferenceKind::InvoiceId
            | ReferenceKind::CustomId => true,
            ReferenceKind::PaymentReference
            | ReferenceKind::Charge
            | ReferenceKind::PaymentIntent
            | ReferenceKind::PspReference
            | ReferenceKind::TransactionId => false,
        }
    }
}

impl std::fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reference a notification carried, with what it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaggedReference {
    pub kind: ReferenceKind,
    pub value: String,
}

impl TaggedReference {
    pub fn new(kind: ReferenceKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// The references to look an order up by, order references first, each value once, blanks dropped: what the
/// link step's payload holds.
pub fn lookup_references(references: impl IntoIterator<Item = TaggedReference>) -> Vec<TaggedReference> {
    let mut kept: Vec<TaggedReference> = Vec::new();
    for reference in references {
        let value = reference.value.trim();
        if value.is_empty() || value.len() > MAX_REFERENCE_CHARS || kept.iter().any(|k| k.value == value) {
            continue;
        }
        kept.push(TaggedReference::new(reference.kind, value));
    }
    kept.sort_by_key(|r| !r.kind.names_the_order());
    kept
}

/// Longest reference (order number, payment id) accepted.
pub const MAX_REFERENCE_CHARS: usize = 255;
/// Most payment references one order may be known by.
pub const MAX_PAYMENT_REFERENCES: usize = 50;
/// Most lines, messages, prior transactions or refunds one order may carry.
pub const MAX_ITEMS: usize = 500;
/// Longest free text (a message body, a description, a policy).
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Longest short text (a name, a grade, a carrier, an address line).
pub const MAX_SHORT_CHARS: usize = 500;

fn check_reference(field: &str, value: &str) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_REFERENCE_CHARS || value.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!(
            "{field} must be 1 to {MAX_REFERENCE_CHARS} printable characters"
        )));
    }
    Ok(value.to_owned())
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), DomainError> {
    if required && value.trim().is_empty() {
        return Err(DomainError::invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(DomainError::invalid(format!("{field} is longer than {max} characters")));
    }
    if value.contains('\0') {
        return Err(DomainError::invalid(format!("{field} contains a NUL character")));
    }
    Ok(())
}

fn check_opt(field: &str, value: &Option<String>, max: usize) -> Result<(), DomainError> {
    value.as_deref().map_or(Ok(()), |v| check_text(field, v, max, false))
}

fn check_count(field: &str, count: usize, max: usize) -> Result<(), DomainError> {
    if count > max {
        return Err(DomainError::invalid(format!(
            "{field} has {count} entries; at most {max}"
        )));
    }
    Ok(())
}

/// A deserialised amount has skipped `Money::new`: checked again here.
fn check_money(field: &str, money: &Money) -> Result<(), DomainError> {
    Money::new(money.minor_units(), money.currency())
        .map(|_| ())
        .map_err(|err| DomainError::invalid(format!("{field}: {err}")))
}

fn check_address(field: &str, address: &Address) -> Result<(), DomainError> {
    check_count(&format!("{field}.lines"), address.lines.len(), 10)?;
    for line in &address.lines {
        check_text(&format!("{field}.lines"), line, MAX_SHORT_CHARS, false)?;
    }
    check_text(&format!("{field}.postal_code"), &address.postal_code, 50, false)?;
    check_text(&format!("{field}.city"), &address.city, MAX_SHORT_CHARS, false)?;
    let country = address.country.trim();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(DomainError::invalid(format!(
            "{field}.country must be an ISO 3166-1 alpha-2 code such as FR, not {:?}",
            address.country
        )));
    }
    Ok(())
}

/// What dispute patterns group an order's disputes by: the device and grade of its first line and the country it
/// was shipped to. No personal data; carried by `order_linked` so the grouping columns follow the event log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProfile {
    pub device_model: Option<String>,
    pub grade: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

impl OrderFacts {
    /// The order's profile for patterns: its first line (the device the order was placed for) and the shipping
    /// country, when there is a shipment.
    pub fn profile(&self) -> OrderProfile {
        let line = self.lines.first();
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        OrderProfile {
            device_model: line.and_then(|l| text(&l.device_model)),
            grade: line.and_then(|l| text(&l.grade.to_ascii_lowercase())),
            country: self
                .shipment
                .as_ref()
                .and_then(|s| text(&s.address.country.to_ascii_uppercase())),
        }
    }

    /// Checks what a marketplace or an operator sent (amounts, email, sizes, references) and returns the
    /// facts with references trimmed, country codes upper-cased and payment references deduplicated. Errors
    /// name the field, never its value (values may be personal).
    pub fn validated(mut self) -> Result<Self, DomainError> {
        self.order_reference = check_reference("order_reference", &self.order_reference)?;
        check_count(
            "payment_references",
            self.payment_references.len(),
            MAX_PAYMENT_REFERENCES,
        )?;
        let mut payments: Vec<String> = Vec::with_capacity(self.payment_references.len());
        for reference in &self.payment_references {
            let reference = check_reference("payment_references", reference)?;
            if !payments.contains(&reference) {
                payments.push(reference);
            }
        }
        self.payment_references = payments;
        check_money("total", &self.total)?;
        self.seller.seller_id = check_reference("seller.seller_id", &self.seller.seller_id)?;
        check_text("seller.name", &self.seller.name, MAX_SHORT_CHARS, true)?;
        if let Some(email) = &self.seller.email {
            CustomerEmail::parse(email).map_err(|_| DomainError::invalid("seller.email is not a valid address"))?;
        }
        if self.lines.is_empty() {
            return Err(DomainError::invalid("lines must hold at least one line"));
        }
        check_count("lines", self.lines.len(), MAX_ITEMS)?;
        for line in &self.lines {
            check_text("lines.device_model", &line.device_model, MAX_SHORT_CHARS, true)?;
            check_text("lines.grade", &line.grade, 100, true)?;
            check_opt("lines.imei_or_serial", &line.imei_or_serial, 100)?;
            check_money("lines.price", &line.price)?;
            check_opt("lines.description", &line.description, MAX_TEXT_CHARS)?;
            check_opt("lines.grade_report", &line.grade_report, MAX_TEXT_CHARS)?;
        }
        if let Some(shipment) = &mut self.shipment {
            check_text("shipment.carrier", &shipment.carrier, MAX_SHORT_CHARS, true)?;
            check_text("shipment.tracking_number", &shipment.tracking_number, 200, true)?;
            check_address("shipment.address", &shipment.address)?;
            shipment.address.country = shipment.address.country.trim().to_ascii_uppercase();
            check_opt(
                "shipment.proof_of_delivery",
                &shipment.proof_of_delivery,
                MAX_TEXT_CHARS,
            )?;
            check_opt("shipment.signed_by", &shipment.signed_by, MAX_SHORT_CHARS)?;
            if let (Some(shipped), Some(delivered)) = (shipment.shipped_at, shipment.delivered_at)
                && delivered < shipped
            {
                return Err(DomainError::invalid(
                    "shipment.delivered_at is before shipment.shipped_at",
                ));
            }
        }
        self.customer.account_id = check_reference("customer.account_id", &self.customer.account_id)?;
        CustomerName::parse(&self.customer.name)
            .map_err(|_| DomainError::invalid("customer.name must be 1 to 200 characters"))?;
        CustomerEmail::parse(&self.customer.email)
            .map_err(|_| DomainError::invalid("customer.email is not a valid address"))?;
        self.customer.name = self.customer.name.trim().to_owned();
        self.customer.email = self.customer.email.trim().to_owned();
        for field in [
            &self.payment_checks.avs_result,
            &self.payment_checks.cvv_result,
            &self.payment_checks.three_d_secure,
        ] {
            check_opt("payment_checks", field, 100)?;
        }
        check_opt("payment_checks.ip_address", &self.payment_checks.ip_address, 100)?;
        check_opt(
            "payment_checks.device_id",
            &self.payment_checks.device_id,
            MAX_REFERENCE_CHARS,
        )?;
        check_count("prior_transactions", self.prior_transactions.len(), MAX_ITEMS)?;
        for prior in &mut self.prior_transactions {
            prior.payment_reference =
                check_reference("prior_transactions.payment_reference", &prior.payment_reference)?;
            check_money("prior_transactions.amount", &prior.amount)?;
            check_opt("prior_transactions.ip_address", &prior.ip_address, 100)?;
            check_opt("prior_transactions.device_id", &prior.device_id, MAX_REFERENCE_CHARS)?;
            check_opt("prior_transactions.account_id", &prior.account_id, MAX_REFERENCE_CHARS)?;
            if let Some(address) = &mut prior.shipping_address {
                check_address("prior_transactions.shipping_address", address)?;
                address.country = address.country.trim().to_ascii_uppercase();
            }
        }
        check_count("messages", self.messages.len(), MAX_ITEMS)?;
        for message in &self.messages {
            check_text("messages.body", &message.body, MAX_TEXT_CHARS, true)?;
        }
        check_opt("policies.refund_policy", &self.policies.refund_policy, MAX_TEXT_CHARS)?;
        check_opt(
            "policies.warranty_policy",
            &self.policies.warranty_policy,
            MAX_TEXT_CHARS,
        )?;
        if let Some(cancellation) = &self.cancellation {
            check_text("cancellation.reason", &cancellation.reason, MAX_TEXT_CHARS, true)?;
        }
        check_count("refunds", self.refunds.len(), MAX_ITEMS)?;
        for refund in &self.refunds {
            check_money("refunds.amount", &refund.amount)?;
            if let Some(reference) = &refund.reference {
                check_reference("refunds.reference", reference)?;
            }
        }
        Ok(self)
    }

    /// Every reference the order is known by: its order number, then its payment references.
    pub fn references(&self) -> Vec<String> {
        let mut all = vec![self.order_reference.clone()];
        for reference in &self.payment_references {
            if !all.contains(reference) {
                all.push(reference.clone());
            }
        }
        all
    }

    /// The dispute's customer as the order knows them (validated facts always convert; a name or email that
    /// does not parse is left out rather than invented).
    pub fn dispute_customer(&self) -> Customer {
        Customer {
            name: CustomerName::parse(&self.customer.name).ok(),
            email: CustomerEmail::parse(&self.customer.email).ok(),
            locale: self.customer.locale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../tests/fixtures/orders/order-a17.json");

    fn example() -> OrderFacts {
        serde_json::from_str(EXAMPLE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(facts: OrderFacts) -> String {
        match facts.validated() {
            Err(DomainError::InvalidInput(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_example_is_valid_and_its_references_come_order_first() {
        let facts = example().validated().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(facts.references(), vec!["A-17", "ch_3Ofacts17", "pi_3Ofacts17"]);
        let customer = facts.dispute_customer();
        assert_eq!(customer.locale, Locale::Fr);
        assert_eq!(
            customer.email.map(|e| e.expose().to_owned()).as_deref(),
            Some("jeanne.dupont@example.fr")
        );
    }

    #[test]
    fn a_zero_or_negative_amount_is_refused_even_though_serde_let_it_in() {
        let mut json: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        json["lines"][0]["price"]["minor_units"] = serde_json::json!(0);
        let facts: OrderFacts = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert!(refused(facts).starts_with("lines.price"));
    }

    #[test]
    fn an_invalid_customer_email_is_refused_without_echoing_it() {
        let mut facts = example();
        facts.customer.email = "jeanne at example".into();
        let message = refused(facts);
        assert!(message.contains("customer.email"), "{message}");
        assert!(!message.contains("jeanne"), "{message}");
    }

    #[test]
    fn an_unknown_locale_is_refused_when_reading() {
        let json = EXAMPLE.replace(
            "\"locale\": \"fr\",\n    \"account",
            "\"locale\": \"de\",\n    \"account",
        );
        assert!(serde_json::from_str::<OrderFacts>(&json).is_err());
    }

    #[test]
    fn sizes_are_bounded() {
        let mut facts = example();
        facts.payment_references = (0..=MAX_PAYMENT_REFERENCES).map(|i| format!("ch_{i}")).collect();
        assert!(refused(facts).contains("payment_references"));
        let mut facts = example();
        facts.messages[0].body = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(refused(facts).contains("messages.body"));
        let mut facts = example();
        facts.order_reference = "x".repeat(MAX_REFERENCE_CHARS + 1);
        assert!(refused(facts).contains("order_reference"));
        let mut facts = example();
        facts.lines.clear();
        assert!(refused(facts).contains("lines"));
    }

    #[test]
    fn references_are_trimmed_and_deduplicated_and_countries_upper_cased() {
        let mut facts = example();
        facts.order_reference = "  A-17 ".into();
        facts.payment_references = vec!["ch_1".into(), " ch_1".into(), "pi_1".into()];
        if let Some(shipment) = facts.shipment.as_mut() {
            shipment.address.country = "fr".into();
        }
        let facts = facts.validated().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(facts.order_reference, "A-17");
        assert_eq!(facts.payment_references, vec!["ch_1", "pi_1"]);
        assert_eq!(facts.shipment.map(|s| s.address.country).as_deref(), Some("FR"));
    }

    #[test]
    fn a_delivery_before_shipping_is_refused() {
        let mut facts = example();
        if let Some(shipment) = facts.shipment.as_mut() {
            shipment.delivered_at = shipment.shipped_at.map(|t| t - chrono::Duration::days(1));
        }
        assert!(refused(facts).contains("delivered_at"));
    }

    #[test]
    fn order_references_sort_before_payment_references() {
        let kept = lookup_references([
            TaggedReference::new(ReferenceKind::Charge, "ch_1"),
            TaggedReference::new(ReferenceKind::MerchantReference, "M-1"),
            TaggedReference::new(ReferenceKind::PspReference, "ch_1"),
        ]);
        assert_eq!(
            kept,
            vec![
                TaggedReference::new(ReferenceKind::MerchantReference, "M-1"),
                TaggedReference::new(ReferenceKind::Charge, "ch_1"),
            ]
        );
    }

    #[test]
    fn debug_output_carries_no_personal_data() {
        let mut order = example();
        if let Some(shipment) = order.shipment.as_mut() {
            shipment.signed_by = Some("Jeanne Dupont".into());
        }
        let printed = format!("{order:?}");
        for personal in ["Jeanne", "jeanne.dupont", "rue des Lilas", "198.51.100.23", "Bonjour"] {
            assert!(!printed.contains(personal), "{personal} in {printed}");
        }
    }
}
