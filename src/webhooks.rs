//! Signatures of outbound webhooks, in the Standard Webhooks form: headers `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, one per
//! active secret, separated by spaces) over `"{id}.{timestamp}.{body}"`. Secrets are
//! `whsec_<base64>`; during a rotation several are configured and every one signs, so receivers
//! holding either secret accept the event.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How old a signed event may be when verified.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not whsec_<base64>")]
    BadSecret,
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is more than {TOLERANCE_SECS} s away from now")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
}

fn key(secret: &SecretString) -> Result<Vec<u8>, VerifyError> {
    let encoded = secret
        .expose_secret()
        .strip_prefix("whsec_")
        .ok_or(VerifyError::BadSecret)?;
    STANDARD.decode(encoded).map_err(|_| VerifyError::BadSecret)
}

fn sign_one(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one `v1,` signature per secret.
pub fn sign(
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, VerifyError> {
    let signatures: Result<Vec<String>, VerifyError> = secrets
        .iter()
        .map(|secret| Ok(sign_one(&key(secret)?, id, timestamp, body)))
        .collect();
    Ok(signatures?.join(" "))
}

/// What a receiver does: accept if the timestamp is fresh and any signature matches any secret.
pub fn verify(
    secrets: &[SecretString],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    for secret in secrets {
        let expected = sign_one(&key(secret)?, id, timestamp, body);
        for presented in signature_header.split_whitespace() {
            if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatch)
}

/// A new secret for a webhook endpoint.
pub fn generate_secret() -> SecretString {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    SecretString::from(format!("whsec_{}", STANDARD.encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> SecretString {
        SecretString::from(format!("whsec_{}", STANDARD.encode([byte; 24])))
    }

    #[test]
    fn a_signed_event_verifies_and_a_tampered_or_stale_one_does_not() {
        let secrets = [secret(1)];
        let header = sign(&secrets, "evt_1", 1_700_000_000, b"{\"a\":1}").expect("signs");

        assert_eq!(
            verify(
                &secrets,
                "evt_1",
                "1700000000",
                &header,
                b"{\"a\":1}",
                1_700_000_100
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &secrets,
                "evt_1",
                "1700000000",
                &header,
                b"{\"a\":2}",
                1_700_000_100
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(
                &secrets,
                "evt_2",
                "1700000000",
                &header,
                b"{\"a\":1}",
                1_700_000_100
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(
                &secrets,
                "evt_1",
                "1700000000",
                &header,
                b"{\"a\":1}",
                1_700_000_301
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(
                &[secret(2)],
                "evt_1",
                "1700000000",
                &header,
                b"{\"a\":1}",
                1_700_000_000
            ),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let header = sign(&[secret(1), secret(2)], "evt", 10, b"x").expect("signs");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(&[secret(2)], "evt", "10", &header, b"x", 10), Ok(()));
        assert_eq!(verify(&[secret(1)], "evt", "10", &header, b"x", 10), Ok(()));
    }

    /// The example from the Standard Webhooks specification (secret, id, timestamp, payload and
    /// the expected signature as published there).
    #[test]
    fn the_standard_webhooks_published_example_verifies() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let header = sign(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
        )
        .expect("signs");
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
