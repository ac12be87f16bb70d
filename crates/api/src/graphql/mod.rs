//! The GraphQL schema: queries for inspection and history, mutations for analysts' commands.

pub mod actions;
mod available;
mod backtest;
pub mod bulk;
mod documents;
mod enums;
mod evidence;
mod facts;
pub mod limits;
mod loaders;
mod mailbox;
mod mutation;
mod notifications;
mod operations_admin;
mod patterns;
pub(crate) mod payloads;
mod policy;
mod query;
pub mod search;
mod sellers;
mod subscription;
mod types;
mod users;

use async_graphql::{Context, MergedObject, Schema};
use verdict_engine::Engine;

pub use limits::{GraphqlLimits, ReadGate};
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::{DisputeChange, SubscriptionRoot};

pub use actions::{ActionsMutation, RefundLimits};
pub use bulk::run_bulk_jobs;
pub use documents::DocumentsMutation;
pub use payloads::ErrorCode;

/// Every mutation. Each takes an `input` (the step mutations: the step's `id`) and answers its own `XPayload`: what the
/// change made and `userErrors`, the refusals a screen handles (see docs/api.md).
#[derive(MergedObject, Default)]
pub struct Mutation(
    MutationRoot,
    ActionsMutation,
    DocumentsMutation,
    bulk::BulkMutation,
    policy::PolicyMutation,
    backtest::BacktestMutation,
);

/// Every query: the dispute queries (query.rs), the triage policy's (policy.rs) and its backtests'.
#[derive(MergedObject)]
pub struct Query(QueryRoot, policy::PolicyQuery, backtest::BacktestQuery);

pub type VerdictSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// The schema with the default [`GraphqlLimits`] and a read gate sized to a share of the engine's pool.
pub fn build_schema(engine: Engine) -> VerdictSchema {
    let limits = GraphqlLimits::default();
    let gate = ReadGate::new(limits.read_connections_of(engine.store().max_connections()));
    build_schema_with(engine, &limits, gate)
}

/// The schema with the given limits; every read of a dispute's data passes `gate`.
pub fn build_schema_with(engine: Engine, limits: &GraphqlLimits, gate: ReadGate) -> VerdictSchema {
    build_schema_full(engine, limits, gate, RefundLimits::default())
}

/// [`build_schema_with`] with the refund limits by role.
pub fn build_schema_full(
    engine: Engine,
    limits: &GraphqlLimits,
    gate: ReadGate,
    refunds: RefundLimits,
) -> VerdictSchema {
    let lists = loaders::loader(engine.store().clone(), gate.clone());
    Schema::build(
        Query(QueryRoot, policy::PolicyQuery, backtest::BacktestQuery),
        Mutation::default(),
        SubscriptionRoot,
    )
    .data(engine)
    .data(refunds)
    .data(gate)
    .data(lists)
    .extension(limits::RejectNul)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .finish()
}

/// The SDL that `verdict schema` prints and graphql/schema.graphql holds.
pub fn schema_sdl() -> String {
    Schema::build(
        Query(QueryRoot, policy::PolicyQuery, backtest::BacktestQuery),
        Mutation::default(),
        SubscriptionRoot,
    )
    .finish()
    .sdl()
}

/// Runs a database read of this request through the [`ReadGate`].
pub(crate) async fn read<T, E: Into<crate::error::ApiError>>(
    ctx: &Context<'_>,
    read: impl std::future::Future<Output = Result<T, E>>,
) -> async_graphql::Result<T> {
    Ok(ctx.data::<ReadGate>()?.run(read).await?)
}
