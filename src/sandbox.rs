//! The acquirer simulators of the demo and the tests (cargo feature `sandbox`, on by default; a
//! production build can leave them out with `--no-default-features`): each configured account
//! without a real `base_url` gets an account at its acquirer's simulator, mounted under
//! `/sandbox/<acquirer>` or served alone by `oplata sandbox`.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use oplata_providers::AcquirerKind;
use oplata_providers::moneta::sandbox::{MonetaSandbox, SandboxAccount as MonetaAccount};
use oplata_providers::net_pay::sandbox::{NetPaySandbox, SandboxMerchant as NetPayMerchant};
use oplata_providers::robokassa::sandbox::{
    RobokassaSandbox, SandboxMerchant as RobokassaMerchant,
};
use oplata_providers::sandbox::DeliveryPolicy;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use url::Url;

use crate::app::StartError;
use crate::config::{AcquirerSettings, Settings, sandbox_mount};

/// The acquirer simulators mounted in demo mode.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    pub robokassa: RobokassaSandbox,
    pub net_pay: NetPaySandbox,
    pub moneta: MonetaSandbox,
}

/// The in-process simulators, with an account for each supplier that has no real base URL.
impl Sandboxes {
    /// The three simulators, each under its mount.
    pub fn router(&self) -> Router {
        Router::new()
            .nest(
                sandbox_mount(AcquirerKind::Robokassa),
                self.robokassa.router(),
            )
            .nest(sandbox_mount(AcquirerKind::NetPay), self.net_pay.router())
            .nest(sandbox_mount(AcquirerKind::Moneta), self.moneta.router())
    }
}

/// The simulators alone, in a process of their own (`oplata sandbox`): they listen where
/// `sandbox.url` says and notify oplata at its `public_base_url`, and keep their books when
/// oplata dies, as a real acquirer does.
pub async fn serve_sandboxes(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    settings.check()?;
    let settings = settings.with_demo_defaults();
    let Some(own) = settings
        .sandbox
        .url
        .clone()
        .filter(|_| settings.sandbox_in_use())
    else {
        return Err(StartError::BaseUrl(
            "oplata sandbox needs demo mode and sandbox.url (where it listens)".into(),
        ));
    };
    let oplata = match &settings.public_base_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{}/", settings.listen))
            .map_err(|e| StartError::BaseUrl(e.to_string()))?,
    };
    let address = own
        .socket_addrs(|| None)
        .map_err(|e| StartError::BaseUrl(format!("sandbox.url: {e}")))?;
    let listener = TcpListener::bind(&*address).await?;
    let simulators = assemble(&settings, &oplata, &own)?;
    tracing::info!(address = %own, oplata = %oplata, "acquirer simulators are listening");
    axum::serve(listener, simulators.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// `oplata` is where the simulators send notifications and browsers back; `own` is where the
/// simulators themselves are reached.
pub(crate) fn assemble(
    settings: &Settings,
    oplata: &Url,
    own: &Url,
) -> Result<Sandboxes, StartError> {
    let base_url = oplata;
    let join = |path: &str| {
        base_url
            .join(path)
            .map_err(|e| StartError::BaseUrl(e.to_string()))
    };
    let mut robokassa = Vec::new();
    let mut net_pay = Vec::new();
    let mut moneta = Vec::new();
    for supplier in &settings.suppliers {
        match &supplier.acquirer {
            AcquirerSettings::Robokassa(r) if r.base_url.is_none() => {
                robokassa.push(RobokassaMerchant {
                    login: r.merchant_login.clone(),
                    password1: r.password1.expose_secret().to_owned(),
                    password2: r.password2.expose_secret().to_owned(),
                    password3: r
                        .password3
                        .as_ref()
                        .map(|p| p.expose_secret().to_owned())
                        .unwrap_or_default(),
                    hash: r.hash,
                    result_url: join(oplata_providers::robokassa::protocol::RESULT_PATH)?,
                    success_url: join("/return/robokassa/success")?,
                    fail_url: join("/return/robokassa/fail")?,
                });
            }
            AcquirerSettings::NetPay(n) if n.base_url.is_none() => {
                net_pay.push(NetPayMerchant {
                    api_key: n.api_key.expose_secret().to_owned(),
                    auth: n.auth.clone(),
                    notification_url: Some(join(
                        oplata_providers::net_pay::protocol::NOTIFICATION_PATH,
                    )?),
                });
            }
            AcquirerSettings::Moneta(m) if m.base_url.is_none() => {
                moneta.push(MonetaAccount {
                    account_id: m.account_id.clone(),
                    integrity_code: m.integrity_code.expose_secret().to_owned(),
                    api_username: m.api_username.clone(),
                    api_password: m.api_password.expose_secret().to_owned(),
                    payment_password: m.payment_password.expose_secret().to_owned(),
                    pay_url: join(oplata_providers::moneta::protocol::PAY_PATH)?,
                    check_url: Some(join(oplata_providers::moneta::protocol::CHECK_PATH)?),
                });
            }
            AcquirerSettings::Robokassa(_)
            | AcquirerSettings::NetPay(_)
            | AcquirerSettings::Moneta(_) => {}
        }
    }
    let policy = DeliveryPolicy {
        retry_interval: Duration::from_millis(settings.sandbox.retry_interval_ms),
        max_attempts: settings.sandbox.max_attempts,
        ..DeliveryPolicy::default()
    };
    Ok(Sandboxes {
        robokassa: RobokassaSandbox::new(robokassa, policy),
        net_pay: NetPaySandbox::new(net_pay, policy),
        moneta: MonetaSandbox::new(
            moneta,
            policy,
            &own.join(sandbox_mount(AcquirerKind::Moneta))
                .map_err(|e| StartError::BaseUrl(e.to_string()))?,
        ),
    })
}
