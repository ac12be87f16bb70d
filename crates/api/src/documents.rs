//! Documents over HTTP: a generated document by id (`/documents/{id}.pdf`, `.html`) and a dispute's case file
//! rendered on request (`/disputes/{id}/case-file.pdf`, `.html`).
//!
//! They hold customers' names, addresses and messages, so only keys whose role sees personal data (analysts and
//! up) get them: no token is 401, a viewer 403, an unknown id 404. The answers are never stored by caches or
//! browsers (`Cache-Control: no-store`), and the HTML may load nothing and run nothing.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use uuid::Uuid;
use verdict_domain::{DisputeId, DocumentKind};

use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/documents/{file}", get(document))
        .route("/disputes/{id}/{file}", get(case_file))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pdf,
    Html,
}

/// `name.pdf` or `name.html` into the name and the format.
fn split(file: &str) -> Option<(&str, Format)> {
    if let Some(name) = file.strip_suffix(".pdf") {
        Some((name, Format::Pdf))
    } else {
        file.strip_suffix(".html").map(|name| (name, Format::Html))
    }
}

/// Letters, digits, `-` and `_` only: a file name that cannot break the header.
fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

fn answer(format: Format, file_name: &str, pdf: Vec<u8>, html: String) -> Response {
    let (content_type, body, extension) = match format {
        Format::Pdf => ("application/pdf", pdf, "pdf"),
        Format::Html => ("text/html; charset=utf-8", html.into_bytes(), "html"),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The documents' HTML carries its own styles and nothing else: no scripts, no fetches, no frames.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{file_name}.{extension}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The caller, if their role may see personal data.
async fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let principal = state.caller(headers).await?;
    if !principal.sees_personal_data() {
        return Err(ApiError::Forbidden(format!(
            "documents hold personal data; {} is a {}",
            principal.describe(),
            principal.role
        )));
    }
    Ok(())
}

/// `GET /documents/{id}.pdf` and `.html`: a generated document exactly as it was stored.
async fn document(State(state): State<AppState>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    if let Err(err) = authorised(&state, &headers).await {
        return err.into_response();
    }
    let not_found = || ApiError::NotFound(format!("no document {file}")).into_response();
    let Some((id, format)) = split(&file) else {
        return not_found();
    };
    let Ok(id) = id.parse::<Uuid>() else { return not_found() };
    let stored = match state.graphql_reads.run(state.engine.store().document(id)).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return not_found(),
        Err(err) => return err.into_response(),
    };
    let record = &stored.record;
    let prefix = match record.kind {
        DocumentKind::Defense => "defense",
        DocumentKind::CaseFile => "case-file",
    };
    let name = format!(
        "{prefix}-{}-v{}",
        safe_name(&record.dispute_id.to_string()),
        record.version
    );
    answer(format, &name, stored.pdf, stored.html)
}

/// `GET /disputes/{id}/case-file.pdf` and `.html`: the case file as the dispute stands now, rendered on each
/// request (an export: nothing is stored and the dispute does not change).
async fn case_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    if let Err(err) = authorised(&state, &headers).await {
        return err.into_response();
    }
    let not_found = || ApiError::NotFound(format!("no {file} for dispute {id}")).into_response();
    let format = match split(&file) {
        Some(("case-file", format)) => format,
        _ => return not_found(),
    };
    let Ok(id) = id.parse::<DisputeId>() else {
        return not_found();
    };
    match state.engine.render_document(id, DocumentKind::CaseFile).await {
        Ok(rendered) => answer(format, &format!("case-file-{id}"), rendered.pdf, rendered.html),
        Err(err) => ApiError::from(err).into_response(),
    }
}
