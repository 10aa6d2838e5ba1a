//! A Moneta-style acquirer: the MONETA.Assistant payment form with 3-D Secure on it, the Pay URL
//! and Check URL notifications with their signed XML answers, and the MerchantAPI (JSON
//! envelope) for operation details, saved-card charges with a 3-D Secure challenge, and refunds.
//!
//! Decisions where the public record is silent (`PROTOCOLS.md`, section 5):
//! - A card is saved from a form payment that carries `MNT_SUBSCRIBER_ID` and
//!   `PAYMENTTOKEN=request`; after the Pay URL notification the adapter reads the operation
//!   (`GetOperationDetailsByIdRequest`), whose attributes give `statusid`, `paymenttoken`, the
//!   masked `cardnumber`, `cardexpiration` and `threedsecure`. A token from an operation
//!   without `threedsecure=true` is never stored.
//! - A saved-card charge is a `PaymentRequest` with `PAYMENTTOKEN` and oplata's attempt id as
//!   `clientTransaction`; a repeat answers fault `100.1` and never charges twice, and the
//!   adapter then reads the first attempt's operation. An issuer's challenge comes back as
//!   `INPROGRESS` with `acsurl`, `pareq`, `md`; the browser posts them to the ACS with a
//!   `TermUrl` of oplata's, and `ConfirmTransactionRequest` with `PARES` finishes the charge.
//! - The status of an order whose notification was lost is found with
//!   `FindOperationsListByCTIDRequest` (`accountId`, `clientTransaction` = `MNT_TRANSACTION_ID`) (operation ids are Moneta's
//!   and arrive only with the notification).
//! - Refunds: `RefundRequest`, full or partial, status by `GetOperationDetailsByIdRequest`.
//! - Unbinding: none public; deleting a card crypto-shreds oplata's copy.

pub mod protocol;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod settings;
pub mod wire;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use crate::{
    Acquirer, AcquirerKind, Amount, AnswerVerdict, CallbackAnswer, CallbackError, CallbackEvent,
    Capabilities, ChargeOutcome, CheckResult, Decline, DeclineCode, NextAction, OperationDetails,
    PaymentRequest, ProviderError, RawCallback, RecurringCharge, RefundOutcome, RefundRequest,
    StartOutcome, StatusOutcome, ThreeDsAssurance, VerifiedCallback,
};
pub use settings::MonetaSettings;
use wire::{ApiAnswer, OperationStatus, PayNotice};

/// One Moneta account.
#[derive(Debug, Clone)]
pub struct MonetaConfig {
    /// `MNT_ID`: the shop's extended account number.
    pub account_id: String,
    /// Signs the form and the notifications, both ways.
    pub integrity_code: SecretString,
    pub api_username: String,
    pub api_password: SecretString,
    /// Authorises money-moving MerchantAPI calls.
    pub payment_password: SecretString,
    /// The form is at `<base>/assistant.htm`, the MerchantAPI at `<base>/services`.
    pub base_url: Url,
    pub test_mode: bool,
}

#[derive(Debug)]
pub struct Moneta {
    config: MonetaConfig,
    http: reqwest::Client,
}

/// Why a MerchantAPI call gave no usable answer.
enum CallFailure {
    /// Certainly not received (no connection).
    NotSent(String),
    /// Sent; the answer was lost or unreadable.
    Unknown(String),
}

impl Moneta {
    /// The hosted payment page: a redirect built and signed here, without a call to the
    /// acquirer.
    fn hosted_page(&self, request: &PaymentRequest<'_>) -> StartOutcome {
        let amount = request.amount.to_string();
        let subscriber = if request.save_card {
            request.customer_ref.unwrap_or("")
        } else {
            ""
        };
        let test_mode = if self.config.test_mode { "1" } else { "0" };
        let signature = wire::form_signature(
            &wire::FormFields {
                account_id: &self.config.account_id,
                transaction_id: request.order_id,
                amount: &amount,
                currency: "RUB",
                subscriber_id: subscriber,
                test_mode,
            },
            self.code(),
        );
        let mut fields: Vec<(String, String)> = vec![
            ("MNT_ID".into(), self.config.account_id.clone()),
            ("MNT_TRANSACTION_ID".into(), request.order_id.into()),
            ("MNT_AMOUNT".into(), amount),
            ("MNT_CURRENCY_CODE".into(), "RUB".into()),
            ("MNT_SUBSCRIBER_ID".into(), subscriber.into()),
            ("MNT_TEST_MODE".into(), test_mode.into()),
            ("MNT_DESCRIPTION".into(), request.description.into()),
            ("MNT_SUCCESS_URL".into(), request.success_url.into()),
            ("MNT_FAIL_URL".into(), request.fail_url.into()),
            ("MNT_INPROGRESS_URL".into(), request.success_url.into()),
            ("MNT_RETURN_URL".into(), request.fail_url.into()),
            ("MNT_CUSTOM1".into(), request.payment_ref.into()),
            ("moneta.locale".into(), "ru".into()),
        ];
        if request.save_card {
            fields.push(("PAYMENTTOKEN".into(), "request".into()));
        }
        // The free fields not taken by the payment id carry the passport data.
        if let Some(payer) = request.payer {
            fields.push(("MNT_CUSTOM2".into(), payer.passport.into()));
            fields.push(("MNT_CUSTOM3".into(), payer.full_name.into()));
        }
        fields.push(("MNT_SIGNATURE".into(), signature));
        StartOutcome::RequiresAction(NextAction::FormPost {
            url: self.endpoint("/assistant.htm").to_string(),
            fields,
        })
    }

    pub fn new(config: MonetaConfig, http: reqwest::Client) -> Result<Self, ProviderError> {
        if config.account_id.is_empty() || config.integrity_code.expose_secret().is_empty() {
            return Err(ProviderError::Configuration(
                "Moneta account_id and integrity_code are required".into(),
            ));
        }
        Ok(Moneta { config, http })
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    fn code(&self) -> &str {
        self.config.integrity_code.expose_secret()
    }

    async fn call(&self, method: &str, body: Value) -> Result<ApiAnswer, CallFailure> {
        let envelope = wire::envelope(
            &self.config.api_username,
            self.config.api_password.expose_secret(),
            method,
            body,
        );
        let response = self
            .http
            .post(self.endpoint("/services"))
            .json(&envelope)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallFailure::NotSent(format!("{method}: connection failed"))
                } else {
                    CallFailure::Unknown(format!(
                        "{method}: {}",
                        if e.is_timeout() {
                            "timeout"
                        } else {
                            "transport error"
                        }
                    ))
                }
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|_| CallFailure::Unknown(format!("{method}: unreadable body")))?;
        let parsed: Value = serde_json::from_str(&text).map_err(|_| {
            CallFailure::Unknown(format!(
                "{method}: HTTP {} with a body that is not JSON",
                status.as_u16()
            ))
        })?;
        wire::read_answer(method, &parsed).ok_or_else(|| {
            CallFailure::Unknown(format!(
                "{method}: HTTP {} without a response",
                status.as_u16()
            ))
        })
    }

    fn decline(code: &str, message: &str) -> Decline {
        let unified = match code {
            "400.1.18" => DeclineCode::Refused,
            "insufficient_funds" | "400.2.1" => DeclineCode::InsufficientFunds,
            "three_ds_failed" => DeclineCode::ThreeDsFailed,
            _ => DeclineCode::Refused,
        };
        Decline {
            acquirer_code: code.to_owned(),
            code: unified,
            message: message.to_owned(),
        }
    }

    /// An operation's status as oplata sees it.
    fn status_of(operation: &Value) -> StatusOutcome {
        let amount = wire::attribute(operation, "sourceamount")
            .or_else(|| operation.get("amount").and_then(Value::as_str))
            .and_then(|a| Amount::parse_api(a).ok());
        match wire::attribute(operation, "statusid").and_then(OperationStatus::parse) {
            Some(OperationStatus::Succeed | OperationStatus::TakenInNotSent) => match amount {
                Some(amount) => StatusOutcome::Succeeded { amount },
                None => StatusOutcome::Unknown {
                    reason: "a paid operation without a readable amount".into(),
                },
            },
            Some(OperationStatus::Canceled) => StatusOutcome::Failed(Self::decline(
                wire::attribute(operation, "declinecode").unwrap_or("CANCELED"),
                "the operation was cancelled",
            )),
            Some(
                OperationStatus::Created
                | OperationStatus::InProgress
                | OperationStatus::TakenOut
                | OperationStatus::Frozen,
            ) => StatusOutcome::Pending,
            None => StatusOutcome::Unknown {
                reason: "the operation has no known statusid".into(),
            },
        }
    }

    fn charge_outcome(operation: &Value, three_ds_return_url: Option<&str>) -> ChargeOutcome {
        let operation_id = operation.get("id").map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let Some(operation_id) = operation_id else {
            return ChargeOutcome::Unknown {
                reason: "an answer without an operation id".into(),
            };
        };
        let acs = (
            wire::attribute(operation, "acsurl"),
            wire::attribute(operation, "pareq"),
            wire::attribute(operation, "md"),
        );
        match (Self::status_of(operation), acs, three_ds_return_url) {
            (StatusOutcome::Succeeded { .. }, _, _) => ChargeOutcome::Succeeded { operation_id },
            (StatusOutcome::Failed(decline), _, _) => ChargeOutcome::Declined(decline),
            (StatusOutcome::Pending, (Some(acs_url), Some(pareq), Some(md)), Some(term_url)) => {
                ChargeOutcome::RequiresAction {
                    operation_id,
                    action: NextAction::FormPost {
                        url: acs_url.to_owned(),
                        fields: vec![
                            ("PaReq".into(), pareq.to_owned()),
                            ("MD".into(), md.to_owned()),
                            ("TermUrl".into(), term_url.to_owned()),
                        ],
                    },
                }
            }
            (StatusOutcome::Pending, _, _) => ChargeOutcome::Unknown {
                reason: "the charge is still in progress".into(),
            },
            (StatusOutcome::Unknown { reason }, _, _) => ChargeOutcome::Unknown { reason },
            (StatusOutcome::NotFound, _, _) => ChargeOutcome::Unknown {
                reason: "the charge's operation is not found".into(),
            },
        }
    }

    /// The operations of one merchant transaction (`clientTransaction`: `MNT_TRANSACTION_ID` of
    /// a form payment, the attempt id of a charge, the refund reference of a refund), the newest.
    async fn find_by_client_transaction(
        &self,
        client_transaction: &str,
    ) -> Result<Option<Value>, CallFailure> {
        let account_id =
            self.config.account_id.parse::<u64>().map_err(|_| {
                CallFailure::NotSent("the Moneta account_id is not a number".into())
            })?;
        let request = json!({ "accountId": account_id, "clientTransaction": client_transaction });
        match self.call("FindOperationsListByCTID", request).await? {
            ApiAnswer::Ok(body) => Ok(body
                .get("operation")
                .and_then(Value::as_array)
                .and_then(|ops| ops.last().cloned())),
            ApiAnswer::Fault {
                detail, message, ..
            } => Err(CallFailure::Unknown(format!(
                "FindOperationsListByCTID fault {detail}: {message}"
            ))),
        }
    }

    /// `GetOperationDetailsByIdRequest` takes the operation id as a bare integer.
    async fn operation_by_id(&self, operation_id: &str) -> Result<ApiAnswer, CallFailure> {
        let id = operation_id.parse::<u64>().map_err(|_| {
            CallFailure::NotSent(format!("operation id {operation_id:?} is not a number"))
        })?;
        self.call("GetOperationDetailsById", json!(id)).await
    }
}

#[async_trait]
impl Acquirer for Moneta {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::Moneta
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hosted_payment: true,
            saved_cards: true,
            saved_card_challenge: true,
            three_ds: ThreeDsAssurance::ReportedPerPayment,
            status_query: true,
            refunds: true,
            refund_status: true,
            refund_lookup: true,
            unbind: false,
            personal_data: true,
            receipts: crate::ReceiptChannel::InNotificationAnswer,
        }
    }

    async fn start_payment(&self, request: &PaymentRequest<'_>) -> StartOutcome {
        self.hosted_page(request)
    }

    fn start_locally(&self, request: &PaymentRequest<'_>) -> Option<StartOutcome> {
        Some(self.hosted_page(request))
    }

    fn verify_callback(&self, raw: &RawCallback) -> Result<VerifiedCallback, CallbackError> {
        let notice = PayNotice::parse(raw)?;
        if notice.account_id != self.config.account_id || !notice.signature_is_valid(self.code()) {
            return Err(CallbackError::BadSignature);
        }
        let amount = crate::money::notified_amount(&notice.amount, "MNT_AMOUNT")?;
        let event = match notice.command.as_deref() {
            None => CallbackEvent::PaymentSucceeded,
            Some(_) => CallbackEvent::CheckRequested,
        };
        let payment_ref = raw
            .params()
            .into_iter()
            .find(|(k, _)| k == "MNT_CUSTOM1")
            .map(|(_, v)| v);
        Ok(VerifiedCallback {
            order_id: notice.transaction_id,
            event,
            amount_text: notice.amount,
            amount,
            payment_ref,
            operation_id: (!notice.operation_id.is_empty()).then_some(notice.operation_id),
            currency: Some(notice.currency),
            personal_data_echoed: None,
        })
    }

    fn signed_answer(
        &self,
        raw: &RawCallback,
        verdict: AnswerVerdict<'_>,
    ) -> Option<CallbackAnswer> {
        let notice = PayNotice::parse(raw).ok()?;
        let (code, extras) = match verdict {
            // The Pay URL answer carries the fiscal receipt: PayAnyWay's cashbox prints it from
            // these attributes (§3.9).
            AnswerVerdict::Accepted { receipt } => ("200", receipt_attributes(receipt)),
            // Unverified requests get the plain refusal: oplata signs nothing it did not check.
            AnswerVerdict::Rejected(_) => return None,
            // The Check URL answer must name the order's amount and description (§3.4).
            AnswerVerdict::Check {
                result,
                amount,
                description,
            } => {
                let code = match result {
                    CheckResult::Payable => "402",
                    CheckResult::AlreadyPaid => "200",
                    CheckResult::InProgress => "302",
                    CheckResult::NotPayable => "500",
                };
                let extras = wire::MntExtras {
                    // An unknown order has no amount of its own: the one asked about is echoed.
                    amount: Some(
                        amount
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| notice.amount.clone()),
                    ),
                    description: Some(description.chars().take(250).collect()),
                    attributes: Vec::new(),
                };
                (code, extras)
            }
        };
        Some(wire::mnt_response_with(
            code,
            &self.config.account_id,
            &notice.transaction_id,
            self.code(),
            &extras,
        ))
    }

    async fn payment_status(&self, order_id: &str) -> Result<StatusOutcome, ProviderError> {
        Ok(match self.find_by_client_transaction(order_id).await {
            Ok(Some(operation)) => Self::status_of(&operation),
            // The customer never reached the form, or a charge never arrived.
            Ok(None) => StatusOutcome::NotFound,
            Err(CallFailure::NotSent(reason) | CallFailure::Unknown(reason)) => {
                StatusOutcome::Unknown { reason }
            }
        })
    }

    async fn operation_details(
        &self,
        operation_id: &str,
    ) -> Result<OperationDetails, ProviderError> {
        let answer = self.operation_by_id(operation_id).await;
        let operation = match answer {
            Ok(ApiAnswer::Ok(body)) => body.get("operation").cloned(),
            Ok(ApiAnswer::Fault {
                detail, message, ..
            }) => {
                return Ok(OperationDetails::unknown(format!(
                    "fault {detail}: {message}"
                )));
            }
            Err(CallFailure::NotSent(reason) | CallFailure::Unknown(reason)) => {
                return Ok(OperationDetails::unknown(reason));
            }
        };
        let Some(operation) = operation else {
            return Ok(OperationDetails::unknown(
                "an answer without an operation".into(),
            ));
        };
        Ok(OperationDetails {
            status: Self::status_of(&operation),
            order_id: wire::attribute(&operation, "clienttransaction").map(str::to_owned),
            currency: wire::attribute(&operation, "sourcecurrencycode").map(str::to_owned),
            three_ds_passed: wire::attribute(&operation, "threedsecure").map(|v| v == "true"),
            masked_card: wire::attribute(&operation, "cardnumber").map(str::to_owned),
            card_expiry: wire::attribute(&operation, "cardexpiration").map(str::to_owned),
            token: wire::attribute(&operation, "paymenttoken").map(SecretString::from),
        })
    }

    async fn charge_saved_card(
        &self,
        charge: &RecurringCharge<'_>,
    ) -> Result<ChargeOutcome, ProviderError> {
        let body = json!({
            "payer": "card",
            "payee": self.config.account_id,
            "amount": charge.amount.to_string(),
            "clientTransaction": charge.attempt_id,
            "paymentPassword": self.config.payment_password.expose_secret(),
            "description": charge.description,
            "operationInfo": {"attribute": [
                {"key": "PAYMENTTOKEN", "value": charge.token.expose_secret()},
                {"key": "MNT_TRANSACTION_ID", "value": charge.order_id},
                {"key": "TERMURL", "value": charge.three_ds_return_url},
            ]}
        });
        Ok(match self.call("Payment", body).await {
            Ok(ApiAnswer::Ok(operation)) => {
                Self::charge_outcome(&operation, Some(charge.three_ds_return_url))
            }
            // The same attempt was received before: report what became of it, never charge again.
            Ok(ApiAnswer::Fault { detail, .. }) if detail == "100.1" => {
                match self.find_by_client_transaction(charge.attempt_id).await {
                    Ok(Some(operation)) => {
                        Self::charge_outcome(&operation, Some(charge.three_ds_return_url))
                    }
                    Ok(None) => ChargeOutcome::Unknown {
                        reason: "a repeated attempt whose first operation is not found".into(),
                    },
                    Err(CallFailure::NotSent(reason) | CallFailure::Unknown(reason)) => {
                        ChargeOutcome::Unknown { reason }
                    }
                }
            }
            Ok(ApiAnswer::Fault {
                detail, message, ..
            }) => ChargeOutcome::Declined(Self::decline(&detail, &message)),
            Err(CallFailure::NotSent(reason)) => ChargeOutcome::NotSent { reason },
            Err(CallFailure::Unknown(reason)) => ChargeOutcome::Unknown { reason },
        })
    }

    async fn complete_three_ds(
        &self,
        operation_id: &str,
        challenge_answer: &str,
    ) -> Result<ChargeOutcome, ProviderError> {
        let body = json!({
            "transactionId": operation_id,
            "operationInfo": {"attribute": [{"key": "PARES", "value": challenge_answer}]}
        });
        Ok(match self.call("ConfirmTransaction", body).await {
            Ok(ApiAnswer::Ok(operation)) => match Self::charge_outcome(&operation, None) {
                ChargeOutcome::RequiresAction { .. } => ChargeOutcome::Unknown {
                    reason: "still in progress after the challenge".into(),
                },
                other => other,
            },
            Ok(ApiAnswer::Fault {
                detail, message, ..
            }) => ChargeOutcome::Declined(Self::decline(&detail, &message)),
            Err(CallFailure::NotSent(reason)) => ChargeOutcome::NotSent { reason },
            Err(CallFailure::Unknown(reason)) => ChargeOutcome::Unknown { reason },
        })
    }

    async fn refund_status(&self, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        Ok(self.refund_outcome(refund_id).await)
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> Result<RefundOutcome, ProviderError> {
        let mut body = json!({
            "transactionId": request.operation_id,
            "clientTransaction": request.refund_ref,
            "paymentPassword": self.config.payment_password.expose_secret(),
            "description": request.reason,
        });
        if let Some(amount) = request.amount {
            body["amount"] = json!(amount.to_string());
        }
        Ok(match self.call("Refund", body).await {
            Ok(ApiAnswer::Ok(operation)) => {
                let refund_id = operation.get("id").map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                });
                match (Self::status_of(&operation), refund_id) {
                    (StatusOutcome::Succeeded { .. }, Some(refund_id)) => {
                        RefundOutcome::Succeeded { refund_id }
                    }
                    (StatusOutcome::Pending, Some(refund_id)) => {
                        RefundOutcome::Pending { refund_id }
                    }
                    (StatusOutcome::Failed(decline), _) => RefundOutcome::Declined(decline),
                    (_, _) => RefundOutcome::Unknown {
                        reason: "an unreadable refund answer".into(),
                    },
                }
            }
            // The same refund reference was received before: report what became of it, never
            // refund twice.
            Ok(ApiAnswer::Fault { detail, .. }) if detail == "100.1" => {
                match self.find_refund(request.refund_ref).await? {
                    Some(outcome) => outcome,
                    None => RefundOutcome::Unknown {
                        reason: "a repeated refund whose first operation is not found".into(),
                    },
                }
            }
            Ok(ApiAnswer::Fault {
                detail, message, ..
            }) => RefundOutcome::Declined(Self::decline(&detail, &message)),
            Err(CallFailure::NotSent(reason)) => RefundOutcome::NotSent { reason },
            Err(CallFailure::Unknown(reason)) => RefundOutcome::Unknown { reason },
        })
    }

    async fn find_refund(&self, refund_ref: &str) -> Result<Option<RefundOutcome>, ProviderError> {
        Ok(match self.find_by_client_transaction(refund_ref).await {
            Ok(Some(operation)) => {
                let refund_id = operation.get("id").map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                });
                Some(match (Self::status_of(&operation), refund_id) {
                    (StatusOutcome::Succeeded { .. }, Some(refund_id)) => {
                        RefundOutcome::Succeeded { refund_id }
                    }
                    (StatusOutcome::Pending, Some(refund_id)) => {
                        RefundOutcome::Pending { refund_id }
                    }
                    (StatusOutcome::Failed(decline), _) => RefundOutcome::Declined(decline),
                    (_, _) => RefundOutcome::Unknown {
                        reason: "an unreadable refund operation".into(),
                    },
                })
            }
            Ok(None) => None,
            Err(CallFailure::NotSent(reason) | CallFailure::Unknown(reason)) => {
                Some(RefundOutcome::Unknown { reason })
            }
        })
    }
}

impl Moneta {
    /// A refund operation's status, read as a refund outcome.
    async fn refund_outcome(&self, refund_id: &str) -> RefundOutcome {
        match self.operation_by_id(refund_id).await {
            Ok(ApiAnswer::Ok(body)) => match body.get("operation").map(Self::status_of) {
                Some(StatusOutcome::Succeeded { .. }) => RefundOutcome::Succeeded {
                    refund_id: refund_id.to_owned(),
                },
                Some(StatusOutcome::Pending) => RefundOutcome::Pending {
                    refund_id: refund_id.to_owned(),
                },
                Some(StatusOutcome::Failed(decline)) => RefundOutcome::Declined(decline),
                Some(StatusOutcome::Unknown { reason }) => RefundOutcome::Unknown { reason },
                Some(StatusOutcome::NotFound) | None => RefundOutcome::Unknown {
                    reason: "an answer without an operation".into(),
                },
            },
            Ok(ApiAnswer::Fault {
                detail, message, ..
            }) => RefundOutcome::Unknown {
                reason: format!("fault {detail}: {message}"),
            },
            Err(CallFailure::NotSent(reason) | CallFailure::Unknown(reason)) => {
                RefundOutcome::Unknown { reason }
            }
        }
    }
}

impl OperationDetails {
    fn unknown(reason: String) -> Self {
        OperationDetails {
            status: StatusOutcome::Unknown { reason },
            order_id: None,
            currency: None,
            three_ds_passed: None,
            masked_card: None,
            card_expiry: None,
            token: None,
        }
    }
}

/// `INVENTORY` and `CUSTOMER`, the receipt attributes of a Pay URL answer.
fn receipt_attributes(receipt: Option<&crate::Receipt>) -> wire::MntExtras {
    wire::MntExtras {
        attributes: receipt
            .map(|receipt| {
                vec![
                    ("INVENTORY".to_owned(), receipt.moneta_inventory()),
                    ("CUSTOMER".to_owned(), receipt.contact.as_str().to_owned()),
                    ("DELIVERY".to_owned(), "0".to_owned()),
                ]
            })
            .unwrap_or_default(),
        ..wire::MntExtras::default()
    }
}
