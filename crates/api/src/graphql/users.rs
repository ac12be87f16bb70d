//! People who signed in through the organisation's OpenID Connect provider, for leads choosing whom to
//! assign. Emails are personal data: only admins see them whole.

use async_graphql::{Context, ID, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::CustomerEmail;
use verdict_engine::Engine;
use verdict_store::UserRecord;

use crate::auth::Role;
use crate::error::ApiError;
use crate::graphql::query::principal;

/// A person who signed in at least once; their handle is what assignments and event actors name.
#[derive(SimpleObject)]
pub struct User {
    /// Verdict's id of the person.
    pub id: ID,
    /// The handle in Verdict (from the provider's `preferred_username`, or the subject): pass it as
    /// `assignee` to `assignDispute`.
    pub username: String,
    /// The name the provider gives, if any.
    pub name: Option<String>,
    /// The email the provider gives; masked (`j***@example.com`) for callers below admin.
    pub email: Option<String>,
    /// The role their latest token gave.
    pub role: Role,
    /// The provider that vouches for them (the token's `iss`).
    pub issuer: String,
    /// Their first request.
    pub created_at: DateTime<Utc>,
    /// Their latest request (refreshed at most once a minute).
    pub last_seen_at: DateTime<Utc>,
}

impl User {
    fn shown(record: UserRecord, whole_email: bool) -> Result<Self, ApiError> {
        let email = record.email.map(|email| {
            if whole_email {
                email
            } else {
                CustomerEmail::parse(&email).map_or_else(|_| "***".to_owned(), |e| e.masked())
            }
        });
        Ok(Self {
            id: ID(record.id.to_string()),
            username: record.username,
            name: record.name,
            email,
            role: record
                .role
                .parse()
                .map_err(|_| ApiError::Internal(format!("user {} has a bad role", record.id)))?,
            issuer: record.issuer,
            created_at: record.created_at,
            last_seen_at: record.last_seen_at,
        })
    }
}

/// Every person who signed in, by handle (leads and up).
pub async fn users(ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
    let caller = principal(ctx, Role::Lead)?;
    let whole_email = caller.role >= Role::Admin;
    let records = super::read(ctx, ctx.data::<Engine>()?.store().list_users()).await?;
    Ok(records
        .into_iter()
        .map(|record| User::shown(record, whole_email))
        .collect::<Result<_, _>>()?)
}
