//! Evidence rows: uploads within the dispute's limits, items written with their events, removal.

use chrono::Duration;
use uuid::Uuid;
use verdict_domain::{
    Action, Actor, Command, Dispute, DisputeId, EvidenceContentType, EvidenceFile, EvidenceItem, EvidenceKind,
    EvidenceRef, EvidenceSource, apply, decide,
};
use verdict_store::testing::test_databases;
use verdict_store::{EvidenceWrite, FileRecorded, NewEvidenceFile, Store, StoreError};

use crate::{open_in, t0};

fn upload(dispute: DisputeId, sha: char, size: u64) -> NewEvidenceFile {
    NewEvidenceFile {
        id: Uuid::now_v7(),
        dispute_id: dispute,
        sha256: sha.to_string().repeat(64),
        size_bytes: size,
        content_type: EvidenceContentType::Pdf,
        file_name: "scan.pdf".into(),
        uploaded_by: "analyst:alice".into(),
        uploaded_at: t0(),
    }
}

fn item(kind: EvidenceKind, file: Option<&NewEvidenceFile>) -> EvidenceItem {
    EvidenceItem {
        id: Uuid::now_v7(),
        kind,
        text: Some("Delivered to the door".into()),
        file: file.map(|f| EvidenceFile {
            sha256: f.sha256.clone(),
            size_bytes: f.size_bytes,
            content_type: f.content_type,
            file_name: f.file_name.clone(),
        }),
        source: EvidenceSource::Analyst,
        added_by: "analyst:alice".into(),
        added_at: t0(),
    }
}

async fn commit(
    store: &Store,
    dispute: &Dispute,
    action: Action,
    writes: &[EvidenceWrite],
) -> Result<Dispute, StoreError> {
    let command = Command::new(Actor::analyst("alice"), action).expecting(dispute.version);
    let decision = decide(dispute, &command, t0() + Duration::hours(1)).unwrap();
    let mut after = dispute.clone();
    for event in &decision.events {
        apply(&mut after, event);
    }
    store
        .commit_evidence(dispute.version, &after, &decision, writes)
        .await?;
    Ok(after)
}

fn add(items: &[(&EvidenceItem, Option<Uuid>)]) -> (Action, Vec<EvidenceWrite>) {
    let refs = items
        .iter()
        .map(|(i, _)| EvidenceRef {
            item_id: i.id,
            kind: i.kind,
        })
        .collect();
    let writes = items
        .iter()
        .map(|(i, file_id)| EvidenceWrite::Add {
            item: Box::new((*i).clone()),
            file_id: *file_id,
        })
        .collect();
    (
        Action::AddEvidence {
            items: refs,
            source: EvidenceSource::Analyst,
        },
        writes,
    )
}

#[tokio::test]
async fn items_are_written_with_their_event_and_removal_is_an_event_too() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_evidence_items", Some(20)).await;
        let file = upload(dispute.id, 'a', 1_000);
        assert_eq!(
            store.record_evidence_file(&file, 5_000, 10).await.unwrap(),
            FileRecorded::Recorded
        );
        let pod = item(EvidenceKind::ProofOfDelivery, Some(&file));
        let tracking = item(EvidenceKind::Tracking, None);
        let (action, writes) = add(&[(&pod, Some(file.id)), (&tracking, None)]);
        let after = commit(&store, &dispute, action, &writes).await.unwrap();
        assert_eq!(after.version, dispute.version + 1);
        let items = store.evidence_items(dispute.id, false).await.unwrap();
        assert_eq!(
            items.iter().map(|r| r.item.clone()).collect::<Vec<_>>(),
            vec![pod.clone(), tracking.clone()],
            "{}",
            db.label
        );
        assert_eq!(items[0].file_id, Some(file.id));
        let events = store.events(dispute.id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.kind, "evidence_added");
        // The event names kinds and ids, never content.
        let change = last.change.to_string();
        assert!(change.contains(&pod.id.to_string()) && change.contains("proof_of_delivery"));
        assert!(
            !change.contains("Delivered to the door") && !change.contains("scan.pdf"),
            "{change}"
        );

        let removal = [EvidenceWrite::Remove {
            item_id: pod.id,
            at: t0() + Duration::hours(2),
            by: "analyst:alice".into(),
        }];
        let removed = commit(
            &store,
            &after,
            Action::RemoveEvidence {
                item: EvidenceRef {
                    item_id: pod.id,
                    kind: pod.kind,
                },
            },
            &removal,
        )
        .await
        .unwrap();
        assert_eq!(store.evidence_items(dispute.id, false).await.unwrap().len(), 1);
        let all = store.evidence_items(dispute.id, true).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].removed_by.as_deref(), Some("analyst:alice"));
        assert_eq!(
            store.events(dispute.id).await.unwrap().last().unwrap().kind,
            "evidence_removed"
        );
        // The removed item's file no longer counts against the dispute's limits.
        assert_eq!(
            store.evidence_files_in_use(dispute.id).await.unwrap(),
            (0, 0),
            "{}",
            db.label
        );

        // Removing it again conflicts and writes no event.
        let again = commit(
            &store,
            &removed,
            Action::RemoveEvidence {
                item: EvidenceRef {
                    item_id: pod.id,
                    kind: pod.kind,
                },
            },
            &removal,
        )
        .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{}", db.label);
        assert_eq!(store.load(dispute.id).await.unwrap().unwrap().version, removed.version);
    }
}

#[tokio::test]
async fn a_stale_version_writes_neither_event_nor_items() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_evidence_stale", Some(20)).await;
        let first = item(EvidenceKind::Tracking, None);
        let (action, writes) = add(&[(&first, None)]);
        commit(&store, &dispute, action, &writes).await.unwrap();
        // A second writer decided on the version before.
        let second = item(EvidenceKind::Photos, None);
        let (action, writes) = add(&[(&second, None)]);
        let stale = commit(&store, &dispute, action, &writes).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}", db.label);
        let items = store.evidence_items(dispute.id, true).await.unwrap();
        assert_eq!(
            items.iter().map(|r| r.item.id).collect::<Vec<_>>(),
            vec![first.id],
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn uploads_stop_at_the_disputes_byte_and_file_limits() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_evidence_limits", Some(20)).await;
        let other = open_in(&store, "dp_evidence_limits_other", Some(20)).await;
        assert_eq!(
            store
                .record_evidence_file(&upload(dispute.id, 'a', 3_000), 5_000, 3)
                .await
                .unwrap(),
            FileRecorded::Recorded
        );
        let over = upload(dispute.id, 'b', 2_001);
        assert_eq!(
            store.record_evidence_file(&over, 5_000, 3).await.unwrap(),
            FileRecorded::OverDisputeLimit {
                total: 5_001,
                limit: 5_000
            },
            "{}",
            db.label
        );
        assert!(store.evidence_file(over.id).await.unwrap().is_none());
        // Exactly at the limit is fine; another dispute has its own budget.
        let fits = upload(dispute.id, 'b', 2_000);
        assert_eq!(
            store.record_evidence_file(&fits, 5_000, 3).await.unwrap(),
            FileRecorded::Recorded
        );
        assert_eq!(
            store
                .record_evidence_file(&upload(other.id, 'c', 5_000), 5_000, 3)
                .await
                .unwrap(),
            FileRecorded::Recorded
        );
        assert_eq!(
            store
                .record_evidence_file(&upload(dispute.id, 'd', 1), 1_000_000, 2)
                .await
                .unwrap(),
            FileRecorded::TooManyFiles { limit: 2 }
        );
        assert_eq!(store.evidence_files_in_use(dispute.id).await.unwrap(), (5_000, 2));
        let found = store
            .evidence_file_of_dispute(dispute.id, &"b".repeat(64))
            .await
            .unwrap();
        assert_eq!(found, Some(fits));
        assert!(
            store
                .evidence_file_of_dispute(other.id, &"b".repeat(64))
                .await
                .unwrap()
                .is_none()
        );
    }
}
