//! The rendered HTML is compared byte for byte with files under `tests/golden/`. After a deliberate change,
//! regenerate them with `UPDATE_GOLDEN=1 cargo test -p verdict-documents` and read the diff before committing.

use std::path::PathBuf;

use verdict_documents::{render_case_file, render_defense};
use verdict_domain::Locale;

use crate::fixtures::case;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\n expected: {:?}\n   actual: {:?}\n(UPDATE_GOLDEN=1 \
             regenerates it)",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn the_defense_document_matches_its_golden_file_in_each_customer_language() {
    for locale in Locale::ALL {
        let case = case(locale);
        let doc = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
        check(&format!("defense-{}.html", locale.as_str()), &doc.html);
    }
}

#[test]
fn the_case_file_matches_its_golden_file() {
    for locale in [Locale::En, Locale::Fr] {
        let case = case(locale);
        let doc = render_case_file(&case.input()).unwrap_or_else(|e| panic!("{e}"));
        check(&format!("case-file-{}.html", locale.as_str()), &doc.html);
    }
}

#[test]
fn rendering_is_deterministic() {
    let case = case(Locale::Es);
    let a = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
    let b = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.html, b.html);
    assert_eq!(a.pdf_sha256(), b.pdf_sha256());
}

#[test]
fn customer_messages_are_quoted_in_their_language_and_marked_as_such() {
    let case = case(Locale::Fr);
    let doc = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
    assert!(doc.html.contains(r#"<blockquote lang="fr">"#), "{}", doc.html);
    assert!(doc.html.contains("original language: French"));
    // Quoted as written (escaped for HTML, never translated).
    assert!(
        doc.html.contains("je n&#x27;ai jamais reçu le téléphone commandé"),
        "{}",
        doc.html
    );
    let english = render_defense(&crate::fixtures::case(Locale::En).input()).unwrap_or_else(|e| panic!("{e}"));
    assert!(english.html.contains(r#"<blockquote lang="en">"#));
    assert!(!english.html.contains("original language"));
}

#[test]
fn what_a_customer_wrote_cannot_inject_markup() {
    let mut case = case(Locale::En);
    case.facts.messages[0].body = "<script>alert(1)</script> & <b>bold</b>".into();
    let doc = render_defense(&case.input()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!doc.html.contains("<script>"));
    assert!(
        doc.html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{}",
        doc.html
    );
}
