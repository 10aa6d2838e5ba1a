//! The acquirer simulators of the demo and the tests (cargo feature `sandbox`, on by default; a
//! production build can leave them out with `--no-default-features`): each configured account
//! without a real `base_url` gets an account at its acquirer's simulator, mounted under
//! `/sandbox/<acquirer>` or served alone by `oplata sandbox`.

use std::future::Future;
use std::time::Duration;

use oplata_providers::sandbox::DeliveryPolicy;
pub use oplata_providers::sandbox::Simulators as Sandboxes;
use tokio::net::TcpListener;
use url::Url;

use crate::app::StartError;
use crate::config::Settings;

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
/// simulators themselves are reached. Each acquirer's folder builds its simulator.
pub(crate) fn assemble(
    settings: &Settings,
    oplata: &Url,
    own: &Url,
) -> Result<Sandboxes, StartError> {
    let policy = DeliveryPolicy {
        retry_interval: Duration::from_millis(settings.sandbox.retry_interval_ms),
        max_attempts: settings.sandbox.max_attempts,
        ..DeliveryPolicy::default()
    };
    let accounts: Vec<_> = settings.suppliers.iter().map(|s| &s.acquirer).collect();
    oplata_providers::simulators(&accounts, oplata, own, policy).map_err(StartError::BaseUrl)
}
