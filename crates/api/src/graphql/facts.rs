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
    pub order_reference: String,
    pub payment_references: Vec<String>,
    pub placed_at: DateTime<Utc>,
    pub total: Money,
    pub seller: OrderSeller,
    pub lines: Vec<OrderLine>,
    pub shipment: Option<OrderShipment>,
    pub customer: OrderCustomer,
    pub payment_checks: OrderPaymentChecks,
    pub prior_transactions: Vec<OrderPriorTransaction>,
    pub messages: Vec<OrderMessage>,
    pub policies: OrderPolicies,
    pub cancellation: Option<OrderCancellation>,
    pub refunds: Vec<OrderRefund>,
}

#[derive(SimpleObject)]
pub struct OrderSeller {
    pub seller_id: String,
    pub name: String,
    pub email: Option<String>,
    pub ships_itself: bool,
}

#[derive(SimpleObject)]
pub struct OrderLine {
    pub device_model: String,
    pub grade: String,
    pub imei_or_serial: Option<String>,
    pub price: Money,
    pub description: Option<String>,
    pub grade_report: Option<String>,
}

/// A postal address; for viewers only the city and country are shown.
#[derive(SimpleObject)]
pub struct OrderAddress {
    pub lines: Vec<String>,
    pub postal_code: String,
    pub city: String,
    pub country: String,
}

#[derive(SimpleObject)]
pub struct OrderShipment {
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub address: OrderAddress,
    pub proof_of_delivery: Option<String>,
    pub signed_by: Option<String>,
}

#[derive(SimpleObject)]
pub struct OrderCustomer {
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub locale: Locale,
    pub account_created_at: DateTime<Utc>,
    pub previous_orders: u32,
    pub previous_disputes: u32,
}

#[derive(SimpleObject)]
pub struct OrderPaymentChecks {
    pub avs_result: Option<String>,
    pub cvv_result: Option<String>,
    pub three_d_secure: Option<String>,
    pub ip_address: Option<String>,
    pub device_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct OrderPriorTransaction {
    pub payment_reference: String,
    pub paid_at: DateTime<Utc>,
    pub amount: Money,
    pub ip_address: Option<String>,
    pub device_id: Option<String>,
    pub shipping_address: Option<OrderAddress>,
    pub account_id: Option<String>,
    pub disputed: bool,
}

/// A message about the order, in the language it was written in; its body is hidden from viewers.
#[derive(SimpleObject)]
pub struct OrderMessage {
    pub sent_at: DateTime<Utc>,
    /// `customer`, `marketplace` or `seller`.
    pub author: String,
    pub locale: Locale,
    pub body: Option<String>,
}

#[derive(SimpleObject)]
pub struct OrderPolicies {
    pub refund_policy: Option<String>,
    pub warranty_policy: Option<String>,
    pub terms_accepted_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct OrderCancellation {
    pub cancelled_at: DateTime<Utc>,
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct OrderRefund {
    pub refunded_at: DateTime<Utc>,
    pub amount: Money,
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
                    author: serde_json::to_value(m.author)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
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

#[derive(InputObject)]
pub struct RecordOrderInput {
    /// The order's facts as JSON, exactly as docs/marketplace-api.md describes them (the order service's
    /// answer, and each line of `verdict import orders`). Recording an order number again replaces its facts.
    pub facts: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct RecordOrderPayload {
    /// `created`, `replaced` or `unchanged` (the same facts were already recorded: nothing was written).
    pub outcome: String,
    pub order: Order,
}

#[derive(InputObject)]
pub struct LinkOrderInput {
    pub id: ID,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: i64,
    /// The marketplace's order number (or one of its payment references).
    pub order_reference: String,
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
        outcome: outcome.as_str().to_owned(),
        order: Order::new(recorded, &Masking::of(ctx)),
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

/// `linkOrder`: an analyst names the order when the automatic link found none (or the wrong one).
pub(crate) async fn link_order(ctx: &Context<'_>, input: LinkOrderInput) -> async_graphql::Result<Dispute> {
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
    Ok(Dispute(engine.handle(id, command).await.map_err(ApiError::from)?))
}
