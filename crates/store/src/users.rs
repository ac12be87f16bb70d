//! People who sign in through the organisation's OpenID Connect provider. Each verified token upserts its
//! person, keyed by (issuer, subject); the handle (`username`) is what events and assignments record. A
//! request refreshes the row only when something changed or the last-seen time is older than the caller's
//! interval, so a busy person costs one indexed read per request, not a write.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use crate::entity::{api_key, user};
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

/// What a verified token says about its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: String,
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl From<user::Model> for UserRecord {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            issuer: m.issuer,
            subject: m.subject,
            username: m.username,
            name: m.name,
            email: m.email,
            role: m.role,
            created_at: m.created_at,
            last_seen_at: m.last_seen_at,
        }
    }
}

impl UserRecord {
    fn matches(&self, who: &SignIn) -> bool {
        self.username == who.username && self.name == who.name && self.email == who.email && self.role == who.role
    }
}

impl Store {
    /// Records a request by the person `who`: created on first sight, updated when the token says something
    /// new or `last_seen_at` is older than `touch_every`. A handle taken by another person is
    /// [`StoreError::Duplicate`] and changes nothing.
    pub async fn record_sign_in(
        &self,
        who: &SignIn,
        now: DateTime<Utc>,
        touch_every: Duration,
    ) -> Result<UserRecord, StoreError> {
        if let Some(found) = self.find_subject(&who.issuer, &who.subject).await? {
            return self.refresh_user(found, who, now, touch_every).await;
        }
        let model = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            issuer: Set(who.issuer.clone()),
            subject: Set(who.subject.clone()),
            username: Set(who.username.clone()),
            name: Set(who.name.clone()),
            email: Set(who.email.clone()),
            role: Set(who.role.clone()),
            created_at: Set(now),
            last_seen_at: Set(now),
        };
        match model.insert(self.db()).await {
            Ok(model) => Ok(model.into()),
            Err(err) if is_unique_violation(&err) => {
                // Either a parallel first request of the same person won the insert, or the handle is
                // another person's.
                match self.find_subject(&who.issuer, &who.subject).await? {
                    Some(found) => self.refresh_user(found, who, now, touch_every).await,
                    None => Err(taken(&who.username)),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn refresh_user(
        &self,
        found: user::Model,
        who: &SignIn,
        now: DateTime<Utc>,
        touch_every: Duration,
    ) -> Result<UserRecord, StoreError> {
        let record = UserRecord::from(found.clone());
        if record.matches(who) && now - record.last_seen_at < touch_every {
            return Ok(record);
        }
        let mut active = found.into_active_model();
        active.username = Set(who.username.clone());
        active.name = Set(who.name.clone());
        active.email = Set(who.email.clone());
        active.role = Set(who.role.clone());
        active.last_seen_at = Set(now.max(record.last_seen_at));
        match active.update(self.db()).await {
            Ok(model) => Ok(model.into()),
            Err(err) if is_unique_violation(&err) => Err(taken(&who.username)),
            Err(err) => Err(err.into()),
        }
    }

    async fn find_subject(&self, issuer: &str, subject: &str) -> Result<Option<user::Model>, StoreError> {
        Ok(user::Entity::find()
            .filter(user::Column::Issuer.eq(issuer))
            .filter(user::Column::Subject.eq(subject))
            .one(self.db())
            .await?)
    }

    /// The person whose handle is `username`.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let found = user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(self.db())
            .await?;
        Ok(found.map(UserRecord::from))
    }

    /// Every person who ever signed in, by handle.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let users = user::Entity::find()
            .order_by_asc(user::Column::Username)
            .all(self.db())
            .await?;
        Ok(users.into_iter().map(UserRecord::from).collect())
    }

    /// Whether `name` can be assigned a dispute: a person who signed in, or an active API key (an analyst or
    /// a service working through a key acts, and is recorded, under the key's name).
    pub async fn is_known_assignee(&self, name: &str) -> Result<bool, StoreError> {
        if self.find_user(name).await?.is_some() {
            return Ok(true);
        }
        let key = api_key::Entity::find()
            .filter(api_key::Column::Name.eq(name))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.db())
            .await?;
        Ok(key.is_some())
    }
}

fn taken(username: &str) -> StoreError {
    StoreError::Duplicate(format!("the username {username:?} of another person"))
}
