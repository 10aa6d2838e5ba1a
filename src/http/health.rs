//! Liveness and readiness.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::{ApiError, ErrorCode};
use crate::service::Services;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(900);

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, body = super::error::ErrorBody)))]
pub async fn readyz(
    State(services): State<Arc<Services>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // A load balancer asks often and gives up quickly: answer within a second either way.
    let answered = tokio::time::timeout(READY_WITHIN, services.database_ready()).await;
    let failure = match answered {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {READY_WITHIN:?}")),
    };
    if let Some(error) = failure {
        tracing::warn!(%error, "readiness check failed");
        let mut refused = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the database is not reachable",
        );
        refused.retry_after = Some(1);
        return Err(refused);
    }
    Ok(Json(
        serde_json::json!({"status": "ready", "database": services.database_backend()}),
    ))
}

/// Prometheus metrics (scope `admin`).
pub async fn metrics(
    State(services): State<Arc<Services>>,
    auth: super::auth::Authenticated,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    auth.require(crate::service::api_keys::Scope::Admin)?;
    let gauges = crate::service::desk::attention(&services).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(gauges),
    ))
}
