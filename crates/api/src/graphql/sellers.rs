//! Sellers' liability in GraphQL: what was recovered from sellers for the disputes they own, and which
//! sellers dispute too often for their order count (leads and up).

use async_graphql::{Context, ID, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use verdict_domain::{Currency, Money as DomainMoney, SellerRate};
use verdict_engine::Engine;
use verdict_store::RecoveryRecord;

use super::types::Money;
use crate::auth::Role;
use crate::error::ApiError;
use crate::graphql::query::principal;

const MAX_RECOVERIES: i32 = 500;

/// The amount of a lost or accepted seller-owned dispute, debited from the seller's payout.
#[derive(SimpleObject)]
pub struct SellerRecovery {
    /// The recovery's id.
    pub id: ID,
    /// The dispute it recovers.
    pub dispute_id: ID,
    /// The seller debited.
    pub seller_id: String,
    /// How much.
    pub amount: Money,
    /// Why the seller owns the dispute.
    pub liability: super::enums::SellerLiability,
    /// How the dispute ended: `LOST` or `ACCEPTED`.
    pub outcome: super::types::DisputeStatus,
    /// The payout service's reference of the debit; null while the recovery waits for it.
    pub payout_reference: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When the payout service took the debit.
    pub sent_at: Option<DateTime<Utc>>,
}

impl SellerRecovery {
    fn from_record(record: RecoveryRecord) -> Result<Self, ApiError> {
        let amount = Currency::parse(&record.currency)
            .and_then(|currency| DomainMoney::new(record.amount_minor_units, currency))
            .map_err(|err| ApiError::Internal(format!("recovery {}: {err}", record.id)))?;
        Ok(Self {
            id: ID(record.id.to_string()),
            dispute_id: ID(record.dispute_id.to_string()),
            seller_id: record.seller_id,
            amount: amount.into(),
            liability: super::enums::label::<verdict_domain::SellerLiability>(&record.liability, "liability")?.into(),
            outcome: super::enums::label::<verdict_domain::Status>(&record.outcome, "recovery outcome")?.into(),
            payout_reference: record.payout_reference,
            created_at: record.created_at,
            sent_at: record.sent_at,
        })
    }
}

/// The seller's part in a dispute the seller owns.
#[derive(SimpleObject)]
pub struct SellerTask {
    /// Why the seller owns the dispute.
    pub liability: super::enums::SellerLiability,
    /// When the seller's answer is due: before the processor's deadline, by the configured margin.
    pub due_at: DateTime<Utc>,
    /// The evidence kinds the seller is asked for.
    pub needed: Vec<super::evidence::EvidenceKind>,
}

/// The seller task of `dispute`, read from its latest order link.
pub async fn task_of(
    ctx: &Context<'_>,
    dispute: &verdict_domain::Dispute,
) -> async_graphql::Result<Option<SellerTask>> {
    principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let task = super::read(ctx, engine.seller_task(dispute.id)).await?;
    Ok(task.map(|task| SellerTask {
        liability: task.liability.into(),
        due_at: task.due_at,
        needed: task.liability.needed().iter().map(|k| (*k).into()).collect(),
    }))
}

/// A seller's disputes against their orders over the window asked for.
#[derive(SimpleObject)]
pub struct SellerDisputeRate {
    /// The seller.
    pub seller_id: String,
    /// Disputes opened in the window.
    pub disputes: u64,
    /// Orders placed in the window (Verdict's own order tables).
    pub orders: u64,
    /// Disputes per 10,000 orders; null for a seller with disputes and no recorded order.
    pub basis_points: Option<u64>,
    /// Above the configured threshold (`[sellers] dispute_rate_threshold_bps`).
    pub flagged: bool,
}

/// Recoveries, newest first (leads and up).
pub async fn recoveries(ctx: &Context<'_>, first: i32) -> async_graphql::Result<Vec<SellerRecovery>> {
    principal(ctx, Role::Lead)?;
    if !(1..=MAX_RECOVERIES).contains(&first) {
        return Err(ApiError::InvalidInput(format!("first must be between 1 and {MAX_RECOVERIES}")).into());
    }
    let rows = super::read(ctx, ctx.data::<Engine>()?.store().recoveries(None, first as u64)).await?;
    Ok(rows
        .into_iter()
        .map(SellerRecovery::from_record)
        .collect::<Result<_, _>>()?)
}

/// Sellers' dispute rates over the last `days` days, highest first (leads and up).
pub async fn rates(ctx: &Context<'_>, days: i32) -> async_graphql::Result<Vec<SellerDisputeRate>> {
    principal(ctx, Role::Lead)?;
    if !(1..=366).contains(&days) {
        return Err(ApiError::InvalidInput("days must be between 1 and 366".into()).into());
    }
    let engine = ctx.data::<Engine>()?;
    let threshold = engine.seller_rate_threshold_bps();
    let since = engine.clock().now() - Duration::days(i64::from(days));
    let counts = super::read(ctx, engine.store().seller_counts(since)).await?;
    let mut rates: Vec<SellerDisputeRate> = counts
        .into_iter()
        .map(|c| {
            let rate = SellerRate {
                seller_id: c.seller_id,
                disputes: c.disputes,
                orders: c.orders,
            };
            SellerDisputeRate {
                basis_points: (rate.orders > 0).then(|| rate.basis_points()),
                flagged: rate.flagged(threshold),
                seller_id: rate.seller_id,
                disputes: rate.disputes,
                orders: rate.orders,
            }
        })
        .collect();
    rates.sort_by(|a, b| {
        let key = |r: &SellerDisputeRate| r.basis_points.unwrap_or(u64::MAX);
        key(b).cmp(&key(a)).then_with(|| a.seller_id.cmp(&b.seller_id))
    });
    Ok(rates)
}

/// Which dispute a seller's upload link is for.
#[derive(async_graphql::InputObject)]
pub struct CreateSellerUploadLinkInput {
    /// The dispute; it must have a seller (linked to its order).
    pub id: ID,
}

super::payloads::result_payload!(
    /// The seller's upload link.
    CreateSellerUploadLinkPayload {
        /// The link; null when refused.
        link: SellerUploadLink
    }
);

/// A signed link a seller can upload one evidence file at a time through, until it expires.
#[derive(SimpleObject)]
pub struct SellerUploadLink {
    /// The path to `POST` the file's bytes to (with `X-File-Name`), on this server: `/seller-uploads/TOKEN`.
    pub upload_path: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// Makes a seller's upload link for a dispute (analysts and up).
pub async fn create_upload_link(
    ctx: &Context<'_>,
    input: CreateSellerUploadLinkInput,
) -> async_graphql::Result<CreateSellerUploadLinkPayload> {
    principal(ctx, Role::Analyst)?;
    let links = ctx.data_opt::<crate::seller_links::SellerLinks>().ok_or_else(|| {
        ApiError::Unavailable("seller upload links are not configured ([sellers] upload_secret)".into())
    })?;
    let id = super::query::parse_id(&input.id)?;
    let engine = ctx.data::<Engine>()?;
    let dispute = engine
        .store()
        .load(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    if dispute.seller_id.is_none() {
        return Err(ApiError::InvalidInput("the dispute has no seller: link it to its order first".into()).into());
    }
    let (token, expires_at) = links.sign(id, engine.clock().now())?;
    Ok(CreateSellerUploadLinkPayload::made(SellerUploadLink {
        upload_path: format!("/seller-uploads/{token}"),
        expires_at,
    }))
}
