//! Operators of the refunds desk: argon2id password hashes, sessions, and a brake on guessing.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{ServiceError, Services, second_factor};
use crate::store::{OperatorRecord, SessionRecord, Store, StoreError};

/// Failed logins for one login within `LOCKOUT_WINDOW` before further attempts are refused.
pub const MAX_FAILURES: i64 = 5;
/// Failed logins from one client address within `LOCKOUT_WINDOW` (all logins together).
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// Longer names are no login: refused without being checked or stored.
pub const MAX_LOGIN_LEN: usize = 64;
pub const LOCKOUT_WINDOW: Duration = Duration::minutes(15);
pub const SESSION_LIFETIME: Duration = Duration::hours(8);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OperatorError {
    #[error("the login must be 3 to 64 characters of a-z, 0-9, '.', '_' or '-'")]
    BadLogin,
    #[error("the name must be 1 to 128 characters")]
    BadName,
    #[error("the password must be at least 12 characters, not only spaces")]
    ShortPassword,
    #[error("the password is too easy to guess (a common word, name or pattern): choose another")]
    WeakPassword,
    #[error("an operator with this login exists")]
    Exists,
    #[error("no operator with this login")]
    Unknown,
    #[error("the code does not match: check the app's secret and the device's clock")]
    WrongCode,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// A wrong login, password or one-time code: which one is not said.
    #[error("wrong login, password or code")]
    Invalid,
    /// The password was right, but the settings admit no operator without a second factor.
    #[error("no second factor is enrolled for this operator")]
    SecondFactorMissing,
    #[error("too many failed attempts; try again later")]
    TooManyAttempts,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hash_password(password: &SecretString) -> Result<String, ServiceError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ServiceError::internal(format!("the password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::internal(format!("the password hash: {e}")))
}

fn password_matches(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A real argon2 hash of a random password, checked for unknown logins so that both paths
/// take the same time and timing does not tell which logins exist.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&SecretString::from(random_token())).unwrap_or_default())
}

pub async fn add(
    store: &Store,
    login: &str,
    name: &str,
    password: &SecretString,
) -> Result<OperatorRecord, ServiceError> {
    let login_ok = (3..=64).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !login_ok {
        return Err(OperatorError::BadLogin.into());
    }
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(OperatorError::BadName.into());
    }
    check_password(password, &[login, name])?;
    if store.find_operator(login).await?.is_some() {
        return Err(OperatorError::Exists.into());
    }
    let operator = OperatorRecord {
        id: Uuid::now_v7(),
        login: login.to_owned(),
        name: name.trim().to_owned(),
        password_hash: hash_password(password)?,
        created_at: OffsetDateTime::now_utc(),
        disabled_at: None,
        totp_key_id: None,
        totp_secret: None,
        totp_last_step: None,
    };
    store.insert_operator(&operator).await?;
    Ok(operator)
}

/// At least 12 characters that are not all whitespace, and not easy to guess by the zxcvbn
/// estimator (score 3 of 4 or better), the login and name counted as known words.
pub fn check_password(password: &SecretString, known: &[&str]) -> Result<(), OperatorError> {
    let text = password.expose_secret();
    if text.chars().count() < 12 || text.trim().is_empty() {
        return Err(OperatorError::ShortPassword);
    }
    let estimate = zxcvbn::zxcvbn(text, known);
    if u8::from(estimate.score()) < 3 {
        return Err(OperatorError::WeakPassword);
    }
    Ok(())
}

/// What an operator types to sign in; `code` is the second factor's current code.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub login: &'a str,
    pub password: &'a SecretString,
    pub code: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// A new session: the cookie value (shown once) and its CSRF token.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub csrf_token: String,
}

/// Counts an attempt against `key` before anything is checked; the count includes every
/// attempt already recorded, so of N concurrent attempts only the first `max` to be recorded
/// pass. Returns the attempt's id when it may go on.
async fn reserve_attempt(
    store: &Store,
    key: &str,
    max: i64,
    now: OffsetDateTime,
) -> Result<Result<Uuid, Uuid>, StoreError> {
    let id = store.record_login_failure(key, now).await?;
    let counted = store
        .login_failures_since(key, now - LOCKOUT_WINDOW)
        .await?;
    Ok(if counted > max { Err(id) } else { Ok(id) })
}

/// The brake key of a client address (logins cannot contain ':').
fn address_key(client: &str) -> String {
    format!("addr:{client}")
}

/// Signs an operator in. Each attempt is counted as a failure before its password is checked,
/// per login and per client address, and forgotten only when it succeeds: at most
/// `MAX_FAILURES` wrong passwords are ever checked per login per window, however many arrive at
/// once. The hash is checked on the blocking pool, never on the async runtime. After the
/// password, the second factor's code when one is enrolled; where the settings require one (as
/// production does), an operator without one is not let in.
pub async fn login(
    services: &Services,
    credentials: &Credentials<'_>,
    client: &str,
    now: OffsetDateTime,
) -> Result<Result<NewSession, LoginError>, ServiceError> {
    let Credentials {
        login,
        password,
        code,
    } = *credentials;
    let store = services.store.as_ref();
    if login.is_empty() || login.len() > MAX_LOGIN_LEN {
        return Ok(Err(LoginError::Invalid));
    }
    let by_address =
        match reserve_attempt(store, &address_key(client), MAX_FAILURES_PER_ADDRESS, now).await? {
            Ok(id) => id,
            Err(_) => return Ok(Err(LoginError::TooManyAttempts)),
        };
    let by_login = match reserve_attempt(store, login, MAX_FAILURES, now).await? {
        Ok(id) => id,
        Err(_) => return Ok(Err(LoginError::TooManyAttempts)),
    };
    let operator = store.find_operator(login).await?;
    let hash = operator
        .as_ref()
        .map_or(decoy_hash(), |o| o.password_hash.as_str())
        .to_owned();
    let secret = password.clone();
    let matches = tokio::task::spawn_blocking(move || password_matches(&hash, &secret))
        .await
        .unwrap_or(false);
    let operator = match operator {
        Some(o) if matches && o.disabled_at.is_none() => o,
        Some(_) | None => return Ok(Err(LoginError::Invalid)),
    };
    // A wrong code stays counted as a failure, like a wrong password: the brake covers both.
    if operator.totp_secret.is_some() {
        let code = code.unwrap_or_default();
        if !second_factor::verify(store, &services.vault, &operator, code, now).await? {
            return Ok(Err(LoginError::Invalid));
        }
    } else if services.settings.desk_requires_second_factor() {
        return Ok(Err(LoginError::SecondFactorMissing));
    }
    store.forget_login_failure(by_login).await?;
    store.forget_login_failure(by_address).await?;
    let token = random_token();
    let csrf_token = random_token();
    store
        .insert_session(
            &token_hash(&token),
            operator.id,
            &csrf_token,
            now,
            now + SESSION_LIFETIME,
        )
        .await?;
    tracing::info!(operator = %operator.login, "operator signed in");
    Ok(Ok(NewSession {
        token: SecretString::from(token),
        csrf_token,
    }))
}

pub async fn session(
    services: &Services,
    token: &str,
    now: OffsetDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    services.store.find_session(&token_hash(token), now).await
}

pub async fn logout(services: &Services, token: &str) -> Result<(), StoreError> {
    services.store.delete_session(&token_hash(token)).await
}

/// A token for forms shown before a session exists (the login form).
pub fn form_token() -> String {
    random_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) -> Result<(), OperatorError> {
        check_password(&SecretString::from(password), &["olga", "Ольга Петрова"])
    }

    #[test]
    fn blank_short_common_or_personal_passwords_are_refused() {
        assert_eq!(check("            "), Err(OperatorError::ShortPassword));
        assert_eq!(check("short1!"), Err(OperatorError::ShortPassword));
        for weak in [
            "password1234",
            "qwertyuiop12",
            "olga12345678",
            "111111111111",
        ] {
            assert_eq!(check(weak), Err(OperatorError::WeakPassword), "{weak}");
        }
        assert_eq!(check("correct horse battery"), Ok(()));
        assert_eq!(check("плотник-ёж-97-вечер"), Ok(()));
    }
}
