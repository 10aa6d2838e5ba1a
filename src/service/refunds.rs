//! Refunds (rule 13): reserved under the payment's lock, then asked of the acquirer after the
//! commit; a failure frees the amount again. Where the acquirer has no refund API (NetPay) the
//! refund waits for the operator to do it in the acquirer's cabinet and for the acquirer's
//! notification to settle it.

use oplata_providers::{Amount, RefundOutcome, RefundRequest};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ServiceError, Services};
use crate::domain::refunds::RefundStatus;
use crate::store::{NewRefund, RefundRecord, RefundSettlement};

/// `client_id` is the API client asking, or `None` for the desk's own pages.
#[tracing::instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn create(
    services: &Services,
    client_id: Option<Uuid>,
    payment_id: Uuid,
    amount: Option<Amount>,
    reason: &str,
    operator: &str,
) -> Result<RefundRecord, ServiceError> {
    let payment = services
        .store
        .get_payment(payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let entry = services
        .suppliers
        .get(&payment.supplier_id)
        .ok_or_else(|| {
            ServiceError::Internal(format!(
                "supplier {} is not configured",
                payment.supplier_id
            ))
        })?;
    let capabilities = entry.acquirer.capabilities();
    let new = NewRefund {
        payment_id,
        amount,
        reason,
        operator,
        client_id,
        awaiting_acquirer: !capabilities.refunds,
        limits: services.settings.refund_limits(),
        now: OffsetDateTime::now_utc(),
    };
    let refund = services.store.reserve_refund(&new).await??;
    tracing::info!(refund_id = %refund.id, status = %refund.status, "refund reserved");
    if !capabilities.refunds {
        return Ok(refund);
    }
    let amount = Amount::from_minor(refund.amount_minor)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let operation_id = payment
        .acquirer_operation_id
        .clone()
        .unwrap_or_else(|| payment.acquirer_order_id.clone());
    let refund_ref = refund.id.to_string();
    let outcome = entry
        .acquirer
        .refund(&RefundRequest {
            operation_id: &operation_id,
            refund_ref: &refund_ref,
            amount: Some(amount),
            reason,
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    record_outcome(
        services,
        refund,
        &outcome,
        &format!("acquirer:{}", entry.acquirer.kind()),
    )
    .await
}

async fn record_outcome(
    services: &Services,
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
        },
        RefundOutcome::Pending { refund_id } => RefundSettlement {
            status: RefundStatus::Pending,
            acquirer_refund_id: Some(refund_id),
            failure: None,
            actor,
        },
        RefundOutcome::Declined(decline) => RefundSettlement {
            status: RefundStatus::Failed,
            acquirer_refund_id: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor,
        },
        RefundOutcome::NotSent { reason } => {
            not_sent = format!("the acquirer could not be reached: {reason}");
            RefundSettlement {
                status: RefundStatus::Failed,
                acquirer_refund_id: None,
                failure: Some(("acquirer_unavailable", &not_sent)),
                actor,
            }
        }
        // Sent, no readable answer: it stays pending (and keeps its amount) until a person or
        // the acquirer's report settles it; never refunded twice by guessing.
        RefundOutcome::Unknown { reason } => {
            tracing::warn!(refund_id = %refund.id, %reason, "refund outcome unknown");
            let flagged = format!("refund {} outcome unknown: {reason}", refund.id);
            services
                .store
                .flag_payment_for_review(refund.payment_id, actor, &flagged)
                .await?;
            return Ok(refund);
        }
    };
    Ok(services.store.settle_refund(refund.id, &settlement).await?)
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
        .find(|r| {
            r.status == RefundStatus::AwaitingAcquirer.as_str() && r.amount_minor == amount_minor
        });
    let Some(refund) = waiting else {
        return Ok(false);
    };
    let settlement = RefundSettlement {
        status: RefundStatus::Succeeded,
        acquirer_refund_id: None,
        failure: None,
        actor,
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
