//! The PDF read back with a text extractor: a processor's reviewer (or their tooling) finds the argument and
//! the evidence index in it, accents intact.

use verdict_documents::{render_case_file, render_defense};
use verdict_domain::Locale;

use crate::fixtures::case;

/// The PDF's text without whitespace: lines wrap where the page ends, and an extractor does not always
/// put a space where a line broke, so texts are compared without it.
/// Page footers are taken out, since a sentence may run on across them.
fn text(pdf: &[u8]) -> String {
    let raw = pdf_extract::extract_text_from_mem(pdf).unwrap_or_else(|e| panic!("{e}"));
    let mut text = squeeze(&raw);
    while let Some(start) = text.find("Disputeresponse·").or_else(|| text.find("Casefile·")) {
        let Some(page) = text[start..].find("Page") else { break };
        let Some(of) = text[start + page..].find("of") else {
            break;
        };
        let digits = text[start + page + of + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        text.replace_range(start..start + page + of + 2 + digits, "");
    }
    text
}

fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Writes the PDFs where `DOCUMENTS_DUMP_DIR` says, to look at them (`pdftoppm -png`).
fn dump(name: &str, pdf: &[u8]) {
    if let Some(dir) = std::env::var_os("DOCUMENTS_DUMP_DIR") {
        let path = std::path::PathBuf::from(dir).join(name);
        std::fs::write(&path, pdf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_pdf_carries_the_argument_the_evidence_index_and_the_quoted_messages() {
    for locale in Locale::ALL {
        let case = case(locale);
        let doc = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.pdf.starts_with(b"%PDF-"));
        dump(&format!("defense-{}.pdf", locale.as_str()), &doc.pdf);
        let text = text(&doc.pdf);
        assert!(
            text.contains(&squeeze(&doc.defense.position)),
            "{locale:?}: position missing from\n{text}"
        );
        for paragraph in &doc.defense.paragraphs {
            assert!(
                text.contains(&squeeze(&paragraph.heading)),
                "{locale:?}: {}",
                paragraph.heading
            );
            for point in &paragraph.points {
                assert!(
                    text.contains(&squeeze(&point.statement)),
                    "{locale:?}: point missing: {}\n{text}",
                    point.statement
                );
            }
        }
        assert!(text.contains("Evidenceindex"));
        for item in &case.evidence {
            if let Some(file) = &item.file {
                assert!(
                    text.contains(&squeeze(&file.file_name)),
                    "{locale:?}: {}",
                    file.file_name
                );
                assert!(
                    text.contains(&file.sha256[..12]),
                    "{locale:?}: hash prefix of {}",
                    file.file_name
                );
            }
        }
        let complaint = squeeze(&case.facts.messages[0].body);
        assert!(
            text.contains(&complaint),
            "{locale:?}: quoted message `{complaint}` missing from\n{text}"
        );
        assert!(text.contains(&case.dispute.processor_dispute_id));
    }
}

#[test]
fn the_case_file_pdf_carries_the_facts_and_the_decisions() {
    let case = case(Locale::Fr);
    let doc = render_case_file(&case.input()).unwrap_or_else(|e| panic!("{e}"));
    dump("case-file-fr.pdf", &doc.pdf);
    let text = text(&doc.pdf);
    for expected in [
        "Case file",
        "Hélène Lefèvre",
        "27 rue de la Côte-d'Or",
        "Decisions",
        "Timeline",
        "camille",
    ] {
        assert!(text.contains(&squeeze(expected)), "{expected} missing from\n{text}");
    }
}
