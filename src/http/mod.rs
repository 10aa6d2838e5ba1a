//! The HTTP API: router, middleware, and one module per resource.

pub mod acquirers;
pub mod auth;
pub mod cards;
pub mod client_address;
pub mod desk;
mod desk_refund;
mod desk_search;
mod desk_views;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod pages;
pub mod payments;
pub mod public;
pub mod refunds;
mod result_page;
pub mod review;
pub mod sms;
mod wording;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::service::Services;
use error::{ApiError, ErrorCode};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with the middleware every request passes through.
pub fn router(services: Arc<Services>, extra: Router) -> Router {
    let settings = services.settings.clone();
    let api = Router::new()
        .route("/v1/payments", post(payments::create))
        .route("/v1/payments/{id}", get(payments::get))
        .route(
            "/return/{acquirer}/{outcome}",
            get(acquirers::browser_return),
        )
        .route("/v1/users/{user_id}/cards", get(cards::list))
        .route(
            "/v1/users/{user_id}/cards/{card_id}",
            axum::routing::delete(cards::delete),
        )
        .route(
            "/v1/users/{user_id}/cards/{card_id}/events",
            get(cards::events),
        )
        .route(
            "/v1/users/{user_id}/password-reset",
            post(cards::password_reset),
        )
        .route(
            "/3ds/{payment_id}/complete",
            post(acquirers::three_ds_complete),
        )
        .route(
            "/v1/payments/{id}/refunds",
            post(refunds::create).get(refunds::list),
        )
        .route("/v1/refunds/{id}", get(refunds::get))
        .route("/v1/review", get(review::list))
        .route("/v1/payments/{id}/review", post(review::resolve_payment))
        .route("/v1/refunds/{id}/review", post(review::resolve_refund))
        .route("/v1/webhooks/dead", get(refunds::dead_webhooks))
        .route("/desk", get(desk::search))
        .route("/desk/login", get(desk::login_form).post(desk::login))
        .route("/desk/logout", post(desk::logout))
        .route("/desk/review", get(desk::review))
        .route("/desk/payments/{id}", get(desk::payment))
        .route("/desk/payments/{id}/refunds", post(desk_refund::refund))
        .route("/desk/payments/{id}/review", post(desk::review_payment))
        .route("/desk/refunds/{id}/review", post(desk::review_refund))
        .route("/v1/public/payments", post(public::create))
        .route("/v1/public/payments/{id}", get(public::get))
        .route("/pay", get(public::page).post(public::submit))
        .route("/pay/result/{id}", get(public::result))
        .route("/pay/{id}/continue", get(public::continue_payment))
        .route("/v1/sms/inbound", post(sms::inbound))
        .route(
            "/v1/users/{user_id}/sms-phone",
            axum::routing::put(sms::link).delete(sms::unlink),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .merge(acquirers::notification_routes())
        .with_state(services);
    api.merge(extra)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this method is not allowed here",
            )
        })
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    // The span names the path only: query strings carry acquirers' signatures.
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let request_id = request
                                .extensions()
                                .get::<RequestId>()
                                .and_then(|id| id.header_value().to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = %request.uri().path(),
                                request_id = %request_id,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal(&"a handler panicked").into_response()
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(settings.request_timeout_secs),
                )),
        )
}

/// What every answer tells the browser: no sniffing, no framing, no referrer (some addresses
/// carry one-time tokens), nothing cached (pages and answers carry personal and payment data),
/// and for HTML a content policy that allows nothing from elsewhere unless the handler set a
/// stricter-tailored one of its own.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
    }
    response
}
