//! The review list over the API (scope `desk`): what waits for a person, and settling it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use super::json::{self, Body};
use super::payments::PaymentView;
use super::refunds::{RefundView, bounded, id};
use crate::service::Services;
use crate::service::api_keys::Scope;
use crate::service::review::{self, Resolution};

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentInReview {
    /// Why a person must look at it.
    pub reason: String,
    pub payment: PaymentView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewListView {
    pub payments: Vec<PaymentInReview>,
    /// Refunds whose outcome could not be learned; `review_reason` says why.
    pub refunds: Vec<RefundView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `happened` (the acquirer did it), `never_happened`, or for payments `acknowledged`
    /// (nothing to change).
    pub outcome: Resolution,
    /// What the operator found, for the audit trail.
    pub note: String,
    /// Optional: the operator is the holder of the API key (its name); another name is refused.
    pub operator: Option<String>,
}

/// What waits for a person.
#[utoipa::path(get, path = "/v1/review", tag = "refunds",
    responses((status = 200, body = ReviewListView)),
    security(("api_key" = [])))]
pub async fn list(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
) -> Result<Json<ReviewListView>, ApiError> {
    auth.require(Scope::Desk)?;
    let listed = review::list(&services).await?;
    let payments = listed
        .payments
        .into_iter()
        .map(|p| {
            let reason = p.review_reason.clone().unwrap_or_default();
            PaymentView::try_from(p).map(|payment| PaymentInReview { reason, payment })
        })
        .collect::<Result<_, _>>()?;
    let refunds = listed
        .refunds
        .into_iter()
        .map(RefundView::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(ReviewListView { payments, refunds }))
}

fn checked(body: &[u8]) -> Result<ResolveRequest, ApiError> {
    let request: ResolveRequest = json::parse(body)?;
    bounded(&request.note, "note", 1000)?;
    Ok(request)
}

/// Settle a payment on the review list.
#[utoipa::path(post, path = "/v1/payments/{id}/review", tag = "refunds",
    request_body = ResolveRequest,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody),
        (status = 409, description = "not_in_review", body = ErrorBody),
        (status = 422, description = "invalid_resolution", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resolve_payment(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(payment_id): Path<String>,
    Body(body): Body,
) -> Result<Json<PaymentView>, ApiError> {
    let client = auth.require(Scope::Desk)?;
    let payment_id = id(&payment_id)?;
    let request = checked(&body)?;
    let operator = super::auth::desk_operator(&client, request.operator.as_deref())?;
    let payment = review::resolve_payment(
        &services,
        payment_id,
        request.outcome,
        &operator,
        &request.note,
    )
    .await?;
    Ok(Json(PaymentView::try_from(payment)?))
}

/// Settle a refund on the review list.
#[utoipa::path(post, path = "/v1/refunds/{id}/review", tag = "refunds",
    request_body = ResolveRequest,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = RefundView), (status = 404, body = ErrorBody),
        (status = 409, description = "not_in_review", body = ErrorBody),
        (status = 422, description = "invalid_resolution", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resolve_refund(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(refund_id): Path<String>,
    Body(body): Body,
) -> Result<Json<RefundView>, ApiError> {
    let client = auth.require(Scope::Desk)?;
    let refund_id = id(&refund_id)?;
    let request = checked(&body)?;
    let operator = super::auth::desk_operator(&client, request.operator.as_deref())?;
    let refund = review::resolve_refund(
        &services,
        refund_id,
        request.outcome,
        &operator,
        &request.note,
    )
    .await?;
    Ok(Json(RefundView::try_from(refund)?))
}
