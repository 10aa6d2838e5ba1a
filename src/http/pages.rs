//! The few pages a customer may see from oplata itself (in Russian).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::service::Services;
use crate::store::PaymentRecord;

/// A page from its template, answered with `status`. A template that fails to render (its
/// types make that unlikely, but the error exists) is logged and answered as a temporary
/// failure rather than an empty page.
pub(super) fn respond(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(document) => (status, Html(document)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page did not render");
            temporary_failure()
        }
    }
}

/// A short page that says one thing: a heading, a sentence, and where to go next.
#[derive(askama::Template)]
#[template(path = "notice.html")]
pub(super) struct Notice<'a> {
    pub title: &'a str,
    /// The heading's `data-status`, for a page that stands for a payment's state.
    pub status: Option<&'a str>,
    pub message: &'a str,
    /// The sentence is an error the customer must act on: read out at once.
    pub alert: bool,
    pub link: Option<(&'a str, &'a str)>,
}

impl<'a> Notice<'a> {
    pub fn new(title: &'a str, message: &'a str) -> Self {
        Notice {
            title,
            status: None,
            message,
            alert: false,
            link: None,
        }
    }

    pub fn alert(self) -> Self {
        Notice {
            alert: true,
            ..self
        }
    }

    pub fn link(self, href: &'a str, text: &'a str) -> Self {
        Notice {
            link: Some((href, text)),
            ..self
        }
    }
}

/// The result of a payment from oplata's own record, for a payment without a `return_url`.
pub fn payment_result(
    services: &Services,
    payment: &PaymentRecord,
    visit: super::result_page::Visit,
) -> Response {
    respond(
        StatusCode::OK,
        &super::result_page::ResultPage::new(services, payment, visit),
    )
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
    respond(
        StatusCode::OK,
        &Notice {
            status: Some("unknown"),
            ..Notice::new(
                "Вы вернулись со страницы оплаты",
                "Если оплата прошла, деньги поступят получателю, а чек придёт на указанный \
                 e-mail. Если нет, оплатите ещё раз.",
            )
            .link("/pay", "Оплатить ещё раз")
        },
    )
}

pub fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        &Notice::new("Платёж не найден", "Проверьте ссылку."),
    )
}

pub fn temporary_failure() -> Response {
    const TITLE: &str = "Временная ошибка";
    const MESSAGE: &str = "Обновите страницу через минуту.";
    use askama::Template;
    // This page is the answer when another page fails to render, so it cannot depend on itself.
    let document = Notice::new(TITLE, MESSAGE).render().unwrap_or_else(|_| {
        format!("<!doctype html><html lang=\"ru\"><title>{TITLE}</title><h1>{TITLE}</h1><p>{MESSAGE}</p></html>")
    });
    (StatusCode::SERVICE_UNAVAILABLE, Html(document)).into_response()
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
