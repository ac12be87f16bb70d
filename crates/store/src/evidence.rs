//! Evidence rows: uploaded files and the items of a dispute's defense.
//!
//! Items are written only with the event that names them ([`Store::commit_evidence`]), so an item exists exactly
//! when its `evidence_added` event does; removal marks the row and is an event too. Uploads are recorded on
//! their own ([`Store::record_evidence_file`]): an upload is not evidence until an item uses it.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;
use verdict_domain::{
    Decision, Dispute, DisputeId, EvidenceContentType, EvidenceFile, EvidenceItem, EvidenceKind, EvidenceSource,
};

use crate::entity::{evidence_file, evidence_item};
use crate::{Backend, Store, StoreError};

/// An upload to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidenceFile {
    pub id: Uuid,
    pub dispute_id: DisputeId,
    pub sha256: String,
    pub size_bytes: u64,
    pub content_type: EvidenceContentType,
    /// For people; never a path.
    pub file_name: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

/// A recorded upload.
pub type EvidenceFileRecord = NewEvidenceFile;

/// What became of an upload: recorded, or refused by the dispute's limits (nothing written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRecorded {
    Recorded,
    /// The dispute's files would come to `total` bytes, over `limit`.
    OverDisputeLimit {
        total: u64,
        limit: u64,
    },
    /// The dispute has `limit` files already.
    TooManyFiles {
        limit: usize,
    },
}

/// An item as stored, with its removal when removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceItemRecord {
    pub item: EvidenceItem,
    pub dispute_id: DisputeId,
    /// The upload the item shows, when it shows a file.
    pub file_id: Option<Uuid>,
    pub removed_at: Option<DateTime<Utc>>,
    pub removed_by: Option<String>,
}

/// An evidence row written with the event that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceWrite {
    Add {
        item: Box<EvidenceItem>,
        file_id: Option<Uuid>,
    },
    Remove {
        item_id: Uuid,
        at: DateTime<Utc>,
        by: String,
    },
}

fn content_type_str(t: EvidenceContentType) -> &'static str {
    match t {
        EvidenceContentType::Pdf => "pdf",
        EvidenceContentType::Png => "png",
        EvidenceContentType::Jpeg => "jpeg",
    }
}

fn parse_content_type(s: &str) -> Result<EvidenceContentType, StoreError> {
    match s {
        "pdf" => Ok(EvidenceContentType::Pdf),
        "png" => Ok(EvidenceContentType::Png),
        "jpeg" => Ok(EvidenceContentType::Jpeg),
        other => Err(StoreError::Corrupt(format!("unknown evidence content type {other:?}"))),
    }
}

fn source_str(s: EvidenceSource) -> &'static str {
    match s {
        EvidenceSource::Analyst => "analyst",
        EvidenceSource::MarketplaceFacts => "marketplace_facts",
    }
}

fn parse_source(s: &str) -> Result<EvidenceSource, StoreError> {
    match s {
        "analyst" => Ok(EvidenceSource::Analyst),
        "marketplace_facts" => Ok(EvidenceSource::MarketplaceFacts),
        other => Err(StoreError::Corrupt(format!("unknown evidence source {other:?}"))),
    }
}

fn size_u64(size: i64) -> Result<u64, StoreError> {
    u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("negative evidence file size {size}")))
}

fn size_i64(size: u64) -> Result<i64, StoreError> {
    i64::try_from(size).map_err(|_| StoreError::Corrupt(format!("evidence file size {size} is too large")))
}

fn file_record(row: evidence_file::Model) -> Result<EvidenceFileRecord, StoreError> {
    Ok(NewEvidenceFile {
        id: row.id,
        dispute_id: DisputeId::from_uuid(row.dispute_id),
        sha256: row.sha256,
        size_bytes: size_u64(row.size_bytes)?,
        content_type: parse_content_type(&row.content_type)?,
        file_name: row.file_name,
        uploaded_by: row.uploaded_by,
        uploaded_at: row.uploaded_at,
    })
}

fn item_record(row: evidence_item::Model) -> Result<EvidenceItemRecord, StoreError> {
    let kind: EvidenceKind = row
        .kind
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown evidence kind {:?}", row.kind)))?;
    let file = match (row.file_sha256, row.file_size_bytes, row.file_content_type) {
        (Some(sha256), Some(size), Some(content_type)) => Some(EvidenceFile {
            sha256,
            size_bytes: size_u64(size)?,
            content_type: parse_content_type(&content_type)?,
            file_name: row.file_name.unwrap_or_default(),
        }),
        (None, None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "evidence item {} has a partial file",
                row.id
            )));
        }
    };
    Ok(EvidenceItemRecord {
        item: EvidenceItem {
            id: row.id,
            kind,
            text: row.text,
            file,
            source: parse_source(&row.source)?,
            added_by: row.added_by,
            added_at: row.added_at,
        },
        dispute_id: DisputeId::from_uuid(row.dispute_id),
        file_id: row.file_id,
        removed_at: row.removed_at,
        removed_by: row.removed_by,
    })
}

/// Writes the evidence rows of a commit inside its transaction.
pub(crate) async fn write(
    txn: &DatabaseTransaction,
    dispute_id: DisputeId,
    writes: &[EvidenceWrite],
) -> Result<(), StoreError> {
    for write in writes {
        match write {
            EvidenceWrite::Add { item, file_id } => {
                let file = item.file.as_ref();
                let row = evidence_item::ActiveModel {
                    id: Set(item.id),
                    dispute_id: Set(dispute_id.as_uuid()),
                    kind: Set(item.kind.as_str().to_owned()),
                    text: Set(item.text.clone()),
                    file_id: Set(*file_id),
                    file_sha256: Set(file.map(|f| f.sha256.clone())),
                    file_size_bytes: Set(file.map(|f| size_i64(f.size_bytes)).transpose()?),
                    file_content_type: Set(file.map(|f| content_type_str(f.content_type).to_owned())),
                    file_name: Set(file.map(|f| f.file_name.clone())),
                    source: Set(source_str(item.source).to_owned()),
                    added_by: Set(item.added_by.clone()),
                    added_at: Set(item.added_at),
                    removed_at: Set(None),
                    removed_by: Set(None),
                };
                evidence_item::Entity::insert(row).exec_without_returning(txn).await?;
            }
            EvidenceWrite::Remove { item_id, at, by } => {
                let updated = evidence_item::Entity::update_many()
                    .col_expr(evidence_item::Column::RemovedAt, Expr::value(*at))
                    .col_expr(evidence_item::Column::RemovedBy, Expr::value(by.clone()))
                    .filter(evidence_item::Column::Id.eq(*item_id))
                    .filter(evidence_item::Column::DisputeId.eq(dispute_id.as_uuid()))
                    .filter(evidence_item::Column::RemovedAt.is_null())
                    .exec(txn)
                    .await?;
                if updated.rows_affected != 1 {
                    // Removed meanwhile by someone else: the event must not be written either.
                    return Err(StoreError::Conflict(dispute_id));
                }
            }
        }
    }
    Ok(())
}

impl Store {
    /// Commits a decision about evidence together with the rows its events name, in one transaction, on the
    /// version the decision was made on (a conflict writes nothing).
    pub async fn commit_evidence(
        &self,
        expected_version: i64,
        after: &Dispute,
        decision: &Decision,
        writes: &[EvidenceWrite],
    ) -> Result<(), StoreError> {
        self.commit_all(Some(expected_version), after, decision, None, None, writes, None)
            .await
    }

    /// Records an upload for a dispute unless it would take the dispute past `max_dispute_bytes` or
    /// `max_files` (files of removed items do not count). The check and the insert are one transaction, with
    /// the dispute's row locked on PostgreSQL, so two uploads at once cannot both slip under the limit.
    pub async fn record_evidence_file(
        &self,
        file: &NewEvidenceFile,
        max_dispute_bytes: u64,
        max_files: usize,
    ) -> Result<FileRecorded, StoreError> {
        let txn = crate::begin_write(self.db()).await?;
        if self.backend() == Backend::Postgres {
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT id FROM disputes WHERE id = $1 FOR UPDATE",
                [file.dispute_id.as_uuid().into()],
            ))
            .await?;
        }
        let (used_bytes, used_files) = files_in_use(&txn, file.dispute_id).await?;
        if used_files >= max_files {
            return Ok(FileRecorded::TooManyFiles { limit: max_files });
        }
        let total = used_bytes.saturating_add(file.size_bytes);
        if total > max_dispute_bytes {
            return Ok(FileRecorded::OverDisputeLimit {
                total,
                limit: max_dispute_bytes,
            });
        }
        evidence_file::Entity::insert(evidence_file::ActiveModel {
            id: Set(file.id),
            dispute_id: Set(file.dispute_id.as_uuid()),
            sha256: Set(file.sha256.clone()),
            size_bytes: Set(size_i64(file.size_bytes)?),
            content_type: Set(content_type_str(file.content_type).to_owned()),
            file_name: Set(file.file_name.clone()),
            uploaded_by: Set(file.uploaded_by.clone()),
            uploaded_at: Set(file.uploaded_at),
        })
        .exec_without_returning(&txn)
        .await?;
        crate::crash::commit(txn).await?;
        Ok(FileRecorded::Recorded)
    }

    pub async fn evidence_file(&self, id: Uuid) -> Result<Option<EvidenceFileRecord>, StoreError> {
        evidence_file::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(file_record)
            .transpose()
    }

    /// Bytes and count of the dispute's files that count against its limits.
    pub async fn evidence_files_in_use(&self, dispute_id: DisputeId) -> Result<(u64, usize), StoreError> {
        let txn = self.db().begin().await?;
        let used = files_in_use(&txn, dispute_id).await?;
        txn.commit().await?;
        Ok(used)
    }

    /// The dispute's items in the order they were added; removed ones only when asked.
    pub async fn evidence_items(
        &self,
        dispute_id: DisputeId,
        include_removed: bool,
    ) -> Result<Vec<EvidenceItemRecord>, StoreError> {
        let mut query = evidence_item::Entity::find().filter(evidence_item::Column::DisputeId.eq(dispute_id.as_uuid()));
        if !include_removed {
            query = query.filter(evidence_item::Column::RemovedAt.is_null());
        }
        query
            .order_by_asc(evidence_item::Column::AddedAt)
            .order_by_asc(evidence_item::Column::Id)
            .limit(EVIDENCE_ITEMS_READ_LIMIT)
            .all(self.db())
            .await?
            .into_iter()
            .map(item_record)
            .collect()
    }

    pub async fn evidence_item(&self, id: Uuid) -> Result<Option<EvidenceItemRecord>, StoreError> {
        evidence_item::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(item_record)
            .transpose()
    }

    /// Whether `sha256` is the file of one of the dispute's items or uploads: what a download may serve.
    pub async fn evidence_file_of_dispute(
        &self,
        dispute_id: DisputeId,
        sha256: &str,
    ) -> Result<Option<EvidenceFileRecord>, StoreError> {
        evidence_file::Entity::find()
            .filter(evidence_file::Column::DisputeId.eq(dispute_id.as_uuid()))
            .filter(evidence_file::Column::Sha256.eq(sha256))
            .order_by_asc(evidence_file::Column::UploadedAt)
            .one(self.db())
            .await?
            .map(file_record)
            .transpose()
    }
}

/// At most this many items are read for one dispute: far above what a defense holds (drawing from facts adds
/// about ten; files are capped at 50), it keeps one read bounded.
pub const EVIDENCE_ITEMS_READ_LIMIT: u64 = 1_000;

/// Bytes and count of a dispute's uploads, except those whose every item was removed.
async fn files_in_use<C: ConnectionTrait>(db: &C, dispute_id: DisputeId) -> Result<(u64, usize), StoreError> {
    let files = evidence_file::Entity::find()
        .filter(evidence_file::Column::DisputeId.eq(dispute_id.as_uuid()))
        .all(db)
        .await?;
    let items = evidence_item::Entity::find()
        .filter(evidence_item::Column::DisputeId.eq(dispute_id.as_uuid()))
        .filter(evidence_item::Column::FileId.is_not_null())
        .all(db)
        .await?;
    let mut bytes = 0_u64;
    let mut count = 0_usize;
    for file in files {
        let users: Vec<_> = items.iter().filter(|i| i.file_id == Some(file.id)).collect();
        let dropped = !users.is_empty() && users.iter().all(|i| i.removed_at.is_some());
        if !dropped {
            bytes = bytes.saturating_add(size_u64(file.size_bytes)?);
            count += 1;
        }
    }
    Ok((bytes, count))
}
