//! The pure heart of Verdict: what a dispute is and how it may change.
//!
//! Everything here is deterministic and free of I/O, async and database types, so the rules that decide
//! money can be tested exhaustively. The engine loads a [`Dispute`], asks [`decide`] what a [`Command`]
//! means at a given instant, persists the resulting [`Decision`] in one transaction, and folds the events
//! back with [`apply`].

pub mod backtest;
pub mod claim;
pub mod defense;
pub mod dispute;
pub mod document;
pub mod economics;
pub mod error;
pub mod evidence;
pub mod facts;
pub mod ids;
pub mod liability;
pub mod machine;
pub mod money;
pub mod patterns;
pub mod personal;
pub mod policy;
pub mod reason;
pub mod resolution_histogram;
pub mod respond;

pub use claim::DisputeClaim;
pub use dispute::{Dispute, NewDispute, Processor, Queue, Stage, Status};
pub use document::{DocumentKind, DocumentRef};
pub use economics::{CurrencyCosts, Economics, EconomicsConfig, EconomicsError, EvidenceBand, WinRateBasis, WinRates};
pub use error::DomainError;
pub use evidence::{
    CompellingEvidence, CompellingEvidenceProgram, Completeness, DisputedPayment, DrawnEvidence, EvidenceContentType,
    EvidenceFile, EvidenceItem, EvidenceKind, EvidenceSource, Expectation, QualifyingTransaction, SharedIdentifier,
    compelling_evidence, completeness, completeness_of_kinds, draw_from_facts, expectations,
};
pub use ids::DisputeId;
pub use liability::{
    LiabilityFacts, SellerLiability, SellerRate, SellerTask, SellerTaskPolicy, recovery_due, recovery_step,
    seller_liability, seller_task_due,
};
pub use machine::{
    Action, Actor, ActorKind, Change, Command, Decision, DisputeEvent, EventKind, EvidenceRef, StepKind, StepRequest,
    TimerInstruction, TimerKind, apply, decide, expiry_at, is_outcome, open, opened, processor_transition_allowed,
    refund_step_key, replay, transition_allowed,
};
pub use machine::{link_payload, link_references};
pub use money::{Currency, Money};
pub use patterns::{MonitoringLevel, MonitoringProgram, MonitoringThresholds, OutcomeClass, PatternDimension};
pub use personal::{Customer, CustomerEmail, CustomerName, Locale};
pub use policy::{
    ApprovalClaim, ApprovalRequest, Autonomy, Conditions, OrderSignals, Policy, PolicyActionMark, PolicyError,
    RecommendedAction, Rule, Triage, TriageInput, TriageRun,
};
pub use reason::{CardNetwork, ReasonCategory, ReasonCode};
pub use respond::{MessageChannel, MessageTemplate, RefundRecord};
