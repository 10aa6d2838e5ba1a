//! Who may call: portal, SMS-gateway and desk API keys, and the desk's operators.

use secrecy::ExposeSecret;

use super::{ApiKeyCommand, OperatorCommand};
use crate::config::Settings;
use crate::service::api_keys;

#[allow(clippy::print_stdout)]
pub(super) async fn api_key(settings: &Settings, command: ApiKeyCommand) -> anyhow::Result<()> {
    let store = crate::store::connect(&settings.database_url).await?;
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
    Ok(())
}

#[allow(clippy::print_stdout)]
pub(super) async fn operator(settings: &Settings, command: OperatorCommand) -> anyhow::Result<()> {
    let store = crate::store::connect(&settings.database_url).await?;
    match command {
        OperatorCommand::Add { login, name } => {
            let password = read_password()?;
            let operator =
                crate::service::operators::add(store.as_ref(), &login, &name, &password).await?;
            println!("operator {} added", operator.login);
        }
        OperatorCommand::Disable { login } => {
            let disabled = store
                .disable_operator(&login, time::OffsetDateTime::now_utc())
                .await?;
            anyhow::ensure!(disabled, "no active operator {login}");
            println!("operator {login} disabled; their sessions are ended");
        }
        OperatorCommand::SecondFactor {
            login,
            remove: true,
        } => {
            let removed = crate::service::second_factor::remove(store.as_ref(), &login).await?;
            anyhow::ensure!(removed, "no operator {login}");
            println!("the second factor of operator {login} is removed");
        }
        OperatorCommand::SecondFactor {
            login,
            remove: false,
        } => {
            let vault = super::vault(settings)?;
            let enrolment = crate::service::second_factor::begin(store.as_ref(), &login).await?;
            println!(
                "Add this to the operator's authenticator app (as a QR code, or type the secret):\n  \
                 {}\n  secret: {}",
                enrolment.url().expose_secret(),
                enrolment.secret_base32().expose_secret()
            );
            let code = read_line("Code shown by the app: ")?;
            crate::service::second_factor::finish(
                store.as_ref(),
                &vault,
                &enrolment,
                &code,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            println!("second factor enrolled for operator {login}");
        }
    }
    Ok(())
}

/// One line of standard input, after a prompt on standard error.
#[allow(clippy::print_stderr)]
fn read_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Asked for on a terminal (not echoed), read from standard input otherwise.
fn read_password() -> anyhow::Result<secrecy::SecretString> {
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        rpassword::prompt_password("Password (at least 12 characters): ")?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(secrecy::SecretString::from(password))
}
