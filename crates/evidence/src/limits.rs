//! How large evidence files may be, per file and per dispute, as each processor imposes it.
//!
//! Sizes are in bytes with decimal megabytes (1 MB = 1,000,000 bytes): the processors write "MB" without
//! saying which, and the decimal reading is the smaller, so a file Verdict accepts is accepted by them.

use verdict_domain::Processor;

/// Limits on one dispute's evidence files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub max_file_bytes: u64,
    /// All files of the dispute together (files of removed items do not count).
    pub max_dispute_bytes: u64,
}

const MB: u64 = 1_000_000;

/// Stripe: PDF, JPEG or PNG, the combined size of all evidence files at most 5 MB and fewer than 50 pages
/// (Stripe's dispute evidence guidance, as quoted in help.goodshuffle.com's "Formatting documents and images to
/// upload for disputes"; the 2026-09-30 API adds the page check as `dispute_evidence_page_limit_exceeded`,
/// docs.stripe.com/changelog/endive/2026-09-30/page-limit-validation-for-dispute-evidence).
pub const STRIPE: FileLimits = FileLimits {
    max_file_bytes: 5 * MB,
    max_dispute_bytes: 5 * MB,
};

/// Braintree: png, jpg, jpeg or pdf, at most 4 MB per document upload
/// (developer.paypal.com/braintree/docs/reference/request/document-upload/create, as cited in
/// /work/shared/fixtures/processor-apis/README.md). No per-dispute total is documented; Mastercom's 14.5 MB per
/// transaction (below) bounds it.
pub const BRAINTREE: FileLimits = FileLimits {
    max_file_bytes: 4 * MB,
    max_dispute_bytes: MASTERCOM_RECOMMENDED_TOTAL,
};

/// PayPal: jpg, jpeg, gif, png or pdf, each file under 10 MB and at most 50 MB per API call
/// (developer.paypal.com/platforms/disputes/reference/supported-file-types-sizes).
pub const PAYPAL: FileLimits = FileLimits {
    max_file_bytes: 10 * MB,
    max_dispute_bytes: 50 * MB,
};

/// Adyen's Disputes API v30 (`supplyDefenseDocument`, base64 content) states no size; the networks behind it do.
/// Mastercom recommends at most 14.5 MB of documents per transaction (18 MB hard limit;
/// developer.mastercard.com/mastercom/documentation/additional-resources/image-and-document-requirements), the
/// tightest total found, and the per-file cap is Verdict's upload cap.
pub const ADYEN: FileLimits = FileLimits {
    max_file_bytes: MAX_UPLOAD_BYTES,
    max_dispute_bytes: MASTERCOM_RECOMMENDED_TOTAL,
};

/// Disputes entered by hand go to no processor's API; the networks' limits still apply to what is sent.
pub const MANUAL: FileLimits = ADYEN;

const MASTERCOM_RECOMMENDED_TOTAL: u64 = 14_500_000;

/// The largest file any processor takes (PayPal's 10 MB): the body limit of the upload route.
pub const MAX_UPLOAD_BYTES: u64 = 10 * MB;

/// Verdict's own bound on files per dispute, so that a dispute's evidence stays a readable bundle and its
/// listing bounded; no processor documents a count, and Stripe takes one file per evidence field.
pub const MAX_FILES_PER_DISPUTE: usize = 50;

/// The limits of the processor a dispute came from.
pub fn limits_for(processor: Processor) -> FileLimits {
    match processor {
        Processor::Stripe => STRIPE,
        Processor::Adyen => ADYEN,
        Processor::Paypal => PAYPAL,
        Processor::Braintree => BRAINTREE,
        Processor::Manual => MANUAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_processor_takes_a_file_larger_than_the_upload_cap() {
        for processor in Processor::ALL {
            let limits = limits_for(*processor);
            assert!(limits.max_file_bytes <= MAX_UPLOAD_BYTES, "{processor}");
            assert!(limits.max_file_bytes <= limits.max_dispute_bytes, "{processor}");
        }
        assert_eq!(limits_for(Processor::Braintree).max_file_bytes, 4_000_000);
        assert_eq!(limits_for(Processor::Stripe).max_dispute_bytes, 5_000_000);
    }
}
