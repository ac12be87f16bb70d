//! What a defense sends, gathered when the submission step runs: the dispute's stored evidence items with their
//! files, the defense document rendered from them, and the order facts.
//!
//! The step builds the [`Submission`] at run time rather than freezing it into the step's payload when the
//! analyst submits: the payload would hold files (megabytes in the outbox row) and personal data, and a retry
//! days later sends what is stored then, which is what the defense document also shows. Evidence can no longer
//! change once a dispute is submitted, so every try sends the same items.

use std::sync::Arc;

use verdict_documents::{DocumentInput, render_defense};
use verdict_domain::{
    Actor, ActorKind, Change, Dispute, DisputeEvent, DocumentKind, EvidenceContentType, EvidenceItem,
};
use verdict_evidence::FileStore;
use verdict_facts::{MarketplaceFacts, OrderLookup};
use verdict_store::{EventRecord, Store};

use super::{StepError, Submission, SubmissionFile, SubmissionItem};
use crate::Clock;

/// Where a submission's content comes from.
#[async_trait::async_trait]
pub trait SubmissionSource: Send + Sync + 'static {
    /// Everything the defense of `dispute` sends, as stored now.
    async fn submission(&self, dispute: &Dispute) -> Result<Submission, StepError>;
}

/// The submission from Verdict's own storage: evidence items and their files, the order facts, and the defense
/// document rendered from them (English, for the processor).
pub struct StoredSubmission {
    store: Store,
    files: Arc<dyn FileStore>,
    facts: Arc<dyn MarketplaceFacts>,
    clock: Arc<dyn Clock>,
}

impl StoredSubmission {
    pub fn new(
        store: Store,
        files: Arc<dyn FileStore>,
        facts: Arc<dyn MarketplaceFacts>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            files,
            facts,
            clock,
        }
    }

    async fn order_facts(&self, dispute: &Dispute) -> Result<Option<verdict_domain::facts::OrderFacts>, StepError> {
        let lookup = OrderLookup {
            processor: dispute.processor,
            order_reference: dispute.order_reference.clone(),
            payment_references: vec![dispute.payment_reference.clone()],
        };
        self.facts
            .find_order(&lookup)
            .await
            .map_err(|e| StepError::Transient(format!("reading the order facts from {}: {e}", self.facts.name())))
    }

    async fn file(&self, item: &EvidenceItem) -> Result<Option<SubmissionFile>, StepError> {
        let Some(file) = &item.file else { return Ok(None) };
        let bytes = self
            .files
            .get(&file.sha256)
            .await
            .map_err(|e| StepError::Transient(format!("reading evidence file {}: {e}", file.sha256)))?
            .ok_or_else(|| {
                StepError::Permanent(format!(
                    "evidence file {} of item {} is missing from the {} store; nothing was sent",
                    file.sha256,
                    item.id,
                    self.files.name()
                ))
            })?;
        Ok(Some(SubmissionFile {
            file_name: file.file_name.clone(),
            content_type: file.content_type,
            bytes,
        }))
    }
}

/// Whether the stored document `id` still shows the file: no evidence was added or removed and no order linked
/// after the event that recorded it.
fn still_current(id: uuid::Uuid, events: &[DisputeEvent]) -> bool {
    let Some(generated) = events.iter().find_map(|e| match &e.change {
        Change::DocumentGenerated { document } if document.document_id == id => Some(e.version),
        _ => None,
    }) else {
        return false;
    };
    !events.iter().any(|e| {
        e.version > generated
            && matches!(
                e.change,
                Change::EvidenceAdded { .. } | Change::EvidenceRemoved { .. } | Change::OrderLinked { .. }
            )
    })
}

/// An event as stored, read back into the domain's terms (for the document's timeline).
fn domain_event(dispute: &Dispute, record: EventRecord) -> Result<DisputeEvent, StepError> {
    let change: Change = serde_json::from_value(record.change)
        .map_err(|e| StepError::Permanent(format!("event {} does not read back: {e}", record.version)))?;
    let (kind, name) = record
        .actor
        .split_once(':')
        .unwrap_or(("system", record.actor.as_str()));
    let kind: ActorKind =
        serde_json::from_value(serde_json::Value::String(kind.to_owned())).unwrap_or(ActorKind::System);
    Ok(DisputeEvent {
        dispute_id: dispute.id,
        version: record.version,
        at: record.at,
        actor: Actor {
            kind,
            name: name.to_owned(),
        },
        reason: record.reason,
        change,
    })
}

#[async_trait::async_trait]
impl SubmissionSource for StoredSubmission {
    async fn submission(&self, dispute: &Dispute) -> Result<Submission, StepError> {
        let transient = |what: &str, e: verdict_store::StoreError| StepError::Transient(format!("reading {what}: {e}"));
        let evidence: Vec<EvidenceItem> = self
            .store
            .evidence_items(dispute.id, false)
            .await
            .map_err(|e| transient("the evidence", e))?
            .into_iter()
            .map(|record| record.item)
            .collect();
        let events = self
            .store
            .events(dispute.id)
            .await
            .map_err(|e| transient("the history", e))?
            .into_iter()
            .map(|record| domain_event(dispute, record))
            .collect::<Result<Vec<_>, _>>()?;
        let facts = self.order_facts(dispute).await?;
        let latest = self
            .store
            .latest_document(dispute.id, DocumentKind::Defense)
            .await
            .map_err(|e| transient("the latest defense document", e))?
            .filter(|doc| still_current(doc.record.id, &events));
        let (file_name, pdf) = match latest {
            // The analyst's latest generated defense, when nothing it rests on changed since.
            Some(doc) => (format!("defense-{}-v{}.pdf", dispute.id, doc.record.version), doc.pdf),
            // None yet, or the evidence or the order changed after it: rendered now from what is stored.
            None => {
                let rendered = render_defense(&DocumentInput {
                    dispute,
                    facts: facts.as_ref(),
                    evidence: &evidence,
                    events: &events,
                    generated_at: self.clock.now(),
                })
                .map_err(|e| StepError::Permanent(format!("rendering the defense document: {e}")))?;
                (format!("defense-{}.pdf", dispute.id), rendered.pdf)
            }
        };
        let mut items = Vec::with_capacity(evidence.len());
        for item in &evidence {
            items.push(SubmissionItem {
                kind: item.kind,
                text: item.text.clone(),
                file: self.file(item).await?,
            });
        }
        Ok(Submission {
            document: Some(SubmissionFile {
                file_name,
                content_type: EvidenceContentType::Pdf,
                bytes: pdf,
            }),
            items,
            facts,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use verdict_domain::{DisputeId, DocumentRef, EvidenceKind, EvidenceSource, machine::EvidenceRef};

    use super::*;

    fn event(version: i64, change: Change) -> DisputeEvent {
        DisputeEvent {
            dispute_id: DisputeId::new_v7(),
            version,
            at: Utc::now(),
            actor: Actor::analyst("jane"),
            reason: None,
            change,
        }
    }

    fn generated(id: uuid::Uuid) -> Change {
        Change::DocumentGenerated {
            document: DocumentRef {
                document_id: id,
                kind: DocumentKind::Defense,
                version: 1,
                sha256: "0".repeat(64),
            },
        }
    }

    fn evidence_added() -> Change {
        Change::EvidenceAdded {
            items: vec![EvidenceRef {
                item_id: uuid::Uuid::now_v7(),
                kind: EvidenceKind::Tracking,
            }],
            source: EvidenceSource::Analyst,
        }
    }

    #[test]
    fn a_stored_defense_is_sent_only_while_nothing_it_shows_changed_since() {
        let id = uuid::Uuid::now_v7();
        let note = Change::NoteAdded { note: "called".into() };
        assert!(still_current(
            id,
            &[event(2, evidence_added()), event(3, generated(id)), event(4, note)]
        ));
        assert!(!still_current(
            id,
            &[event(2, generated(id)), event(3, evidence_added())]
        ));
        assert!(
            !still_current(id, &[event(2, generated(uuid::Uuid::now_v7()))]),
            "another document"
        );
    }
}
