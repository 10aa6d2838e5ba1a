//! What the acquirer simulators share: how persistently they deliver notifications, and the
//! plain HTML of their pages.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// How persistently a simulator re-sends a notification the shop did not acknowledge.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    pub retry_interval: Duration,
    pub max_attempts: u32,
    /// How long the customer's browser waits for the first acknowledgement before it is
    /// redirected anyway (delivery goes on in the background).
    pub browser_wait: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_interval: Duration::from_secs(2),
            max_attempts: 30,
            browser_wait: Duration::from_secs(10),
        }
    }
}

/// How a simulator's server API misbehaves, for tests of unknown outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiMode {
    #[default]
    Normal,
    /// Answers after this long.
    Slow(Duration),
    /// Answers HTTP 500 without doing anything.
    ServerError,
    /// Answers a body that is not the protocol's, after doing the work.
    Garbage,
    /// Charges, then never answers.
    DropAfterCharging,
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A page of a simulator, labelled so nobody mistakes it for the real acquirer.
pub(crate) fn page(brand: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}\
button{{font-size:1.1rem;padding:.6rem 1.2rem;margin:.3rem}}input{{font-size:1.1rem;padding:.4rem}}</style></head>\
<body><p><small>{brand} — тестовая среда oplata</small></p>{body}</body></html>",
        title = escape_html(title),
        brand = escape_html(brand),
    )
}

pub(crate) fn error_page(brand: &str, message: &str) -> Response {
    let body = format!(
        "<h1>Ошибка</h1><p id=\"error\">{}</p>",
        escape_html(message)
    );
    (
        StatusCode::BAD_REQUEST,
        Html(page(brand, "Ошибка оплаты", &body)),
    )
        .into_response()
}

/// Pay / decline buttons posting `hidden` fields to `action`.
pub(crate) fn decision_forms(action: &str, hidden: &[(&str, &str)]) -> String {
    let hidden: String = hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            )
        })
        .collect();
    format!(
        "<form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"pay\">\
<button id=\"pay\" type=\"submit\">Оплатить</button></form>\
<form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"decline\">\
<button id=\"decline\" type=\"submit\">Отказаться</button></form>",
        action = escape_html(action)
    )
}
