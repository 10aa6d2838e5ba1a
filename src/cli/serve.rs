//! Running: the service, the acquirer simulators alone, the migrations.

use std::io::Write;

use secrecy::ExposeSecret;

use crate::app::Application;
use crate::config::Settings;
use crate::service::api_keys::{self, Scope};

pub(super) async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_logs(&settings);
    let demo = settings.sandbox_mounted();
    let app = Application::build(settings).await?;
    tracing::info!(address = %app.base_url(), "oplata is listening");
    if demo {
        print_demo_help(&app).await?;
    }
    app.run_until_stopped().await?;
    Ok(())
}

#[cfg(feature = "sandbox")]
pub(super) async fn sandbox(settings: Settings) -> anyhow::Result<()> {
    init_logs(&settings);
    crate::sandbox::serve_sandboxes(settings, Application::shutdown_signal()).await?;
    Ok(())
}

#[cfg(not(feature = "sandbox"))]
pub(super) async fn sandbox(_: Settings) -> anyhow::Result<()> {
    Err(crate::app::StartError::NoSimulators.into())
}

#[allow(clippy::print_stdout)]
pub(super) async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    crate::store::connect(&settings.database_url).await?;
    println!(
        "migrations applied to {}",
        crate::store::redact_url(&settings.database_url)
    );
    Ok(())
}

fn init_logs(settings: &Settings) {
    crate::telemetry::init(
        settings.mode,
        settings.log_format,
        &settings.log_filter,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::io::stdout,
    );
}
/// In demo mode, a portal key and the exact command that creates a demo payment.
async fn print_demo_help(app: &Application) -> anyhow::Result<()> {
    let (_, key) = api_keys::create(app.store().as_ref(), "demo portal", Scope::Portal).await?;
    let base = app.base_url().as_str().trim_end_matches('/');
    // Printing may fail (stdout closed); the service must not die of it.
    let _ = writeln!(
        std::io::stdout(),
        "\noplata demo is running at {base}\n\
         A portal API key for this run: {key}\n\n\
         Create a demo payment:\n\n  \
         curl -s {base}/v1/payments -H 'Authorization: Bearer {key}' \\\n    \
         -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"supplier_id\":\"demo-electro\",\"account_number\":\"1234567890\",\"amount\":\"1500.00\",\"currency\":\"RUB\",\"description\":\"Электроэнергия\",\"email\":\"ivan@example.ru\"}}'\n\n\
         Open next_action.url in a browser and press «Оплатить»; then\n  \
         curl -s {base}/v1/payments/<id> -H 'Authorization: Bearer {key}'\n\n\
         Other demo suppliers: demo-water (NetPay, account 00123456) and demo-gibdd (Moneta with\n\
         3-D Secure, account 18810177230000012345, one-time code 12345). Their next_action is a\n\
         form to POST: see the README. demo-kindergarten (budget, account 12345678) needs\n\
         passport data.\n\n\
         Or pay without a key, as anyone can, on the public page: {base}/pay\n",
        key = key.expose_secret()
    );
    Ok(())
}
