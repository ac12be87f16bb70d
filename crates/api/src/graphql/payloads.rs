//! The mutations' answers. Every mutation `x` returns an `XPayload`: what the change made (the dispute, the
//! steps and timers it created, or the mutation's own result) and `userErrors`, the refusals a caller is
//! expected to handle (a stale version, an illegal transition, missing evidence, invalid input, something not
//! found or already there). A refused mutation changed nothing and answers its payload with the result fields
//! null or empty and one user error. Not being allowed (UNAUTHENTICATED, FORBIDDEN), the server's limits and
//! internal faults stay GraphQL errors with `extensions.code`: a screen cannot fix them by changing the input.
//! [`payload`] makes that split, once, from the error's code.

use async_graphql::{Enum, SimpleObject};
use verdict_domain::{Decision, DisputeId, TimerInstruction};
use verdict_engine::Engine;

use super::types::{Step, Timer, views};
use crate::error::ApiError;

/// Why a mutation was refused: the part of [`ErrorCode`] a caller fixes by changing the input, with the same
/// names.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UserErrorCode {
    /// The dispute changed since the caller read it (or is not assigned as the caller expected): reload it.
    VersionConflict,
    /// The dispute's state does not allow this change (e.g. accepting a dispute already won).
    IllegalTransition,
    /// Required evidence is missing for the claim; add it, or a lead submits with an override reason.
    MissingEvidence,
    /// An argument is malformed or out of range.
    InvalidInput,
    /// Something the input names does not exist (a dispute, an order, a step, a key).
    NotFound,
    /// What the input would create exists already (a dispute from the same processor id, a key's name).
    AlreadyExists,
}

/// Every code an error of Verdict's carries: the `extensions.code` of a GraphQL error, of which the codes of
/// `userErrors` are the part a caller can fix by changing the input ([`UserErrorCode`]). A bulk item reports the
/// one its dispute's single mutation answered.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ErrorCode {
    /// No token, or an unknown, revoked, expired or badly signed one.
    Unauthenticated,
    /// The caller's role may not do this (including a refund over the role's limit).
    Forbidden,
    /// Something named does not exist (a dispute, an order, a step, a key).
    NotFound,
    /// The dispute's state does not allow this change.
    IllegalTransition,
    /// The dispute changed since the caller read it (or is not assigned as the caller expected): reload it.
    VersionConflict,
    /// An argument is malformed or out of range.
    InvalidInput,
    /// What the input would create exists already.
    AlreadyExists,
    /// Required evidence is missing for the claim.
    MissingEvidence,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The query costs more than the configured limit.
    QueryTooComplex,
    /// The query nests deeper than the configured limit.
    QueryTooDeep,
    /// The answer would be larger than the configured limit.
    ResponseTooLarge,
    /// The request ran longer than the configured limit.
    Timeout,
    /// The database or an outside service cannot answer now: retry.
    Unavailable,
    /// A subscriber fell too far behind; its subscription ended.
    SubscriberLagged,
    /// A fault; the cause is logged, never shown.
    Internal,
}

impl ErrorCode {
    /// The code as clients read it (`VERSION_CONFLICT`): the enum value's GraphQL name, so that the two never
    /// differ.
    pub fn name(self) -> &'static str {
        <Self as async_graphql::EnumType>::items()
            .iter()
            .find(|item| item.value == self)
            .map_or("INTERNAL", |item| item.name)
    }

    /// The code named `name`, as [`ErrorCode::name`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as async_graphql::EnumType>::items()
            .iter()
            .find(|item| item.name == name)
            .map(|item| item.value)
    }

    /// The user error this code is answered as by a mutation; `None` for errors that stay GraphQL errors.
    pub fn user_error(self) -> Option<UserErrorCode> {
        match self {
            ErrorCode::VersionConflict => Some(UserErrorCode::VersionConflict),
            ErrorCode::IllegalTransition => Some(UserErrorCode::IllegalTransition),
            ErrorCode::MissingEvidence => Some(UserErrorCode::MissingEvidence),
            ErrorCode::InvalidInput => Some(UserErrorCode::InvalidInput),
            ErrorCode::NotFound => Some(UserErrorCode::NotFound),
            ErrorCode::AlreadyExists => Some(UserErrorCode::AlreadyExists),
            ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::PayloadTooLarge
            | ErrorCode::QueryTooComplex
            | ErrorCode::QueryTooDeep
            | ErrorCode::ResponseTooLarge
            | ErrorCode::Timeout
            | ErrorCode::Unavailable
            | ErrorCode::SubscriberLagged
            | ErrorCode::Internal => None,
        }
    }
}

impl UserErrorCode {
    /// The user error an `extensions.code` stands for; `None` for errors that stay GraphQL errors.
    fn of_code(code: &str) -> Option<UserErrorCode> {
        ErrorCode::parse(code).and_then(ErrorCode::user_error)
    }

    /// The argument a refusal of this kind is about, below the mutation's `input` (or other argument).
    fn field(self, root: &str) -> Vec<String> {
        let mut path = vec![root.to_owned()];
        match self {
            UserErrorCode::VersionConflict => path.push("expectedVersion".to_owned()),
            UserErrorCode::NotFound if root == "input" => path.push("id".to_owned()),
            _ => {}
        }
        path
    }
}

/// A refusal the caller can act on; nothing was changed.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserError {
    /// What kind of refusal.
    pub code: UserErrorCode,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The argument it is about, as a path from the mutation's arguments (`["input", "expectedVersion"]`).
    pub field: Option<Vec<String>>,
}

/// A payload that can carry a refusal instead of a result.
pub(crate) trait Refusable: Sized {
    /// The payload of a refused mutation: no result, these errors.
    fn refused(errors: Vec<UserError>) -> Self;
}

/// The mutation's answer: its payload, or the payload of its refusal when `result` failed in a way the caller
/// is expected to handle, or the GraphQL error for anything else. `root` names the argument the input was
/// passed as (`input`, or `id` for the step mutations).
pub(crate) fn payload<P: Refusable>(result: async_graphql::Result<P>, root: &str) -> async_graphql::Result<P> {
    let err = match result {
        Ok(payload) => return Ok(payload),
        Err(err) => err,
    };
    let code = err
        .extensions
        .as_ref()
        .and_then(|ext| ext.get("code"))
        .and_then(|code| match code {
            async_graphql::Value::String(code) => UserErrorCode::of_code(code),
            _ => None,
        });
    match code {
        Some(code) => Ok(P::refused(vec![UserError {
            code,
            field: Some(code.field(root)),
            message: err.message,
        }])),
        None => Err(err),
    }
}

/// The steps and timers a committed decision created, read back as they now stand.
pub(crate) async fn created(
    engine: &Engine,
    id: DisputeId,
    decision: &Decision,
) -> Result<(Vec<Step>, Vec<Timer>), ApiError> {
    let mut steps = Vec::new();
    if !decision.steps.is_empty() {
        let keys: Vec<&str> = decision.steps.iter().map(|s| s.idempotency_key.as_str()).collect();
        let rows = engine.store().steps(id).await?;
        steps = views(
            rows.into_iter()
                .filter(|s| keys.contains(&s.idempotency_key.as_str()))
                .collect(),
        )?;
    }
    let set: Vec<(String, chrono::DateTime<chrono::Utc>)> = decision
        .timers
        .iter()
        .filter_map(|t| match t {
            TimerInstruction::Set { kind, due_at } => Some((kind.label(), *due_at)),
            TimerInstruction::CancelAll => None,
        })
        .collect();
    let mut timers = Vec::new();
    if !set.is_empty() {
        let rows = engine.store().timers(id).await?;
        timers = views(
            rows.into_iter()
                .filter(|t| t.status == "pending" && set.iter().any(|(kind, at)| *kind == t.kind && *at == t.due_at))
                .collect(),
        )?;
    }
    Ok((steps, timers))
}

/// Declares payloads of mutations that change one dispute through the engine: the dispute, the steps and
/// timers the change created, and the user errors.
macro_rules! dispute_payload {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            /// The dispute as the change left it; null when refused.
            pub dispute: Option<$crate::graphql::types::Dispute>,
            /// The steps the change enqueued (pending until a worker performs them).
            pub steps: Vec<$crate::graphql::types::Step>,
            /// The timers the change set (reminders, act-by, deadline, outcome check).
            pub timers: Vec<$crate::graphql::types::Timer>,
            /// Why the change was refused; empty when it was made.
            pub user_errors: Vec<$crate::graphql::payloads::UserError>,
        }

        impl $crate::graphql::payloads::Refusable for $name {
            fn refused(user_errors: Vec<$crate::graphql::payloads::UserError>) -> Self {
                Self { dispute: None, steps: Vec::new(), timers: Vec::new(), user_errors }
            }
        }

        impl $name {
            /// The payload of a change that was made.
            #[allow(dead_code)]
            pub(crate) fn made(
                dispute: $crate::graphql::types::Dispute,
                (steps, timers): (Vec<$crate::graphql::types::Step>, Vec<$crate::graphql::types::Timer>),
            ) -> Self {
                Self { dispute: Some(dispute), steps, timers, user_errors: Vec::new() }
            }
        }
    )+};
}

pub(crate) use dispute_payload;

/// Declares a payload whose result is one value (a step, a key, an order): the value, null when refused, and
/// the user errors.
macro_rules! result_payload {
    ($(#[$meta:meta])* $name:ident { $(#[$fmeta:meta])* $field:ident: $ty:ty }) => {
        $(#[$meta])*
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            $(#[$fmeta])*
            pub $field: Option<$ty>,
            /// Why the mutation was refused; empty when it was made.
            pub user_errors: Vec<$crate::graphql::payloads::UserError>,
        }

        impl $crate::graphql::payloads::Refusable for $name {
            fn refused(user_errors: Vec<$crate::graphql::payloads::UserError>) -> Self {
                Self { $field: None, user_errors }
            }
        }

        impl $name {
            /// The payload of a mutation that was made.
            pub(crate) fn made(value: $ty) -> Self {
                Self { $field: Some(value), user_errors: Vec::new() }
            }
        }
    };
}

pub(crate) use result_payload;

#[cfg(test)]
mod tests {
    use async_graphql::EnumType;

    use super::{ErrorCode, UserErrorCode};

    #[test]
    fn every_user_error_code_is_the_error_code_of_the_same_name() {
        for item in UserErrorCode::items() {
            let code = ErrorCode::parse(item.name);
            assert_eq!(code.and_then(ErrorCode::user_error), Some(item.value), "{}", item.name);
        }
        for item in ErrorCode::items() {
            assert_eq!(ErrorCode::parse(item.value.name()), Some(item.value));
        }
    }
}
