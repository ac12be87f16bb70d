//! Documents in GraphQL: generate a dispute's defense document (a new version, recorded as an event) and list
//! what was generated. The content itself is served over plain HTTP at `/documents/{id}.pdf` and `.html`
//! (documents.rs of the crate), to roles that see personal data.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain as domain;
use verdict_engine::Engine;
use verdict_store::DocumentRecord;

use super::loaders::DocumentsOf;
use super::query::{parse_id, principal};
use super::types::{Dispute, lists};
use crate::auth::Role;
use crate::error::ApiError;

/// Which document.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::DocumentKind")]
pub enum DocumentKind {
    /// The cover letter, evidence index and timeline sent to the processor.
    Defense,
    /// The dispute's facts, evidence, decisions and timeline, for people.
    CaseFile,
}

/// A generated document: which version, its hash, and where to fetch it.
#[derive(SimpleObject)]
pub struct Document {
    /// The document's id.
    pub id: ID,
    /// Which document.
    pub kind: DocumentKind,
    /// 1 for the dispute's first document of this kind, then +1 with every generation.
    pub version: i32,
    /// Lower-case hex SHA-256 of the PDF.
    pub sha256: String,
    /// Size of the PDF in bytes.
    pub size_bytes: i64,
    /// The actor who generated it (`analyst:jane`).
    pub created_by: String,
    /// When it was generated.
    pub created_at: DateTime<Utc>,
    /// `/documents/{id}.pdf`: served with the caller's bearer token to analysts and up.
    pub pdf_url: String,
    /// `/documents/{id}.html`.
    pub html_url: String,
}

impl From<DocumentRecord> for Document {
    fn from(r: DocumentRecord) -> Self {
        Document {
            id: ID(r.id.to_string()),
            kind: r.kind.into(),
            version: r.version,
            sha256: r.sha256,
            size_bytes: r.size_bytes,
            created_by: r.created_by,
            created_at: r.created_at,
            pdf_url: format!("/documents/{}.pdf", r.id),
            html_url: format!("/documents/{}.html", r.id),
        }
    }
}

/// A dispute's documents, newest first, read for a whole page of disputes at once.
pub(crate) async fn of_dispute(ctx: &Context<'_>, dispute: &domain::Dispute) -> async_graphql::Result<Vec<Document>> {
    let records = lists(ctx)?.load_one(DocumentsOf(dispute.id)).await?.unwrap_or_default();
    Ok(records.into_iter().map(Into::into).collect())
}

/// The dispute whose defense document to generate.
#[derive(InputObject)]
pub struct GenerateDefenseDocumentInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT and nothing is generated.
    pub expected_version: i64,
}

/// The document generated.
#[derive(SimpleObject)]
pub struct GenerateDefenseDocumentPayload {
    /// The dispute after the `document_generated` event; null when refused.
    pub dispute: Option<Dispute>,
    /// The document stored; null when refused.
    pub document: Option<Document>,
    /// Why the document was not generated; empty when it was.
    pub user_errors: Vec<super::payloads::UserError>,
}

impl super::payloads::Refusable for GenerateDefenseDocumentPayload {
    fn refused(user_errors: Vec<super::payloads::UserError>) -> Self {
        Self {
            dispute: None,
            document: None,
            user_errors,
        }
    }
}

#[derive(Default)]
pub struct DocumentsMutation;

#[Object]
impl DocumentsMutation {
    /// Renders the dispute's defense document as it stands (cover letter whose argument follows the claim,
    /// evidence index, the customer's messages in their language, timeline), stores it as the next version and
    /// records `document_generated` in the same transaction. Analysts and up. A dispute already submitted or
    /// closed is INVALID_INPUT.
    async fn generate_defense_document(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute and the version the analyst saw.")] input: GenerateDefenseDocumentInput,
    ) -> async_graphql::Result<GenerateDefenseDocumentPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let engine = ctx.data::<Engine>()?;
            let generated = engine
                .generate_document(
                    id,
                    domain::DocumentKind::Defense,
                    caller.actor(),
                    Some(input.expected_version),
                )
                .await
                .map_err(ApiError::from)?;
            Ok(GenerateDefenseDocumentPayload {
                dispute: Some(Dispute(generated.dispute)),
                document: Some(generated.record.into()),
                user_errors: Vec::new(),
            })
        };
        super::payloads::payload(result.await, "input")
    }
}
