//! Building and running the service: `Application::build` binds its own listener (port 0 picks a
//! free port), so tests start exactly what production starts.

use std::future::Future;
use std::sync::Arc;
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

use crate::config::{AcquirerSettings, Settings, sandbox_mount};
use crate::service::Services;
use crate::service::suppliers::{
    DirectoryError, MONETA_CHECK_PATH, MONETA_PAY_PATH, NETPAY_NOTIFICATION_PATH, SupplierDirectory,
};
use crate::store::{self, Store, StoreError};
use crate::vault::Vault;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Suppliers(#[from] DirectoryError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("public_base_url is not a usable base: {0}")]
    BaseUrl(String),
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    base_url: Url,
    services: Arc<Services>,
    sandboxes: Option<Sandboxes>,
}

/// The acquirer simulators mounted in demo mode.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    pub robokassa: RobokassaSandbox,
    pub net_pay: NetPaySandbox,
    pub moneta: MonetaSandbox,
}

/// The client every adapter uses to call its acquirer.
pub fn acquirer_http_client(timeout: Duration) -> Result<reqwest::Client, StartError> {
    oplata_providers::http_client(timeout).map_err(|e| StartError::HttpClient(e.to_string()))
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        settings.check()?;
        let settings = settings.with_demo_defaults();
        let listener = TcpListener::bind(settings.listen).await?;
        let address = listener.local_addr()?;
        let base_url = match &settings.public_base_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{address}/"))
                .map_err(|e| StartError::BaseUrl(e.to_string()))?,
        };
        if base_url.cannot_be_a_base() {
            return Err(StartError::BaseUrl(base_url.to_string()));
        }
        let store = store::connect_with(
            &settings.database_url,
            Duration::from_millis(settings.database_acquire_timeout_ms),
        )
        .await?;
        let http = acquirer_http_client(Duration::from_secs(settings.acquirer_timeout_secs))?;
        let suppliers = SupplierDirectory::build(&settings, &base_url, &http)?;
        let sandboxes = settings
            .sandbox_mounted()
            .then(|| sandboxes(&settings, &base_url, &base_url))
            .transpose()?;
        let vault = Vault::new(&settings.vault.active_key, &settings.vault.keys)?;
        let return_query_interval_ms = settings.public.return_query_interval_ms;
        // `check` has refused an unreadable list.
        let trusted_proxies =
            crate::http::client_address::TrustedProxies::parse(&settings.public.trusted_proxies)
                .unwrap_or_default();
        crate::metrics::handle();
        let services = Arc::new(Services {
            vault,
            store,
            suppliers,
            settings: Arc::new(settings),
            public_base_url: base_url.clone(),
            clock: crate::clock::Clock::default(),
            return_throttle: crate::service::throttle::QueryThrottle::new(Duration::from_millis(
                return_query_interval_ms,
            )),
            trusted_proxies,
            webhook_queue: Default::default(),
        });
        let extra = match &sandboxes {
            Some(s) => s.router(),
            None => Router::new(),
        };
        let router = crate::http::router(services.clone(), extra);
        Ok(Application {
            listener,
            router,
            base_url,
            services,
            sandboxes,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn store(&self) -> Arc<Store> {
        self.services.store.clone()
    }

    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    pub fn sandboxes(&self) -> Option<Sandboxes> {
        self.sandboxes.clone()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
        let workers = self.spawn_workers(workers_stop);
        // The peer address feeds the public page's per-IP limits.
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        served
    }

    /// The background workers of this replica (none when `workers.enabled` is false).
    fn spawn_workers(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let settings = &self.services.settings;
        if !settings.workers.enabled {
            return Vec::new();
        }
        let interval = Duration::from_millis(settings.workers.reconcile_interval_ms);
        let max_backoff = Duration::from_secs(settings.workers.max_backoff_secs);
        let purge_interval = Duration::from_secs(settings.personal_data.purge_interval_secs);
        let services = self.services.clone();
        let reconciliation = {
            let (services, stop) = (services.clone(), stop.clone());
            crate::workers::supervise("reconciliation", stop.clone(), move || {
                crate::workers::reconciliation::run(
                    services.clone(),
                    interval,
                    max_backoff,
                    stop.clone(),
                )
            })
        };
        let webhooks = {
            let (services, stop) = (services.clone(), stop.clone());
            crate::workers::supervise("webhooks", stop.clone(), move || {
                crate::workers::webhooks::run(services.clone(), interval, stop.clone())
            })
        };
        let purge = {
            let (services, stop) = (services, stop);
            crate::workers::supervise("purge", stop.clone(), move || {
                crate::workers::purge::run(services.clone(), purge_interval, stop.clone())
            })
        };
        vec![
            tokio::spawn(async move {
                reconciliation.await;
            }),
            tokio::spawn(async move {
                webhooks.await;
            }),
            tokio::spawn(async move {
                purge.await;
            }),
        ]
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// The signal (Ctrl-C, SIGTERM) that stops the service, for other servers of this binary.
    pub async fn shutdown_signal() {
        shutdown_signal().await;
    }
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
    let simulators = sandboxes(&settings, &oplata, &own)?;
    tracing::info!(address = %own, oplata = %oplata, "acquirer simulators are listening");
    axum::serve(listener, simulators.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// `oplata` is where the simulators send notifications and browsers back; `own` is where the
/// simulators themselves are reached.
fn sandboxes(settings: &Settings, oplata: &Url, own: &Url) -> Result<Sandboxes, StartError> {
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
                    result_url: join("/callbacks/robokassa/result")?,
                    success_url: join("/return/robokassa/success")?,
                    fail_url: join("/return/robokassa/fail")?,
                });
            }
            AcquirerSettings::NetPay(n) if n.base_url.is_none() => {
                net_pay.push(NetPayMerchant {
                    api_key: n.api_key.expose_secret().to_owned(),
                    auth: n.auth.clone(),
                    notification_url: Some(join(NETPAY_NOTIFICATION_PATH)?),
                });
            }
            AcquirerSettings::Moneta(m) if m.base_url.is_none() => {
                moneta.push(MonetaAccount {
                    account_id: m.account_id.clone(),
                    integrity_code: m.integrity_code.expose_secret().to_owned(),
                    api_username: m.api_username.clone(),
                    api_password: m.api_password.expose_secret().to_owned(),
                    payment_password: m.payment_password.expose_secret().to_owned(),
                    pay_url: join(MONETA_PAY_PATH)?,
                    check_url: Some(join(MONETA_CHECK_PATH)?),
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
