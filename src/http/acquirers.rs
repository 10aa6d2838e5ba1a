//! The acquirers' own endpoints: signed notifications and the customer's browser returning.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use oplata_providers::{AcquirerKind, CallbackAnswer, RawCallback};

use super::pages;
use crate::service::{ServiceError, Services, callbacks, payments};

fn answer(answer: CallbackAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response()
}

async fn notification(
    services: &Services,
    kind: AcquirerKind,
    query: Option<String>,
    body: Bytes,
) -> Response {
    let raw = RawCallback {
        query: query.unwrap_or_default(),
        body: body.to_vec(),
    };
    answer(callbacks::handle_notification(services, kind, &raw).await)
}

/// Every acquirer's notification paths, as its protocol names them, each answered for that
/// acquirer.
pub fn notification_routes() -> Router<Arc<Services>> {
    let mut routes = Router::new();
    for protocol in oplata_providers::PROTOCOLS {
        let kind = protocol.kind();
        for path in protocol.notification_paths() {
            let handler = move |State(services): State<Arc<Services>>,
                                RawQuery(query): RawQuery,
                                body: Bytes| async move {
                notification(&services, kind, query, body).await
            };
            let method = if path.post {
                get(handler).post(handler)
            } else {
                get(handler)
            };
            routes = routes.route(path.path, method);
        }
    }
    routes
}

/// The customer's browser back from an acquirer's page: `/return/{acquirer}/{success|fail}`.
/// Either way the acquirer is asked what happened (where it can be asked).
pub async fn browser_return(
    State(services): State<Arc<Services>>,
    Path((acquirer, outcome)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(kind) = AcquirerKind::parse(&acquirer) else {
        return pages::not_found();
    };
    if outcome != "success" && outcome != "fail" {
        return pages::not_found();
    }
    let raw = RawCallback {
        query: query.unwrap_or_default(),
        body: Vec::new(),
    };
    match payments::handle_browser_return(&services, kind, &raw).await {
        Ok(payments::BrowserReturn::Proven(payment)) => {
            back_to_portal(&services, &headers, &payment)
        }
        Ok(payments::BrowserReturn::Unproven { return_url }) => {
            match return_url.as_deref().map(url::Url::parse) {
                Some(Ok(url)) => Redirect::to(url.as_str()).into_response(),
                Some(Err(_)) | None => pages::return_without_proof(),
            }
        }
        Err(ServiceError::NotFound) => pages::not_found(),
        Err(error) => {
            tracing::error!(%error, "browser return failed");
            pages::temporary_failure()
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ThreeDsAnswer {
    #[serde(rename = "PaRes")]
    pa_res: String,
    #[serde(rename = "MD")]
    md: String,
}

/// `TermUrl`: the issuer's 3-D Secure page posts its answer here through the customer's browser.
pub async fn three_ds_complete(
    State(services): State<Arc<Services>>,
    Path(payment_id): Path<String>,
    headers: axum::http::HeaderMap,
    axum::Form(answer): axum::Form<ThreeDsAnswer>,
) -> Response {
    let Ok(payment_id) = uuid::Uuid::parse_str(&payment_id) else {
        return pages::not_found();
    };
    match payments::complete_three_ds(&services, payment_id, &answer.md, &answer.pa_res).await {
        Ok(payment) => back_to_portal(&services, &headers, &payment),
        Err(ServiceError::NotFound) => pages::not_found(),
        Err(error) => {
            tracing::error!(%error, "3-D Secure completion failed");
            pages::temporary_failure()
        }
    }
}

/// Sends the browser back to the portal with the payment id, or shows oplata's result page.
fn back_to_portal(
    services: &Services,
    headers: &axum::http::HeaderMap,
    payment: &crate::store::PaymentRecord,
) -> Response {
    match payment.return_url.as_deref().map(url::Url::parse) {
        Some(Ok(mut url)) => {
            url.query_pairs_mut()
                .append_pair("payment_id", &payment.id.to_string());
            Redirect::to(url.as_str()).into_response()
        }
        Some(Err(_)) | None => pages::payment_result(
            services,
            payment,
            super::result_page::Visit {
                check: 0,
                now: time::OffsetDateTime::now_utc(),
                resume: pages::resume_link(services, headers, payment),
            },
        ),
    }
}
