//! The committed schema matches the code, and every operation under graphql/ is valid against it.

use std::path::Path;

use apollo_compiler::{ExecutableDocument, Schema};

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_committed_schema_is_what_the_code_serves() {
    let committed = std::fs::read_to_string(repo_file("graphql/schema.graphql")).unwrap();
    assert!(
        committed == verdict_api::schema_sdl(),
        "graphql/schema.graphql is stale: run `cargo run -- schema > graphql/schema.graphql`"
    );
}

#[test]
fn every_operation_file_is_valid_against_the_schema() {
    let sdl = verdict_api::schema_sdl();
    let schema = Schema::parse_and_validate(sdl, "schema.graphql").unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_file("graphql/operations")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("graphql") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        if let Err(errors) = ExecutableDocument::parse_and_validate(&schema, source, &path) {
            panic!("{} is not valid against the schema:\n{errors}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "expected the example operations, found {checked}");
}

#[test]
fn an_invalid_operation_is_caught_by_the_check() {
    let schema = Schema::parse_and_validate(verdict_api::schema_sdl(), "schema.graphql").unwrap();
    let bad = "query { dispute(id: \"x\") { noSuchField } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, bad, "bad.graphql").is_err());
}
