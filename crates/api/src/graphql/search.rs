//! The queue as a frontend asks for it: the `disputes` filter (also the CSV export's and the bulk actions'),
//! its sort orders and Relay cursors both ways, and the `audit` trail across disputes.
//!
//! The GraphQL inputs are checked and turned into the store's [`verdict_store::DisputeFilter`] here, once,
//! so that a page, its count, an export and a bulk action over "the same filter" cover the same disputes.

use async_graphql::{Context, Enum, ID, InputObject, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use verdict_engine::Engine;
use verdict_engine::timers::TimingPolicy;
use verdict_store::{
    AmountRange, AssigneeMatch, AuditCursor, DisputeSort, PageWindow, SortCursor, SortDirection, SortValue, TimeWindow,
};

use super::query::principal;
use super::types::{
    CardNetwork, Dispute, DisputeConnection, DisputeEdge, DisputeEvent, DisputeStage, DisputeStatus, MinorUnits,
    PageInfo, Processor, Queue, ReasonCategory,
};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// The largest page `first` or `last` may ask for.
pub const MAX_PAGE: i32 = 500;

/// The page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE: i32 = 50;

/// Longest search value or name accepted in a filter.
const MAX_TEXT: usize = 200;

/// Whose disputes: exactly one of `user`, `me` or `nobody`.
#[derive(InputObject, Default, Clone)]
pub struct AssigneeFilter {
    /// Disputes assigned to this user (the name assignments record).
    pub user: Option<String>,
    /// `true`: disputes assigned to the caller.
    pub me: Option<bool>,
    /// `true`: unassigned disputes.
    pub nobody: Option<bool>,
}

/// Amounts in one currency; both bounds in minor units and included.
#[derive(InputObject, Clone)]
pub struct AmountRangeInput {
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// At least this many minor units.
    pub min: Option<MinorUnits>,
    /// At most this many minor units.
    pub max: Option<MinorUnits>,
}

/// An interval of time: `from` included, `to` excluded; either end may be left open.
#[derive(InputObject, Default, Clone, Copy)]
pub struct TimeWindowInput {
    /// From this instant, included.
    pub from: Option<DateTime<Utc>>,
    /// Until this instant, excluded.
    pub to: Option<DateTime<Utc>>,
}

/// Which disputes: every field given narrows the result; a list matches any of its values. The searches
/// (`processorDisputeId`, `paymentReference`, `orderReference`, `customerEmail`) are exact matches on indexes.
#[derive(InputObject, Default, Clone)]
pub struct DisputeFilter {
    /// Any of these statuses.
    pub status: Option<Vec<DisputeStatus>>,
    /// Any of these stages.
    pub stage: Option<Vec<DisputeStage>>,
    /// Any of these processors.
    pub processor: Option<Vec<Processor>>,
    /// Any of these networks.
    pub network: Option<Vec<CardNetwork>>,
    /// Any of these reason categories.
    pub reason_category: Option<Vec<ReasonCategory>>,
    /// Normalised reason codes as `reasonCode` shows them, e.g. `10.4`, `4853`.
    pub reason_code: Option<Vec<String>>,
    /// Any of these queues.
    pub queue: Option<Vec<Queue>>,
    /// Whose disputes.
    pub assignee: Option<AssigneeFilter>,
    /// One seller's disputes.
    pub seller_id: Option<String>,
    /// ISO 4217 codes.
    pub currency: Option<Vec<String>>,
    /// An amount range in one currency.
    pub amount: Option<AmountRangeInput>,
    /// When the dispute was opened.
    pub opened: Option<TimeWindowInput>,
    /// Verdict's act-by time (`actBy`); undated disputes never match.
    pub act_by: Option<TimeWindowInput>,
    /// The processor's due date (`dueBy`); undated disputes never match.
    pub due: Option<TimeWindowInput>,
    /// Due strictly before this instant (the same as `due.to`).
    pub due_before: Option<DateTime<Utc>>,
    /// Due at or after this instant (the same as `due.from`).
    pub due_after: Option<DateTime<Utc>>,
    /// `true`: disputes whose next move is ours (notified, triaged, gathering evidence); `false`: the others.
    pub needs_action: Option<bool>,
    /// The processor's id of the dispute, whatever the processor.
    pub processor_dispute_id: Option<String>,
    /// The disputed payment at the processor, exactly.
    pub payment_reference: Option<String>,
    /// The marketplace's order number, exactly.
    pub order_reference: Option<String>,
    /// The customer's email, compared case-insensitively (analysts and above: viewers see emails masked, so
    /// they may not probe for one).
    pub customer_email: Option<String>,
}

/// What disputes are ordered by; the dispute id breaks ties, so an order is stable across pages.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DisputeSortKey {
    /// Verdict's act-by time (the due date minus the submit margin); undated disputes last.
    ActBy,
    /// The processor's due date; undated disputes last.
    DueBy,
    /// Minor units whatever the currency: filter on one currency for an order that means something.
    Amount,
    /// When the dispute was opened.
    OpenedAt,
    /// The triage policy's priority: ascending puts 1 (most urgent) first; ties in opening order.
    Priority,
}

/// Ascending or descending.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum SortOrder {
    /// Smallest (earliest) first.
    #[default]
    Asc,
    /// Largest (latest) first.
    Desc,
}

/// How a list of disputes is ordered; by default soonest due first.
#[derive(InputObject, Clone, Copy)]
pub struct DisputeSortInput {
    /// What to order by.
    pub by: DisputeSortKey,
    /// Which way.
    #[graphql(default)]
    pub direction: SortOrder,
}

fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidInput(format!(
            "filter.{field} must be 1 to {MAX_TEXT} characters without control characters"
        )));
    }
    Ok(value.to_owned())
}

fn window(field: &str, input: Option<TimeWindowInput>) -> Result<TimeWindow, ApiError> {
    let input = input.unwrap_or_default();
    if let (Some(from), Some(to)) = (input.from, input.to)
        && from >= to
    {
        return Err(ApiError::InvalidInput(format!(
            "filter.{field}: `from` must be before `to`"
        )));
    }
    Ok(TimeWindow {
        from: input.from,
        to: input.to,
    })
}

fn currency(value: &str) -> Result<String, ApiError> {
    Ok(verdict_domain::Currency::parse(value.trim())?.code().to_owned())
}

fn list<T: Copy + Into<U>, U>(values: Option<Vec<T>>) -> Vec<U> {
    values.unwrap_or_default().into_iter().map(Into::into).collect()
}

impl DisputeFilter {
    /// The store's filter, checked: `me` is the caller, the act-by window becomes a window on due dates.
    pub fn to_store(
        &self,
        caller: &Principal,
        timing: &TimingPolicy,
    ) -> Result<verdict_store::DisputeFilter, ApiError> {
        let texts = |field: &str, values: &Option<Vec<String>>| -> Result<Vec<String>, ApiError> {
            values.iter().flatten().map(|v| text(field, v)).collect()
        };
        let assignee = match &self.assignee {
            None => None,
            Some(AssigneeFilter { user, me, nobody }) => match (user, me, nobody) {
                (Some(user), None, None) => Some(AssigneeMatch::Named(text("assignee.user", user)?)),
                (None, Some(true), None) => Some(AssigneeMatch::Named(caller.name.clone())),
                (None, None, Some(true)) => Some(AssigneeMatch::Nobody),
                _ => {
                    return Err(ApiError::InvalidInput(
                        "filter.assignee takes exactly one of user, me: true or nobody: true".into(),
                    ));
                }
            },
        };
        let amount = match &self.amount {
            None => None,
            Some(range) => {
                let (min, max) = (range.min.map(|m| m.0), range.max.map(|m| m.0));
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    return Err(ApiError::InvalidInput("filter.amount: `min` is above `max`".into()));
                }
                Some(AmountRange {
                    currency: currency(&range.currency)?,
                    min,
                    max,
                })
            }
        };
        let mut due = vec![window("due", self.due)?];
        due.push(window(
            "dueBefore/dueAfter",
            Some(TimeWindowInput {
                from: self.due_after,
                to: self.due_before,
            }),
        )?);
        // act_by = due_by - margin, so an act-by window is the due window `margin` later.
        let act_by = window("actBy", self.act_by)?;
        let now = Utc::now();
        let margin = now - timing.act_by(now);
        due.push(TimeWindow {
            from: act_by.from.map(|at| at + margin),
            to: act_by.to.map(|at| at + margin),
        });
        due.retain(|w| *w != TimeWindow::default());
        let customer_email = match &self.customer_email {
            None => None,
            Some(email) => {
                if !caller.sees_personal_data() {
                    return Err(ApiError::Forbidden(
                        "searching by customer email needs the analyst role (viewers see emails masked)".into(),
                    ));
                }
                Some(text("customerEmail", email)?)
            }
        };
        Ok(verdict_store::DisputeFilter {
            statuses: list(self.status.clone()),
            stages: list(self.stage.clone()),
            processors: list(self.processor.clone()),
            networks: list(self.network.clone()),
            reason_categories: list(self.reason_category.clone()),
            reason_codes: texts("reasonCode", &self.reason_code)?,
            queues: list(self.queue.clone()),
            assignee,
            seller_id: self.seller_id.as_deref().map(|s| text("sellerId", s)).transpose()?,
            currencies: self
                .currency
                .iter()
                .flatten()
                .map(|c| currency(c))
                .collect::<Result<_, _>>()?,
            amount,
            opened: window("opened", self.opened)?,
            due,
            needs_action: self.needs_action,
            processor_dispute_id: self
                .processor_dispute_id
                .as_deref()
                .map(|v| text("processorDisputeId", v))
                .transpose()?,
            payment_reference: self
                .payment_reference
                .as_deref()
                .map(|v| text("paymentReference", v))
                .transpose()?,
            order_reference: self
                .order_reference
                .as_deref()
                .map(|v| text("orderReference", v))
                .transpose()?,
            customer_email,
        })
    }
}

impl DisputeSortInput {
    pub fn store_sort(self) -> (DisputeSort, SortDirection) {
        let sort = match self.by {
            DisputeSortKey::ActBy | DisputeSortKey::DueBy => DisputeSort::DueBy,
            DisputeSortKey::Amount => DisputeSort::Amount,
            DisputeSortKey::OpenedAt => DisputeSort::OpenedAt,
            DisputeSortKey::Priority => DisputeSort::Priority,
        };
        let direction = match self.direction {
            SortOrder::Asc => SortDirection::Ascending,
            SortOrder::Desc => SortDirection::Descending,
        };
        (sort, direction)
    }
}

impl Default for DisputeSortInput {
    fn default() -> Self {
        Self {
            by: DisputeSortKey::DueBy,
            direction: SortOrder::Asc,
        }
    }
}

fn sort_name(sort: DisputeSort) -> &'static str {
    match sort {
        DisputeSort::DueBy => "due",
        DisputeSort::Amount => "amount",
        DisputeSort::OpenedAt => "opened",
        DisputeSort::Priority => "priority",
    }
}

/// An opaque cursor: the order it belongs to, the row's sort value and id.
pub(crate) fn encode_cursor(sort: DisputeSort, cursor: &SortCursor) -> String {
    let value = match cursor.value {
        SortValue::At(at) => at.to_rfc3339(),
        SortValue::Minor(minor) => minor.to_string(),
    };
    URL_SAFE_NO_PAD.encode(format!("{}|{value}|{}", sort_name(sort), cursor.id))
}

/// The cursor `text` if it is one of `sort`'s. Cursors of the earlier form (`due date|id`) are due-date ones.
pub(crate) fn decode_cursor(sort: DisputeSort, text: &str) -> Result<SortCursor, ApiError> {
    let bad = || ApiError::InvalidInput(format!("{text:?} is not a cursor from this API"));
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(bytes).map_err(|_| bad())?;
    let parts: Vec<&str> = decoded.split('|').collect();
    let (name, value, id) = match parts.as_slice() {
        [value, id] => ("due", *value, *id),
        [name, value, id] => (*name, *value, *id),
        _ => return Err(bad()),
    };
    if name != sort_name(sort) {
        return Err(ApiError::InvalidInput(format!(
            "this cursor belongs to the {name} order, not the {} order asked for: ask again without it",
            sort_name(sort)
        )));
    }
    let value = match sort {
        DisputeSort::DueBy | DisputeSort::OpenedAt => {
            SortValue::At(DateTime::parse_from_rfc3339(value).map_err(|_| bad())?.to_utc())
        }
        DisputeSort::Amount | DisputeSort::Priority => SortValue::Minor(value.parse().map_err(|_| bad())?),
    };
    Ok(SortCursor {
        value,
        id: id.parse().map_err(|_| bad())?,
    })
}

fn page_size(name: &str, size: i32) -> Result<u64, ApiError> {
    if !(0..=MAX_PAGE).contains(&size) {
        return Err(ApiError::InvalidInput(format!(
            "{name} must be between 0 and {MAX_PAGE} (the page-size cap); page with cursors for more"
        )));
    }
    Ok(size as u64)
}

/// The page the Relay arguments ask for: `first`/`after` forwards or `last`/`before` backwards, never both.
pub(crate) fn page_window(
    sort: DisputeSort,
    first: Option<i32>,
    after: Option<&str>,
    last: Option<i32>,
    before: Option<&str>,
) -> Result<PageWindow, ApiError> {
    match (first, last) {
        (Some(_), Some(_)) => Err(ApiError::InvalidInput(
            "give first (with after) or last (with before), not both".into(),
        )),
        (None, Some(last)) => {
            if after.is_some() {
                return Err(ApiError::InvalidInput(
                    "after goes with first; last goes with before".into(),
                ));
            }
            Ok(PageWindow::Backward {
                last: page_size("last", last)?,
                before: before.map(|c| decode_cursor(sort, c)).transpose()?,
            })
        }
        (first, None) => {
            if before.is_some() {
                return Err(ApiError::InvalidInput(
                    "before goes with last; first goes with after".into(),
                ));
            }
            Ok(PageWindow::Forward {
                first: page_size("first", first.unwrap_or(DEFAULT_PAGE))?,
                after: after.map(|c| decode_cursor(sort, c)).transpose()?,
            })
        }
    }
}

/// The `disputes` query.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn disputes(
    ctx: &Context<'_>,
    filter: Option<DisputeFilter>,
    sort: Option<DisputeSortInput>,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> async_graphql::Result<DisputeConnection> {
    let caller = principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let (sort, direction) = sort.unwrap_or_default().store_sort();
    let window = page_window(sort, first, after.as_deref(), last, before.as_deref())?;
    let filter = filter.unwrap_or_default().to_store(caller, engine.timing())?;
    let page = super::read(ctx, engine.store().search(&filter, sort, direction, window)).await?;
    let edges: Vec<DisputeEdge> = page
        .items
        .into_iter()
        .map(|(cursor, dispute)| DisputeEdge {
            cursor: encode_cursor(sort, &cursor),
            node: Dispute(dispute),
        })
        .collect();
    Ok(DisputeConnection {
        page_info: PageInfo {
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
        filter,
    })
}

/// Narrows the audit trail; every field given narrows the result.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// The actor exactly as events record it: `analyst:jane`, `processor:stripe`, `system`.
    pub actor: Option<String>,
    /// When the events happened.
    pub at: Option<TimeWindowInput>,
    /// Only these types of event; none: all.
    pub types: Option<Vec<super::enums::EventType>>,
}

/// One event of the audit trail, with the dispute it belongs to; personal data is left out as in history.
#[derive(SimpleObject)]
pub struct AuditEntry {
    /// The dispute the event belongs to.
    pub dispute_id: ID,
    /// The event.
    pub event: DisputeEvent,
}

/// An audit entry and its cursor.
#[derive(SimpleObject)]
pub struct AuditEdge {
    /// Pass as `after` for the next page.
    pub cursor: String,
    /// The entry.
    pub node: AuditEntry,
}

/// A page of the audit trail, newest first.
#[derive(SimpleObject)]
pub struct AuditConnection {
    /// The page's entries, newest first.
    pub edges: Vec<AuditEdge>,
    /// Where the page lies.
    pub page_info: PageInfo,
}

fn encode_audit_cursor(cursor: &AuditCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "audit|{}|{}|{}",
        cursor.at.to_rfc3339(),
        cursor.dispute_id,
        cursor.version
    ))
}

fn decode_audit_cursor(text: &str) -> Result<AuditCursor, ApiError> {
    let bad = || ApiError::InvalidInput(format!("{text:?} is not an audit cursor from this API"));
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(bytes).map_err(|_| bad())?;
    let [name, at, id, version] = decoded.split('|').collect::<Vec<_>>()[..] else {
        return Err(bad());
    };
    if name != "audit" {
        return Err(bad());
    }
    Ok(AuditCursor {
        at: DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.to_utc(),
        dispute_id: id.parse().map_err(|_| bad())?,
        version: version.parse().map_err(|_| bad())?,
    })
}

/// The `audit` query (leads and admins).
pub(crate) async fn audit(
    ctx: &Context<'_>,
    filter: Option<AuditFilter>,
    first: i32,
    after: Option<String>,
) -> async_graphql::Result<AuditConnection> {
    principal(ctx, Role::Lead)?;
    let first = page_size("first", first)?;
    let after = after.as_deref().map(decode_audit_cursor).transpose()?;
    let filter = filter.unwrap_or_default();
    let mut kinds = Vec::new();
    for kind in filter.types.iter().flatten() {
        kinds.push(verdict_domain::EventKind::from(*kind).as_str().to_owned());
    }
    let store_filter = verdict_store::AuditFilter {
        actor: filter.actor.as_deref().map(|a| text("actor", a)).transpose()?,
        window: window("at", filter.at)?,
        kinds,
    };
    let engine = ctx.data::<Engine>()?;
    let page = super::read(ctx, engine.store().audit(&store_filter, first, after)).await?;
    let edges = page
        .items
        .into_iter()
        .map(|(cursor, dispute_id, event)| {
            Ok(AuditEdge {
                cursor: encode_audit_cursor(&cursor),
                node: AuditEntry {
                    dispute_id: ID(dispute_id.to_string()),
                    event: event.try_into()?,
                },
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(AuditConnection {
        page_info: PageInfo {
            has_next_page: page.has_next_page,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_within_their_order_only() {
        let cursor = SortCursor {
            value: SortValue::Minor(12_345),
            id: uuid::Uuid::now_v7(),
        };
        let text = encode_cursor(DisputeSort::Amount, &cursor);
        assert_eq!(decode_cursor(DisputeSort::Amount, &text).ok(), Some(cursor));
        assert!(decode_cursor(DisputeSort::DueBy, &text).is_err());
        assert!(decode_cursor(DisputeSort::Amount, "!!!").is_err());
        let at = SortCursor {
            value: SortValue::At(Utc::now()),
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(
            decode_cursor(DisputeSort::OpenedAt, &encode_cursor(DisputeSort::OpenedAt, &at)).ok(),
            Some(at)
        );
    }

    #[test]
    fn earlier_due_date_cursors_still_work() {
        let id = uuid::Uuid::now_v7();
        let at = Utc::now();
        let old = URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.to_rfc3339()));
        assert_eq!(
            decode_cursor(DisputeSort::DueBy, &old).ok(),
            Some(SortCursor {
                value: SortValue::At(at),
                id
            })
        );
    }

    #[test]
    fn page_arguments_are_one_direction_within_the_cap() {
        let sort = DisputeSort::DueBy;
        assert!(matches!(
            page_window(sort, None, None, None, None),
            Ok(PageWindow::Forward { first: 50, after: None })
        ));
        assert!(matches!(
            page_window(sort, None, None, Some(5), None),
            Ok(PageWindow::Backward { last: 5, before: None })
        ));
        assert!(page_window(sort, Some(1), None, Some(1), None).is_err());
        assert!(page_window(sort, Some(MAX_PAGE + 1), None, None, None).is_err());
        assert!(page_window(sort, None, None, Some(-1), None).is_err());
        assert!(page_window(sort, Some(5), None, None, Some("x")).is_err());
    }

    #[test]
    fn audit_cursors_round_trip() {
        let cursor = AuditCursor {
            at: Utc::now(),
            dispute_id: uuid::Uuid::now_v7(),
            version: 7,
        };
        assert_eq!(decode_audit_cursor(&encode_audit_cursor(&cursor)).ok(), Some(cursor));
        assert!(decode_audit_cursor("garbage").is_err());
    }
}
