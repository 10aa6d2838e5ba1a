//! The few pages a customer may see from oplata itself (in Russian).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::payment::PaymentStatus;
use crate::store::PaymentRecord;

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
<style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}</style>\
</head><body>{body}</body></html>",
        escape(title)
    )
}

/// The result of a payment from oplata's own record, for a payment without a `return_url`.
pub fn payment_result(payment: &PaymentRecord) -> String {
    let status = PaymentStatus::parse(&payment.status);
    let (headline, detail) = match status {
        Some(
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded,
        ) => ("Оплачено", "Спасибо! Платёж принят."),
        Some(PaymentStatus::Failed | PaymentStatus::Canceled | PaymentStatus::Expired) => (
            "Платёж не прошёл",
            "Деньги не списаны. Попробуйте оплатить ещё раз.",
        ),
        Some(
            PaymentStatus::Created | PaymentStatus::RequiresAction | PaymentStatus::Processing,
        )
        | None => ("Платёж обрабатывается", "Обновите страницу через минуту."),
    };
    let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let body = format!(
        "<h1 id=\"status\" data-status=\"{status}\">{headline}</h1><p>{detail}</p>\
<p>Лицевой счёт: {account}<br>Сумма: {amount} ₽</p>",
        status = escape(&payment.status),
        account = escape(&payment.account_number),
    );
    layout(headline, &body)
}

pub fn not_found() -> Response {
    let body = "<h1>Платёж не найден</h1><p>Проверьте ссылку.</p>";
    (
        StatusCode::NOT_FOUND,
        Html(layout("Платёж не найден", body)),
    )
        .into_response()
}

pub fn temporary_failure() -> Response {
    let body = "<h1>Временная ошибка</h1><p>Обновите страницу через минуту.</p>";
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(layout("Временная ошибка", body)),
    )
        .into_response()
}
