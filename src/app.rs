//! Building and running the service: `Application::build` binds its own listener (port 0 picks a
//! free port), so tests start exactly what production starts.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use url::Url;

use crate::config::Settings;
#[cfg(feature = "sandbox")]
pub use crate::sandbox::{Sandboxes, serve_sandboxes};
use crate::service::Services;
use crate::service::suppliers::{DirectoryError, SupplierDirectory};
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
    /// Demo settings ask for the simulators, but this build left them out.
    #[error(
        "this build has no acquirer simulators (built without the `sandbox` feature): \
         set sandbox.enabled = false and a base_url for every acquirer"
    )]
    NoSimulators,
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    base_url: Url,
    services: Arc<Services>,
    #[cfg(feature = "sandbox")]
    sandboxes: Option<Sandboxes>,
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
        #[cfg(feature = "sandbox")]
        let sandboxes = settings
            .sandbox_mounted()
            .then(|| crate::sandbox::assemble(&settings, &base_url, &base_url))
            .transpose()?;
        #[cfg(not(feature = "sandbox"))]
        if settings.sandbox_in_use() {
            return Err(StartError::NoSimulators);
        }
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
        #[cfg(feature = "sandbox")]
        let extra = sandboxes
            .as_ref()
            .map(Sandboxes::router)
            .unwrap_or_default();
        #[cfg(not(feature = "sandbox"))]
        let extra = Router::new();
        let router = crate::http::router(services.clone(), extra);
        Ok(Application {
            listener,
            router,
            base_url,
            services,
            #[cfg(feature = "sandbox")]
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

    #[cfg(feature = "sandbox")]
    pub fn sandboxes(&self) -> Option<Sandboxes> {
        self.sandboxes.clone()
    }

    /// Serves until `shutdown` completes; then stops the workers at once and lets requests in
    /// flight finish for at most `shutdown_grace_secs`. Every step a request or a pass takes is
    /// a recovery point (the exactly-once issue), so one cut short is resumed by its retry or
    /// the next pass.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.services.settings.shutdown_grace_secs);
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let workers = self.spawn_workers(stopped.clone());
        let signalled = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        // The peer address feeds the public page's per-IP limits.
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signalled)
        .into_future();
        let served = tokio::select! {
            served = serve => served,
            () = async {
                let _ = stopped.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "requests still running after the shutdown grace period are cut off"
                );
                Ok(())
            }
        };
        // Workers stop at the signal; a pass stuck on a slow endpoint is not waited for long.
        for mut worker in workers {
            if tokio::time::timeout(WORKER_STOP_WAIT, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
            }
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

/// How long a worker is given to notice the shutdown before it is aborted.
const WORKER_STOP_WAIT: Duration = Duration::from_secs(2);

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
