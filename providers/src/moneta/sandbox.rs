//! A simulator of the Moneta-style acquirer (`PROTOCOLS.md`, sections 3 and 5).
//!
//! - `assistant.htm`: checks `MNT_SIGNATURE`, shows pay / decline / "card without 3-D Secure".
//!   "Pay" leads to a 3-D Secure page asking for the one-time code ([`DEMO_OTP`] passes,
//!   anything else fails the payment). A paid operation is credited (`TAKENIN_NOTSENT`), the
//!   Pay URL is called until the shop answers a correctly signed `MNT_RESPONSE` with code 200
//!   (then `SUCCEED`), and the browser goes to `MNT_SUCCESS_URL`.
//! - `services`: the MerchantAPI JSON envelope with UsernameToken, for
//!   `GetOperationDetailsById`, `FindOperationsListByCTID`, `Payment` (saved card, idempotent on
//!   `clientTransaction`), `ConfirmTransaction` (3-D Secure completion) and `Refund`.
//! - `acs`: the issuer's 3-D Secure page for saved-card charges; posts `PaRes` and `MD` to the
//!   shop's `TermUrl`.
//! - Switches for tests: slow answers, 5xx, garbage, or dropping the connection after charging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Form, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use url::Url;

use super::wire::{self, OperationStatus};
use crate::receipt::{ReadItem, read_moneta};
use crate::sandbox::{DeliveryPolicy, escape_html, page};
use crate::{Amount, RawCallback};

const BRAND: &str = "Moneta";
/// The one-time code the simulated 3-D Secure pages accept.
pub const DEMO_OTP: &str = "12345";

/// A shop account at the simulator.
#[derive(Debug, Clone)]
pub struct SandboxAccount {
    pub account_id: String,
    pub integrity_code: String,
    pub api_username: String,
    pub api_password: String,
    pub payment_password: String,
    pub pay_url: Url,
    pub check_url: Option<Url>,
}

pub use crate::sandbox::ApiMode;

/// What the issuer does with the next saved-card charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChargeBehaviour {
    #[default]
    Approve,
    InsufficientFunds,
    /// Demands a 3-D Secure challenge.
    Challenge,
}

#[derive(Debug, Clone)]
pub struct SandboxOperation {
    pub id: u64,
    pub account_id: String,
    pub transaction_id: String,
    pub client_transaction: Option<String>,
    pub amount: Amount,
    pub status: OperationStatus,
    pub three_ds: bool,
    pub subscriber_id: String,
    pub wants_token: bool,
    pub token: Option<String>,
    pub masked_card: String,
    pub card_expiry: String,
    pub is_refund: bool,
    pub parent: Option<u64>,
    pub refunded: i64,
    pub custom1: String,
    /// The free fields oplata fills with a budget payer's passport and name.
    pub custom2: String,
    pub custom3: String,
    pub success_url: Option<String>,
    pub fail_url: Option<String>,
    pub notification_attempts: u32,
    pub decline_code: Option<String>,
    /// The fiscal receipt the shop returned in its Pay URL answer, as the cashbox read it.
    pub receipt: Option<Vec<ReadItem>>,
    /// Why the cashbox refused the last receipt the shop returned (the answer then does not
    /// count, and the notification is sent again).
    pub receipt_refusal: Option<String>,
}

#[derive(Debug, Default)]
struct Book {
    operations: HashMap<u64, SandboxOperation>,
    /// Tokens issued, with the card they stand for.
    tokens: HashMap<String, (String, String, String)>,
}

#[derive(Debug)]
struct Inner {
    accounts: HashMap<String, SandboxAccount>,
    book: Mutex<Book>,
    next_id: AtomicU64,
    policy: DeliveryPolicy,
    http: reqwest::Client,
    api_mode: Mutex<ApiMode>,
    next_charge: Mutex<ChargeBehaviour>,
    charges_made: AtomicU64,
    drop_notifications: std::sync::atomic::AtomicBool,
    refuse_next_refund: std::sync::atomic::AtomicBool,
    /// Where the simulator's ACS page is reachable by browsers.
    acs_url: String,
}

#[derive(Debug, Clone)]
pub struct MonetaSandbox {
    inner: Arc<Inner>,
}

fn error_page(message: &str) -> Response {
    crate::sandbox::error_page(BRAND, message)
}

fn operation_json(op: &SandboxOperation) -> Value {
    let mut attributes = vec![
        json!({"key": "statusid", "value": op.status.as_str()}),
        json!({"key": "clienttransaction", "value": op.client_transaction.clone().unwrap_or_else(|| op.transaction_id.clone())}),
        json!({"key": "MNT_TRANSACTION_ID", "value": op.transaction_id}),
        json!({"key": "sourceamount", "value": op.amount.to_string()}),
        json!({"key": "sourcecurrencycode", "value": "RUB"}),
        json!({"key": "isrefund", "value": op.is_refund.to_string()}),
    ];
    if !op.is_refund {
        attributes.push(json!({"key": "threedsecure", "value": op.three_ds.to_string()}));
        attributes.push(json!({"key": "cardnumber", "value": op.masked_card}));
        attributes.push(json!({"key": "cardexpiration", "value": op.card_expiry}));
    }
    if let Some(token) = &op.token {
        attributes.push(json!({"key": "paymenttoken", "value": token}));
    }
    if let Some(parent) = op.parent {
        attributes.push(json!({"key": "parentid", "value": parent.to_string()}));
    }
    if let Some(code) = &op.decline_code {
        attributes.push(json!({"key": "declinecode", "value": code}));
    }
    json!({"id": op.id.to_string(), "attribute": attributes})
}

impl crate::sandbox::Simulator for MonetaSandbox {
    fn router(&self) -> Router {
        MonetaSandbox::router(self)
    }
}

impl MonetaSandbox {
    /// `public_base` is where the router is reachable by browsers (for the ACS address).
    pub fn new(accounts: Vec<SandboxAccount>, policy: DeliveryPolicy, public_base: &Url) -> Self {
        let http = crate::http_client(Duration::from_secs(10))
            .expect("an HTTP client without custom TLS settings always builds");
        MonetaSandbox {
            inner: Arc::new(Inner {
                accounts: accounts
                    .into_iter()
                    .map(|a| (a.account_id.clone(), a))
                    .collect(),
                book: Mutex::default(),
                next_id: AtomicU64::new(9_000_001),
                policy,
                http,
                api_mode: Mutex::default(),
                next_charge: Mutex::default(),
                charges_made: AtomicU64::new(0),
                drop_notifications: std::sync::atomic::AtomicBool::new(false),
                refuse_next_refund: std::sync::atomic::AtomicBool::new(false),
                acs_url: {
                    let mut url = public_base.clone();
                    let path = url.path().trim_end_matches('/').to_owned();
                    url.set_path(&format!("{path}/acs"));
                    url.to_string()
                },
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/assistant.htm", get(assistant_get).post(assistant_post))
            .route("/assistant/decide", post(decide))
            .route("/assistant/3ds", post(form_three_ds))
            .route("/services", post(services))
            .route("/acs", post(acs_page))
            .route("/acs/submit", post(acs_submit))
            .route("/control", post(control))
            .route("/ledger", get(ledger))
            .with_state(self.clone())
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.inner.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_api_mode(&self, mode: ApiMode) {
        *self
            .inner
            .api_mode
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = mode;
    }

    pub fn set_next_charge(&self, behaviour: ChargeBehaviour) {
        *self
            .inner
            .next_charge
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    pub fn set_drop_notifications(&self, drop: bool) {
        self.inner.drop_notifications.store(drop, Ordering::Relaxed);
    }

    /// The acquirer refuses the next refund request.
    pub fn refuse_next_refund(&self) {
        self.inner.refuse_next_refund.store(true, Ordering::SeqCst);
    }

    /// The refunds made of a paid operation.
    pub fn refunds_of(&self, operation_id: u64) -> Vec<SandboxOperation> {
        let mut refunds: Vec<SandboxOperation> = self
            .book()
            .operations
            .values()
            .filter(|o| o.is_refund && o.parent == Some(operation_id))
            .cloned()
            .collect();
        refunds.sort_by_key(|o| o.id);
        refunds
    }

    /// How many debits of a customer's card the simulator has made (charges, not attempts).
    pub fn charges_made(&self) -> u64 {
        self.inner.charges_made.load(Ordering::SeqCst)
    }

    pub fn operation_by_transaction(&self, transaction_id: &str) -> Option<SandboxOperation> {
        self.book()
            .operations
            .values()
            .filter(|o| o.transaction_id == transaction_id && !o.is_refund)
            .max_by_key(|o| o.id)
            .cloned()
    }

    pub fn operation(&self, id: u64) -> Option<SandboxOperation> {
        self.book().operations.get(&id).cloned()
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn open_form(&self, params: &[(String, String)]) -> Result<SandboxOperation, String> {
        let field = |name: &str| -> Result<String, String> {
            let mut values = params
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone());
            let first = values.next().unwrap_or_default();
            if values.next().is_some() {
                return Err(format!("Параметр {name} передан дважды"));
            }
            Ok(first)
        };
        let account_id = field("MNT_ID")?;
        let account = self
            .inner
            .accounts
            .get(&account_id)
            .ok_or("Неизвестный номер счёта MNT_ID")?;
        let fields = [
            field("MNT_TRANSACTION_ID")?,
            field("MNT_AMOUNT")?,
            field("MNT_CURRENCY_CODE")?,
            field("MNT_SUBSCRIBER_ID")?,
            field("MNT_TEST_MODE")?,
        ];
        let expected = wire::form_signature(
            &wire::FormFields {
                account_id: &account_id,
                transaction_id: &fields[0],
                amount: &fields[1],
                currency: &fields[2],
                subscriber_id: &fields[3],
                test_mode: &fields[4],
            },
            &account.integrity_code,
        );
        if !crate::signing::hex_signature_matches(&field("MNT_SIGNATURE")?, &expected) {
            return Err("Неверная подпись запроса (MNT_SIGNATURE)".into());
        }
        let amount = Amount::parse_api(&fields[1]).map_err(|_| "Неверная сумма MNT_AMOUNT")?;
        if fields[0].is_empty() {
            return Err("Не указан MNT_TRANSACTION_ID".into());
        }
        if let Some(existing) = self.operation_by_transaction(&fields[0]) {
            if existing.status != OperationStatus::InProgress || existing.amount != amount {
                return Err("Заказ с таким MNT_TRANSACTION_ID уже оплачен или отменён".into());
            }
            return Ok(existing);
        }
        let optional = |name: &str| field(name).ok().filter(|v| !v.is_empty());
        let operation = SandboxOperation {
            id: self.next_id(),
            account_id,
            transaction_id: fields[0].clone(),
            client_transaction: None,
            amount,
            status: OperationStatus::InProgress,
            three_ds: false,
            subscriber_id: fields[3].clone(),
            wants_token: field("PAYMENTTOKEN")? == "request",
            token: None,
            masked_card: "220220******4242".into(),
            card_expiry: "12/2030".into(),
            is_refund: false,
            parent: None,
            refunded: 0,
            custom1: field("MNT_CUSTOM1")?,
            custom2: field("MNT_CUSTOM2")?,
            custom3: field("MNT_CUSTOM3")?,
            success_url: optional("MNT_SUCCESS_URL"),
            fail_url: optional("MNT_FAIL_URL"),
            notification_attempts: 0,
            decline_code: None,
            receipt: None,
            receipt_refusal: None,
        };
        self.book()
            .operations
            .insert(operation.id, operation.clone());
        Ok(operation)
    }

    /// The customer's choice on the form: `pay` (3-D Secure follows), `decline`, or
    /// `no3ds` (a card enrolled in no 3-D Secure). Returns where the browser goes next.
    pub async fn decide(&self, operation_id: u64, action: &str) -> Result<FormStep, String> {
        let op = self.operation(operation_id).ok_or("Операция не найдена")?;
        if op.status != OperationStatus::InProgress {
            return Err("Операция уже завершена".into());
        }
        if matches!(action, "pay" | "no3ds") {
            self.check_with_shop(&op).await?;
        }
        match action {
            "pay" => Ok(FormStep::ThreeDs(operation_id)),
            "no3ds" => self.credit(operation_id, false).await,
            "decline" => Ok(FormStep::Redirect(
                self.cancel(operation_id, "declined_by_customer"),
            )),
            _ => Err("Неизвестное действие".into()),
        }
    }

    /// The one-time code typed on the form's 3-D Secure page.
    pub async fn submit_otp(&self, operation_id: u64, code: &str) -> Result<FormStep, String> {
        if code == DEMO_OTP {
            self.credit(operation_id, true).await
        } else {
            Ok(FormStep::Redirect(
                self.cancel(operation_id, "three_ds_failed"),
            ))
        }
    }

    fn cancel(&self, operation_id: u64, code: &str) -> Option<String> {
        let mut book = self.book();
        let op = book.operations.get_mut(&operation_id)?;
        op.status = OperationStatus::Canceled;
        op.decline_code = Some(code.to_owned());
        op.fail_url.clone()
    }

    async fn credit(&self, operation_id: u64, three_ds: bool) -> Result<FormStep, String> {
        let op = {
            let mut book = self.book();
            let op = book
                .operations
                .get_mut(&operation_id)
                .ok_or("Операция не найдена")?;
            op.status = OperationStatus::TakenInNotSent;
            op.three_ds = three_ds;
            if op.wants_token && !op.subscriber_id.is_empty() {
                op.token = Some(format!("tok_{operation_id}_{}", op.subscriber_id.len()));
            }
            let op = op.clone();
            if let Some(token) = &op.token {
                book.tokens.insert(
                    token.clone(),
                    (
                        op.account_id.clone(),
                        op.masked_card.clone(),
                        op.card_expiry.clone(),
                    ),
                );
            }
            op
        };
        self.inner.charges_made.fetch_add(1, Ordering::SeqCst);
        if !self.inner.drop_notifications.load(Ordering::Relaxed) {
            let delivery = tokio::spawn(self.clone().deliver_pay_url(op.id));
            let _ = tokio::time::timeout(self.inner.policy.browser_wait, delivery).await;
        }
        Ok(FormStep::Redirect(op.success_url))
    }

    /// The Check URL request (§3.4), where the account has one: before the card is debited the
    /// shop must confirm the order, in a signed `MNT_RESPONSE` that names its amount and
    /// description. Anything else stops the payment, as Moneta does.
    async fn check_with_shop(&self, op: &SandboxOperation) -> Result<(), String> {
        let Some(account) = self.inner.accounts.get(&op.account_id).cloned() else {
            return Err("Неизвестный счёт".into());
        };
        let Some(check_url) = account.check_url.clone() else {
            return Ok(());
        };
        let mut form = self.notification_form(&account, op, "CHECK");
        form.push(("paymentSystem.unitId", "card".into()));
        let mut last = String::from("магазин не ответил");
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let Ok(response) = self
                .inner
                .http
                .post(check_url.clone())
                .form(&form)
                .send()
                .await
            else {
                continue;
            };
            let Ok(body) = response.text().await else {
                continue;
            };
            let Some(answer) = wire::read_mnt_answer(
                &body,
                &account.account_id,
                &op.transaction_id,
                &account.integrity_code,
            ) else {
                last = "ответ магазина не MNT_RESPONSE с верной подписью".into();
                continue;
            };
            let amount_named = answer
                .amount
                .as_deref()
                .and_then(|a| Amount::parse_api(a).ok())
                == Some(op.amount);
            if !amount_named || answer.description.as_deref().is_none_or(str::is_empty) {
                return Err(
                    "Магазин не подтвердил заказ: в ответе на Check URL нет суммы заказа (MNT_AMOUNT) или описания (MNT_DESCRIPTION)"
                        .into(),
                );
            }
            return match answer.result_code.as_str() {
                "402" => Ok(()),
                "200" => Err("Заказ уже оплачен".into()),
                "302" => Err("Заказ уже оплачивается".into()),
                _ => Err("Магазин отклонил заказ".into()),
            };
        }
        Err(format!("Магазин не подтвердил заказ: {last}"))
    }

    /// The signed fields of a Pay URL (`command` empty) or Check URL (`CHECK`) request.
    fn notification_form(
        &self,
        account: &SandboxAccount,
        op: &SandboxOperation,
        command: &str,
    ) -> Vec<(&'static str, String)> {
        let amount = op.amount.to_string();
        let test_mode = "1";
        let signature = wire::md5_hex(&[
            command,
            &account.account_id,
            &op.transaction_id,
            &op.id.to_string(),
            &amount,
            "RUB",
            &op.subscriber_id,
            test_mode,
            &account.integrity_code,
        ]);
        let mut form = Vec::new();
        if !command.is_empty() {
            form.push(("MNT_COMMAND", command.to_owned()));
        }
        form.extend([
            ("MNT_ID", account.account_id.clone()),
            ("MNT_TRANSACTION_ID", op.transaction_id.clone()),
            ("MNT_OPERATION_ID", op.id.to_string()),
            ("MNT_AMOUNT", amount),
            ("MNT_CURRENCY_CODE", "RUB".into()),
            ("MNT_SUBSCRIBER_ID", op.subscriber_id.clone()),
            ("MNT_TEST_MODE", test_mode.into()),
            ("MNT_SIGNATURE", signature),
            ("MNT_CUSTOM1", op.custom1.clone()),
            ("MNT_CUSTOM2", op.custom2.clone()),
            ("MNT_CUSTOM3", op.custom3.clone()),
        ]);
        form
    }

    /// Reads the shop's answer to a Pay URL notification: acknowledged, with the fiscal
    /// receipt it returned (checked by the cashbox), or not.
    fn pay_answer_accepted(
        &self,
        account: &SandboxAccount,
        op: &SandboxOperation,
        body: &str,
    ) -> bool {
        if body.trim() == "SUCCESS" {
            return true;
        }
        let Some(answer) = wire::read_mnt_answer(
            body,
            &account.account_id,
            &op.transaction_id,
            &account.integrity_code,
        )
        .filter(|a| a.result_code == "200") else {
            return false;
        };
        let receipt = answer
            .attribute("INVENTORY")
            .map(|inventory| read_moneta(inventory, answer.attribute("CUSTOMER"), op.amount))
            .transpose();
        let mut book = self.book();
        let Some(stored) = book.operations.get_mut(&op.id) else {
            return false;
        };
        match receipt {
            Ok(receipt) => {
                stored.receipt = receipt;
                stored.receipt_refusal = None;
                true
            }
            Err(refusal) => {
                stored.receipt_refusal = Some(refusal.to_string());
                false
            }
        }
    }

    async fn deliver_pay_url(self, operation_id: u64) {
        let Some(op) = self.operation(operation_id) else {
            return;
        };
        let Some(account) = self.inner.accounts.get(&op.account_id).cloned() else {
            return;
        };
        let form = self.notification_form(&account, &op, "");
        for attempt in 1..=self.inner.policy.max_attempts {
            if let Some(stored) = self.book().operations.get_mut(&operation_id) {
                stored.notification_attempts += 1;
            }
            let answer = self
                .inner
                .http
                .post(account.pay_url.clone())
                .form(&form)
                .send()
                .await;
            if let Ok(response) = answer
                && let Ok(body) = response.text().await
                && self.pay_answer_accepted(&account, &op, &body)
            {
                if let Some(stored) = self.book().operations.get_mut(&operation_id) {
                    stored.status = OperationStatus::Succeed;
                }
                return;
            }
            if attempt < self.inner.policy.max_attempts {
                tokio::time::sleep(self.inner.policy.retry_interval).await;
            }
        }
        tracing::warn!(
            operation_id,
            "sandbox gave up delivering the Pay URL notification"
        );
    }

    fn api_fault(faultcode: &str, message: &str, detail: &str) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(wire::fault(faultcode, message, detail)),
        )
            .into_response()
    }

    /// Handles one MerchantAPI call; the answer before any misbehaviour switch is applied.
    fn api(&self, request: &Value) -> (Value, bool) {
        let fault =
            |code: &str, message: &str, detail: &str| (wire::fault(code, message, detail), false);
        let Some(envelope) = request.get("Envelope") else {
            return fault("Client", "no Envelope", "500.1");
        };
        let token = envelope.pointer("/Header/Security/UsernameToken");
        let username = token
            .and_then(|t| t.get("Username"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let password = token
            .and_then(|t| t.get("Password"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(account) = self
            .inner
            .accounts
            .values()
            .find(|a| a.api_username == username && a.api_password == password)
            .cloned()
        else {
            return fault("Client", "authentication failed", "500.1.1");
        };
        let Some((method, body)) = envelope
            .get("Body")
            .and_then(Value::as_object)
            .and_then(|b| b.iter().next())
        else {
            return fault("Client", "no Body", "500.1");
        };
        let method = method.trim_end_matches("Request").to_owned();
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let attr = |key: &str| {
            wire::attribute(body.get("operationInfo").unwrap_or(&Value::Null), key)
                .map(str::to_owned)
        };
        let respond = |payload: Value| (wire::response(&method, payload), false);
        match method.as_str() {
            "GetOperationDetailsById" => {
                // The schema types the request as a bare `long`: an object is refused.
                let Some(id) = body.as_u64() else {
                    return fault(
                        "Client",
                        "GetOperationDetailsByIdRequest must be an operation id (integer)",
                        "500.1",
                    );
                };
                match self
                    .operation(id)
                    .filter(|o| o.account_id == account.account_id)
                {
                    Some(op) => respond(json!({"operation": operation_json(&op)})),
                    None => fault("Client", "operation not found", "500.1.5"),
                }
            }
            "FindOperationsListByCTID" => {
                let account_id = body.get("accountId").and_then(Value::as_u64);
                let client_transaction = body.get("clientTransaction").and_then(Value::as_str);
                let (Some(account_id), Some(client_transaction)) = (account_id, client_transaction)
                else {
                    return fault(
                        "Client",
                        "FindOperationsListByCTIDRequest needs accountId (integer) and clientTransaction",
                        "500.1",
                    );
                };
                if account_id.to_string() != account.account_id {
                    return fault("Client", "no access to this account", "500.1.3");
                }
                let book = self.book();
                let mut found: Vec<&SandboxOperation> = book
                    .operations
                    .values()
                    .filter(|o| o.account_id == account.account_id)
                    .filter(|o| match &o.client_transaction {
                        Some(own) => own == client_transaction,
                        None => o.transaction_id == client_transaction,
                    })
                    .collect();
                found.sort_by_key(|o| o.id);
                respond(json!({
                    "pageNumber": 1,
                    "pageSize": 100,
                    "pagesCount": 1,
                    "size": found.len(),
                    "totalSize": found.len(),
                    "operation": found.iter().map(|o| operation_json(o)).collect::<Vec<_>>(),
                }))
            }
            "Payment" => {
                if text("paymentPassword") != account.payment_password {
                    return fault("Client", "wrong payment password", "500.1.2");
                }
                let client_transaction = text("clientTransaction");
                let already =
                    self.book().operations.values().any(|o| {
                        o.client_transaction.as_deref() == Some(client_transaction.as_str())
                    });
                if client_transaction.is_empty() || already {
                    return fault("Client", "data already exist", "100.1");
                }
                let Some(token) = attr("PAYMENTTOKEN") else {
                    return fault("Client", "PAYMENTTOKEN is required", "500.1.3");
                };
                let Some((owner, masked, expiry)) = self.book().tokens.get(&token).cloned() else {
                    return fault("Client", "unknown payment token", "400.1.5");
                };
                if owner != account.account_id {
                    return fault("Client", "unknown payment token", "400.1.5");
                }
                let Ok(amount) = Amount::parse_api(&text("amount")) else {
                    return fault("Client", "bad amount", "400.1.18");
                };
                let behaviour = std::mem::take(
                    &mut *self
                        .inner
                        .next_charge
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                );
                let id = self.next_id();
                let status = match behaviour {
                    ChargeBehaviour::Approve => OperationStatus::Succeed,
                    ChargeBehaviour::InsufficientFunds => OperationStatus::Canceled,
                    ChargeBehaviour::Challenge => OperationStatus::InProgress,
                };
                let op = SandboxOperation {
                    id,
                    account_id: account.account_id.clone(),
                    transaction_id: attr("MNT_TRANSACTION_ID").unwrap_or_default(),
                    client_transaction: Some(client_transaction),
                    amount,
                    status,
                    three_ds: behaviour == ChargeBehaviour::Challenge,
                    subscriber_id: String::new(),
                    wants_token: false,
                    token: None,
                    masked_card: masked,
                    card_expiry: expiry,
                    is_refund: false,
                    parent: None,
                    refunded: 0,
                    custom1: String::new(),
                    custom2: String::new(),
                    custom3: String::new(),
                    success_url: None,
                    fail_url: None,
                    notification_attempts: 0,
                    decline_code: (behaviour == ChargeBehaviour::InsufficientFunds)
                        .then(|| "insufficient_funds".to_owned()),
                    receipt: None,
                    receipt_refusal: None,
                };
                self.book().operations.insert(id, op.clone());
                let charged = status == OperationStatus::Succeed;
                if charged {
                    self.inner.charges_made.fetch_add(1, Ordering::SeqCst);
                }
                let mut answer = operation_json(&op);
                if behaviour == ChargeBehaviour::Challenge
                    && let Some(attributes) =
                        answer.get_mut("attribute").and_then(Value::as_array_mut)
                {
                    attributes.push(json!({"key": "acsurl", "value": self.inner.acs_url}));
                    attributes.push(json!({"key": "pareq", "value": format!("pareq-{id}")}));
                    attributes.push(json!({"key": "md", "value": id.to_string()}));
                }
                (wire::response(&method, answer), charged)
            }
            "ConfirmTransaction" => {
                let id = text("transactionId").parse::<u64>().unwrap_or_default();
                let pares = attr("PARES").unwrap_or_default();
                let mut book = self.book();
                let Some(op) = book
                    .operations
                    .get_mut(&id)
                    .filter(|o| o.account_id == account.account_id)
                else {
                    return fault("Client", "operation not found", "500.1.5");
                };
                if op.status != OperationStatus::InProgress {
                    return fault(
                        "Client",
                        "operation is not awaiting confirmation",
                        "400.1.6",
                    );
                }
                let charged = pares == format!("pares-ok-{id}");
                if charged {
                    op.status = OperationStatus::Succeed;
                    self.inner.charges_made.fetch_add(1, Ordering::SeqCst);
                } else {
                    op.status = OperationStatus::Canceled;
                    op.decline_code = Some("three_ds_failed".into());
                }
                let op = op.clone();
                drop(book);
                (wire::response(&method, operation_json(&op)), charged)
            }
            "Refund" => {
                if text("paymentPassword") != account.payment_password {
                    return fault("Client", "wrong payment password", "500.1.2");
                }
                let parent_id = text("transactionId").parse::<u64>().unwrap_or_default();
                let client_transaction = text("clientTransaction");
                if self.inner.refuse_next_refund.swap(false, Ordering::SeqCst) {
                    return fault("Client", "the refund is refused", "400.1.7");
                }
                let mut book = self.book();
                if let Some(existing) = book.operations.values().find(|o| {
                    o.is_refund
                        && o.client_transaction.as_deref() == Some(client_transaction.as_str())
                }) {
                    let existing = existing.clone();
                    drop(book);
                    return respond(operation_json(&existing));
                }
                let Some(parent) = book
                    .operations
                    .get(&parent_id)
                    .filter(|o| o.account_id == account.account_id && !o.is_refund)
                    .cloned()
                else {
                    return fault("Client", "operation not found", "500.1.5");
                };
                if !matches!(
                    parent.status,
                    OperationStatus::Succeed | OperationStatus::TakenInNotSent
                ) {
                    return fault("Client", "operation is not paid", "400.1.6");
                }
                let amount = match body.get("amount").and_then(Value::as_str) {
                    Some(text) => match Amount::parse_api(text) {
                        Ok(amount) => amount,
                        Err(_) => return fault("Client", "bad amount", "400.1.18"),
                    },
                    None => match Amount::from_minor(parent.amount.minor() - parent.refunded) {
                        Ok(rest) => rest,
                        Err(_) => return fault("Client", "nothing left to refund", "400.1.18"),
                    },
                };
                if amount.minor() > parent.amount.minor() - parent.refunded {
                    return fault(
                        "Client",
                        "the refund exceeds what is left of the payment",
                        "400.1.18",
                    );
                }
                if let Some(p) = book.operations.get_mut(&parent_id) {
                    p.refunded += amount.minor();
                }
                let id = self.next_id();
                let refund = SandboxOperation {
                    id,
                    account_id: account.account_id.clone(),
                    transaction_id: parent.transaction_id.clone(),
                    client_transaction: Some(client_transaction),
                    amount,
                    status: OperationStatus::Succeed,
                    three_ds: false,
                    subscriber_id: String::new(),
                    wants_token: false,
                    token: None,
                    masked_card: parent.masked_card.clone(),
                    card_expiry: parent.card_expiry.clone(),
                    is_refund: true,
                    parent: Some(parent_id),
                    refunded: 0,
                    custom1: String::new(),
                    custom2: String::new(),
                    custom3: String::new(),
                    success_url: None,
                    fail_url: None,
                    notification_attempts: 0,
                    decline_code: None,
                    receipt: None,
                    receipt_refusal: None,
                };
                book.operations.insert(id, refund.clone());
                drop(book);
                (wire::response(&method, operation_json(&refund)), true)
            }
            _ => fault("Client", "unknown method", "500.1.4"),
        }
    }
}

/// Where the form sends the browser next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormStep {
    /// Show the 3-D Secure code page for this operation.
    ThreeDs(u64),
    /// Go to this address (`None`: the shop gave none; show the result here).
    Redirect(Option<String>),
}

fn form_step_response(step: FormStep) -> Response {
    match step {
        FormStep::ThreeDs(id) => {
            let body = format!(
                "<h1>Подтверждение платежа</h1><p>Введите одноразовый код из SMS (в тестовой среде: {DEMO_OTP}).</p>\
<form method=\"post\" action=\"3ds\"><input type=\"hidden\" name=\"operation\" value=\"{id}\">\
<input id=\"otp\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\">\
<button id=\"confirm\" type=\"submit\">Подтвердить</button></form>"
            );
            Html(page(BRAND, "3-D Secure", &body)).into_response()
        }
        FormStep::Redirect(Some(url)) => Redirect::to(&url).into_response(),
        FormStep::Redirect(None) => {
            Html(page(BRAND, "Готово", "<h1>Операция завершена</h1>")).into_response()
        }
    }
}

fn show_form(sandbox: &MonetaSandbox, params: Vec<(String, String)>) -> Response {
    match sandbox.open_form(&params) {
        Ok(op) => {
            let id = op.id.to_string();
            let button = |action: &str, id_attr: &str, label: &str| {
                format!(
                    "<form method=\"post\" action=\"assistant/decide\"><input type=\"hidden\" name=\"operation\" value=\"{id}\">\
<input type=\"hidden\" name=\"action\" value=\"{action}\"><button id=\"{id_attr}\" type=\"submit\">{label}</button></form>"
                )
            };
            let body = format!(
                "<h1>Оплата заказа {order}</h1><p>Сумма: <strong id=\"amount\">{sum} ₽</strong></p>\
<p>Карта вводится на этой странице (имитация).</p>{pay}{no3ds}{decline}",
                order = escape_html(&op.transaction_id),
                sum = op.amount,
                pay = button("pay", "pay", "Оплатить картой"),
                no3ds = button("no3ds", "pay-no-3ds", "Карта без 3-D Secure"),
                decline = button("decline", "decline", "Отказаться"),
            );
            Html(page(BRAND, "Оплата", &body)).into_response()
        }
        Err(message) => error_page(&message),
    }
}

async fn assistant_get(
    State(sandbox): State<MonetaSandbox>,
    RawQuery(query): RawQuery,
) -> Response {
    show_form(
        &sandbox,
        RawCallback {
            query: query.unwrap_or_default(),
            body: Vec::new(),
        }
        .params(),
    )
}

async fn assistant_post(State(sandbox): State<MonetaSandbox>, body: axum::body::Bytes) -> Response {
    show_form(
        &sandbox,
        RawCallback {
            query: String::new(),
            body: body.to_vec(),
        }
        .params(),
    )
}

#[derive(Debug, serde::Deserialize)]
struct Decision {
    operation: u64,
    action: String,
}

async fn decide(State(sandbox): State<MonetaSandbox>, Form(decision): Form<Decision>) -> Response {
    match sandbox.decide(decision.operation, &decision.action).await {
        Ok(step) => form_step_response(step),
        Err(message) => error_page(&message),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Otp {
    operation: u64,
    code: String,
}

async fn form_three_ds(State(sandbox): State<MonetaSandbox>, Form(otp): Form<Otp>) -> Response {
    match sandbox.submit_otp(otp.operation, &otp.code).await {
        Ok(step) => form_step_response(step),
        Err(message) => error_page(&message),
    }
}

async fn services(State(sandbox): State<MonetaSandbox>, body: axum::body::Bytes) -> Response {
    let mode = *sandbox
        .inner
        .api_mode
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if mode == ApiMode::ServerError {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return MonetaSandbox::api_fault("Client", "the request is not JSON", "500.1");
    };
    let (answer, charged) = sandbox.api(&request);
    let is_fault = answer.pointer("/Envelope/Body/fault").is_some();
    let status = if is_fault {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    crate::sandbox::shape_answer(mode, charged, (status, Json(answer)).into_response()).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AcsRequest {
    pa_req: String,
    #[serde(rename = "MD")]
    md: String,
    term_url: String,
}

async fn acs_page(Form(request): Form<AcsRequest>) -> Response {
    let body = format!(
        "<h1>3-D Secure: подтверждение списания</h1><p>Введите код из SMS (в тестовой среде: {DEMO_OTP}).</p>\
<form method=\"post\" action=\"acs/submit\"><input type=\"hidden\" name=\"md\" value=\"{md}\">\
<input type=\"hidden\" name=\"term_url\" value=\"{term}\"><input type=\"hidden\" name=\"pareq\" value=\"{pareq}\">\
<input id=\"otp\" name=\"code\" inputmode=\"numeric\"><button id=\"confirm\" type=\"submit\">Подтвердить</button></form>",
        md = escape_html(&request.md),
        term = escape_html(&request.term_url),
        pareq = escape_html(&request.pa_req),
    );
    Html(page(BRAND, "3-D Secure", &body)).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct AcsSubmit {
    md: String,
    term_url: String,
    code: String,
}

/// The ACS answers the shop through the browser: an auto-submitting form to `TermUrl`.
async fn acs_submit(Form(submit): Form<AcsSubmit>) -> Response {
    let pares = if submit.code == DEMO_OTP {
        format!("pares-ok-{}", submit.md)
    } else {
        format!("pares-failed-{}", submit.md)
    };
    let body = format!(
        "<form id=\"back\" method=\"post\" action=\"{term}\"><input type=\"hidden\" name=\"PaRes\" value=\"{pares}\">\
<input type=\"hidden\" name=\"MD\" value=\"{md}\"><noscript><button type=\"submit\">Продолжить</button></noscript></form>\
<script>document.getElementById('back').submit()</script>",
        term = escape_html(&submit.term_url),
        md = escape_html(&submit.md),
    );
    Html(page(BRAND, "3-D Secure", &body)).into_response()
}

impl MonetaSandbox {
    /// Applies a behaviour change (see [`crate::sandbox::Control`]).
    pub fn control(&self, control: &crate::sandbox::Control) -> Result<(), String> {
        use crate::sandbox::NextCharge;
        if let Some(api) = control.api {
            self.set_api_mode(api.into());
        }
        if let Some(next) = control.next_charge {
            self.set_next_charge(match next {
                NextCharge::Approve => ChargeBehaviour::Approve,
                NextCharge::Decline | NextCharge::InsufficientFunds => {
                    ChargeBehaviour::InsufficientFunds
                }
                NextCharge::Challenge => ChargeBehaviour::Challenge,
            });
        }
        if let Some(notify) = control.notifications {
            self.set_drop_notifications(!notify);
        }
        if control.hold_refunds.is_some() {
            return Err("Moneta refunds are final at once: there is nothing to hold".into());
        }
        if control.refuse_next_refund == Some(true) {
            self.refuse_next_refund();
        }
        Ok(())
    }

    /// Every operation the simulator made: what the acquirer actually did, for comparing with
    /// oplata's books.
    pub fn ledger(&self) -> Value {
        let book = self.book();
        let mut operations: Vec<&SandboxOperation> = book.operations.values().collect();
        operations.sort_by_key(|o| o.id);
        json!({"operations": operations.iter().map(|o| json!({
            "id": o.id,
            "transaction_id": o.transaction_id,
            "client_transaction": o.client_transaction,
            "amount": o.amount.to_string(),
            "status": o.status.as_str(),
            "is_refund": o.is_refund,
            "parent": o.parent,
            "receipt": o.receipt.as_deref().map(crate::sandbox::receipt_json),
            "receipt_refusal": o.receipt_refusal,
        })).collect::<Vec<_>>()})
    }
}

async fn control(State(sandbox): State<MonetaSandbox>, body: axum::body::Bytes) -> Response {
    crate::sandbox::handle_control(&body, |control| sandbox.control(control))
}

async fn ledger(State(sandbox): State<MonetaSandbox>) -> Json<Value> {
    Json(sandbox.ledger())
}
