//! API key authentication (`Authorization: Bearer opk_…`) and scope checks.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use secrecy::SecretString;

use super::error::{ApiError, ErrorCode};
use crate::service::Services;
use crate::service::api_keys::{self, ApiClient, Scope};

/// The client behind a valid API key.
#[derive(Debug, Clone)]
pub struct Authenticated(pub ApiClient);

/// The operator behind a desk API key is the key's holder (its name): the daily refund limit
/// and the audit trail name them. A name the caller writes in the request is accepted only when
/// it is that one.
pub fn desk_operator(client: &ApiClient, claimed: Option<&str>) -> Result<String, ApiError> {
    match claimed {
        Some(name) if name != client.name => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OperatorMismatch,
            "the operator is the holder of the API key; another name cannot be given",
        )
        .with_param("operator")),
        _ => Ok(client.name.clone()),
    }
}

impl Authenticated {
    pub fn require(self, scope: Scope) -> Result<ApiClient, ApiError> {
        if self.0.scope == scope {
            Ok(self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenScope,
                format!(
                    "this endpoint needs an API key with scope {}",
                    scope.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<Services>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "a valid API key is required: Authorization: Bearer <key>",
            )
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| SecretString::from(k.trim()))
            .ok_or_else(unauthorized)?;
        let client = api_keys::authenticate(services.store.as_ref(), &presented)
            .await?
            .ok_or_else(unauthorized)?;
        Ok(Authenticated(client))
    }
}
