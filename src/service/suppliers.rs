//! The configured suppliers and, for each, the adapter of its merchant account.

use std::collections::BTreeMap;
use std::sync::Arc;

use oplata_providers::Acquirer;
use oplata_providers::registry::BuildContext;
use url::Url;

use crate::domain::supplier::PaymentType;

use crate::config::Settings;

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
            let sandbox = settings.sandbox_base(public_base_url);
            // An account without a base URL talks to the simulator (demo mode only).
            let kind = s.acquirer.kind();
            let (base_url, simulated) = match (s.acquirer.account().base_url(), &sandbox) {
                (Some(url), _) => (url.clone(), false),
                (None, Some(sandbox)) => (
                    sandbox
                        .join(&kind.sandbox_mount())
                        .map_err(|e| configuration(e.to_string()))?,
                    true,
                ),
                (None, None) => {
                    return Err(configuration(format!(
                        "{kind} base_url is not set and the sandbox is off"
                    )));
                }
            };
            let acquirer = s
                .acquirer
                .account()
                .build(&BuildContext {
                    base_url,
                    simulated,
                    public_base_url,
                    http,
                })
                .map_err(configuration)?;
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
