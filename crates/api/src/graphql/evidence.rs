//! Evidence in GraphQL: a dispute's items, how complete they are for its claim, whether Compelling Evidence
//! applies, and the mutations that add, remove and draw items.
//!
//! Files are not uploaded through GraphQL: `POST /disputes/{id}/evidence-files` takes the bytes (authenticated
//! before the body is read, bounded by the processor's per-file limit) and returns the `fileId` that
//! `addEvidence` references. Item texts carry personal data (addresses, messages), so viewers get them as null.

use async_graphql::{Context, Enum, ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use verdict_domain::{self as domain, DisputeClaim as DomainClaim, EvidenceSource as DomainSource};
use verdict_engine::Engine;
use verdict_engine::evidence::NewEvidence;
use verdict_facts::OrderLookup;

use super::query::{parse_id, principal};
use super::types::{Dispute, Money};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// What a piece of evidence shows.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::EvidenceKind")]
pub enum EvidenceKind {
    /// The carrier's proof that the parcel was delivered.
    ProofOfDelivery,
    /// The parcel's tracking history.
    Tracking,
    /// Messages with the customer.
    CustomerCommunication,
    /// The listing as the customer saw it, and the technician's grade report.
    ProductDescription,
    /// The device's IMEI or serial number as shipped.
    ImeiSerialRecord,
    /// Photos of the device or the parcel.
    Photos,
    /// The refund policy the customer accepted.
    RefundPolicy,
    /// The terms the customer accepted, and when.
    TermsAccepted,
    /// Earlier undisputed payments by the same customer.
    PriorUndisputedTransactions,
    /// The cancellation and its policy.
    Cancellation,
    /// Anything else.
    Uncategorised,
}

/// Where an evidence item came from.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::EvidenceSource")]
pub enum EvidenceSource {
    /// Typed or uploaded by a person.
    Analyst,
    /// Drawn from the marketplace facts (`drawEvidenceFromFacts`).
    MarketplaceFacts,
}

/// The type of an evidence file, sniffed from its bytes.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::EvidenceContentType")]
pub enum EvidenceContentType {
    /// PDF.
    Pdf,
    /// PNG image.
    Png,
    /// JPEG image.
    Jpeg,
}

/// What the cardholder claims, from the reason code (and the processor's reason text for codes that cover
/// several claims, such as Mastercard 4853).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::DisputeClaim")]
pub enum DisputeClaim {
    /// The goods never arrived.
    NotReceived,
    /// The goods differ from their description.
    NotAsDescribed,
    /// The cardholder did not make the payment.
    Fraud,
    /// A promised refund never came.
    CreditNotProcessed,
    /// The order or subscription was cancelled.
    Cancelled,
    /// Charged twice, late, or the wrong amount.
    DuplicateOrProcessingError,
    /// The payment was not authorized properly.
    Authorization,
    /// Nothing more specific.
    General,
}

/// A network's programme for prior undisputed payments.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::CompellingEvidenceProgram")]
pub enum CompellingEvidenceProgram {
    /// Visa Compelling Evidence 3.0, for Visa 10.4.
    #[graphql(name = "VISA_CE3")]
    VisaCe3,
    /// Mastercard First-Party Trust, for Mastercard 4837.
    MastercardFirstPartyTrust,
}

/// What a prior payment shares with the disputed one.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::SharedIdentifier")]
pub enum SharedIdentifier {
    /// The IP address.
    IpAddress,
    /// The device fingerprint.
    DeviceId,
    /// The customer account.
    AccountId,
    /// The shipping address.
    ShippingAddress,
}

/// A stored file of an evidence item.
#[derive(SimpleObject)]
pub struct EvidenceFile {
    /// The upload's id (`POST /disputes/{id}/evidence-files` returned it).
    pub file_id: Option<ID>,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Sniffed from the bytes.
    pub content_type: EvidenceContentType,
    /// The uploader's name for it (null for viewers).
    pub file_name: Option<String>,
    /// Where an analyst downloads it: `/disputes/{id}/evidence-files/{fileId}`.
    pub download_path: Option<String>,
}

/// One piece of a dispute's defense.
#[derive(SimpleObject)]
pub struct EvidenceItem {
    /// The item's id.
    pub id: ID,
    /// What it shows.
    pub kind: EvidenceKind,
    /// Null for viewers: evidence carries personal data.
    pub text: Option<String>,
    /// Its file, if it has one.
    pub file: Option<EvidenceFile>,
    /// Where it came from.
    pub source: EvidenceSource,
    /// Who added it (`analyst:jane`).
    pub added_by: String,
    /// When.
    pub added_at: DateTime<Utc>,
    /// Set when the item was withdrawn from the defense (listed only with `includeRemoved`).
    pub removed_at: Option<DateTime<Utc>>,
    /// Who withdrew it.
    pub removed_by: Option<String>,
}

/// A kind of evidence the claim calls for that the dispute lacks.
#[derive(SimpleObject)]
pub struct MissingEvidence {
    /// The kind missing.
    pub kind: EvidenceKind,
    /// Required kinds block a defense; recommended ones strengthen it.
    pub required: bool,
    /// What the issuer expects to read in it.
    pub expectation: String,
}

/// How far the dispute's evidence meets what its claim calls for.
#[derive(SimpleObject)]
pub struct EvidenceCompleteness {
    /// The claim the evidence answers.
    pub claim: DisputeClaim,
    /// 0 to 100; exactly 100 when no required kind is missing.
    pub score: u8,
    /// The kinds the claim requires.
    pub required: Vec<EvidenceKind>,
    /// What is missing, required kinds first.
    pub missing: Vec<MissingEvidence>,
}

/// A prior payment that counts for Compelling Evidence.
#[derive(SimpleObject)]
pub struct QualifyingTransaction {
    /// The payment at the processor.
    pub payment_reference: String,
    /// When it was paid.
    pub paid_at: DateTime<Utc>,
    /// How much.
    pub amount: Money,
    /// Days before the disputed payment.
    pub days_before: i64,
    /// What it shares with the disputed payment.
    pub shared: Vec<SharedIdentifier>,
}

/// Whether prior undisputed payments answer a card-absent fraud claim (Visa CE 3.0 for 10.4, Mastercard
/// First-Party Trust for 4837), computed from the order facts.
#[derive(SimpleObject)]
pub struct CompellingEvidence {
    /// Whether the programme's conditions are met.
    pub eligible: bool,
    /// Null when the reason code falls under no programme.
    pub program: Option<CompellingEvidenceProgram>,
    /// Why, or why not.
    pub reason: String,
    /// The payments that qualify.
    pub qualifying_transactions: Vec<QualifyingTransaction>,
}

/// An evidence item to add.
#[derive(InputObject)]
pub struct AddEvidenceInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: i64,
    /// What it shows.
    pub kind: EvidenceKind,
    /// At most 20,000 characters. An item needs a text, a file, or both.
    pub text: Option<String>,
    /// An upload of this dispute (`POST /disputes/{id}/evidence-files`).
    pub file_id: Option<ID>,
}

/// An evidence item to withdraw.
#[derive(InputObject)]
pub struct RemoveEvidenceInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// The item's id.
    pub item_id: ID,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

/// The dispute to draw evidence for.
#[derive(InputObject)]
pub struct DrawEvidenceFromFactsInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
}

/// Declares the payloads of the evidence mutations: the dispute after the change, the items it added.
macro_rules! evidence_payload {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(SimpleObject)]
        pub struct $name {
            /// The dispute after the change; null when refused.
            pub dispute: Option<Dispute>,
            /// The items the change added (none for a removal).
            pub items: Vec<EvidenceItem>,
            /// Why the change was refused; empty when it was made.
            pub user_errors: Vec<super::payloads::UserError>,
        }

        impl super::payloads::Refusable for $name {
            fn refused(user_errors: Vec<super::payloads::UserError>) -> Self {
                Self { dispute: None, items: Vec::new(), user_errors }
            }
        }

        impl $name {
            fn made(dispute: Dispute, items: Vec<EvidenceItem>) -> Self {
                Self { dispute: Some(dispute), items, user_errors: Vec::new() }
            }
        }
    )+};
}

evidence_payload!(
    /// The dispute with the item added.
    AddEvidencePayload,
    /// The dispute with the item withdrawn.
    RemoveEvidencePayload,
    /// The dispute with the items drawn from the order facts.
    DrawEvidenceFromFactsPayload,
);

fn to_item(
    principal: Option<&Principal>,
    dispute_id: domain::DisputeId,
    record: verdict_store::EvidenceItemRecord,
) -> EvidenceItem {
    let unmasked = principal.is_some_and(Principal::sees_personal_data);
    let item = record.item;
    EvidenceItem {
        id: ID(item.id.to_string()),
        kind: item.kind.into(),
        text: item.text.filter(|_| unmasked),
        file: item.file.map(|f| EvidenceFile {
            file_id: record.file_id.map(|id| ID(id.to_string())),
            sha256: f.sha256,
            size_bytes: f.size_bytes,
            content_type: f.content_type.into(),
            file_name: Some(f.file_name).filter(|_| unmasked),
            download_path: record
                .file_id
                .map(|file_id| format!("/disputes/{dispute_id}/evidence-files/{file_id}")),
        }),
        source: item.source.into(),
        added_by: item.added_by,
        added_at: item.added_at,
        removed_at: record.removed_at,
        removed_by: record.removed_by,
    }
}

fn parse_uuid(what: &str, id: &ID) -> Result<Uuid, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not {what}", id.as_str())))
}

/// `Dispute.evidence`.
pub(crate) async fn items(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
    include_removed: bool,
) -> async_graphql::Result<Vec<EvidenceItem>> {
    principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let records = super::read(ctx, engine.store().evidence_items(dispute.id, include_removed)).await?;
    let caller = ctx.data_opt::<Principal>();
    Ok(records.into_iter().map(|r| to_item(caller, dispute.id, r)).collect())
}

/// `Dispute.evidenceCompleteness`.
pub(crate) async fn completeness(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
) -> async_graphql::Result<EvidenceCompleteness> {
    principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let records = super::read(ctx, engine.store().evidence_items(dispute.id, false)).await?;
    let items: Vec<domain::EvidenceItem> = records.into_iter().map(|r| r.item).collect();
    let claim = DomainClaim::of_dispute(dispute);
    let result = domain::completeness(claim, &items);
    Ok(EvidenceCompleteness {
        claim: claim.into(),
        score: result.score,
        required: result.required.into_iter().map(Into::into).collect(),
        missing: result
            .missing
            .into_iter()
            .map(|m| MissingEvidence {
                kind: m.kind.into(),
                required: m.required,
                expectation: m.text.to_owned(),
            })
            .collect(),
    })
}

/// The order behind a dispute, from the configured marketplace facts.
async fn order_of(ctx: &Context<'_>, dispute: &domain::Dispute) -> Result<Option<domain::facts::OrderFacts>, ApiError> {
    let facts = ctx.data::<Engine>().map_err(|e| ApiError::Internal(e.message))?.facts();
    let lookup = OrderLookup::of_dispute(dispute);
    Ok(facts.find_order(&lookup).await?)
}

/// `Dispute.compellingEvidence`.
pub(crate) async fn compelling(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
) -> async_graphql::Result<CompellingEvidence> {
    principal(ctx, Role::Viewer)?;
    let program = domain::CompellingEvidenceProgram::for_reason(&dispute.reason_code);
    // The order is read only when a programme applies: the answer for other codes needs no facts.
    let order = match program {
        Some(_) => Some(order_of(ctx, dispute).await),
        None => None,
    };
    let result = match (program, order) {
        (Some(_), Some(Ok(Some(order)))) => domain::compelling_evidence(
            &dispute.reason_code,
            &domain::DisputedPayment::of_order(&order),
            &order.prior_transactions,
        ),
        (Some(program), Some(Ok(None))) => domain::CompellingEvidence {
            program: Some(program),
            eligible: false,
            reason: "no order was found for this dispute, so its prior payments are unknown".into(),
            qualifying: Vec::new(),
        },
        (Some(program), Some(Err(err))) => domain::CompellingEvidence {
            program: Some(program),
            eligible: false,
            reason: format!("the order's prior payments could not be read: {}", err.message()),
            qualifying: Vec::new(),
        },
        (None, _) | (Some(_), None) => domain::compelling_evidence(
            &dispute.reason_code,
            &domain::DisputedPayment {
                paid_at: dispute.opened_at,
                checks: &domain::facts::PaymentChecks::default(),
                account_id: None,
                shipping_address: None,
            },
            &[],
        ),
    };
    Ok(CompellingEvidence {
        eligible: result.eligible,
        program: result.program.map(Into::into),
        reason: result.reason,
        qualifying_transactions: result
            .qualifying
            .into_iter()
            .map(|q| QualifyingTransaction {
                payment_reference: q.payment_reference,
                paid_at: q.paid_at,
                amount: q.amount.into(),
                days_before: q.days_before,
                shared: q.shared.into_iter().map(Into::into).collect(),
            })
            .collect(),
    })
}

async fn stored_items(
    ctx: &Context<'_>,
    dispute_id: domain::DisputeId,
    added: &[domain::EvidenceItem],
) -> async_graphql::Result<Vec<EvidenceItem>> {
    let engine = ctx.data::<Engine>()?;
    let records = engine
        .store()
        .evidence_items(dispute_id, false)
        .await
        .map_err(ApiError::from)?;
    let caller = ctx.data_opt::<Principal>();
    Ok(records
        .into_iter()
        .filter(|r| added.iter().any(|a| a.id == r.item.id))
        .map(|r| to_item(caller, dispute_id, r))
        .collect())
}

/// `addEvidence`.
pub(crate) async fn add(ctx: &Context<'_>, input: AddEvidenceInput) -> async_graphql::Result<AddEvidencePayload> {
    let caller = principal(ctx, Role::Analyst)?;
    let id = parse_id(&input.id)?;
    let file_id = input.file_id.as_ref().map(|f| parse_uuid("a file id", f)).transpose()?;
    let engine = ctx.data::<Engine>()?;
    let new = vec![NewEvidence {
        kind: input.kind.into(),
        text: input.text,
        file_id,
    }];
    let (dispute, added) = engine
        .add_evidence(id, caller.actor(), input.expected_version, DomainSource::Analyst, new)
        .await
        .map_err(ApiError::from)?;
    Ok(AddEvidencePayload::made(
        Dispute(dispute),
        stored_items(ctx, id, &added).await?,
    ))
}

/// `removeEvidence`.
pub(crate) async fn remove(
    ctx: &Context<'_>,
    input: RemoveEvidenceInput,
) -> async_graphql::Result<RemoveEvidencePayload> {
    let caller = principal(ctx, Role::Analyst)?;
    let id = parse_id(&input.id)?;
    let item_id = parse_uuid("an evidence item id", &input.item_id)?;
    let engine = ctx.data::<Engine>()?;
    let dispute = engine
        .remove_evidence(id, caller.actor(), input.expected_version, item_id, input.reason)
        .await
        .map_err(ApiError::from)?;
    Ok(RemoveEvidencePayload::made(Dispute(dispute), Vec::new()))
}

/// `drawEvidenceFromFacts`: one item per kind the order facts speak of, skipping kinds already drawn and still
/// present, in one event.
pub(crate) async fn draw(
    ctx: &Context<'_>,
    input: DrawEvidenceFromFactsInput,
) -> async_graphql::Result<DrawEvidenceFromFactsPayload> {
    let caller = principal(ctx, Role::Analyst)?;
    let id = parse_id(&input.id)?;
    let engine = ctx.data::<Engine>()?;
    let dispute = engine
        .store()
        .load(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    let order = order_of(ctx, &dispute)
        .await?
        .ok_or_else(|| ApiError::NotFound("no order was found for this dispute's order or payment reference".into()))?;
    let present = engine.store().evidence_items(id, false).await.map_err(ApiError::from)?;
    let new: Vec<NewEvidence> = domain::draw_from_facts(&order)
        .into_iter()
        .filter(|d| {
            !present
                .iter()
                .any(|r| r.item.source == DomainSource::MarketplaceFacts && r.item.kind == d.kind)
        })
        .map(|d| NewEvidence {
            kind: d.kind,
            text: Some(d.text),
            file_id: None,
        })
        .collect();
    if new.is_empty() {
        return Err(ApiError::InvalidInput("everything the order facts give is already in the evidence".into()).into());
    }
    let (dispute, added) = engine
        .add_evidence(
            id,
            caller.actor(),
            input.expected_version,
            DomainSource::MarketplaceFacts,
            new,
        )
        .await
        .map_err(ApiError::from)?;
    Ok(DrawEvidenceFromFactsPayload::made(
        Dispute(dispute),
        stored_items(ctx, id, &added).await?,
    ))
}
