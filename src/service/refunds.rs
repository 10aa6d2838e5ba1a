//! Refunds (rule 13): reserved under the payment's lock, then asked of the acquirer after the
//! commit; a failure frees the amount again. Where the acquirer has no refund API (NetPay) the
//! refund waits for the operator to do it in the acquirer's cabinet and for the acquirer's
//! notification to settle it.

use oplata_providers::{Acquirer, Amount, RefundOutcome, RefundRequest};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ServiceError, Services};
use crate::domain::refunds::{REFUND_NEVER_HAPPENED_AFTER, RefundStatus, check_refund};
use crate::store::{ClaimedKey, NewRefund, PaymentRecord, RefundRecord, RefundSettlement};

/// `client_id` is the API client asking, or `None` for the desk's own pages. `key` is the
/// idempotency key's claim: the refund gets its id, and a key whose first request died resumes
/// the refund that request reserved instead of reserving (and paying) a second one.
#[tracing::instrument(skip_all, fields(payment_id = %payment_id, refund_id = %key.resource_id))]
pub async fn create(
    services: &Services,
    client_id: Option<Uuid>,
    payment_id: Uuid,
    amount: Option<Amount>,
    reason: &str,
    operator: &str,
    key: ClaimedKey,
) -> Result<RefundRecord, ServiceError> {
    if key.resumed
        && let Some(existing) = services.store.get_refund(key.resource_id).await?
    {
        if existing.payment_id != payment_id {
            return Err(ServiceError::NotFound);
        }
        return resume(services, existing, &format!("operator:{operator}")).await;
    }
    let payment = services
        .store
        .get_payment(payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let entry = services.supplier_of(&payment.supplier_id)?;
    let capabilities = entry.acquirer.capabilities();
    let new = NewRefund {
        id: key.resource_id,
        payment_id,
        reason,
        operator,
        client_id,
        awaiting_acquirer: !capabilities.refunds,
        now: OffsetDateTime::now_utc(),
    };
    let limits = services.settings.refund_limits();
    let refund = services
        .store
        .reserve_refund(&new, |context| {
            check_refund(context, amount, reason, &limits, new.now)
        })
        .await??;
    tracing::info!(status = %refund.status, "refund reserved");
    if !capabilities.refunds {
        return Ok(refund);
    }
    send(services, entry.acquirer.as_ref(), &payment, refund).await
}

/// A refund as it would be made now: checked by the same rules as the refund itself, written
/// nowhere. The desk's confirmation step shows it; the refund is checked again under the lock.
#[derive(Debug)]
pub struct RefundPreview {
    pub payment: PaymentRecord,
    pub amount: Amount,
    /// What may still be refunded after this refund.
    pub remaining_after_minor: i64,
}

pub async fn preview(
    services: &Services,
    payment_id: Uuid,
    amount: Option<Amount>,
    reason: &str,
    operator: &str,
) -> Result<RefundPreview, ServiceError> {
    let now = OffsetDateTime::now_utc();
    let (payment, context) = services
        .store
        .refund_context(payment_id, operator, now)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let limits = services.settings.refund_limits();
    let amount = check_refund(&context, amount, reason, &limits, now)?;
    Ok(RefundPreview {
        remaining_after_minor: context.paid_minor - context.held_minor - amount.minor(),
        payment,
        amount,
    })
}

/// Asks the acquirer to refund, under the refund's own id as its reference on every attempt.
async fn send(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: &PaymentRecord,
    refund: RefundRecord,
) -> Result<RefundRecord, ServiceError> {
    let amount = Amount::from_minor(refund.amount_minor)
        .map_err(|e| ServiceError::internal_from("the refund amount", e))?;
    let operation_id = payment
        .acquirer_operation_id
        .clone()
        .unwrap_or_else(|| payment.acquirer_order_id.clone());
    let refund_ref = refund.id.to_string();
    // A refund's receipt ("возврат прихода") has the payment's line for the sum given back.
    let receipt = super::receipts::for_payment(services, payment, amount);
    let outcome = adapter
        .refund(&RefundRequest {
            operation_id: &operation_id,
            refund_ref: &refund_ref,
            amount: Some(amount),
            reason: &refund.reason,
            receipt: receipt.as_ref(),
        })
        .await
        .map_err(|e| ServiceError::internal_from("the refund request to the acquirer", e))?;
    record_outcome(
        services,
        adapter,
        refund,
        &outcome,
        &format!("acquirer:{}", adapter.kind()),
    )
    .await
}

/// Takes up a refund whose request died. One the acquirer answered is shown as it stands; one
/// whose answer was never recorded is looked up by its reference and, when the acquirer has no
/// such refund and it is recent, sent again under the same reference (the acquirer
/// de-duplicates); where no lookup exists it goes to a person, never to a second call.
pub async fn resume(
    services: &Services,
    refund: RefundRecord,
    actor: &str,
) -> Result<RefundRecord, ServiceError> {
    if !is_unanswered(&refund) {
        return Ok(refund);
    }
    tracing::info!(refund_id = %refund.id, "resuming a refund whose request died");
    answer_lost(services, refund, actor, OffsetDateTime::now_utc(), true).await
}

/// How long after its reservation a refund the acquirer has no record of may be sent again by a
/// retried request; well inside [`REFUND_NEVER_HAPPENED_AFTER`].
const RESEND_WINDOW: time::Duration = time::Duration::minutes(5);

/// A pending refund for which no answer of the acquirer was recorded.
fn is_unanswered(refund: &RefundRecord) -> bool {
    refund.status == RefundStatus::Pending
        && refund.acquirer_refund_id.is_none()
        && refund.review_reason.is_none()
}

/// Learns what became of a pending refund whose answer was lost, without ever sending it again:
/// the acquirer's lookup by reference settles it; "no such refund" past the deadline means it
/// never happened (the amount is free again); an acquirer that cannot be asked hands it to a
/// person on the review list.
pub async fn resolve_unanswered(
    services: &Services,
    refund: RefundRecord,
    actor: &str,
    now: OffsetDateTime,
) -> Result<RefundRecord, ServiceError> {
    answer_lost(services, refund, actor, now, false).await
}

/// [`resolve_unanswered`], where a retried request (`may_resend`) also sends a recent refund
/// again, under the same reference, when the acquirer has none: one lookup decides.
async fn answer_lost(
    services: &Services,
    refund: RefundRecord,
    actor: &str,
    now: OffsetDateTime,
    may_resend: bool,
) -> Result<RefundRecord, ServiceError> {
    let payment = services
        .store
        .get_payment(refund.payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let entry = services.supplier_of(&payment.supplier_id)?;
    let adapter = entry.acquirer.as_ref();
    if !adapter.capabilities().refund_lookup {
        let reason = crate::domain::audit::ReviewReason::RefundAnswerLost {
            acquirer: adapter.kind().to_string(),
            amount_minor: refund.amount_minor,
        };
        services
            .store
            .flag_refund_for_review(refund.id, actor, &reason)
            .await?;
        return reload(services, refund.id).await;
    }
    match adapter.find_refund(&refund.id.to_string()).await {
        Ok(Some(outcome)) => record_outcome(services, adapter, refund, &outcome, actor).await,
        Ok(None) if may_resend && now < refund.created_at + RESEND_WINDOW => {
            send(services, adapter, &payment, refund).await
        }
        Ok(None) if now >= refund.created_at + REFUND_NEVER_HAPPENED_AFTER => {
            let settlement = RefundSettlement {
                status: RefundStatus::Failed,
                acquirer_refund_id: None,
                failure: Some((
                    "refund_not_received",
                    "the acquirer never received the refund; nothing was paid back",
                )),
                actor,
                resolution_note: None,
            };
            Ok(services.store.settle_refund(refund.id, &settlement).await?)
        }
        Ok(None) | Err(_) => {
            let again = (now + time::Duration::seconds(30))
                .min(refund.created_at + REFUND_NEVER_HAPPENED_AFTER);
            services
                .store
                .schedule_refund_check(refund.id, again)
                .await?;
            Ok(refund)
        }
    }
}

async fn reload(services: &Services, refund_id: Uuid) -> Result<RefundRecord, ServiceError> {
    services
        .store
        .get_refund(refund_id)
        .await?
        .ok_or(ServiceError::NotFound)
}

async fn record_outcome(
    services: &Services,
    adapter: &dyn Acquirer,
    refund: RefundRecord,
    outcome: &RefundOutcome,
    actor: &str,
) -> Result<RefundRecord, ServiceError> {
    let not_sent;
    let settlement = match outcome {
        RefundOutcome::Succeeded { refund_id } => RefundSettlement {
            status: RefundStatus::Succeeded,
            acquirer_refund_id: Some(refund_id),
            failure: None,
            actor,
            resolution_note: None,
        },
        RefundOutcome::Pending { refund_id } => RefundSettlement {
            status: RefundStatus::Pending,
            acquirer_refund_id: Some(refund_id),
            failure: None,
            actor,
            resolution_note: None,
        },
        RefundOutcome::Declined(decline) => RefundSettlement {
            status: RefundStatus::Failed,
            acquirer_refund_id: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor,
            resolution_note: None,
        },
        RefundOutcome::NotSent { reason } => {
            not_sent = format!("the acquirer could not be reached: {reason}");
            RefundSettlement {
                status: RefundStatus::Failed,
                acquirer_refund_id: None,
                failure: Some(("acquirer_unavailable", &not_sent)),
                actor,
                resolution_note: None,
            }
        }
        // Sent, no readable answer: it stays pending (and keeps its amount). An acquirer that
        // can be asked by reference is asked soon; one that cannot goes to a person. Never
        // refunded twice by guessing.
        RefundOutcome::Unknown { reason } => {
            tracing::warn!(refund_id = %refund.id, %reason, "refund outcome unknown");
            if adapter.capabilities().refund_lookup {
                let again = OffsetDateTime::now_utc() + time::Duration::seconds(30);
                services
                    .store
                    .schedule_refund_check(refund.id, again)
                    .await?;
                return reload(services, refund.id).await;
            }
            let flagged = crate::domain::audit::ReviewReason::RefundAnswerUnreadable {
                acquirer: adapter.kind().to_string(),
                amount_minor: refund.amount_minor,
                detail: reason.clone(),
            };
            services
                .store
                .flag_refund_for_review(refund.id, actor, &flagged)
                .await?;
            return reload(services, refund.id).await;
        }
    };
    Ok(services.store.settle_refund(refund.id, &settlement).await?)
}

/// An operator settles a refund from the review list: the acquirer did it, or it never happened
/// (its amount is free again). Recorded with the operator and the note in the audit trail.
pub async fn resolve_review(
    services: &Services,
    refund_id: Uuid,
    happened: bool,
    operator: &str,
    note: &str,
) -> Result<RefundRecord, ServiceError> {
    let refund = reload(services, refund_id).await?;
    if refund.status != RefundStatus::Pending || refund.review_reason.is_none() {
        return Err(ServiceError::NotInReview);
    }
    let actor = format!("operator:{operator}");
    let settlement = RefundSettlement {
        status: if happened {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Failed
        },
        acquirer_refund_id: None,
        failure: (!happened).then_some((
            "settled_by_operator",
            "an operator found that the refund did not happen",
        )),
        actor: &actor,
        resolution_note: Some(note),
    };
    Ok(services.store.settle_refund(refund_id, &settlement).await?)
}

/// A refund the acquirer reports as done (NetPay's `Refund` notification): settles the refund
/// waiting for exactly this amount. Returns false when none waits for it.
pub async fn settle_reported(
    services: &Services,
    payment_id: Uuid,
    amount_minor: i64,
    actor: &str,
) -> Result<bool, ServiceError> {
    let waiting = services
        .store
        .list_refunds(payment_id)
        .await?
        .into_iter()
        .find(|r| r.status == RefundStatus::AwaitingAcquirer && r.amount_minor == amount_minor);
    let Some(refund) = waiting else {
        return Ok(false);
    };
    let settlement = RefundSettlement {
        status: RefundStatus::Succeeded,
        acquirer_refund_id: None,
        failure: None,
        actor,
        resolution_note: None,
    };
    services.store.settle_refund(refund.id, &settlement).await?;
    Ok(true)
}

pub async fn list(
    services: &Services,
    payment_id: Uuid,
) -> Result<Vec<RefundRecord>, ServiceError> {
    services
        .store
        .get_payment(payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok(services.store.list_refunds(payment_id).await?)
}

pub async fn get(services: &Services, refund_id: Uuid) -> Result<RefundRecord, ServiceError> {
    services
        .store
        .get_refund(refund_id)
        .await?
        .ok_or(ServiceError::NotFound)
}
