//! Generating a dispute's documents: render the defense or the case file from the dispute, its history, the
//! marketplace facts and the evidence, store it as the next version, and record the generation as an event,
//! both in one transaction.
//!
//! The facts come from the engine's marketplace facts (Verdict's tables or the order service) and the evidence
//! from the store, unless the engine was given other [`DocumentSources`]. A dispute without an order or evidence
//! gets documents that say so plainly ([`NoSources`] gives exactly that): nothing is invented.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::instrument;
use uuid::Uuid;
use verdict_documents::{DocumentInput, RenderedDocument};
use verdict_domain::facts::OrderFacts;
use verdict_domain::machine::ActorKind;
use verdict_domain::{
    Action, Actor, Command, Dispute, DisputeEvent, DisputeId, DocumentKind, DocumentRef, DomainError, EvidenceItem,
    apply, decide,
};
use verdict_facts::OrderLookup;
use verdict_store::{DocumentRecord, EventRecord, NewDocument, StoreError};

use crate::{ATTEMPTS_ON_CONFLICT, Engine, EngineError};

/// Where a document's facts and evidence come from.
#[async_trait::async_trait]
pub trait DocumentSources: Send + Sync {
    /// The order behind the dispute, when it is linked to one.
    async fn facts(&self, dispute: &Dispute) -> Result<Option<OrderFacts>, EngineError>;
    /// The dispute's evidence items, in the order the index numbers them.
    async fn evidence(&self, dispute: &Dispute) -> Result<Vec<EvidenceItem>, EngineError>;
}

/// No marketplace facts and no evidence: the documents say so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSources;

#[async_trait::async_trait]
impl DocumentSources for NoSources {
    async fn facts(&self, _: &Dispute) -> Result<Option<OrderFacts>, EngineError> {
        Ok(None)
    }
    async fn evidence(&self, _: &Dispute) -> Result<Vec<EvidenceItem>, EngineError> {
        Ok(Vec::new())
    }
}

/// A document generated and stored, with the dispute as its event left it.
#[derive(Debug, Clone)]
pub struct GeneratedDocument {
    pub dispute: Dispute,
    pub record: DocumentRecord,
    pub rendered: Arc<RenderedDocument>,
}

/// `analyst:jane` back into an actor.
fn actor_of(label: &str) -> Actor {
    let (kind, name) = label.split_once(':').unwrap_or(("system", label));
    let kind = match kind {
        "analyst" => ActorKind::Analyst,
        "processor" => ActorKind::Processor,
        "timer" => ActorKind::Timer,
        "step" => ActorKind::Step,
        "policy" => ActorKind::Policy,
        _ => ActorKind::System,
    };
    Actor {
        kind,
        name: name.to_owned(),
    }
}

/// The stored history as domain events, for documents' timelines.
pub fn domain_events(id: DisputeId, records: Vec<EventRecord>) -> Result<Vec<DisputeEvent>, StoreError> {
    records
        .into_iter()
        .map(|r| {
            let change = serde_json::from_value(r.change)
                .map_err(|e| StoreError::Corrupt(format!("event {} of dispute {id}: {e}", r.version)))?;
            Ok(DisputeEvent {
                dispute_id: id,
                version: r.version,
                at: r.at,
                actor: actor_of(&r.actor),
                reason: r.reason,
                change,
            })
        })
        .collect()
}

/// Renders off the async threads: laying out and subsetting a PDF takes a few milliseconds of CPU.
async fn render(
    kind: DocumentKind,
    dispute: Dispute,
    facts: Option<OrderFacts>,
    evidence: Vec<EvidenceItem>,
    events: Vec<DisputeEvent>,
    now: DateTime<Utc>,
) -> Result<RenderedDocument, EngineError> {
    tokio::task::spawn_blocking(move || {
        let input = DocumentInput {
            dispute: &dispute,
            facts: facts.as_ref(),
            evidence: &evidence,
            events: &events,
            generated_at: now,
        };
        match kind {
            DocumentKind::Defense => verdict_documents::render_defense(&input),
            DocumentKind::CaseFile => verdict_documents::render_case_file(&input),
        }
    })
    .await
    .map_err(|e| EngineError::Document(format!("rendering stopped: {e}")))?
    .map_err(|e| EngineError::Document(e.to_string()))
}

impl Engine {
    /// The order facts and the evidence items (not removed, in the order they were added) of `dispute`.
    async fn material(&self, dispute: &Dispute) -> Result<(Option<OrderFacts>, Vec<EvidenceItem>), EngineError> {
        if let Some(sources) = &self.document_sources {
            return Ok((sources.facts(dispute).await?, sources.evidence(dispute).await?));
        }
        let lookup = OrderLookup {
            processor: dispute.processor,
            order_reference: dispute.order_reference.clone(),
            payment_references: vec![dispute.payment_reference.clone()],
        };
        let facts = self.facts.find_order(&lookup).await?;
        let evidence = self
            .store
            .evidence_items(dispute.id, false)
            .await?
            .into_iter()
            .map(|record| record.item)
            .collect();
        Ok((facts, evidence))
    }

    /// Renders the dispute's `kind` document as it stands now, without storing it or recording anything: an
    /// export (the case file served at `/disputes/{id}/case-file.pdf`).
    pub async fn render_document(&self, id: DisputeId, kind: DocumentKind) -> Result<RenderedDocument, EngineError> {
        let dispute = self.store.load(id).await?.ok_or(EngineError::NotFound(id))?;
        let events = domain_events(id, self.store.events(id).await?)?;
        let (facts, evidence) = self.material(&dispute).await?;
        render(kind, dispute, facts, evidence, events, self.clock.now()).await
    }
}

impl Engine {
    /// Renders the dispute's `kind` document as it stands, stores it as the next version and records the
    /// generation (`document_generated`) in the same transaction. `expected_version` is the dispute version the
    /// caller saw: a stale one is a conflict and nothing is stored. Facts and evidence come from the engine's
    /// [`DocumentSources`].
    #[instrument(skip_all, fields(dispute_id = %id, kind = %kind), err(level = "debug"))]
    pub async fn generate_document(
        &self,
        id: DisputeId,
        kind: DocumentKind,
        actor: Actor,
        expected_version: Option<i64>,
    ) -> Result<GeneratedDocument, EngineError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dispute = self.store.load(id).await?.ok_or(EngineError::NotFound(id))?;
            if let Some(expected) = expected_version
                && expected != dispute.version
            {
                return Err(DomainError::VersionConflict {
                    expected,
                    actual: dispute.version,
                }
                .into());
            }
            let events = domain_events(id, self.store.events(id).await?)?;
            let (facts, evidence) = self.material(&dispute).await?;
            let version = self.store.next_document_version(id, kind).await?;
            let now = self.clock.now();
            let rendered = render(kind, dispute.clone(), facts, evidence, events, now).await?;
            let document = NewDocument {
                id: Uuid::now_v7(),
                dispute_id: id,
                kind,
                version,
                sha256: rendered.pdf_sha256(),
                pdf: rendered.pdf.clone(),
                html: rendered.html.clone(),
                created_by: actor.label(),
                created_at: now,
            };
            let command = Command::new(
                actor.clone(),
                Action::RecordDocument {
                    document: DocumentRef {
                        document_id: document.id,
                        kind,
                        version,
                        sha256: document.sha256.clone(),
                    },
                },
            );
            let decision = self.timing.adjust(decide(&dispute, &command, now)?, now);
            let mut after = dispute.clone();
            for event in &decision.events {
                apply(&mut after, event);
            }
            match self
                .store
                .commit_with_document(dispute.version, &after, &decision, &document)
                .await
            {
                Ok(()) => {
                    tracing::info!(version, "document generated");
                    let record = DocumentRecord {
                        id: document.id,
                        dispute_id: id,
                        kind,
                        version,
                        sha256: document.sha256,
                        size_bytes: i64::try_from(document.pdf.len()).unwrap_or(i64::MAX),
                        created_by: document.created_by,
                        created_at: now,
                    };
                    return Ok(GeneratedDocument {
                        dispute: after,
                        record,
                        rendered: Arc::new(rendered),
                    });
                }
                // Another writer moved the dispute or took this document version: render again on fresh
                // state, unless the caller stated the version it saw.
                Err(StoreError::Conflict(_)) if expected_version.is_none() && attempt < ATTEMPTS_ON_CONFLICT => {
                    continue;
                }
                Err(StoreError::Conflict(_)) if expected_version.is_some() => {
                    let actual = self.store.load(id).await?.map_or(dispute.version, |d| d.version);
                    return Err(DomainError::VersionConflict {
                        expected: dispute.version,
                        actual,
                    }
                    .into());
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_labels_read_back() {
        for actor in [
            Actor::analyst("jane"),
            Actor::system("triage"),
            Actor::processor(verdict_domain::Processor::Stripe),
        ] {
            assert_eq!(actor_of(&actor.label()), actor);
        }
    }
}
