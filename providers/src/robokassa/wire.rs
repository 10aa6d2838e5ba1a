//! Robokassa's wire format: signature formulas, the ResultURL notification and the OpStateExt XML.
//!
//! Formulas follow docs.robokassa.ru (see `shared/acquirers/PROTOCOLS.md`, section 2): parts are
//! joined with `:`, custom `Shp_` parameters are appended after the password, sorted by name, as
//! `Shp_name=value`. Signatures are computed over the exact characters sent or received.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::signing::{HashAlgorithm, hex_signature_matches};
use crate::{CallbackAnswer, CallbackError, RawCallback};

/// The custom parameter that carries oplata's payment id through Robokassa and back.
pub const PAYMENT_REF_PARAM: &str = "Shp_payment";
/// Passport series and number of a budget payment's payer.
pub const PASSPORT_PARAM: &str = "Shp_passport";
/// Full name of a budget payment's payer.
pub const PAYER_NAME_PARAM: &str = "Shp_payer";

fn shp_suffix(shp: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = shp.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.iter().map(|(k, v)| format!(":{k}={v}")).collect()
}

/// The optional signed parameters of a payment request, in the order the formula takes them:
/// `OutSumCurrency`, `UserIp`, `Receipt` (its URL-encoded text), then `true` for `StepByStep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedExtras<'a> {
    pub out_sum_currency: Option<&'a str>,
    pub user_ip: Option<&'a str>,
    pub receipt: Option<&'a str>,
    pub step_by_step: bool,
}

/// `SignatureValue` of a payment page request: `MerchantLogin:OutSum:InvId:Password#1[:Shp_…]`.
pub fn payment_signature(
    hash: HashAlgorithm,
    login: &str,
    out_sum: &str,
    inv_id: &str,
    password1: &str,
    shp: &[(String, String)],
) -> String {
    payment_signature_with(
        hash,
        login,
        out_sum,
        inv_id,
        &SignedExtras::default(),
        password1,
        shp,
    )
}

/// `SignatureValue` of a payment request with its optional signed parameters:
/// `MerchantLogin:OutSum:InvId[:OutSumCurrency][:UserIp][:Receipt][:true]:Password#1[:Shp_…]`.
pub fn payment_signature_with(
    hash: HashAlgorithm,
    login: &str,
    out_sum: &str,
    inv_id: &str,
    extras: &SignedExtras<'_>,
    password1: &str,
    shp: &[(String, String)],
) -> String {
    let mut base = format!("{login}:{out_sum}:{inv_id}");
    for part in [extras.out_sum_currency, extras.user_ip, extras.receipt]
        .into_iter()
        .flatten()
    {
        base.push(':');
        base.push_str(part);
    }
    if extras.step_by_step {
        base.push_str(":true");
    }
    base.push(':');
    base.push_str(password1);
    base.push_str(&shp_suffix(shp));
    hash.hex_digest(base.as_bytes())
}

/// The `Receipt` parameter: the receipt's JSON form-URL-encoded (`+` for spaces, as the
/// documentation's example), the text that is both signed and sent.
pub fn encode_receipt(receipt: &crate::Receipt) -> String {
    form_urlencoded::byte_serialize(receipt.robokassa_json().as_bytes()).collect()
}

/// The receipt's JSON back from the `Receipt` parameter's text.
pub fn decode_receipt(encoded: &str) -> String {
    form_urlencoded::parse(format!("r={encoded}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Every custom parameter oplata sends with a payment; the notification echoes exactly these.
pub const OWN_PARAMS: [&str; 3] = [PAYMENT_REF_PARAM, PASSPORT_PARAM, PAYER_NAME_PARAM];

/// `SignatureValue` of a ResultURL notification: `OutSum:InvId:Password#2[:Shp_…]`.
pub fn result_signature(
    hash: HashAlgorithm,
    out_sum: &str,
    inv_id: &str,
    password2: &str,
    shp: &[(String, String)],
) -> String {
    let base = format!("{out_sum}:{inv_id}:{password2}{}", shp_suffix(shp));
    hash.hex_digest(base.as_bytes())
}

/// `SignatureValue` on the SuccessURL redirect: `OutSum:InvId:Password#1[:Shp_…]`.
pub fn success_signature(
    hash: HashAlgorithm,
    out_sum: &str,
    inv_id: &str,
    password1: &str,
    shp: &[(String, String)],
) -> String {
    result_signature(hash, out_sum, inv_id, password1, shp)
}

/// `Signature` of an OpStateExt request: `MerchantLogin:InvoiceID:Password#2`.
pub fn op_state_signature(
    hash: HashAlgorithm,
    login: &str,
    inv_id: &str,
    password2: &str,
) -> String {
    hash.hex_digest(format!("{login}:{inv_id}:{password2}").as_bytes())
}

/// A ResultURL notification, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultNotice {
    /// Exactly as received (Robokassa sends six decimals: `10.000000`).
    pub out_sum: String,
    pub inv_id: String,
    pub signature: String,
    pub shp: Vec<(String, String)>,
}

impl ResultNotice {
    /// Reads the notification from the query string and/or form body. A parameter given twice is
    /// refused: which copy the signature covers would be a guess.
    pub fn parse(raw: &RawCallback) -> Result<Self, CallbackError> {
        let params = raw.params();
        let mut out_sum = None;
        let mut inv_id = None;
        let mut signature = None;
        let mut shp = Vec::new();
        for (name, value) in params {
            let slot = match name.as_str() {
                "OutSum" => &mut out_sum,
                "InvId" => &mut inv_id,
                "SignatureValue" => &mut signature,
                other if other.starts_with("Shp_") => {
                    if shp.iter().any(|(k, _)| k == other) {
                        return Err(CallbackError::Malformed(format!("{other} is given twice")));
                    }
                    shp.push((name, value));
                    continue;
                }
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(CallbackError::Malformed(format!("{name} is given twice")));
            }
        }
        let out_sum =
            out_sum.ok_or_else(|| CallbackError::Malformed("OutSum is missing".into()))?;
        let inv_id = inv_id.ok_or_else(|| CallbackError::Malformed("InvId is missing".into()))?;
        let signature = signature
            .ok_or_else(|| CallbackError::Malformed("SignatureValue is missing".into()))?;
        if inv_id.is_empty() || inv_id.len() > 18 || !inv_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CallbackError::Malformed(
                "InvId is not a positive integer".into(),
            ));
        }
        Ok(ResultNotice {
            out_sum,
            inv_id,
            signature,
            shp,
        })
    }

    pub fn signature_is_valid(&self, hash: HashAlgorithm, password2: &str) -> bool {
        let expected = result_signature(hash, &self.out_sum, &self.inv_id, password2, &self.shp);
        hex_signature_matches(&self.signature, &expected)
    }

    /// The amount as a number; the text must be a plain non-negative decimal.
    pub fn amount(&self) -> Result<Decimal, CallbackError> {
        crate::money::notified_amount(&self.out_sum, "OutSum")
    }

    /// Checks that the `Shp_` parameters are exactly the ones oplata sends: the payment id
    /// always, the payer's two passport fields together or not at all, nothing else. Returns
    /// whether the passport fields came back.
    pub fn own_parameters_echoed(&self) -> Result<bool, CallbackError> {
        if let Some((name, _)) = self
            .shp
            .iter()
            .find(|(k, _)| !OWN_PARAMS.contains(&k.as_str()))
        {
            return Err(CallbackError::Malformed(format!(
                "{name} is not a parameter oplata sends"
            )));
        }
        if self.shp_value(PAYMENT_REF_PARAM).is_none_or(str::is_empty) {
            return Err(CallbackError::Malformed(format!(
                "{PAYMENT_REF_PARAM}, sent with every payment, did not come back"
            )));
        }
        match (
            self.shp_value(PASSPORT_PARAM),
            self.shp_value(PAYER_NAME_PARAM),
        ) {
            (Some(_), Some(_)) => Ok(true),
            (None, None) => Ok(false),
            _ => Err(CallbackError::Malformed(
                "the payer's passport fields came back incomplete".into(),
            )),
        }
    }

    pub fn shp_value(&self, name: &str) -> Option<&str> {
        self.shp
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer Robokassa requires to stop re-sending a ResultURL notification.
pub fn result_answer_ok(inv_id: &str) -> CallbackAnswer {
    CallbackAnswer {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        body: format!("OK{inv_id}"),
    }
}

/// Anything but `OK{InvId}` tells Robokassa the notification was not accepted.
pub fn result_answer_rejected(error: &CallbackError) -> CallbackAnswer {
    CallbackAnswer {
        status: 400,
        content_type: "text/plain; charset=utf-8",
        body: format!("ERROR: {error}"),
    }
}

/// OpStateExt's answer, `OperationStateResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationStateResponse {
    pub result: ResultBlock,
    pub state: Option<StateBlock>,
    pub info: Option<InfoBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultBlock {
    pub code: i32,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateBlock {
    pub code: i32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InfoBlock {
    pub out_sum: Option<String>,
    pub inc_sum: Option<String>,
    /// For bank cards, the masked card number.
    pub inc_account: Option<String>,
    /// The operation key the Refund API asks for.
    pub op_key: Option<String>,
}

/// A compact JWT signed with HS256 under Password#3, as the Refund API wants it.
pub fn refund_jwt(payload_json: &str, password3: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{KeyInit, Mac};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(payload_json.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(password3.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Checks an HS256 JWT and returns its payload (for the simulator).
pub fn verify_refund_jwt(token: &str, password3: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = token.trim().trim_matches('"');
    let (signing_input, _) = token.rsplit_once('.')?;
    let (_, payload) = signing_input.split_once('.')?;
    use subtle::ConstantTimeEq;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    // Base64url is case-sensitive: compare the bytes as they are.
    let expected = refund_jwt(&payload, password3);
    bool::from(token.as_bytes().ct_eq(expected.as_bytes())).then_some(payload)
}

/// The Refund API's answer to `Create`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundCreated {
    pub success: bool,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// The Refund API's answer to `GetState`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundState {
    pub request_id: Option<String>,
    pub label: Option<String>,
    pub message: Option<String>,
}

/// `OK{InvoiceID}` (the SDK accepts `OK+123` too): a recurring charge accepted.
pub fn recurring_accepted(body: &str, invoice_id: &str) -> bool {
    let body = body.trim();
    body.strip_prefix("OK")
        .map(|rest| rest.trim_start_matches('+'))
        .is_some_and(|id| id == invoice_id)
}

/// A refusal of a recurring charge: a short plain-text `ERROR…` line. Returns the acquirer's
/// code (the line, trimmed to printable ASCII and 100 characters); anything else is not a refusal
/// but an unreadable answer.
pub fn recurring_refusal(body: &str) -> Option<String> {
    let line = body.trim();
    let refusal = line.len() <= 500
        && !line.contains('\n')
        && line
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case("error"));
    refusal.then(|| {
        line.chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(100)
            .collect()
    })
}

impl OperationStateResponse {
    pub fn parse(xml: &str) -> Result<Self, String> {
        quick_xml::de::from_str(xml).map_err(|e| format!("unreadable OpStateExt answer: {e}"))
    }
}

/// OpStateExt `Result.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Ok,
    BadSignature,
    ShopNotFound,
    InvoiceNotFound,
    DuplicateInvoice,
    InternalError,
    Unrecognized(i32),
}

impl ResultCode {
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => ResultCode::Ok,
            1 => ResultCode::BadSignature,
            2 => ResultCode::ShopNotFound,
            3 => ResultCode::InvoiceNotFound,
            4 => ResultCode::DuplicateInvoice,
            1000 => ResultCode::InternalError,
            other => ResultCode::Unrecognized(other),
        }
    }
}

/// OpStateExt `State.Code`: where the invoice is in Robokassa's life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    /// 5: initiated, not paid (the customer may still be on the page or in 3-D Secure).
    Initiated,
    /// 10: cancelled by the customer or by timeout; final.
    Canceled,
    /// 20: held (two-stage payment).
    Held,
    /// 50: money received, being credited to the shop.
    Crediting,
    /// 60: crediting refused, money returned to the customer; final.
    Returned,
    /// 80: suspended.
    Suspended,
    /// 100: paid; final.
    Paid,
    Unrecognized(i32),
}

impl OperationState {
    pub fn from_code(code: i32) -> Self {
        match code {
            5 => OperationState::Initiated,
            10 => OperationState::Canceled,
            20 => OperationState::Held,
            50 => OperationState::Crediting,
            60 => OperationState::Returned,
            80 => OperationState::Suspended,
            100 => OperationState::Paid,
            other => OperationState::Unrecognized(other),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            OperationState::Initiated => 5,
            OperationState::Canceled => 10,
            OperationState::Held => 20,
            OperationState::Crediting => 50,
            OperationState::Returned => 60,
            OperationState::Suspended => 80,
            OperationState::Paid => 100,
            OperationState::Unrecognized(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_body(body: &str) -> RawCallback {
        RawCallback {
            query: String::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn payment_signature_sorts_custom_parameters_after_the_password() {
        let shp = vec![
            ("Shp_b".to_owned(), "2".to_owned()),
            ("Shp_a".to_owned(), "1".to_owned()),
        ];
        let signed = payment_signature(HashAlgorithm::Md5, "shop", "10.00", "7", "p1", &shp);
        assert_eq!(
            signed,
            HashAlgorithm::Md5.hex_digest(b"shop:10.00:7:p1:Shp_a=1:Shp_b=2")
        );
    }

    #[test]
    fn result_notice_is_verified_over_the_amount_text_as_received() {
        let sig = result_signature(HashAlgorithm::Md5, "10.000000", "5", "p2", &[]);
        let notice = ResultNotice::parse(&raw_body(&format!(
            "OutSum=10.000000&InvId=5&SignatureValue={sig}"
        )))
        .expect("parses");
        assert!(notice.signature_is_valid(HashAlgorithm::Md5, "p2"));
        assert_eq!(notice.amount(), Ok(Decimal::new(10, 0)));
        let reformatted = ResultNotice {
            out_sum: "10.00".into(),
            ..notice
        };
        assert!(!reformatted.signature_is_valid(HashAlgorithm::Md5, "p2"));
    }

    #[test]
    fn upper_case_signatures_are_accepted() {
        let sig = result_signature(HashAlgorithm::Sha256, "1.00", "9", "p2", &[]).to_uppercase();
        let notice = ResultNotice::parse(&raw_body(&format!(
            "OutSum=1.00&InvId=9&SignatureValue={sig}"
        )))
        .expect("parses");
        assert!(notice.signature_is_valid(HashAlgorithm::Sha256, "p2"));
    }

    #[test]
    fn duplicated_or_missing_parameters_are_malformed() {
        for body in [
            "OutSum=1&OutSum=2&InvId=1&SignatureValue=x",
            "OutSum=1&InvId=1&SignatureValue=x&Shp_a=1&Shp_a=2",
            "InvId=1&SignatureValue=x",
            "OutSum=1&InvId=-1&SignatureValue=x",
            "OutSum=1&InvId=&SignatureValue=x",
        ] {
            assert!(
                matches!(
                    ResultNotice::parse(&raw_body(body)),
                    Err(CallbackError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_notification_body_parses_or_is_refused_without_panicking(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            query in ".{0,200}",
        ) {
            let raw = RawCallback { query, body };
            if let Ok(notice) = ResultNotice::parse(&raw) {
                let _ = notice.amount();
                proptest::prop_assert!(!notice.signature_is_valid(HashAlgorithm::Md5, "p2") || notice.signature.len() == 32);
            }
        }

        #[test]
        fn any_status_answer_parses_or_is_refused_without_panicking(xml in ".{0,400}") {
            let _ = OperationStateResponse::parse(&xml);
        }
    }

    #[test]
    fn op_state_answer_is_read() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<OperationStateResponse xmlns="http://merchant.roboxchange.com/WebService/">
<Result><Code>0</Code></Result><State><Code>100</Code><RequestDate>2026-01-01T00:00:00+03:00</RequestDate></State>
<Info><IncCurrLabel>BankCardPSR</IncCurrLabel><IncSum>10.000000</IncSum><OutSum>10.000000</OutSum><PaymentMethod><Code>BankCard</Code></PaymentMethod></Info>
</OperationStateResponse>"#;
        let parsed = OperationStateResponse::parse(xml).expect("parses");
        assert_eq!(ResultCode::from_code(parsed.result.code), ResultCode::Ok);
        assert_eq!(
            parsed.state.map(|s| OperationState::from_code(s.code)),
            Some(OperationState::Paid)
        );
        assert_eq!(
            parsed.info.and_then(|i| i.out_sum).as_deref(),
            Some("10.000000")
        );
    }
}
