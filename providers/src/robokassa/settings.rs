//! A Robokassa shop as the configuration holds it, and what is built from it: the adapter and,
//! for shops without a real address, an account at the simulator.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Robokassa, RobokassaConfig};
use crate::Acquirer;
use crate::redact::{redacted, redacted_option};
use crate::registry::{AccountSettings, BuildContext};
use crate::signing::HashAlgorithm;

/// The demo shop's credentials: good for the simulator only, refused in production.
pub const DEMO_LOGIN: &str = "oplata-demo";
pub const DEMO_PASSWORD1: &str = "demo-password-1";
pub const DEMO_PASSWORD2: &str = "demo-password-2";
pub const DEMO_PASSWORD3: &str = "demo-password-3";

/// Where the Refund API lives when the shop talks to the real Robokassa.
const REFUND_BASE_URL: &str = "https://services.robokassa.ru";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobokassaSettings {
    pub merchant_login: String,
    #[serde(serialize_with = "redacted")]
    pub password1: SecretString,
    #[serde(serialize_with = "redacted")]
    pub password2: SecretString,
    /// Signs Refund API requests; without it, refunds of this shop are refused.
    #[serde(default, serialize_with = "redacted_option")]
    pub password3: Option<SecretString>,
    /// `https://services.robokassa.ru` (the default); in demo mode the sandbox.
    #[serde(default)]
    pub refund_base_url: Option<Url>,
    #[serde(default)]
    pub hash: HashAlgorithm,
    #[serde(default)]
    pub test_mode: bool,
    /// `https://auth.robokassa.ru`; in demo mode, left empty, the in-process sandbox.
    pub base_url: Option<Url>,
}

impl RobokassaSettings {
    /// The demo shop, at the simulator, in test mode.
    pub fn demo() -> Self {
        RobokassaSettings {
            merchant_login: DEMO_LOGIN.to_owned(),
            password1: SecretString::from(DEMO_PASSWORD1),
            password2: SecretString::from(DEMO_PASSWORD2),
            password3: Some(SecretString::from(DEMO_PASSWORD3)),
            refund_base_url: None,
            hash: HashAlgorithm::Md5,
            test_mode: true,
            base_url: None,
        }
    }
}

impl AccountSettings for RobokassaSettings {
    fn base_url(&self) -> Option<&Url> {
        self.base_url.as_ref()
    }

    fn uses_demo_secret(&self) -> bool {
        self.merchant_login == DEMO_LOGIN
            || [Some(&self.password1), Some(&self.password2), self.password3.as_ref()]
                .into_iter()
                .flatten()
                .any(|p| [DEMO_PASSWORD1, DEMO_PASSWORD2, DEMO_PASSWORD3].contains(&p.expose_secret()))
    }

    fn build(&self, context: &BuildContext<'_>) -> Result<Arc<dyn Acquirer>, String> {
        // The Refund API lives on a host of its own; the simulator serves both.
        let refund_base_url = match (&self.refund_base_url, context.simulated) {
            (Some(url), _) => url.clone(),
            (None, true) => context.base_url.clone(),
            (None, false) => Url::parse(REFUND_BASE_URL).map_err(|e| e.to_string())?,
        };
        let config = RobokassaConfig {
            merchant_login: self.merchant_login.clone(),
            password1: self.password1.clone(),
            password2: self.password2.clone(),
            hash: self.hash,
            test_mode: self.test_mode,
            base_url: context.base_url.clone(),
            password3: self.password3.clone(),
            refund_base_url,
        };
        Ok(Arc::new(
            Robokassa::new(config, context.http.clone()).map_err(|e| e.to_string())?,
        ))
    }

    #[cfg(feature = "sandbox")]
    fn simulator(
        accounts: &[&Self],
        context: &crate::registry::SimulatorContext,
    ) -> Result<Arc<dyn crate::sandbox::Simulator>, String> {
        use super::protocol::{FAIL_PATH, RESULT_PATH, SUCCESS_PATH};
        use super::sandbox::{RobokassaSandbox, SandboxMerchant};
        let join = |path: &str| context.oplata.join(path).map_err(|e| e.to_string());
        let merchants = accounts
            .iter()
            .map(|shop| {
                Ok(SandboxMerchant {
                    login: shop.merchant_login.clone(),
                    password1: shop.password1.expose_secret().to_owned(),
                    password2: shop.password2.expose_secret().to_owned(),
                    password3: shop
                        .password3
                        .as_ref()
                        .map(|p| p.expose_secret().to_owned())
                        .unwrap_or_default(),
                    hash: shop.hash,
                    result_url: join(RESULT_PATH)?,
                    success_url: join(SUCCESS_PATH)?,
                    fail_url: join(FAIL_PATH)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Arc::new(RobokassaSandbox::new(merchants, context.policy)))
    }
}
