//! Creating payments, reading them back, and asking the acquirer when the outcome is not known.

use oplata_providers::{
    AcquirerKind, Amount, PaymentRequest, RawCallback, StartOutcome, StatusOutcome,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::api_keys::ApiClient;
use super::{ServiceError, Services};
use crate::domain::new_payment::{PaymentDraft, validate};
use crate::domain::payment::{PaymentEvent, PaymentStatus};
use crate::store::{NewPaymentRecord, PaymentRecord, StatusChange, TransitionResult};

/// Validates, records the payment, then asks the acquirer where the customer must go.
/// No database transaction is open while the acquirer is asked.
#[tracing::instrument(skip_all, fields(client_id = %client.id, supplier_id = draft.supplier_id))]
pub async fn create(
    services: &Services,
    client: &ApiClient,
    draft: &PaymentDraft<'_>,
) -> Result<PaymentRecord, ServiceError> {
    let valid = validate(draft, |id| services.suppliers.supplier(id))?;
    let entry = services
        .suppliers
        .get(&valid.supplier.id)
        .ok_or_else(|| ServiceError::Internal("validated supplier vanished".into()))?;
    let new = NewPaymentRecord {
        id: Uuid::now_v7(),
        client_id: Some(client.id),
        user_id: valid.user_id.clone(),
        supplier_id: valid.supplier.id.clone(),
        account_number: valid.account_number.clone(),
        amount_minor: valid.amount.minor(),
        currency: valid.currency.as_str().to_owned(),
        description: valid.description.clone(),
        email: valid.email.clone(),
        return_url: valid.return_url.as_ref().map(|u| u.to_string()),
        acquirer: entry.acquirer.kind().as_str().to_owned(),
        created_at: OffsetDateTime::now_utc(),
    };
    let actor = format!("client:{}", client.id);
    let created = services.store.create_payment(&new, &actor).await?;
    tracing::info!(payment_id = %created.id, order_id = %created.acquirer_order_id, "payment created");

    let payment_ref = created.id.to_string();
    let kind = entry.acquirer.kind();
    let success_url = services.return_url(kind, "success", &created.acquirer_order_id);
    let fail_url = services.return_url(kind, "fail", &created.acquirer_order_id);
    let outcome = entry
        .acquirer
        .start_payment(&PaymentRequest {
            payment_ref: &payment_ref,
            order_id: &created.acquirer_order_id,
            amount: valid.amount,
            description: &valid.description,
            email: valid.email.as_deref(),
            success_url: &success_url,
            fail_url: &fail_url,
            save_card: false,
            customer_ref: valid.user_id.as_deref(),
        })
        .await;
    let next_action_json;
    let not_sent_reason;
    let change = match &outcome {
        StartOutcome::RequiresAction(next_action) => {
            next_action_json = serde_json::to_string(next_action)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            StatusChange {
                event: PaymentEvent::ActionRequired,
                next_action: Some(&next_action_json),
                failure: None,
                actor: &actor,
                reason: "customer sent to the acquirer's page",
                acquirer_operation_id: None,
            }
        }
        StartOutcome::Declined(decline) => StatusChange {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor: &actor,
            reason: "the acquirer refused the payment",
            acquirer_operation_id: None,
        },
        StartOutcome::NotSent { reason } => {
            not_sent_reason = format!("the acquirer could not be reached: {reason}");
            StatusChange {
                event: PaymentEvent::Failed,
                next_action: None,
                failure: Some(("acquirer_unavailable", &not_sent_reason)),
                actor: &actor,
                reason: "the payment could not be started",
                acquirer_operation_id: None,
            }
        }
    };
    match services
        .store
        .transition_payment(created.id, &change)
        .await?
    {
        TransitionResult::Applied(p) | TransitionResult::AlreadyThere(p) => Ok(p),
        TransitionResult::Refused(_, refused) => Err(ServiceError::Internal(refused.to_string())),
    }
}

/// A payment as its creator may see it: another client's (or another user's) payment does not
/// exist as far as the caller can tell.
pub async fn get_for_client(
    services: &Services,
    client: &ApiClient,
    id: Uuid,
    user_id: Option<&str>,
) -> Result<PaymentRecord, ServiceError> {
    let payment = services
        .store
        .get_payment(id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let same_client = payment.client_id == Some(client.id);
    let same_user = match (&payment.user_id, user_id) {
        (Some(owner), Some(asker)) => owner == asker,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if same_client && same_user {
        Ok(payment)
    } else {
        Err(ServiceError::NotFound)
    }
}

/// Asks the acquirer what happened to a payment that is not final yet and records the answer.
/// A pending or unreadable answer changes nothing: the payment waits for the callback (or the
/// reconciliation worker).
#[tracing::instrument(skip_all, fields(payment_id = %payment.id))]
pub async fn refresh_from_acquirer(
    services: &Services,
    payment: PaymentRecord,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let status = PaymentStatus::parse(&payment.status)
        .ok_or_else(|| ServiceError::Internal(format!("payment status {:?}", payment.status)))?;
    if status.is_final() {
        return Ok(payment);
    }
    let Some(entry) = services.suppliers.get(&payment.supplier_id) else {
        return Ok(payment);
    };
    if !entry.acquirer.capabilities().status_query {
        return Ok(payment);
    }
    let outcome = match entry
        .acquirer
        .payment_status(&payment.acquirer_order_id)
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(%error, "status query not possible");
            return Ok(payment);
        }
    };
    let change = match &outcome {
        StatusOutcome::Succeeded { amount } if amount.minor() == payment.amount_minor => {
            StatusChange {
                event: PaymentEvent::Succeeded,
                next_action: None,
                failure: None,
                actor,
                reason: "the acquirer's status query reports the payment paid",
                acquirer_operation_id: None,
            }
        }
        StatusOutcome::Succeeded { amount } => {
            let reason = format!(
                "the acquirer reports {amount} paid, the payment is for {}",
                Amount::from_minor(payment.amount_minor)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            tracing::error!(%reason, "amount mismatch in status query");
            services
                .store
                .flag_payment_for_review(payment.id, actor, &reason)
                .await?;
            return Ok(payment);
        }
        StatusOutcome::Failed(decline) => StatusChange {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor,
            reason: "the acquirer's status query reports the payment failed",
            acquirer_operation_id: None,
        },
        StatusOutcome::Pending => return Ok(payment),
        StatusOutcome::Unknown { reason } => {
            tracing::warn!(%reason, "status query gave no answer");
            return Ok(payment);
        }
    };
    match services
        .store
        .transition_payment(payment.id, &change)
        .await?
    {
        TransitionResult::Applied(p)
        | TransitionResult::AlreadyThere(p)
        | TransitionResult::Refused(p, _) => Ok(p),
    }
}

/// The customer's browser came back from the acquirer. The return itself proves nothing, so the
/// acquirer is asked; the answer decides.
pub async fn handle_browser_return(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
) -> Result<PaymentRecord, ServiceError> {
    let order_id = oplata_providers::return_order_id(kind, raw).ok_or(ServiceError::NotFound)?;
    let payment = services
        .store
        .find_payment_by_order(kind.as_str(), &order_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    refresh_from_acquirer(services, payment, &format!("browser-return:{kind}")).await
}
