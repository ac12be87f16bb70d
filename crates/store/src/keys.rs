//! API keys: only a SHA-256 hash of each token is stored. Tokens are 256 random bits, so a fast hash is
//! enough (no dictionary to attack) and lets every request be checked with one indexed lookup.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::api_key;
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
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
        Ok(ApiKeyRecord {
            id: model.id,
            name: model.name,
            role: model.role,
            created_at: model.created_at,
        })
    }

    /// The active (not revoked) key whose token hashes to `token_hash`.
    pub async fn find_api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let found = api_key::Entity::find()
            .filter(api_key::Column::TokenHash.eq(token_hash))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.db())
            .await?;
        Ok(found.map(|m| ApiKeyRecord {
            id: m.id,
            name: m.name,
            role: m.role,
            created_at: m.created_at,
        }))
    }
}
