//! API keys, people and roles. A key's token is shown once at creation; only its hash is stored. Every
//! GraphQL request carries `Authorization: Bearer TOKEN`: an API key (services) or, when `[oidc]` is
//! configured, a person's ID token from the organisation's provider (see identity.rs). Every event records
//! the key's name or the person's handle as its actor.

use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderMap, header};
use rand::RngCore;
use verdict_domain::Actor;
use verdict_store::{ApiKeyRecord, KeySelector, Revocation, SignIn, Store, StoreError, hash_token};

use crate::error::ApiError;
use crate::identity::OidcVerifier;

/// What a key may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, async_graphql::Enum)]
pub enum Role {
    /// Reads disputes and their history, with personal data masked.
    Viewer,
    /// Also opens disputes, transitions them, adds notes and takes unassigned disputes.
    Analyst,
    /// Also reassigns disputes and overrides (reopens closed disputes by hand).
    Lead,
    /// Also manages API keys.
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Lead => "lead",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "analyst" => Ok(Role::Analyst),
            "lead" => Ok(Role::Lead),
            "admin" => Ok(Role::Admin),
            other => Err(ApiError::InvalidInput(format!(
                "unknown role {other:?} (viewer, analyst, lead, admin)"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller of a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A service (or a script) with an API key; `name` is the key's name.
    ApiKey,
    /// A person signed in through the OpenID Connect provider; `name` is their handle in `users`.
    User,
}

/// The caller of a request, from its API key or its ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {role} role; {} is {}",
                self.describe(),
                self.role
            )))
        }
    }

    /// `key "name"` or `user "name"`, for messages.
    pub fn describe(&self) -> String {
        match self.kind {
            PrincipalKind::ApiKey => format!("key {:?}", self.name),
            PrincipalKind::User => format!("user {:?}", self.name),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::analyst(self.name.clone())
    }

    /// Whether this caller may see customers' personal data unmasked.
    pub fn sees_personal_data(&self) -> bool {
        self.role >= Role::Analyst
    }
}

/// A new random token: `vdk_` and 64 hex digits (256 bits).
pub fn generate_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("vdk_{}", hex_encode(&bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a key and returns its token, which is never stored and cannot be shown again.
pub async fn create_api_key(
    store: &Store,
    name: &str,
    role: Role,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::InvalidInput(
            "a key name is 1 to 100 characters without spaces".into(),
        ));
    }
    let token = generate_token();
    store
        .create_api_key(name, role.as_str(), &hash_token(&token), now)
        .await
        .map_err(|err| match err {
            StoreError::Duplicate(what) => ApiError::AlreadyExists(what),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(token)
}

/// Every key, revoked ones included (never a token or its hash).
pub async fn list_api_keys(store: &Store) -> Result<Vec<ApiKeyRecord>, ApiError> {
    Ok(store.list_api_keys().await?)
}

/// Which key `id` and `name` designate: exactly one of them, an id being a UUID.
pub fn key_selector(id: Option<&str>, name: Option<&str>) -> Result<KeySelector, ApiError> {
    let id = id.map(str::trim).filter(|v| !v.is_empty());
    let name = name.map(str::trim).filter(|v| !v.is_empty());
    match (id, name) {
        (Some(id), None) => id
            .parse()
            .map(KeySelector::Id)
            .map_err(|_| ApiError::InvalidInput(format!("{id:?} is not an API key id"))),
        (None, Some(name)) => Ok(KeySelector::Name(name.to_owned())),
        _ => Err(ApiError::InvalidInput(
            "name the key to revoke by its id or by its name (one of them)".into(),
        )),
    }
}

/// Revokes a key; its token is refused from the next request on (every request looks its key up, nothing is
/// cached). Revoking a revoked key changes nothing and answers the key with its first revocation time; the
/// flag says whether this call revoked it.
pub async fn revoke_api_key(
    store: &Store,
    which: &KeySelector,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(ApiKeyRecord, bool), ApiError> {
    match store.revoke_api_key(which, now).await? {
        Revocation::Revoked(key) => Ok((key, true)),
        Revocation::AlreadyRevoked(key) => Ok((key, false)),
        Revocation::NotFound => Err(ApiError::NotFound(format!("{which} not found"))),
    }
}

/// How long a person's `last_seen_at` may lag behind their requests: one write per person per minute at most.
const LAST_SEEN_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// The principal behind the request's bearer token: an API key, or (with `oidc`) a person's ID token, whose
/// person is recorded in `users` as of `now`.
pub async fn authenticate(
    store: &Store,
    oidc: Option<&OidcVerifier>,
    headers: &HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthenticated("missing Authorization: Bearer token".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthenticated("the Authorization header must be 'Bearer TOKEN'".into()))?;
    if let Some(oidc) = oidc
        && OidcVerifier::looks_like_jwt(token)
    {
        return sign_in(store, oidc, token, now).await;
    }
    let key = store
        .find_api_key(&hash_token(token))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .ok_or_else(|| ApiError::Unauthenticated("unknown or revoked API key".into()))?;
    let role = key
        .role
        .parse()
        .map_err(|_| ApiError::Internal(format!("key {} has a bad role", key.name)))?;
    Ok(Principal {
        name: key.name,
        role,
        kind: PrincipalKind::ApiKey,
    })
}

/// A person's request: the token verified, the person recorded (or refreshed) in `users`.
async fn sign_in(
    store: &Store,
    oidc: &OidcVerifier,
    token: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiError> {
    let person = oidc.verify(token).await?;
    let who = SignIn {
        issuer: person.issuer,
        subject: person.subject,
        username: person.username,
        name: person.name,
        email: person.email,
        role: person.role.as_str().to_owned(),
    };
    let user = store
        .record_sign_in(&who, now, LAST_SEEN_EVERY)
        .await
        .map_err(|err| match err {
            StoreError::Duplicate(what) => ApiError::Forbidden(format!(
                "{what} already uses this handle in Verdict; ask an admin to rename one of you at the identity provider"
            )),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(Principal {
        name: user.username,
        role: person.role,
        kind: PrincipalKind::User,
    })
}
