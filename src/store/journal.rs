//! The two rows that travel with every change of money state, inside its transaction: the
//! payment's audit trail (who moved it, from what, to what, why) and the outbox event that
//! billing will receive. Nothing reads what writing them answers, so on SQLite they go with
//! the transaction's next statement ([`super::db::Query::execute_with_next`]).

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Bind, Tx, query, query_per_backend};
use super::{StoreError, new_row_id};
use crate::domain::audit::AuditReason;
use crate::domain::payment::PaymentStatus;

/// One line of a payment's audit trail; `from: None` for its creation.
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditLine<'a> {
    pub payment_id: Uuid,
    pub from: Option<PaymentStatus>,
    pub to: PaymentStatus,
    pub actor: &'a str,
    pub reason: &'a AuditReason,
    pub at: OffsetDateTime,
}

impl<'a> AuditLine<'a> {
    /// The line's eight columns, as `$1`…`$8` of `statement`, with a new row id.
    pub(super) fn bind<'q, S: Bind<'q>>(&self, statement: S) -> S
    where
        'a: 'q,
    {
        statement
            .bind(new_row_id())
            .bind(self.payment_id)
            .bind(self.from.map(PaymentStatus::as_str))
            .bind(self.to)
            .bind(self.actor)
            .bind(self.reason.english())
            .bind(self.reason.to_json())
            .bind(self.at)
    }

    /// A line that records something about the payment without changing its status.
    pub fn note(
        payment_id: Uuid,
        status: PaymentStatus,
        actor: &'a str,
        reason: &'a AuditReason,
        at: OffsetDateTime,
    ) -> Self {
        AuditLine {
            payment_id,
            from: Some(status),
            to: status,
            actor,
            reason,
            at,
        }
    }
}

pub(super) async fn audit_in(tx: &mut Tx, line: AuditLine<'_>) -> Result<(), StoreError> {
    line.bind(query(
        "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, \
         detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    ))
    .execute_with_next(tx)
    .await?;
    Ok(())
}

/// An event for the outbox, delivered after the transaction commits (and only if it does).
pub(super) async fn outbox_in(
    tx: &mut Tx,
    aggregate_id: Uuid,
    event_type: &str,
    payload: String,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, awaiting_queue) \
         VALUES ($1, $2, $3, $4, $5, true)",
    )
    .bind(new_row_id())
    .bind(aggregate_id)
    .bind(event_type)
    .bind(payload)
    .bind(at)
    .execute_with_next(tx)
    .await?;
    Ok(())
}

/// [`audit_in`] and [`outbox_in`] for one change, in one round trip: the pair every change of a
/// payment's status writes.
pub(super) async fn audit_and_event_in(
    tx: &mut Tx,
    line: AuditLine<'_>,
    event_type: &str,
    payload: String,
) -> Result<(), StoreError> {
    let statement = query_per_backend(
        "WITH audit AS (INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, \
         reason, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
         INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, awaiting_queue) \
         VALUES ($9, $2, $10, $11, $8, true)",
        "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, \
         detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8); \
         INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, awaiting_queue) \
         VALUES ($9, $2, $10, $11, $8, true)",
    );
    line.bind(statement)
        .bind(new_row_id())
        .bind(event_type)
        .bind(payload)
        .execute_with_next(tx)
        .await?;
    Ok(())
}
