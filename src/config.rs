//! Typed settings: built-in defaults, then an optional `oplata.toml`, then `OPLATA_…` variables.
//!
//! Every secret is a [`SecretString`]: it prints as `***` in `oplata config`, in `Debug` output
//! and in errors. Demo mode (the default) fills in a sandboxed Robokassa and a demo supplier so
//! that `cargo run` works on a fresh machine; production mode refuses to start with any of them.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use oplata_providers::AcquirerSettings;
use oplata_providers::moneta::{self, MonetaSettings};
use oplata_providers::net_pay::{self, NetPaySettings};
use oplata_providers::redact::{redacted_list, redacted_map};
use oplata_providers::robokassa::{self, RobokassaSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use crate::domain::receipt::ReceiptPolicy;
use crate::domain::supplier::PaymentType;
use oplata_providers::receipt::{SettlementMethod, SubjectKind, TaxSystem, Vat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Local demo: sandbox acquirers mounted in-process, demo supplier, readable logs.
    Demo,
    /// Real acquirers only; JSON logs; demo settings refused.
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// JSON in production, human-readable in demo.
    Auto,
    Json,
    Pretty,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// How browsers and acquirers reach this service (callback and return URLs are built from
    /// it). Defaults to `http://<listen address>`.
    pub public_base_url: Option<Url>,
    /// `sqlite://file.db` (embedded) or `postgres://user@host/db`.
    #[serde(serialize_with = "redacted_url")]
    pub database_url: String,
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,oplata=debug`.
    pub log_filter: String,
    pub request_timeout_secs: u64,
    /// After SIGTERM or Ctrl-C, how long requests in flight may still run before the process
    /// exits anyway (the workers stop at once).
    pub shutdown_grace_secs: u64,
    pub body_limit_bytes: usize,
    /// Timeout of one call to an acquirer.
    pub acquirer_timeout_secs: u64,
    /// How long idempotency keys are kept (at least 24).
    pub idempotency_ttl_hours: i64,
    /// A request that has not answered in this time is presumed dead: a retry with its key
    /// takes over and resumes what it started. Longer than any request can run (at least
    /// `acquirer_timeout_secs` + 5).
    pub idempotency_lease_secs: u64,
    /// How long a request waits for a database connection before it is answered `503
    /// service_unavailable` (the database is down or saturated).
    pub database_acquire_timeout_ms: u64,
    pub suppliers: Vec<SupplierSettings>,
    pub sandbox: SandboxSettings,
    pub vault: VaultSettings,
    pub workers: WorkerSettings,
    pub refunds: RefundSettings,
    pub webhooks: WebhookSettings,
    pub public: PublicSettings,
    pub sms: SmsSettings,
    pub personal_data: PersonalDataSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub desk: DeskSettings,
}

/// The refunds desk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskSettings {
    /// Whether an operator must have a second factor (`oplata operator second-factor`) to sign
    /// in. Unset: required in production, optional in demo; production refuses `false`. An
    /// operator who has enrolled one is always asked for its code.
    pub require_second_factor: Option<bool>,
    /// The zone of the desk's times (an IANA name); unset: Europe/Moscow.
    pub time_zone: Option<String>,
}

/// The desk's zone when none is set: operators work in Moscow time.
const DESK_TIME_ZONE: &str = "Europe/Moscow";

impl Settings {
    pub fn desk_time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(self.desk.time_zone.as_deref().unwrap_or(DESK_TIME_ZONE))
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// Whether the desk lets in no operator without a second factor.
    pub fn desk_requires_second_factor(&self) -> bool {
        self.desk
            .require_second_factor
            .unwrap_or(self.mode == Mode::Production)
    }
}

/// How long the rows that only grow are kept (the purge worker deletes the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Anonymous payment attempts (their limits look back an hour).
    pub public_attempts_days: i64,
    /// Inbound SMS (a redelivery is recognised within this time; the limits count a day).
    pub sms_messages_days: i64,
    /// Failed sign-ins (the brake looks back 15 minutes).
    pub login_failures_days: i64,
    /// Outbox events delivered to every endpoint (and their delivery rows); an event still
    /// pending or dead-lettered at any endpoint is kept. A newly configured endpoint receives
    /// the events of this window, less a day.
    pub webhook_events_days: i64,
    /// Rows deleted per statement, so a pass never holds a long lock.
    pub batch: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            public_attempts_days: 7,
            sms_messages_days: 30,
            login_failures_days: 7,
            webhook_events_days: 30,
            batch: 5000,
        }
    }
}

/// The anonymous pay page and `POST /v1/public/payments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicSettings {
    /// Payments one account number may be sent in an hour.
    pub attempts_per_account_per_hour: usize,
    /// Declined payments one client IP may have in 10 minutes before it must wait.
    pub declines_per_ip_per_10_minutes: usize,
    /// Anonymous payments one client address may create in an hour.
    #[serde(default = "default_creations_per_ip_per_hour")]
    pub creations_per_ip_per_hour: usize,
    /// A header set by the reverse proxy in front of oplata that holds the client's address
    /// (`X-Real-IP`); unset: the TCP peer's address. Never set it without such a proxy: clients
    /// could then choose their own address.
    pub client_ip_header: Option<String>,
    /// The proxies (addresses or networks) whose `client_ip_header` is believed; the client is
    /// the right-most address in it that is not one of them. Default: loopback.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// Hosts an anonymous payment may return the browser to (https only), besides oplata's own
    /// result page. Empty: only oplata's own.
    #[serde(default)]
    pub allowed_return_hosts: Vec<String>,
    /// The browser's return from an acquirer asks the acquirer about the payment at most once
    /// in this interval per payment (0: every time).
    pub return_query_interval_ms: u64,
}

/// The SMS-payment flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The supplier's time zone (IANA name): the daily limits end at its midnight.
    pub time_zone: String,
    /// Payment SMS one phone may send in a day.
    #[serde(default = "default_sms_payments_per_day")]
    pub payments_per_phone_per_day: i64,
    /// The sum one phone may pay by SMS in a day, as a decimal string.
    #[serde(default = "default_sms_amount_per_day")]
    pub amount_per_phone_per_day: String,
}

fn default_sms_payments_per_day() -> i64 {
    5
}

fn default_sms_amount_per_day() -> String {
    "15000.00".to_owned()
}

impl SmsSettings {
    /// The caps; `check` has made sure the amount reads.
    pub fn phone_caps(&self) -> crate::domain::sms::PhoneCaps {
        crate::domain::sms::PhoneCaps {
            payments: self.payments_per_phone_per_day,
            amount: oplata_providers::Amount::parse_api(&self.amount_per_phone_per_day)
                .unwrap_or_else(|_| {
                    oplata_providers::Amount::from_minor(1).expect("one kopeck is an amount")
                }),
        }
    }
}

/// Passport data of budget payments (rule 8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalDataSettings {
    /// Days after a payment became final before its personal data is deleted.
    pub retention_days: i64,
    /// How often the purge worker looks for data past its retention.
    pub purge_interval_secs: u64,
}

/// Where the billing system receives events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub endpoints: Vec<WebhookEndpoint>,
    /// Keep retrying a delivery this long, then dead-letter it.
    pub retry_window_hours: i64,
    pub max_backoff_secs: u64,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// A stable name: deliveries are tracked per endpoint name.
    pub name: String,
    pub url: Url,
    /// `whsec_…` secrets; every one signs each event (`oplata webhooks secret` makes one).
    #[serde(serialize_with = "redacted_list")]
    pub secrets: Vec<SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    /// A payment older than this cannot be refunded through oplata.
    pub max_age_days: i64,
    /// The most one operator may refund in a day (UTC), as a decimal string.
    pub operator_daily_limit: String,
}

/// Keys that seal recurring tokens at rest. New tokens use `active_key`; the others stay
/// readable until `oplata keys rotate` has re-sealed every token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    pub active_key: String,
    /// Key id → 32 random bytes in standard base64 (`oplata keys generate` makes one).
    #[serde(serialize_with = "redacted_map")]
    pub keys: std::collections::BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run the background workers (reconciliation) in this process.
    pub enabled: bool,
    /// How often the reconciliation worker looks for due payments.
    pub reconcile_interval_ms: u64,
    /// Longest pause between two status queries of one payment.
    pub max_backoff_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplierSettings {
    pub id: String,
    pub name: String,
    pub payment_type: PaymentType,
    /// Regular expression an account number must match entirely.
    pub account_pattern: String,
    /// Largest single payment, as a decimal string.
    pub max_amount: String,
    /// The supplier's IANA time zone, where its SMS day ends (one payment SMS per account a
    /// day); unset: `sms.time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Fiscal receipts (54-FZ) through the acquirer's cashbox; unset: none are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptSettings>,
    /// Payable without sign-in (the public page and API). Unset: only housing and utilities
    /// (ЖКХ) suppliers are, as the seed says (rule 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<bool>,
    pub acquirer: AcquirerSettings,
}

/// A supplier's fiscal settings: what its receipts say. Every payment then needs the customer's
/// e-mail or phone, where the cashbox sends the receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSettings {
    /// `osn`, `usn_income`, `usn_income_outcome`, `esn` or `patent`.
    pub tax_system: TaxSystem,
    /// `none`, `vat0`, `vat10`, `vat20`, `vat110` or `vat120`.
    pub vat: Vat,
    /// The receipt line; `{account}` is replaced by the account number.
    pub item_name: String,
    /// `full_payment`, `full_prepayment`, `prepayment` or `advance`.
    pub payment_method: SettlementMethod,
    /// `service`, `commodity`, `payment` or `another`.
    pub payment_object: SubjectKind,
    /// The supplier's ИНН.
    pub inn: String,
    /// Where the sale takes place: the portal's host.
    pub payment_address: String,
}

impl ReceiptSettings {
    pub fn policy(&self) -> ReceiptPolicy {
        ReceiptPolicy {
            tax_system: self.tax_system,
            vat: self.vat,
            item_name: self.item_name.clone(),
            method: self.payment_method,
            subject: self.payment_object,
            seller_inn: self.inn.clone(),
            payment_address: self.payment_address.clone(),
        }
    }
}

/// The demo suppliers' receipts: a utility's line without VAT.
fn demo_receipt(item_name: &str) -> Option<ReceiptSettings> {
    Some(ReceiptSettings {
        tax_system: TaxSystem::Osn,
        vat: Vat::None,
        item_name: item_name.to_owned(),
        payment_method: SettlementMethod::FullPayment,
        payment_object: SubjectKind::Service,
        inn: "7700000000".to_owned(),
        payment_address: "localhost".to_owned(),
    })
}

fn default_creations_per_ip_per_hour() -> usize {
    60
}

fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Mount the acquirer simulators under `/sandbox/…` (demo mode only).
    pub enabled: bool,
    /// Where the simulators run in a process of their own (`oplata sandbox` listens here):
    /// oplata then talks to them there instead of mounting them, so they outlive oplata's
    /// crashes as a real acquirer does. Unset: mounted in oplata itself.
    pub url: Option<Url>,
    /// Pause between ResultURL re-deliveries.
    pub retry_interval_ms: u64,
    pub max_attempts: u32,
}

pub const DEMO_SUPPLIER_ID: &str = "demo-electro";
pub const DEMO_VAULT_KEY_ID: &str = "demo-1";
/// 32 bytes of zeros and ones: good for nothing but a demo, refused in production.
pub const DEMO_VAULT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const DEMO_ROBOKASSA_LOGIN: &str = robokassa::settings::DEMO_LOGIN;
pub const DEMO_ROBOKASSA_PASSWORD1: &str = robokassa::settings::DEMO_PASSWORD1;
pub const DEMO_ROBOKASSA_PASSWORD2: &str = robokassa::settings::DEMO_PASSWORD2;
pub const DEMO_ROBOKASSA_PASSWORD3: &str = robokassa::settings::DEMO_PASSWORD3;
pub const DEMO_NETPAY_SUPPLIER_ID: &str = "demo-water";
pub const DEMO_NETPAY_API_KEY: &str = net_pay::settings::DEMO_API_KEY;
pub const DEMO_NETPAY_AUTH: &str = net_pay::settings::DEMO_AUTH;
pub const DEMO_MONETA_SUPPLIER_ID: &str = "demo-gibdd";
/// A budget supplier: payments carry the payer's passport data (rule 8).
pub const DEMO_BUDGET_SUPPLIER_ID: &str = "demo-kindergarten";
pub const DEMO_MONETA_ACCOUNT: &str = moneta::settings::DEMO_ACCOUNT;
pub const DEMO_MONETA_CODE: &str = moneta::settings::DEMO_CODE;
pub const DEMO_MONETA_API_USER: &str = moneta::settings::DEMO_API_USER;
pub const DEMO_MONETA_API_PASSWORD: &str = moneta::settings::DEMO_API_PASSWORD;
pub const DEMO_MONETA_PAYMENT_PASSWORD: &str = moneta::settings::DEMO_PAYMENT_PASSWORD;

fn redacted_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::redact_url(url))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration is not readable: {0}")]
    Load(Box<figment::Error>),
    #[error("refusing to start in production mode: {0}")]
    UnsafeForProduction(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Demo,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            database_url: "sqlite://oplata.db".to_owned(),
            log_format: LogFormat::Auto,
            log_filter: "info".to_owned(),
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            body_limit_bytes: 64 * 1024,
            acquirer_timeout_secs: 15,
            idempotency_ttl_hours: 24,
            idempotency_lease_secs: 120,
            database_acquire_timeout_ms: 3000,
            suppliers: Vec::new(),
            sandbox: SandboxSettings {
                enabled: true,
                url: None,
                retry_interval_ms: 2000,
                max_attempts: 30,
            },
            // Secrets are never defaults: figment reads defaults by serializing them, and
            // secrets serialize as "***". Demo mode adds its key in `with_demo_defaults`.
            vault: VaultSettings {
                active_key: DEMO_VAULT_KEY_ID.to_owned(),
                keys: std::collections::BTreeMap::new(),
            },
            webhooks: WebhookSettings {
                endpoints: Vec::new(),
                retry_window_hours: 24,
                max_backoff_secs: 3600,
                timeout_secs: 10,
            },
            refunds: RefundSettings {
                max_age_days: 180,
                operator_daily_limit: "500000.00".to_owned(),
            },
            workers: WorkerSettings {
                enabled: true,
                reconcile_interval_ms: 5000,
                max_backoff_secs: 3600,
            },
            public: PublicSettings {
                attempts_per_account_per_hour: 20,
                declines_per_ip_per_10_minutes: 10,
                client_ip_header: None,
                creations_per_ip_per_hour: default_creations_per_ip_per_hour(),
                trusted_proxies: default_trusted_proxies(),
                allowed_return_hosts: Vec::new(),
                return_query_interval_ms: 5000,
            },
            sms: SmsSettings {
                time_zone: "Europe/Moscow".to_owned(),
                payments_per_phone_per_day: default_sms_payments_per_day(),
                amount_per_phone_per_day: default_sms_amount_per_day(),
            },
            personal_data: PersonalDataSettings {
                retention_days: 30,
                purge_interval_secs: 3600,
            },
            retention: RetentionSettings::default(),
            desk: DeskSettings::default(),
        }
    }
}

impl Settings {
    /// Defaults, then the TOML file (if it exists), then `OPLATA_…` variables (`__` nests:
    /// `OPLATA_SANDBOX__ENABLED=false`).
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(
                Env::prefixed("OPLATA_")
                    .split("__")
                    // OPLATA_CONFIG names the file; OPLATA_TEST_… and OPLATA_BENCH_… belong to
                    // the test suite and benchmarks. Any other unknown key is a typo: refused.
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        key != "config" && !key.starts_with("test_") && !key.starts_with("bench_")
                    }),
            )
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.check()?;
        Ok(settings)
    }

    /// Structural checks, and in production mode the refusal of anything demo-like.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.idempotency_ttl_hours < 24 {
            return Err(ConfigError::Invalid(
                "idempotency_ttl_hours must be at least 24".into(),
            ));
        }
        if self.idempotency_lease_secs < self.acquirer_timeout_secs + 5 {
            return Err(ConfigError::Invalid(
                "idempotency_lease_secs must exceed acquirer_timeout_secs by at least 5: a key \
                 must not be taken over while its request may still be waiting for an acquirer"
                    .into(),
            ));
        }
        if oplata_providers::Amount::parse_api(&self.refunds.operator_daily_limit).is_err() {
            return Err(ConfigError::Invalid(
                "refunds.operator_daily_limit must be a positive amount such as \"500000.00\""
                    .into(),
            ));
        }
        for endpoint in &self.webhooks.endpoints {
            if endpoint.secrets.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "webhook endpoint {:?} has no secret",
                    endpoint.name
                )));
            }
        }
        if self.webhooks.retry_window_hours < 24 {
            return Err(ConfigError::Invalid(
                "webhooks.retry_window_hours must be at least 24".into(),
            ));
        }
        if self.sms.payments_per_phone_per_day < 1
            || oplata_providers::Amount::parse_api(&self.sms.amount_per_phone_per_day).is_err()
        {
            return Err(ConfigError::Invalid(
                "sms.payments_per_phone_per_day must be at least 1 and sms.amount_per_phone_per_day a positive amount"
                    .into(),
            ));
        }
        if jiff::tz::TimeZone::get(&self.sms.time_zone).is_err() {
            return Err(ConfigError::Invalid(format!(
                "sms.time_zone {:?} is not an IANA time zone such as \"Europe/Moscow\"",
                self.sms.time_zone
            )));
        }
        if let Some(zone) = &self.desk.time_zone
            && jiff::tz::TimeZone::get(zone).is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "desk.time_zone {zone:?} is not an IANA time zone such as \"Europe/Moscow\""
            )));
        }
        for supplier in &self.suppliers {
            if let Some(zone) = &supplier.time_zone
                && jiff::tz::TimeZone::get(zone).is_err()
            {
                return Err(ConfigError::Invalid(format!(
                    "supplier {:?}: time_zone {zone:?} is not an IANA time zone",
                    supplier.id
                )));
            }
            if let Some(receipt) = &supplier.receipt
                && let Err(error) = receipt.policy().check()
            {
                return Err(ConfigError::Invalid(format!(
                    "supplier {:?}: {error}",
                    supplier.id
                )));
            }
        }
        let r = &self.retention;
        if r.public_attempts_days < 1
            || r.sms_messages_days < 2
            || r.login_failures_days < 1
            || r.webhook_events_days < 2
            || r.batch < 1
        {
            return Err(ConfigError::Invalid(
                "retention: days must be at least 1 (sms_messages_days and webhook_events_days at \
                 least 2) and batch at least 1"
                    .into(),
            ));
        }
        if self.personal_data.retention_days < 1 || self.personal_data.purge_interval_secs < 1 {
            return Err(ConfigError::Invalid(
                "personal_data.retention_days and purge_interval_secs must be at least 1".into(),
            ));
        }
        if self.public.attempts_per_account_per_hour < 1
            || self.public.declines_per_ip_per_10_minutes < 1
            || self.public.creations_per_ip_per_hour < 1
        {
            return Err(ConfigError::Invalid(
                "public limits must be at least 1".into(),
            ));
        }
        if let Err(entry) =
            crate::http::client_address::TrustedProxies::parse(&self.public.trusted_proxies)
        {
            return Err(ConfigError::Invalid(format!(
                "public.trusted_proxies: {entry:?} is not an address or network"
            )));
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "body_limit_bytes must be at least 1024".into(),
            ));
        }
        if self.mode == Mode::Production && self.desk.require_second_factor == Some(false) {
            return Err(ConfigError::UnsafeForProduction(
                "desk.require_second_factor = false: refund operators need a second factor".into(),
            ));
        }
        if self.mode == Mode::Production {
            // Card tokens and passport data travel only over an encrypted connection: the
            // addresses given to browsers and acquirers must be https.
            match &self.public_base_url {
                Some(url) if url.scheme() == "https" => {}
                Some(_) => {
                    return Err(ConfigError::UnsafeForProduction(
                        "public_base_url must be an https:// address".into(),
                    ));
                }
                None => {
                    return Err(ConfigError::UnsafeForProduction(
                        "public_base_url is not set (the https:// address customers reach)".into(),
                    ));
                }
            }
            if self
                .vault
                .keys
                .values()
                .any(|key| key.expose_secret() == DEMO_VAULT_KEY)
            {
                return Err(ConfigError::UnsafeForProduction(
                    "a vault key is the public demo key (make one with `oplata keys generate`)"
                        .into(),
                ));
            }
            if self.sandbox.enabled {
                return Err(ConfigError::UnsafeForProduction(
                    "the acquirer sandbox is enabled (set sandbox.enabled = false)".into(),
                ));
            }
            if self.suppliers.is_empty() {
                return Err(ConfigError::UnsafeForProduction(
                    "no suppliers are configured".into(),
                ));
            }
            for supplier in &self.suppliers {
                if supplier.id.starts_with("demo") {
                    return Err(ConfigError::UnsafeForProduction(format!(
                        "supplier {:?} is a demo supplier",
                        supplier.id
                    )));
                }
                let refuse = |what: &str| {
                    Err(ConfigError::UnsafeForProduction(format!(
                        "supplier {:?} {what}",
                        supplier.id
                    )))
                };
                let account = supplier.acquirer.account();
                let (uses_demo_secret, base_url) = (account.uses_demo_secret(), account.base_url());
                if uses_demo_secret {
                    return refuse("uses the demo acquirer credentials");
                }
                match base_url {
                    None => return refuse("has no acquirer base_url"),
                    Some(url) if url.path().starts_with("/sandbox") => {
                        return refuse("points at a sandbox");
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    pub fn refund_limits(&self) -> crate::domain::refunds::RefundLimits {
        crate::domain::refunds::RefundLimits {
            max_age: time::Duration::days(self.refunds.max_age_days),
            operator_daily_minor: oplata_providers::Amount::parse_api(
                &self.refunds.operator_daily_limit,
            )
            .map(|a| a.minor())
            .unwrap_or(0),
        }
    }

    pub fn public_limits(&self) -> crate::domain::public_limits::PublicLimits {
        crate::domain::public_limits::PublicLimits {
            attempts_per_account: self.public.attempts_per_account_per_hour,
            account_window: time::Duration::hours(1),
            declines_per_ip: self.public.declines_per_ip_per_10_minutes,
            ip_window: time::Duration::minutes(10),
            creations_per_ip: self.public.creations_per_ip_per_hour,
            creations_window: time::Duration::hours(1),
        }
    }

    /// The SMS time zone; `check` has made sure it exists.
    pub fn sms_time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.sms.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The simulators are served by this process (demo mode, not run separately).
    pub fn sandbox_mounted(&self) -> bool {
        self.sandbox_in_use() && self.sandbox.url.is_none()
    }

    /// Accounts without a `base_url` talk to the simulators (demo mode only).
    pub fn sandbox_in_use(&self) -> bool {
        self.mode == Mode::Demo && self.sandbox.enabled
    }

    /// Where the simulators are reached: their own process, or this one.
    pub fn sandbox_base(&self, public_base_url: &Url) -> Option<Url> {
        self.sandbox_in_use().then(|| {
            self.sandbox
                .url
                .clone()
                .unwrap_or_else(|| public_base_url.clone())
        })
    }

    /// In demo mode: with no suppliers configured, one demo supplier per acquirer, paid
    /// through the sandboxes; with no vault keys, the demo key.
    pub fn with_demo_defaults(mut self) -> Self {
        if self.mode == Mode::Demo && self.vault.keys.is_empty() {
            self.vault.keys.insert(
                DEMO_VAULT_KEY_ID.to_owned(),
                SecretString::from(DEMO_VAULT_KEY),
            );
        }
        if self.mode == Mode::Demo && self.suppliers.is_empty() {
            self.suppliers.push(SupplierSettings {
                time_zone: None,
                id: DEMO_SUPPLIER_ID.to_owned(),
                anonymous: None,
                receipt: demo_receipt("Электроэнергия, лицевой счёт {account}"),
                name: "Демо-Энергосбыт".to_owned(),
                payment_type: PaymentType::Utilities,
                account_pattern: r"\d{10}".to_owned(),
                max_amount: "100000.00".to_owned(),
                acquirer: AcquirerSettings::Robokassa(RobokassaSettings::demo()),
            });
            self.suppliers.push(SupplierSettings {
                time_zone: None,
                id: DEMO_NETPAY_SUPPLIER_ID.to_owned(),
                anonymous: None,
                receipt: demo_receipt("Водоснабжение, лицевой счёт {account}"),
                name: "Демо-Водоканал".to_owned(),
                payment_type: PaymentType::Utilities,
                account_pattern: r"[0-9]{6,12}".to_owned(),
                max_amount: "50000.00".to_owned(),
                acquirer: AcquirerSettings::NetPay(NetPaySettings::demo()),
            });
            self.suppliers.push(SupplierSettings {
                time_zone: None,
                id: DEMO_MONETA_SUPPLIER_ID.to_owned(),
                anonymous: None,
                receipt: demo_receipt("Штраф ГИБДД, УИН {account}"),
                name: "Демо-ГИБДД (штрафы)".to_owned(),
                payment_type: PaymentType::Fines,
                // УИН: 20 or 25 digits.
                account_pattern: r"[0-9]{20}|[0-9]{25}".to_owned(),
                max_amount: "500000.00".to_owned(),
                acquirer: AcquirerSettings::Moneta(MonetaSettings::demo()),
            });
            self.suppliers.push(SupplierSettings {
                time_zone: None,
                id: DEMO_BUDGET_SUPPLIER_ID.to_owned(),
                // The demo shows the budget flow (passport data) on the public page too.
                anonymous: Some(true),
                receipt: demo_receipt("Родительская плата, лицевой счёт {account}"),
                name: "Демо-детский сад (бюджетное учреждение)".to_owned(),
                payment_type: PaymentType::Budget,
                account_pattern: r"[0-9]{8}".to_owned(),
                max_amount: "30000.00".to_owned(),
                acquirer: AcquirerSettings::Moneta(MonetaSettings::demo()),
            });
        }
        self
    }
}

/// Printed through the same redacting serializer as `oplata config`: no secret, and no password
/// in the database URL, reaches a log through `{:?}`.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(shown) => write!(f, "Settings {shown}"),
            Err(_) => f.write_str("Settings { .. }"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret_and_no_database_password() {
        let mut settings = Settings {
            database_url: "postgres://oplata:db-pass-7731@db.internal/oplata".to_owned(),
            ..Settings::default()
        };
        settings.webhooks.endpoints = vec![WebhookEndpoint {
            name: "billing".to_owned(),
            url: Url::parse("https://billing.example.ru/hooks").expect("a valid URL"),
            secrets: vec![SecretString::from("whsec_c2VjcmV0LXdlYmhvb2s=")],
        }];
        let shown = format!("{settings:?}");
        assert!(shown.contains("db.internal"), "{shown}");
        assert!(!shown.contains("db-pass-7731"), "{shown}");
        assert!(!shown.contains("c2VjcmV0LXdlYmhvb2s"), "{shown}");
        assert!(!shown.contains(DEMO_MONETA_CODE), "{shown}");
    }

    fn production() -> Settings {
        let mut settings = Settings {
            mode: Mode::Production,
            ..Settings::default()
        };
        settings.sandbox.enabled = false;
        settings.public_base_url = Url::parse("https://pay.example.ru/").ok();
        settings.vault = VaultSettings {
            active_key: "k1".into(),
            keys: std::collections::BTreeMap::from([(
                "k1".to_owned(),
                SecretString::from("MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="),
            )]),
        };
        settings.suppliers.push(SupplierSettings {
            receipt: None,
            anonymous: None,
            time_zone: None,
            id: "mosenergo".into(),
            name: "Энергосбыт".into(),
            payment_type: PaymentType::Utilities,
            account_pattern: r"\d{10}".into(),
            max_amount: "50000.00".into(),
            acquirer: AcquirerSettings::Robokassa(RobokassaSettings {
                merchant_login: "mosenergo".into(),
                password1: SecretString::from("real-1"),
                password2: SecretString::from("real-2"),
                password3: Some(SecretString::from("real-3")),
                refund_base_url: None,
                hash: oplata_providers::signing::HashAlgorithm::Sha256,
                test_mode: false,
                base_url: Url::parse("https://auth.robokassa.ru").ok(),
            }),
        });
        settings
    }

    #[test]
    fn unknown_time_zones_are_refused() {
        let mut settings = Settings::default();
        settings.sms.time_zone = "Europe/Atlantis".into();
        assert!(matches!(settings.check(), Err(ConfigError::Invalid(_))));
        let mut settings = production();
        settings.suppliers[0].time_zone = Some("Mars/Olympus".into());
        assert!(matches!(settings.check(), Err(ConfigError::Invalid(_))));
        settings.suppliers[0].time_zone = Some("Asia/Yekaterinburg".into());
        assert!(settings.check().is_ok());
        settings.desk.time_zone = Some("Moscow".into());
        assert!(matches!(settings.check(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn a_retention_of_delivered_webhook_events_under_two_days_is_refused() {
        // A new endpoint receives the window less a day: one day would leave it nothing.
        let mut settings = Settings::default();
        settings.retention.webhook_events_days = 1;
        assert!(matches!(settings.check(), Err(ConfigError::Invalid(_))));
        settings.retention.webhook_events_days = 2;
        assert!(settings.check().is_ok());
    }

    fn refusal(settings: &Settings) -> String {
        match settings.check() {
            Err(ConfigError::UnsafeForProduction(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_real_production_configuration_is_accepted() {
        assert!(production().check().is_ok());
    }

    #[test]
    fn the_example_configuration_reads_and_shows_a_complete_receipt_setting() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("oplata.example.toml");
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&example))
            .extract()
            .expect("oplata.example.toml parses");
        let receipt = settings.suppliers[0]
            .receipt
            .as_ref()
            .expect("the example shows the receipt settings");
        assert_eq!(receipt.policy().check(), Ok(()));
    }

    #[test]
    fn production_refuses_the_sandbox_demo_suppliers_and_demo_credentials() {
        let mut sandbox = production();
        sandbox.sandbox.enabled = true;
        assert!(refusal(&sandbox).contains("sandbox"));

        let demo = production().with_demo_defaults();
        let mut with_demo_supplier = production();
        with_demo_supplier.mode = Mode::Demo;
        with_demo_supplier.suppliers.clear();
        let mut with_demo_supplier = with_demo_supplier.with_demo_defaults();
        with_demo_supplier.mode = Mode::Production;
        with_demo_supplier.sandbox.enabled = false;
        assert!(
            demo.check().is_ok(),
            "demo defaults are never added in production"
        );
        assert!(refusal(&with_demo_supplier).contains("demo"));

        let mut demo_password = production();
        if let AcquirerSettings::Robokassa(r) = &mut demo_password.suppliers[0].acquirer {
            r.password2 = SecretString::from(DEMO_ROBOKASSA_PASSWORD2);
        }
        assert!(refusal(&demo_password).contains("demo acquirer credentials"));

        let mut no_base = production();
        if let AcquirerSettings::Robokassa(r) = &mut no_base.suppliers[0].acquirer {
            r.base_url = None;
        }
        assert!(refusal(&no_base).contains("base_url"));

        let mut nothing = production();
        nothing.suppliers.clear();
        assert!(refusal(&nothing).contains("no suppliers"));
    }

    #[test]
    fn production_refuses_the_demo_vault_key_and_an_unencrypted_public_address() {
        let mut demo_key = production();
        demo_key
            .vault
            .keys
            .insert("old".into(), SecretString::from(DEMO_VAULT_KEY));
        assert!(refusal(&demo_key).contains("demo key"));

        let mut plain_http = production();
        plain_http.public_base_url = Url::parse("http://pay.example.ru/").ok();
        assert!(refusal(&plain_http).contains("https"));

        let mut unset = production();
        unset.public_base_url = None;
        assert!(refusal(&unset).contains("public_base_url"));
    }

    #[test]
    fn production_requires_a_second_factor_on_the_desk() {
        let settings = production();
        assert!(settings.desk_requires_second_factor());
        let mut optional = production();
        optional.desk.require_second_factor = Some(false);
        assert!(refusal(&optional).contains("require_second_factor"));
        let demo = Settings::default();
        assert!(!demo.desk_requires_second_factor());
        let mut strict_demo = Settings::default();
        strict_demo.desk.require_second_factor = Some(true);
        assert!(strict_demo.desk_requires_second_factor());
    }

    #[test]
    fn the_printed_configuration_hides_every_secret() {
        let mut settings = production();
        settings.database_url = "postgres://oplata:db-secret@db.internal/oplata".into();
        let printed = toml::to_string_pretty(&settings).expect("printable");
        assert!(!printed.contains("real-1"));
        assert!(!printed.contains("real-2"));
        assert!(!printed.contains("db-secret"));
        assert!(printed.contains("***"));
        assert!(!format!("{settings:?}").contains("real-1"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn a_loaded_demo_configuration_opens_its_vault_and_a_configured_key_wins() {
        figment::Jail::expect_with(|jail| {
            let demo = Settings::load(Path::new("absent.toml"))
                .map_err(|e| e.to_string())?
                .with_demo_defaults();
            let vault = crate::vault::Vault::new(&demo.vault.active_key, &demo.vault.keys);
            assert!(vault.is_ok(), "{vault:?}");
            jail.set_env("OPLATA_VAULT__ACTIVE_KEY", "k2");
            jail.set_env(
                "OPLATA_VAULT__KEYS__K2",
                "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
            );
            let configured = Settings::load(Path::new("absent.toml"))
                .map_err(|e| e.to_string())?
                .with_demo_defaults();
            assert_eq!(
                configured.vault.keys.len(),
                1,
                "no demo key beside a configured one"
            );
            assert!(
                crate::vault::Vault::new(&configured.vault.active_key, &configured.vault.keys)
                    .is_ok()
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn a_file_and_the_environment_override_the_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oplata.toml",
                "listen = \"127.0.0.1:9000\"\nlog_filter = \"debug\"\n",
            )?;
            jail.set_env("OPLATA_LOG_FILTER", "warn");
            jail.set_env("OPLATA_SANDBOX__MAX_ATTEMPTS", "3");
            jail.set_env("OPLATA_TEST_POSTGRES_URL", "postgres://ignored");
            let settings = Settings::load(Path::new("oplata.toml")).map_err(|e| e.to_string())?;
            assert_eq!(settings.listen.port(), 9000);
            assert_eq!(settings.log_filter, "warn");
            assert_eq!(settings.sandbox.max_attempts, 3);
            jail.set_env("OPLATA_LISTN", "127.0.0.1:1");
            assert!(
                Settings::load(Path::new("oplata.toml")).is_err(),
                "a misspelt key is refused"
            );
            Ok(())
        });
    }
}
