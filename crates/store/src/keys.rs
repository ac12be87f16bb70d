//! API keys: only a SHA-256 hash of each token is stored. Tokens are 256 random bits, so a fast hash is
//! enough (no dictionary to attack) and lets every request be checked with one indexed lookup.
//!
//! Keys are never deleted: a revoked key keeps its row (and its name, which events carry as their actor) with
//! `revoked_at` set, and the lookup of every request skips it, so revocation takes effect on the next request
//! (nothing caches a key).

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::coalesce::Lookup;
use crate::entity::api_key;
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A key as it may be shown: never its token or the token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyRecord {
    fn from(m: api_key::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            role: m.role,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// Which key to revoke or rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    Id(Uuid),
    Name(String),
}

impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySelector::Id(id) => write!(f, "API key {id}"),
            KeySelector::Name(name) => write!(f, "API key {name:?}"),
        }
    }
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now.
    Revoked(ApiKeyRecord),
    /// It was revoked before, at `revoked_at`; nothing changed.
    AlreadyRevoked(ApiKeyRecord),
    NotFound,
}

impl Store {
    /// Stores a new key by the hash of its token; a name is unique.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let model = api_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.to_owned()),
            role: Set(role.to_owned()),
            token_hash: Set(token_hash.to_owned()),
            created_at: Set(now),
            revoked_at: Set(None),
        };
        let model = model.insert(self.db()).await.map_err(|err| {
            if is_unique_violation(&err) {
                StoreError::Duplicate(format!("API key {name:?}"))
            } else {
                err.into()
            }
        })?;
        Ok(model.into())
    }

    /// The active (not revoked) key whose token hashes to `token_hash`.
    /// Read afresh for every request (a revocation applies from the next one), coalesced with concurrent
    /// requests' reads (coalesce.rs).
    pub async fn find_api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let lookup: Lookup<String, api_key::Model> = |store, hashes| {
            Box::pin(async move {
                let rows = api_key::Entity::find()
                    .filter(api_key::Column::TokenHash.is_in(hashes))
                    .filter(api_key::Column::RevokedAt.is_null())
                    .all(store.db())
                    .await?;
                Ok(rows.into_iter().map(|row| (row.token_hash.clone(), row)).collect())
            })
        };
        let found = self
            .read_coalesced(&self.committer.api_keys, token_hash.to_owned(), lookup, || async {
                Ok(api_key::Entity::find()
                    .filter(api_key::Column::TokenHash.eq(token_hash))
                    .filter(api_key::Column::RevokedAt.is_null())
                    .one(self.db())
                    .await?)
            })
            .await?;
        Ok(found.map(ApiKeyRecord::from))
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let keys = api_key::Entity::find()
            .order_by_asc(api_key::Column::CreatedAt)
            .order_by_asc(api_key::Column::Id)
            .all(self.db())
            .await?;
        Ok(keys.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn find_key(&self, which: &KeySelector) -> Result<Option<api_key::Model>, StoreError> {
        let query = api_key::Entity::find();
        let query = match which {
            KeySelector::Id(id) => query.filter(api_key::Column::Id.eq(*id)),
            KeySelector::Name(name) => query.filter(api_key::Column::Name.eq(name.as_str())),
        };
        Ok(query.one(self.db()).await?)
    }

    /// Revokes a key: its token fails from the next request on. Revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, which: &KeySelector, now: DateTime<Utc>) -> Result<Revocation, StoreError> {
        let Some(found) = self.find_key(which).await? else {
            return Ok(Revocation::NotFound);
        };
        if found.revoked_at.is_some() {
            return Ok(Revocation::AlreadyRevoked(found.into()));
        }
        // Only a still active row is changed, so two revocations racing keep the earlier time.
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, sea_orm::sea_query::Expr::value(now))
            .filter(api_key::Column::Id.eq(found.id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(self.db())
            .await?;
        let current = self.find_key(&KeySelector::Id(found.id)).await?.map(ApiKeyRecord::from);
        match current {
            Some(record) if updated.rows_affected == 1 => Ok(Revocation::Revoked(record)),
            Some(record) => Ok(Revocation::AlreadyRevoked(record)),
            None => Ok(Revocation::NotFound),
        }
    }

    /// Gives the key named `name` a new token (the old one stops working) and makes it active again, keeping
    /// its id, role and creation time; `None` if there is no such key.
    pub async fn rotate_api_key(&self, name: &str, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(found) = self.find_key(&KeySelector::Name(name.to_owned())).await? else {
            return Ok(None);
        };
        let mut active = found.into_active_model();
        active.token_hash = Set(token_hash.to_owned());
        active.revoked_at = Set(None);
        Ok(Some(active.update(self.db()).await?.into()))
    }
}
