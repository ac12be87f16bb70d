//! The sandbox processor: Verdict's stand-in for a processor, so the demo runs to its end with nothing
//! installed. It accepts every request and decides the outcome of submitted evidence by a fixed rule: it
//! invents outcomes, so it runs only when configured (`sandbox = true`, set by `verdict demo` and tests);
//! `verdict serve` refuses it.
//!
//! ## The rule ([`sandbox_outcome`])
//! | reason category | won when |
//! |---|---|
//! | consumer dispute (not received, not as described, cancelled...) | always: the merchant's evidence answers it |
//! | processing error (duplicate, wrong amount, late presentment) | always: the records show the charge was right |
//! | authorization | the submission carries the payment's authorisation checks (AVS, CVV or 3-D Secure results in the order facts) |
//! | fraud | the submission holds proof of the cardholder: an item of any kind in [`FRAUD_PROOF`], or a 3-D Secure result in the order facts |
//!
//! Nothing else counts: not the amount, the time or the attempt, so the same dispute and evidence always get
//! the same outcome.

use verdict_domain::{Dispute, EvidenceKind, Money, ReasonCategory};

use super::{ProcessorApi, ProcessorReply, StepError, Submission};

/// Evidence kinds that tie a fraud-coded payment to the cardholder.
pub const FRAUD_PROOF: &[EvidenceKind] = &[
    EvidenceKind::ProofOfDelivery,
    EvidenceKind::Tracking,
    EvidenceKind::PriorUndisputedTransactions,
];

fn present(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

/// Whether the sandbox rules the dispute won, given the submission.
pub fn sandbox_outcome(dispute: &Dispute, submission: &Submission) -> bool {
    let checks = submission.facts.as_ref().map(|facts| &facts.payment_checks);
    match dispute.reason_code.category() {
        ReasonCategory::ConsumerDispute | ReasonCategory::ProcessingError => true,
        ReasonCategory::Authorization => {
            checks.is_some_and(|c| present(&c.avs_result) || present(&c.cvv_result) || present(&c.three_d_secure))
        }
        ReasonCategory::Fraud => submission.has_any(FRAUD_PROOF) || checks.is_some_and(|c| present(&c.three_d_secure)),
    }
}

pub struct SandboxProcessor;

#[async_trait::async_trait]
impl ProcessorApi for SandboxProcessor {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        Ok(ProcessorReply {
            reference: Some(format!("sandbox-evidence-{idempotency_key}")),
            decided_outcome: Some(sandbox_outcome(dispute, submission)),
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, _dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        Ok(ProcessorReply {
            reference: Some(format!("sandbox-accept-{idempotency_key}")),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn refund(
        &self,
        _dispute: &Dispute,
        _amount: Money,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        Ok(ProcessorReply {
            reference: Some(format!("sandbox-refund-{idempotency_key}")),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }
}
