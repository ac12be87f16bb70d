//! Documents generated for a dispute (the defense sent to the processor, the case file kept for people), as
//! the event log names them: which one, which version, and the hash of what was rendered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The cover letter, evidence index and timeline sent to the processor.
    Defense,
    /// One page of the dispute's facts, evidence, decisions and timeline, for people.
    CaseFile,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 2] = [DocumentKind::Defense, DocumentKind::CaseFile];

    pub fn as_str(&self) -> &'static str {
        match self {
            DocumentKind::Defense => "defense",
            DocumentKind::CaseFile => "case_file",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DocumentKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::invalid(format!("unknown document kind `{s}`")))
    }
}

/// A generated document as the event log names it: never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    pub document_id: Uuid,
    pub kind: DocumentKind,
    /// 1 for the dispute's first document of this kind, then +1 each.
    pub version: i32,
    /// Lower-case hex SHA-256 of the PDF.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::machine::{Action, Actor, Change, Command, apply, decide, open, replay};
    use crate::{CardNetwork, Currency, Customer, DisputeId, Locale, Money, NewDispute, Processor, ReasonCode, Stage};
    use crate::{Dispute, Status};

    fn dispute() -> Dispute {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default();
        let new = NewDispute {
            processor: Processor::Stripe,
            processor_dispute_id: "dp_1".into(),
            payment_reference: "ch_1".into(),
            order_reference: None,
            seller_id: None,
            customer: Customer {
                name: None,
                email: None,
                locale: Locale::En,
            },
            amount: Money::new(100, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}")),
            reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap_or_else(|e| panic!("{e}")),
            reason_code_raw: "13.1".into(),
            stage: Stage::Chargeback,
            due_by: None,
            opened_at: at,
        };
        let command = Command::new(Actor::system("test"), Action::Open(Box::new(new)));
        let decision = open(DisputeId::new_v7(), &command, at).unwrap_or_else(|e| panic!("{e}"));
        replay(&decision.events).unwrap_or_else(|| panic!("no dispute"))
    }

    fn record(kind: DocumentKind, version: i32) -> Command {
        Command::new(
            Actor::analyst("jane"),
            Action::RecordDocument {
                document: DocumentRef {
                    document_id: Uuid::now_v7(),
                    kind,
                    version,
                    sha256: "ab".repeat(32),
                },
            },
        )
    }

    #[test]
    fn a_generation_is_an_event_that_changes_nothing_but_the_version() {
        let mut d = dispute();
        let before = d.clone();
        let now = d.updated_at;
        let decision = decide(&d, &record(DocumentKind::Defense, 1), now).unwrap_or_else(|e| panic!("{e}"));
        assert!(decision.steps.is_empty() && decision.timers.is_empty());
        let [event] = decision.events.as_slice() else {
            panic!("one event")
        };
        assert!(matches!(&event.change, Change::DocumentGenerated { document } if document.version == 1));
        assert_eq!(event.change.kind().as_str(), "document_generated");
        apply(&mut d, event);
        assert_eq!(d.version, before.version + 1);
        assert_eq!(d.status, before.status);
        assert!(
            decide(&d, &record(DocumentKind::Defense, 0), now).is_err(),
            "versions start at 1"
        );
    }

    #[test]
    fn no_defense_is_generated_once_the_dispute_is_submitted_or_closed_but_a_case_file_is() {
        let mut d = dispute();
        let now = d.updated_at;
        for status in [Status::Submitted, Status::Won, Status::Accepted] {
            d.status = status;
            assert!(decide(&d, &record(DocumentKind::Defense, 1), now).is_err(), "{status}");
            assert!(decide(&d, &record(DocumentKind::CaseFile, 1), now).is_ok(), "{status}");
        }
    }

    #[test]
    fn a_generation_event_reads_back_from_its_stored_form() {
        let d = dispute();
        let decision = decide(&d, &record(DocumentKind::CaseFile, 3), d.updated_at).unwrap_or_else(|e| panic!("{e}"));
        let stored = serde_json::to_value(&decision.events[0].change).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored["type"], "document_generated");
        assert_eq!(stored["document"]["kind"], "case_file");
        let back: Change = serde_json::from_value(stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, decision.events[0].change);
    }

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in DocumentKind::ALL {
            assert_eq!(kind.as_str().parse::<DocumentKind>(), Ok(kind));
        }
        assert!("letter".parse::<DocumentKind>().is_err());
    }
}
