//! The `oplata` command: serve (default), migrate, manage API keys, show the configuration.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oplata::app::Application;
use oplata::config::Settings;
use oplata::service::api_keys::{self, Scope};
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(name = "oplata", version, about = "Payment service for utility bills")]
struct Cli {
    /// Configuration file (read if it exists).
    #[arg(
        long,
        env = "OPLATA_CONFIG",
        default_value = "oplata.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Print the effective configuration, secrets as ***.
    Config,
    /// Manage the keys that seal saved-card tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Operators of the refunds desk.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Outbound webhooks: make a secret, or check a received event's signature.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Run the acquirer simulators alone, at `sandbox.url` (demo mode): start `oplata serve`
    /// with the same `sandbox.url` and it talks to them there, as to a real acquirer that
    /// does not die with it.
    Sandbox,
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Add an operator; the password is asked for (or read from standard input when it is not
    /// a terminal) and only its argon2 hash is stored.
    Add {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
    },
    /// Disable an operator and end their sessions.
    Disable {
        #[arg(long)]
        login: String,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Print a new whsec_ secret for an endpoint.
    Secret,
    /// Check a received event: exits 0 if the signature matches and the timestamp is fresh.
    Verify {
        /// One or more whsec_ secrets (during a rotation, both).
        #[arg(long = "secret", required = true)]
        secrets: Vec<String>,
        /// The webhook-id header.
        #[arg(long)]
        id: String,
        /// The webhook-timestamp header.
        #[arg(long)]
        timestamp: String,
        /// The webhook-signature header.
        #[arg(long)]
        signature: String,
        /// The body exactly as received: a file path, or - for standard input.
        #[arg(long)]
        payload: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random key (base64) to put under vault.keys.
    Generate,
    /// Re-seal every live token under vault.active_key; keep the old keys configured until
    /// this has finished. Safe to run again.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        client: String,
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List keys (prefixes only).
    List,
    /// Revoke a key by its id.
    Revoke { id: uuid::Uuid },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One readable line (with causes); a backtrace helps nobody who misconfigured.
            eprintln!("oplata: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            oplata::telemetry::init(
                settings.mode,
                settings.log_format,
                &settings.log_filter,
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
                std::io::stdout,
            );
            let demo = settings.sandbox_mounted();
            let app = Application::build(settings).await?;
            tracing::info!(address = %app.base_url(), "oplata is listening");
            if demo {
                print_demo_help(&app).await?;
            }
            app.run_until_stopped().await?;
        }
        Command::Sandbox => {
            oplata::telemetry::init(
                settings.mode,
                settings.log_format,
                &settings.log_filter,
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
                std::io::stdout,
            );
            oplata::app::serve_sandboxes(settings, Application::shutdown_signal()).await?;
        }
        Command::Migrate => {
            oplata::store::connect(&settings.database_url).await?;
            println!(
                "migrations applied to {}",
                oplata::store::redact_url(&settings.database_url)
            );
        }
        Command::ApiKey(command) => {
            let store = oplata::store::connect(&settings.database_url).await?;
            match command {
                ApiKeyCommand::Create { client, scope } => {
                    let (record, key) = api_keys::create(store.as_ref(), &client, scope).await?;
                    println!("id:    {}", record.id);
                    println!("scope: {}", record.scope);
                    println!("key:   {}", key.expose_secret());
                    println!("The key is shown only now; store it in the client's secret store.");
                }
                ApiKeyCommand::List => {
                    for record in store.list_api_clients().await? {
                        let state = if record.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!(
                            "{}  {:<8} {:<8} {}…  {}",
                            record.id, record.scope, state, record.key_prefix, record.name
                        );
                    }
                }
                ApiKeyCommand::Revoke { id } => {
                    let revoked = store
                        .revoke_api_client(id, time::OffsetDateTime::now_utc())
                        .await?;
                    anyhow::ensure!(revoked, "no active key with id {id}");
                    println!("revoked {id}");
                }
            }
        }
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", oplata::vault::Vault::generate_key().expose_secret());
        }
        Command::Keys(KeysCommand::Rotate) => {
            let vault =
                oplata::vault::Vault::new(&settings.vault.active_key, &settings.vault.keys)?;
            let store = oplata::store::connect(&settings.database_url).await?;
            let done = oplata::service::cards::rotate_keys(store.as_ref(), &vault).await?;
            println!(
                "re-sealed {} card token(s) under {:?}; {} changed meanwhile and were skipped",
                done.resealed,
                vault.active_key_id(),
                done.skipped
            );
        }
        Command::Operator(command) => {
            let store = oplata::store::connect(&settings.database_url).await?;
            match command {
                OperatorCommand::Add { login, name } => {
                    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        rpassword::prompt_password("Password (at least 12 characters): ")?
                    } else {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_owned()
                    };
                    let password = secrecy::SecretString::from(password);
                    let operator =
                        oplata::service::operators::add(store.as_ref(), &login, &name, &password)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("operator {} added", operator.login);
                }
                OperatorCommand::Disable { login } => {
                    let disabled = store
                        .disable_operator(&login, time::OffsetDateTime::now_utc())
                        .await?;
                    anyhow::ensure!(disabled, "no active operator {login}");
                    println!("operator {login} disabled; their sessions are ended");
                }
            }
        }
        Command::Webhooks(WebhooksCommand::Secret) => {
            println!("{}", oplata::webhooks::generate_secret().expose_secret());
        }
        Command::Webhooks(WebhooksCommand::Verify {
            secrets,
            id,
            timestamp,
            signature,
            payload,
        }) => {
            let body = if payload.as_os_str() == "-" {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
                body
            } else {
                std::fs::read(&payload)
                    .with_context(|| format!("cannot read {}", payload.display()))?
            };
            let secrets: Vec<secrecy::SecretString> = secrets
                .into_iter()
                .map(secrecy::SecretString::from)
                .collect();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            oplata::webhooks::verify(&secrets, &id, &timestamp, &signature, &body, now)?;
            println!("valid: the signature matches and the timestamp is fresh");
        }
        Command::Config => {
            let settings = settings.with_demo_defaults();
            println!(
                "{}",
                toml::to_string_pretty(&settings).context("configuration is not printable")?
            );
        }
    }
    Ok(())
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
