//! The documents Verdict writes about a dispute: the defense document sent to the processor and the case
//! file kept for people, each as HTML and PDF.
//!
//! Both are rendered from one view of the dispute (its projection, the marketplace facts, the evidence and
//! the event log) built in [`view`]: the HTML by the minijinja templates in `templates/` (autoescaped, compiled
//! into the binary), the PDF by a small typesetter ([`pdf`]) in the bundled DejaVu Sans, which covers the
//! accents of French, Spanish and Italian. Which argument the defense makes is decided by the domain's pure
//! rules ([`verdict_domain::defense`]); this crate only lays it out. Rendering is pure and deterministic for a
//! given input and `generated_at`, so golden files can pin it down. Storing and serving the documents is the
//! store's and the API's business.

mod html;
mod layout;
mod pdf;
mod view;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
pub use verdict_domain::DocumentKind;
use verdict_domain::defense::Defense;
use verdict_domain::facts::OrderFacts;
use verdict_domain::{Dispute, DisputeEvent, EvidenceItem};

/// Everything a document is rendered from. The evidence items are listed (and numbered) in the order given.
#[derive(Debug, Clone, Copy)]
pub struct DocumentInput<'a> {
    pub dispute: &'a Dispute,
    /// The marketplace's order, when the dispute is linked to one.
    pub facts: Option<&'a OrderFacts>,
    pub evidence: &'a [EvidenceItem],
    /// The dispute's event log, oldest first.
    pub events: &'a [DisputeEvent],
    /// Printed on the document; injected so that rendering is deterministic.
    pub generated_at: DateTime<Utc>,
}

/// The input of [`render_defense`].
pub type DefenseInput<'a> = DocumentInput<'a>;
/// The input of [`render_case_file`].
pub type CaseFileInput<'a> = DocumentInput<'a>;

/// A rendered document in both formats.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedDocument {
    pub kind: DocumentKind,
    pub html: String,
    pub pdf: Vec<u8>,
    /// The argument the document makes, for callers that map it to a processor's fields.
    pub defense: Defense,
}

impl std::fmt::Debug for RenderedDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedDocument")
            .field("kind", &self.kind)
            .field("html_bytes", &self.html.len())
            .field("pdf_bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

impl RenderedDocument {
    /// Lower-case hex SHA-256 of the PDF: what is stored and sent.
    pub fn pdf_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.pdf))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// A template failed to render: a defect in Verdict, never the input's fault.
    #[error("document template failed: {0}")]
    Template(String),
    #[error("PDF could not be written: {0}")]
    Pdf(String),
}

/// The defense document: a cover letter whose argument follows the claim, the evidence index, the customer's
/// messages quoted in their language, and the timeline.
pub fn render_defense(input: &DefenseInput<'_>) -> Result<RenderedDocument, DocumentError> {
    let defense = argue(input);
    let view = view::defense(input, &defense);
    let html = html::render("defense.html", &view)?;
    let pdf = pdf::write(
        &view.title,
        &layout::footer(&view.dispute, "Dispute response"),
        &layout::defense(&view),
    )?;
    Ok(RenderedDocument {
        kind: DocumentKind::Defense,
        html,
        pdf,
        defense,
    })
}

/// The case file: the dispute's facts, evidence, decisions and timeline.
pub fn render_case_file(input: &CaseFileInput<'_>) -> Result<RenderedDocument, DocumentError> {
    let defense = argue(input);
    let view = view::case_file(input, &defense);
    let html = html::render("case_file.html", &view)?;
    let pdf = pdf::write(
        &view.title,
        &layout::footer(&view.dispute, "Case file"),
        &layout::case_file(&view),
    )?;
    Ok(RenderedDocument {
        kind: DocumentKind::CaseFile,
        html,
        pdf,
        defense,
    })
}

fn argue(input: &DocumentInput<'_>) -> Defense {
    verdict_domain::defense::argue(input.dispute, input.facts, input.evidence)
}
