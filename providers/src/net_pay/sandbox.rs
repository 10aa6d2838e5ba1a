//! A simulator of NetPay's side: the payment page, the notification, and refunds done "in the
//! cabinet" (for tests).
//!
//! The page decrypts `data` with the same key derivation as NetPay (accepting values URL-encoded
//! once or twice, as the plugins send them), refuses an expired link or an unknown `auth`, and
//! shows pay/decline buttons. Either way it sends the notification (a GET with the parameters in
//! a fixed order, ending in `token`) until the answer says `<status>1</status>`, then sends the
//! browser to `successUrl` or `failUrl`.

use crate::receipt::{ReadItem, read_net_pay};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use time::OffsetDateTime;
use url::Url;

use super::wire;
use crate::sandbox::{DeliveryPolicy, decision_forms, escape_html, page};
use crate::{Amount, RawCallback};

const BRAND: &str = "NetPay";

/// A merchant registered at the simulator.
#[derive(Debug, Clone)]
pub struct SandboxMerchant {
    pub api_key: String,
    pub auth: String,
    /// Registered with NetPay support; a request's `param1=callback` overrides it.
    pub notification_url: Option<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Open,
    Paid,
    Declined,
}

#[derive(Debug, Clone)]
pub struct SandboxOrder {
    pub amount: Amount,
    pub order_number: String,
    pub description: String,
    pub state: OrderState,
    pub notification_url: Option<Url>,
    pub success_url: Option<String>,
    pub fail_url: Option<String>,
    pub notification_attempts: u32,
    pub acknowledged: bool,
    /// The fiscal receipt (`cashbox_data`) as the cashbox read it.
    pub receipt: Option<Vec<ReadItem>>,
}

#[derive(Debug)]
struct Inner {
    merchants: HashMap<String, SandboxMerchant>,
    orders: Mutex<HashMap<(String, String), SandboxOrder>>,
    policy: DeliveryPolicy,
    http: reqwest::Client,
    drop_notifications: AtomicBool,
}

#[derive(Debug, Clone)]
pub struct NetPaySandbox {
    inner: Arc<Inner>,
}

fn error_page(message: &str) -> Response {
    crate::sandbox::error_page(BRAND, message)
}

/// The plugins URL-encode inside the form value, so a value may arrive encoded once more.
fn decode_again(value: &str) -> String {
    if value.contains('%') {
        form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| value.to_owned())
    } else {
        value.to_owned()
    }
}

impl crate::sandbox::Simulator for NetPaySandbox {
    fn router(&self) -> Router {
        NetPaySandbox::router(self)
    }
}

impl NetPaySandbox {
    pub fn new(merchants: Vec<SandboxMerchant>, policy: DeliveryPolicy) -> Self {
        let http = crate::http_client(Duration::from_secs(10))
            .expect("an HTTP client without custom TLS settings always builds");
        NetPaySandbox {
            inner: Arc::new(Inner {
                merchants: merchants.into_iter().map(|m| (m.auth.clone(), m)).collect(),
                orders: Mutex::default(),
                policy,
                http,
                drop_notifications: AtomicBool::new(false),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/billingService/paypage/", get(page_get).post(page_post))
            .route("/billingService/sandbox/decide", post(decide))
            .route("/control", post(control))
            .route("/ledger", get(ledger))
            .with_state(self.clone())
    }

    fn orders(&self) -> MutexGuard<'_, HashMap<(String, String), SandboxOrder>> {
        self.inner.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn order(&self, auth: &str, order_id: &str) -> Option<SandboxOrder> {
        self.orders()
            .get(&(auth.to_owned(), order_id.to_owned()))
            .cloned()
    }

    pub fn order_count(&self) -> usize {
        self.orders().len()
    }

    pub fn set_drop_notifications(&self, drop: bool) {
        self.inner.drop_notifications.store(drop, Ordering::Relaxed);
    }

    fn open_order(
        &self,
        params: &[(String, String)],
    ) -> Result<(String, String, SandboxOrder), String> {
        let field = |name: &str| {
            let mut values = params.iter().filter(|(k, _)| k == name);
            match (values.next(), values.next()) {
                (Some((_, v)), None) => Ok(v.clone()),
                (None, _) => Err(format!("Не передан параметр {name}")),
                (Some(_), Some(_)) => Err(format!("Параметр {name} передан дважды")),
            }
        };
        let auth = field("auth")?;
        let merchant = self
            .inner
            .merchants
            .get(&auth)
            .ok_or("Неизвестная подпись auth")?;
        let expire = decode_again(&field("expire")?);
        let expires_at = wire::parse_expire(&expire).ok_or("Неверный формат expire")?;
        if expires_at < OffsetDateTime::now_utc() {
            return Err("Срок действия ссылки на оплату истёк".into());
        }
        let data = decode_again(&field("data")?);
        let items = wire::decrypt_data(&merchant.api_key, &expire, &data)
            .ok_or("Не удалось расшифровать data")?;
        let item = |name: &str| {
            items
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let order_id = item("orderID").ok_or("В data нет orderID")?;
        let amount = item("amount")
            .and_then(|a| Amount::parse_api(&a).ok())
            .ok_or("В data нет корректной суммы amount")?;
        if item("currency").as_deref() != Some("RUB") {
            return Err("Поддерживается только валюта RUB".into());
        }
        let receipt = item("cashbox_data")
            .map(|json| read_net_pay(&json, amount))
            .transpose()
            .map_err(|refusal| format!("Чек отклонён: {refusal}"))?;
        let notification_url = match (item("param1").as_deref(), item("value1")) {
            (Some("callback"), Some(url)) => Url::parse(&url).ok(),
            _ => merchant.notification_url.clone(),
        };
        let order = SandboxOrder {
            amount,
            order_number: item("orderNumber").unwrap_or_default(),
            description: item("description").unwrap_or_default(),
            state: OrderState::Open,
            notification_url,
            success_url: item("successUrl"),
            fail_url: item("failUrl"),
            notification_attempts: 0,
            acknowledged: false,
            receipt,
        };
        let mut orders = self.orders();
        let key = (auth.clone(), order_id.clone());
        match orders.get(&key) {
            Some(existing) if existing.amount != order.amount => {
                return Err("Заказ с таким orderID уже существует".into());
            }
            Some(existing) if existing.state != OrderState::Open => {
                return Err("Заказ уже оплачен или отклонён".into());
            }
            Some(_) => {}
            None => {
                orders.insert(key, order.clone());
            }
        }
        Ok((auth, order_id, order))
    }

    /// Pays or declines an order as the buttons would; returns where the browser goes.
    pub async fn decide(
        &self,
        auth: &str,
        order_id: &str,
        pay: bool,
    ) -> Result<Option<String>, String> {
        let order = {
            let mut orders = self.orders();
            let order = orders
                .get_mut(&(auth.to_owned(), order_id.to_owned()))
                .ok_or("Заказ не найден")?;
            if order.state != OrderState::Open {
                return Err("Заказ уже оплачен или отклонён".into());
            }
            order.state = if pay {
                OrderState::Paid
            } else {
                OrderState::Declined
            };
            order.clone()
        };
        let (status, error) = if pay {
            ("APPROVED", "000")
        } else {
            ("DECLINED", "05")
        };
        self.notify(auth, order_id, &order, "Sale", status, error, order.amount)
            .await;
        Ok(if pay {
            order.success_url
        } else {
            order.fail_url
        })
    }

    /// A refund done in the merchant's cabinet: NetPay tells the shop with a `Refund`
    /// notification.
    pub async fn refund_in_cabinet(
        &self,
        auth: &str,
        order_id: &str,
        amount: Amount,
    ) -> Result<(), String> {
        let order = self.order(auth, order_id).ok_or("Заказ не найден")?;
        if order.state != OrderState::Paid {
            return Err("Заказ не оплачен".into());
        }
        self.notify(auth, order_id, &order, "Refund", "APPROVED", "000", amount)
            .await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        auth: &str,
        order_id: &str,
        order: &SandboxOrder,
        transaction_type: &str,
        status: &str,
        error: &str,
        amount: Amount,
    ) {
        if self.inner.drop_notifications.load(Ordering::Relaxed) {
            return;
        }
        let (Some(url), Some(merchant)) = (
            order.notification_url.clone(),
            self.inner.merchants.get(auth),
        ) else {
            return;
        };
        let amount = amount.to_string();
        let values = [
            order_id,
            order.order_number.as_str(),
            auth,
            status,
            transaction_type,
            amount.as_str(),
            error,
        ];
        let token = wire::notification_token(&merchant.api_key, &values);
        let mut target = url.clone();
        target
            .query_pairs_mut()
            .append_pair("orderID", order_id)
            .append_pair("orderNumber", &order.order_number)
            .append_pair("auth", auth)
            .append_pair("status", status)
            .append_pair("transactionType", transaction_type)
            .append_pair("amount", &amount)
            .append_pair("error", error)
            .append_pair("token", &token);
        let delivery = tokio::spawn(self.clone().deliver(
            auth.to_owned(),
            order_id.to_owned(),
            target,
        ));
        let _ = tokio::time::timeout(self.inner.policy.browser_wait, delivery).await;
    }

    async fn deliver(self, auth: String, order_id: String, target: Url) {
        let key = (auth, order_id);
        for attempt in 1..=self.inner.policy.max_attempts {
            if let Some(order) = self.orders().get_mut(&key) {
                order.notification_attempts += 1;
            }
            let answer = self.inner.http.get(target.clone()).send().await;
            if let Ok(response) = answer
                && response
                    .text()
                    .await
                    .is_ok_and(|body| wire::answer_accepted(&body))
            {
                if let Some(order) = self.orders().get_mut(&key) {
                    order.acknowledged = true;
                }
                return;
            }
            if attempt < self.inner.policy.max_attempts {
                tokio::time::sleep(self.inner.policy.retry_interval).await;
            }
        }
        tracing::warn!(order_id = %key.1, "sandbox gave up delivering the NetPay notification");
    }
}

fn show_page(sandbox: &NetPaySandbox, params: Vec<(String, String)>) -> Response {
    match sandbox.open_order(&params) {
        Ok((auth, order_id, order)) => {
            let forms = decision_forms(
                "../sandbox/decide",
                &[("auth", &auth), ("order_id", &order_id)],
            );
            let receipt = order
                .receipt
                .as_deref()
                .map(crate::sandbox::receipt_html)
                .unwrap_or_default();
            let body = format!(
                "<h1>Оплата заказа {order}</h1><p id=\"description\">{desc}</p>\
<p>Сумма: <strong id=\"amount\">{sum} ₽</strong></p>{receipt}\
<p>Карта и 3-D Secure проверяются на этой странице (имитация).</p>{forms}",
                order = escape_html(&order_id),
                desc = escape_html(&order.description),
                sum = order.amount,
            );
            Html(page(BRAND, "Оплата", &body)).into_response()
        }
        Err(message) => error_page(&message),
    }
}

async fn page_get(State(sandbox): State<NetPaySandbox>, RawQuery(query): RawQuery) -> Response {
    let raw = RawCallback {
        query: query.unwrap_or_default(),
        body: Vec::new(),
    };
    show_page(&sandbox, raw.params())
}

async fn page_post(State(sandbox): State<NetPaySandbox>, body: axum::body::Bytes) -> Response {
    let raw = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    };
    show_page(&sandbox, raw.params())
}

#[derive(Debug, serde::Deserialize)]
struct Decision {
    auth: String,
    order_id: String,
    action: String,
}

async fn decide(State(sandbox): State<NetPaySandbox>, Form(decision): Form<Decision>) -> Response {
    let pay = match decision.action.as_str() {
        "pay" => true,
        "decline" => false,
        _ => return error_page("Неизвестное действие"),
    };
    match sandbox
        .decide(&decision.auth, &decision.order_id, pay)
        .await
    {
        Ok(Some(url)) => Redirect::to(&url).into_response(),
        Ok(None) => {
            let text = if pay {
                "Оплата прошла успешно"
            } else {
                "Оплата отклонена"
            };
            Html(page(BRAND, text, &format!("<h1>{text}</h1>"))).into_response()
        }
        Err(message) => error_page(&message),
    }
}

impl NetPaySandbox {
    /// Applies a behaviour change (see [`crate::sandbox::Control`]). NetPay has no server API
    /// oplata calls, no saved cards and no refund API: only notifications can be changed.
    pub fn control(&self, control: &crate::sandbox::Control) -> Result<(), String> {
        if control.api.is_some()
            || control.next_charge.is_some()
            || control.hold_refunds.is_some()
            || control.refuse_next_refund.is_some()
        {
            return Err(
                "NetPay has no server API, saved cards or refund API: only notifications can be changed"
                    .into(),
            );
        }
        if let Some(notify) = control.notifications {
            self.set_drop_notifications(!notify);
        }
        Ok(())
    }

    /// Every order the simulator holds: what the acquirer actually did.
    pub fn ledger(&self) -> serde_json::Value {
        let orders = self.orders();
        let mut listed: Vec<_> = orders.iter().collect();
        listed.sort_by(|a, b| a.0.cmp(b.0));
        serde_json::json!({"orders": listed.iter().map(|((auth, order_id), o)| serde_json::json!({
            "auth": auth,
            "order_id": order_id,
            "amount": o.amount.to_string(),
            "state": match o.state {
                OrderState::Open => "open",
                OrderState::Paid => "paid",
                OrderState::Declined => "declined",
            },
            "receipt": o.receipt.as_deref().map(crate::sandbox::receipt_json),
        })).collect::<Vec<_>>()})
    }
}

async fn control(State(sandbox): State<NetPaySandbox>, body: axum::body::Bytes) -> Response {
    crate::sandbox::handle_control(&body, |control| sandbox.control(control))
}

async fn ledger(State(sandbox): State<NetPaySandbox>) -> axum::Json<serde_json::Value> {
    axum::Json(sandbox.ledger())
}
