//! The few pages a customer may see from oplata itself (in Russian).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::domain::payment::PaymentStatus;
use crate::service::Services;
use crate::store::PaymentRecord;

/// Escapes text for HTML content and attribute values.
pub(super) use oplata_providers::markup::escape;

/// One small stylesheet for every page oplata shows: mobile first (16 px text so phones do not
/// zoom, 44 px touch targets), calm colours, errors that stand out.
const STYLE: &str = "*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:34rem;margin:0 auto;padding:1rem;color:#1f2933;background:#f5f7fa}\
h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}\
label{display:block;font-weight:600}\
input,select{width:100%;font:inherit;min-height:44px;padding:.5rem .75rem;margin-top:.25rem;border:1px solid #9aa5b1;border-radius:8px;background:#fff;color:inherit}\
input:focus,select:focus{outline:3px solid #93c5fd;border-color:#1d4ed8}\
button{font:inherit;font-weight:600;min-height:44px;padding:.5rem 1.5rem;border:0;border-radius:8px;background:#1d4ed8;color:#fff;cursor:pointer}\
button:focus{outline:3px solid #93c5fd}\
form p,fieldset{margin:0 0 1rem}\
fieldset{border:1px solid #cbd2d9;border-radius:8px;padding:.75rem}\
.error{color:#b91c1c;font-weight:600}\
.hint{color:#52606d;font-size:.9375rem;margin-top:-.5rem}\
a{color:#1d4ed8}\
table{border-collapse:collapse;width:100%;display:block;overflow-x:auto}\
td,th{padding:.375rem .5rem;border-bottom:1px solid #e4e7eb;text-align:left}";

pub(super) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
<style>{STYLE}</style>\
</head><body>{body}</body></html>",
        escape(title)
    )
}

/// The result of a payment from oplata's own record, for a payment without a `return_url`.
pub fn payment_result(payment: &PaymentRecord) -> String {
    let status = Some(payment.status);
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
        status = payment.status.as_str(),
        account = escape(&payment.account_number),
    );
    let page = layout(headline, &body);
    if status.is_some_and(PaymentStatus::is_final) {
        return page;
    }
    // Until the outcome is known the page reloads itself; an anonymous payment's page reads
    // oplata's record only, so reloading never asks the acquirer again.
    let target = if payment.client_id.is_none() {
        format!(";url=/pay/result/{}", payment.id)
    } else {
        String::new()
    };
    page.replacen(
        "<title>",
        &format!("<meta http-equiv=\"refresh\" content=\"3{target}\"><title>"),
        1,
    )
}

/// A return from the acquirer that does not prove which payment it is about: nothing of the
/// payment is shown (anyone could type an order number).
pub fn return_without_proof() -> Response {
    let body = "<h1 id=\"status\" data-status=\"unknown\">Вы вернулись со страницы оплаты</h1>\
<p>Если оплата прошла, деньги поступят получателю, а чек придёт на указанный e-mail. \
Если нет — <a href=\"/pay\">оплатите ещё раз</a>.</p>";
    (
        StatusCode::OK,
        Html(layout("Возврат со страницы оплаты", body)),
    )
        .into_response()
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

/// One cookie's value from the request.
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(super) fn secure_flag(services: &Services) -> &'static str {
    if services.public_base_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    }
}

pub(super) fn set_cookie(response: &mut Response, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Constant-time comparison of a submitted token with the expected one.
pub(super) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
