//! The invariants checked after a fault run, read straight from the database and the fake's record.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{DatabaseConnection, QueryResult};
use serde_json::Value;
use uuid::Uuid;
use verdict_domain::{Actor, ActorKind, DisputeEvent, DisputeId};

use crate::fake::Fake;
use crate::load::{Ledger, Outcome, lock};
use crate::setup::{count, rows};
use verdict_store::Store;

/// What the checks found: counts for the report, and every violation.
#[derive(Debug, Default)]
pub struct Report {
    pub facts: BTreeMap<&'static str, i64>,
    pub violations: Vec<String>,
}

impl Report {
    fn fail(&mut self, what: String) {
        if self.violations.len() < 200 {
            self.violations.push(what);
        }
    }
}

fn text(row: &QueryResult, col: &str) -> String {
    row.try_get::<Option<String>>("", col)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn uuid(row: &QueryResult, col: &str) -> Option<Uuid> {
    row.try_get::<Option<Uuid>>("", col)
        .ok()
        .flatten()
        .or_else(|| text(row, col).parse().ok())
}

fn json(row: &QueryResult, col: &str) -> Value {
    row.try_get::<Option<Value>>("", col)
        .ok()
        .flatten()
        .or_else(|| serde_json::from_str(&text(row, col)).ok())
        .unwrap_or(Value::Null)
}

fn parse_actor(stored: &str) -> Actor {
    let (kind, name) = stored.split_once(':').unwrap_or(("system", stored));
    let kind: ActorKind = serde_json::from_value(Value::String(kind.to_owned())).unwrap_or(ActorKind::System);
    Actor {
        kind,
        name: name.to_owned(),
    }
}

/// Waits until nothing is left to do: no pending notification, no pending step, no timer due.
pub async fn drained(db: &DatabaseConnection) -> anyhow::Result<(i64, i64, i64)> {
    let now = chrono::Utc::now();
    let notifications = count(db, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'").await?;
    let steps = count(db, "SELECT COUNT(*) FROM steps WHERE status = 'pending'").await?;
    let timers = rows(db, "SELECT due_at FROM timers WHERE status = 'pending'")
        .await?
        .iter()
        .filter(|r| {
            r.try_get::<chrono::DateTime<chrono::Utc>>("", "due_at")
                .map(|t| t <= now)
                .unwrap_or(false)
        })
        .count() as i64;
    Ok((notifications, steps, timers))
}

pub async fn all(store: &Store, ledger: &Ledger, fake: &Fake) -> anyhow::Result<Report> {
    let db = store.db();
    let mut report = Report::default();

    // 1. Every acknowledged notification is stored and applied (or deliberately ignored or flagged).
    let mut inbox: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows(db, "SELECT processor_dispute_id, status FROM notifications").await? {
        inbox
            .entry(text(&row, "processor_dispute_id"))
            .or_default()
            .push(text(&row, "status"));
    }
    let mut acked_notifications = 0;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for d in lock(&ledger.deliveries).iter().filter(|d| d.acked) {
        acked_notifications += 1;
        for id in &d.disputes {
            *expected.entry(id.clone()).or_default() += 1;
        }
    }
    for id in lock(&ledger.paypal).iter() {
        *expected.entry(id.clone()).or_default() += 1;
    }
    for (id, n) in &expected {
        let stored = inbox.get(id).map(Vec::len).unwrap_or(0);
        if stored < *n {
            report.fail(format!("{n} notifications acknowledged for {id}, {stored} stored"));
        }
        if let Some(statuses) = inbox.get(id)
            && let Some(bad) = statuses
                .iter()
                .find(|s| !matches!(s.as_str(), "applied" | "ignored" | "flagged"))
        {
            report.fail(format!("a notification of {id} is {bad}"));
        }
    }
    let disputes_by_pid: BTreeSet<String> = rows(db, "SELECT processor_dispute_id FROM disputes")
        .await?
        .iter()
        .map(|r| text(r, "processor_dispute_id"))
        .collect();
    for id in expected.keys() {
        if !disputes_by_pid.contains(id) {
            report.fail(format!("acknowledged notification for {id} but no dispute"));
        }
    }
    report.facts.insert("notifications acknowledged", acked_notifications);
    report
        .facts
        .insert("paypal imported", lock(&ledger.paypal).len() as i64);

    // 2. Events: versions without gaps, the fold equals the projection, commands once.
    let mut events: BTreeMap<Uuid, Vec<QueryResult>> = BTreeMap::new();
    for row in rows(
        db,
        "SELECT dispute_id, version, kind, actor, reason, change, at FROM dispute_events ORDER BY dispute_id, version",
    )
    .await?
    {
        if let Some(id) = uuid(&row, "dispute_id") {
            events.entry(id).or_default().push(row);
        }
    }
    // Per command token, the commits it is in: the events of one decision share the dispute and the time, and
    // one command may write its reason into several (resolveWithRefund: triaged, resolved, refund requested).
    let mut tokens: BTreeMap<String, BTreeSet<(Uuid, String)>> = BTreeMap::new();
    let mut timer_effects: BTreeMap<(Uuid, String), usize> = BTreeMap::new();
    let mut event_count = 0;
    for (id, rows_of) in &events {
        for row in rows_of {
            event_count += 1;
            let reason = text(row, "reason");
            let change = json(row, "change").to_string();
            let actor = text(row, "actor");
            // A step's follow-up (the customer message's `message_sent`) may quote the command's reason.
            let by_command = !actor.starts_with("step:") && !actor.starts_with("timer:");
            for found in [reason.as_str(), change.as_str()].into_iter().filter(|_| by_command) {
                if let Some(at) = found.find("harness-cmd-") {
                    let token: String = found[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    let at = row
                        .try_get::<chrono::DateTime<chrono::Utc>>("", "at")
                        .map(|t| t.timestamp_micros().to_string())
                        .unwrap_or_else(|_| text(row, "at"));
                    tokens.entry(token).or_default().insert((*id, at));
                    break;
                }
            }
            if let Some(kind) = actor.strip_prefix("timer:") {
                *timer_effects.entry((*id, kind.to_owned())).or_default() += 1;
            }
        }
    }
    report.facts.insert("events", event_count);
    let projections = projections(store).await?;
    report.facts.insert("disputes", projections.len() as i64);
    for (id, projection) in &projections {
        let log = events.get(id).map(Vec::as_slice).unwrap_or_default();
        let versions: Vec<i64> = log
            .iter()
            .filter_map(|r| r.try_get::<i64>("", "version").ok())
            .collect();
        if versions != (1..=projection.version).collect::<Vec<_>>() {
            report.fail(format!(
                "dispute {id}: event versions {versions:?}, projection at {}",
                projection.version
            ));
            continue;
        }
        let domain_events: Result<Vec<DisputeEvent>, String> = log
            .iter()
            .map(|r| {
                Ok(DisputeEvent {
                    dispute_id: DisputeId::from_uuid(*id),
                    version: r.try_get::<i64>("", "version").map_err(|e| e.to_string())?,
                    at: r.try_get("", "at").map_err(|e| e.to_string())?,
                    actor: parse_actor(&text(r, "actor")),
                    reason: r.try_get::<Option<String>>("", "reason").ok().flatten(),
                    change: serde_json::from_value(json(r, "change")).map_err(|e| e.to_string())?,
                })
            })
            .collect();
        match domain_events.map(|events| verdict_domain::replay(&events)) {
            Ok(Some(folded)) => {
                let key = |d: &verdict_domain::Dispute| {
                    (
                        d.status,
                        d.stage,
                        d.version,
                        d.due_by.map(|t| t.timestamp_micros()),
                        d.queue,
                        d.assignee.clone(),
                        d.amount,
                        d.processor_dispute_id.clone(),
                    )
                };
                if key(&folded) != key(projection) {
                    report.fail(format!(
                        "dispute {id}: events fold to {:?}, projection is {:?}",
                        key(&folded),
                        key(projection)
                    ));
                }
            }
            Ok(None) => report.fail(format!("dispute {id}: no opening event")),
            Err(e) => report.fail(format!("dispute {id}: unreadable event: {e}")),
        }
    }
    let mut acked = 0;
    for command in lock(&ledger.commands).iter() {
        let found = tokens.get(&command.token).map_or(0, BTreeSet::len);
        let ok = match command.outcome {
            Outcome::Acked => {
                acked += 1;
                found == 1
            }
            Outcome::Refused => found == 0,
            Outcome::Unknown => found <= 1,
        };
        if !ok {
            report.fail(format!(
                "GraphQL command {} on {} ({:?}) is in the log {found} times",
                command.token, command.dispute, command.outcome
            ));
        }
    }
    report.facts.insert("graphql commands acknowledged", acked);
    report
        .facts
        .insert("graphql commands", lock(&ledger.commands).len() as i64);

    // 3. Timers: no firing acted twice (effects of a timer kind <= timers of that kind fired).
    let mut fired: BTreeMap<(Uuid, String), usize> = BTreeMap::new();
    for row in rows(db, "SELECT dispute_id, kind, status FROM timers").await? {
        if let Some(id) = uuid(&row, "dispute_id")
            && text(&row, "status") == "fired"
        {
            *fired.entry((id, text(&row, "kind"))).or_default() += 1;
        }
    }
    report
        .facts
        .insert("timers fired", fired.values().sum::<usize>() as i64);
    // Every event that set timers committed them with it: an open dispute with a due date, nothing submitted,
    // has its deadline timer (pending, or fired).
    let mut deadline: BTreeSet<Uuid> = BTreeSet::new();
    for row in rows(
        db,
        "SELECT dispute_id, kind, status FROM timers WHERE kind = 'deadline'",
    )
    .await?
    {
        if let Some(id) = uuid(&row, "dispute_id")
            && matches!(text(&row, "status").as_str(), "pending" | "fired")
        {
            deadline.insert(id);
        }
    }
    for (id, d) in &projections {
        use verdict_domain::Status::*;
        if d.due_by.is_some() && matches!(d.status, Notified | Triaged | EvidenceGathering) && !deadline.contains(id) {
            report.fail(format!(
                "dispute {id} is {:?} with a due date but has no deadline timer",
                d.status
            ));
        }
    }
    for (key, n) in &timer_effects {
        let f = fired.get(key).copied().unwrap_or(0);
        if *n > f {
            report.fail(format!("dispute {}: timer {} acted {n} times, fired {f}", key.0, key.1));
        }
    }

    // 4. Processor calls: one idempotency key per refund or acceptance, each a step's own key.
    let step_keys: BTreeMap<String, (String, String)> = rows(db, "SELECT idempotency_key, kind, status FROM steps")
        .await?
        .iter()
        .map(|r| (text(r, "idempotency_key"), (text(r, "kind"), text(r, "status"))))
        .collect();
    let calls = fake.calls();
    report.facts.insert("processor calls", calls.len() as i64);
    report.facts.insert("processor effects", fake.effects() as i64);
    for (target, keys) in fake.keys_by_target() {
        if keys.len() > 1 {
            report.fail(format!(
                "{target} performed under {} keys: {keys:?} (money moved twice)",
                keys.len()
            ));
        }
        for key in &keys {
            let base = key.split(':').next().unwrap_or(key);
            if !step_keys.contains_key(key) && !step_keys.contains_key(base) {
                report.fail(format!("{target}: key {key} belongs to no step"));
            }
        }
    }
    let dead = step_keys.values().filter(|(_, s)| s == "dead").count();
    report.facts.insert("steps", step_keys.len() as i64);
    report.facts.insert("steps dead", dead as i64);

    // 5. Messages: one mailbox message per succeeded message step. The customer's (after a refund) per dispute:
    // one per succeeded customer message step that read the dispute once the customer had an email (the order
    // linked to the dispute gave it), none for one that read it before (the step succeeds with nothing to
    // send). When a step read its dispute is not stored: it is after the step was added and before it was
    // recorded done, so a step added well after the link must have sent, one recorded done before the link
    // cannot have, and one whose span holds the link may have either.
    let mut customer: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut others = 0usize;
    let mut messages = 0usize;
    for row in rows(db, "SELECT dispute_id, channel FROM mailbox").await? {
        if let Some(id) = uuid(&row, "dispute_id") {
            messages += 1;
            if text(&row, "channel") == "customer" {
                *customer.entry(id).or_default() += 1;
            } else {
                others += 1;
            }
        }
    }
    // When each dispute's customer got an email: the order's link (the load's disputes arrive without one). A
    // message step performed before that had no one to write to and succeeded with nothing sent.
    let mut linked: BTreeMap<Uuid, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for row in rows(
        db,
        "SELECT dispute_id, at FROM dispute_events WHERE kind = 'order_linked'",
    )
    .await?
    {
        if let (Some(id), Ok(at)) = (uuid(&row, "dispute_id"), row.try_get("", "at")) {
            let first = linked.entry(id).or_insert(at);
            *first = (*first).min(at);
        }
    }
    // An event's time is decided before its commit; a commit lands well within this of it.
    let commit_lag = chrono::Duration::seconds(2);
    // Per dispute: succeeded customer message steps, those that must have sent, those that may have.
    let mut customer_steps: BTreeMap<Uuid, (usize, usize, usize)> = BTreeMap::new();
    let mut other_steps = 0usize;
    for row in rows(
        db,
        "SELECT dispute_id, kind, created_at, updated_at FROM steps WHERE status = 'succeeded' \
         AND kind IN ('customer_message', 'seller_message', 'notify_assignee')",
    )
    .await?
    {
        match (uuid(&row, "dispute_id"), text(&row, "kind").as_str()) {
            (Some(id), "customer_message") => {
                let added: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "created_at").ok();
                let done: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "updated_at").ok();
                let has_email = projections.get(&id).is_some_and(|d| d.customer.email.is_some());
                let link = linked.get(&id);
                let must = has_email && link.is_none_or(|at| added.is_some_and(|added| *at + commit_lag <= added));
                let may = has_email && link.is_none_or(|at| done.is_none_or(|done| *at <= done));
                let counts = customer_steps.entry(id).or_default();
                counts.0 += 1;
                counts.1 += usize::from(must);
                counts.2 += usize::from(may);
            }
            _ => other_steps += 1,
        }
    }
    let mut customer_messages = 0;
    for id in customer_steps.keys().chain(customer.keys()).collect::<BTreeSet<_>>() {
        let sent = customer.get(id).copied().unwrap_or(0);
        let (steps, must, may) = customer_steps.get(id).copied().unwrap_or((0, 0, 0));
        customer_messages += sent;
        if sent < must || sent > may {
            report.fail(format!(
                "dispute {id}: {sent} customer messages in the mailbox for {steps} succeeded customer message \
                 steps, of which {must} read the dispute after its customer had an email and {may} may have"
            ));
        }
    }
    if others != other_steps {
        report.fail(format!(
            "{others} seller and assignee messages in the mailbox for {other_steps} succeeded message steps"
        ));
    }
    report.facts.insert("messages", messages as i64);
    report.facts.insert("customer messages", customer_messages as i64);
    Ok(report)
}

/// The projections, read through the store's own mapping.
async fn projections(store: &Store) -> anyhow::Result<BTreeMap<Uuid, verdict_domain::Dispute>> {
    let mut out = BTreeMap::new();
    for row in rows(store.db(), "SELECT id FROM disputes").await? {
        let id: Uuid = match uuid(&row, "id") {
            Some(id) => id,
            None => continue,
        };
        if let Some(d) = store.load(DisputeId::from_uuid(id)).await? {
            out.insert(id, d);
        }
    }
    Ok(out)
}
