//! Reading request bodies so that every rejection answers in the API's error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

/// The raw body, limited in size; too large a body is a JSON `payload_too_large`.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                ))
            }
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedJson,
                format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            )),
        }
    }
}

/// A JSON body must say so, when it says anything.
pub fn require_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok(value))
            if value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json") =>
        {
            Ok(())
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "the request body must be application/json",
        )),
    }
}

/// Parses JSON, naming the offending field when a field is at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from an array too, and blame element [0]: refuse it whole.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'[')) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidFieldType,
            "the request body must be a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = parsed.map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let (status, code) = match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson)
            }
            serde_json::error::Category::Data if message.starts_with("unknown field") => {
                (StatusCode::BAD_REQUEST, ErrorCode::UnknownField)
            }
            serde_json::error::Category::Data if message.starts_with("missing field") => {
                (StatusCode::BAD_REQUEST, ErrorCode::MissingField)
            }
            serde_json::error::Category::Data => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidFieldType)
            }
        };
        // serde's own text quotes the value it refused ("invalid type: integer `4510`…"):
        // a passport number sent as a number would be echoed, and stored with the answer. Only
        // the field and what was expected are said.
        let message = if code == ErrorCode::InvalidFieldType {
            let expected = message
                .split_once(", expected ")
                .map(|(_, rest)| rest.rsplit_once(" at line ").map_or(rest, |(e, _)| e))
                .filter(|e| !e.contains('`') || e.starts_with("one of"));
            match expected {
                Some(expected) => format!("{path}: expected {expected}"),
                None => format!("{path}: the value has the wrong type or form"),
            }
        } else {
            message
        };
        let api = ApiError::new(status, code, message);
        let field = if code == ErrorCode::MissingField || code == ErrorCode::UnknownField {
            quoted_name(&api.message)
        } else if code != ErrorCode::MalformedJson && path != "." {
            Some(path)
        } else {
            None
        };
        match field {
            Some(field) => api.with_param(field),
            None => api,
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedJson,
            e.to_string(),
        )
    })?;
    Ok(value)
}

/// serde names the field in backquotes: "unknown field `x`, expected …".
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}
