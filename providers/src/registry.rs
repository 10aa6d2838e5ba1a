//! How an acquirer's folder plugs in. Each folder (`robokassa/`, `net_pay/`, `moneta/`) holds its
//! wire protocol, its adapter, its merchant-account settings (which implement
//! [`AccountSettings`]: how the adapter and the simulator are built from them) and its simulator;
//! [`acquirers!`] in `lib.rs` lists the folders, one line each, and makes from that list the
//! kind enum, the configuration's `kind = "…"` enum and the dispatch between them. Adding an
//! acquirer is its folder plus that one line.

use std::sync::Arc;

use url::Url;

use crate::Acquirer;

/// What an adapter is built with besides its own settings.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// Where the acquirer is reached: the account's `base_url`, or its simulator's address
    /// when it has none (demo mode).
    pub base_url: Url,
    /// Whether `base_url` is the simulator.
    pub simulated: bool,
    /// How browsers and acquirers reach oplata (notification and return addresses).
    pub public_base_url: &'a Url,
    pub http: &'a reqwest::Client,
}

/// Where a simulator is reached and whom it notifies.
#[cfg(feature = "sandbox")]
#[derive(Debug, Clone)]
pub struct SimulatorContext {
    /// oplata, as the simulator's notifications and browser returns reach it.
    pub oplata: Url,
    /// The simulator itself (its mount under `/sandbox/<kind>`), for the pages it links to.
    pub own: Url,
    pub policy: crate::sandbox::DeliveryPolicy,
}

/// One merchant account's settings at one acquirer, as the configuration holds them.
pub trait AccountSettings: Send + Sync {
    /// The acquirer's address for this account; `None` means its simulator (demo mode only).
    fn base_url(&self) -> Option<&Url>;

    /// Whether any credential is the demo's, which production refuses.
    fn uses_demo_secret(&self) -> bool;

    /// The adapter of this account.
    fn build(&self, context: &BuildContext<'_>) -> Result<Arc<dyn Acquirer>, String>;

    /// The acquirer's simulator, with an account for each of `accounts` (those configured
    /// without a `base_url`).
    #[cfg(feature = "sandbox")]
    fn simulator(
        accounts: &[&Self],
        context: &SimulatorContext,
    ) -> Result<Arc<dyn crate::sandbox::Simulator>, String>
    where
        Self: Sized;
}

/// Lists the acquirers: `Variant = "configuration name" in folder::SettingsType`. Makes
/// [`crate::AcquirerKind`], [`crate::AcquirerSettings`], [`crate::PROTOCOLS`] and (with the
/// simulators) [`crate::simulators`].
macro_rules! acquirers {
    ($($variant:ident = $name:literal in $module:ident :: $settings:ident),+ $(,)?) => {
        $(pub mod $module;)+

        const ACQUIRER_COUNT: usize = [$($name),+].len();

        /// The acquirers oplata can talk to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum AcquirerKind {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl AcquirerKind {
            pub const ALL: [AcquirerKind; ACQUIRER_COUNT] = [$(AcquirerKind::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(AcquirerKind::$variant => $name,)+
                }
            }

            /// The acquirer's name as people write it (its variant: `NetPay`, `Robokassa`).
            pub fn display_name(self) -> &'static str {
                match self {
                    $(AcquirerKind::$variant => stringify!($variant),)+
                }
            }

            /// This acquirer's wire protocol (its folder's `protocol::PROTOCOL`).
            pub fn protocol(self) -> &'static dyn Protocol {
                match self {
                    $(AcquirerKind::$variant => &$module::protocol::PROTOCOL,)+
                }
            }
        }

        /// Every acquirer's protocol.
        pub static PROTOCOLS: [&dyn Protocol; ACQUIRER_COUNT] =
            [$(&$module::protocol::PROTOCOL),+];

        /// One merchant account, as the configuration names its acquirer (`kind = "…"`).
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind", deny_unknown_fields)]
        pub enum AcquirerSettings {
            $(#[serde(rename = $name)] $variant($module::$settings),)+
        }

        impl AcquirerSettings {
            pub fn kind(&self) -> AcquirerKind {
                match self {
                    $(AcquirerSettings::$variant(_) => AcquirerKind::$variant,)+
                }
            }

            /// What every acquirer's settings answer alike.
            pub fn account(&self) -> &dyn registry::AccountSettings {
                match self {
                    $(AcquirerSettings::$variant(settings) => settings,)+
                }
            }
        }

        /// Each acquirer's simulator, with an account for each of `accounts` that has no
        /// `base_url`; `own` is where the simulators are reached (each under its mount).
        #[cfg(feature = "sandbox")]
        pub fn simulators(
            accounts: &[&AcquirerSettings],
            oplata: &url::Url,
            own: &url::Url,
            policy: sandbox::DeliveryPolicy,
        ) -> Result<sandbox::Simulators, String> {
            let mut simulators = sandbox::Simulators::default();
            $(
                let mine: Vec<&$module::$settings> = accounts
                    .iter()
                    .filter_map(|account| match account {
                        AcquirerSettings::$variant(settings)
                            if registry::AccountSettings::base_url(settings).is_none() =>
                        {
                            Some(settings)
                        }
                        _ => None,
                    })
                    .collect();
                let context = registry::SimulatorContext {
                    oplata: oplata.clone(),
                    own: own
                        .join(&AcquirerKind::$variant.sandbox_mount())
                        .map_err(|e| e.to_string())?,
                    policy,
                };
                simulators.insert(
                    AcquirerKind::$variant,
                    <$module::$settings as registry::AccountSettings>::simulator(&mine, &context)?,
                );
            )+
            Ok(simulators)
        }
    };
}
