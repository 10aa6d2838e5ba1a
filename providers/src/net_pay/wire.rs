//! NetPay's wire format (`PROTOCOLS.md`, section 1), from the vendor's own plugin:
//!
//! - The payment page gets three form fields: `data`, `auth`, `expire`. `expire` is
//!   `YYYY-MM-DDVHH:MM:SS` with a literal `V`. Each `name=value` item inside `data` is encrypted
//!   on its own with AES-128-ECB (PKCS#7) under a key derived from the API key and `expire`:
//!   `h1 = base64(md5(api_key))`, `key = first 16 characters of base64(md5(h1 + expire))`;
//!   the base64 ciphertexts are joined with `&`. Like the official plugin, `data` and `expire`
//!   are URL-encoded inside the form values.
//! - The notification is a GET whose `token` is `md5_hex(v1;v2;…;vn; + h1 + ";")` over the
//!   URL-decoded values in the order received, from `orderID` on, without `token` itself. The
//!   order matters, so the raw query string is parsed in order, never through a map.
//! - The answer is `<notification>…<status>1</status>…</notification>` (0 with a reason).

use aes::Aes128;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::signing::hex_signature_matches;
use crate::{CallbackAnswer, CallbackError};

/// NetPay writes expiry times in Moscow time. [INF: the plugins use the shop server's clock.]
pub const MOSCOW: UtcOffset = match UtcOffset::from_hms(3, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

const EXPIRE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]V[hour]:[minute]:[second]");

/// `base64(md5_raw(api_key))`: used in key derivation and in the notification token.
pub fn api_key_hash(api_key: &str) -> String {
    STANDARD.encode(Md5::digest(api_key.as_bytes()))
}

/// The AES-128 key: the first 16 characters of `base64(md5_raw(h1 + expire))`.
pub fn derive_key(api_key: &str, expire: &str) -> [u8; 16] {
    let second = STANDARD.encode(Md5::digest(
        format!("{}{expire}", api_key_hash(api_key)).as_bytes(),
    ));
    let mut key = [0u8; 16];
    key.copy_from_slice(&second.as_bytes()[..16]);
    key
}

pub fn format_expire(at: OffsetDateTime) -> String {
    at.to_offset(MOSCOW)
        .format(EXPIRE_FORMAT)
        .unwrap_or_default()
}

pub fn parse_expire(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text, EXPIRE_FORMAT)
        .ok()
        .map(|t| t.assume_offset(MOSCOW))
}

/// One `name=value` item, encrypted and base64-encoded.
pub fn encrypt_item(key: &[u8; 16], item: &str) -> String {
    let cipher = ecb::Encryptor::<Aes128>::new(key.into());
    STANDARD.encode(cipher.encrypt_padded_vec::<Pkcs7>(item.as_bytes()))
}

pub fn decrypt_item(key: &[u8; 16], encoded: &str) -> Option<String> {
    let bytes = STANDARD.decode(encoded.trim()).ok()?;
    let cipher = ecb::Decryptor::<Aes128>::new(key.into());
    let plain = cipher.decrypt_padded_vec::<Pkcs7>(&bytes).ok()?;
    String::from_utf8(plain).ok()
}

/// The `data` field (before its URL-encoding into the form value).
pub fn encrypt_data(api_key: &str, expire: &str, params: &[(&str, &str)]) -> String {
    let key = derive_key(api_key, expire);
    params
        .iter()
        .map(|(name, value)| encrypt_item(&key, &format!("{name}={value}")))
        .collect::<Vec<_>>()
        .join("&")
}

/// Reads `data` back into its items; `None` if any item does not decrypt.
pub fn decrypt_data(api_key: &str, expire: &str, data: &str) -> Option<Vec<(String, String)>> {
    let key = derive_key(api_key, expire);
    data.split('&')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let plain = decrypt_item(&key, item)?;
            let (name, value) = plain.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The notification token over `values` (already URL-decoded, in the order received).
pub fn notification_token(api_key: &str, values: &[&str]) -> String {
    let mut base: String = values.iter().map(|v| format!("{v};")).collect();
    base.push_str(&api_key_hash(api_key));
    base.push(';');
    hex::encode(Md5::digest(base.as_bytes()))
}

/// The fields of a notification oplata reads, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub order_id: String,
    pub order_number: Option<String>,
    pub auth: String,
    pub status: String,
    pub transaction_type: String,
    pub amount: String,
    pub error: Option<String>,
    pub token: String,
    /// Every value from `orderID` on, except `token`, in order: what the token covers.
    signed_values: Vec<String>,
}

impl Notification {
    /// Parses the raw query string. Parameters before `orderID` are ignored, as the vendor's
    /// handler does; a parameter given twice is refused.
    pub fn parse(raw_query: &str) -> Result<Self, CallbackError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let start = pairs
            .iter()
            .position(|(k, _)| k == "orderID")
            .ok_or_else(|| CallbackError::Malformed("orderID is missing".into()))?;
        let signed = &pairs[start..];
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in signed {
            if seen.contains(&name.as_str()) {
                return Err(CallbackError::Malformed(format!("{name} is given twice")));
            }
            seen.push(name);
        }
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let required = |name: &str| {
            get(name).ok_or_else(|| CallbackError::Malformed(format!("{name} is missing")))
        };
        let order_id = required("orderID")?;
        if order_id.is_empty() || order_id.len() > 64 {
            return Err(CallbackError::Malformed(
                "orderID is empty or too long".into(),
            ));
        }
        Ok(Notification {
            order_number: get("orderNumber"),
            auth: required("auth")?,
            status: required("status")?,
            transaction_type: required("transactionType")?,
            amount: required("amount")?,
            error: get("error"),
            token: required("token")?,
            signed_values: signed
                .iter()
                .filter(|(k, _)| k != "token")
                .map(|(_, v)| v.clone())
                .collect(),
            order_id,
        })
    }

    pub fn token_is_valid(&self, api_key: &str) -> bool {
        let values: Vec<&str> = self.signed_values.iter().map(String::as_str).collect();
        hex_signature_matches(&self.token, &notification_token(api_key, &values))
    }

    /// `000`, `00`, `0` or nothing: no error.
    pub fn error_free(&self) -> bool {
        matches!(self.error.as_deref(), None | Some("" | "0" | "00" | "000"))
    }
}

/// NetPay's transaction types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionType {
    Sale,
    Authorize,
    Capture,
    Cancel,
    Refund,
    Unrecognized,
}

impl TransactionType {
    pub fn parse(text: &str) -> Self {
        match text {
            "Sale" | "Sale_Qiwi" | "Sale_YaMoney" | "Sale_WebMoney" => TransactionType::Sale,
            "Authorize" => TransactionType::Authorize,
            "Capture" => TransactionType::Capture,
            "Cancel" => TransactionType::Cancel,
            "Refund" | "Refund_Qiwi" | "Refund_WebMoney" | "Refund_YaMoney" => {
                TransactionType::Refund
            }
            _ => TransactionType::Unrecognized,
        }
    }
}

/// The answer NetPay expects: status 1 accepted, 0 refused with a reason.
pub fn notification_answer(
    order_id: &str,
    transaction_type: &str,
    refusal: Option<&str>,
) -> CallbackAnswer {
    let (status, error) = match refusal {
        None => ("1", String::new()),
        Some(reason) => ("0", crate::markup::escape(reason)),
    };
    CallbackAnswer {
        status: 200,
        content_type: "text/xml; charset=utf-8",
        body: format!(
            "<notification><orderId>{}</orderId><transactionType>{}</transactionType><status>{status}</status><error>{error}</error></notification>",
            crate::markup::escape(order_id),
            crate::markup::escape(transaction_type)
        ),
    }
}

/// Reads `<status>` out of an answer (for the simulator).
pub fn answer_accepted(body: &str) -> bool {
    body.contains("<status>1</status>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_sixteen_base64_characters_derived_from_key_and_expiry() {
        let key = derive_key("demo-key", "2024-05-01V12:00:00");
        assert!(
            key.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        );
        assert_ne!(key, derive_key("demo-key", "2024-05-01V12:00:01"));
    }

    #[test]
    fn items_round_trip_and_a_wrong_expiry_does_not_decrypt() {
        let data = encrypt_data(
            "k",
            "2024-05-01V12:00:00",
            &[("amount", "10.00"), ("orderID", "7")],
        );
        assert_eq!(
            decrypt_data("k", "2024-05-01V12:00:00", &data),
            Some(vec![
                ("amount".into(), "10.00".into()),
                ("orderID".into(), "7".into())
            ])
        );
        assert_ne!(
            decrypt_data("k", "2024-05-01V12:00:01", &data),
            Some(vec![
                ("amount".into(), "10.00".into()),
                ("orderID".into(), "7".into())
            ])
        );
    }

    #[test]
    fn expiry_has_the_literal_v() {
        let at = OffsetDateTime::from_unix_timestamp(1_714_554_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(format_expire(at), "2024-05-01V12:00:00");
        assert_eq!(parse_expire("2024-05-01V12:00:00"), Some(at));
    }

    proptest::proptest! {
        #[test]
        fn any_query_parses_or_is_refused_without_panicking(query in ".{0,300}") {
            if let Ok(notice) = Notification::parse(&query) {
                let _ = notice.token_is_valid("key");
                let _ = notice.error_free();
            }
        }

        #[test]
        fn any_data_field_decrypts_or_is_refused_without_panicking(data in "[A-Za-z0-9+/=&]{0,200}") {
            let _ = decrypt_data("key", "2024-05-01V12:00:00", &data);
        }
    }

    #[test]
    fn the_token_follows_the_order_of_the_query() {
        let token = notification_token("key", &["7", "1", "APPROVED", "Sale", "10.00"]);
        let query = format!(
            "ignored=x&orderID=7&auth=1&status=APPROVED&transactionType=Sale&amount=10.00&token={token}"
        );
        let swapped = format!(
            "ignored=x&orderID=7&auth=1&transactionType=Sale&status=APPROVED&amount=10.00&token={token}"
        );

        assert!(Notification::parse(&query).is_ok_and(|n| n.token_is_valid("key")));
        assert!(Notification::parse(&swapped).is_ok_and(|n| !n.token_is_valid("key")));
        assert!(Notification::parse(&query).is_ok_and(|n| !n.token_is_valid("other-key")));
    }
}
