//! Generated documents: stored with the event that records them, read back by id or by dispute.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;
use verdict_domain::{Decision, Dispute, DisputeId, DocumentKind};

use crate::entity::document;
use crate::{Store, StoreError};

/// A document to store with the decision that records its generation.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDocument {
    pub id: Uuid,
    pub dispute_id: DisputeId,
    pub kind: DocumentKind,
    pub version: i32,
    pub sha256: String,
    pub pdf: Vec<u8>,
    pub html: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDocument")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("pdf_bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

/// A stored document without its content, for lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    pub id: Uuid,
    pub dispute_id: DisputeId,
    pub kind: DocumentKind,
    pub version: i32,
    pub sha256: String,
    /// Size of the PDF.
    pub size_bytes: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A stored document with its content.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub record: DocumentRecord,
    pub pdf: Vec<u8>,
    pub html: String,
}

impl std::fmt::Debug for StoredDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDocument")
            .field("record", &self.record)
            .field("pdf_bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

fn kind_of(row_kind: &str) -> Result<DocumentKind, StoreError> {
    row_kind
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("document kind `{row_kind}`")))
}

fn record(row: &document::Model) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        id: row.id,
        dispute_id: DisputeId::from_uuid(row.dispute_id),
        kind: kind_of(&row.kind)?,
        version: row.version,
        sha256: row.sha256.clone(),
        size_bytes: row.size_bytes,
        created_by: row.created_by.clone(),
        created_at: row.created_at,
    })
}

/// The columns of a list (never the content).
fn listed() -> sea_orm::Select<document::Entity> {
    document::Entity::find().select_only().columns([
        document::Column::Id,
        document::Column::DisputeId,
        document::Column::Kind,
        document::Column::Version,
        document::Column::Sha256,
        document::Column::SizeBytes,
        document::Column::CreatedBy,
        document::Column::CreatedAt,
    ])
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct ListedRow {
    id: Uuid,
    dispute_id: Uuid,
    kind: String,
    version: i32,
    sha256: String,
    size_bytes: i64,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl ListedRow {
    fn record(self) -> Result<DocumentRecord, StoreError> {
        Ok(DocumentRecord {
            id: self.id,
            dispute_id: DisputeId::from_uuid(self.dispute_id),
            kind: kind_of(&self.kind)?,
            version: self.version,
            sha256: self.sha256,
            size_bytes: self.size_bytes,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

pub(crate) fn active_model(doc: &NewDocument) -> document::ActiveModel {
    use sea_orm::ActiveValue::Set;
    document::ActiveModel {
        id: Set(doc.id),
        dispute_id: Set(doc.dispute_id.as_uuid()),
        kind: Set(doc.kind.as_str().to_owned()),
        version: Set(doc.version),
        sha256: Set(doc.sha256.clone()),
        size_bytes: Set(i64::try_from(doc.pdf.len()).unwrap_or(i64::MAX)),
        pdf: Set(doc.pdf.clone()),
        html: Set(doc.html.clone()),
        created_by: Set(doc.created_by.clone()),
        created_at: Set(doc.created_at),
    }
}

impl Store {
    /// Writes a decision that records a generated document, and the document, in one transaction: a stale
    /// dispute version, or another generation that took the same document version first, is a conflict and
    /// writes nothing.
    pub async fn commit_with_document(
        &self,
        expected_version: i64,
        after: &Dispute,
        decision: &Decision,
        document: &NewDocument,
    ) -> Result<(), StoreError> {
        self.commit_all(Some(expected_version), after, decision, None, None, Some(document), &[])
            .await
    }

    /// The version the next document of `kind` for the dispute gets.
    pub async fn next_document_version(&self, id: DisputeId, kind: DocumentKind) -> Result<i32, StoreError> {
        let last = document::Entity::find()
            .select_only()
            .column(document::Column::Version)
            .filter(document::Column::DisputeId.eq(id.as_uuid()))
            .filter(document::Column::Kind.eq(kind.as_str()))
            .order_by_desc(document::Column::Version)
            .into_tuple::<i32>()
            .one(self.db())
            .await?;
        Ok(last.unwrap_or(0) + 1)
    }

    /// A document with its content; `None` for an unknown id.
    pub async fn document(&self, id: Uuid) -> Result<Option<StoredDocument>, StoreError> {
        let Some(row) = document::Entity::find_by_id(id).one(self.db()).await? else {
            return Ok(None);
        };
        Ok(Some(StoredDocument {
            record: record(&row)?,
            pdf: row.pdf,
            html: row.html,
        }))
    }

    /// The latest document of `kind` for the dispute, with its content.
    pub async fn latest_document(
        &self,
        id: DisputeId,
        kind: DocumentKind,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let row = document::Entity::find()
            .filter(document::Column::DisputeId.eq(id.as_uuid()))
            .filter(document::Column::Kind.eq(kind.as_str()))
            .order_by_desc(document::Column::Version)
            .one(self.db())
            .await?;
        row.map(|row| {
            Ok(StoredDocument {
                record: record(&row)?,
                pdf: row.pdf,
                html: row.html,
            })
        })
        .transpose()
    }

    /// The documents of many disputes without their content, newest first, for a page's DataLoader.
    pub async fn documents_of_disputes(
        &self,
        ids: &[DisputeId],
    ) -> Result<std::collections::HashMap<DisputeId, Vec<DocumentRecord>>, StoreError> {
        let mut out: std::collections::HashMap<DisputeId, Vec<DocumentRecord>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        let rows = listed()
            .filter(document::Column::DisputeId.is_in(ids.iter().map(DisputeId::as_uuid)))
            .order_by_desc(document::Column::CreatedAt)
            .order_by_desc(document::Column::Id)
            .limit(crate::batch::MAX_LIST_ROWS + 1)
            .into_model::<ListedRow>()
            .all(self.db())
            .await?;
        if rows.len() as u64 > crate::batch::MAX_LIST_ROWS {
            return Err(StoreError::TooManyRows {
                what: "documents",
                limit: crate::batch::MAX_LIST_ROWS,
            });
        }
        for row in rows {
            let record = row.record()?;
            out.entry(record.dispute_id).or_default().push(record);
        }
        Ok(out)
    }

    /// The dispute's documents without their content, newest first.
    pub async fn documents(&self, id: DisputeId) -> Result<Vec<DocumentRecord>, StoreError> {
        listed()
            .filter(document::Column::DisputeId.eq(id.as_uuid()))
            .order_by_desc(document::Column::CreatedAt)
            .order_by_desc(document::Column::Id)
            .into_model::<ListedRow>()
            .all(self.db())
            .await?
            .into_iter()
            .map(ListedRow::record)
            .collect()
    }
}
