//! Encryption at rest of the only card secret oplata keeps: the acquirer's recurring token.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal; keys come from configuration by id
//! and the id is stored beside each ciphertext, so keys rotate: new seals use the active key,
//! older ciphertexts open with the key they name until `oplata keys rotate` re-seals them. The
//! owner's user id and the card id are the associated data, so a ciphertext copied to another
//! row (another user, another card) does not open.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

const NONCE_LEN: usize = 24;

/// A sealed secret: which key, and nonce followed by ciphertext and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed {{ key_id: {:?}, bytes: <{} bytes> }}",
            self.key_id,
            self.bytes.len()
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("vault key {0:?} is not configured")]
    UnknownKey(String),
    #[error("vault key {0:?} must be 32 bytes of standard base64")]
    BadKey(String),
    #[error("the active vault key {0:?} is not among the configured keys")]
    NoActiveKey(String),
    /// Wrong key, tampered bytes, or a ciphertext moved to another row: indistinguishable, on
    /// purpose.
    #[error("the ciphertext does not open")]
    DoesNotOpen,
}

pub struct Vault {
    active: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
    /// Per key, a separate key for message authentication (derived, so a MAC never reveals
    /// anything about the sealing key).
    mac_keys: BTreeMap<String, [u8; 32]>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&String> = self.keys.keys().collect();
        write!(f, "Vault {{ active: {:?}, keys: {ids:?} }}", self.active)
    }
}

/// The associated data binding a card's token to its owner and to its row.
pub fn card_binding(user_id: &str, card_id: uuid::Uuid) -> Vec<u8> {
    format!("oplata-card-token-v1\0{user_id}\0{card_id}").into_bytes()
}

impl Vault {
    pub fn new(active: &str, keys: &BTreeMap<String, SecretString>) -> Result<Self, VaultError> {
        let mut ciphers = BTreeMap::new();
        let mut mac_keys = BTreeMap::new();
        for (id, encoded) in keys {
            let bytes = STANDARD
                .decode(encoded.expose_secret().trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| VaultError::BadKey(id.clone()))?;
            mac_keys.insert(id.clone(), hmac_sha256(&bytes, b"oplata-mac-key-v1"));
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| VaultError::BadKey(id.clone()))?;
            ciphers.insert(id.clone(), cipher);
        }
        if !ciphers.contains_key(active) {
            return Err(VaultError::NoActiveKey(active.to_owned()));
        }
        Ok(Vault {
            active: active.to_owned(),
            keys: ciphers,
            mac_keys,
        })
    }

    /// A tag over `message` under the active key, for values oplata hands out and must
    /// recognise later (the proof in a return address).
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.mac_keys[&self.active], message)
    }

    /// Whether `tag` was made by [`Vault::tag`] under any configured key (so rotation does not
    /// break addresses already handed out). `tag` may be a prefix of at least 16 bytes.
    pub fn tag_matches(&self, message: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        tag.len() >= 16
            && tag.len() <= 32
            && self
                .mac_keys
                .values()
                .any(|key| bool::from(hmac_sha256(key, message)[..tag.len()].ct_eq(tag)))
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn seal(&self, secret: &SecretString, associated: &[u8]) -> Sealed {
        let cipher = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: associated,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory message cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.active.clone(),
            bytes,
        }
    }

    pub fn open(&self, sealed: &Sealed, associated: &[u8]) -> Result<SecretString, VaultError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(VaultError::DoesNotOpen);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::DoesNotOpen)?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .map_err(|_| VaultError::DoesNotOpen)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| VaultError::DoesNotOpen)
    }

    /// What `key_id` sealed with `bytes`, sealed again under the active key (key rotation).
    pub fn reseal(
        &self,
        key_id: &str,
        bytes: &[u8],
        associated: &[u8],
    ) -> Result<Sealed, VaultError> {
        let sealed = Sealed {
            key_id: key_id.to_owned(),
            bytes: bytes.to_vec(),
        };
        Ok(self.seal(&self.open(&sealed, associated)?, associated))
    }

    /// A new random key, base64, for `oplata keys generate`.
    pub fn generate_key() -> SecretString {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretString::from(STANDARD.encode(key))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit as _, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(active: &str, ids: &[&str]) -> Vault {
        let keys = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    (*id).to_owned(),
                    SecretString::from(STANDARD.encode([i as u8 + 1; 32])),
                )
            })
            .collect();
        Vault::new(active, &keys).expect("valid keys")
    }

    #[test]
    fn a_token_opens_only_for_its_own_owner_and_card() {
        let vault = vault("k1", &["k1"]);
        let card = uuid::Uuid::now_v7();
        let sealed = vault.seal(&SecretString::from("tok_123"), &card_binding("alice", card));

        assert_eq!(
            vault
                .open(&sealed, &card_binding("alice", card))
                .map(|s| s.expose_secret().to_owned()),
            Ok("tok_123".into())
        );
        assert_eq!(
            vault.open(&sealed, &card_binding("bob", card)).err(),
            Some(VaultError::DoesNotOpen)
        );
        assert_eq!(
            vault
                .open(&sealed, &card_binding("alice", uuid::Uuid::now_v7()))
                .err(),
            Some(VaultError::DoesNotOpen)
        );
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.bytes.last_mut() {
            *last ^= 1;
        }
        assert_eq!(
            vault.open(&tampered, &card_binding("alice", card)).err(),
            Some(VaultError::DoesNotOpen)
        );
    }

    #[test]
    fn old_keys_still_open_after_a_new_key_becomes_active() {
        let old = vault("k1", &["k1"]);
        let rotated = vault("k2", &["k1", "k2"]);
        let card = uuid::Uuid::now_v7();
        let sealed = old.seal(&SecretString::from("tok"), &card_binding("u", card));

        assert!(rotated.open(&sealed, &card_binding("u", card)).is_ok());
        assert_eq!(rotated.seal(&SecretString::from("tok"), b"x").key_id, "k2");
        assert!(!format!("{sealed:?}").contains("tok"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_owned(), SecretString::from("short"));
        assert_eq!(
            Vault::new("k1", &keys).err(),
            Some(VaultError::BadKey("k1".into()))
        );
        assert_eq!(
            Vault::new("k9", &BTreeMap::new()).err(),
            Some(VaultError::NoActiveKey("k9".into()))
        );
    }
}
