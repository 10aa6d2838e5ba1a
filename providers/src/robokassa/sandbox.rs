//! A simulator of Robokassa's side of the protocol, for tests and the local demo.
//!
//! It checks a payment page request's `SignatureValue` exactly as Robokassa does, shows a page
//! with "pay" and "decline" buttons, and on "pay" delivers the ResultURL notification (with the
//! six-decimal `OutSum` Robokassa sends) until the shop answers `OK{InvId}`, then redirects the
//! browser to SuccessURL; on "decline" it cancels the invoice and redirects to FailURL.
//! `OpStateExt` answers from the same invoice book. `/Merchant/Recurring` charges the card of a
//! paid `Recurring=true` parent invoice, answers `OK{InvoiceID}` (a repeat of the same child
//! too, without a second debit) and then delivers the child's ResultURL. Nothing here is meant
//! for production: the service refuses to mount it outside demo mode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use url::Url;

use super::wire::{self, OperationState};
use crate::receipt::{ReadItem, read_robokassa, read_robokassa_refund_items};
use crate::sandbox::{ApiMode, DeliveryPolicy, decision_forms, escape_html, page};
use crate::signing::{HashAlgorithm, hex_signature_matches};
use crate::{Amount, RawCallback};

/// A shop registered at the simulator, with the URLs set in its "cabinet".
#[derive(Debug, Clone)]
pub struct SandboxMerchant {
    pub login: String,
    pub password1: String,
    pub password2: String,
    /// Signs Refund API requests.
    pub password3: String,
    pub hash: HashAlgorithm,
    pub result_url: Url,
    pub success_url: Url,
    pub fail_url: Url,
}

/// One invoice as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct SandboxInvoice {
    pub out_sum: Amount,
    pub description: String,
    pub shp: Vec<(String, String)>,
    pub state: OperationState,
    pub is_test: bool,
    /// Opened with `Recurring=true`: its card may be charged again.
    pub recurring: bool,
    /// For a child charge, the parent invoice.
    pub parent: Option<String>,
    /// Refunded through the Refund API so far, in kopecks.
    pub refunded_minor: i64,
    /// ResultURL deliveries attempted and the one acknowledged, if any.
    pub result_attempts: u32,
    pub result_acknowledged: bool,
    /// The fiscal receipt's lines, when the request carried one.
    pub receipt: Option<Vec<ReadItem>>,
    /// Opened with `StepByStep=true`: paying holds the money (state 20) instead of charging.
    pub hold: bool,
}

#[derive(Debug, Default)]
struct Book {
    invoices: HashMap<(String, String), SandboxInvoice>,
    /// Refund API requests: request id → (amount, label).
    refunds: HashMap<String, (Amount, &'static str)>,
    /// The receipt lines of refunds that carried `InvoiceItems`: request id → lines.
    refund_receipts: HashMap<String, Vec<ReadItem>>,
}

/// The operation key OpStateExt reports for a paid invoice (the Refund API asks for it).
pub fn op_key(login: &str, inv_id: &str) -> String {
    format!("opkey-{login}-{inv_id}")
}

#[derive(Debug)]
struct Inner {
    merchants: HashMap<String, SandboxMerchant>,
    book: Mutex<Book>,
    policy: DeliveryPolicy,
    http: reqwest::Client,
    /// Simulates a lost notification: the invoice is paid but ResultURL is never called.
    drop_result_notifications: AtomicBool,
    page_views: AtomicU32,
    /// Debits of customers' cards: paid pages and recurring charges.
    charges: AtomicU32,
    recurring_mode: Mutex<ApiMode>,
    decline_next_recurring: AtomicBool,
    /// New Refund API requests stay `processing` until `finish_refunds`.
    hold_refunds: AtomicBool,
}

/// The masked card every simulated payment is made with.
pub const SANDBOX_CARD: &str = "553691******0002";

/// The simulator; clone it freely, all clones share one invoice book.
#[derive(Debug, Clone)]
pub struct RobokassaSandbox {
    inner: Arc<Inner>,
}

/// How long after answering a recurring charge the simulated bank takes to settle it.
const RECURRING_SETTLEMENT_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

impl crate::sandbox::Simulator for RobokassaSandbox {
    fn router(&self) -> Router {
        RobokassaSandbox::router(self)
    }
}

impl RobokassaSandbox {
    pub fn new(merchants: Vec<SandboxMerchant>, policy: DeliveryPolicy) -> Self {
        let http = crate::http_client(Duration::from_secs(10))
            .expect("an HTTP client without custom TLS settings always builds");
        RobokassaSandbox {
            inner: Arc::new(Inner {
                merchants: merchants
                    .into_iter()
                    .map(|m| (m.login.clone(), m))
                    .collect(),
                book: Mutex::new(Book::default()),
                policy,
                http,
                drop_result_notifications: AtomicBool::new(false),
                page_views: AtomicU32::new(0),
                charges: AtomicU32::new(0),
                recurring_mode: Mutex::default(),
                decline_next_recurring: AtomicBool::new(false),
                hold_refunds: AtomicBool::new(false),
            }),
        }
    }

    /// Robokassa's endpoints, relative to wherever the router is nested.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/Merchant/Index.aspx",
                get(payment_page_get).post(payment_page_post),
            )
            .route("/Merchant/Decide", post(decide))
            .route("/Merchant/Recurring", post(recurring))
            .route("/RefundService/Refund/Create", post(refund_create))
            .route("/RefundService/Refund/GetState", get(refund_state))
            .route(
                "/Merchant/WebService/Service.asmx/OpStateExt",
                get(op_state_ext),
            )
            .route("/control", post(control))
            .route("/ledger", get(ledger))
            .with_state(self.clone())
    }

    pub fn invoice(&self, login: &str, inv_id: &str) -> Option<SandboxInvoice> {
        self.book()
            .invoices
            .get(&(login.to_owned(), inv_id.to_owned()))
            .cloned()
    }

    pub fn invoice_count(&self) -> usize {
        self.book().invoices.len()
    }

    pub fn page_views(&self) -> u32 {
        self.inner.page_views.load(Ordering::Relaxed)
    }

    pub fn charges_made(&self) -> u32 {
        self.inner.charges.load(Ordering::SeqCst)
    }

    pub fn set_recurring_mode(&self, mode: ApiMode) {
        *self
            .inner
            .recurring_mode
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// The issuer refuses the next recurring charge.
    pub fn decline_next_recurring(&self) {
        self.inner
            .decline_next_recurring
            .store(true, Ordering::SeqCst);
    }

    pub fn set_drop_result_notifications(&self, drop: bool) {
        self.inner
            .drop_result_notifications
            .store(drop, Ordering::Relaxed);
    }

    /// Pays or declines an invoice as the customer's button press would, without a browser.
    /// Returns where the browser would be redirected.
    pub async fn decide(&self, login: &str, inv_id: &str, pay: bool) -> Result<Url, String> {
        let merchant = self
            .inner
            .merchants
            .get(login)
            .ok_or_else(|| "unknown shop".to_owned())?
            .clone();
        let invoice = {
            let mut book = self.book();
            let invoice = book
                .invoices
                .get_mut(&(login.to_owned(), inv_id.to_owned()))
                .ok_or_else(|| "unknown invoice".to_owned())?;
            if invoice.state != OperationState::Initiated {
                return Err("the invoice is no longer open".to_owned());
            }
            invoice.state = if pay && invoice.hold {
                OperationState::Held
            } else if pay {
                OperationState::Paid
            } else {
                OperationState::Canceled
            };
            invoice.clone()
        };
        if pay {
            self.inner.charges.fetch_add(1, Ordering::SeqCst);
        }
        let out_sum = invoice.out_sum.format_with_places(6);
        if !pay {
            let mut url = merchant.fail_url.clone();
            url.query_pairs_mut()
                .append_pair("OutSum", &out_sum)
                .append_pair("InvId", inv_id)
                .append_pair("Culture", "ru");
            return Ok(url);
        }
        if !self.inner.drop_result_notifications.load(Ordering::Relaxed) {
            let delivery = tokio::spawn(self.clone().deliver_result(
                merchant.clone(),
                inv_id.to_owned(),
                out_sum.clone(),
                invoice.shp.clone(),
            ));
            // Wait for the shop's acknowledgement before redirecting, as Robokassa does, but
            // never keep the customer waiting forever.
            let _ = tokio::time::timeout(self.inner.policy.browser_wait, delivery).await;
        }
        let signature = wire::success_signature(
            merchant.hash,
            &out_sum,
            inv_id,
            &merchant.password1,
            &invoice.shp,
        );
        let mut url = merchant.success_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("OutSum", &out_sum)
                .append_pair("InvId", inv_id)
                .append_pair("SignatureValue", &signature)
                .append_pair("Culture", "ru");
            for (name, value) in &invoice.shp {
                query.append_pair(name, value);
            }
        }
        Ok(url)
    }

    async fn deliver_result(
        self,
        merchant: SandboxMerchant,
        inv_id: String,
        out_sum: String,
        shp: Vec<(String, String)>,
    ) {
        let signature =
            wire::result_signature(merchant.hash, &out_sum, &inv_id, &merchant.password2, &shp);
        let mut form: Vec<(String, String)> = vec![
            ("OutSum".into(), out_sum.clone()),
            ("InvId".into(), inv_id.clone()),
            ("Fee".into(), "0.000000".into()),
            ("EMail".into(), String::new()),
            ("SignatureValue".into(), signature),
            ("PaymentMethod".into(), "BankCard".into()),
            ("IncCurrLabel".into(), "BankCardPSR".into()),
        ];
        form.extend(shp);
        let expected = format!("OK{inv_id}");
        for attempt in 1..=self.inner.policy.max_attempts {
            self.record_attempt(&merchant.login, &inv_id);
            let answer = self
                .inner
                .http
                .post(merchant.result_url.clone())
                .form(&form)
                .send()
                .await;
            if let Ok(response) = answer
                && response.status().is_success()
                && response
                    .text()
                    .await
                    .is_ok_and(|body| body.trim() == expected)
            {
                self.record_acknowledged(&merchant.login, &inv_id);
                return;
            }
            if attempt < self.inner.policy.max_attempts {
                tokio::time::sleep(self.inner.policy.retry_interval).await;
            }
        }
        tracing::warn!(inv_id = %inv_id, "sandbox gave up delivering ResultURL");
    }

    fn record_attempt(&self, login: &str, inv_id: &str) {
        if let Some(invoice) = self
            .book()
            .invoices
            .get_mut(&(login.to_owned(), inv_id.to_owned()))
        {
            invoice.result_attempts += 1;
        }
    }

    fn record_acknowledged(&self, login: &str, inv_id: &str) {
        if let Some(invoice) = self
            .book()
            .invoices
            .get_mut(&(login.to_owned(), inv_id.to_owned()))
        {
            invoice.result_acknowledged = true;
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book half-written: every update is a
        // single assignment. Keep serving.
        self.inner
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks a payment page request and opens (or re-opens) its invoice.
    fn open_invoice(&self, params: &[(String, String)]) -> Result<OpenedInvoice, String> {
        let get = |name: &str| -> Result<Option<&str>, String> {
            let mut values = params
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let first = values.next();
            if values.next().is_some() {
                return Err(format!("Параметр {name} указан дважды"));
            }
            Ok(first)
        };
        let login = get("MerchantLogin")?.ok_or("Не указан параметр MerchantLogin")?;
        let merchant = self
            .inner
            .merchants
            .get(login)
            .ok_or("Магазин с таким MerchantLogin не найден")?;
        let out_sum_text = get("OutSum")?.ok_or("Не указан параметр OutSum")?;
        let inv_id = get("InvId")?.ok_or("Не указан параметр InvId")?;
        let signature = get("SignatureValue")?.ok_or("Не указан параметр SignatureValue")?;
        if inv_id.is_empty() || !inv_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("InvId должен быть целым положительным числом".into());
        }
        let shp = sorted_shp(params);
        let receipt_text = get("Receipt")?;
        let hold = match get("StepByStep")? {
            None => false,
            Some(value) if value.eq_ignore_ascii_case("true") => true,
            Some(_) => return Err("StepByStep может быть только true".into()),
        };
        // Every signed optional parameter the request carries is part of the formula: a
        // parameter added (or changed) after signing breaks the signature.
        let extras = wire::SignedExtras {
            out_sum_currency: get("OutSumCurrency")?,
            user_ip: get("UserIp")?,
            receipt: receipt_text,
            step_by_step: hold,
        };
        let expected = wire::payment_signature_with(
            merchant.hash,
            login,
            out_sum_text,
            inv_id,
            &extras,
            &merchant.password1,
            &shp,
        );
        if !hex_signature_matches(signature, &expected) {
            return Err("Неверная подпись запроса (SignatureValue)".into());
        }
        if extras.out_sum_currency.is_some() {
            return Err("Магазин принимает оплату только в рублях (OutSumCurrency)".into());
        }
        let out_sum = Amount::parse_api(out_sum_text).map_err(|_| "Неверная сумма OutSum")?;
        let receipt = receipt_text
            .map(|text| read_robokassa(&wire::decode_receipt(text), out_sum))
            .transpose()
            .map_err(|refusal| format!("Чек отклонён: {refusal}"))?;
        let description = get("Description")?.unwrap_or_default().to_owned();
        let is_test = get("IsTest")? == Some("1");
        let recurring = get("Recurring")? == Some("true");
        let mut book = self.book();
        let key = (login.to_owned(), inv_id.to_owned());
        match book.invoices.get(&key) {
            Some(existing) if existing.out_sum != out_sum || existing.shp != shp => {
                return Err("Счёт с таким InvId уже существует".into());
            }
            Some(existing) if existing.state != OperationState::Initiated => {
                return Err("Счёт уже оплачен или отменён".into());
            }
            Some(_) => {}
            None => {
                book.invoices.insert(
                    key,
                    SandboxInvoice {
                        out_sum,
                        description: description.clone(),
                        shp,
                        state: OperationState::Initiated,
                        is_test,
                        recurring,
                        parent: None,
                        refunded_minor: 0,
                        result_attempts: 0,
                        result_acknowledged: false,
                        receipt: receipt.clone(),
                        hold,
                    },
                );
            }
        }
        Ok(OpenedInvoice {
            login: login.to_owned(),
            inv_id: inv_id.to_owned(),
            out_sum,
            description,
            receipt,
        })
    }
}

/// The `Shp_` parameters of a request, sorted as the signature formula takes them.
fn sorted_shp(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut shp: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.starts_with("Shp_"))
        .cloned()
        .collect();
    shp.sort();
    shp
}

struct OpenedInvoice {
    login: String,
    inv_id: String,
    out_sum: Amount,
    description: String,
    receipt: Option<Vec<ReadItem>>,
}

const BRAND: &str = "Robokassa";

fn error_page(message: &str) -> Response {
    crate::sandbox::error_page(BRAND, message)
}

fn payment_page(sandbox: &RobokassaSandbox, params: Vec<(String, String)>) -> Response {
    sandbox.inner.page_views.fetch_add(1, Ordering::Relaxed);
    match sandbox.open_invoice(&params) {
        Ok(invoice) => {
            let forms = decision_forms(
                "Decide",
                &[("login", &invoice.login), ("inv_id", &invoice.inv_id)],
            );
            let receipt = invoice
                .receipt
                .as_deref()
                .map(crate::sandbox::receipt_html)
                .unwrap_or_default();
            let body = format!(
                "<h1>Оплата счёта № {inv}</h1><p id=\"description\">{desc}</p>\
<p>Сумма: <strong id=\"amount\">{sum} ₽</strong></p>{receipt}\
<p>Карта и 3-D Secure проверяются на этой странице (имитация).</p>{forms}",
                inv = escape_html(&invoice.inv_id),
                desc = escape_html(&invoice.description),
                sum = invoice.out_sum,
            );
            Html(page(BRAND, "Оплата", &body)).into_response()
        }
        Err(message) => error_page(&message),
    }
}

async fn payment_page_get(
    State(sandbox): State<RobokassaSandbox>,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = RawCallback {
        query: query.unwrap_or_default(),
        body: Vec::new(),
    };
    payment_page(&sandbox, raw.params())
}

async fn payment_page_post(
    State(sandbox): State<RobokassaSandbox>,
    body: axum::body::Bytes,
) -> Response {
    let raw = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    };
    payment_page(&sandbox, raw.params())
}

#[derive(Debug, serde::Deserialize)]
struct Decision {
    login: String,
    inv_id: String,
    action: String,
}

async fn decide(
    State(sandbox): State<RobokassaSandbox>,
    Form(decision): Form<Decision>,
) -> Response {
    let pay = match decision.action.as_str() {
        "pay" => true,
        "decline" => false,
        _ => return error_page("Неизвестное действие"),
    };
    match sandbox.decide(&decision.login, &decision.inv_id, pay).await {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(message) => error_page(&message),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OpStateQuery {
    merchant_login: String,
    #[serde(rename = "InvoiceID")]
    invoice_id: String,
    signature: String,
}

fn op_state_xml(result_code: i32, body: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<OperationStateResponse xmlns=\"http://merchant.roboxchange.com/WebService/\">\
<Result><Code>{result_code}</Code></Result>{body}</OperationStateResponse>"
    );
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

async fn op_state_ext(
    State(sandbox): State<RobokassaSandbox>,
    axum::extract::Query(query): axum::extract::Query<OpStateQuery>,
) -> Response {
    let Some(merchant) = sandbox.inner.merchants.get(&query.merchant_login) else {
        return op_state_xml(2, "");
    };
    let expected = wire::op_state_signature(
        merchant.hash,
        &merchant.login,
        &query.invoice_id,
        &merchant.password2,
    );
    if !hex_signature_matches(&query.signature, &expected) {
        return op_state_xml(1, "");
    }
    let Some(invoice) = sandbox.invoice(&merchant.login, &query.invoice_id) else {
        return op_state_xml(3, "");
    };
    let sum = invoice.out_sum.format_with_places(6);
    let fields: String = invoice
        .shp
        .iter()
        .map(|(k, v)| {
            format!(
                "<Field><Name>{}</Name><Value>{}</Value></Field>",
                escape_html(k),
                escape_html(v)
            )
        })
        .collect();
    let body = format!(
        "<State><Code>{state}</Code></State>\
<Info><IncCurrLabel>BankCardPSR</IncCurrLabel><IncSum>{sum}</IncSum><IncAccount>{SANDBOX_CARD}</IncAccount>\
<PaymentMethod><Code>BankCard</Code></PaymentMethod><OutCurrLabel>BankCardPSR</OutCurrLabel>\
<OutSum>{sum}</OutSum>{op_key}</Info><UserField>{fields}</UserField>",
        op_key = if invoice.state == OperationState::Paid {
            format!(
                "<OpKey>{}</OpKey>",
                escape_html(&op_key(&merchant.login, &query.invoice_id))
            )
        } else {
            String::new()
        },
        state = invoice.state.code()
    );
    op_state_xml(0, &body)
}

impl RobokassaSandbox {
    /// One recurring charge; the answer body, and whether a debit was made.
    fn charge_recurring(&self, params: &[(String, String)]) -> (String, bool) {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let refuse = |why: &str| (format!("ERROR: {why}"), false);
        let Some(merchant) = self.inner.merchants.get(get("MerchantLogin")) else {
            return refuse("unknown shop");
        };
        let (inv_id, parent_id, out_sum_text) =
            (get("InvoiceID"), get("PreviousInvoiceID"), get("OutSum"));
        let receipt_text = params
            .iter()
            .find(|(k, _)| k == "Receipt")
            .map(|(_, v)| v.as_str());
        let shp = sorted_shp(params);
        // `PreviousInvoiceID` is not signed; `Receipt` is.
        let expected = wire::payment_signature_with(
            merchant.hash,
            &merchant.login,
            out_sum_text,
            inv_id,
            &wire::SignedExtras {
                receipt: receipt_text,
                ..wire::SignedExtras::default()
            },
            &merchant.password1,
            &shp,
        );
        if !hex_signature_matches(get("SignatureValue"), &expected) {
            return refuse("bad signature");
        }
        if inv_id.is_empty() || !inv_id.bytes().all(|b| b.is_ascii_digit()) {
            return refuse("InvoiceID must be a positive integer");
        }
        let Ok(out_sum) = Amount::parse_api(out_sum_text) else {
            return refuse("bad OutSum");
        };
        let receipt = match receipt_text
            .map(|text| read_robokassa(&wire::decode_receipt(text), out_sum))
            .transpose()
        {
            Ok(receipt) => receipt,
            Err(refusal) => return refuse(&format!("receipt refused: {refusal}")),
        };
        let mut book = self.book();
        let parent = book
            .invoices
            .get(&(merchant.login.clone(), parent_id.to_owned()))
            .cloned();
        let Some(parent) =
            parent.filter(|p| p.recurring && p.state == OperationState::Paid && p.parent.is_none())
        else {
            return refuse("PreviousInvoiceID is not a paid recurring invoice");
        };
        let key = (merchant.login.clone(), inv_id.to_owned());
        if let Some(existing) = book.invoices.get(&key) {
            // The same child again (a retry): accepted again, never debited twice.
            return if existing.parent.as_deref() == Some(parent_id) && existing.out_sum == out_sum {
                (format!("OK{inv_id}"), false)
            } else {
                refuse("duplicate InvoiceID")
            };
        }
        let declined = self
            .inner
            .decline_next_recurring
            .swap(false, Ordering::SeqCst);
        book.invoices.insert(
            key,
            SandboxInvoice {
                out_sum,
                description: get("Description").to_owned(),
                shp,
                state: if declined {
                    OperationState::Canceled
                } else {
                    OperationState::Paid
                },
                is_test: parent.is_test,
                recurring: false,
                parent: Some(parent_id.to_owned()),
                refunded_minor: 0,
                result_attempts: 0,
                result_acknowledged: false,
                receipt,
                hold: false,
            },
        );
        if declined {
            return refuse("the issuer declined the charge");
        }
        self.inner.charges.fetch_add(1, Ordering::SeqCst);
        (format!("OK{inv_id}"), true)
    }
}

async fn recurring(State(sandbox): State<RobokassaSandbox>, body: axum::body::Bytes) -> Response {
    let mode = *sandbox
        .inner
        .recurring_mode
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if mode == ApiMode::ServerError {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        )
            .into_response();
    }
    let params = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    }
    .params();
    let (answer, charged) = sandbox.charge_recurring(&params);
    if charged
        && !sandbox
            .inner
            .drop_result_notifications
            .load(Ordering::Relaxed)
    {
        let login = params
            .iter()
            .find(|(k, _)| k == "MerchantLogin")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let inv_id = params
            .iter()
            .find(|(k, _)| k == "InvoiceID")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if let (Some(merchant), Some(invoice)) = (
            sandbox.inner.merchants.get(&login).cloned(),
            sandbox.invoice(&login, &inv_id),
        ) {
            // Robokassa settles a child with a ResultURL call of its own, after answering (the
            // bank debits the card meanwhile): never before the answer has gone out.
            let settling = sandbox.clone();
            let out_sum = invoice.out_sum.format_with_places(6);
            tokio::spawn(async move {
                tokio::time::sleep(RECURRING_SETTLEMENT_DELAY).await;
                settling
                    .deliver_result(merchant, inv_id, out_sum, invoice.shp)
                    .await;
            });
        }
    }
    crate::sandbox::shape_answer(mode, charged, answer.into_response()).await
}

impl RobokassaSandbox {
    /// New refunds stay `processing` (as Robokassa reports while the bank works on them).
    pub fn hold_refunds(&self, hold: bool) {
        self.inner.hold_refunds.store(hold, Ordering::SeqCst);
    }

    /// Every `processing` refund becomes `finished`.
    pub fn finish_refunds(&self) {
        for (_, label) in self.book().refunds.values_mut() {
            *label = "finished";
        }
    }

    /// The refunds made through the Refund API of one invoice, in kopecks.
    pub fn refunded(&self, login: &str, inv_id: &str) -> i64 {
        self.invoice(login, inv_id)
            .map(|i| i.refunded_minor)
            .unwrap_or(0)
    }

    fn create_refund(&self, token: &str) -> serde_json::Value {
        let refused = |message: &str| serde_json::json!({"success": false, "message": message, "requestId": null});
        // The token names no shop: find the invoice by its OpKey, then check the shop's key.
        let mut book = self.book();
        let found = self.inner.merchants.values().find_map(|m| {
            let payload = wire::verify_refund_jwt(token, &m.password3)?;
            Some((m.clone(), payload))
        });
        let Some((merchant, payload)) = found else {
            return refused("InvalidSignature");
        };
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&payload) else {
            return refused("InvalidPayload");
        };
        let op = body
            .get("OpKey")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let Some(invoice) = book
            .invoices
            .iter_mut()
            .find(|((login, inv), i)| {
                *login == merchant.login
                    && i.state == OperationState::Paid
                    && op_key(login, inv) == op
            })
            .map(|(_, i)| i)
        else {
            return refused("OperationNotFound");
        };
        let left = invoice.out_sum.minor() - invoice.refunded_minor;
        // RefundSum is a JSON number; read its digits from the payload text, so no float is
        // ever involved.
        let asked = match body.get("RefundSum") {
            None => Amount::from_minor(left).ok(),
            Some(_) => payload
                .split_once("\"RefundSum\":")
                .map(|(_, rest)| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.')
                        .collect::<String>()
                })
                .and_then(|text| text.parse::<rust_decimal::Decimal>().ok())
                .and_then(|d| Amount::from_decimal(d.normalize()).ok()),
        };
        let Some(amount) = asked.filter(|a| a.minor() <= left) else {
            return refused("NotEnoughOperationFunds");
        };
        // Read as raw JSON text: the lines' amounts never pass through a float.
        #[derive(serde::Deserialize)]
        struct Lines<'a> {
            #[serde(rename = "InvoiceItems", borrow)]
            items: Option<&'a serde_json::value::RawValue>,
        }
        let lines: Option<Lines<'_>> = serde_json::from_str(&payload).ok();
        let receipt = match lines.and_then(|l| l.items) {
            None => None,
            Some(items) => match read_robokassa_refund_items(items.get(), amount) {
                Ok(lines) => Some(lines),
                Err(_) => return refused("InvalidInvoiceItems"),
            },
        };
        invoice.refunded_minor += amount.minor();
        let request_id = format!("rq-{}-{}", op, book.refunds.len() + 1);
        if let Some(lines) = receipt {
            book.refund_receipts.insert(request_id.clone(), lines);
        }
        let label = if self.inner.hold_refunds.load(Ordering::SeqCst) {
            "processing"
        } else {
            "finished"
        };
        book.refunds.insert(request_id.clone(), (amount, label));
        serde_json::json!({"success": true, "message": null, "requestId": request_id})
    }
}

async fn refund_create(State(sandbox): State<RobokassaSandbox>, body: String) -> Response {
    let mode = sandbox.api_mode();
    if mode == ApiMode::ServerError {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        )
            .into_response();
    }
    let answer = sandbox.create_refund(&body);
    let refunded = answer["success"] == serde_json::Value::Bool(true);
    crate::sandbox::shape_answer(mode, refunded, axum::Json(answer).into_response()).await
}

async fn control(State(sandbox): State<RobokassaSandbox>, body: axum::body::Bytes) -> Response {
    crate::sandbox::handle_control(&body, |control| sandbox.control(control))
}

async fn ledger(State(sandbox): State<RobokassaSandbox>) -> axum::Json<serde_json::Value> {
    axum::Json(sandbox.ledger())
}

impl RobokassaSandbox {
    fn api_mode(&self) -> ApiMode {
        *self
            .inner
            .recurring_mode
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a behaviour change (see [`crate::sandbox::Control`]).
    pub fn control(&self, control: &crate::sandbox::Control) -> Result<(), String> {
        use crate::sandbox::NextCharge;
        match control.next_charge {
            Some(NextCharge::Challenge) => {
                return Err(
                    "Robokassa runs 3-D Secure on its own page; a recurring charge is never challenged"
                        .into(),
                );
            }
            Some(NextCharge::Decline | NextCharge::InsufficientFunds) => {
                self.decline_next_recurring()
            }
            Some(NextCharge::Approve) => self
                .inner
                .decline_next_recurring
                .store(false, Ordering::SeqCst),
            None => {}
        }
        if control.refuse_next_refund.is_some() {
            return Err("refuse_next_refund is not simulated for Robokassa".into());
        }
        if let Some(api) = control.api {
            self.set_recurring_mode(api.into());
        }
        if let Some(notify) = control.notifications {
            self.set_drop_result_notifications(!notify);
        }
        match control.hold_refunds {
            Some(true) => self.hold_refunds(true),
            Some(false) => {
                self.hold_refunds(false);
                self.finish_refunds();
            }
            None => {}
        }
        Ok(())
    }

    /// Every invoice and refund the simulator made: what the acquirer actually did.
    pub fn ledger(&self) -> serde_json::Value {
        let book = self.book();
        let mut invoices: Vec<_> = book.invoices.iter().collect();
        invoices.sort_by(|a, b| a.0.cmp(b.0));
        let mut refunds: Vec<_> = book.refunds.iter().collect();
        refunds.sort_by(|a, b| a.0.cmp(b.0));
        serde_json::json!({
            "invoices": invoices.iter().map(|((login, inv_id), i)| serde_json::json!({
                "shop": login,
                "inv_id": inv_id,
                "amount": i.out_sum.to_string(),
                "state": i.state.code(),
                "paid": i.state == OperationState::Paid,
                "parent": i.parent,
                "refunded": Amount::from_minor(i.refunded_minor).map(|a| a.to_string()).unwrap_or_default(),
                "receipt": i.receipt.as_deref().map(crate::sandbox::receipt_json),
            })).collect::<Vec<_>>(),
            "refunds": refunds.iter().map(|(id, (amount, label))| serde_json::json!({
                "request_id": id, "amount": amount.to_string(), "label": label,
                "receipt": book.refund_receipts.get(*id).map(|lines| crate::sandbox::receipt_json(lines)),
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, serde::Deserialize)]
struct RefundStateQuery {
    id: String,
}

async fn refund_state(
    State(sandbox): State<RobokassaSandbox>,
    axum::extract::Query(query): axum::extract::Query<RefundStateQuery>,
) -> axum::Json<serde_json::Value> {
    let book = sandbox.book();
    axum::Json(match book.refunds.get(&query.id) {
        Some((amount, label)) => {
            serde_json::json!({"requestId": query.id, "amount": amount.to_string(), "label": label})
        }
        None => serde_json::json!({"message": "Id is invalid or request id does not exist"}),
    })
}
