//! The Moneta-style wire format (`PROTOCOLS.md`, sections 3 and 5).
//!
//! Signatures are MD5, lower-case hex, of fields concatenated without separators, an absent
//! field counting as empty, the integrity code ("код проверки целостности данных") last:
//! - payment form: `MNT_ID + MNT_TRANSACTION_ID + MNT_AMOUNT + MNT_CURRENCY_CODE +
//!   MNT_SUBSCRIBER_ID + MNT_TEST_MODE + code`;
//! - Pay URL notification: the same with `MNT_OPERATION_ID` after `MNT_TRANSACTION_ID`;
//! - Check URL request: the notification's with `MNT_COMMAND` first;
//! - the XML answer: `MNT_RESULT_CODE + MNT_ID + MNT_TRANSACTION_ID + code` (the documented
//!   worked example `md5("200"+"54600817"+"FF790ABCD"+"QWERTY")` is pinned in the tests).
//!
//! The MerchantAPI speaks a JSON envelope: `{"Envelope":{"Header":{"Security":{"UsernameToken":
//! {"Username","Password"}}},"Body":{"<Method>Request":{…}}}}`, answers
//! `{"Envelope":{"Body":{"<Method>Response":{…}}}}` or a fault
//! `{"Envelope":{"Body":{"fault":{"faultcode","faultstring","detail":{"faultDetail"}}}}}`.
//! Operations carry `attribute: [{key, value}]` with `statusid` and, for card operations,
//! `cardnumber` (masked), `cardexpiration`, `threedsecure` and `paymenttoken`.

use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::signing::hex_signature_matches;
use crate::{CallbackAnswer, CallbackError, RawCallback};

pub fn md5_hex(parts: &[&str]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The fields a payment form is signed over, in order.
#[derive(Debug, Clone, Copy)]
pub struct FormFields<'a> {
    pub account_id: &'a str,
    pub transaction_id: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub subscriber_id: &'a str,
    pub test_mode: &'a str,
}

pub fn form_signature(f: &FormFields<'_>, code: &str) -> String {
    md5_hex(&[
        f.account_id,
        f.transaction_id,
        f.amount,
        f.currency,
        f.subscriber_id,
        f.test_mode,
        code,
    ])
}

pub fn response_signature(
    result_code: &str,
    account_id: &str,
    transaction_id: &str,
    code: &str,
) -> String {
    md5_hex(&[result_code, account_id, transaction_id, code])
}

/// A Pay URL (or Check URL) notification, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayNotice {
    pub command: Option<String>,
    pub account_id: String,
    pub transaction_id: String,
    pub operation_id: String,
    /// Exactly as received.
    pub amount: String,
    pub currency: String,
    pub subscriber_id: String,
    pub test_mode: String,
    pub signature: String,
}

impl PayNotice {
    pub fn parse(raw: &RawCallback) -> Result<Self, CallbackError> {
        let params = raw.params();
        let get = |name: &str| -> Result<Option<String>, CallbackError> {
            let mut values = params
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone());
            let first = values.next();
            if values.next().is_some() {
                return Err(CallbackError::Malformed(format!("{name} is given twice")));
            }
            Ok(first)
        };
        let required = |name: &str| {
            get(name)?.ok_or_else(|| CallbackError::Malformed(format!("{name} is missing")))
        };
        let transaction_id = required("MNT_TRANSACTION_ID")?;
        if transaction_id.is_empty() || transaction_id.len() > 64 {
            return Err(CallbackError::Malformed(
                "MNT_TRANSACTION_ID is empty or too long".into(),
            ));
        }
        Ok(PayNotice {
            command: get("MNT_COMMAND")?,
            account_id: required("MNT_ID")?,
            transaction_id,
            operation_id: get("MNT_OPERATION_ID")?.unwrap_or_default(),
            amount: required("MNT_AMOUNT")?,
            currency: get("MNT_CURRENCY_CODE")?.unwrap_or_default(),
            subscriber_id: get("MNT_SUBSCRIBER_ID")?.unwrap_or_default(),
            test_mode: get("MNT_TEST_MODE")?.unwrap_or_default(),
            signature: required("MNT_SIGNATURE")?,
        })
    }

    pub fn expected_signature(&self, code: &str) -> String {
        let command = self.command.as_deref().unwrap_or("");
        md5_hex(&[
            command,
            &self.account_id,
            &self.transaction_id,
            &self.operation_id,
            &self.amount,
            &self.currency,
            &self.subscriber_id,
            &self.test_mode,
            code,
        ])
    }

    pub fn signature_is_valid(&self, code: &str) -> bool {
        hex_signature_matches(&self.signature, &self.expected_signature(code))
    }
}

/// What an `MNT_RESPONSE` carries besides its result code: the Check URL answer names the
/// order's amount and description (§3.4), the Pay URL answer the fiscal receipt's attributes
/// (§3.9). None of these is signed.
#[derive(Debug, Clone, Default)]
pub struct MntExtras {
    pub amount: Option<String>,
    pub description: Option<String>,
    /// `(KEY, VALUE)` pairs of `MNT_ATTRIBUTES`.
    pub attributes: Vec<(String, String)>,
}

/// `MNT_RESPONSE`, the XML answer to Pay URL and Check URL requests.
pub fn mnt_response(
    result_code: &str,
    account_id: &str,
    transaction_id: &str,
    code: &str,
) -> CallbackAnswer {
    mnt_response_with(
        result_code,
        account_id,
        transaction_id,
        code,
        &MntExtras::default(),
    )
}

/// `MNT_RESPONSE` with the amount, description and attributes its request needs.
pub fn mnt_response_with(
    result_code: &str,
    account_id: &str,
    transaction_id: &str,
    code: &str,
    extras: &MntExtras,
) -> CallbackAnswer {
    let mut optional = String::new();
    if let Some(description) = &extras.description {
        optional.push_str(&format!(
            "<MNT_DESCRIPTION>{}</MNT_DESCRIPTION>",
            crate::markup::escape(description)
        ));
    }
    if let Some(amount) = &extras.amount {
        optional.push_str(&format!(
            "<MNT_AMOUNT>{}</MNT_AMOUNT>",
            crate::markup::escape(amount)
        ));
    }
    if !extras.attributes.is_empty() {
        optional.push_str("<MNT_ATTRIBUTES>");
        for (key, value) in &extras.attributes {
            optional.push_str(&format!(
                "<ATTRIBUTE><KEY>{}</KEY><VALUE>{}</VALUE></ATTRIBUTE>",
                crate::markup::escape(key),
                crate::markup::escape(value)
            ));
        }
        optional.push_str("</MNT_ATTRIBUTES>");
    }
    CallbackAnswer {
        status: 200,
        content_type: "application/xml; charset=utf-8",
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><MNT_RESPONSE><MNT_ID>{}</MNT_ID>\
<MNT_TRANSACTION_ID>{}</MNT_TRANSACTION_ID><MNT_RESULT_CODE>{result_code}</MNT_RESULT_CODE>\
{optional}<MNT_SIGNATURE>{}</MNT_SIGNATURE></MNT_RESPONSE>",
            crate::markup::escape(account_id),
            crate::markup::escape(transaction_id),
            response_signature(result_code, account_id, transaction_id, code)
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
struct MntResponseXml {
    #[serde(rename = "MNT_ID")]
    id: String,
    #[serde(rename = "MNT_TRANSACTION_ID")]
    transaction_id: String,
    #[serde(rename = "MNT_RESULT_CODE")]
    result_code: String,
    #[serde(rename = "MNT_SIGNATURE")]
    signature: String,
    #[serde(rename = "MNT_AMOUNT")]
    amount: Option<String>,
    #[serde(rename = "MNT_DESCRIPTION")]
    description: Option<String>,
    #[serde(rename = "MNT_ATTRIBUTES")]
    attributes: Option<MntAttributesXml>,
}

#[derive(Debug, serde::Deserialize)]
struct MntAttributesXml {
    #[serde(rename = "ATTRIBUTE", default)]
    items: Vec<MntAttributeXml>,
}

#[derive(Debug, serde::Deserialize)]
struct MntAttributeXml {
    #[serde(rename = "KEY")]
    key: String,
    #[serde(rename = "VALUE", default)]
    value: String,
}

/// A read `MNT_RESPONSE` whose id, transaction and signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MntAnswer {
    pub result_code: String,
    pub amount: Option<String>,
    pub description: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl MntAnswer {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an `MNT_RESPONSE` (for the simulator), refusing one for another account or
/// transaction or with a wrong signature.
pub fn read_mnt_answer(
    body: &str,
    account_id: &str,
    transaction_id: &str,
    code: &str,
) -> Option<MntAnswer> {
    let xml: MntResponseXml = quick_xml::de::from_str(body.trim()).ok()?;
    let consistent = xml.id == account_id
        && xml.transaction_id == transaction_id
        && hex_signature_matches(
            &xml.signature,
            &response_signature(&xml.result_code, account_id, transaction_id, code),
        );
    consistent.then(|| MntAnswer {
        result_code: xml.result_code,
        amount: xml.amount,
        description: xml.description,
        attributes: xml
            .attributes
            .map(|a| a.items.into_iter().map(|i| (i.key, i.value)).collect())
            .unwrap_or_default(),
    })
}

/// Reads an `MNT_RESPONSE`'s result code (see [`read_mnt_answer`]).
pub fn read_mnt_response(
    body: &str,
    account_id: &str,
    transaction_id: &str,
    code: &str,
) -> Option<String> {
    read_mnt_answer(body, account_id, transaction_id, code).map(|a| a.result_code)
}

/// Moneta's operation statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    Created,
    /// Also while the customer is in 3-D Secure.
    InProgress,
    /// Debited from the payer, not yet credited.
    TakenOut,
    /// Credited to the shop; the notification was not acknowledged yet.
    TakenInNotSent,
    Succeed,
    /// Held for manual review at Moneta.
    Frozen,
    Canceled,
}

impl OperationStatus {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATED" => OperationStatus::Created,
            "INPROGRESS" => OperationStatus::InProgress,
            "TAKENOUT" => OperationStatus::TakenOut,
            "TAKENIN_NOTSENT" => OperationStatus::TakenInNotSent,
            "SUCCEED" => OperationStatus::Succeed,
            "FROZEN" => OperationStatus::Frozen,
            "CANCELED" => OperationStatus::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Created => "CREATED",
            OperationStatus::InProgress => "INPROGRESS",
            OperationStatus::TakenOut => "TAKENOUT",
            OperationStatus::TakenInNotSent => "TAKENIN_NOTSENT",
            OperationStatus::Succeed => "SUCCEED",
            OperationStatus::Frozen => "FROZEN",
            OperationStatus::Canceled => "CANCELED",
        }
    }
}

/// A MerchantAPI request envelope.
pub fn envelope(username: &str, password: &str, method: &str, body: Value) -> Value {
    json!({
        "Envelope": {
            "Header": {"Security": {"UsernameToken": {"Username": username, "Password": password}}},
            "Body": {format!("{method}Request"): body}
        }
    })
}

/// A fault answer.
pub fn fault(faultcode: &str, faultstring: &str, detail: &str) -> Value {
    json!({"Envelope": {"Body": {"fault": {
        "faultcode": faultcode, "faultstring": faultstring, "detail": {"faultDetail": detail}
    }}}})
}

/// A successful answer.
pub fn response(method: &str, body: Value) -> Value {
    json!({"Envelope": {"Body": {format!("{method}Response"): body}}})
}

/// What a MerchantAPI answer said.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiAnswer {
    Ok(Value),
    Fault {
        code: String,
        detail: String,
        message: String,
    },
}

/// Reads a MerchantAPI answer for `method`; `None` when it is neither a response nor a fault.
pub fn read_answer(method: &str, body: &Value) -> Option<ApiAnswer> {
    let envelope_body = body.get("Envelope")?.get("Body")?;
    if let Some(fault) = envelope_body.get("fault") {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        return Some(ApiAnswer::Fault {
            code: text(fault.get("faultcode")),
            detail: text(fault.get("detail").and_then(|d| d.get("faultDetail"))),
            message: text(fault.get("faultstring")),
        });
    }
    envelope_body
        .get(format!("{method}Response"))
        .cloned()
        .map(ApiAnswer::Ok)
}

/// The `{key, value}` attributes of an operation, as a lookup.
pub fn attribute<'a>(operation: &'a Value, key: &str) -> Option<&'a str> {
    operation
        .get("attribute")?
        .as_array()?
        .iter()
        .find(|a| a.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example on Moneta's documentation page for the Pay URL answer.
    #[test]
    fn response_signature_matches_the_documented_worked_example() {
        assert_eq!(
            response_signature("200", "54600817", "FF790ABCD", "QWERTY"),
            md5_hex(&["200", "54600817", "FF790ABCD", "QWERTY"])
        );
        assert_eq!(
            response_signature("200", "54600817", "FF790ABCD", "QWERTY"),
            WORKED_EXAMPLE
        );
    }

    const WORKED_EXAMPLE: &str = "29807c8e5d82198b5c4360e6ec711cce";

    #[test]
    fn a_notification_is_verified_over_the_fields_as_received() {
        let code = "secret";
        let signature = md5_hex(&["", "100", "7", "900", "10.00", "RUB", "", "1", code]);
        let body = format!(
            "MNT_ID=100&MNT_TRANSACTION_ID=7&MNT_OPERATION_ID=900&MNT_AMOUNT=10.00&MNT_CURRENCY_CODE=RUB&MNT_TEST_MODE=1&MNT_SIGNATURE={signature}"
        );
        let raw = RawCallback {
            query: String::new(),
            body: body.into_bytes(),
        };
        let notice = PayNotice::parse(&raw).expect("parses");
        assert!(notice.signature_is_valid(code));
        assert!(!notice.signature_is_valid("other"));
    }

    #[test]
    fn the_xml_answer_is_signed_and_readable() {
        let answer = mnt_response("200", "100", "7", "secret");
        assert_eq!(
            read_mnt_response(&answer.body, "100", "7", "secret").as_deref(),
            Some("200")
        );
        assert_eq!(read_mnt_response(&answer.body, "100", "7", "other"), None);
        assert_eq!(read_mnt_response(&answer.body, "100", "8", "secret"), None);
    }

    #[test]
    fn faults_are_read_in_the_documented_shape() {
        let answer = fault("Client", "operation not found", "500.1.5");
        assert_eq!(
            read_answer("GetOperationDetailsById", &answer),
            Some(ApiAnswer::Fault {
                code: "Client".into(),
                detail: "500.1.5".into(),
                message: "operation not found".into()
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_notification_parses_or_is_refused_without_panicking(body in ".{0,300}") {
            let raw = RawCallback { query: String::new(), body: body.into_bytes() };
            if let Ok(notice) = PayNotice::parse(&raw) {
                let _ = notice.signature_is_valid("code");
            }
        }
    }
}
