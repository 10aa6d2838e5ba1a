//! Robokassa: hosted payment page, ResultURL notifications and the OpStateExt status query.
//!
//! Decisions where the public record is silent (`PROTOCOLS.md`, section 5):
//! - `InvId` must be an integer unique per shop: oplata allocates it from its own per-acquirer
//!   sequence and also sends its payment id as `Shp_payment`.
//! - 3-D Secure runs on Robokassa's page; the merchant contract makes it mandatory.
//! - SuccessURL and FailURL are browser redirects and never change a payment by themselves:
//!   the service asks OpStateExt what really happened.
//! - Saved card = the parent `InvoiceID` of a `Recurring=true` payment; the masked card comes
//!   from OpStateExt's `IncAccount` (Robokassa reports no expiry). A charge is
//!   `POST /Merchant/Recurring` with a new `InvoiceID`; `OK{id}` means accepted, not charged:
//!   the ResultURL (or OpStateExt) settles it. A retried charge reuses the same child
//!   `InvoiceID`; the simulator answers a repeat with `OK{id}` again and no second debit.
//! - Unbinding: none public; deleting a card crypto-shreds oplata's copy.
//! - Refunds: the Refund API with a compact JWT (HS256, Password#3) carrying the `OpKey` that
//!   OpStateExt reports for the paid invoice; `Refund/GetState` tells `finished`, `processing`
//!   or `canceled`.

pub mod protocol;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod settings;
pub mod wire;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::signing::HashAlgorithm;
use crate::{
    Acquirer, AcquirerKind, Amount, CallbackError, CallbackEvent, Capabilities, ChargeOutcome,
    Decline, DeclineCode, NextAction, OperationDetails, PaymentRequest, ProviderError, RawCallback,
    RecurringCharge, RefundOutcome, RefundRequest, StartOutcome, StatusOutcome, ThreeDsAssurance,
    VerifiedCallback,
};
pub use settings::RobokassaSettings;
use wire::{OperationState, OperationStateResponse, ResultCode, ResultNotice};

/// Robokassa limits the description shown to the customer.
const DESCRIPTION_MAX_CHARS: usize = 100;

/// One Robokassa shop.
#[derive(Debug, Clone)]
pub struct RobokassaConfig {
    pub merchant_login: String,
    /// Signs payment requests; verifies the SuccessURL redirect.
    pub password1: SecretString,
    /// Verifies ResultURL notifications; signs OpStateExt.
    pub password2: SecretString,
    pub hash: HashAlgorithm,
    /// Sends `IsTest=1`: Robokassa's test mode, with the test pair of passwords.
    pub test_mode: bool,
    /// `https://auth.robokassa.ru` in production; a simulator's address in tests.
    pub base_url: Url,
    /// Signs Refund API requests; without it refunds are not offered.
    pub password3: Option<SecretString>,
    /// `https://services.robokassa.ru` in production.
    pub refund_base_url: Url,
}

#[derive(Debug)]
pub struct Robokassa {
    config: RobokassaConfig,
    http: reqwest::Client,
}

impl Robokassa {
    /// The hosted payment page: a redirect built and signed here, without a call to the
    /// acquirer.
    fn hosted_page(&self, request: &PaymentRequest<'_>) -> StartOutcome {
        StartOutcome::RequiresAction(NextAction::Redirect {
            url: self.payment_page_url(request),
        })
    }

    pub fn new(config: RobokassaConfig, http: reqwest::Client) -> Result<Self, ProviderError> {
        if config.merchant_login.is_empty() {
            return Err(ProviderError::Configuration(
                "merchant_login is empty".into(),
            ));
        }
        if config.password1.expose_secret().is_empty()
            || config.password2.expose_secret().is_empty()
        {
            return Err(ProviderError::Configuration(
                "a Robokassa password is empty".into(),
            ));
        }
        Ok(Robokassa { config, http })
    }

    fn refund_endpoint(&self, path: &str) -> Url {
        let mut url = self.config.refund_base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    async fn refund_state(&self, request_id: &str) -> RefundOutcome {
        let answer = self
            .http
            .get(self.refund_endpoint("/RefundService/Refund/GetState"))
            .query(&[("id", request_id)])
            .send()
            .await;
        let state: Option<wire::RefundState> = match answer {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        match state.as_ref().and_then(|s| s.label.as_deref()) {
            Some("finished") => RefundOutcome::Succeeded {
                refund_id: request_id.to_owned(),
            },
            Some("processing") => RefundOutcome::Pending {
                refund_id: request_id.to_owned(),
            },
            Some("canceled") => RefundOutcome::Declined(Decline {
                acquirer_code: "canceled".into(),
                code: DeclineCode::Refused,
                message: "Robokassa cancelled the refund".into(),
            }),
            Some(_) | None => RefundOutcome::Pending {
                refund_id: request_id.to_owned(),
            },
        }
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    fn payment_page_url(&self, request: &PaymentRequest<'_>) -> String {
        let out_sum = request.amount.to_string();
        let mut shp = vec![(
            wire::PAYMENT_REF_PARAM.to_owned(),
            request.payment_ref.to_owned(),
        )];
        // Custom parameters are signed and echoed back: the passport data travels in them.
        if let Some(payer) = request.payer {
            shp.push((wire::PASSPORT_PARAM.to_owned(), payer.passport.to_owned()));
            shp.push((
                wire::PAYER_NAME_PARAM.to_owned(),
                payer.full_name.to_owned(),
            ));
        }
        // The URL-encoded receipt is what is signed and what is sent (the form encodes it again).
        let receipt = request.receipt.map(wire::encode_receipt);
        let signature = wire::payment_signature_with(
            self.config.hash,
            &self.config.merchant_login,
            &out_sum,
            request.order_id,
            &wire::SignedExtras {
                receipt: receipt.as_deref(),
                ..wire::SignedExtras::default()
            },
            self.config.password1.expose_secret(),
            &shp,
        );
        let description: String = request
            .description
            .chars()
            .take(DESCRIPTION_MAX_CHARS)
            .collect();
        let mut url = self.endpoint("/Merchant/Index.aspx");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("MerchantLogin", &self.config.merchant_login)
                .append_pair("OutSum", &out_sum)
                .append_pair("InvId", request.order_id)
                .append_pair("Description", &description)
                .append_pair("SignatureValue", &signature)
                .append_pair("Culture", "ru")
                .append_pair("Encoding", "utf-8");
            if let Some(email) = request.email {
                query.append_pair("Email", email);
            }
            if let Some(receipt) = &receipt {
                query.append_pair("Receipt", receipt);
            }
            if self.config.test_mode {
                query.append_pair("IsTest", "1");
            }
            if request.save_card {
                // Not part of the signature.
                query.append_pair("Recurring", "true");
            }
            for (name, value) in &shp {
                query.append_pair(name, value);
            }
        }
        url.to_string()
    }

    async fn query_op_state(&self, order_id: &str) -> Result<OperationStateResponse, String> {
        let signature = wire::op_state_signature(
            self.config.hash,
            &self.config.merchant_login,
            order_id,
            self.config.password2.expose_secret(),
        );
        let response = self
            .http
            .get(self.endpoint("/Merchant/WebService/Service.asmx/OpStateExt"))
            .query(&[
                ("MerchantLogin", self.config.merchant_login.as_str()),
                ("InvoiceID", order_id),
                ("Signature", signature.as_str()),
            ])
            .send()
            .await
            // The error text would carry the URL and so the signature: keep only its kind.
            .map_err(|e| {
                format!(
                    "OpStateExt request failed ({})",
                    describe_transport_error(&e)
                )
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            format!(
                "OpStateExt body unreadable ({})",
                describe_transport_error(&e)
            )
        })?;
        if !status.is_success() {
            return Err(format!("OpStateExt answered HTTP {}", status.as_u16()));
        }
        OperationStateResponse::parse(&body)
    }
}

fn describe_transport_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_decode() || error.is_body() {
        "bad body"
    } else {
        "transport error"
    }
}

#[async_trait]
impl Acquirer for Robokassa {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::Robokassa
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hosted_payment: true,
            saved_cards: true,
            saved_card_challenge: false,
            three_ds: ThreeDsAssurance::EnforcedByContract,
            status_query: true,
            refunds: self.config.password3.is_some(),
            refund_status: self.config.password3.is_some(),
            refund_lookup: false,
            unbind: false,
            personal_data: true,
            receipts: crate::ReceiptChannel::WithPaymentRequest,
        }
    }

    async fn start_payment(&self, request: &PaymentRequest<'_>) -> StartOutcome {
        self.hosted_page(request)
    }

    fn start_locally(&self, request: &PaymentRequest<'_>) -> Option<StartOutcome> {
        Some(self.hosted_page(request))
    }

    fn verify_callback(&self, raw: &RawCallback) -> Result<VerifiedCallback, CallbackError> {
        let notice = ResultNotice::parse(raw)?;
        if !notice.signature_is_valid(self.config.hash, self.config.password2.expose_secret()) {
            return Err(CallbackError::BadSignature);
        }
        let personal_data_echoed = notice.own_parameters_echoed()?;
        let amount = notice.amount()?;
        Ok(VerifiedCallback {
            personal_data_echoed: Some(personal_data_echoed),
            payment_ref: notice.shp_value(wire::PAYMENT_REF_PARAM).map(str::to_owned),
            operation_id: None,
            order_id: notice.inv_id,
            // Robokassa calls ResultURL only for a paid invoice.
            event: CallbackEvent::PaymentSucceeded,
            amount_text: notice.out_sum,
            amount,
            // Sums are in roubles unless the shop asked for another currency (oplata never does).
            currency: None,
        })
    }

    fn return_is_signed(&self, raw: &RawCallback) -> bool {
        // SuccessURL: `OutSum:InvId:Password#1[:Shp_…]`; FailURL carries no signature.
        ResultNotice::parse(raw).is_ok_and(|notice| {
            let expected = wire::success_signature(
                self.config.hash,
                &notice.out_sum,
                &notice.inv_id,
                self.config.password1.expose_secret(),
                &notice.shp,
            );
            crate::signing::hex_signature_matches(&notice.signature, &expected)
        })
    }

    async fn payment_status(&self, order_id: &str) -> Result<StatusOutcome, ProviderError> {
        Ok(self.state_of(order_id).await.0)
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> Result<RefundOutcome, ProviderError> {
        let Some(password3) = &self.config.password3 else {
            return Err(ProviderError::Unsupported {
                acquirer: self.kind(),
                operation: "refunds without Password#3",
            });
        };
        let (status, _, op_key) = self.state_of(request.operation_id).await;
        let Some(op_key) = op_key.filter(|_| matches!(status, StatusOutcome::Succeeded { .. }))
        else {
            return Ok(RefundOutcome::NotSent {
                reason: "OpStateExt gave no operation key for a paid invoice".into(),
            });
        };
        // Compact JSON; the amount is written as Robokassa reads it, a plain decimal.
        let op_key_json = serde_json::to_string(&op_key)
            .map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let refund_sum = request
            .amount
            .map(|amount| format!(",\"RefundSum\":{amount}"))
            .unwrap_or_default();
        let invoice_items = request
            .receipt
            .map(|receipt| format!(",\"InvoiceItems\":{}", receipt.robokassa_invoice_items()))
            .unwrap_or_default();
        let payload = format!("{{\"OpKey\":{op_key_json}{refund_sum}{invoice_items}}}");
        let token = wire::refund_jwt(&payload, password3.expose_secret());
        let answer = self
            .http
            .post(self.refund_endpoint("/RefundService/Refund/Create"))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(token)
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return Ok(RefundOutcome::NotSent {
                    reason: "Refund/Create: connection failed".into(),
                });
            }
            Err(e) => {
                return Ok(RefundOutcome::Unknown {
                    reason: format!("Refund/Create: {}", describe_transport_error(&e)),
                });
            }
        };
        let created: Option<wire::RefundCreated> = response.json().await.ok();
        Ok(match created {
            Some(wire::RefundCreated {
                success: true,
                request_id: Some(id),
                ..
            }) => self.refund_state(&id).await,
            Some(wire::RefundCreated {
                success: false,
                message,
                ..
            }) => {
                let message = message.unwrap_or_else(|| "refused".into());
                RefundOutcome::Declined(Decline {
                    acquirer_code: message.clone(),
                    code: DeclineCode::Refused,
                    message: format!("Robokassa refused the refund: {message}"),
                })
            }
            Some(wire::RefundCreated {
                success: true,
                request_id: None,
                ..
            })
            | None => RefundOutcome::Unknown {
                reason: "Refund/Create gave an unreadable answer".into(),
            },
        })
    }

    async fn refund_status(&self, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        Ok(self.refund_state(refund_id).await)
    }

    async fn operation_details(
        &self,
        operation_id: &str,
    ) -> Result<OperationDetails, ProviderError> {
        let (status, masked_card, _) = self.state_of(operation_id).await;
        let paid = matches!(status, StatusOutcome::Succeeded { .. });
        Ok(OperationDetails {
            status,
            order_id: Some(operation_id.to_owned()),
            currency: None,
            // On Robokassa's page by contract: not reported per payment.
            three_ds_passed: None,
            masked_card,
            card_expiry: None,
            // The parent invoice is the token of a `Recurring=true` payment.
            token: paid.then(|| SecretString::from(operation_id.to_owned())),
        })
    }

    async fn charge_saved_card(
        &self,
        charge: &RecurringCharge<'_>,
    ) -> Result<ChargeOutcome, ProviderError> {
        let out_sum = charge.amount.to_string();
        let shp = vec![(
            wire::PAYMENT_REF_PARAM.to_owned(),
            charge.payment_ref.to_owned(),
        )];
        let receipt = charge.receipt.map(wire::encode_receipt);
        let signature = wire::payment_signature_with(
            self.config.hash,
            &self.config.merchant_login,
            &out_sum,
            charge.attempt_id,
            &wire::SignedExtras {
                receipt: receipt.as_deref(),
                ..wire::SignedExtras::default()
            },
            self.config.password1.expose_secret(),
            &shp,
        );
        let description: String = charge
            .description
            .chars()
            .take(DESCRIPTION_MAX_CHARS)
            .collect();
        let mut form = vec![
            ("MerchantLogin", self.config.merchant_login.as_str()),
            ("InvoiceID", charge.attempt_id),
            ("PreviousInvoiceID", charge.token.expose_secret()),
            ("OutSum", out_sum.as_str()),
            ("Description", description.as_str()),
            ("SignatureValue", signature.as_str()),
            (wire::PAYMENT_REF_PARAM, charge.payment_ref),
        ];
        if let Some(receipt) = &receipt {
            form.push(("Receipt", receipt.as_str()));
        }
        let answer = self
            .http
            .post(self.endpoint("/Merchant/Recurring"))
            .form(&form)
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return Ok(ChargeOutcome::NotSent {
                    reason: "Recurring: connection failed".into(),
                });
            }
            Err(e) => {
                return Ok(ChargeOutcome::Unknown {
                    reason: format!("Recurring: {}", describe_transport_error(&e)),
                });
            }
        };
        let status = response.status();
        let Ok(body) = response.text().await else {
            return Ok(ChargeOutcome::Unknown {
                reason: "Recurring: unreadable answer".into(),
            });
        };
        Ok(if status.is_server_error() {
            ChargeOutcome::Unknown {
                reason: format!("Recurring answered HTTP {}", status.as_u16()),
            }
        } else if wire::recurring_accepted(&body, charge.attempt_id) {
            ChargeOutcome::Pending {
                operation_id: charge.attempt_id.to_owned(),
            }
        } else if let Some(refusal) = wire::recurring_refusal(&body) {
            ChargeOutcome::Declined(Decline {
                acquirer_code: refusal,
                code: DeclineCode::Refused,
                message: "Robokassa refused the recurring charge".into(),
            })
        } else {
            // Neither OK{id} nor a refusal (an HTML error page, an empty body): the charge may
            // have been made. Only the status query can tell.
            ChargeOutcome::Unknown {
                reason: format!(
                    "Recurring answered HTTP {} with an unreadable body",
                    status.as_u16()
                ),
            }
        })
    }
}

impl Robokassa {
    /// OpStateExt, read as oplata's status, the masked card and the operation key.
    async fn state_of(&self, order_id: &str) -> (StatusOutcome, Option<String>, Option<String>) {
        let answer = match self.query_op_state(order_id).await {
            Ok(answer) => answer,
            Err(reason) => return (StatusOutcome::Unknown { reason }, None, None),
        };
        match ResultCode::from_code(answer.result.code) {
            ResultCode::Ok => {}
            // The customer never opened the page, or a charge never arrived.
            ResultCode::InvoiceNotFound => return (StatusOutcome::NotFound, None, None),
            code @ (ResultCode::BadSignature
            | ResultCode::ShopNotFound
            | ResultCode::DuplicateInvoice
            | ResultCode::InternalError
            | ResultCode::Unrecognized(_)) => {
                return (
                    StatusOutcome::Unknown {
                        reason: format!("OpStateExt result {code:?}"),
                    },
                    None,
                    None,
                );
            }
        }
        let masked_card = answer.info.as_ref().and_then(|i| i.inc_account.clone());
        let op_key = answer.info.as_ref().and_then(|i| i.op_key.clone());
        let Some(state) = answer.state else {
            return (
                StatusOutcome::Unknown {
                    reason: "OpStateExt answer without State".into(),
                },
                masked_card,
                op_key,
            );
        };
        let state = OperationState::from_code(state.code);
        let status = match state {
            OperationState::Paid => {
                let amount_text = answer.info.and_then(|i| i.out_sum.or(i.inc_sum));
                match amount_text
                    .and_then(|t| t.parse::<rust_decimal::Decimal>().ok())
                    .and_then(|d| Amount::from_decimal(d.normalize()).ok())
                {
                    Some(amount) => StatusOutcome::Succeeded { amount },
                    None => StatusOutcome::Unknown {
                        reason: "OpStateExt reports paid without a readable amount".into(),
                    },
                }
            }
            OperationState::Canceled => StatusOutcome::Failed(Decline {
                acquirer_code: state.code().to_string(),
                code: DeclineCode::CanceledByCustomer,
                message: "the payment was cancelled by the customer or timed out".into(),
            }),
            OperationState::Returned => StatusOutcome::Failed(Decline {
                acquirer_code: state.code().to_string(),
                code: DeclineCode::Refused,
                message: "crediting was refused and the money returned to the customer".into(),
            }),
            OperationState::Initiated
            | OperationState::Held
            | OperationState::Crediting
            | OperationState::Suspended => StatusOutcome::Pending,
            OperationState::Unrecognized(code) => StatusOutcome::Unknown {
                reason: format!("OpStateExt state {code} is not known"),
            },
        };
        (status, masked_card, op_key)
    }
}
