//! A Moneta shop account as the configuration holds it, and what is built from it: the adapter
//! and, for accounts without a real address, an account at the simulator.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Moneta, MonetaConfig};
use crate::Acquirer;
use crate::redact::redacted;
use crate::registry::{AccountSettings, BuildContext};

/// The demo account's credentials: good for the simulator only, refused in production.
pub const DEMO_ACCOUNT: &str = "54600817";
pub const DEMO_CODE: &str = "demo-integrity-code";
pub const DEMO_API_USER: &str = "oplata-demo";
pub const DEMO_API_PASSWORD: &str = "demo-api-password";
pub const DEMO_PAYMENT_PASSWORD: &str = "demo-payment-password";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonetaSettings {
    /// `MNT_ID`, the shop's extended account number.
    pub account_id: String,
    /// "Код проверки целостности данных": signs the form and the notifications.
    #[serde(serialize_with = "redacted")]
    pub integrity_code: SecretString,
    pub api_username: String,
    #[serde(serialize_with = "redacted")]
    pub api_password: SecretString,
    /// Authorises money-moving MerchantAPI calls (charges, refunds).
    #[serde(serialize_with = "redacted")]
    pub payment_password: SecretString,
    #[serde(default)]
    pub test_mode: bool,
    /// `https://moneta.ru` (form at `/assistant.htm`, MerchantAPI at `/services`); in demo
    /// mode, left empty, the in-process sandbox.
    pub base_url: Option<Url>,
}

impl MonetaSettings {
    /// The demo account, at the simulator, in test mode.
    pub fn demo() -> Self {
        MonetaSettings {
            account_id: DEMO_ACCOUNT.to_owned(),
            integrity_code: SecretString::from(DEMO_CODE),
            api_username: DEMO_API_USER.to_owned(),
            api_password: SecretString::from(DEMO_API_PASSWORD),
            payment_password: SecretString::from(DEMO_PAYMENT_PASSWORD),
            test_mode: true,
            base_url: None,
        }
    }
}

impl AccountSettings for MonetaSettings {
    fn base_url(&self) -> Option<&Url> {
        self.base_url.as_ref()
    }

    fn uses_demo_secret(&self) -> bool {
        [
            &self.integrity_code,
            &self.api_password,
            &self.payment_password,
        ]
        .iter()
        .any(|p| {
            [DEMO_CODE, DEMO_API_PASSWORD, DEMO_PAYMENT_PASSWORD].contains(&p.expose_secret())
        })
    }

    fn build(&self, context: &BuildContext<'_>) -> Result<Arc<dyn Acquirer>, String> {
        let config = MonetaConfig {
            account_id: self.account_id.clone(),
            integrity_code: self.integrity_code.clone(),
            api_username: self.api_username.clone(),
            api_password: self.api_password.clone(),
            payment_password: self.payment_password.clone(),
            base_url: context.base_url.clone(),
            test_mode: self.test_mode,
        };
        Ok(Arc::new(
            Moneta::new(config, context.http.clone()).map_err(|e| e.to_string())?,
        ))
    }

    #[cfg(feature = "sandbox")]
    fn simulator(
        accounts: &[&Self],
        context: &crate::registry::SimulatorContext,
    ) -> Result<Arc<dyn crate::sandbox::Simulator>, String> {
        use super::protocol::{CHECK_PATH, PAY_PATH};
        use super::sandbox::{MonetaSandbox, SandboxAccount};
        let join = |path: &str| context.oplata.join(path).map_err(|e| e.to_string());
        let accounts = accounts
            .iter()
            .map(|account| {
                Ok(SandboxAccount {
                    account_id: account.account_id.clone(),
                    integrity_code: account.integrity_code.expose_secret().to_owned(),
                    api_username: account.api_username.clone(),
                    api_password: account.api_password.expose_secret().to_owned(),
                    payment_password: account.payment_password.expose_secret().to_owned(),
                    pay_url: join(PAY_PATH)?,
                    check_url: Some(join(CHECK_PATH)?),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Arc::new(MonetaSandbox::new(
            accounts,
            context.policy,
            &context.own,
        )))
    }
}
