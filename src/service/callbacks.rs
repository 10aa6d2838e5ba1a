//! Acquirer notifications: verified, matched to a known payment and amount, applied once.
//!
//! Where the acquirer reports 3-D Secure per payment (Moneta-style), a paid notification is
//! followed by a read of the operation: a payment that did not pass 3-D Secure fails (rule 7),
//! its money is sent back with a full refund, and a person is told.

use std::sync::Arc;

use oplata_providers::{
    Acquirer, AcquirerKind, Amount, AnswerVerdict, CallbackAnswer, CallbackError, CallbackEvent,
    CheckResult, RawCallback, RefundOutcome, RefundRequest, StatusOutcome, ThreeDsAssurance,
    VerifiedCallback, signed_callback_answer,
};

use super::{Services, cards};
use crate::domain::payment::{PaymentEvent, PaymentStatus};
use crate::domain::supplier::PaymentType;
use crate::store::{PaymentRecord, StatusChange, TransitionResult};

enum Failure {
    /// The notification is not acceptable: answer with the protocol's refusal.
    Rejected(CallbackError),
    /// Our side failed (or the acquirer could not be asked): answer so that it retries later.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl From<CallbackError> for Failure {
    fn from(error: CallbackError) -> Self {
        Failure::Rejected(error)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        Failure::Internal(error.into())
    }
}

/// What to answer an accepted notification.
enum Accepted {
    /// The receipt goes into the answer where the protocol carries it (Moneta's Pay URL).
    Done(Option<oplata_providers::Receipt>),
    /// The Check URL answer names the order's own amount and description, when it is known.
    Check {
        result: CheckResult,
        amount: Option<Amount>,
        description: String,
    },
}

/// Handles one notification and returns the answer its protocol expects.
#[tracing::instrument(skip_all, fields(acquirer = %kind, payment_id = tracing::field::Empty))]
pub async fn handle_notification(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
) -> CallbackAnswer {
    let mut adapter = None;
    let outcome = process(services, kind, raw, &mut adapter).await;
    let result = match &outcome {
        Ok(_) => "accepted",
        Err(Failure::Rejected(_)) => "rejected",
        Err(Failure::Internal(_)) => "failed",
    };
    metrics::counter!("oplata_notifications_total", "acquirer" => kind.as_str(), "result" => result).increment(1);
    let verdict = match &outcome {
        Ok(Accepted::Done(receipt)) => AnswerVerdict::Accepted {
            receipt: receipt.as_ref(),
        },
        Ok(Accepted::Check {
            result,
            amount,
            description,
        }) => AnswerVerdict::Check {
            result: *result,
            amount: *amount,
            description,
        },
        Err(Failure::Rejected(error)) => {
            tracing::warn!(%error, "notification rejected");
            AnswerVerdict::Rejected(error)
        }
        Err(Failure::Internal(error)) => {
            let error = crate::telemetry::Chain(error.as_ref());
            tracing::error!(%error, "notification could not be processed");
            return CallbackAnswer {
                status: 500,
                content_type: "text/plain; charset=utf-8",
                body: "temporary failure, please retry".to_owned(),
            };
        }
    };
    match (&adapter, verdict) {
        (Some(adapter), verdict) => signed_callback_answer(adapter.as_ref(), raw, verdict),
        (None, AnswerVerdict::Rejected(error)) => kind.protocol().callback_rejected(raw, error),
        (None, _) => kind
            .protocol()
            .callback_rejected(raw, &CallbackError::UnknownOrder),
    }
}

async fn process(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
    adapter_slot: &mut Option<Arc<dyn Acquirer>>,
) -> Result<Accepted, Failure> {
    let order_id = kind.protocol().callback_order_id(raw)?;
    let payment = services
        .store
        .find_payment_by_order(kind.as_str(), &order_id)
        .await?
        .ok_or(CallbackError::UnknownOrder)?;
    tracing::Span::current().record("payment_id", tracing::field::display(payment.id));
    let entry = services
        .suppliers
        .get(&payment.supplier_id)
        .ok_or_else(|| {
            Failure::Internal(Box::from(format!(
                "supplier {} is not configured",
                payment.supplier_id
            )))
        })?;
    if entry.acquirer.kind() != kind {
        return Err(CallbackError::UnknownOrder.into());
    }
    let adapter = entry.acquirer.clone();
    *adapter_slot = Some(adapter.clone());
    let verified = adapter.verify_callback(raw)?;
    if verified.order_id != payment.acquirer_order_id {
        return Err(CallbackError::UnknownOrder.into());
    }
    if let Some(payment_ref) = &verified.payment_ref
        && !payment_ref.is_empty()
        && *payment_ref != payment.id.to_string()
    {
        return Err(CallbackError::Malformed(
            "the payment reference does not match the order".into(),
        )
        .into());
    }
    // oplata's own echoed parameters come back exactly as sent: the passport fields with a
    // budget payment (which always has them), with no other.
    if let Some(echoed) = verified.personal_data_echoed
        && echoed != (entry.supplier.payment_type == PaymentType::Budget)
    {
        return Err(CallbackError::Malformed(
            "the echoed parameters are not the ones oplata sent with this payment".into(),
        )
        .into());
    }
    let currency_matches = verified
        .currency
        .as_deref()
        .is_none_or(|currency| currency.eq_ignore_ascii_case(&payment.currency));
    let amount_matches = currency_matches
        && Amount::from_decimal(verified.amount)
            .is_ok_and(|amount| amount.minor() == payment.amount_minor);
    if verified.event == CallbackEvent::CheckRequested {
        return Ok(Accepted::Check {
            result: check_result(&payment, amount_matches),
            amount: Amount::from_minor(payment.amount_minor).ok(),
            description: payment.description.clone(),
        });
    }
    if verified.event == CallbackEvent::RefundSettled {
        // A refund is part (or all) of the payment, never more.
        let within =
            Amount::from_decimal(verified.amount).is_ok_and(|a| a.minor() <= payment.amount_minor);
        if !within {
            return Err(CallbackError::AmountMismatch.into());
        }
    } else if !amount_matches && verified.event == CallbackEvent::PaymentSucceeded {
        // Validly signed: the acquirer really took this other amount. The payment is not
        // marked paid; the fact is kept and a person told, and the notification is accepted so
        // that the acquirer stops re-sending it.
        let reported = format!(
            "{} {}",
            verified.amount_text,
            verified.currency.as_deref().unwrap_or(&payment.currency)
        );
        let expected = format!(
            "{} {}",
            Amount::from_minor(payment.amount_minor)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            payment.currency
        );
        let reason = crate::domain::audit::ReviewReason::OtherAmount {
            detail: format!(
                "the acquirer's signed notification reports {reported} paid for order {}, the payment is for {expected}",
                payment.acquirer_order_id,
            ),
            reported,
            expected,
        };
        return paid_other_than_asked(services, kind, &payment, &reason).await;
    } else if !amount_matches {
        tracing::error!(
            payment_id = %payment.id,
            received = %verified.amount_text,
            "notification amount differs from the payment's"
        );
        return Err(CallbackError::AmountMismatch.into());
    }
    let actor = format!("acquirer:{kind}");
    match &verified.event {
        CallbackEvent::PaymentSucceeded => {
            payment_succeeded(services, adapter.as_ref(), &payment, &verified, &actor).await?;
        }
        CallbackEvent::PaymentFailed(decline) => {
            let change = StatusChange {
                event: PaymentEvent::Failed,
                next_action: None,
                failure: Some((decline.code.as_str(), decline.message.as_str())),
                actor: &actor,
                reason: &crate::domain::audit::AuditReason::NotificationFailed,
                acquirer_operation_id: verified.operation_id.as_deref(),
            };
            apply(services, &payment, &change).await?;
        }
        CallbackEvent::RefundSettled => {
            let minor = Amount::from_decimal(verified.amount)
                .map(|a| a.minor())
                .unwrap_or(0);
            let settled = super::refunds::settle_reported(services, payment.id, minor, &actor)
                .await
                .map_err(|e| Failure::Internal(e.into()))?;
            if !settled {
                // A refund done in the cabinet without a request here: a person reconciles it.
                let what = crate::domain::audit::ReviewReason::UnrequestedRefund {
                    amount: verified.amount_text.clone(),
                };
                tracing::warn!(payment_id = %payment.id, what = %what.english(), "notification needs a person");
                services
                    .store
                    .flag_payment_for_review(payment.id, &actor, &what)
                    .await?;
            }
        }
        CallbackEvent::Unexpected(what) => {
            // Nothing oplata started: accept it (so the acquirer stops re-sending) and leave it
            // to a person, with the acquirer's words on the payment's audit trail.
            tracing::warn!(payment_id = %payment.id, %what, "notification needs a person");
            services
                .store
                .flag_payment_for_review(
                    payment.id,
                    &actor,
                    &crate::domain::audit::ReviewReason::Unexpected {
                        words: what.clone(),
                    },
                )
                .await?;
        }
        CallbackEvent::CheckRequested => {}
    }
    let receipt = match &verified.event {
        CallbackEvent::PaymentSucceeded => Amount::from_minor(payment.amount_minor)
            .ok()
            .and_then(|amount| super::receipts::for_payment(services, &payment, amount)),
        _ => None,
    };
    Ok(Accepted::Done(receipt))
}

/// Validly signed, money taken, facts that disagree with the payment (another amount or
/// currency): the payment is not marked paid; the fact is kept on the review list and counted,
/// and the notification accepted so that the acquirer stops re-sending it.
async fn paid_other_than_asked(
    services: &Services,
    kind: AcquirerKind,
    payment: &PaymentRecord,
    reason: &crate::domain::audit::ReviewReason,
) -> Result<Accepted, Failure> {
    tracing::error!(payment_id = %payment.id, reason = %reason.english(), "the acquirer took another sum than the payment's");
    metrics::counter!("oplata_notification_amount_mismatches_total", "acquirer" => kind.as_str())
        .increment(1);
    services
        .store
        .flag_payment_for_review(payment.id, &format!("acquirer:{kind}"), reason)
        .await?;
    // No receipt for a sum the payment does not hold: a person settles it.
    Ok(Accepted::Done(None))
}

/// May this payment be paid now? (Moneta asks before the customer pays.)
fn check_result(payment: &PaymentRecord, amount_matches: bool) -> CheckResult {
    match Some(payment.status) {
        _ if !amount_matches => CheckResult::NotPayable,
        Some(PaymentStatus::Created | PaymentStatus::RequiresAction) => CheckResult::Payable,
        Some(PaymentStatus::Processing) => CheckResult::InProgress,
        Some(
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded,
        ) => CheckResult::AlreadyPaid,
        Some(PaymentStatus::Failed | PaymentStatus::Canceled | PaymentStatus::Expired) | None => {
            CheckResult::NotPayable
        }
    }
}

async fn payment_succeeded(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: &PaymentRecord,
    verified: &VerifiedCallback,
    actor: &str,
) -> Result<(), Failure> {
    let operation_id = verified.operation_id.as_deref();
    let reported = adapter.capabilities().three_ds == ThreeDsAssurance::ReportedPerPayment;
    let mut details = None;
    if reported || payment.save_card {
        // The operation tells whether 3-D Secure passed and carries the token of a binding.
        let asked = operation_id.unwrap_or(&verified.order_id);
        let fetched = adapter
            .operation_details(asked)
            .await
            .map_err(|e| Failure::Internal(e.into()))?;
        // The operation read back must be this order's, paid, in its amount and currency.
        if let Some(order) = &fetched.order_id
            && *order != payment.acquirer_order_id
        {
            return Err(CallbackError::Malformed(
                "the notified operation belongs to another order".into(),
            )
            .into());
        }
        match &fetched.status {
            // Answering "retry" keeps the notification coming until the acquirer can be asked,
            // or until the operation is finished there.
            StatusOutcome::Unknown { reason } => {
                return Err(Failure::Internal(Box::from(format!(
                    "operation details unavailable: {reason}"
                ))));
            }
            StatusOutcome::Pending | StatusOutcome::NotFound => {
                return Err(Failure::Internal(
                    "the notified operation is not finished at the acquirer yet".into(),
                ));
            }
            StatusOutcome::Failed(_) => {
                return Err(CallbackError::Malformed(
                    "the acquirer reports the notified operation as not paid".into(),
                )
                .into());
            }
            StatusOutcome::Succeeded { amount } => {
                let currency = fetched.currency.as_deref().unwrap_or(&payment.currency);
                if amount.minor() != payment.amount_minor
                    || !currency.eq_ignore_ascii_case(&payment.currency)
                {
                    let expected = format!(
                        "{} {}",
                        Amount::from_minor(payment.amount_minor)
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        payment.currency
                    );
                    let reason = crate::domain::audit::ReviewReason::OtherAmount {
                        detail: format!(
                            "the acquirer's operation {} for order {} is {amount} {currency}, the payment is for {expected}",
                            operation_id.unwrap_or("?"),
                            payment.acquirer_order_id,
                        ),
                        reported: format!("{amount} {currency}"),
                        expected,
                    };
                    paid_other_than_asked(services, adapter.kind(), payment, &reason).await?;
                    return Ok(());
                }
            }
        }
        if reported && fetched.three_ds_passed != Some(true) {
            let operation_id = operation_id
                .ok_or_else(|| CallbackError::Malformed("the operation id is missing".into()))?;
            return without_three_ds(services, adapter, payment, operation_id, actor).await;
        }
        details = Some(fetched);
    }
    let change = StatusChange {
        event: PaymentEvent::Succeeded,
        next_action: None,
        failure: None,
        actor,
        reason: &crate::domain::audit::AuditReason::NotificationPaid,
        acquirer_operation_id: operation_id,
    };
    apply(services, payment, &change).await?;
    if let Some(details) = details.filter(|_| payment.save_card) {
        // Idempotent on the binding payment: a repeated notification finds the same card.
        cards::keep_token(services, adapter, payment, &details, actor)
            .await
            .map_err(|e| Failure::Internal(e.into()))?;
    }
    Ok(())
}

/// The failure code of a payment the acquirer took without 3-D Secure and oplata sent back:
/// unlike an issuer's 3-D Secure decline (`three_ds_failed`), money did move, and returns.
pub const PAID_WITHOUT_THREE_DS: &str = "paid_without_three_ds";

/// Rule 7: a new-card payment that did not pass 3-D Secure fails, and its money goes back.
async fn without_three_ds(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: &PaymentRecord,
    operation_id: &str,
    actor: &str,
) -> Result<(), Failure> {
    // A person is told before anything else is done: should this process die between the
    // failure and the refund, the money the acquirer took is still on the review list.
    services
        .store
        .flag_payment_for_review(
            payment.id,
            actor,
            &crate::domain::audit::ReviewReason::PaidWithoutThreeDs,
        )
        .await?;
    let change = StatusChange {
        event: PaymentEvent::Failed,
        next_action: None,
        failure: Some((
            PAID_WITHOUT_THREE_DS,
            "the card payment was not authenticated with 3-D Secure",
        )),
        actor,
        reason: &crate::domain::audit::AuditReason::NotThreeDsAuthenticated,
        acquirer_operation_id: Some(operation_id),
    };
    let applied = matches!(
        services
            .store
            .transition_payment_from(payment, &change)
            .await?,
        TransitionResult::Applied(_)
    );
    if !applied {
        // A repeated notification: the refund was asked for the first time.
        return Ok(());
    }
    let refund_ref = format!("{}-3ds", payment.id);
    let receipt = Amount::from_minor(payment.amount_minor)
        .ok()
        .and_then(|amount| super::receipts::for_payment(services, payment, amount));
    let outcome = adapter
        .refund(&RefundRequest {
            operation_id,
            refund_ref: &refund_ref,
            amount: None,
            reason: "payment without 3-D Secure",
            receipt: receipt.as_ref(),
        })
        .await;
    let note = match outcome {
        Ok(RefundOutcome::Succeeded { refund_id }) => {
            crate::domain::audit::ReviewReason::PaidWithoutThreeDsRefunded { refund_id }
        }
        Ok(other) => crate::domain::audit::ReviewReason::PaidWithoutThreeDsRefundIncomplete {
            detail: format!("{other:?}"),
        },
        Err(error) => crate::domain::audit::ReviewReason::PaidWithoutThreeDsRefundIncomplete {
            detail: format!("the refund failed: {error}"),
        },
    };
    tracing::warn!(payment_id = %payment.id, note = %note.english(), "payment without 3-D Secure");
    services
        .store
        .flag_payment_for_review(payment.id, actor, &note)
        .await?;
    Ok(())
}

async fn apply(
    services: &Services,
    payment: &PaymentRecord,
    change: &StatusChange<'_>,
) -> Result<(), Failure> {
    match services
        .store
        .transition_payment_from(payment, change)
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
            let reason = crate::domain::audit::ReviewReason::NotificationForClosedPayment {
                event: format!("{:?}", change.event),
                status: current.status.as_str().to_owned(),
            };
            tracing::error!(payment_id = %current.id, %refused, "notification conflicts with a final state");
            services
                .store
                .flag_payment_for_review(current.id, change.actor, &reason)
                .await?;
        }
    }
    Ok(())
}
