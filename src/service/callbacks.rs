//! Acquirer notifications: verified, matched to a known payment and amount, applied once.

use oplata_providers::{
    AcquirerKind, Amount, CallbackAnswer, CallbackError, CallbackEvent, RawCallback,
    callback_accepted, callback_order_id, callback_rejected,
};

use super::Services;
use crate::domain::payment::PaymentEvent;
use crate::store::{StatusChange, TransitionResult};

enum Failure {
    /// The notification is not acceptable: answer with the protocol's refusal.
    Rejected(CallbackError),
    /// Our side failed: answer so that the acquirer retries later.
    Internal(String),
}

impl From<CallbackError> for Failure {
    fn from(error: CallbackError) -> Self {
        Failure::Rejected(error)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        Failure::Internal(error.to_string())
    }
}

/// Handles one notification and returns the answer its protocol expects.
#[tracing::instrument(skip_all, fields(acquirer = %kind, payment_id = tracing::field::Empty))]
pub async fn handle_notification(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
) -> CallbackAnswer {
    match process(services, kind, raw).await {
        Ok(()) => callback_accepted(kind, raw),
        Err(Failure::Rejected(error)) => {
            tracing::warn!(%error, "notification rejected");
            callback_rejected(kind, raw, &error)
        }
        Err(Failure::Internal(error)) => {
            tracing::error!(%error, "notification could not be processed");
            CallbackAnswer {
                status: 500,
                content_type: "text/plain; charset=utf-8",
                body: "temporary failure, please retry".to_owned(),
            }
        }
    }
}

async fn process(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
) -> Result<(), Failure> {
    let order_id = callback_order_id(kind, raw)?;
    let payment = services
        .store
        .find_payment_by_order(kind.as_str(), &order_id)
        .await?
        .ok_or(CallbackError::UnknownOrder)?;
    let span = tracing::Span::current();
    span.record("payment_id", tracing::field::display(payment.id));
    let entry = services
        .suppliers
        .get(&payment.supplier_id)
        .ok_or_else(|| {
            Failure::Internal(format!(
                "supplier {} is not configured",
                payment.supplier_id
            ))
        })?;
    if entry.acquirer.kind() != kind {
        return Err(CallbackError::UnknownOrder.into());
    }
    let verified = entry.acquirer.verify_callback(raw)?;
    if verified.order_id != payment.acquirer_order_id {
        return Err(CallbackError::UnknownOrder.into());
    }
    if let Some(payment_ref) = &verified.payment_ref
        && *payment_ref != payment.id.to_string()
    {
        return Err(CallbackError::Malformed(
            "the payment reference does not match the order".into(),
        )
        .into());
    }
    let amount_matches = Amount::from_decimal(verified.amount)
        .is_ok_and(|amount| amount.minor() == payment.amount_minor);
    if !amount_matches {
        tracing::error!(
            payment_id = %payment.id,
            received = %verified.amount_text,
            "notification amount differs from the payment's"
        );
        return Err(CallbackError::AmountMismatch.into());
    }
    let actor = format!("acquirer:{kind}");
    let (event, failure, reason) = match &verified.event {
        CallbackEvent::RefundSettled | CallbackEvent::Unexpected(_) => {
            // Nothing oplata started: accept it (so the acquirer stops re-sending) and leave it
            // to a person, with the acquirer's words on the payment's audit trail.
            let what = match &verified.event {
                CallbackEvent::RefundSettled => {
                    format!("the acquirer reports a refund of {}", verified.amount_text)
                }
                other => format!("{other:?}"),
            };
            tracing::warn!(payment_id = %payment.id, %what, "notification needs a person");
            services
                .store
                .flag_payment_for_review(payment.id, &actor, &what)
                .await?;
            return Ok(());
        }
        CallbackEvent::PaymentSucceeded => (
            PaymentEvent::Succeeded,
            None,
            "the acquirer's signed notification reports the payment paid",
        ),
        CallbackEvent::PaymentFailed(decline) => (
            PaymentEvent::Failed,
            Some((decline.code.as_str(), decline.message.as_str())),
            "the acquirer's signed notification reports the payment failed",
        ),
    };
    let change = StatusChange {
        event,
        next_action: None,
        failure,
        actor: &actor,
        reason,
    };
    match services
        .store
        .transition_payment(payment.id, &change)
        .await?
    {
        TransitionResult::Applied(updated) => {
            tracing::info!(payment_id = %updated.id, status = %updated.status, "payment updated by notification");
        }
        TransitionResult::AlreadyThere(_) => {
            tracing::info!(payment_id = %payment.id, "repeated notification: nothing to change");
        }
        TransitionResult::Refused(current, refused) => {
            // Money moved for a payment we already closed: accept the notification (so the
            // acquirer stops re-sending) and leave it to a person.
            let reason = format!(
                "notification {event:?} arrived for a {} payment",
                current.status
            );
            tracing::error!(payment_id = %current.id, %refused, "notification conflicts with a final state");
            services
                .store
                .flag_payment_for_review(current.id, &actor, &reason)
                .await?;
        }
    }
    Ok(())
}
