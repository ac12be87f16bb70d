//! Finding disputes: the queue's filters and exact searches, its sort orders, pages in both directions, and
//! the audit trail of who did what across disputes.
//!
//! Everything runs in SQL on indexes (migration 14), the same statements on SQLite and PostgreSQL. Pages are
//! keysets on `(sort key, id)`: the id breaks ties, so an order is total and a page never repeats or skips a
//! row however deep it is. A page read backwards (`last`/`before`) reads the reverse order and turns the rows
//! round, so both directions cost one index range scan.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, SimpleExpr};
use sea_orm::{
    ColumnTrait, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
};
use uuid::Uuid;
use verdict_domain::{CardNetwork, Dispute, Processor, Queue, ReasonCategory, Stage, Status};

use crate::convert::to_domain;
use crate::entity::{dispute, dispute_event, dispute_status};
use crate::{EventRecord, Store, StoreError};

/// An interval of time: `from` included, `to` excluded; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// Whether `at` lies in the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
    }
}

/// Whose disputes: nobody's, or one person's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeMatch {
    Nobody,
    Named(String),
}

/// Amounts in one currency, both bounds in minor units and included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountRange {
    pub currency: String,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// Which disputes a queue page, a count, an export or a bulk action covers; every field narrows the result and
/// a list matches any of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisputeFilter {
    pub statuses: Vec<Status>,
    pub stages: Vec<Stage>,
    pub processors: Vec<Processor>,
    pub networks: Vec<CardNetwork>,
    pub reason_categories: Vec<ReasonCategory>,
    /// Normalised codes, as `reasonCode` shows them (`10.4`, `4853`).
    pub reason_codes: Vec<String>,
    pub queues: Vec<Queue>,
    pub assignee: Option<AssigneeMatch>,
    pub seller_id: Option<String>,
    /// ISO codes, upper case.
    pub currencies: Vec<String>,
    pub amount: Option<AmountRange>,
    pub opened: TimeWindow,
    /// Windows the processor's due date must lie in (all of them); an undated dispute matches none.
    pub due: Vec<TimeWindow>,
    /// Some(true): only disputes whose next move is ours ([`Status::needs_action`]); Some(false): only the others.
    pub needs_action: Option<bool>,
    pub processor_dispute_id: Option<String>,
    pub payment_reference: Option<String>,
    pub order_reference: Option<String>,
    /// Compared case-insensitively.
    pub customer_email: Option<String>,
}

/// The key a list of disputes is ordered by; the dispute id breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeSort {
    /// The processor's due date, undated disputes after every dated one (the act-by order is the same).
    DueBy,
    /// Minor units, whatever the currency: filter on one currency for an order that means something.
    Amount,
    OpenedAt,
    /// The triage policy's priority, 1 (most urgent) first when ascending; ties in opening order (the id).
    Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    Ascending,
    Descending,
}

/// A row's value of the sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortValue {
    At(DateTime<Utc>),
    Minor(i64),
}

/// A position in an order: the sort key's value and id of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCursor {
    pub value: SortValue,
    pub id: Uuid,
}

/// Which page: the `first` rows after a cursor, or the `last` rows before one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageWindow {
    Forward { first: u64, after: Option<SortCursor> },
    Backward { last: u64, before: Option<SortCursor> },
}

/// One page, in the requested order whichever way it was read.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub items: Vec<(SortCursor, Dispute)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

/// Narrows the audit trail; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The actor exactly as events record it (`analyst:jane`, `processor:stripe`, `system`).
    pub actor: Option<String>,
    pub window: TimeWindow,
    /// Event kinds (`assigned`, `note_added`, ...); empty: all.
    pub kinds: Vec<String>,
}

/// A position in the audit trail (newest first): the last entry of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    pub dispute_id: Uuid,
    pub version: i64,
}

/// One page of the audit trail: each event with the dispute it belongs to.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub items: Vec<(AuditCursor, Uuid, EventRecord)>,
    pub has_next_page: bool,
}

impl DisputeSort {
    fn column(self) -> dispute::Column {
        match self {
            DisputeSort::DueBy => dispute::Column::SortDueAt,
            DisputeSort::Amount => dispute::Column::AmountMinor,
            DisputeSort::OpenedAt => dispute::Column::OpenedAt,
            DisputeSort::Priority => dispute::Column::Priority,
        }
    }

    fn value_of(self, row: &dispute::Model) -> SortValue {
        match self {
            DisputeSort::DueBy => SortValue::At(row.sort_due_at),
            DisputeSort::Amount => SortValue::Minor(row.amount_minor),
            DisputeSort::OpenedAt => SortValue::At(row.opened_at),
            DisputeSort::Priority => SortValue::Minor(i64::from(row.priority)),
        }
    }
}

fn value_expr(value: SortValue) -> SimpleExpr {
    match value {
        SortValue::At(at) => Expr::value(at),
        SortValue::Minor(minor) => Expr::value(minor),
    }
}

/// Rows strictly after `cursor` when reading ascending, strictly before it when reading descending.
pub(crate) fn beyond(order: &Ordered, cursor: SortCursor, ascending: bool) -> SimpleExpr {
    let row = Expr::tuple([order.key.clone(), order.id.clone()]);
    let at = Expr::tuple([value_expr(cursor.value), Expr::value(cursor.id)]);
    if ascending { row.gt(at) } else { row.lt(at) }
}

/// A filter's select and the two columns of its order (the sort key, then the dispute id), qualified by table.
pub(crate) struct Ordered {
    pub(crate) query: sea_orm::Select<dispute::Entity>,
    pub(crate) key: SimpleExpr,
    pub(crate) id: SimpleExpr,
}

fn strings<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

impl DisputeFilter {
    /// Whether the filter asks for rows by an exact search key (then it reads a handful of rows whatever else
    /// it says).
    pub fn searches(&self) -> bool {
        self.processor_dispute_id.is_some()
            || self.payment_reference.is_some()
            || self.order_reference.is_some()
            || self.customer_email.is_some()
    }

    /// [`DisputeFilter::select`] with the order `sort` reads it in. One status in due order is read from
    /// `dispute_statuses_order` (that status's disputes by due date, migration 27) joined to `disputes`: the
    /// dispute row keeps no index on its status, so that a transition's update of it is heap-only.
    pub(crate) fn ordered(&self, sort: DisputeSort) -> Ordered {
        if let ([status], DisputeSort::DueBy) = (self.statuses.as_slice(), sort) {
            let query = self
                .select()
                .join(JoinType::InnerJoin, dispute_status::Relation::Dispute.def().rev())
                .filter(dispute_status::Column::Status.eq(status.to_string()));
            return Ordered {
                query,
                key: Expr::col((dispute_status::Entity, dispute_status::Column::SortDueAt)),
                id: Expr::col((dispute_status::Entity, dispute_status::Column::DisputeId)),
            };
        }
        Ordered {
            query: self.select(),
            key: Expr::col((dispute::Entity, sort.column())),
            id: Expr::col((dispute::Entity, dispute::Column::Id)),
        }
    }

    /// The statuses, when the filter says nothing else: such a count reads `dispute_statuses_order` alone
    /// (a tenth of the time of counting the matching rows of `disputes` at a million disputes).
    pub(crate) fn only_statuses(&self) -> Option<Vec<String>> {
        let only = DisputeFilter {
            statuses: self.statuses.clone(),
            ..DisputeFilter::default()
        };
        (!self.statuses.is_empty() && *self == only).then(|| strings(&self.statuses))
    }

    pub(crate) fn select(&self) -> sea_orm::Select<dispute::Entity> {
        use dispute::Column as C;
        let any_of = [
            (C::Status, strings(&self.statuses)),
            (C::Stage, strings(&self.stages)),
            (C::Processor, strings(&self.processors)),
            (C::Network, strings(&self.networks)),
            (
                C::ReasonCategory,
                self.reason_categories.iter().map(|c| c.as_str().to_owned()).collect(),
            ),
            (C::ReasonCode, self.reason_codes.clone()),
            (C::Queue, strings(&self.queues)),
            (C::Currency, self.currencies.clone()),
        ];
        let mut query = dispute::Entity::find();
        for (column, values) in any_of {
            if !values.is_empty() {
                query = query.filter(column.is_in(values));
            }
        }
        if let Some(wanted) = self.needs_action {
            let acting = strings(&Status::ALL.iter().filter(|s| s.needs_action()).collect::<Vec<_>>());
            query = if wanted {
                query.filter(C::Status.is_in(acting))
            } else {
                query.filter(C::Status.is_not_in(acting))
            };
        }
        match &self.assignee {
            Some(AssigneeMatch::Nobody) => query = query.filter(C::Assignee.is_null()),
            Some(AssigneeMatch::Named(name)) => query = query.filter(C::Assignee.eq(name.as_str())),
            None => {}
        }
        if let Some(seller) = &self.seller_id {
            query = query.filter(C::SellerId.eq(seller.as_str()));
        }
        if let Some(range) = &self.amount {
            query = query.filter(C::Currency.eq(range.currency.as_str()));
            if let Some(min) = range.min {
                query = query.filter(C::AmountMinor.gte(min));
            }
            if let Some(max) = range.max {
                query = query.filter(C::AmountMinor.lte(max));
            }
        }
        query = window(query, C::OpenedAt, &self.opened);
        for due in &self.due {
            query = window(query, C::DueBy, due);
        }
        if let Some(id) = &self.processor_dispute_id {
            query = query.filter(C::ProcessorDisputeId.eq(id.as_str()));
        }
        if let Some(reference) = &self.payment_reference {
            query = query.filter(C::PaymentReference.eq(reference.as_str()));
        }
        if let Some(reference) = &self.order_reference {
            query = query.filter(C::OrderReference.eq(reference.as_str()));
        }
        if let Some(email) = &self.customer_email {
            // The same expression as the index `disputes_customer_email`, so that both backends use it.
            query = query.filter(
                Expr::expr(Func::lower(Expr::col(C::CustomerEmail))).eq(Func::lower(Expr::value(email.as_str()))),
            );
        }
        query
    }
}

fn window(
    query: sea_orm::Select<dispute::Entity>,
    column: dispute::Column,
    window: &TimeWindow,
) -> sea_orm::Select<dispute::Entity> {
    let query = match window.from {
        Some(from) => query.filter(column.gte(from)),
        None => query,
    };
    match window.to {
        Some(to) => query.filter(column.lt(to)),
        None => query,
    }
}

impl Store {
    /// One page of the disputes `filter` matches, in `sort` order (`direction`), read forwards or backwards.
    pub async fn search(
        &self,
        filter: &DisputeFilter,
        sort: DisputeSort,
        direction: SortDirection,
        window: PageWindow,
    ) -> Result<SearchPage, StoreError> {
        let (limit, cursor, forwards) = match window {
            PageWindow::Forward { first, after } => (first, after, true),
            PageWindow::Backward { last, before } => (last, before, false),
        };
        // The order the rows are read in: the requested one forwards, its reverse backwards.
        let ascending = (direction == SortDirection::Ascending) == forwards;
        let order = filter.ordered(sort);
        let mut query = order.query.clone();
        if let Some(cursor) = cursor {
            query = query.filter(beyond(&order, cursor, ascending));
        }
        let (key_order, id_order) = if ascending {
            (sea_orm::Order::Asc, sea_orm::Order::Asc)
        } else {
            (sea_orm::Order::Desc, sea_orm::Order::Desc)
        };
        let mut rows = query
            .order_by(order.key.clone(), key_order)
            .order_by(order.id.clone(), id_order)
            .limit(limit + 1)
            .all(self.db())
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        if !forwards {
            rows.reverse();
        }
        // Rows on the cursor's other side (the cursor's own row included, if it still exists).
        let behind = match cursor {
            None => false,
            Some(cursor) => {
                let behind = beyond(&order, cursor, !ascending).or(dispute::Column::Id.eq(cursor.id));
                order.query.filter(behind).limit(1).count(self.db()).await? > 0
            }
        };
        let items = rows
            .into_iter()
            .map(|row| {
                let cursor = SortCursor {
                    value: sort.value_of(&row),
                    id: row.id,
                };
                to_domain(row).map(|d| (cursor, d))
            })
            .collect::<Result<_, _>>()?;
        let (has_next_page, has_previous_page) = if forwards { (more, behind) } else { (behind, more) };
        Ok(SearchPage {
            items,
            has_next_page,
            has_previous_page,
        })
    }

    /// Events across disputes, newest first (then by dispute and version, newest first), `first` at a time.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        first: u64,
        after: Option<AuditCursor>,
    ) -> Result<AuditPage, StoreError> {
        use dispute_event::Column as C;
        let mut query = dispute_event::Entity::find();
        if let Some(actor) = &filter.actor {
            query = query.filter(C::Actor.eq(actor.as_str()));
        }
        if let Some(from) = filter.window.from {
            query = query.filter(C::At.gte(from));
        }
        if let Some(to) = filter.window.to {
            query = query.filter(C::At.lt(to));
        }
        if !filter.kinds.is_empty() {
            query = query.filter(C::Kind.is_in(filter.kinds.clone()));
        }
        if let Some(cursor) = after {
            query = query.filter(
                Expr::tuple([Expr::col(C::At), Expr::col(C::DisputeId), Expr::col(C::Version)]).lt(Expr::tuple([
                    Expr::value(cursor.at),
                    Expr::value(cursor.dispute_id),
                    Expr::value(cursor.version),
                ])),
            );
        }
        let mut rows = query
            .order_by_desc(C::At)
            .order_by_desc(C::DisputeId)
            .order_by_desc(C::Version)
            .limit(first + 1)
            .all(self.db())
            .await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let items = rows
            .into_iter()
            .map(|row| {
                let cursor = AuditCursor {
                    at: row.at,
                    dispute_id: row.dispute_id,
                    version: row.version,
                };
                (cursor, row.dispute_id, EventRecord::from(row))
            })
            .collect();
        Ok(AuditPage { items, has_next_page })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.to_utc()).ok();
        let window = TimeWindow {
            from: at("2026-01-01T00:00:00Z"),
            to: at("2026-02-01T00:00:00Z"),
        };
        assert!(window.contains(at("2026-01-01T00:00:00Z").unwrap_or_default()));
        assert!(!window.contains(at("2026-02-01T00:00:00Z").unwrap_or_default()));
        assert!(TimeWindow::default().contains(Utc::now()));
    }

    #[test]
    fn only_our_moves_need_action() {
        let acting: Vec<_> = Status::ALL.iter().filter(|s| s.needs_action()).collect();
        assert_eq!(
            acting,
            [&Status::Notified, &Status::Triaged, &Status::EvidenceGathering]
        );
    }
}
