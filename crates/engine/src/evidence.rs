//! Adding and removing evidence: the command's event and the rows it names, committed together.
//!
//! The domain decides whether the dispute's evidence may change (open, not submitted) and checks the version
//! the caller saw; this module checks what only the database knows (the upload belongs to the dispute, the item
//! exists) and builds the rows.

use tracing::instrument;
use uuid::Uuid;
use verdict_domain::evidence::{display_file_name, evidence_text};
use verdict_domain::{
    Action, Actor, Command, Dispute, DisputeId, DomainError, EvidenceFile, EvidenceItem, EvidenceKind, EvidenceRef,
    EvidenceSource, apply, decide,
};
use verdict_store::EvidenceWrite;

use crate::{Engine, EngineError};

/// An item to add: text, an upload of the dispute (by its file id), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence {
    pub kind: EvidenceKind,
    pub text: Option<String>,
    pub file_id: Option<Uuid>,
}

/// At most this many items in one command (drawing from facts adds one per kind).
pub const MAX_ITEMS_PER_COMMAND: usize = 20;

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::Domain(DomainError::InvalidInput(message.into()))
}

impl Engine {
    /// Adds items to the dispute as it was at `expected_version` (a stale version is a conflict and writes
    /// nothing); returns the dispute and the items as stored.
    #[instrument(skip_all, fields(dispute_id = %id, actor = %actor.label()), err(level = "debug"))]
    pub async fn add_evidence(
        &self,
        id: DisputeId,
        actor: Actor,
        expected_version: i64,
        source: EvidenceSource,
        new: Vec<NewEvidence>,
    ) -> Result<(Dispute, Vec<EvidenceItem>), EngineError> {
        if new.is_empty() {
            return Err(invalid("no evidence to add"));
        }
        if new.len() > MAX_ITEMS_PER_COMMAND {
            return Err(invalid(format!(
                "at most {MAX_ITEMS_PER_COMMAND} items can be added at once"
            )));
        }
        let dispute = self.store().load(id).await?.ok_or(EngineError::NotFound(id))?;
        let now = self.clock().now();
        let mut items = Vec::with_capacity(new.len());
        let mut writes = Vec::with_capacity(new.len());
        for entry in new {
            let text = evidence_text(entry.text.as_deref())?;
            let file = match entry.file_id {
                None => None,
                Some(file_id) => {
                    let upload = self
                        .store()
                        .evidence_file(file_id)
                        .await?
                        .filter(|f| f.dispute_id == id)
                        .ok_or_else(|| invalid(format!("file {file_id} is not an upload of this dispute")))?;
                    Some(EvidenceFile {
                        sha256: upload.sha256,
                        size_bytes: upload.size_bytes,
                        content_type: upload.content_type,
                        file_name: display_file_name(&upload.file_name),
                    })
                }
            };
            if text.is_none() && file.is_none() {
                return Err(invalid("an evidence item needs a text or a file"));
            }
            let item = EvidenceItem {
                id: Uuid::now_v7(),
                kind: entry.kind,
                text,
                file,
                source,
                added_by: actor.label(),
                added_at: now,
            };
            writes.push(EvidenceWrite::Add {
                item: Box::new(item.clone()),
                file_id: entry.file_id,
            });
            items.push(item);
        }
        let refs = items
            .iter()
            .map(|i| EvidenceRef {
                item_id: i.id,
                kind: i.kind,
            })
            .collect();
        let command = Command::new(actor, Action::AddEvidence { items: refs, source }).expecting(expected_version);
        let after = self.commit_evidence(&dispute, &command, &writes).await?;
        Ok((after, items))
    }

    /// Withdraws an item from the dispute's defense (it stays stored, marked removed).
    #[instrument(skip_all, fields(dispute_id = %id, actor = %actor.label()), err(level = "debug"))]
    pub async fn remove_evidence(
        &self,
        id: DisputeId,
        actor: Actor,
        expected_version: i64,
        item_id: Uuid,
        reason: Option<String>,
    ) -> Result<Dispute, EngineError> {
        let dispute = self.store().load(id).await?.ok_or(EngineError::NotFound(id))?;
        let record = self
            .store()
            .evidence_item(item_id)
            .await?
            .filter(|r| r.dispute_id == id)
            .ok_or_else(|| invalid(format!("evidence item {item_id} is not on this dispute")))?;
        if record.removed_at.is_some() {
            return Err(invalid(format!("evidence item {item_id} was already removed")));
        }
        let item = EvidenceRef {
            item_id,
            kind: record.item.kind,
        };
        let mut command = Command::new(actor.clone(), Action::RemoveEvidence { item }).expecting(expected_version);
        command.reason = reason;
        let writes = [EvidenceWrite::Remove {
            item_id,
            at: self.clock().now(),
            by: actor.label(),
        }];
        self.commit_evidence(&dispute, &command, &writes).await
    }

    async fn commit_evidence(
        &self,
        dispute: &Dispute,
        command: &Command,
        writes: &[EvidenceWrite],
    ) -> Result<Dispute, EngineError> {
        let now = self.clock().now();
        let mut decision = self.timing.adjust(decide(dispute, command, now)?, now);
        let mut after = dispute.clone();
        for event in &decision.events {
            apply(&mut after, event);
        }
        self.triage_into(true, &mut after, &mut decision, now).await?;
        self.store()
            .commit_evidence(dispute.version, &after, &decision, writes)
            .await?;
        Ok(after)
    }
}
