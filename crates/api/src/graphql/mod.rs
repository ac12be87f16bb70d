//! The GraphQL schema: queries for inspection and history, mutations for analysts' commands.

mod mailbox;
mod mutation;
mod notifications;
mod operations_admin;
mod query;
mod types;

use async_graphql::{EmptySubscription, Schema};
use verdict_engine::Engine;

pub use mutation::MutationRoot;
pub use query::QueryRoot;

pub type VerdictSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

pub fn build_schema(engine: Engine) -> VerdictSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(engine)
        .limit_depth(12)
        .limit_complexity(5_000)
        .finish()
}

/// The SDL that `verdict schema` prints and graphql/schema.graphql holds.
pub fn schema_sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish().sdl()
}
