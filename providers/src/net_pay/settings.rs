//! A NetPay merchant as the configuration holds it, and what is built from it: the adapter and,
//! for merchants without a real address, an account at the simulator.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::protocol::NOTIFICATION_PATH;
use super::{NetPay, NetPayConfig};
use crate::Acquirer;
use crate::redact::redacted;
use crate::registry::{AccountSettings, BuildContext};

/// The demo merchant's credentials: good for the simulator only, refused in production.
pub const DEMO_API_KEY: &str = "demo-netpay-api-key";
pub const DEMO_AUTH: &str = "1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetPaySettings {
    #[serde(serialize_with = "redacted")]
    pub api_key: SecretString,
    /// The merchant's "Auth signature" issued by NetPay.
    pub auth: String,
    /// Send the notification URL in each request (NetPay's test mode); in production it is
    /// registered with NetPay.
    #[serde(default)]
    pub test_mode: bool,
    /// How long a payment link stays valid.
    #[serde(default = "default_link_lifetime_minutes")]
    pub link_lifetime_minutes: u64,
    /// `https://my.net2pay.ru`; in demo mode, left empty, the in-process sandbox.
    pub base_url: Option<Url>,
}

fn default_link_lifetime_minutes() -> u64 {
    60
}

impl NetPaySettings {
    /// The demo merchant, at the simulator, in test mode.
    pub fn demo() -> Self {
        NetPaySettings {
            api_key: SecretString::from(DEMO_API_KEY),
            auth: DEMO_AUTH.to_owned(),
            test_mode: true,
            link_lifetime_minutes: default_link_lifetime_minutes(),
            base_url: None,
        }
    }
}

impl AccountSettings for NetPaySettings {
    fn base_url(&self) -> Option<&Url> {
        self.base_url.as_ref()
    }

    fn uses_demo_secret(&self) -> bool {
        self.api_key.expose_secret() == DEMO_API_KEY
    }

    fn build(&self, context: &BuildContext<'_>) -> Result<Arc<dyn Acquirer>, String> {
        let config = NetPayConfig {
            api_key: self.api_key.clone(),
            auth: self.auth.clone(),
            base_url: context.base_url.clone(),
            test_mode: self.test_mode,
            notification_url: Some(
                context
                    .public_base_url
                    .join(NOTIFICATION_PATH)
                    .map_err(|e| e.to_string())?,
            ),
            link_lifetime: Duration::from_secs(self.link_lifetime_minutes.saturating_mul(60)),
        };
        Ok(Arc::new(NetPay::new(config).map_err(|e| e.to_string())?))
    }

    #[cfg(feature = "sandbox")]
    fn simulator(
        accounts: &[&Self],
        context: &crate::registry::SimulatorContext,
    ) -> Result<Arc<dyn crate::sandbox::Simulator>, String> {
        use super::sandbox::{NetPaySandbox, SandboxMerchant};
        let notification_url = context
            .oplata
            .join(NOTIFICATION_PATH)
            .map_err(|e| e.to_string())?;
        let merchants = accounts
            .iter()
            .map(|merchant| SandboxMerchant {
                api_key: merchant.api_key.expose_secret().to_owned(),
                auth: merchant.auth.clone(),
                notification_url: Some(notification_url.clone()),
            })
            .collect();
        Ok(Arc::new(NetPaySandbox::new(merchants, context.policy)))
    }
}
