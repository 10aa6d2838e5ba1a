//! API keys: created once and shown once; only a SHA-256 of each is stored.
//!
//! Keys carry 256 random bits, so a fast hash is the right tool (as for GitHub tokens): a slow
//! password hash protects guessable secrets, which these are not.

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{ApiClientRecord, Store, StoreError};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The customer portal's backend.
    Portal,
    /// The SMS gateway.
    Sms,
    /// The refunds desk.
    Desk,
    /// Administration.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Portal => "portal",
            Scope::Sms => "sms",
            Scope::Desk => "desk",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Scope::Portal, Scope::Sms, Scope::Desk, Scope::Admin]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An authenticated API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub id: Uuid,
    pub name: String,
    pub scope: Scope,
}

const KEY_PREFIX: &str = "opk_";

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key for a client and returns it: the only time the key exists outside the client.
pub async fn create(
    store: &Store,
    name: &str,
    scope: Scope,
) -> Result<(ApiClientRecord, SecretString), StoreError> {
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let record = ApiClientRecord {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        scope: scope.as_str().to_owned(),
        key_hash: hash_key(&key),
        key_prefix: key.chars().take(KEY_PREFIX.len() + 6).collect(),
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    store.insert_api_client(&record).await?;
    Ok((record, SecretString::from(key)))
}

/// Finds the live client a presented key belongs to.
pub async fn authenticate(
    store: &Store,
    presented: &SecretString,
) -> Result<Option<ApiClient>, StoreError> {
    let key = presented.expose_secret();
    if !key.starts_with(KEY_PREFIX) || key.len() > 128 {
        return Ok(None);
    }
    let Some(record) = store.find_api_client_by_key_hash(&hash_key(key)).await? else {
        return Ok(None);
    };
    let scope = Scope::parse(&record.scope)
        .ok_or_else(|| StoreError::Corrupt(format!("api client {} scope", record.id)))?;
    Ok(Some(ApiClient {
        id: record.id,
        name: record.name,
        scope,
    }))
}
