//! The API's one error shape, `{"error": {"code", "message", "param"}}`, and every code in one
//! place. Internal failures are logged in full and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::cards::CardRuleError;
use crate::domain::new_payment::PaymentRuleError;
use crate::domain::payer::PayerError;
use crate::service::ServiceError;

/// Every error code the API can answer with. Codes are stable: clients may branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    MalformedJson,
    /// The body names a field the endpoint does not know.
    UnknownField,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type (amounts are strings, for example).
    InvalidFieldType,
    /// The body is larger than the service accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// A money-moving request came without an `Idempotency-Key` header.
    MissingIdempotencyKey,
    /// The `Idempotency-Key` header is empty, too long or not printable ASCII.
    InvalidIdempotencyKey,
    /// The key was used before with a different request.
    IdempotencyKeyReused,
    /// A request with this key is still being processed.
    IdempotencyKeyInUse,
    /// No valid API key was presented.
    Unauthorized,
    /// The API key's scope does not allow this endpoint.
    ForbiddenScope,
    /// A desk request names another operator than the holder of its API key.
    OperatorMismatch,
    /// No such resource (or not yours).
    NotFound,
    /// The method is not allowed on this path.
    MethodNotAllowed,
    UnknownSupplier,
    /// The supplier cannot be paid without sign-in (rule 6).
    SupplierNotPublic,
    InvalidAccountNumber,
    InvalidAmount,
    AmountAboveLimit,
    UnsupportedCurrency,
    InvalidDescription,
    InvalidUserId,
    InvalidEmail,
    /// The supplier issues fiscal receipts and the payment names no e-mail or phone to send
    /// one to.
    ReceiptContactRequired,
    InvalidReturnUrl,
    /// No such card for this user (never saved, someone else's, deleted or revoked).
    CardNotFound,
    /// The card was saved for another payment type (rule 2).
    CardNotValidForPaymentType,
    /// The card was saved with another acquirer than the supplier's.
    CardNotValidForSupplier,
    /// A saved card cannot make the first payment to a supplier (rule 3).
    SavedCardFirstPaymentToSupplier,
    /// `save_card` needs a `user_id` (rule 6).
    SaveCardRequiresUser,
    /// The supplier's acquirer cannot save cards.
    CardSavingNotSupported,
    /// A saved-card payment needs the paying user's `user_id`.
    SavedCardRequiresUser,
    /// `save_card` cannot be combined with a saved card.
    InvalidPaymentMethod,
    /// Only succeeded or partially refunded payments can be refunded.
    PaymentNotRefundable,
    /// The refund is larger than what is left of the payment (rule 13).
    RefundExceedsRemaining,
    /// The payment is older than refunds are allowed for (`refunds.max_age_days`).
    RefundTooOld,
    /// The operator's daily refund total would be exceeded.
    OperatorDailyLimitExceeded,
    /// A refund needs a reason.
    RefundReasonRequired,
    /// A budget supplier needs the payer's passport data (rule 8).
    PersonalDataRequired,
    /// Passport data is accepted only for budget suppliers (rule 8).
    PersonalDataNotAllowed,
    /// A passport field is malformed; `param` names it.
    InvalidPersonalData,
    /// Too many attempts: wait the `Retry-After` seconds.
    RateLimited,
    /// The field is not accepted from anonymous payers (`save_card`, `user_id`).
    NotAllowedForAnonymous,
    /// A phone number is not in E.164 form.
    InvalidPhone,
    /// The SMS `message_id` is empty, too long or not printable ASCII.
    InvalidMessageId,
    /// The SMS text is too long.
    InvalidSmsText,
    /// The phone is linked to another user.
    PhoneAlreadyLinked,
    /// The same SMS is still being processed: deliver it again shortly.
    SmsInProgress,
    /// The request took too long.
    RequestTimeout,
    /// The service failed; nothing about the failure is disclosed.
    InternalError,
    /// The database is not reachable: try again after `Retry-After` seconds, with the same
    /// `Idempotency-Key` (the retry resumes whatever the request had started).
    ServiceUnavailable,
    /// The payment or refund is not on the review list (never flagged, or already settled).
    NotInReview,
    /// The review item cannot be settled that way (a final payment cannot become succeeded).
    InvalidResolution,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// A sentence for people; do not parse it.
    pub message: String,
    /// The request field the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// How long a client is asked to wait when the database is out of reach.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// Seconds for the `Retry-After` header of a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such resource",
        )
    }

    /// The database is out of reach: a clean 503 the client may retry after a short wait.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(%cause, "database unavailable");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the service is temporarily unavailable; retry with the same Idempotency-Key",
        );
        error.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
        error
    }

    fn from_store(error: &crate::store::StoreError) -> Self {
        if error.is_unavailable() {
            ApiError::unavailable(&crate::telemetry::Chain(error))
        } else {
            ApiError::internal(&crate::telemetry::Chain(error))
        }
    }

    /// Logs the cause (which may name internals) and answers without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "the service failed to process the request; check the payment's status before trying again",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                param: self.param.clone(),
            },
        }
    }

    pub fn body_json(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal_error","message":"error"}}"#.to_owned()
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body_json(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<PaymentRuleError> for ApiError {
    fn from(error: PaymentRuleError) -> Self {
        let code = match &error {
            PaymentRuleError::UnknownSupplier => ErrorCode::UnknownSupplier,
            PaymentRuleError::SupplierNotPublic => ErrorCode::SupplierNotPublic,
            PaymentRuleError::InvalidAccountNumber { .. } => ErrorCode::InvalidAccountNumber,
            PaymentRuleError::InvalidAmount(_) => ErrorCode::InvalidAmount,
            PaymentRuleError::AmountAboveLimit { .. } => ErrorCode::AmountAboveLimit,
            PaymentRuleError::UnsupportedCurrency => ErrorCode::UnsupportedCurrency,
            PaymentRuleError::InvalidDescription => ErrorCode::InvalidDescription,
            PaymentRuleError::InvalidUserId => ErrorCode::InvalidUserId,
            PaymentRuleError::InvalidEmail => ErrorCode::InvalidEmail,
            PaymentRuleError::InvalidPhone => ErrorCode::InvalidPhone,
            PaymentRuleError::ReceiptContactRequired => ErrorCode::ReceiptContactRequired,
            PaymentRuleError::InvalidReturnUrl => ErrorCode::InvalidReturnUrl,
            PaymentRuleError::Payer(PayerError::Required) => ErrorCode::PersonalDataRequired,
            PaymentRuleError::Payer(PayerError::NotAllowed | PayerError::NeedsCardEntry) => {
                ErrorCode::PersonalDataNotAllowed
            }
            PaymentRuleError::Payer(_) => ErrorCode::InvalidPersonalData,
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
            .with_param(error.field())
    }
}

impl From<CardRuleError> for ApiError {
    fn from(error: CardRuleError) -> Self {
        let (status, code, param) = match error {
            CardRuleError::CardNotFound => (
                StatusCode::NOT_FOUND,
                ErrorCode::CardNotFound,
                "payment_method.card_id",
            ),
            CardRuleError::CardNotValidForPaymentType => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CardNotValidForPaymentType,
                "payment_method.card_id",
            ),
            CardRuleError::CardNotValidForSupplier => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CardNotValidForSupplier,
                "payment_method.card_id",
            ),
            CardRuleError::SavedCardFirstPaymentToSupplier => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SavedCardFirstPaymentToSupplier,
                "supplier_id",
            ),
            CardRuleError::SaveCardNeedsUser => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SaveCardRequiresUser,
                "user_id",
            ),
            CardRuleError::CardSavingNotSupported => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CardSavingNotSupported,
                "save_card",
            ),
            CardRuleError::SavedCardNeedsUser => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SavedCardRequiresUser,
                "user_id",
            ),
        };
        ApiError::new(status, code, error.to_string()).with_param(param)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Rule(rule) => rule.into(),
            ServiceError::Card(rule) => rule.into(),
            ServiceError::Refund(rule) => {
                use crate::domain::refunds::RefundRuleError as R;
                let (code, param) = match rule {
                    R::PaymentNotRefundable => (ErrorCode::PaymentNotRefundable, None),
                    R::ExceedsRemaining { .. } => {
                        (ErrorCode::RefundExceedsRemaining, Some("amount"))
                    }
                    R::TooOld => (ErrorCode::RefundTooOld, None),
                    R::OperatorDailyLimit { .. } => {
                        (ErrorCode::OperatorDailyLimitExceeded, Some("amount"))
                    }
                    R::ReasonRequired => (ErrorCode::RefundReasonRequired, Some("reason")),
                };
                let error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, rule.to_string());
                match param {
                    Some(param) => error.with_param(param),
                    None => error,
                }
            }
            ServiceError::Operator(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidFieldType,
                e.to_string(),
            ),
            ServiceError::Limited(limited) => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    limited.to_string(),
                );
                error.retry_after = Some(limited.retry_after_secs());
                error
            }
            ServiceError::Sms(e) => {
                use crate::service::sms::SmsError as E;
                let (status, code, param) = match e {
                    E::InvalidPhone => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::InvalidPhone,
                        Some("phone"),
                    ),
                    E::InvalidMessageId => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::InvalidMessageId,
                        Some("message_id"),
                    ),
                    E::InvalidText => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::InvalidSmsText,
                        Some("text"),
                    ),
                    E::PhoneTaken => (
                        StatusCode::CONFLICT,
                        ErrorCode::PhoneAlreadyLinked,
                        Some("phone"),
                    ),
                    E::InProgress => (StatusCode::CONFLICT, ErrorCode::SmsInProgress, None),
                };
                let error = ApiError::new(status, code, e.to_string());
                match param {
                    Some(param) => error.with_param(param),
                    None => error,
                }
            }
            ServiceError::NotFound => ApiError::not_found(),
            ServiceError::NotInReview => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NotInReview,
                "this item is not on the review list (never flagged, or already settled)",
            ),
            ServiceError::InvalidResolution => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidResolution,
                "a refund is either paid back (happened) or not (never_happened)",
            )
            .with_param("outcome"),
            ServiceError::Store(crate::store::StoreError::Refused(why)) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidResolution,
                format!("the payment cannot be settled that way: {why}"),
            ),
            ServiceError::Store(e) => ApiError::from_store(&e),
            error @ ServiceError::Internal { .. } => {
                ApiError::internal(&crate::telemetry::Chain(&error))
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::from_store(&error)
    }
}
