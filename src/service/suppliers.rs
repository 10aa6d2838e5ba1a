//! The configured suppliers and, for each, the adapter of its merchant account.

use std::collections::BTreeMap;
use std::sync::Arc;

use oplata_providers::Acquirer;
use oplata_providers::robokassa::{Robokassa, RobokassaConfig};
use url::Url;

use crate::config::{AcquirerSettings, SANDBOX_MOUNT, Settings};
use crate::domain::supplier::Supplier;

#[derive(Debug, Clone)]
pub struct SupplierEntry {
    pub supplier: Supplier,
    pub acquirer: Arc<dyn Acquirer>,
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
    /// Builds every supplier's adapter. A Robokassa account without a `base_url` talks to the
    /// in-process sandbox (demo mode only: production settings refuse that earlier).
    pub fn build(
        settings: &Settings,
        public_base_url: &Url,
        http: &reqwest::Client,
    ) -> Result<Self, DirectoryError> {
        let mut entries = BTreeMap::new();
        for s in &settings.suppliers {
            let acquirer: Arc<dyn Acquirer> = match &s.acquirer {
                AcquirerSettings::Robokassa(r) => {
                    let base_url =
                        match &r.base_url {
                            Some(url) => url.clone(),
                            None if settings.sandbox_mounted() => public_base_url
                                .join(SANDBOX_MOUNT)
                                .map_err(|e| DirectoryError::Acquirer {
                                    id: s.id.clone(),
                                    reason: e.to_string(),
                                })?,
                            None => {
                                return Err(DirectoryError::Acquirer {
                                    id: s.id.clone(),
                                    reason: "Robokassa base_url is not set and the sandbox is off"
                                        .into(),
                                });
                            }
                        };
                    let config = RobokassaConfig {
                        merchant_login: r.merchant_login.clone(),
                        password1: r.password1.clone(),
                        password2: r.password2.clone(),
                        hash: r.hash,
                        test_mode: r.test_mode,
                        base_url,
                    };
                    Arc::new(Robokassa::new(config, http.clone()).map_err(|e| {
                        DirectoryError::Acquirer {
                            id: s.id.clone(),
                            reason: e.to_string(),
                        }
                    })?)
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
            let entry = SupplierEntry { supplier, acquirer };
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
