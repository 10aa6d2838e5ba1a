//! The SMS gateway's endpoint and the portal's linking of phones to users.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::json::{self, Body};
use crate::service::api_keys::Scope;
use crate::service::{Services, sms};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundSmsRequest {
    /// The gateway's id of the SMS; a redelivery carries the same id.
    pub message_id: String,
    /// The sender, E.164 (`+79161234567`).
    pub from: String,
    pub text: String,
    /// When the gateway received it (RFC 3339). Recorded; the daily limits use oplata's clock.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: time::OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SmsReply {
    /// The text to send back: Russian, at most 70 characters, so one UCS-2 SMS.
    pub reply: String,
    /// Always `UCS-2`.
    pub encoding: &'static str,
}

/// An inbound SMS; the answer is the reply to send back.
#[utoipa::path(
    post, path = "/v1/sms/inbound", tag = "sms",
    request_body = InboundSmsRequest,
    responses(
        (status = 200, description = "The reply (also for a redelivered message_id: the first reply)", body = SmsReply),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The same message_id is still being processed", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn inbound(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Json<SmsReply>, ApiError> {
    let gateway = auth.require(Scope::Sms)?;
    json::require_json_content_type(&headers)?;
    let request: InboundSmsRequest = json::parse(&body)?;
    let reply = sms::handle_inbound(
        &services,
        &gateway,
        &sms::InboundSms {
            message_id: &request.message_id,
            from: &request.from,
            text: &request.text,
            received_at: request.received_at,
        },
    )
    .await?;
    Ok(Json(SmsReply {
        reply,
        encoding: "UCS-2",
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPhoneRequest {
    /// E.164, e.g. `+79161234567`.
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedPhone {
    pub user_id: String,
    pub phone: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub linked_at: time::OffsetDateTime,
}

fn user(user_id: &str) -> Result<&str, ApiError> {
    if !user_id.is_empty() && user_id.len() <= 128 && user_id.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(user_id)
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidUserId,
            "the user id must be 1 to 128 printable characters without spaces",
        )
        .with_param("user_id"))
    }
}

/// Link the phone the user pays from by SMS (one phone per user, one user per phone).
#[utoipa::path(
    put, path = "/v1/users/{user_id}/sms-phone", tag = "sms",
    params(("user_id" = String, Path)),
    request_body = LinkPhoneRequest,
    responses(
        (status = 200, body = LinkedPhone),
        (status = 409, description = "The phone is linked to another user", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn link(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(user_id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Json<LinkedPhone>, ApiError> {
    let client = auth.require(Scope::Portal)?;
    json::require_json_content_type(&headers)?;
    let user_id = user(&user_id)?;
    let request: LinkPhoneRequest = json::parse(&body)?;
    let linked_at = sms::link_phone(&services, client.id, user_id, &request.phone).await?;
    Ok(Json(LinkedPhone {
        user_id: user_id.to_owned(),
        phone: request.phone,
        linked_at,
    }))
}

/// Unlink the user's phone: SMS from it are no longer taken as theirs.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/sms-phone", tag = "sms",
    params(("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn unlink(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Portal)?;
    sms::unlink_phone(&services, user(&user_id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
