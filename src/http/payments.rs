//! `/v1/payments`: create a payment, read it back.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use oplata_providers::{Amount, NextAction};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use super::idempotency::{self, IdempotencyKey};
use super::json::{self, Body};
use crate::domain::new_payment::PaymentDraft;
use crate::domain::payer::PayerDraft;
use crate::domain::payment::PaymentStatus;
use crate::service::api_keys::ApiClient;
use crate::service::api_keys::Scope;
use crate::service::{Services, payments};
use crate::store::{KeyAnswer, KeyLease, PaymentRecord, StoredResponse};
use tracing::Instrument;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    /// A configured supplier's id.
    pub supplier_id: String,
    /// The customer's account number at the supplier (лицевой счёт).
    pub account_number: String,
    /// Decimal string with at most two decimals, e.g. `"1234.56"`.
    #[schema(example = "1234.56")]
    pub amount: String,
    /// `RUB`.
    pub currency: String,
    pub description: String,
    /// The portal user paying, if logged in.
    pub user_id: Option<String>,
    /// Where to send the receipt.
    pub email: Option<String>,
    /// Where to send the receipt when there is no e-mail address: `+7XXXXXXXXXX`. A supplier
    /// that issues receipts needs one of the two.
    pub phone: Option<String>,
    /// Where the browser goes after the acquirer's page; `payment_id` is appended.
    pub return_url: Option<String>,
    /// Keep the card for later payments (portal users, acquirers that can).
    #[serde(default)]
    pub save_card: bool,
    /// `{"type":"new_card"}` (the default) or `{"type":"saved_card","card_id":…}`.
    pub payment_method: Option<PaymentMethodRequest>,
    /// The payer's passport data: required for budget suppliers, refused for all others.
    pub payer: Option<PayerRequest>,
}

/// Passport data (rule 8). Sealed at rest, never logged, never echoed in a response.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayerRequest {
    /// 4 digits.
    #[schema(example = "4510")]
    pub passport_series: String,
    /// 6 digits.
    #[schema(example = "123456")]
    pub passport_number: String,
    /// Surname, name and patronymic in Russian letters.
    #[schema(example = "Иванов Иван Иванович")]
    pub full_name: String,
}

impl std::fmt::Debug for PayerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayerRequest(<personal data>)")
    }
}

impl PayerRequest {
    pub fn draft(&self) -> PayerDraft<'_> {
        PayerDraft {
            passport_series: &self.passport_series,
            passport_number: &self.passport_number,
            full_name: &self.full_name,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentMethodRequest {
    NewCard,
    SavedCard { card_id: Uuid },
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextActionView {
    /// Send the browser here with a GET.
    Redirect { url: String },
    /// Make the browser POST these fields here.
    FormPost {
        url: String,
        fields: BTreeMap<String, String>,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailureView {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub status: PaymentStatus,
    #[schema(example = "1234.56")]
    pub amount: String,
    pub currency: String,
    pub supplier_id: String,
    pub account_number: String,
    pub acquirer: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// Present while the status is `requires_action`.
    pub next_action: Option<NextActionView>,
    pub failure: Option<FailureView>,
    /// `new_card` or `saved_card`.
    pub payment_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_id: Option<Uuid>,
    pub save_card: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: time::OffsetDateTime,
}

impl TryFrom<PaymentRecord> for PaymentView {
    type Error = ApiError;

    fn try_from(p: PaymentRecord) -> Result<Self, Self::Error> {
        let status = p.status;
        let amount = Amount::from_minor(p.amount_minor).map_err(|e| ApiError::internal(&e))?;
        let next_action = match (&p.next_action, status) {
            (Some(json), PaymentStatus::RequiresAction) => {
                let action: NextAction =
                    serde_json::from_str(json).map_err(|e| ApiError::internal(&e))?;
                Some(match action {
                    NextAction::Redirect { url } => NextActionView::Redirect { url },
                    NextAction::FormPost { url, fields } => NextActionView::FormPost {
                        url,
                        fields: fields.into_iter().collect(),
                    },
                })
            }
            _ => None,
        };
        let failure = p.failure_code.map(|code| FailureView {
            code,
            message: p.failure_message.unwrap_or_default(),
        });
        Ok(PaymentView {
            id: p.id,
            status,
            amount: amount.to_string(),
            currency: p.currency,
            supplier_id: p.supplier_id,
            account_number: p.account_number,
            acquirer: p.acquirer.as_str().to_owned(),
            description: p.description,
            user_id: p.user_id,
            email: p.email,
            phone: p.phone,
            return_url: p.return_url,
            next_action,
            failure,
            payment_method: p.payment_method.as_str().to_owned(),
            card_id: p.saved_card_id,
            save_card: p.save_card,
            created_at: p.created_at,
            updated_at: p.updated_at,
        })
    }
}

/// Create a payment; the answer's `next_action` says where to send the customer's browser.
#[utoipa::path(
    post, path = "/v1/payments", tag = "payments",
    request_body = CreatePaymentRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended payment; kept at least 24 h")),
    responses(
        (status = 201, description = "Payment created", body = PaymentView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Same key still in progress", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "A rule is broken, or the key was used with another request", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let client = auth.require(Scope::Portal)?;
    let key = IdempotencyKey::from_headers(&headers)?;
    json::require_json_content_type(&headers)?;
    let fingerprint = idempotency::fingerprint("POST /v1/payments", &body);
    if let Some(answered) =
        create_in_one_commit(&services, &client, &key, &fingerprint, &body).await
    {
        return Ok(answered);
    }
    if let Some(answered) =
        charge_in_two_commits(&services, &client, &key, &fingerprint, &body).await?
    {
        return Ok(answered);
    }
    idempotency::run(
        services,
        client,
        key,
        fingerprint,
        move |services, client, claimed| async move {
            let request: CreatePaymentRequest = json::parse(&body)?;
            let method = method_of(&request)?;
            let payment =
                payments::create(&services, &client, &draft_of(&request), method, claimed).await?;
            Ok((StatusCode::CREATED, created_body(payment)?))
        },
    )
    .await
}

/// The common request in one commit: a new hosted payment under a fresh key, created, sent to
/// the acquirer's page and answered in one transaction (`payments::create_answered`). `None`
/// sends the request the step-by-step way, which also answers every refusal.
async fn create_in_one_commit(
    services: &Services,
    client: &ApiClient,
    key: &IdempotencyKey,
    fingerprint: &str,
    body: &[u8],
) -> Option<Response> {
    let request: CreatePaymentRequest = json::parse(body).ok()?;
    let method = method_of(&request).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let key_answer = KeyAnswer {
        client_id: client.id,
        key: key.as_str(),
        fingerprint,
        now,
        expires_at: crate::service::idempotency::expires_at(services, now),
        answer: &created_answer,
    };
    let created =
        payments::create_answered(services, client, &draft_of(&request), method, &key_answer)
            .await
            .ok()??;
    let body = created_body(created).ok()?;
    Some(idempotency::json_response(StatusCode::CREATED, body, false))
}

/// A saved-card charge under a fresh key in two commits (`payments::charge_saved_card_keyed`):
/// one before the call to the acquirer, one with its outcome and the key's answer. It runs in a
/// task of its own, as every keyed request does, so a client that hangs up cannot cut it in
/// two. `None` sends the request the step-by-step way, which also answers every refusal.
async fn charge_in_two_commits(
    services: &Arc<Services>,
    client: &ApiClient,
    key: &IdempotencyKey,
    fingerprint: &str,
    body: &axum::body::Bytes,
) -> Result<Option<Response>, ApiError> {
    let Ok(request) = json::parse::<CreatePaymentRequest>(body) else {
        return Ok(None);
    };
    let Ok(method @ payments::Method::SavedCard { .. }) = method_of(&request) else {
        return Ok(None);
    };
    let (services, client, key, fingerprint) = (
        services.clone(),
        client.clone(),
        key.clone(),
        fingerprint.to_owned(),
    );
    let task = tokio::spawn(
        async move {
            let now = time::OffsetDateTime::now_utc();
            let lease = KeyLease {
                client_id: client.id,
                key: key.as_str(),
                fingerprint: &fingerprint,
                now,
                lock_until: crate::service::idempotency::lease_until(&services, now),
                expires_at: crate::service::idempotency::expires_at(&services, now),
            };
            let charged = payments::charge_saved_card_keyed(
                &services,
                &client,
                &draft_of(&request),
                method,
                &lease,
                &created_answer,
            )
            .await;
            let rendered = match charged {
                Ok(payments::KeyedCharge::NotTaken) => return None,
                // Answered with the outcome's commit: the key holds this very answer.
                Ok(payments::KeyedCharge::Charged {
                    answer: Some(stored),
                    ..
                }) => {
                    let status = StatusCode::from_u16(stored.status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Some(idempotency::json_response(status, stored.body, false));
                }
                Ok(payments::KeyedCharge::Charged {
                    payment,
                    answer: None,
                }) => created_body(*payment),
                Err(error) => Err(ApiError::from(error)),
            };
            let (status, body) = match rendered {
                Ok(body) => (StatusCode::CREATED, body),
                Err(error) => (error.status, error.body_json()),
            };
            idempotency::end_after(&services, client.id, key.as_str(), status, &body).await;
            Some(idempotency::json_response(status, body, false))
        }
        .instrument(tracing::Span::current()),
    );
    task.await.map_err(|e| ApiError::internal(&e))
}

/// The answer a key keeps for the payment its request created.
fn created_answer(payment: &PaymentRecord) -> Option<StoredResponse> {
    Some(StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        body: created_body(payment.clone()).ok()?,
    })
}

fn draft_of(request: &CreatePaymentRequest) -> PaymentDraft<'_> {
    PaymentDraft {
        supplier_id: &request.supplier_id,
        account_number: &request.account_number,
        amount: &request.amount,
        currency: &request.currency,
        description: &request.description,
        user_id: request.user_id.as_deref(),
        email: request.email.as_deref(),
        phone: request.phone.as_deref(),
        return_url: request.return_url.as_deref(),
        payer: request.payer.as_ref().map(PayerRequest::draft),
    }
}

fn method_of(request: &CreatePaymentRequest) -> Result<payments::Method, ApiError> {
    match (&request.payment_method, request.save_card) {
        (None | Some(PaymentMethodRequest::NewCard), save) => {
            Ok(payments::Method::NewCard { save })
        }
        (Some(PaymentMethodRequest::SavedCard { card_id }), false) => {
            Ok(payments::Method::SavedCard { card_id: *card_id })
        }
        (Some(PaymentMethodRequest::SavedCard { .. }), true) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            super::error::ErrorCode::InvalidPaymentMethod,
            "save_card cannot be combined with a saved card",
        )
        .with_param("save_card")),
    }
}

fn created_body(payment: PaymentRecord) -> Result<String, ApiError> {
    let view = PaymentView::try_from(payment)?;
    serde_json::to_string(&view).map_err(|e| ApiError::internal(&e))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct GetPaymentQuery {
    /// Required for a payment made by a portal user: only that user may read it.
    pub user_id: Option<String>,
}

/// Read a payment you created.
#[utoipa::path(
    get, path = "/v1/payments/{id}", tag = "payments",
    params(("id" = Uuid, Path), GetPaymentQuery),
    responses(
        (status = 200, body = PaymentView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such payment, or not yours", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(id): Path<String>,
    Query(query): Query<GetPaymentQuery>,
) -> Result<Json<PaymentView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    // The refunds desk sees every payment; a portal client only its own.
    let payment = if auth.0.scope == Scope::Desk {
        crate::service::desk::payment(&services, id).await?
    } else {
        let client = auth.require(Scope::Portal)?;
        payments::get_for_client(&services, &client, id, query.user_id.as_deref()).await?
    };
    Ok(Json(PaymentView::try_from(payment)?))
}
