//! The desk's second factor: RFC 6238 time-based codes (six digits, 30-second steps, HMAC-SHA-1,
//! as every authenticator app reads an `otpauth://` address). The shared secret is sealed by the
//! vault like a card token, bound to the operator; a code is accepted once (RFC 6238, 5.2), one
//! step of clock drift either way.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use totp_rs::{Builder, Secret, Totp};
use uuid::Uuid;

use super::ServiceError;
use super::operators::OperatorError;
use crate::store::{OperatorRecord, Store};
use crate::vault::{Sealed, Vault};

/// The name authenticator apps show above the code.
pub const ISSUER: &str = "oplata";
/// 160 bits, the length RFC 4226 recommends for HMAC-SHA-1.
const SECRET_BYTES: usize = 20;

/// What the vault binds a sealed secret to: it opens for this operator only.
fn binding(operator_id: Uuid) -> Vec<u8> {
    format!("operator-second-factor:{operator_id}").into_bytes()
}

fn totp(secret_base32: &SecretString, login: &str) -> Result<Totp, ServiceError> {
    let secret = Secret::try_from_base32(secret_base32.expose_secret())
        .map_err(|e| ServiceError::internal(format!("a second-factor secret: {e}")))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(login)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| ServiceError::internal(format!("a second-factor generator: {e}")))
}

/// The time step a code belongs to, if it is the code of the current step or of one step
/// before or after it.
fn matching_step(totp: &Totp, code: &str, now: OffsetDateTime) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = u64::try_from(now.unix_timestamp()).ok()?;
    let step = totp.check(&code, seconds)?;
    i64::try_from(step).ok()
}

/// A new secret for an operator, not stored until a code from it is confirmed; shown once.
pub struct Enrolment {
    login: String,
    secret_base32: SecretString,
    url: SecretString,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Enrolment {
    /// The secret as typed into an app by hand (base32).
    pub fn secret_base32(&self) -> &SecretString {
        &self.secret_base32
    }

    /// The `otpauth://` address an app reads from a QR code.
    pub fn url(&self) -> &SecretString {
        &self.url
    }
}

/// Draws a secret for `login` (which must name an operator).
pub async fn begin(store: &Store, login: &str) -> Result<Enrolment, ServiceError> {
    if store.find_operator(login).await?.is_none() {
        return Err(OperatorError::Unknown.into());
    }
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret_base32 = SecretString::from(Secret::from(bytes.to_vec()).to_base32());
    bytes.fill(0);
    let url = totp(&secret_base32, login)?
        .to_url()
        .map_err(|e| ServiceError::internal(format!("a second-factor address: {e}")))?;
    Ok(Enrolment {
        login: login.to_owned(),
        secret_base32,
        url: SecretString::from(url),
    })
}

/// Stores the enrolment's secret, sealed, once `code` shows the operator's app holds it; the
/// code is spent (it does not also sign in). Replaces any earlier secret.
pub async fn finish(
    store: &Store,
    vault: &Vault,
    enrolment: &Enrolment,
    code: &str,
    now: OffsetDateTime,
) -> Result<(), ServiceError> {
    let operator = store
        .find_operator(&enrolment.login)
        .await?
        .ok_or(OperatorError::Unknown)?;
    let step = matching_step(&totp(&enrolment.secret_base32, &operator.login)?, code, now)
        .ok_or(OperatorError::WrongCode)?;
    let sealed = vault.seal(&enrolment.secret_base32, &binding(operator.id));
    if !store
        .set_operator_second_factor(&operator.login, Some((&sealed.key_id, &sealed.bytes)))
        .await?
    {
        return Err(OperatorError::Unknown.into());
    }
    store.accept_second_factor_step(operator.id, step).await?;
    Ok(())
}

/// Forgets an operator's second factor (a lost phone); false when no such operator.
pub async fn remove(store: &Store, login: &str) -> Result<bool, ServiceError> {
    Ok(store.set_operator_second_factor(login, None).await?)
}

/// Whether `code` is a fresh code of the operator's enrolled secret; a code is accepted once,
/// and a code of a step before the last accepted one never.
pub async fn verify(
    store: &Store,
    vault: &Vault,
    operator: &OperatorRecord,
    code: &str,
    now: OffsetDateTime,
) -> Result<bool, ServiceError> {
    let (Some(key_id), Some(bytes)) = (&operator.totp_key_id, &operator.totp_secret) else {
        return Ok(false);
    };
    let sealed = Sealed {
        key_id: key_id.clone(),
        bytes: bytes.clone(),
    };
    let secret = vault
        .open(&sealed, &binding(operator.id))
        .map_err(|e| ServiceError::internal(format!("operator {}: {e}", operator.id)))?;
    let Some(step) = matching_step(&totp(&secret, &operator.login)?, code, now) else {
        return Ok(false);
    };
    if operator.totp_last_step.is_some_and(|last| last >= step) {
        return Ok(false);
    }
    Ok(store.accept_second_factor_step(operator.id, step).await?)
}

/// Re-seals every operator's secret under the vault's active key.
pub async fn rotate_keys(
    store: &Store,
    vault: &Vault,
) -> Result<super::cards::Rotation, super::cards::RotationError> {
    let mut rotation = super::cards::Rotation::default();
    for operator in store.operators_to_reseal(vault.active_key_id()).await? {
        let (Some(old_key), Some(bytes)) = (&operator.totp_key_id, &operator.totp_secret) else {
            rotation.skipped += 1;
            continue;
        };
        let resealed = vault
            .reseal(old_key, bytes, &binding(operator.id))
            .map_err(|e| super::cards::RotationError::Operator(operator.id, e))?;
        if store
            .reseal_operator_second_factor(operator.id, old_key, &resealed.key_id, &resealed.bytes)
            .await?
        {
            rotation.resealed += 1;
        } else {
            rotation.skipped += 1;
        }
    }
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1: the ASCII secret "12345678901234567890" at T = 59 s gives
    /// 94287082 in eight digits, so 287082 in six.
    #[test]
    fn codes_are_those_of_rfc_6238() {
        let secret = SecretString::from(Secret::from(b"12345678901234567890".to_vec()).to_base32());
        let generator = totp(&secret, "operator").expect("a valid generator");
        let at = |seconds| OffsetDateTime::from_unix_timestamp(seconds).expect("a time");
        assert_eq!(matching_step(&generator, "287082", at(59)), Some(1));
        assert_eq!(matching_step(&generator, "287 082", at(59)), Some(1));
        // One step of drift either way, no more.
        assert_eq!(matching_step(&generator, "287082", at(59 + 30)), Some(1));
        assert_eq!(matching_step(&generator, "287082", at(59 + 60)), None);
        assert_eq!(matching_step(&generator, "287083", at(59)), None);
        assert_eq!(matching_step(&generator, "２８７０８２", at(59)), None);
        assert_eq!(matching_step(&generator, "", at(59)), None);
    }

    #[test]
    fn the_enrolment_debug_shows_no_secret() {
        let enrolment = Enrolment {
            login: "anna".into(),
            secret_base32: SecretString::from("JBSWY3DPEHPK3PXP".to_owned()),
            url: SecretString::from(
                "otpauth://totp/oplata:anna?secret=JBSWY3DPEHPK3PXP".to_owned(),
            ),
        };
        let shown = format!("{enrolment:?}");
        assert!(!shown.contains("JBSWY3DPEHPK3PXP"), "{shown}");
    }
}
