//! DataLoaders for a dispute's nested lists: the `events` (or `timers`, `steps`, `messages`, notifications)
//! of every dispute of a page are collected and read in one query per list (`dispute_id IN (...)`), not
//! one per dispute. Each key type names the list; one [`Lists`] loads them all, through the [`ReadGate`].
//! The loader does not cache: it lives with the schema, and a cache would serve one request's rows to the
//! next.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};
use verdict_domain::DisputeId;
use verdict_store::{DocumentRecord, EventRecord, MailboxMessage, NotificationRecord, StepRecord, Store, TimerRecord};

use super::limits::ReadGate;
use crate::error::ApiError;

/// Most disputes read in one batch: a full page.
const MAX_BATCH: usize = 500;

pub struct Lists {
    store: Store,
    gate: ReadGate,
}

pub type ListLoader = DataLoader<Lists>;

pub fn loader(store: Store, gate: ReadGate) -> ListLoader {
    DataLoader::new(Lists { store, gate }, tokio::spawn).max_batch_size(MAX_BATCH)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventsOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimersOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepsOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessagesOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlaggedNotificationsOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotificationsOf(pub DisputeId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocumentsOf(pub DisputeId);

fn rekey<K: Eq + Hash, V>(rows: HashMap<DisputeId, V>, key: impl Fn(DisputeId) -> K) -> HashMap<K, V> {
    rows.into_iter().map(|(id, v)| (key(id), v)).collect()
}

macro_rules! list_loader {
    ($key:ident, $value:ty, |$store:ident, $ids:ident| $read:expr) => {
        impl Loader<$key> for Lists {
            type Value = Vec<$value>;
            type Error = ApiError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let $ids: Vec<DisputeId> = keys.iter().map(|k| k.0).collect();
                let $store = &self.store;
                let rows = self.gate.run($read).await?;
                Ok(rekey(rows, $key))
            }
        }
    };
}

list_loader!(EventsOf, EventRecord, |store, ids| store.events_of_disputes(&ids));
list_loader!(TimersOf, TimerRecord, |store, ids| store.timers_of_disputes(&ids));
list_loader!(StepsOf, StepRecord, |store, ids| store.steps_of_disputes(&ids));
list_loader!(MessagesOf, MailboxMessage, |store, ids| store.mailbox_of_disputes(&ids));
list_loader!(FlaggedNotificationsOf, NotificationRecord, |store, ids| store
    .notifications_of_disputes(&ids, true));
list_loader!(NotificationsOf, NotificationRecord, |store, ids| store
    .notifications_of_disputes(&ids, false));
list_loader!(DocumentsOf, DocumentRecord, |store, ids| store
    .documents_of_disputes(&ids));
