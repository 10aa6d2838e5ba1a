//! The clients: they pay bills on the acquirer's page, charge saved cards and refund, each
//! request under an Idempotency-Key retried (same key, same body) through every crash until a
//! definitive answer comes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::processes::World;

const USER: &str = "crash-user";
const MONETA_ACCOUNT: &str = "18810177230000012345";
const ROBOKASSA_ACCOUNT: &str = "1234567890";
/// Concurrent clients.
const CLIENTS: usize = 6;
/// A key retried this long without a definitive answer is given up.
const KEY_DEADLINE: Duration = Duration::from_secs(120);

/// What the clients were answered, kept for the comparison with the books.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub hosted: u64,
    pub hosted_paid: u64,
    pub charges: u64,
    pub refunds: u64,
    /// 5xx answers other than 503 (stored under their keys and replayed).
    pub server_errors: u64,
    /// Keys that never got a definitive answer.
    pub abandoned: u64,
    /// Keys whose request was cut (connection lost to a kill) or found in progress, and that
    /// were answered on a retry.
    pub retried: u64,
    /// Every resource id a key was answered with, by key.
    pub resources: BTreeMap<String, Vec<Uuid>>,
}

#[derive(Debug, Clone)]
pub struct Cards {
    pub moneta: Uuid,
    pub robokassa: Uuid,
}

struct Inner {
    http: reqwest::Client,
    oplata: String,
    sandbox: String,
    portal_key: String,
    desk_key: String,
    requests: AtomicU64,
    counts: Mutex<Counts>,
    /// Payments that succeeded: candidates for refunds.
    paid: Mutex<Vec<Uuid>>,
}

/// Shared by all client tasks.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

fn key_from(output: &str) -> anyhow::Result<String> {
    output
        .lines()
        .find_map(|line| line.strip_prefix("key:"))
        .map(|key| key.trim().to_owned())
        .context("api-key create printed no key")
}

/// How a keyed request ended.
enum Answer {
    Definitive(u16, Value),
    Abandoned,
}

impl Client {
    pub async fn new(world: &World) -> anyhow::Result<Client> {
        let portal = world
            .cli(&[
                "api-key",
                "create",
                "--client",
                "crash-portal",
                "--scope",
                "portal",
            ])
            .await?;
        let desk = world
            .cli(&[
                "api-key",
                "create",
                "--client",
                "crash-desk",
                "--scope",
                "desk",
            ])
            .await?;
        // No redirects followed: a browser's next stop is read, not fetched.
        let http = oplata_providers::http_client(Duration::from_secs(30))?;
        Ok(Client(Arc::new(Inner {
            http,
            oplata: world.oplata_url.clone(),
            sandbox: world.sandbox_url.clone(),
            portal_key: key_from(&portal)?,
            desk_key: key_from(&desk)?,
            requests: AtomicU64::new(0),
            counts: Mutex::default(),
            paid: Mutex::default(),
        })))
    }

    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> Counts {
        self.0
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn sandbox(&self) -> &str {
        &self.0.sandbox
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    /// A payment the refunds may pick from (one not yet paid is simply refused by oplata).
    fn remember_paid(&self, payment: &Value) {
        if let Some(id) = payment["id"].as_str().and_then(|id| id.parse().ok()) {
            self.0
                .paid
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id);
        }
    }

    fn count(&self, update: impl FnOnce(&mut Counts)) {
        update(&mut self.0.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// POSTs `body` under a fresh key until the answer is definitive: connection failures (the
    /// process was killed), `409 idempotency_key_in_use` (its lease has not run out) and `503`
    /// are retried with the same key and body.
    async fn keyed(&self, path: &str, api_key: &str, body: &Value) -> Answer {
        let key = Uuid::new_v4().to_string();
        let deadline = Instant::now() + KEY_DEADLINE;
        let mut interrupted = false;
        loop {
            self.0.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .0
                .http
                .post(format!("{}{path}", self.0.oplata))
                .bearer_auth(api_key)
                .header("idempotency-key", &key)
                .json(body)
                .send()
                .await;
            if let Ok(response) = sent {
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let retry = status == 503
                    || (status == 409 && answer["error"]["code"] == "idempotency_key_in_use");
                if !retry && answer != Value::Null {
                    if status >= 500 {
                        self.count(|c| c.server_errors += 1);
                    }
                    if let Some(id) = answer["id"].as_str().and_then(|id| id.parse().ok()) {
                        self.count(|c| c.resources.entry(key.clone()).or_default().push(id));
                    }
                    if interrupted {
                        self.count(|c| c.retried += 1);
                    }
                    return Answer::Definitive(status, answer);
                }
            }
            interrupted = true;
            if Instant::now() > deadline {
                self.count(|c| c.abandoned += 1);
                return Answer::Abandoned;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// GET or form POST to a simulator page, retried on transport failures.
    async fn browser(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Option<String> {
        for _ in 0..40 {
            if let Ok(response) = request().send().await {
                return response.text().await.ok();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    async fn create_payment(&self, body: &Value) -> Option<Value> {
        match self.keyed("/v1/payments", &self.0.portal_key, body).await {
            Answer::Definitive(201, payment) => Some(payment),
            Answer::Definitive(..) | Answer::Abandoned => None,
        }
    }

    /// The customer pays on Robokassa's page.
    async fn pay_robokassa(&self, payment: &Value) -> bool {
        let Some(url) = payment["next_action"]["url"].as_str() else {
            return false;
        };
        let Some(inv_id) = url::Url::parse(url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "InvId")
                .map(|(_, v)| v.into_owned())
        }) else {
            return false;
        };
        if self.browser(|| self.0.http.get(url)).await.is_none() {
            return false;
        }
        let decide = format!("{}/sandbox/robokassa/Merchant/Decide", self.0.sandbox);
        let form = [
            ("login", oplata::config::DEMO_ROBOKASSA_LOGIN),
            ("inv_id", inv_id.as_str()),
            ("action", "pay"),
        ];
        self.browser(|| self.0.http.post(&decide).form(&form))
            .await
            .is_some()
    }

    /// The customer pays on Moneta's form, passing 3-D Secure.
    async fn pay_moneta(&self, payment: &Value) -> anyhow::Result<()> {
        let url = payment["next_action"]["url"]
            .as_str()
            .context("a form_post next action")?;
        let fields: Vec<(String, String)> = payment["next_action"]["fields"]
            .as_object()
            .context("form fields")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let page = self
            .browser(|| self.0.http.post(url).form(&fields))
            .await
            .context("the Moneta form")?;
        let operation = page
            .split("name=\"operation\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("the form names its operation")?
            .to_owned();
        let base = format!("{}/sandbox/moneta", self.0.sandbox);
        let decide = [("operation", operation.as_str()), ("action", "pay")];
        self.browser(|| {
            self.0
                .http
                .post(format!("{base}/assistant/decide"))
                .form(&decide)
        })
        .await
        .context("decide")?;
        let otp = [
            ("operation", operation.as_str()),
            ("code", oplata_providers::moneta::sandbox::DEMO_OTP),
        ];
        self.browser(|| self.0.http.post(format!("{base}/assistant/3ds")).form(&otp))
            .await
            .context("3-D Secure")?;
        Ok(())
    }

    async fn card_of(&self, acquirer: &str) -> anyhow::Result<Uuid> {
        for _ in 0..100 {
            let cards: Value = self
                .0
                .http
                .get(format!("{}/v1/users/{USER}/cards", self.0.oplata))
                .bearer_auth(&self.0.portal_key)
                .send()
                .await?
                .json()
                .await?;
            if let Some(card) = cards["cards"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["acquirer"] == acquirer)
            {
                return Ok(card["id"].as_str().context("card id")?.parse()?);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no {acquirer} card was saved")
    }

    /// A card at each acquirer that charges saved cards, bound by paying with full card entry
    /// (which also makes these suppliers payable by saved card: rule 3).
    pub async fn bind_cards(&self) -> anyhow::Result<Cards> {
        let moneta = self
            .create_payment(&json!({
                "supplier_id": "demo-gibdd", "account_number": MONETA_ACCOUNT, "amount": "700.00",
                "currency": "RUB", "description": "Штраф", "user_id": USER, "email": "crash@example.ru", "save_card": true
            }))
            .await
            .context("the Moneta binding payment")?;
        self.pay_moneta(&moneta).await?;
        let robokassa = self
            .create_payment(&json!({
                "supplier_id": "demo-electro", "account_number": ROBOKASSA_ACCOUNT, "amount": "900.00",
                "currency": "RUB", "description": "Электроэнергия", "user_id": USER, "email": "crash@example.ru", "save_card": true
            }))
            .await
            .context("the Robokassa binding payment")?;
        if !self.pay_robokassa(&robokassa).await {
            bail!("the Robokassa binding payment could not be paid");
        }
        let cards = Cards {
            moneta: self.card_of("moneta").await?,
            robokassa: self.card_of("robokassa").await?,
        };
        for payment in [&moneta, &robokassa] {
            self.remember_paid(payment);
        }
        Ok(cards)
    }

    async fn control(&self, acquirer: &str, body: Value) -> anyhow::Result<()> {
        let answer = self
            .0
            .http
            .post(format!("{}/sandbox/{acquirer}/control", self.0.sandbox))
            .json(&body)
            .send()
            .await?;
        if answer.status() != 204 {
            bail!("{acquirer} control refused: {}", answer.text().await?);
        }
        Ok(())
    }

    /// Acquirers that take their time, so that kills often land during their calls.
    pub async fn slow_acquirers(&self) -> anyhow::Result<()> {
        for acquirer in ["moneta", "robokassa"] {
            self.control(acquirer, json!({"api": {"mode": "hold", "ms": 400}}))
                .await?;
        }
        Ok(())
    }

    pub async fn normal_acquirers(&self) -> anyhow::Result<()> {
        for acquirer in ["moneta", "robokassa"] {
            self.control(acquirer, json!({"api": {"mode": "normal"}}))
                .await?;
        }
        Ok(())
    }

    fn amount(low: u32, high: u32) -> String {
        let kopecks = rand::random_range(low * 100..high * 100);
        format!("{}.{:02}", kopecks / 100, kopecks % 100)
    }

    async fn hosted_payment(&self) {
        let account: u64 = rand::random_range(1_000_000_000..9_999_999_999);
        let body = json!({
            "supplier_id": "demo-electro", "account_number": account.to_string(),
            "amount": Self::amount(10, 900), "currency": "RUB", "description": "Электроэнергия",
            "email": "crash@example.ru"
        });
        let Some(payment) = self.create_payment(&body).await else {
            return;
        };
        self.count(|c| c.hosted += 1);
        // Most customers pay; some leave the page.
        if rand::random_range(0..10) < 8 && self.pay_robokassa(&payment).await {
            self.count(|c| c.hosted_paid += 1);
            self.remember_paid(&payment);
        }
    }

    async fn saved_card_charge(&self, cards: &Cards) {
        let (supplier, account, card) = if rand::random::<bool>() {
            ("demo-gibdd", MONETA_ACCOUNT, cards.moneta)
        } else {
            ("demo-electro", ROBOKASSA_ACCOUNT, cards.robokassa)
        };
        let body = json!({
            "supplier_id": supplier, "account_number": account, "amount": Self::amount(10, 500),
            "currency": "RUB", "description": "Оплата", "user_id": USER, "phone": "+79001234567",
            "payment_method": {"type": "saved_card", "card_id": card}
        });
        if let Some(payment) = self.create_payment(&body).await {
            self.count(|c| c.charges += 1);
            self.remember_paid(&payment);
        }
    }

    async fn refund(&self) {
        let candidate = {
            let paid = self.0.paid.lock().unwrap_or_else(|p| p.into_inner());
            if paid.is_empty() {
                return;
            }
            paid[rand::random_range(0..paid.len())]
        };
        let body = json!({"amount": Self::amount(1, 60), "reason": "переплата"});
        let path = format!("/v1/payments/{candidate}/refunds");
        if let Answer::Definitive(201, _) = self.keyed(&path, &self.0.desk_key, &body).await {
            self.count(|c| c.refunds += 1);
        }
    }
}

/// The clients at work until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: Client,
}

impl Load {
    pub fn start(client: Client, cards: Cards) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (client, cards, stop) = (client.clone(), cards.clone(), stop.clone());
                tokio::spawn(async move {
                    let _ = client.slow_acquirers().await;
                    while !stop.load(Ordering::Relaxed) {
                        match rand::random_range(0..10) {
                            0..4 => client.hosted_payment().await,
                            4..8 => client.saved_card_charge(&cards).await,
                            _ => client.refund().await,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            client,
        }
    }

    /// Stops the clients after the operation each is in (its retries included).
    pub async fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.client.counts()
    }
}
