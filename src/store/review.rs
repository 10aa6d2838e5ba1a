//! The review list: payments and refunds a person must settle, and what waits for a person.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::query_as;
use super::journal::{AuditLine, audit_in};
use super::payments::lock_payment_in;
use super::{
    AttentionCounts, PaymentRecord, RefundRecord, SettledReview, StatusChange, Store, StoreError,
    TransitionResult,
};
use crate::domain::audit::{AuditReason, ReviewReason};
use crate::domain::payment::PaymentStatus;

impl Store {
    /// Marks a payment for a person to look at, with an audit row saying why.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn flag_payment_for_review(
        &self,
        id: Uuid,
        actor: &str,
        reason: &ReviewReason,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let now = OffsetDateTime::now_utc();
        let status: Option<(String,)> = query_as(
            "UPDATE payments SET review_reason = $2, review_detail = $4, updated_at = $3 \
             WHERE id = $1 RETURNING status",
        )
        .bind(id)
        .bind(reason.english())
        .bind(now)
        .bind(reason.to_json())
        .fetch_optional(&mut tx)
        .await?;
        let (status,) = status.ok_or(StoreError::NotFound)?;
        let status = PaymentStatus::try_from(status)
            .map_err(|unknown| StoreError::Corrupt(format!("payment {id}: {unknown}")))?;
        let reason = AuditReason::FlaggedForReview {
            review: reason.clone(),
        };
        audit_in(&mut tx, AuditLine::note(id, status, actor, &reason, now)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A person settles a payment on the review list: applies `event` (when given) and takes the
    /// payment off the list, with an audit row carrying the note. `None` when it is not in review.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn resolve_payment_review(
        &self,
        id: Uuid,
        event: Option<crate::domain::payment::PaymentEvent>,
        actor: &str,
        note: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let current = lock_payment_in(&mut tx, id).await?;
        if current.is_none_or(|p| p.review_reason.is_none()) {
            return Ok(None);
        }
        if let Some(event) = event {
            let change = StatusChange {
                event,
                next_action: None,
                failure: (event == crate::domain::payment::PaymentEvent::Failed).then_some((
                    "settled_by_operator",
                    "an operator found that the payment did not happen",
                )),
                actor,
                reason: &crate::domain::audit::AuditReason::SettledFromReview,
                acquirer_operation_id: None,
            };
            if let TransitionResult::Refused(_, refused) =
                super::payments::transition_in(&mut tx, id, &change).await?
            {
                return Err(StoreError::Refused(refused.to_string()));
            }
        }
        let now = OffsetDateTime::now_utc();
        let updated: PaymentRecord = query_as(concat!(
            "UPDATE payments SET review_reason = NULL, review_detail = NULL, \
             review_settled_at = $2, updated_at = $2 WHERE id = $1 RETURNING ",
            payment_columns!()
        ))
        .bind(id)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        let reason = AuditReason::ReviewResolved {
            note: note.to_owned(),
        };
        audit_in(
            &mut tx,
            AuditLine::note(id, updated.status, actor, &reason, now),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(updated))
    }

    /// Puts a pending refund whose outcome cannot be learned on the review list; it is no longer
    /// asked about.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn flag_refund_for_review(
        &self,
        refund_id: Uuid,
        actor: &str,
        reason: &ReviewReason,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let now = OffsetDateTime::now_utc();
        let flagged: Option<(Uuid,)> = query_as(
            "UPDATE refunds SET review_reason = $2, review_detail = $4, next_check_at = NULL, \
             updated_at = $3 WHERE id = $1 AND status = 'pending' RETURNING payment_id",
        )
        .bind(refund_id)
        .bind(reason.english())
        .bind(now)
        .bind(reason.to_json())
        .fetch_optional(&mut tx)
        .await?;
        let Some((payment_id,)) = flagged else {
            return Ok(());
        };
        // The payment's status is only read: the line records the flag, not a move.
        let (status,): (String,) = query_as("SELECT status FROM payments WHERE id = $1")
            .bind(payment_id)
            .fetch_one(&mut tx)
            .await?;
        let status = PaymentStatus::try_from(status)
            .map_err(|unknown| StoreError::Corrupt(format!("payment {payment_id}: {unknown}")))?;
        let line = AuditReason::RefundFlaggedForReview {
            refund_id,
            review: reason.clone(),
        };
        audit_in(
            &mut tx,
            AuditLine::note(payment_id, status, actor, &line, now),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pending refunds a person must settle.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn refunds_for_review(&self) -> Result<Vec<RefundRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            refund_columns!(),
            " FROM refunds WHERE review_reason IS NOT NULL AND status = 'pending' ORDER BY \
             updated_at, id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Payments a person must look at.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn payments_for_review(&self) -> Result<Vec<PaymentRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE review_reason IS NOT NULL ORDER BY updated_at"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The payments whose review item (or a refund's) a person settled most lately, newest
    /// first: the settled items, found after they left the open list.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn settled_reviews(&self, limit: i64) -> Result<Vec<SettledReview>, StoreError> {
        let rows: Vec<(Uuid, String, i64, String, OffsetDateTime)> = query_as(
            "SELECT id, supplier_id, amount_minor, status, review_settled_at FROM payments \
             WHERE review_settled_at IS NOT NULL ORDER BY review_settled_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(payment_id, supplier_id, amount_minor, status, settled_at)| {
                    let status = PaymentStatus::try_from(status).map_err(|unknown| {
                        StoreError::Corrupt(format!("payment {payment_id}: {unknown}"))
                    })?;
                    Ok(SettledReview {
                        payment_id,
                        supplier_id,
                        amount_minor,
                        status,
                        settled_at,
                    })
                },
            )
            .collect()
    }

    /// How many things wait for a person, counted in the database.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn attention_counts(&self) -> Result<AttentionCounts, StoreError> {
        let (webhooks_dead, payments_in_review, refunds_awaiting_acquirer, refunds_in_review): (
            i64,
            i64,
            i64,
            i64,
        ) = query_as(
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'dead'), \
             (SELECT COUNT(*) FROM payments WHERE review_reason IS NOT NULL), \
             (SELECT COUNT(*) FROM refunds WHERE status = 'awaiting_acquirer'), \
             (SELECT COUNT(*) FROM refunds WHERE review_reason IS NOT NULL AND status = 'pending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(AttentionCounts {
            webhooks_dead,
            payments_in_review,
            refunds_awaiting_acquirer,
            refunds_in_review,
        })
    }
}
