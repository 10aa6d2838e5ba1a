//! The OpenAPI document, generated from the handlers and types.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{cards, error, health, payments, public, refunds, review, sms};

#[derive(OpenApi)]
#[openapi(
    info(title = "oplata", description = "Payments for utility bills: acquirers, saved cards, refunds."),
    paths(
        payments::create,
        payments::get,
        cards::list,
        cards::delete,
        cards::events,
        cards::password_reset,
        refunds::create,
        refunds::list,
        refunds::get,
        refunds::dead_webhooks,
        review::list,
        review::resolve_payment,
        review::resolve_refund,
        public::create,
        public::get,
        sms::inbound,
        sms::link,
        sms::unlink,
        health::healthz,
        health::readyz
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::ErrorCode)),
    modifiers(&ApiKeyScheme),
)]
#[derive(Debug)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "api_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
