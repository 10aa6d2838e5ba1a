//! Refunds: reserved under the payment's lock against what the refund rules allow, settled with
//! the payment's move to `partially_refunded` or `refunded`, and asked about until final.

use oplata_providers::Amount;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::audit::AuditReason;
use crate::domain::refunds::RefundContext;

use super::db::{Executor, Tx, query, query_as};
use super::journal::{AuditLine, audit_in, outbox_in};
use super::payments::lock_payment_in;
use super::{
    NewRefund, PaymentRecord, RefundRecord, RefundSettlement, StatusChange, Store, StoreError,
};

pub(super) async fn refund_outbox_in(
    conn: &mut Tx,
    refund: &RefundRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let payload = crate::events::refund(refund, event_type, at)?;
    outbox_in(conn, refund.payment_id, event_type, payload, at).await?;
    Ok(())
}

/// What the refund rules read about a payment and the operator asking: the refunds holding part
/// of the payment and the operator's refunds today (one statement).
async fn refund_context_on<'c>(
    on: impl Executor<'c>,
    payment: &PaymentRecord,
    operator: &str,
    now: OffsetDateTime,
) -> Result<RefundContext, StoreError> {
    let (held, today): (i64, i64) = query_as(
        "SELECT CAST(COALESCE((SELECT SUM(amount_minor) FROM refunds WHERE payment_id = $1 \
         AND status IN ('pending', 'awaiting_acquirer', 'succeeded')), 0) AS BIGINT), \
         CAST(COALESCE((SELECT SUM(amount_minor) FROM refunds WHERE operator = $2 \
         AND created_at >= $3 AND status <> 'failed'), 0) AS BIGINT)",
    )
    .bind(payment.id)
    .bind(operator)
    .bind(now.replace_time(time::Time::MIDNIGHT))
    .fetch_one(on)
    .await?;
    Ok(RefundContext {
        payment_status: payment.status,
        paid_minor: payment.amount_minor,
        paid_at: payment.created_at,
        held_minor: held,
        operator_today_minor: today,
    })
}

impl Store {
    /// The refund rules' reading of a payment as it stands, without a lock and without writing:
    /// what a confirmation step shows. The refund itself is checked again under the lock.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn refund_context(
        &self,
        payment_id: Uuid,
        operator: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(PaymentRecord, RefundContext)>, StoreError> {
        let Some(payment) = self.get_payment(payment_id).await? else {
            return Ok(None);
        };
        let context = refund_context_on(&self.pool, &payment, operator, now).await?;
        Ok(Some((payment, context)))
    }

    /// Reserves a refund under a lock on the payment row, after `rules` (the caller's, rule 13)
    /// accept it against what the lock makes stable: the payment, the refunds already holding
    /// part of it and the operator's refunds today. `rules` answers the amount to refund.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reserve_refund<Refused>(
        &self,
        r: &NewRefund<'_>,
        rules: impl FnOnce(&RefundContext) -> Result<Amount, Refused> + Send,
    ) -> Result<Result<RefundRecord, Refused>, StoreError> {
        use crate::domain::refunds::RefundStatus;
        let mut tx = self.pool.begin_write().await?;
        let payment = lock_payment_in(&mut tx, r.payment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let context = refund_context_on(&mut tx, &payment, r.operator, r.now).await?;
        let amount = match rules(&context) {
            Ok(amount) => amount,
            Err(refused) => return Ok(Err(refused)),
        };
        let status = if r.awaiting_acquirer {
            RefundStatus::AwaitingAcquirer
        } else {
            RefundStatus::Pending
        };
        // A refund whose request dies before the acquirer's answer is recorded is asked
        // about (or handed to a person) once this grace has passed.
        let first_check =
            (status == RefundStatus::Pending).then(|| r.now + crate::domain::refunds::ANSWER_GRACE);
        let refund: RefundRecord = query_as(concat!(
            "INSERT INTO refunds (id, payment_id, amount_minor, status, reason, operator, \
             client_id, created_at, updated_at, next_check_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING ",
            refund_columns!()
        ))
        .bind(r.id)
        .bind(r.payment_id)
        .bind(amount.minor())
        .bind(status.as_str())
        .bind(r.reason)
        .bind(r.operator)
        .bind(r.client_id)
        .bind(r.now)
        .bind(first_check)
        .fetch_one(&mut tx)
        .await?;
        let actor = format!("operator:{}", r.operator);
        let reason = AuditReason::RefundRequested {
            refund_id: refund.id,
            amount_minor: amount.minor(),
            reason: r.reason.to_owned(),
        };
        let line = AuditLine::note(r.payment_id, payment.status, &actor, &reason, r.now);
        audit_in(&mut tx, line).await?;
        refund_outbox_in(&mut tx, &refund, "refund.requested", r.now).await?;
        tx.commit().await?;
        Ok(Ok(refund))
    }

    /// Records what the acquirer did with a pending or awaiting refund; a succeeded refund moves
    /// the payment to `partially_refunded` or `refunded` in the same transaction. A refund
    /// already final is returned unchanged.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn settle_refund(
        &self,
        refund_id: Uuid,
        s: &RefundSettlement<'_>,
    ) -> Result<RefundRecord, StoreError> {
        use crate::domain::refunds::{RefundStatus, status_after_refunds};
        let mut tx = self.pool.begin_write().await?;
        let current: Option<RefundRecord> = query_as(concat!(
            "SELECT ",
            refund_columns!(),
            " FROM refunds WHERE id = $1"
        ))
        .bind(refund_id)
        .fetch_optional(&mut tx)
        .await?;
        let current = current.ok_or(StoreError::NotFound)?;
        // Lock the payment first, as reservations do, so the two never deadlock.
        let payment = lock_payment_in(&mut tx, current.payment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let now = OffsetDateTime::now_utc();
        let (failure_code, failure_message) = s.failure.unzip();
        let updated: Option<RefundRecord> = query_as(concat!(
            "UPDATE refunds SET status = $2, acquirer_refund_id = COALESCE($3, \
             acquirer_refund_id), \
             failure_code = $4, failure_message = $5, updated_at = $6, \
             next_check_at = CASE WHEN $2 = 'pending' THEN $7 ELSE NULL END, \
             resolution_note = COALESCE($8, resolution_note), \
             resolved_by = CASE WHEN $8 IS NULL THEN resolved_by ELSE $9 END \
             WHERE id = $1 AND status IN ('pending', 'awaiting_acquirer') RETURNING ",
            refund_columns!()
        ))
        .bind(refund_id)
        .bind(s.status.as_str())
        .bind(s.acquirer_refund_id)
        .bind(failure_code)
        .bind(failure_message)
        .bind(now)
        // A refund the acquirer accepted but has not finished is asked about again soon.
        .bind(now + time::Duration::seconds(30))
        .bind(s.resolution_note)
        .bind(s.actor)
        .fetch_optional(&mut tx)
        .await?;
        let Some(updated) = updated else {
            return Ok(current);
        };
        if let Some(note) = s.resolution_note {
            let reason = AuditReason::RefundSettledFromReview {
                refund_id: updated.id,
                status: updated.status.as_str().to_owned(),
                note: note.to_owned(),
            };
            let line = AuditLine::note(payment.id, payment.status, s.actor, &reason, now);
            audit_in(&mut tx, line).await?;
            query("UPDATE payments SET review_settled_at = $2 WHERE id = $1")
                .bind(payment.id)
                .bind(now)
                .execute(&mut tx)
                .await?;
        }
        match s.status {
            RefundStatus::Succeeded => {
                let (succeeded,): (i64,) = query_as(
                    "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE \
                     payment_id = $1 AND status = 'succeeded'",
                )
                .bind(current.payment_id)
                .fetch_one(&mut tx)
                .await?;
                if let Some(event) = status_after_refunds(payment.amount_minor, succeeded) {
                    let change = StatusChange {
                        event,
                        next_action: None,
                        failure: None,
                        actor: s.actor,
                        reason: &crate::domain::audit::AuditReason::RefundSucceeded,
                        acquirer_operation_id: None,
                    };
                    super::payments::transition_in(&mut tx, payment.id, &change).await?;
                }
                refund_outbox_in(&mut tx, &updated, "refund.succeeded", now).await?;
            }
            RefundStatus::Failed => {
                refund_outbox_in(&mut tx, &updated, "refund.failed", now).await?
            }
            RefundStatus::Pending | RefundStatus::AwaitingAcquirer => {}
        }
        tx.commit().await?;
        Ok(updated)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_refund(&self, id: Uuid) -> Result<Option<RefundRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            refund_columns!(),
            " FROM refunds WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_refunds(&self, payment_id: Uuid) -> Result<Vec<RefundRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            refund_columns!(),
            " FROM refunds WHERE payment_id = $1 ORDER BY created_at, id"
        ))
        .bind(payment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Refunds waiting to be done in an acquirer's cabinet (NetPay), oldest first.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn refunds_awaiting(&self) -> Result<Vec<RefundRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            refund_columns!(),
            " FROM refunds WHERE status = 'awaiting_acquirer' ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims pending refunds whose status is due to be asked (lease as for payments).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_due_refunds(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<RefundRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let claimed: Vec<RefundRecord> = query_as(concat!(
            "UPDATE refunds SET next_check_at = $2, check_attempts = check_attempts + 1 WHERE id \
             IN (\
             SELECT id FROM refunds WHERE status = 'pending' AND review_reason IS NULL \
             AND next_check_at IS NOT NULL AND next_check_at <= $1 ORDER BY next_check_at LIMIT $3",
            " FOR UPDATE SKIP LOCKED",
            ") RETURNING ",
            refund_columns!()
        ))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn schedule_refund_check(
        &self,
        refund_id: Uuid,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query("UPDATE refunds SET next_check_at = $2 WHERE id = $1 AND status = 'pending'")
            .bind(refund_id)
            .bind(next)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
