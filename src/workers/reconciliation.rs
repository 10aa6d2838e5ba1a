//! Resolves payments whose outcome is not known: asks the acquirer's status query, with
//! exponential backoff and jitter, until the answer is final; expires payments whose customer
//! never acted; sends payments of acquirers without a status query to manual review once the
//! notification window has passed. It never charges: it only asks.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use oplata_providers::StatusOutcome;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::domain::payment::{
    ACTION_WINDOW, AbsentOperation, PaymentEvent, PaymentStatus, absent_operation_verdict,
};
use crate::domain::refunds::RefundStatus;
use crate::service::payments::{StatusReading, read_status};
use crate::service::{ServiceError, Services, refunds};
use crate::store::{PaymentRecord, RefundRecord, RefundSettlement, StatusChange, StoreError};
use oplata_providers::RefundOutcome;

const ACTOR: &str = "worker:reconciliation";
/// A claimed payment is left alone by other workers this long.
const LEASE: time::Duration = time::Duration::minutes(2);
const BATCH: i64 = 20;
/// A charge still unfinished at the acquirer this long after it was sent goes to a person.
const PROCESSING_REVIEW_AFTER: time::Duration = time::Duration::hours(1);

/// How long to wait before the `attempt`-th next question (0-based): 10 s doubling, capped,
/// with jitter so that many payments do not ask at the same moment.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(10))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt as usize)
        .unwrap_or(max)
}

/// Runs until `shutdown` turns true.
pub async fn run(
    services: Arc<Services>,
    interval: Duration,
    max_backoff: Duration,
    shutdown: watch::Receiver<bool>,
) {
    super::every(interval, shutdown, || async {
        let now = OffsetDateTime::now_utc();
        match reconcile_due(&services, now, max_backoff).await {
            Ok(0) => {}
            Ok(done) => tracing::info!(done, "reconciliation pass"),
            Err(error) => tracing::error!(%error, "reconciliation pass failed"),
        }
        match reconcile_refunds(&services, now, max_backoff).await {
            Ok(0) => {}
            Ok(done) => tracing::info!(done, "refund status pass"),
            Err(error) => tracing::error!(%error, "refund status pass failed"),
        }
    })
    .await;
}

/// One pass over the payments due at `now`; returns how many were looked at.
pub async fn reconcile_due(
    services: &Services,
    now: OffsetDateTime,
    max_backoff: Duration,
) -> Result<usize, StoreError> {
    let due = services
        .store
        .claim_due_payments(now, now + LEASE, BATCH)
        .await?;
    let count = due.len();
    for payment in due {
        let id = payment.id;
        if let Err(error) = reconcile(services, payment, now, max_backoff).await {
            tracing::error!(payment_id = %id, %error, "reconciliation failed; it will be retried after the lease");
        }
    }
    Ok(count)
}

/// One pass over pending refunds whose check is due. A refund the acquirer accepted is asked
/// about by its refund id, and settled when final (a failed refund frees its amount again); one
/// still pending after [`REFUND_REVIEW_AFTER`] goes to a person. A refund whose answer was never
/// recorded (its request died, or the answer was unreadable) is looked up by its reference,
/// settled as never made past its deadline, or handed to a person.
pub async fn reconcile_refunds(
    services: &Services,
    now: OffsetDateTime,
    max_backoff: Duration,
) -> Result<usize, StoreError> {
    let due = services
        .store
        .claim_due_refunds(now, now + LEASE, BATCH)
        .await?;
    let count = due.len();
    for refund in due {
        let id = refund.id;
        if let Err(error) = reconcile_refund(services, refund, now, max_backoff).await {
            tracing::error!(refund_id = %id, %error, "refund reconciliation failed; it will be retried after the lease");
        }
    }
    Ok(count)
}

/// A refund the acquirer has not finished after this long is handed to a person.
const REFUND_REVIEW_AFTER: time::Duration = time::Duration::days(3);

#[tracing::instrument(skip_all, fields(refund_id = %refund.id))]
async fn reconcile_refund(
    services: &Services,
    refund: RefundRecord,
    now: OffsetDateTime,
    max_backoff: Duration,
) -> Result<(), ServiceError> {
    let Some(acquirer_refund_id) = refund.acquirer_refund_id.clone() else {
        refunds::resolve_unanswered(services, refund, ACTOR, now).await?;
        return Ok(());
    };
    let payment = services
        .store
        .get_payment(refund.payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let entry = services.supplier_of(&payment.supplier_id)?;
    let outcome = entry
        .acquirer
        .refund_status(&acquirer_refund_id)
        .await
        .unwrap_or_else(|e| RefundOutcome::Unknown {
            reason: e.to_string(),
        });
    let settlement = match &outcome {
        RefundOutcome::Succeeded { .. } => RefundSettlement {
            status: RefundStatus::Succeeded,
            acquirer_refund_id: None,
            failure: None,
            actor: ACTOR,
            resolution_note: None,
        },
        RefundOutcome::Declined(decline) => RefundSettlement {
            status: RefundStatus::Failed,
            acquirer_refund_id: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor: ACTOR,
            resolution_note: None,
        },
        RefundOutcome::Pending { .. }
        | RefundOutcome::Unknown { .. }
        | RefundOutcome::NotSent { .. } => {
            if now >= refund.created_at + REFUND_REVIEW_AFTER {
                let reason = crate::domain::audit::ReviewReason::RefundUnfinished {
                    acquirer: entry.acquirer.kind().to_string(),
                    acquirer_refund_id: acquirer_refund_id.to_string(),
                    days: REFUND_REVIEW_AFTER.whole_days(),
                };
                services
                    .store
                    .flag_refund_for_review(refund.id, ACTOR, &reason)
                    .await?;
                return Ok(());
            }
            let again = now
                + backoff(
                    u32::try_from(refund.check_attempts).unwrap_or(u32::MAX),
                    max_backoff,
                );
            services
                .store
                .schedule_refund_check(refund.id, again)
                .await?;
            return Ok(());
        }
    };
    services.store.settle_refund(refund.id, &settlement).await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(payment_id = %payment.id))]
async fn reconcile(
    services: &Services,
    payment: PaymentRecord,
    now: OffsetDateTime,
    max_backoff: Duration,
) -> Result<(), StoreError> {
    let Some(status) = Some(payment.status) else {
        return services.store.schedule_check(payment.id, None).await;
    };
    let deadline = payment
        .action_deadline
        .unwrap_or(payment.created_at + ACTION_WINDOW);
    let waiting_for_customer = matches!(
        status,
        PaymentStatus::Created | PaymentStatus::RequiresAction
    );
    let again = now
        + backoff(
            u32::try_from(payment.check_attempts).unwrap_or(u32::MAX),
            max_backoff,
        );
    let Some(entry) = services.suppliers.get(&payment.supplier_id) else {
        services
            .store
            .flag_payment_for_review(
                payment.id,
                ACTOR,
                &crate::domain::audit::ReviewReason::SupplierGone,
            )
            .await?;
        return services.store.schedule_check(payment.id, None).await;
    };
    if !entry.acquirer.capabilities().status_query {
        if now >= deadline {
            let reason = crate::domain::audit::ReviewReason::NoStatusQuery {
                acquirer: entry.acquirer.kind().to_string(),
            };
            services
                .store
                .flag_payment_for_review(payment.id, ACTOR, &reason)
                .await?;
            return services.store.schedule_check(payment.id, None).await;
        }
        return services
            .store
            .schedule_check(payment.id, Some(deadline.max(again)))
            .await;
    }
    let outcome = match entry
        .acquirer
        .payment_status(&payment.acquirer_order_id)
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => StatusOutcome::Unknown {
            reason: error.to_string(),
        },
    };
    let change = match read_status(&outcome, payment.amount_minor, ACTOR) {
        StatusReading::Final(change) => change,
        StatusReading::AmountMismatch(reason) => {
            services
                .store
                .flag_payment_for_review(payment.id, ACTOR, &reason)
                .await?;
            return services.store.schedule_check(payment.id, None).await;
        }
        // A charge sent to the acquirer that it has no record of: past the deadline it never
        // happened, and its order id is never sent again.
        StatusReading::NotFinal if outcome == StatusOutcome::NotFound && !waiting_for_customer => {
            let submitted = payment.submitted_at.unwrap_or(payment.updated_at);
            match absent_operation_verdict(submitted, now) {
                AbsentOperation::NeverHappened => StatusChange {
                    event: PaymentEvent::Failed,
                    next_action: None,
                    failure: Some((
                        "not_received_by_acquirer",
                        "the acquirer never received the charge; nothing was debited",
                    )),
                    actor: ACTOR,
                    reason: &crate::domain::audit::AuditReason::NeverHappened,
                    acquirer_operation_id: None,
                },
                AbsentOperation::AskAgainBy(by) => {
                    return services
                        .store
                        .schedule_check(payment.id, Some(again.min(by)))
                        .await;
                }
            }
        }
        StatusReading::NotFinal
            if matches!(outcome, StatusOutcome::Pending | StatusOutcome::NotFound)
                && waiting_for_customer
                && now >= deadline =>
        {
            StatusChange {
                event: PaymentEvent::Expired,
                next_action: None,
                failure: Some((
                    "expired",
                    "the customer did not complete the payment in time",
                )),
                actor: ACTOR,
                reason: &crate::domain::audit::AuditReason::ActionWindowPassed,
                acquirer_operation_id: None,
            }
        }
        StatusReading::NotFinal => {
            if let StatusOutcome::Unknown { reason } = &outcome {
                tracing::warn!(%reason, "status query gave no answer; asking again later");
            }
            // A charge the acquirer keeps calling unfinished (or cannot be asked about) for an
            // hour goes in front of a person, and is still asked about: it settles by itself
            // if the acquirer finishes it.
            let submitted = payment.submitted_at.unwrap_or(payment.updated_at);
            if status == PaymentStatus::Processing
                && payment.review_reason.is_none()
                && now >= submitted + PROCESSING_REVIEW_AFTER
            {
                let reason = crate::domain::audit::ReviewReason::ChargeUnfinished {
                    acquirer: entry.acquirer.kind().to_string(),
                    in_progress: !matches!(&outcome, StatusOutcome::Unknown { .. }),
                };
                services
                    .store
                    .flag_payment_for_review(payment.id, ACTOR, &reason)
                    .await?;
            }
            // Before the deadline a pending answer is normal; ask again, but at the deadline at
            // the latest, when an abandoned payment expires.
            let next = if waiting_for_customer {
                again.min(deadline)
            } else {
                again
            };
            return services.store.schedule_check(payment.id, Some(next)).await;
        }
    };
    services
        .store
        .transition_payment_from(&payment, &change)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(600);
        assert!(backoff(0, max) >= Duration::from_secs(10));
        assert!(backoff(3, max) >= Duration::from_secs(80));
        assert!(
            backoff(30, max) <= max * 2,
            "jitter stays within one more period"
        );
    }
}
