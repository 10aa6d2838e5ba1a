//! The few pages a customer may see from oplata itself (in Russian).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::service::Services;
use crate::store::PaymentRecord;

/// Escapes text for HTML content and attribute values.
pub(super) use oplata_providers::markup::escape;

/// One small stylesheet for every page oplata shows (templates/pages.css): mobile first (16 px
/// text so phones do not zoom, 44 px touch targets), calm colours, errors that stand out.
pub(super) const STYLE: &str = include_str!("../../templates/pages.css");

pub(super) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
<style>{STYLE}</style>\
</head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// The result of a payment from oplata's own record, for a payment without a `return_url`.
pub fn payment_result(
    services: &Services,
    payment: &PaymentRecord,
    visit: super::result_page::Visit,
) -> Response {
    use askama::Template;
    match super::result_page::ResultPage::new(services, payment, visit).render() {
        Ok(page) => Html(page).into_response(),
        Err(error) => {
            tracing::error!(%error, "result page did not render");
            temporary_failure()
        }
    }
}

/// Remembers, in the browser that created an anonymous payment, the token that takes it back to
/// the acquirer's page: the result page offers the way back to that browser only (anyone else
/// holding the page's address sees the outcome, not the acquirer's page with its details).
const RESUME_COOKIE: &str = "oplata_resume";

pub(super) fn resume_cookie(services: &Services, payment_id: uuid::Uuid) -> String {
    use secrecy::ExposeSecret;
    format!(
        "{RESUME_COOKIE}={payment_id}.{}; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400{}",
        services.continue_token(payment_id).expose_secret(),
        secure_flag(services)
    )
}

/// The way back to the acquirer's page, when this browser created `payment`.
pub(super) fn resume_link(
    services: &Services,
    headers: &HeaderMap,
    payment: &PaymentRecord,
) -> Option<String> {
    use secrecy::ExposeSecret;
    let value = cookie_value(headers, RESUME_COOKIE)?;
    let (id, token) = value.split_once('.')?;
    let expected = services.continue_token(payment.id);
    (id == payment.id.to_string() && same(token, expected.expose_secret()))
        .then(|| format!("/pay/{}/continue?token={token}", payment.id))
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
