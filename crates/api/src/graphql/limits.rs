//! What one GraphQL request may cost, so that no query can exhaust memory or the connection pool and starve
//! webhooks and workers:
//!
//! - the body is capped ([`GraphqlLimits::body_limit_bytes`]) and read only after the caller authenticated;
//! - a query's cost counts list sizes: a list with a page argument costs `first` times its selection, a
//!   nested list without one [`NESTED_LIST_ESTIMATE`] times, so forty aliases of `disputes(first: 500)`
//!   with nested history are refused before anything runs ([`GraphqlLimits::max_complexity`]);
//! - execution has a deadline ([`GraphqlLimits::timeout_secs`]) and the answer a size bound
//!   ([`GraphqlLimits::max_response_bytes`]);
//! - every database read of a GraphQL request passes the [`ReadGate`], a semaphore sized to a share of the
//!   pool, so GraphQL can hold at most that many connections however many requests are in flight;
//! - NUL characters, which PostgreSQL cannot store, are refused in every string input ([`RejectNul`]).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensions as _, ServerResult, Value, Variables};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How many entries a nested list without a page argument (a dispute's events, timers, steps, messages or
/// notifications) is assumed to hold when a query's cost is counted. A dispute's history is typically a
/// handful of events; the response size bound catches the rare long one.
pub const NESTED_LIST_ESTIMATE: usize = 10;

/// No single field counts more than this, so that summing many refused-anyway fields cannot overflow.
const FIELD_COST_CAP: usize = 1 << 32;

/// The cost of a list field: its page size times the cost of one entry, plus one for the field itself.
pub fn list_cost(first: i32, child_complexity: usize) -> usize {
    let first = usize::try_from(first.max(0)).unwrap_or(0);
    first
        .saturating_mul(child_complexity)
        .saturating_add(1)
        .min(FIELD_COST_CAP)
}

/// The cost of a nested list without a page argument: [`NESTED_LIST_ESTIMATE`] entries.
pub fn nested_list_cost(child_complexity: usize) -> usize {
    NESTED_LIST_ESTIMATE
        .saturating_mul(child_complexity)
        .saturating_add(1)
        .min(FIELD_COST_CAP)
}

/// The `[graphql]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlLimits {
    /// Largest request body; a bigger one is answered 413 unread (default 512 KiB).
    pub body_limit_bytes: usize,
    /// Largest query cost, counting list sizes (default 25 000: a page of 500 disputes' fields, or 100
    /// disputes with their history, timers and steps).
    pub max_complexity: usize,
    /// Deepest selection nesting (default 12).
    pub max_depth: usize,
    /// Seconds a request may take, its wait for read permits included, before it is abandoned with `TIMEOUT`
    /// (default 15). The router answers any request 408 after 30 s, so larger values change nothing.
    pub timeout_secs: u64,
    /// Largest JSON answer; past it the answer is replaced by a `RESPONSE_TOO_LARGE` error (default 8 MiB).
    pub max_response_bytes: usize,
    /// Database connections GraphQL reads may hold at once; unset means a quarter of the pool (at least 1),
    /// leaving the rest to webhooks, workers and mutations.
    pub read_connections: Option<u32>,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            body_limit_bytes: 512 * 1024,
            max_complexity: 25_000,
            max_depth: 12,
            timeout_secs: 15,
            max_response_bytes: 8 * 1024 * 1024,
            read_connections: None,
        }
    }
}

impl GraphqlLimits {
    /// The share of a pool of `pool_size` connections that GraphQL reads may hold.
    pub fn read_connections_of(&self, pool_size: u32) -> usize {
        let share = self.read_connections.unwrap_or(pool_size / 4).max(1);
        usize::try_from(share).unwrap_or(1)
    }
}

/// The semaphore every GraphQL database read passes: at most `limit` of them hold a connection at once.
#[derive(Clone)]
pub struct ReadGate {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Reads run since start: a page of disputes with nested lists costs one per list, not one per dispute.
    reads: Arc<AtomicU64>,
}

impl ReadGate {
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            reads: Arc::default(),
        }
    }

    /// Reads run through this gate so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Takes every permit, so GraphQL reads wait until the result is dropped (tests, maintenance).
    pub async fn hold_all(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .acquire_many_owned(limit)
            .await
            .map_err(|_| ApiError::Internal("the GraphQL read gate is closed".into()))
    }

    /// How many reads may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many reads run now (for tests and metrics).
    pub fn in_use(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// Runs `read` once a permit is free. Database futures are lazy: `read` takes its connection only when
    /// polled here, with the permit held.
    pub async fn run<T, E: Into<ApiError>>(&self, read: impl Future<Output = Result<T, E>>) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Internal("the GraphQL read gate is closed".into()))?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        read.await.map_err(Into::into)
    }
}

/// Refuses a request whose variables or literals carry a NUL character in any string, with
/// `INVALID_INPUT`, before anything executes: PostgreSQL cannot store NUL in text, and SQLite must not
/// hold what PostgreSQL would refuse, so both databases answer alike.
pub struct RejectNul;

impl ExtensionFactory for RejectNul {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RejectNul)
    }
}

#[async_trait::async_trait]
impl Extension for RejectNul {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let in_variables = variables.iter().any(|(_, value)| const_has_nul(value));
        if in_variables || document_has_nul(&document) {
            return Err(async_graphql::Error::from(ApiError::InvalidInput(
                "text inputs must not contain NUL (\\u0000) characters".into(),
            ))
            .extend()
            .into_server_error(Default::default()));
        }
        Ok(document)
    }
}

fn const_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::List(items) => items.iter().any(const_has_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || const_has_nul(v)),
        _ => false,
    }
}

/// Whether a literal argument of the query holds NUL. Variables inside it stand for values checked with
/// the variables; here they count as null. (The parser's literal type is not exported by name, hence the
/// macro.)
macro_rules! literal_has_nul {
    ($literal:expr) => {
        $literal
            .clone()
            .into_const_with(|_| Ok::<_, std::convert::Infallible>(Value::Null))
            .is_ok_and(|value| const_has_nul(&value))
    };
}

fn selection_has_nul(set: &SelectionSet) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            field.node.arguments.iter().any(|(_, v)| literal_has_nul!(v.node))
                || field
                    .node
                    .directives
                    .iter()
                    .any(|d| d.node.arguments.iter().any(|(_, v)| literal_has_nul!(v.node)))
                || selection_has_nul(&field.node.selection_set.node)
        }
        Selection::InlineFragment(fragment) => selection_has_nul(&fragment.node.selection_set.node),
        Selection::FragmentSpread(_) => false,
    })
}

fn document_has_nul(document: &ExecutableDocument) -> bool {
    let in_operations = document.operations.iter().any(|(_, operation)| {
        operation
            .node
            .variable_definitions
            .iter()
            .any(|v| v.node.default_value.as_ref().is_some_and(|d| const_has_nul(&d.node)))
            || selection_has_nul(&operation.node.selection_set.node)
    });
    in_operations
        || document
            .fragments
            .values()
            .any(|fragment| selection_has_nul(&fragment.node.selection_set.node))
}

/// A buffer that refuses to grow past `limit` bytes, so an oversized answer is abandoned while it is being
/// serialised instead of after it was built in full.
pub struct BoundedBuffer {
    pub bytes: Vec<u8>,
    limit: usize,
}

impl BoundedBuffer {
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
        }
    }
}

impl io::Write for BoundedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            return Err(io::Error::other("response size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_costs_multiply_and_never_overflow() {
        assert_eq!(list_cost(50, 10), 501);
        assert_eq!(list_cost(-3, 10), 1);
        assert_eq!(list_cost(i32::MAX, usize::MAX), FIELD_COST_CAP);
        assert_eq!(nested_list_cost(4), 41);
    }

    #[test]
    fn the_read_share_is_a_quarter_of_the_pool_unless_configured() {
        let limits = GraphqlLimits::default();
        assert_eq!(limits.read_connections_of(32), 8);
        assert_eq!(limits.read_connections_of(3), 1);
        let configured = GraphqlLimits {
            read_connections: Some(5),
            ..GraphqlLimits::default()
        };
        assert_eq!(configured.read_connections_of(32), 5);
    }

    #[test]
    fn a_bounded_buffer_refuses_to_grow_past_its_limit() {
        let mut buffer = BoundedBuffer::new(8);
        assert!(serde_json::to_writer(&mut buffer, &"1234").is_ok());
        assert!(serde_json::to_writer(&mut buffer, &"12345678").is_err());
    }

    #[test]
    fn nul_is_found_in_nested_literals_and_values() {
        let document = async_graphql::parser::parse_query("{ a(x: {y: [\"ok\", \"b\\u0000d\"]}) { b } }").unwrap();
        assert!(document_has_nul(&document));
        let clean = async_graphql::parser::parse_query("{ a(x: \"\\\\u0000\") { b } }").unwrap();
        assert!(!document_has_nul(&clean));
        let value = Value::from_json(serde_json::json!({"input": {"name": "a\u{0}b"}})).unwrap();
        assert!(const_has_nul(&value));
    }
}
