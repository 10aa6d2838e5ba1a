//! What the acquirer simulators share: how persistently they deliver notifications, and the
//! plain HTML of their pages.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// What oplata needs of an acquirer's simulator: its routes (its pages, its APIs and its
/// control endpoint), mounted under `/sandbox/<kind>`.
pub trait Simulator: std::any::Any + Send + Sync + std::fmt::Debug {
    fn router(&self) -> axum::Router;
}

/// Every acquirer's simulator (see [`crate::simulators`]).
#[derive(Debug, Clone, Default)]
pub struct Simulators {
    by_kind: Vec<(crate::AcquirerKind, Arc<dyn Simulator>)>,
}

impl Simulators {
    pub fn insert(&mut self, kind: crate::AcquirerKind, simulator: Arc<dyn Simulator>) {
        self.by_kind.retain(|(known, _)| *known != kind);
        self.by_kind.push((kind, simulator));
    }

    /// Each simulator under its mount.
    pub fn router(&self) -> axum::Router {
        self.by_kind
            .iter()
            .fold(axum::Router::new(), |router, (kind, simulator)| {
                router.nest(&kind.sandbox_mount(), simulator.router())
            })
    }

    /// The simulator of type `T` (for tests that drive it: decide a payment, drop an answer).
    pub fn get<T: Simulator + Clone>(&self) -> Option<T> {
        self.by_kind.iter().find_map(|(_, simulator)| {
            let any: &dyn std::any::Any = simulator.as_ref();
            any.downcast_ref::<T>().cloned()
        })
    }
}

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
    /// Does the work, then answers HTTP 500.
    ServerErrorAfterActing,
    /// Answers a body that is not the protocol's, after doing the work.
    Garbage,
    /// Does the work, then drops the connection in the middle of the answer.
    DropAfterActing,
    /// Charges, then never answers (holds the connection for a minute).
    DropAfterCharging,
}

/// Shapes a server API answer as `mode` says; `acted` tells whether the call changed the
/// simulator's books (a charge, a refund). `ServerError` is answered before any work, by the
/// caller.
pub(crate) async fn shape_answer(mode: ApiMode, acted: bool, answer: Response) -> Response {
    match mode {
        ApiMode::Normal | ApiMode::ServerError => answer,
        ApiMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            answer
        }
        ApiMode::ServerErrorAfterActing => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        ApiMode::Garbage => {
            (StatusCode::OK, "<html>Service Temporarily Unavailable").into_response()
        }
        ApiMode::DropAfterActing => dropped_connection(),
        ApiMode::DropAfterCharging if acted => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        ApiMode::DropAfterCharging => answer,
    }
}

/// A response whose body fails as it is sent: the server closes the connection mid-answer.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
            "the simulator drops the connection",
        ))
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        axum::body::Body::from_stream(failing),
    )
        .into_response()
}

/// A change of a simulator's behaviour, posted as JSON to `<simulator>/control` by tests, the
/// demo and the crash suite, so every outcome the adapters map can be produced from outside.
/// Each field left out keeps its current setting.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// How the server API (charges, refunds, and for Moneta every MerchantAPI call) answers
    /// from now on.
    pub api: Option<ApiControl>,
    /// What the next saved-card charge meets at the issuer.
    pub next_charge: Option<NextCharge>,
    /// `false`: paid operations are never notified (a lost notification); `true` again
    /// restores delivery for later operations.
    pub notifications: Option<bool>,
    /// `true`: new refunds stay in progress; `false` releases them (they finish).
    pub hold_refunds: Option<bool>,
    /// `true`: the next refund is refused.
    pub refuse_next_refund: Option<bool>,
}

/// [`ApiMode`] as the control endpoint takes it: `{"mode": "hold", "ms": 5000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiControl {
    Normal,
    /// Hold every answer this many milliseconds.
    Hold {
        ms: u64,
    },
    /// Answer 500 without doing anything.
    ServerError,
    /// Do the work, then answer 500.
    ActThenServerError,
    /// Do the work, then answer a body that is not the protocol's.
    ActThenGarbage,
    /// Do the work, then drop the connection.
    ActThenDrop,
    /// Charge, then never answer.
    ActThenHang,
}

impl From<ApiControl> for ApiMode {
    fn from(control: ApiControl) -> Self {
        match control {
            ApiControl::Normal => ApiMode::Normal,
            ApiControl::Hold { ms } => ApiMode::Slow(Duration::from_millis(ms)),
            ApiControl::ServerError => ApiMode::ServerError,
            ApiControl::ActThenServerError => ApiMode::ServerErrorAfterActing,
            ApiControl::ActThenGarbage => ApiMode::Garbage,
            ApiControl::ActThenDrop => ApiMode::DropAfterActing,
            ApiControl::ActThenHang => ApiMode::DropAfterCharging,
        }
    }
}

/// The issuer's answer to the next saved-card charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextCharge {
    Approve,
    Decline,
    InsufficientFunds,
    /// The issuer demands 3-D Secure.
    Challenge,
}

/// Answers a control request: reads it and applies it with `apply`; 204, or 422 with the reason
/// (a malformed request, or something this simulator cannot do).
pub(crate) fn handle_control(
    body: &[u8],
    apply: impl FnOnce(&Control) -> Result<(), String>,
) -> Response {
    let applied = serde_json::from_slice::<Control>(body)
        .map_err(|e| format!("bad control: {e}"))
        .and_then(|control| apply(&control));
    match applied {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response(),
    }
}

pub(crate) use crate::markup::escape as escape_html;

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

/// The receipt lines a simulator's cashbox accepted, as its payment page shows them.
pub(crate) fn receipt_html(lines: &[crate::receipt::ReadItem]) -> String {
    let rows: String = lines
        .iter()
        .map(|line| {
            format!(
                "<li><span class=\"receipt-name\">{}</span> × {} — {} ₽, НДС: {}</li>",
                escape_html(&line.name),
                escape_html(&line.quantity),
                line.sum,
                line.vat.as_str()
            )
        })
        .collect();
    format!("<section id=\"receipt\"><h2>Чек (54-ФЗ)</h2><ul>{rows}</ul></section>")
}

/// The receipt lines for a simulator's ledger.
pub(crate) fn receipt_json(lines: &[crate::receipt::ReadItem]) -> serde_json::Value {
    lines
        .iter()
        .map(|line| {
            serde_json::json!({
                "name": line.name,
                "quantity": line.quantity,
                "sum": line.sum.to_string(),
                "vat": line.vat.as_str(),
            })
        })
        .collect()
}
