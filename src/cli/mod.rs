//! The `oplata` command line: serve (the default), migrate, manage API keys, operators, vault
//! keys and webhook secrets, show the configuration. `main.rs` only parses and reports.

mod access;
mod keys;
mod serve;
mod webhooks;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::service::api_keys::Scope;

#[derive(Debug, Parser)]
#[command(name = "oplata", version, about = "Payment service for utility bills")]
pub struct Cli {
    /// Configuration file (read if it exists).
    #[arg(
        long,
        env = "OPLATA_CONFIG",
        default_value = "oplata.toml",
        global = true
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
pub enum OperatorCommand {
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
    /// Enrol the operator's second factor (RFC 6238 codes from an authenticator app): prints an
    /// otpauth:// address and its secret once, then asks for a code from the app and stores the
    /// secret, sealed by the vault, only if the code matches. Replaces an earlier enrolment.
    SecondFactor {
        #[arg(long)]
        login: String,
        /// Forget the operator's second factor instead (a lost phone); in production mode they
        /// cannot sign in until enrolled again.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
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
pub enum KeysCommand {
    /// Print a new random key (base64) to put under vault.keys.
    Generate,
    /// Re-seal every live card token and operator second-factor secret under vault.active_key; keep the old keys configured until
    /// this has finished. Safe to run again.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
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

/// Runs one command to its end.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::serve(settings).await,
        Command::Sandbox => serve::sandbox(settings).await,
        Command::Migrate => serve::migrate(&settings).await,
        Command::ApiKey(command) => access::api_key(&settings, command).await,
        Command::Operator(command) => access::operator(&settings, command).await,
        Command::Keys(command) => keys::keys(&settings, command).await,
        Command::Webhooks(command) => webhooks::webhooks(command),
        Command::Config => show_config(settings),
    }
}

#[allow(clippy::print_stdout)]
fn show_config(settings: Settings) -> anyhow::Result<()> {
    let settings = settings.with_demo_defaults();
    println!(
        "{}",
        toml::to_string_pretty(&settings).context("configuration is not printable")?
    );
    Ok(())
}

/// The vault as `serve` builds it: in demo mode with the demo key when none is configured.
fn vault(settings: &Settings) -> anyhow::Result<crate::vault::Vault> {
    let settings = settings.clone().with_demo_defaults();
    Ok(crate::vault::Vault::new(
        &settings.vault.active_key,
        &settings.vault.keys,
    )?)
}
