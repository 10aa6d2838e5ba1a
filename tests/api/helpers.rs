//! `spawn_app(backend)`: the service as production builds it, on port 0, with a fresh database.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use oplata::app::Application;
use oplata::config::{Mode, Settings};
use oplata::service::api_keys::{self, Scope};
use oplata::store::{PaymentRecord, Store};
use oplata_providers::moneta::sandbox::MonetaSandbox;
use oplata_providers::net_pay::sandbox::NetPaySandbox;
use oplata_providers::robokassa::sandbox::RobokassaSandbox;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const POSTGRES_URL_VAR: &str = "OPLATA_TEST_POSTGRES_URL";
pub const DEMO_PASSWORD1: &str = oplata::config::DEMO_ROBOKASSA_PASSWORD1;
pub const DEMO_PASSWORD2: &str = oplata::config::DEMO_ROBOKASSA_PASSWORD2;
pub const DEMO_LOGIN: &str = oplata::config::DEMO_ROBOKASSA_LOGIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `sqlite::name` and `postgres::name` for each `async fn name(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

/// Every log line of this test process, for the tests that prove no secret is logged.
pub fn captured_logs() -> String {
    let buffer = log_buffer().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&buffer).into_owned()
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(|| Mutex::new(Vec::new()))
}

#[derive(Clone, Copy)]
struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs_once() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Debug everywhere, JSON as in production: the secret scan sees the most there is.
        oplata::telemetry::init(
            Mode::Production,
            oplata::config::LogFormat::Json,
            "debug,h2=info,hyper=info",
            false,
            || BufferWriter,
        );
    });
}

/// A database only this test uses, dropped when the test ends.
pub struct TestDatabase {
    pub url: String,
    _sqlite_dir: Option<tempfile::TempDir>,
    postgres_schema: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/oplata.db", dir.path().display());
                TestDatabase {
                    url,
                    _sqlite_dir: Some(dir),
                    postgres_schema: None,
                }
            }
            Backend::Postgres => {
                let server = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set: the PostgreSQL half of the tests cannot run. \
                         Use scripts/test, which skips it and says so, or set it, e.g. \
                         {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres"
                    )
                });
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = connect_admin(&server).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let separator = if server.contains('?') { '&' } else { '?' };
                let url = format!("{server}{separator}options=-c%20search_path%3D{schema}");
                TestDatabase {
                    url,
                    _sqlite_dir: None,
                    postgres_schema: Some((server, schema)),
                }
            }
        }
    }
}

async fn connect_admin(server: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_URL_VAR} is not reachable: {e}"))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, schema)) = self.postgres_schema.take() {
            // Drop runs outside async: clean up on a thread of its own with its own runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut admin = connect_admin(&server).await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut admin)
                    .await;
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub services: std::sync::Arc<oplata::service::Services>,
    pub database_url: String,
    pub backend: Backend,
    pub base: String,
    pub http: reqwest::Client,
    pub portal_key: String,
    pub store: Arc<Store>,
    pub sandbox: RobokassaSandbox,
    pub net_pay: NetPaySandbox,
    pub moneta: MonetaSandbox,
    shutdown: Option<oneshot::Sender<()>>,
    _database: TestDatabase,
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings {
        mode: Mode::Demo,
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        ..Settings::default()
    };
    settings.sandbox.retry_interval_ms = 50;
    settings.sandbox.max_attempts = 5;
    // Tests drive reconciliation themselves, with a controlled clock.
    settings.workers.enabled = false;
    // Flows return several times in a row on purpose; the throttle has its own tests.
    settings.public.return_query_interval_ms = 0;
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs_once();
    let database = TestDatabase::new(backend).await;
    let mut settings = test_settings(&database.url);
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the service starts");
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    let store = app.store();
    let services = app.services();
    let database_url = database.url.clone();
    let sandboxes = app.sandboxes().expect("demo mode mounts the simulators");
    let (_, key) = api_keys::create(store.as_ref(), "portal under test", Scope::Portal)
        .await
        .unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        services,
        database_url,
        backend,
        base,
        http,
        portal_key: key.expose_secret().to_owned(),
        store,
        sandbox: sandboxes.get().expect("the Robokassa simulator"),
        net_pay: sandboxes.get().expect("the NetPay simulator"),
        moneta: sandboxes.get().expect("the Moneta simulator"),
        shutdown: Some(shutdown),
        _database: database,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub fn demo_payment_body() -> Value {
    json!({
        "supplier_id": "demo-electro",
        "account_number": "1234567890",
        "amount": "1500.00",
        "currency": "RUB",
        "description": "Электроэнергия, октябрь 2026",
        "user_id": "user-42",
        "email": "ivan@example.ru"
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A desk API key issued to one operator: the operator of its refunds and settlements.
    pub async fn desk_key_for(&self, operator: &str) -> String {
        let (_, key) = api_keys::create(self.store.as_ref(), operator, Scope::Desk)
            .await
            .unwrap();
        key.expose_secret().to_owned()
    }

    pub async fn key_with_scope(&self, scope: Scope) -> String {
        let (_, key) = api_keys::create(self.store.as_ref(), "another client", scope)
            .await
            .unwrap();
        key.expose_secret().to_owned()
    }

    pub async fn post_payment(
        &self,
        key: Option<&str>,
        idempotency_key: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/v1/payments"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("idempotency-key", idempotency_key);
        }
        request.send().await.unwrap()
    }

    /// Creates a payment and returns its JSON; panics unless the answer is 201.
    pub async fn create_payment(&self, body: &Value) -> Value {
        let key = uuid::Uuid::new_v4().to_string();
        let response = self
            .post_payment(Some(&self.portal_key), Some(&key), &body.to_string())
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn get_payment(&self, id: &str, user_id: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/payments/{id}")))
            .bearer_auth(&self.portal_key);
        if let Some(user_id) = user_id {
            request = request.query(&[("user_id", user_id)]);
        }
        request.send().await.unwrap()
    }

    pub async fn payment_record(&self, id: &str) -> PaymentRecord {
        self.store
            .get_payment(id.parse().unwrap())
            .await
            .unwrap()
            .expect("payment exists")
    }

    /// A demo Robokassa payment, paid in the simulator as a customer would; returns the payment
    /// (as created) and its InvId.
    pub async fn paid_demo_payment(&self) -> (Value, String) {
        let payment = self.create_payment(&demo_payment_body()).await;
        let url = payment["next_action"]["url"].as_str().unwrap().to_owned();
        self.http.get(&url).send().await.unwrap();
        let inv_id = param(&query_params(&url), "InvId");
        self.sandbox
            .decide(DEMO_LOGIN, &inv_id, true)
            .await
            .unwrap();
        (payment, inv_id)
    }

    /// Posts a ResultURL notification as Robokassa would, returning status and body.
    pub async fn post_result(&self, form: &[(&str, String)]) -> (u16, String) {
        let response = self
            .http
            .post(self.url("/callbacks/robokassa/result"))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// The query parameters of a URL, in order.
pub fn query_params(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param(params: &[(String, String)], name: &str) -> String {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} parameter"))
}

impl TestApp {
    /// Runs one statement with two UUID parameters directly on the test's database.
    pub async fn execute_with_ids(&self, sql: &'static str, first: uuid::Uuid, second: uuid::Uuid) {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
                sqlx::query(sql)
                    .bind(first)
                    .bind(second)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
                sqlx::query(sql)
                    .bind(first)
                    .bind(second)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }
}

/// The fields of a payment's `form_post` next action, as the browser would post them.
pub fn next_action_fields(payment: &Value) -> Vec<(String, String)> {
    payment["next_action"]["fields"]
        .as_object()
        .expect("a form_post next action")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

impl TestApp {
    /// Runs one statement of the test's own making directly on the test's database.
    pub async fn execute_sql(&self, sql: String) {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Puts an idempotency key back where a process killed before it stored its answer leaves
    /// it: in progress, with a lease that has run out.
    pub async fn forget_answer_as_if_the_process_died(&self, idempotency_key: &str) {
        assert!(
            idempotency_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "test keys are plain"
        );
        let past = match self.backend {
            Backend::Sqlite => "'2000-01-01 00:00:00.000000000+00:00'",
            Backend::Postgres => "TIMESTAMPTZ '2000-01-01 00:00:00+00'",
        };
        self.execute_sql(format!(
            "UPDATE idempotency_keys SET state = 'in_progress', response_status = NULL, \
             response_body = NULL, locked_until = {past} WHERE idem_key = '{idempotency_key}'"
        ))
        .await;
    }

    /// Runs one reconciliation pass (payments and refunds) as if it were `minutes` from now.
    pub async fn reconcile_at(&self, minutes: i64) {
        let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
        let max = std::time::Duration::from_secs(60);
        oplata::workers::reconciliation::reconcile_due(&self.services, at, max)
            .await
            .unwrap();
        oplata::workers::reconciliation::reconcile_refunds(&self.services, at, max)
            .await
            .unwrap();
    }
}
