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
//! | authorization | the evidence holds an `authorization_code` |
//! | fraud | the evidence holds proof of the cardholder: any of [`FRAUD_PROOF`] |
//!
//! Nothing else counts: not the amount, the time or the attempt, so the same dispute and evidence always get
//! the same outcome.

use verdict_domain::{Dispute, Money, ReasonCategory};

use super::{Evidence, ProcessorApi, ProcessorReply, StepError};

/// Evidence fields that tie a fraud-coded payment to the cardholder (Stripe's names, plus 3-D Secure).
pub const FRAUD_PROOF: &[&str] = &[
    "three_d_secure",
    "access_activity_log",
    "customer_signature",
    "shipping_tracking_number",
    "prior_undisputed_transactions",
];

/// Whether the sandbox rules the dispute won, given the evidence submitted.
pub fn sandbox_outcome(dispute: &Dispute, evidence: &Evidence) -> bool {
    match dispute.reason_code.category() {
        ReasonCategory::ConsumerDispute | ReasonCategory::ProcessingError => true,
        ReasonCategory::Authorization => evidence.has_any(&["authorization_code"]),
        ReasonCategory::Fraud => evidence.has_any(FRAUD_PROOF),
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
        evidence: &Evidence,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        Ok(ProcessorReply {
            reference: Some(format!("sandbox-evidence-{idempotency_key}")),
            decided_outcome: Some(sandbox_outcome(dispute, evidence)),
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
