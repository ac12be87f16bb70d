//! The committed schema matches the code, and every example under graphql/examples is valid against it and
//! runs with its variables.

use std::path::Path;

use apollo_compiler::{ExecutableDocument, Schema};

pub(crate) fn repo_file(path: &str) -> std::path::PathBuf {
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

/// The example operations: each `NAME.graphql` with its variables in `NAME.json`.
fn examples() -> Vec<(String, String, serde_json::Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo_file("graphql/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("graphql") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let variables = std::fs::read_to_string(path.with_extension("json"))
            .unwrap_or_else(|_| panic!("{} has no variables file (NAME.json)", path.display()));
        let variables = serde_json::from_str(&variables).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        found.push((path.display().to_string(), source, variables));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn every_example_is_valid_against_the_schema_and_every_mutation_has_one() {
    let sdl = verdict_api::schema_sdl();
    let schema = Schema::parse_and_validate(sdl, "schema.graphql").unwrap_or_else(|e| panic!("{e}"));
    let mut used = std::collections::BTreeSet::new();
    for (path, source, _) in examples() {
        let document = ExecutableDocument::parse_and_validate(&schema, source, &path)
            .unwrap_or_else(|errors| panic!("{path} is not valid against the schema:\n{errors}"));
        for operation in document.operations.iter() {
            for selection in &operation.selection_set.selections {
                if let apollo_compiler::executable::Selection::Field(field) = selection {
                    used.insert(format!("{}.{}", operation.operation_type, field.name));
                }
            }
        }
    }
    let apollo_compiler::schema::ExtendedType::Object(mutation) = &schema.types["Mutation"] else {
        panic!("no Mutation");
    };
    let without: Vec<String> = mutation
        .fields
        .keys()
        .map(|name| format!("mutation.{name}"))
        .filter(|name| !used.contains(name))
        .collect();
    assert!(
        without.is_empty(),
        "mutations without an example in graphql/examples: {without:?}"
    );
    for screen in [
        "query.disputes",
        "query.dispute",
        "query.audit",
        "query.disputePatterns",
    ] {
        assert!(used.contains(screen), "no example reads {screen}");
    }
}

/// Each example runs on a fresh app as an admin with its variables: the server accepts it (no validation
/// error: every error it may answer is one of Verdict's, with a code, such as NOT_FOUND for the example ids).
#[tokio::test]
async fn every_example_runs_on_a_fresh_app_with_its_variables() {
    let db = &crate::app::test_databases().await.unwrap()[0];
    let app = crate::app::TestApp::start(db).await;
    for (path, source, variables) in examples() {
        if source.contains("subscription ") {
            continue;
        }
        let answer = app.gql(&app.admin, &source, variables).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        for error in answer.body["errors"].as_array().into_iter().flatten() {
            // A resolver's error has a path; a parse or validation error (also INVALID_INPUT) has none.
            let code = error["extensions"]["code"].as_str();
            assert!(
                error.get("path").is_some() && code.is_some_and(|c| c != "INTERNAL"),
                "{path} was not accepted as written: {error}"
            );
        }
        for refusal in answer.user_errors() {
            let code = refusal["code"].as_str().unwrap();
            assert!(
                [
                    "NOT_FOUND",
                    "VERSION_CONFLICT",
                    "ILLEGAL_TRANSITION",
                    "INVALID_INPUT",
                    "ALREADY_EXISTS"
                ]
                .contains(&code),
                "{path}: {refusal}"
            );
        }
    }
}

#[test]
fn an_invalid_operation_is_caught_by_the_check() {
    let schema = Schema::parse_and_validate(verdict_api::schema_sdl(), "schema.graphql").unwrap();
    let bad = "query { dispute(id: \"x\") { noSuchField } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, bad, "bad.graphql").is_err());
}
