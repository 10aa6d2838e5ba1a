//! The vault's keys: a new one, and re-sealing every saved card under the active one.

use secrecy::ExposeSecret;

use super::KeysCommand;
use crate::config::Settings;

#[allow(clippy::print_stdout)]
pub(super) async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => {
            println!("{}", crate::vault::Vault::generate_key().expose_secret());
        }
        KeysCommand::Rotate => {
            let vault = super::vault(settings)?;
            let store = crate::store::connect(&settings.database_url).await?;
            let done = crate::service::cards::rotate_keys(store.as_ref(), &vault).await?;
            println!(
                "re-sealed {} card token(s) under {:?}; {} changed meanwhile and were skipped",
                done.resealed,
                vault.active_key_id(),
                done.skipped
            );
            let done = crate::service::second_factor::rotate_keys(store.as_ref(), &vault).await?;
            println!(
                "re-sealed {} operator second-factor secret(s); {} changed meanwhile and were \
                 skipped",
                done.resealed, done.skipped
            );
        }
    }
    Ok(())
}
