//! Marketplace facts in GraphQL: the order behind a dispute (`Dispute.order`, `order(reference)`), recording
//! orders into Verdict's own tables (`recordOrder`, leads and admins) and linking a dispute to its order by
//! hand when the automatic link found nothing (`linkOrder`).
//!
//! Orders carry personal data (the customer's name, email and address, IPs, device ids, the messages). Roles
//! that may not see personal data (viewers) get them masked, exactly as `Dispute.customer` is.

use async_graphql::{Context, ID, InputObject, Json, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::facts;
use verdict_domain::{Action, Command, CustomerEmail, CustomerName};
use verdict_engine::Engine;
use verdict_facts::OrderLookup;

use super::query::{parse_id, principal};
use super::types::{Dispute, Locale, Money};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// An order as the marketplace knows it. Personal fields are masked for viewers.
#[derive(SimpleObject)]
pub struct Order {
    /// The marketplace's order number.
    pub order_reference: String,
    /// The payments of the order at the processors.
    pub payment_references: Vec<String>,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
    /// What the customer paid.
    pub total: Money,
    /// Who sold it.
    pub seller: OrderSeller,
    /// What was bought.
    pub lines: Vec<OrderLine>,
    /// How it was shipped, if it was.
    pub shipment: Option<OrderShipment>,
    /// The buyer; masked for viewers.
    pub customer: OrderCustomer,
    /// What the payment's checks said.
    pub payment_checks: OrderPaymentChecks,
    /// The customer's earlier payments (Compelling Evidence reads them).
    pub prior_transactions: Vec<OrderPriorTransaction>,
    /// Messages about the order.
    pub messages: Vec<OrderMessage>,
    /// The policies the customer agreed to.
    pub policies: OrderPolicies,
    /// The cancellation, if the order was cancelled.
    pub cancellation: Option<OrderCancellation>,
    /// Refunds already made on the order.
    pub refunds: Vec<OrderRefund>,
}

/// The seller of an order.
#[derive(SimpleObject)]
pub struct OrderSeller {
    /// The marketplace's id of the seller.
    pub seller_id: String,
    /// The seller's trading name.
    pub name: String,
    /// Where the seller is written to.
    pub email: Option<String>,
    /// The seller ships the parcel (not the marketplace's warehouse).
    pub ships_itself: bool,
}

/// A device bought in the order.
#[derive(SimpleObject)]
pub struct OrderLine {
    /// The model, e.g. `iPhone 13 128 GB`.
    pub device_model: String,
    /// The cosmetic grade as listed.
    pub grade: String,
    /// The device's IMEI or serial number; masked for viewers.
    pub imei_or_serial: Option<String>,
    /// What the line cost.
    pub price: Money,
    /// The listing as the customer saw it.
    pub description: Option<String>,
    /// The technician's grade report.
    pub grade_report: Option<String>,
}

/// A postal address; for viewers only the city and country are shown.
#[derive(SimpleObject)]
pub struct OrderAddress {
    /// Street lines (empty for viewers).
    pub lines: Vec<String>,
    /// Postal code (empty for viewers).
    pub postal_code: String,
    /// City.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// How an order was shipped.
#[derive(SimpleObject)]
pub struct OrderShipment {
    /// The carrier.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
    /// When it left.
    pub shipped_at: Option<DateTime<Utc>>,
    /// When the carrier delivered it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Where to.
    pub address: OrderAddress,
    /// The carrier's proof of delivery, as text.
    pub proof_of_delivery: Option<String>,
    /// Who signed for the parcel; masked for viewers.
    pub signed_by: Option<String>,
}

/// The buyer of an order; personal fields masked for viewers.
#[derive(SimpleObject)]
pub struct OrderCustomer {
    /// The marketplace's account id.
    pub account_id: String,
    /// Their name.
    pub name: String,
    /// Their email address.
    pub email: String,
    /// The language they use.
    pub locale: Locale,
    /// When the account was opened.
    pub account_created_at: DateTime<Utc>,
    /// Orders before this one.
    pub previous_orders: u32,
    /// Disputes before this one.
    pub previous_disputes: u32,
}

/// The payment's fraud checks, as the processor reported them.
#[derive(SimpleObject)]
pub struct OrderPaymentChecks {
    /// Address verification result.
    pub avs_result: Option<String>,
    /// Card security code check result.
    pub cvv_result: Option<String>,
    /// 3-D Secure outcome.
    pub three_d_secure: Option<String>,
    /// The buyer's IP address; masked for viewers.
    pub ip_address: Option<String>,
    /// The buyer's device fingerprint; masked for viewers.
    pub device_id: Option<String>,
}

/// An earlier payment by the same customer.
#[derive(SimpleObject)]
pub struct OrderPriorTransaction {
    /// The payment at the processor.
    pub payment_reference: String,
    /// When it was paid.
    pub paid_at: DateTime<Utc>,
    /// How much.
    pub amount: Money,
    /// The IP address it came from; masked for viewers.
    pub ip_address: Option<String>,
    /// The device it came from; masked for viewers.
    pub device_id: Option<String>,
    /// Where it was shipped.
    pub shipping_address: Option<OrderAddress>,
    /// The account that paid.
    pub account_id: Option<String>,
    /// Whether it was disputed too.
    pub disputed: bool,
}

/// A message about the order, in the language it was written in; its body is hidden from viewers.
#[derive(SimpleObject)]
pub struct OrderMessage {
    /// When it was written.
    pub sent_at: DateTime<Utc>,
    /// Who wrote it.
    pub author: super::enums::MessageAuthor,
    /// The language it was written in.
    pub locale: Locale,
    /// The text; null for viewers.
    pub body: Option<String>,
}

/// The policies that applied to the order.
#[derive(SimpleObject)]
pub struct OrderPolicies {
    /// The refund policy's text.
    pub refund_policy: Option<String>,
    /// The warranty's text.
    pub warranty_policy: Option<String>,
    /// When the customer accepted the terms.
    pub terms_accepted_at: Option<DateTime<Utc>>,
}

/// How an order was cancelled.
#[derive(SimpleObject)]
pub struct OrderCancellation {
    /// When.
    pub cancelled_at: DateTime<Utc>,
    /// Why, as recorded.
    pub reason: String,
}

/// A refund already made on the order.
#[derive(SimpleObject)]
pub struct OrderRefund {
    /// When.
    pub refunded_at: DateTime<Utc>,
    /// How much.
    pub amount: Money,
    /// The processor's reference of the refund.
    pub reference: Option<String>,
}

const MASK: &str = "***";

/// What a role that may not see personal data gets instead of a value.
struct Masking(bool);

impl Masking {
    fn of(ctx: &Context<'_>) -> Self {
        Masking(!ctx.data_opt::<Principal>().is_some_and(Principal::sees_personal_data))
    }
    fn text(&self, value: &str) -> String {
        if self.0 { MASK.to_owned() } else { value.to_owned() }
    }
    fn opt(&self, value: &Option<String>) -> Option<String> {
        value.as_deref().map(|v| self.text(v))
    }
    fn address(&self, a: &facts::Address) -> OrderAddress {
        OrderAddress {
            lines: if self.0 { vec![MASK.to_owned()] } else { a.lines.clone() },
            postal_code: self.text(&a.postal_code),
            city: a.city.clone(),
            country: a.country.clone(),
        }
    }
}

impl Order {
    fn new(f: facts::OrderFacts, mask: &Masking) -> Self {
        let customer = &f.customer;
        Order {
            payment_references: f.payment_references.clone(),
            placed_at: f.placed_at,
            total: f.total.into(),
            seller: OrderSeller {
                seller_id: f.seller.seller_id.clone(),
                name: f.seller.name.clone(),
                email: f.seller.email.clone(),
                ships_itself: f.seller.ships_itself,
            },
            lines: f
                .lines
                .iter()
                .map(|l| OrderLine {
                    device_model: l.device_model.clone(),
                    grade: l.grade.clone(),
                    imei_or_serial: l.imei_or_serial.clone(),
                    price: l.price.into(),
                    description: l.description.clone(),
                    grade_report: l.grade_report.clone(),
                })
                .collect(),
            shipment: f.shipment.as_ref().map(|s| OrderShipment {
                carrier: s.carrier.clone(),
                tracking_number: s.tracking_number.clone(),
                shipped_at: s.shipped_at,
                delivered_at: s.delivered_at,
                address: mask.address(&s.address),
                proof_of_delivery: mask.opt(&s.proof_of_delivery),
                signed_by: mask.opt(&s.signed_by),
            }),
            customer: OrderCustomer {
                account_id: customer.account_id.clone(),
                name: match CustomerName::parse(&customer.name) {
                    Ok(name) if mask.0 => name.masked(),
                    _ => mask.text(&customer.name),
                },
                email: match CustomerEmail::parse(&customer.email) {
                    Ok(email) if mask.0 => email.masked(),
                    _ => mask.text(&customer.email),
                },
                locale: customer.locale.into(),
                account_created_at: customer.account_created_at,
                previous_orders: customer.previous_orders,
                previous_disputes: customer.previous_disputes,
            },
            payment_checks: OrderPaymentChecks {
                avs_result: f.payment_checks.avs_result.clone(),
                cvv_result: f.payment_checks.cvv_result.clone(),
                three_d_secure: f.payment_checks.three_d_secure.clone(),
                ip_address: mask.opt(&f.payment_checks.ip_address),
                device_id: mask.opt(&f.payment_checks.device_id),
            },
            prior_transactions: f
                .prior_transactions
                .iter()
                .map(|p| OrderPriorTransaction {
                    payment_reference: p.payment_reference.clone(),
                    paid_at: p.paid_at,
                    amount: p.amount.into(),
                    ip_address: mask.opt(&p.ip_address),
                    device_id: mask.opt(&p.device_id),
                    shipping_address: p.shipping_address.as_ref().map(|a| mask.address(a)),
                    account_id: p.account_id.clone(),
                    disputed: p.disputed,
                })
                .collect(),
            messages: f
                .messages
                .iter()
                .map(|m| OrderMessage {
                    sent_at: m.sent_at,
                    author: m.author.into(),
                    locale: m.locale.into(),
                    body: (!mask.0).then(|| m.body.clone()),
                })
                .collect(),
            policies: OrderPolicies {
                refund_policy: f.policies.refund_policy.clone(),
                warranty_policy: f.policies.warranty_policy.clone(),
                terms_accepted_at: f.policies.terms_accepted_at,
            },
            cancellation: f.cancellation.as_ref().map(|c| OrderCancellation {
                cancelled_at: c.cancelled_at,
                reason: c.reason.clone(),
            }),
            refunds: f
                .refunds
                .iter()
                .map(|r| OrderRefund {
                    refunded_at: r.refunded_at,
                    amount: r.amount.into(),
                    reference: r.reference.clone(),
                })
                .collect(),
            order_reference: f.order_reference,
        }
    }
}

/// The order to record.
#[derive(InputObject)]
pub struct RecordOrderInput {
    /// The order's facts as JSON, exactly as docs/marketplace-api.md describes them (the order service's
    /// answer, and each line of `verdict import orders`). Recording an order number again replaces its facts.
    pub facts: Json<serde_json::Value>,
}

/// What recording an order did.
#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_facts::Recorded")]
pub enum RecordOutcome {
    /// A new order.
    Created,
    /// The order was known: its facts and references were replaced.
    Replaced,
    /// The order was known with exactly these facts: nothing was written.
    Unchanged,
}

/// The order recorded.
#[derive(SimpleObject)]
pub struct RecordOrderPayload {
    /// What recording did; null when refused.
    pub outcome: Option<RecordOutcome>,
    /// The order as now recorded (masked for the caller's role); null when refused.
    pub order: Option<Order>,
    /// Why the order was refused; empty when it was recorded.
    pub user_errors: Vec<super::payloads::UserError>,
}

impl super::payloads::Refusable for RecordOrderPayload {
    fn refused(user_errors: Vec<super::payloads::UserError>) -> Self {
        Self {
            outcome: None,
            order: None,
            user_errors,
        }
    }
}

/// The dispute and the order to link it to.
#[derive(InputObject)]
pub struct LinkOrderInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: i64,
    /// The marketplace's order number (or one of its payment references).
    pub order_reference: String,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

fn engine<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Engine> {
    ctx.data::<Engine>()
}

/// `recordOrder`: leads and admins.
pub(crate) async fn record_order(
    ctx: &Context<'_>,
    input: RecordOrderInput,
) -> async_graphql::Result<RecordOrderPayload> {
    let caller = principal(ctx, Role::Lead)?;
    let engine = engine(ctx)?;
    let facts: facts::OrderFacts = serde_json::from_value(input.facts.0).map_err(|e| {
        // serde's message names the field; values it may quote come from the caller itself.
        ApiError::InvalidInput(format!("facts do not match the OrderFacts shape: {e}"))
    })?;
    let outcome = engine
        .facts()
        .record_order(facts.clone(), engine.clock().now())
        .await
        .map_err(ApiError::from)?;
    let recorded = engine
        .facts()
        .find_order(&OrderLookup::by_order(
            verdict_domain::Processor::Manual,
            facts.order_reference.trim(),
        ))
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::Internal("a recorded order cannot be read back".into()))?;
    tracing::info!(key = %caller.name, outcome = outcome.as_str(), "order recorded");
    Ok(RecordOrderPayload {
        outcome: Some(outcome.into()),
        order: Some(Order::new(recorded, &Masking::of(ctx))),
        user_errors: Vec::new(),
    })
}

/// `order(reference)`: any role, masked for viewers.
pub(crate) async fn order(ctx: &Context<'_>, reference: String) -> async_graphql::Result<Option<Order>> {
    principal(ctx, Role::Viewer)?;
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(ApiError::InvalidInput("reference must not be empty".into()).into());
    }
    let lookup = OrderLookup::by_order(verdict_domain::Processor::Manual, reference);
    let found = super::read(ctx, engine(ctx)?.facts().find_order(&lookup)).await?;
    Ok(found.map(|f| Order::new(f, &Masking::of(ctx))))
}

/// `Dispute.order`: the order by the dispute's order reference, else its payment reference.
pub(crate) async fn of_dispute(ctx: &Context<'_>, dispute: &Dispute) -> async_graphql::Result<Option<Order>> {
    let lookup = OrderLookup::of_dispute(&dispute.0);
    let found = super::read(ctx, engine(ctx)?.facts().find_order(&lookup)).await?;
    Ok(found.map(|f| Order::new(f, &Masking::of(ctx))))
}

/// `linkOrder`'s command: an analyst names the order when the automatic link found none (or the wrong one).
pub(crate) async fn link_command(
    ctx: &Context<'_>,
    input: LinkOrderInput,
) -> async_graphql::Result<(verdict_domain::DisputeId, Command)> {
    let caller = principal(ctx, Role::Analyst)?;
    let id = parse_id(&input.id)?;
    let engine = engine(ctx)?;
    let dispute = engine
        .store()
        .load(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    if dispute.version != input.expected_version {
        return Err(ApiError::VersionConflict(format!(
            "stale version: expected {}, dispute is at {}",
            input.expected_version, dispute.version
        ))
        .into());
    }
    let reference = input.order_reference.trim();
    if reference.is_empty() {
        return Err(ApiError::InvalidInput("orderReference must not be empty".into()).into());
    }
    let order = engine
        .facts()
        .find_order(&OrderLookup::by_order(dispute.processor, reference))
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("no order {reference:?} in the marketplace facts")))?;
    let seller_task =
        verdict_domain::SellerTask::for_order(&dispute, &order, &engine.seller_tasks(), engine.clock().now());
    let action = Action::LinkOrder {
        customer: order.dispute_customer(),
        profile: Some(order.profile()),
        order_reference: order.order_reference,
        source: engine.facts().name().to_owned(),
        seller_id: order.seller.seller_id,
        seller_task,
    };
    let mut command = Command::new(caller.actor(), action).expecting(input.expected_version);
    if let Some(reason) = input.reason {
        command = command.because(reason);
    }
    Ok((id, command))
}
