//! Refunds for the refunds desk (scope `desk`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use oplata_providers::Amount;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::idempotency::{self, IdempotencyKey};
use super::json::{self, Body};
use crate::service::api_keys::Scope;
use crate::service::{Services, refunds};
use crate::store::RefundRecord;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Decimal string; omit to refund the whole remainder.
    pub amount: Option<String>,
    pub reason: String,
    /// Optional: the operator is the holder of the API key (its name); another name is refused.
    pub operator: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub payment_id: Uuid,
    #[schema(example = "30.00")]
    pub amount: String,
    /// `pending`, `awaiting_acquirer` (do it in the acquirer's cabinet; its report settles it),
    /// `succeeded` or `failed`.
    pub status: String,
    pub reason: String,
    pub operator: String,
    pub failure: Option<super::payments::FailureView>,
    /// Why the refund waits for a person (its outcome could not be learned from the acquirer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// The operator who settled it from the review list, and their note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_note: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: time::OffsetDateTime,
}

impl TryFrom<RefundRecord> for RefundView {
    type Error = ApiError;

    fn try_from(r: RefundRecord) -> Result<Self, Self::Error> {
        let amount = Amount::from_minor(r.amount_minor).map_err(|e| ApiError::internal(&e))?;
        Ok(RefundView {
            id: r.id,
            payment_id: r.payment_id,
            amount: amount.to_string(),
            status: r.status.as_str().to_owned(),
            reason: r.reason,
            operator: r.operator,
            failure: r.failure_code.map(|code| super::payments::FailureView {
                code,
                message: r.failure_message.unwrap_or_default(),
            }),
            review_reason: r.review_reason,
            resolved_by: r.resolved_by,
            resolution_note: r.resolution_note,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    pub refunds: Vec<RefundView>,
}

pub(super) fn id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::not_found())
}

pub(super) fn bounded(text: &str, field: &str, max: usize) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.chars().any(char::is_control) || text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            if field == "reason" {
                ErrorCode::RefundReasonRequired
            } else {
                ErrorCode::InvalidFieldType
            },
            format!("{field} must be 1 to {max} characters without control characters"),
        )
        .with_param(field));
    }
    Ok(())
}

/// Refund a succeeded payment in full or in part.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "refunds",
    request_body = CreateRefundRequest,
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = RefundView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "refund_exceeds_remaining, payment_not_refundable, …", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let client = auth.require(Scope::Desk)?;
    let key = IdempotencyKey::from_headers(&headers)?;
    json::require_json_content_type(&headers)?;
    let route = format!("POST /v1/payments/{payment_id}/refunds");
    let fingerprint = idempotency::fingerprint(&route, &body);
    idempotency::run(
        services,
        client,
        key,
        fingerprint,
        move |services, client, claimed| async move {
            let payment_id = id(&payment_id)?;
            let request: CreateRefundRequest = json::parse(&body)?;
            bounded(&request.reason, "reason", 500)?;
            let operator = super::auth::desk_operator(&client, request.operator.as_deref())?;
            let amount = request
                .amount
                .as_deref()
                .map(Amount::parse_api)
                .transpose()
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::InvalidAmount,
                        e.to_string(),
                    )
                    .with_param("amount")
                })?;
            let refund = refunds::create(
                &services,
                Some(client.id),
                payment_id,
                amount,
                &request.reason,
                &operator,
                claimed,
            )
            .await?;
            let body = serde_json::to_string(&RefundView::try_from(refund)?)
                .map_err(|e| ApiError::internal(&e))?;
            Ok((StatusCode::CREATED, body))
        },
    )
    .await
}

/// A payment's refunds.
#[utoipa::path(get, path = "/v1/payments/{id}/refunds", tag = "refunds",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RefundList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(payment_id): Path<String>,
) -> Result<Json<RefundList>, ApiError> {
    auth.require(Scope::Desk)?;
    let refunds = refunds::list(&services, id(&payment_id)?).await?;
    Ok(Json(RefundList {
        refunds: refunds
            .into_iter()
            .map(RefundView::try_from)
            .collect::<Result<_, _>>()?,
    }))
}

/// One refund.
#[utoipa::path(get, path = "/v1/refunds/{id}", tag = "refunds",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RefundView), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(refund_id): Path<String>,
) -> Result<Json<RefundView>, ApiError> {
    auth.require(Scope::Desk)?;
    Ok(Json(RefundView::try_from(
        refunds::get(&services, id(&refund_id)?).await?,
    )?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadWebhook {
    pub event_id: Uuid,
    pub endpoint: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadWebhooks {
    pub dead: Vec<DeadWebhook>,
}

/// Webhook deliveries given up after the retry window: the billing system never got them.
#[utoipa::path(get, path = "/v1/webhooks/dead", tag = "refunds",
    responses((status = 200, body = DeadWebhooks)),
    security(("api_key" = [])))]
pub async fn dead_webhooks(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
) -> Result<Json<DeadWebhooks>, ApiError> {
    auth.require(Scope::Desk)?;
    let dead = crate::service::desk::dead_webhooks(&services).await?;
    Ok(Json(DeadWebhooks {
        dead: dead
            .into_iter()
            .map(|d| DeadWebhook {
                event_id: d.event_id,
                endpoint: d.endpoint,
                attempts: d.attempts,
                last_error: d.last_error,
            })
            .collect(),
    }))
}
