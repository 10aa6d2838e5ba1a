//! Sealing the payer's personal data (rule 8) and the secret that lets the browser fetch the
//! acquirer's form built from it.

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

/// Seals the identity for `payment_id`; of the continue token (derived by the service, never
/// stored) only its hash is kept.
pub fn seal(
    vault: &Vault,
    payment_id: Uuid,
    identity: &PayerIdentity,
    token: &SecretString,
) -> Result<NewPayerData, ServiceError> {
    let json = SecretString::from(
        serde_json::to_string(identity)
            .map_err(|e| ServiceError::internal_from("the payer identity", e))?,
    );
    let sealed = vault.seal(&json, &binding(payment_id));
    Ok(NewPayerData {
        key_id: sealed.key_id,
        ciphertext: sealed.bytes,
        continue_token_hash: hash(token.expose_secret()),
    })
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
        .map_err(|e| ServiceError::internal(format!("personal data of {}: {e}", row.payment_id)))?;
    serde_json::from_str(json.expose_secret()).map_err(|_| {
        ServiceError::internal(format!("personal data of {} unreadable", row.payment_id))
    })
}
