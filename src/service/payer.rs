//! Sealing the payer's personal data (rule 8) and the secret that lets the browser fetch the
//! acquirer's form built from it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ServiceError;
use crate::domain::payer::PayerIdentity;
use crate::store::{NewPayerData, PayerDataRecord};
use crate::vault::{Sealed, Vault};

/// The payment id is the associated data: sealed data moved to another payment does not open.
fn binding(payment_id: Uuid) -> Vec<u8> {
    format!("oplata-payer-v1\0{payment_id}").into_bytes()
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Seals the identity for `payment_id` and makes a continue token; only its hash is stored.
pub fn seal(
    vault: &Vault,
    payment_id: Uuid,
    identity: &PayerIdentity,
) -> Result<(NewPayerData, SecretString), ServiceError> {
    let json = SecretString::from(
        serde_json::to_string(identity).map_err(|e| ServiceError::Internal(e.to_string()))?,
    );
    let sealed = vault.seal(&json, &binding(payment_id));
    let token = new_token();
    let data = NewPayerData {
        key_id: sealed.key_id,
        ciphertext: sealed.bytes,
        continue_token_hash: hash(token.expose_secret()),
    };
    Ok((data, token))
}

fn new_token() -> SecretString {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    SecretString::from(URL_SAFE_NO_PAD.encode(secret))
}

/// A new continue token for a payment whose first token was lost with the request that made it
/// (the process died before answering); the old one stops working.
pub async fn renew_continue_token(
    services: &super::Services,
    payment_id: Uuid,
) -> Result<SecretString, ServiceError> {
    let token = new_token();
    services
        .store
        .replace_continue_token(payment_id, &hash(token.expose_secret()))
        .await?;
    Ok(token)
}

/// Compares in constant time.
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    hash(token).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Opens the stored identity; a purged or unopenable row is an error nobody sees the data of.
pub fn open(vault: &Vault, row: &PayerDataRecord) -> Result<PayerIdentity, ServiceError> {
    let (Some(key_id), Some(bytes)) = (&row.key_id, &row.ciphertext) else {
        return Err(ServiceError::NotFound);
    };
    let sealed = Sealed {
        key_id: key_id.clone(),
        bytes: bytes.clone(),
    };
    let json = vault
        .open(&sealed, &binding(row.payment_id))
        .map_err(|e| ServiceError::Internal(format!("personal data of {}: {e}", row.payment_id)))?;
    serde_json::from_str(json.expose_secret()).map_err(|_| {
        ServiceError::Internal(format!("personal data of {} unreadable", row.payment_id))
    })
}
