//! `Idempotency-Key` handling for every request that can move money.
//!
//! The same key and the same request replay the first answer (refusals included); the same key
//! with another request is refused; while the first is still running, a second is told so. The
//! request runs in its own task, so a client that hangs up cannot leave it half done. A request
//! that died without answering frees its key after the lease; one that failed (a 5xx: the
//! database went away, a bug) gives it back at once, its answer not stored.
//!
//! A key is bound to what it creates: the first claim chooses the id of its payment or refund,
//! and every later claim gets the same id. A retry after the first holder died finds that
//! resource and resumes it from its last recovery point instead of creating another.

use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::error::{ApiError, ErrorCode};
use crate::service::Services;
use crate::service::api_keys::ApiClient;
use crate::service::idempotency::{self, Ending};
use crate::store::{ClaimedKey, IdempotencyClaim, StoredResponse};

const HEADER: &str = "idempotency-key";

/// A checked `Idempotency-Key` header value.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let value = headers.get(HEADER).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MissingIdempotencyKey,
                "this request moves money and needs an Idempotency-Key header",
            )
        })?;
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidIdempotencyKey,
                    "the Idempotency-Key must be 1 to 255 printable ASCII characters",
                )
            })?;
        Ok(IdempotencyKey(key.to_owned()))
    }
}

/// What identifies "the same request": the route and the body, with JSON canonicalised so that
/// key order and spacing do not matter.
pub fn fingerprint(route: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_else(|_| body.to_vec());
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

pub(super) fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Ends a key after its request answered `status` with `body`.
pub(super) async fn end_after(
    services: &Services,
    client_id: uuid::Uuid,
    key: &str,
    status: StatusCode,
    body: &str,
) {
    let ending = match status {
        // A refusal by the abuse limits wrote nothing and moved nothing: the key stays free, so
        // the same request may be sent again once the wait is over.
        StatusCode::TOO_MANY_REQUESTS => Ending::RefusedUnwritten,
        // The database went away mid-way, or the service failed: the retry resumes the resource
        // the claim named, at once. Resuming never moves money twice.
        status if status.is_server_error() => Ending::Interrupted,
        _ => Ending::Answered(StoredResponse {
            status: status.as_u16(),
            body: body.to_owned(),
        }),
    };
    idempotency::end(services, client_id, key, ending).await;
}

/// Runs `work` at most once per key and request; see the module docs. `work` gets the claim:
/// the id its payment or refund must take, and whether an earlier holder of the key may have
/// started it already.
pub async fn run<F, Fut>(
    services: Arc<Services>,
    client: ApiClient,
    key: IdempotencyKey,
    fingerprint: String,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<Services>, ApiClient, ClaimedKey) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(StatusCode, String), ApiError>> + Send + 'static,
{
    let claim = idempotency::claim(&services, client.id, &key.0, &fingerprint).await?;
    let claimed = match claim {
        IdempotencyClaim::Completed(stored) => {
            let status = StatusCode::from_u16(stored.status).map_err(|e| ApiError::internal(&e))?;
            let body = services.reveal_continue_links(&stored.body);
            return Ok(json_response(status, body, true));
        }
        IdempotencyClaim::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            ));
        }
        IdempotencyClaim::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::IdempotencyKeyInUse,
                "a request with this Idempotency-Key is still being processed; retry shortly",
            ));
        }
        IdempotencyClaim::Claimed(claimed) => claimed,
    };
    let revealer = services.clone();
    let task = tokio::spawn(
        async move {
            let (status, body, retry_after) =
                match work(services.clone(), client.clone(), claimed).await {
                    Ok((status, body)) => (status, body, None),
                    Err(error) => (error.status, error.body_json(), error.retry_after),
                };
            end_after(&services, client.id, &key.0, status, &body).await;
            (status, body, retry_after)
        }
        .instrument(tracing::Span::current()),
    );
    let (status, body, retry_after) = task.await.map_err(|e| ApiError::internal(&e))?;
    // Stored without the continue token; the creator's answer carries it.
    let body = revealer.reveal_continue_links(&body);
    let mut response = json_response(status, body, false);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}
