//! Rows to domain values and back. A row that no longer parses is reported as corrupt, never unwrapped.

use chrono::{DateTime, TimeZone, Utc};
use verdict_domain::{
    CardNetwork, Currency, Customer, CustomerEmail, CustomerName, Dispute, DisputeId, Money, ReasonCode,
};

use crate::StoreError;
use crate::entity::dispute;

/// Where disputes without a due date sort: after every real deadline, on both backends.
pub(crate) fn far_future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn corrupt(what: &str, id: uuid::Uuid, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} of dispute {id}: {err}"))
}

pub(crate) fn to_domain(row: dispute::Model) -> Result<Dispute, StoreError> {
    let id = row.id;
    let network: CardNetwork = row.network.parse().map_err(|e| corrupt("network", id, e))?;
    let currency = Currency::parse(&row.currency).map_err(|e| corrupt("currency", id, e))?;
    Ok(Dispute {
        id: DisputeId::from_uuid(id),
        processor: row.processor.parse().map_err(|e| corrupt("processor", id, e))?,
        processor_dispute_id: row.processor_dispute_id,
        payment_reference: row.payment_reference,
        order_reference: row.order_reference,
        seller_id: row.seller_id,
        customer: Customer {
            name: row
                .customer_name
                .map(|n| CustomerName::parse(&n))
                .transpose()
                .map_err(|e| corrupt("name", id, e))?,
            email: row
                .customer_email
                .map(|n| CustomerEmail::parse(&n))
                .transpose()
                .map_err(|e| corrupt("email", id, e))?,
            locale: row.customer_locale.parse().map_err(|e| corrupt("locale", id, e))?,
        },
        amount: Money::new(row.amount_minor, currency).map_err(|e| corrupt("amount", id, e))?,
        reason_code: ReasonCode::parse(network, &row.reason_code).map_err(|e| corrupt("reason code", id, e))?,
        reason_code_raw: row.reason_code_raw,
        stage: row.stage.parse().map_err(|e| corrupt("stage", id, e))?,
        status: row.status.parse().map_err(|e| corrupt("status", id, e))?,
        due_by: row.due_by,
        opened_at: row.opened_at,
        queue: row
            .queue
            .map(|q| q.parse())
            .transpose()
            .map_err(|e| corrupt("queue", id, e))?,
        priority: u8::try_from(row.priority).map_err(|e| corrupt("priority", id, e))?,
        assignee: row.assignee,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(crate) fn to_row(d: &Dispute) -> dispute::Model {
    dispute::Model {
        id: d.id.as_uuid(),
        processor: d.processor.to_string(),
        processor_dispute_id: d.processor_dispute_id.clone(),
        payment_reference: d.payment_reference.clone(),
        order_reference: d.order_reference.clone(),
        seller_id: d.seller_id.clone(),
        customer_name: d.customer.name.as_ref().map(|n| n.expose().to_owned()),
        customer_email: d.customer.email.as_ref().map(|e| e.expose().to_owned()),
        customer_locale: d.customer.locale.as_str().to_owned(),
        amount_minor: d.amount.minor_units(),
        currency: d.amount.currency().code().to_owned(),
        network: d.reason_code.network().to_string(),
        reason_code: d.reason_code.code().to_owned(),
        reason_code_raw: d.reason_code_raw.clone(),
        reason_category: d.reason_code.category().as_str().to_owned(),
        stage: d.stage.to_string(),
        status: d.status.to_string(),
        due_by: d.due_by,
        sort_due_at: d.due_by.unwrap_or_else(far_future),
        opened_at: d.opened_at,
        queue: d.queue.map(|q| q.to_string()),
        priority: i32::from(d.priority),
        assignee: d.assignee.clone(),
        version: d.version,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}
