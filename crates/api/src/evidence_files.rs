//! Evidence file upload and download over plain HTTP, beside `/graphql`.
//!
//! `POST /disputes/{id}/evidence-files` takes the file's raw bytes as the body (any `Content-Type`; the type is
//! sniffed from the bytes) and its name in the `X-File-Name` header (percent-encoded UTF-8 allowed). As on
//! `/graphql`, the caller is authenticated before the body is read, and the body is read only up to the
//! processor's per-file limit (413 past it, and at once when `Content-Length` says so). Anything but PDF, PNG
//! or JPEG is refused with 415 and nothing is stored; a file that would take the dispute past its processor's
//! total is refused with 413. The answer is the upload's `fileId`, which `addEvidence` references.
//!
//! `GET /disputes/{id}/evidence-files/{fileId}` serves an upload of that dispute to analysts and above (files
//! carry personal data; viewers see none), as an attachment with its sniffed type.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use uuid::Uuid;
use verdict_domain::evidence::display_file_name;
use verdict_domain::{DisputeId, Status};
use verdict_evidence::{FileStore, FileStoreError, MAX_FILES_PER_DISPUTE, inspect, limits_for};
use verdict_store::{FileRecorded, NewEvidenceFile};

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// The header that carries the uploader's file name.
pub const FILE_NAME_HEADER: &str = "x-file-name";

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/disputes/{id}/evidence-files", post(upload))
        .route("/disputes/{id}/evidence-files/{file_id}", get(download))
        .route("/seller-uploads/{token}", post(seller_upload))
}

/// What an upload answers.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Uploaded {
    file_id: Uuid,
    sha256: String,
    size_bytes: u64,
    content_type: &'static str,
    file_name: String,
}

fn unsupported(message: String) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "UNSUPPORTED_MEDIA_TYPE" } }]
    });
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(body)).into_response()
}

fn file_store(state: &AppState) -> Result<&Arc<dyn FileStore>, ApiError> {
    state
        .evidence_files
        .as_ref()
        .ok_or_else(|| ApiError::Internal("evidence file storage is not configured ([evidence] dir)".into()))
}

async fn caller(state: &AppState, headers: &HeaderMap, role: Role) -> Result<Principal, ApiError> {
    let principal = state.caller(headers).await?;
    principal.require(role)?;
    Ok(principal)
}

fn dispute_id(raw: &str) -> Result<DisputeId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("{raw:?} is not a dispute id")))
}

fn file_name(headers: &HeaderMap) -> String {
    let raw = headers
        .get(FILE_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let decoded = percent_decode(raw);
    display_file_name(&decoded)
}

/// `%XX` sequences decoded as UTF-8 (lossily); anything else kept as it is.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn upload(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    match upload_inner(&state, &id, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn upload_inner(state: &AppState, id: &str, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    // Who asks comes first: an unknown caller's body is never read.
    let caller = caller(state, headers, Role::Analyst).await?;
    let id = dispute_id(id)?;
    store_upload(state, id, caller.actor().label(), headers, body).await
}

/// `POST /seller-uploads/{token}`: a seller's file for the dispute a signed, unexpired link names (see
/// seller_links.rs), recorded as uploaded by `seller:<seller id>`; the same limits as an analyst's upload.
async fn seller_upload(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let links = state
            .seller_links
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("seller upload links are not configured".into()))?;
        let id = links.verify(&token, state.engine.clock().now())?;
        let dispute = state
            .engine
            .store()
            .load(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
        let seller = dispute.seller_id.unwrap_or_else(|| "unknown".to_owned());
        store_upload(&state, id, format!("seller:{seller}"), &headers, body).await
    };
    match answer.await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// Stores one evidence file of dispute `id` for `uploaded_by`, within the processor's limits.
async fn store_upload(
    state: &AppState,
    id: DisputeId,
    uploaded_by: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let files = file_store(state)?;
    let store = state.engine.store();
    let dispute = store
        .load(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    if !dispute.status.is_open() || dispute.status == Status::Submitted {
        return Err(ApiError::InvalidInput(format!(
            "the evidence of a {} dispute can no longer change",
            dispute.status
        )));
    }
    let limits = limits_for(dispute.processor);
    let too_large = |size: Option<u64>| {
        ApiError::PayloadTooLarge(format!(
            "{} evidence files are at most {} bytes each{}",
            dispute.processor,
            limits.max_file_bytes,
            size.map(|s| format!("; this one is {s}")).unwrap_or_default()
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|n| *n > limits.max_file_bytes) {
        return Err(too_large(Some(size)));
    }
    let limit = usize::try_from(limits.max_file_bytes).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(err) if crate::is_length_limit(&err) => return Err(too_large(None)),
        Err(err) => return Err(ApiError::InvalidInput(format!("reading the file failed: {err}"))),
    };
    let inspected = match inspect(&bytes, limits.max_file_bytes) {
        Ok(inspected) => inspected,
        Err(FileStoreError::TooLarge { size, .. }) => return Err(too_large(Some(size))),
        Err(err @ FileStoreError::UnsupportedType(_)) => return Ok(unsupported(err.to_string())),
        Err(err) => return Err(ApiError::Internal(err.to_string())),
    };
    // Checked before the bytes are stored, and again atomically when the upload is recorded.
    let (used, count) = store.evidence_files_in_use(id).await?;
    let over_total = |total: u64| {
        ApiError::PayloadTooLarge(format!(
            "the dispute's evidence files would come to {total} bytes; {} accepts at most {} per dispute \
             (remove an item's file or make the files smaller)",
            dispute.processor, limits.max_dispute_bytes
        ))
    };
    let too_many =
        || ApiError::PayloadTooLarge(format!("a dispute has at most {MAX_FILES_PER_DISPUTE} evidence files"));
    if count >= MAX_FILES_PER_DISPUTE {
        return Err(too_many());
    }
    if used.saturating_add(inspected.size_bytes) > limits.max_dispute_bytes {
        return Err(over_total(used.saturating_add(inspected.size_bytes)));
    }
    let stored = match files.put(&bytes).await {
        Ok(stored) => stored,
        Err(err @ FileStoreError::UnsupportedType(_)) => return Ok(unsupported(err.to_string())),
        Err(err) => return Err(ApiError::Internal(err.to_string())),
    };
    let record = NewEvidenceFile {
        id: Uuid::now_v7(),
        dispute_id: id,
        sha256: stored.sha256.clone(),
        size_bytes: stored.size_bytes,
        content_type: stored.content_type,
        file_name: file_name(headers),
        uploaded_by,
        uploaded_at: state.engine.clock().now(),
    };
    // A refusal here (another upload won the race) leaves the stored bytes unreferenced: harmless, since a
    // file is only ever served through an upload record.
    match store
        .record_evidence_file(&record, limits.max_dispute_bytes, MAX_FILES_PER_DISPUTE)
        .await?
    {
        FileRecorded::Recorded => {}
        FileRecorded::OverDisputeLimit { total, .. } => return Err(over_total(total)),
        FileRecorded::TooManyFiles { .. } => return Err(too_many()),
    }
    tracing::info!(
        dispute_id = %id,
        file_id = %record.id,
        size_bytes = record.size_bytes,
        content_type = record.content_type.mime(),
        "evidence file uploaded"
    );
    let answer = Uploaded {
        file_id: record.id,
        sha256: record.sha256,
        size_bytes: record.size_bytes,
        content_type: record.content_type.mime(),
        file_name: record.file_name,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn download(
    State(state): State<AppState>,
    Path((id, file_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match download_inner(&state, &id, &file_id, &headers).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn download_inner(state: &AppState, id: &str, file_id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    caller(state, headers, Role::Analyst).await?;
    let files = file_store(state)?;
    let id = dispute_id(id)?;
    let not_found = || ApiError::NotFound(format!("no evidence file {file_id:?} on dispute {id}"));
    let file_id: Uuid = file_id.parse().map_err(|_| not_found())?;
    let record = state
        .engine
        .store()
        .evidence_file(file_id)
        .await?
        .filter(|f| f.dispute_id == id)
        .ok_or_else(not_found)?;
    let bytes = files
        .get(&record.sha256)
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .ok_or_else(|| ApiError::Internal(format!("evidence file {} is missing from the store", record.sha256)))?;
    // An ASCII name for the header; the stored name may hold anything.
    let ascii: String = record
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(record.content_type.mime()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_percent_decoded_and_stripped_of_paths() {
        let mut headers = HeaderMap::new();
        headers.insert(FILE_NAME_HEADER, HeaderValue::from_static("..%2F..%2Fre%C3%A7u.pdf"));
        assert_eq!(file_name(&headers), "reçu.pdf");
        assert_eq!(file_name(&HeaderMap::new()), "upload");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
