//! The configured suppliers and, for each, the adapter of its merchant account.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use oplata_providers::moneta::{Moneta, MonetaConfig};
use oplata_providers::net_pay::{NetPay, NetPayConfig};
use oplata_providers::robokassa::{Robokassa, RobokassaConfig};
use oplata_providers::{Acquirer, AcquirerKind};
use url::Url;

use crate::domain::supplier::PaymentType;

use crate::config::{AcquirerSettings, Settings, sandbox_mount};

use crate::domain::supplier::Supplier;

#[derive(Debug, Clone)]
pub struct SupplierEntry {
    pub supplier: Supplier,
    pub acquirer: Arc<dyn Acquirer>,
    /// Where the supplier's day ends (its own zone, or the SMS default).
    pub time_zone: jiff::tz::TimeZone,
}

#[derive(Debug, Default)]
pub struct SupplierDirectory {
    entries: BTreeMap<String, SupplierEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Supplier(#[from] crate::domain::supplier::SupplierError),
    #[error("supplier {0:?} is configured twice")]
    Duplicate(String),
    #[error("supplier {id:?}: {reason}")]
    Acquirer { id: String, reason: String },
}

impl SupplierDirectory {
    /// Builds every supplier's adapter. An account without a `base_url` talks to the
    /// simulators, in this process or their own (demo mode only: production settings refuse
    /// that earlier).
    pub fn build(
        settings: &Settings,
        public_base_url: &Url,
        http: &reqwest::Client,
    ) -> Result<Self, DirectoryError> {
        let mut entries = BTreeMap::new();
        for s in &settings.suppliers {
            let configuration = |reason: String| DirectoryError::Acquirer {
                id: s.id.clone(),
                reason,
            };
            // An account without a base URL talks to the in-process simulator (demo mode only).
            let sandbox = settings.sandbox_base(public_base_url);
            let base = |configured: &Option<Url>, kind: AcquirerKind| match (configured, &sandbox) {
                (Some(url), _) => Ok(url.clone()),
                (None, Some(sandbox)) => sandbox
                    .join(sandbox_mount(kind))
                    .map_err(|e| configuration(e.to_string())),
                (None, None) => Err(configuration(format!(
                    "{kind} base_url is not set and the sandbox is off"
                ))),
            };
            let acquirer: Arc<dyn Acquirer> = match &s.acquirer {
                AcquirerSettings::Robokassa(r) => {
                    let config = RobokassaConfig {
                        merchant_login: r.merchant_login.clone(),
                        password1: r.password1.clone(),
                        password2: r.password2.clone(),
                        hash: r.hash,
                        test_mode: r.test_mode,
                        base_url: base(&r.base_url, AcquirerKind::Robokassa)?,
                        password3: r.password3.clone(),
                        // The Refund API lives on its own host; the sandbox serves both.
                        refund_base_url: match (&r.refund_base_url, &r.base_url) {
                            (Some(url), _) => url.clone(),
                            (None, None) => base(&None, AcquirerKind::Robokassa)?,
                            (None, Some(_)) => Url::parse("https://services.robokassa.ru")
                                .map_err(|e| configuration(e.to_string()))?,
                        },
                    };
                    Arc::new(
                        Robokassa::new(config, http.clone())
                            .map_err(|e| configuration(e.to_string()))?,
                    )
                }
                AcquirerSettings::NetPay(n) => {
                    let config = NetPayConfig {
                        api_key: n.api_key.clone(),
                        auth: n.auth.clone(),
                        base_url: base(&n.base_url, AcquirerKind::NetPay)?,
                        test_mode: n.test_mode,
                        notification_url: Some(
                            public_base_url
                                .join(oplata_providers::net_pay::protocol::NOTIFICATION_PATH)
                                .map_err(|e| configuration(e.to_string()))?,
                        ),
                        link_lifetime: Duration::from_secs(
                            n.link_lifetime_minutes.saturating_mul(60),
                        ),
                    };
                    Arc::new(NetPay::new(config).map_err(|e| configuration(e.to_string()))?)
                }
                AcquirerSettings::Moneta(m) => {
                    let config = MonetaConfig {
                        account_id: m.account_id.clone(),
                        integrity_code: m.integrity_code.clone(),
                        api_username: m.api_username.clone(),
                        api_password: m.api_password.clone(),
                        payment_password: m.payment_password.clone(),
                        base_url: base(&m.base_url, AcquirerKind::Moneta)?,
                        test_mode: m.test_mode,
                    };
                    Arc::new(
                        Moneta::new(config, http.clone())
                            .map_err(|e| configuration(e.to_string()))?,
                    )
                }
            };
            let supplier = Supplier::new(
                &s.id,
                &s.name,
                s.payment_type,
                &s.account_pattern,
                &s.max_amount,
                acquirer.kind(),
            )?;
            let mut supplier = match &s.receipt {
                Some(receipt) => supplier.with_receipt(receipt.policy()),
                None => supplier,
            };
            if let Some(anonymous) = s.anonymous {
                supplier.anonymous = anonymous;
            }
            if s.payment_type == PaymentType::Budget && !acquirer.capabilities().personal_data {
                return Err(configuration(format!(
                    "a budget supplier needs an acquirer whose form carries passport data; {} has none",
                    acquirer.kind()
                )));
            }
            let time_zone = match &s.time_zone {
                Some(zone) => {
                    jiff::tz::TimeZone::get(zone).map_err(|e| configuration(e.to_string()))?
                }
                None => settings.sms_time_zone(),
            };
            let entry = SupplierEntry {
                supplier,
                acquirer,
                time_zone,
            };
            if entries.insert(s.id.clone(), entry).is_some() {
                return Err(DirectoryError::Duplicate(s.id.clone()));
            }
        }
        Ok(SupplierDirectory { entries })
    }

    pub fn get(&self, id: &str) -> Option<&SupplierEntry> {
        self.entries.get(id)
    }

    pub fn supplier(&self, id: &str) -> Option<&Supplier> {
        self.entries.get(id).map(|e| &e.supplier)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SupplierEntry> {
        self.entries.values()
    }
}
