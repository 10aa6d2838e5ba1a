//! The desk's refund form. Each rendering is one refund: its attempt id is the idempotency key,
//! so a double click or a repost finds the refund the first post made. A confirmation step shows
//! the payment, the customer, the amount and what remains before anything is written; a refusal
//! stands beside its field with what the operator typed kept.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use oplata_providers::Amount;
use uuid::Uuid;

use super::desk::{Heading, Operator, kopecks, payment_page, stale_form};
use super::desk_views::{DeskInput, RefundConfirmation, RefundFormView};
use super::pages::{respond, same};
use crate::domain::refunds::RefundRuleError;
use crate::service::idempotency::{self as keys, Ending};
use crate::service::{ServiceError, Services, refunds};

const MAX_REASON_CHARS: usize = 500;

/// What the form says beside a field (`amount`, `reason`) or above it (`""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    field: &'static str,
    message: String,
}

/// One rendering of the refund form: its attempt id, what was typed, what was wrong with it.
#[derive(Debug, Clone)]
pub(super) struct RefundDraft {
    attempt: Uuid,
    amount: String,
    reason: String,
    errors: Vec<FieldError>,
}

impl RefundDraft {
    pub(super) fn fresh() -> Self {
        RefundDraft {
            attempt: Uuid::now_v7(),
            amount: String::new(),
            reason: String::new(),
            errors: Vec::new(),
        }
    }

    /// The form as the confirmation step's «Изменить» hands it back, in the page's address.
    pub(super) fn from_query(query: &HashMap<String, String>) -> Self {
        match query.get("attempt").and_then(|a| Uuid::parse_str(a).ok()) {
            Some(attempt) => RefundDraft {
                attempt,
                amount: query.get("amount").cloned().unwrap_or_default(),
                reason: query.get("reason").cloned().unwrap_or_default(),
                errors: Vec::new(),
            },
            None => RefundDraft::fresh(),
        }
    }

    fn with_error(mut self, field: &'static str, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
        self
    }

    /// The draft with a refund rule's refusal beside its field.
    fn refused_by(self, rule: &RefundRuleError) -> Self {
        let (field, message) = explain(rule);
        self.with_error(field, message)
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

/// What the form's fields mean: the amount (`None`: all that remains) and the reason.
fn read_fields(draft: &RefundDraft) -> Result<(Option<Amount>, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let typed = crate::domain::money::typed_amount(&draft.amount);
    let amount = match typed.as_str() {
        "" => None,
        text => match Amount::parse_api(text) {
            Ok(amount) => Some(amount),
            Err(_) => {
                errors.push(FieldError {
                    field: "amount",
                    message: "Сумма указана неверно: например, 1 500,50. Пусто — вся оставшаяся \
                              сумма."
                        .into(),
                });
                None
            }
        },
    };
    let reason = draft.reason.trim().to_owned();
    if reason.is_empty() {
        errors.push(FieldError {
            field: "reason",
            message: "Укажите причину возврата.".into(),
        });
    } else if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        errors.push(FieldError {
            field: "reason",
            message: format!("Причина — одна строка до {MAX_REASON_CHARS} знаков."),
        });
    }
    if errors.is_empty() {
        Ok((amount, reason))
    } else {
        Err(errors)
    }
}

/// Where a refund rule's refusal is shown, and in what words.
fn explain(rule: &RefundRuleError) -> (&'static str, String) {
    match rule {
        RefundRuleError::ExceedsRemaining { remaining_minor } => (
            "amount",
            format!(
                "Сумма возврата больше остатка платежа: можно вернуть не больше {} ₽.",
                kopecks(*remaining_minor)
            ),
        ),
        RefundRuleError::ReasonRequired => ("reason", "Укажите причину возврата.".into()),
        RefundRuleError::PaymentNotRefundable => ("", "Этот платёж нельзя вернуть.".into()),
        RefundRuleError::TooOld => ("", "Платёж слишком старый для возврата.".into()),
        RefundRuleError::OperatorDailyLimit { left_minor } => (
            "amount",
            format!(
                "Превышен дневной лимит возвратов оператора: сегодня можно вернуть ещё {} ₽.",
                kopecks(*left_minor)
            ),
        ),
    }
}

/// The refund form on a payment's page, with each refusal beside its field and what was typed
/// kept; the first field in error takes the focus.
pub(super) fn form_view(
    payment_id: Uuid,
    csrf: &str,
    remaining_minor: i64,
    draft: RefundDraft,
) -> RefundFormView {
    let remaining = kopecks(remaining_minor);
    let first_error = draft
        .errors
        .iter()
        .find(|e| !e.field.is_empty())
        .map(|e| e.field);
    let input = |name: &'static str, label: &'static str, value: &str| DeskInput {
        error: draft.error(name).map(str::to_owned),
        focus: first_error == Some(name),
        ..DeskInput::new(name, label, value)
    };
    let amount = DeskInput {
        attributes: " inputmode=\"decimal\"",
        placeholder: Some(remaining.clone()),
        hint: Some("Пусто — вся оставшаяся сумма."),
        ..input("amount", "Сумма, ₽", &draft.amount)
    };
    let reason = DeskInput {
        attributes: " required",
        max_length: Some(MAX_REASON_CHARS),
        ..input("reason", "Причина", &draft.reason)
    };
    RefundFormView {
        payment_id,
        csrf: csrf.to_owned(),
        attempt: draft.attempt,
        remaining,
        general: draft.error("").map(str::to_owned),
        inputs: vec![amount, reason],
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct RefundForm {
    csrf: String,
    #[serde(default)]
    attempt: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    /// Present on the confirmation step's form only: the refund is made.
    #[serde(default)]
    confirmed: Option<String>,
}

/// `POST /desk/payments/{id}/refunds`: the form (shows the confirmation) or its confirmation
/// (makes the refund).
pub async fn refund(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<RefundForm>,
) -> Response {
    if !same(&form.csrf, &operator.session.csrf_token) {
        return stale_form(&operator);
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refused = |draft: RefundDraft, status: StatusCode| {
        let services = &services;
        let operator = &operator;
        async move {
            payment_page(
                services,
                operator,
                id,
                Heading::Nothing,
                Some(draft),
                status,
            )
            .await
        }
    };
    let Ok(attempt) = Uuid::parse_str(&form.attempt) else {
        let draft = RefundDraft {
            amount: form.amount,
            reason: form.reason,
            ..RefundDraft::fresh()
        }
        .with_error(
            "",
            "Форма устарела: проверьте данные и отправьте её ещё раз.",
        );
        return refused(draft, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let draft = RefundDraft {
        attempt,
        amount: form.amount,
        reason: form.reason,
        errors: Vec::new(),
    };
    let (amount, reason) = match read_fields(&draft) {
        Ok(read) => read,
        Err(errors) => {
            let draft = RefundDraft { errors, ..draft };
            return refused(draft, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let login = &operator.session.login;
    if form.confirmed.is_none() {
        return match refunds::preview(&services, id, amount, &reason, login).await {
            Ok(preview) => confirmation(&services, &operator, &draft, &preview),
            Err(ServiceError::Refund(rule)) => {
                refused(draft.refused_by(&rule), StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(ServiceError::NotFound) => StatusCode::NOT_FOUND.into_response(),
            Err(error) => {
                tracing::error!(%error, "desk refund preview failed");
                let draft = draft.with_error("", "Не удалось проверить возврат, попробуйте позже.");
                refused(draft, StatusCode::SERVICE_UNAVAILABLE).await
            }
        };
    }
    // Each rendering of the form is one refund: a double click or a repost finds the refund the
    // first post made (or resumes it if that request died) instead of making a second.
    let owner = operator.session.operator_id;
    let key = format!("desk-refund:{attempt}");
    let typed_amount = crate::domain::money::typed_amount(&draft.amount);
    let fingerprint = super::idempotency::fingerprint(
        "POST /desk/payments/refunds",
        format!("{id}\n{typed_amount}\n{reason}").as_bytes(),
    );
    let claimed = match keys::claim(&services, owner, &key, &fingerprint).await {
        Ok(crate::store::IdempotencyClaim::Claimed(claimed)) => claimed,
        Ok(crate::store::IdempotencyClaim::Completed(stored)) => {
            // The refund the first post made, as its page shows it now.
            let refund_id = serde_json::from_str::<serde_json::Value>(&stored.body)
                .ok()
                .and_then(|body| body["refund_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Redirect::to(&format!("/desk/payments/{id}?refunded={refund_id}"))
                .into_response();
        }
        Ok(crate::store::IdempotencyClaim::InProgress) => {
            let draft = draft.with_error(
                "",
                "Этот возврат уже оформляется: обновите страницу через минуту.",
            );
            return refused(draft, StatusCode::CONFLICT).await;
        }
        Ok(crate::store::IdempotencyClaim::Mismatch) => {
            let draft = RefundDraft {
                attempt: Uuid::now_v7(),
                ..draft
            }
            .with_error(
                "",
                "Эта форма уже отправлена с другими данными: проверьте их и отправьте снова.",
            );
            return refused(draft, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(error) => {
            tracing::error!(%error, "desk refund idempotency");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let created = refunds::create(&services, None, id, amount, &reason, login, claimed).await;
    // A refusal wrote nothing: the same form may be corrected and sent again.
    let ending = match &created {
        Ok(refund) => Ending::Answered(crate::store::StoredResponse {
            status: 201,
            body: serde_json::json!({ "refund_id": refund.id }).to_string(),
        }),
        Err(ServiceError::Refund(_) | ServiceError::NotFound) => Ending::RefusedUnwritten,
        // Anything else may have left the refund half made: a repost of the form resumes it.
        Err(_) => Ending::Interrupted,
    };
    keys::end(&services, owner, &key, ending).await;
    match created {
        Ok(refund) => {
            Redirect::to(&format!("/desk/payments/{id}?refunded={}", refund.id)).into_response()
        }
        Err(ServiceError::Refund(rule)) => {
            refused(draft.refused_by(&rule), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(%error, "desk refund failed");
            let draft = draft.with_error(
                "",
                "Возврат не удался: отправьте форму ещё раз — повтор продолжит этот же возврат.",
            );
            refused(draft, StatusCode::SERVICE_UNAVAILABLE).await
        }
    }
}

/// The confirmation step: what will be refunded, to whom, and what remains; confirming posts the
/// same attempt, «Изменить» goes back to the form with what was typed.
fn confirmation(
    services: &Services,
    operator: &Operator,
    draft: &RefundDraft,
    preview: &refunds::RefundPreview,
) -> Response {
    let payment = &preview.payment;
    let supplier = services
        .suppliers
        .supplier(&payment.supplier_id)
        .map_or(payment.supplier_id.as_str(), |s| s.name.as_str());
    let customer = [payment.email.as_deref(), payment.phone.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let customer = if customer.is_empty() {
        "не указан".to_owned()
    } else {
        customer
    };
    respond(
        StatusCode::OK,
        &RefundConfirmation {
            title: "Подтвердите возврат",
            session: Some(&operator.session),
            csrf: &operator.session.csrf_token,
            payment_id: payment.id,
            attempt: draft.attempt,
            supplier,
            account: &payment.account_number,
            customer,
            paid: kopecks(payment.amount_minor),
            amount: preview.amount.to_string(),
            typed_amount: &draft.amount,
            left: kopecks(preview.remaining_after_minor),
            reason: draft.reason.trim(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(amount: &str, reason: &str) -> RefundDraft {
        RefundDraft {
            amount: amount.into(),
            reason: reason.into(),
            ..RefundDraft::fresh()
        }
    }

    #[test]
    fn every_wrong_field_is_named_at_once() {
        let errors = read_fields(&draft("12,3,4", " ")).expect_err("both wrong");
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["amount", "reason"]);
    }

    #[test]
    fn amounts_are_read_as_typed_and_empty_means_all() {
        assert_eq!(
            read_fields(&draft("1 500,50", "переплата")).expect("readable"),
            (
                Some(Amount::parse_api("1500.50").expect("an amount")),
                "переплата".into()
            )
        );
        assert_eq!(read_fields(&draft("", "x")).expect("readable").0, None);
        assert!(read_fields(&draft("1", "a\nb")).is_err());
    }

    #[test]
    fn the_first_field_in_error_takes_the_focus_and_keeps_its_text() {
        let draft = draft("abc", "")
            .with_error("amount", "неверно")
            .with_error("reason", "нужна");
        let view = form_view(Uuid::nil(), "t", 100, draft);
        let [amount, reason] = &view.inputs[..] else {
            panic!("two inputs");
        };
        assert_eq!(
            (amount.value.as_str(), amount.error.as_deref(), amount.focus),
            ("abc", Some("неверно"), true)
        );
        assert_eq!(
            (reason.error.as_deref(), reason.focus),
            (Some("нужна"), false)
        );
        assert_eq!(view.remaining, "1.00");
    }
}
