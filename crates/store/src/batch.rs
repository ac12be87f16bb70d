//! Reads of many disputes' lists at once, for the GraphQL DataLoaders: a page of 500 disputes asking for
//! their events costs one query (`dispute_id IN (...)`), not 500. Every function answers a map from each
//! requested dispute to its rows in the same order as the per-dispute reads of repo.rs, inbox.rs and
//! mailbox.rs; a dispute without rows maps to an empty list.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use verdict_domain::DisputeId;

use crate::entity::{dispute_event, notification, step, timer};
use crate::inbox::{InboxStatus, NotificationRecord, record};
use crate::mailbox::{MailboxMessage, message, row as mail};
use crate::repo::{Backend, EventRecord, StepRecord, TimerRecord};
use crate::{Store, StoreError};

/// Groups rows by dispute, keeping their order, with an entry for every requested dispute.
fn grouped<T>(ids: &[DisputeId], rows: impl IntoIterator<Item = (DisputeId, T)>) -> HashMap<DisputeId, Vec<T>> {
    let mut out: HashMap<DisputeId, Vec<T>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    for (id, row) in rows {
        out.entry(id).or_default().push(row);
    }
    out
}

/// Most rows one list of one page may load (a page of 500 disputes with 100 events each): past it the read
/// fails rather than building an answer no client should ask for. Reads stop at one row more, so memory stays
/// bounded whatever the history.
pub const MAX_LIST_ROWS: u64 = 50_000;

fn bounded<T>(what: &'static str, rows: Vec<T>) -> Result<Vec<T>, StoreError> {
    if rows.len() as u64 > MAX_LIST_ROWS {
        return Err(StoreError::TooManyRows {
            what,
            limit: MAX_LIST_ROWS,
        });
    }
    Ok(rows)
}

fn uuids(ids: &[DisputeId]) -> Vec<uuid::Uuid> {
    ids.iter().map(DisputeId::as_uuid).collect()
}

impl Store {
    /// The rows of `query`, at most [`MAX_LIST_ROWS`]: the read stops one row past it and fails.
    async fn bounded_rows<E: EntityTrait>(
        &self,
        what: &'static str,
        query: sea_orm::Select<E>,
    ) -> Result<Vec<E::Model>, StoreError> {
        let rows = query.limit(MAX_LIST_ROWS + 1).all(self.db()).await?;
        bounded(what, rows)
    }

    /// The most connections this store's pool opens; the API keeps GraphQL reads to a share of it.
    pub fn max_connections(&self) -> u32 {
        match self.backend() {
            Backend::Postgres => self.db().get_postgres_connection_pool().options().get_max_connections(),
            Backend::Sqlite => self.db().get_sqlite_connection_pool().options().get_max_connections(),
        }
    }

    /// [`Store::events`] of several disputes in one query.
    pub async fn events_of_disputes(
        &self,
        ids: &[DisputeId],
    ) -> Result<HashMap<DisputeId, Vec<EventRecord>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .bounded_rows(
                "the events",
                dispute_event::Entity::find()
                    .filter(dispute_event::Column::DisputeId.is_in(uuids(ids)))
                    .order_by_asc(dispute_event::Column::DisputeId)
                    .order_by_asc(dispute_event::Column::Version),
            )
            .await?;
        Ok(grouped(
            ids,
            rows.into_iter()
                .map(|r| (DisputeId::from_uuid(r.dispute_id), EventRecord::from(r))),
        ))
    }

    /// [`Store::timers`] of several disputes in one query.
    pub async fn timers_of_disputes(
        &self,
        ids: &[DisputeId],
    ) -> Result<HashMap<DisputeId, Vec<TimerRecord>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .bounded_rows(
                "the timers",
                timer::Entity::find()
                    .filter(timer::Column::DisputeId.is_in(uuids(ids)))
                    .order_by_asc(timer::Column::DueAt)
                    .order_by_asc(timer::Column::Id),
            )
            .await?;
        Ok(grouped(
            ids,
            rows.into_iter()
                .filter_map(|r| Some((DisputeId::from_uuid(r.dispute_id?), TimerRecord::from(r)))),
        ))
    }

    /// [`Store::steps`] of several disputes in one query.
    pub async fn steps_of_disputes(
        &self,
        ids: &[DisputeId],
    ) -> Result<HashMap<DisputeId, Vec<StepRecord>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .bounded_rows(
                "the steps",
                step::Entity::find()
                    .filter(step::Column::DisputeId.is_in(uuids(ids)))
                    .order_by_asc(step::Column::Id),
            )
            .await?;
        Ok(grouped(
            ids,
            rows.into_iter()
                .filter_map(|r| Some((DisputeId::from_uuid(r.dispute_id?), StepRecord::from(r)))),
        ))
    }

    /// [`Store::mailbox_of`] of several disputes in one query.
    pub async fn mailbox_of_disputes(
        &self,
        ids: &[DisputeId],
    ) -> Result<HashMap<DisputeId, Vec<MailboxMessage>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .bounded_rows(
                "the messages",
                mail::Entity::find()
                    .filter(mail::Column::DisputeId.is_in(uuids(ids)))
                    .order_by_asc(mail::Column::CreatedAt)
                    .order_by_asc(mail::Column::Id),
            )
            .await?;
        let messages = rows
            .into_iter()
            .map(message)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|m| m.dispute_id.map(|id| (id, m)));
        Ok(grouped(ids, messages))
    }

    /// [`Store::notifications_of_dispute`] (or, with `flagged_only`,
    /// [`Store::flagged_notifications_of_dispute`]) of several disputes in one query.
    pub async fn notifications_of_disputes(
        &self,
        ids: &[DisputeId],
        flagged_only: bool,
    ) -> Result<HashMap<DisputeId, Vec<NotificationRecord>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut query = notification::Entity::find().filter(notification::Column::DisputeId.is_in(uuids(ids)));
        if flagged_only {
            query = query.filter(notification::Column::Status.eq(InboxStatus::Flagged.as_str()));
        }
        let rows = self
            .bounded_rows(
                "the notifications",
                query
                    .order_by_asc(notification::Column::OccurredAt)
                    .order_by_asc(notification::Column::Id),
            )
            .await?;
        let records = rows
            .into_iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|r| r.dispute_id.map(|id| (id, r)));
        Ok(grouped(ids, records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_past_the_row_limit_is_refused_not_built() {
        let at_limit = vec![0_u8; MAX_LIST_ROWS as usize];
        assert_eq!(
            bounded("the events", at_limit).map(|r| r.len()).ok(),
            Some(MAX_LIST_ROWS as usize)
        );
        let over = vec![0_u8; MAX_LIST_ROWS as usize + 1];
        assert!(matches!(
            bounded("the events", over),
            Err(StoreError::TooManyRows {
                limit: MAX_LIST_ROWS,
                ..
            })
        ));
    }
}
