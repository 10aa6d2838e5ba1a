//! Outbound webhooks from the receiver's side: a new secret, and checking a received event.

use anyhow::Context;
use secrecy::ExposeSecret;

use super::WebhooksCommand;

#[allow(clippy::print_stdout)]
pub(super) fn webhooks(command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Secret => {
            println!("{}", crate::webhooks::generate_secret().expose_secret());
        }
        WebhooksCommand::Verify {
            secrets,
            id,
            timestamp,
            signature,
            payload,
        } => {
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
            crate::webhooks::verify(&secrets, &id, &timestamp, &signature, &body, now)?;
            println!("valid: the signature matches and the timestamp is fresh");
        }
    }
    Ok(())
}
