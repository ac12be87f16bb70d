//! CSV of any filtered dispute list: `GET /exports/disputes.csv?filter=JSON&sort=JSON`, where `filter` and
//! `sort` are the `disputes` query's `DisputeFilter` and `DisputeSortInput` as JSON (as GraphQL variables would
//! carry them), with the same meaning and checks.
//!
//! Authenticated like `/graphql` (viewers and above; customers' names and emails masked below the analyst role,
//! as in the API). The file is streamed a keyset page at a time, so an export of any size holds one page in
//! memory and no connection longer than one page's query. Cells that a spreadsheet would run as a formula are
//! quoted with a leading apostrophe.

use std::collections::HashMap;

use async_graphql::InputType;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use verdict_domain::Dispute;
use verdict_engine::timers::TimingPolicy;
use verdict_store::{DisputeFilter, DisputeSort, PageWindow, SortCursor, SortDirection, Store};

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::graphql::search::{self, DisputeSortInput};

/// Rows read per query while streaming.
const EXPORT_PAGE: u64 = 500;

const HEADER: [&str; 22] = [
    "id",
    "processor",
    "processor_dispute_id",
    "payment_reference",
    "order_reference",
    "seller_id",
    "customer_name",
    "customer_email",
    "status",
    "stage",
    "network",
    "reason_code",
    "reason_category",
    "amount_minor",
    "currency",
    "amount",
    "due_by",
    "act_by",
    "opened_at",
    "queue",
    "assignee",
    "version",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/exports/disputes.csv", get(disputes_csv))
}

/// One CSV cell: quoted when it holds a separator, a quote or a line break; a leading `=`, `+`, `-`, `@`, tab
/// or carriage return is prefixed with `'` so spreadsheets show it as text.
fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn line(cells: impl IntoIterator<Item = String>) -> String {
    let mut line = cells.into_iter().map(|c| cell(&c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// A dispute's row; the customer masked unless `unmasked`.
fn row(d: &Dispute, unmasked: bool, timing: &TimingPolicy) -> String {
    let opt = |v: Option<&str>| v.unwrap_or_default().to_owned();
    let c = &d.customer;
    line([
        d.id.to_string(),
        d.processor.to_string(),
        d.processor_dispute_id.clone(),
        d.payment_reference.clone(),
        opt(d.order_reference.as_deref()),
        opt(d.seller_id.as_deref()),
        c.name
            .as_ref()
            .map(|n| if unmasked { n.expose().to_owned() } else { n.masked() })
            .unwrap_or_default(),
        c.email
            .as_ref()
            .map(|e| if unmasked { e.expose().to_owned() } else { e.masked() })
            .unwrap_or_default(),
        d.status.to_string(),
        d.stage.to_string(),
        d.reason_code.network().to_string(),
        d.reason_code.code().to_owned(),
        d.reason_code.category().as_str().to_owned(),
        d.amount.minor_units().to_string(),
        d.amount.currency().code().to_owned(),
        d.amount.to_string(),
        d.due_by.map(|at| at.to_rfc3339()).unwrap_or_default(),
        d.due_by.map(|at| timing.act_by(at).to_rfc3339()).unwrap_or_default(),
        d.opened_at.to_rfc3339(),
        d.queue.map(|q| q.to_string()).unwrap_or_default(),
        opt(d.assignee.as_deref()),
        d.version.to_string(),
    ])
}

/// Parses a query parameter holding a GraphQL input as JSON.
fn graphql_input<T: InputType>(params: &HashMap<String, String>, name: &str) -> Result<Option<T>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ApiError::InvalidInput(format!("`{name}` must be JSON: {e}")))?;
    let value = async_graphql::Value::from_json(json)
        .map_err(|e| ApiError::InvalidInput(format!("`{name}` is not a GraphQL input: {e}")))?;
    T::parse(Some(value))
        .map(Some)
        .map_err(|e| ApiError::InvalidInput(format!("`{name}`: {}", e.into_server_error(Default::default()).message)))
}

/// What the export covers, from the request: the checked filter and the order.
fn request(
    params: &HashMap<String, String>,
    caller: &Principal,
    timing: &TimingPolicy,
) -> Result<(DisputeFilter, DisputeSort, SortDirection), ApiError> {
    if let Some(unknown) = params.keys().find(|k| *k != "filter" && *k != "sort") {
        return Err(ApiError::InvalidInput(format!(
            "unknown parameter {unknown:?}: an export takes `filter` and `sort`"
        )));
    }
    let filter: search::DisputeFilter = graphql_input(params, "filter")?.unwrap_or_default();
    let sort: DisputeSortInput = graphql_input(params, "sort")?.unwrap_or_default();
    let (sort, direction) = sort.store_sort();
    Ok((filter.to_store(caller, timing)?, sort, direction))
}

struct Cursor {
    store: Store,
    timing: TimingPolicy,
    filter: DisputeFilter,
    sort: DisputeSort,
    direction: SortDirection,
    unmasked: bool,
    after: Option<SortCursor>,
    done: bool,
}

/// The next chunk of the file: one page of rows, or the end.
async fn next_chunk(mut cursor: Cursor) -> Option<(Result<String, std::io::Error>, Cursor)> {
    if cursor.done {
        return None;
    }
    let window = PageWindow::Forward {
        first: EXPORT_PAGE,
        after: cursor.after,
    };
    match cursor
        .store
        .search(&cursor.filter, cursor.sort, cursor.direction, window)
        .await
    {
        Ok(page) => {
            cursor.done = !page.has_next_page;
            cursor.after = page.items.last().map(|(c, _)| *c);
            let chunk: String = page
                .items
                .iter()
                .map(|(_, d)| row(d, cursor.unmasked, &cursor.timing))
                .collect();
            Some((Ok(chunk), cursor))
        }
        Err(err) => {
            // The status line is gone by now: the client sees a truncated body (the connection is cut).
            tracing::error!(error = %err, "dispute export failed midway");
            cursor.done = true;
            Some((Err(std::io::Error::other("export failed")), cursor))
        }
    }
}

async fn disputes_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let caller = match state.caller(&headers).await {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = caller.require(Role::Viewer) {
        return err.into_response();
    }
    let timing = state.engine.timing().clone();
    let (filter, sort, direction) = match request(&params, &caller, &timing) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let cursor = Cursor {
        store: state.engine.store().clone(),
        timing,
        filter,
        sort,
        direction,
        unmasked: caller.sees_personal_data(),
        after: None,
        done: false,
    };
    let head = futures::stream::once(async { Ok::<_, std::io::Error>(line(HEADER.map(str::to_owned))) });
    let rows = futures::stream::unfold(cursor, next_chunk);
    let body = Body::from_stream(futures::StreamExt::chain(head, rows));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"disputes.csv\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-12"), "'-12");
        assert_eq!(line(["a".to_owned(), "b\nc".to_owned()]), "a,\"b\nc\"\r\n");
    }
}
