//! NetPay: one-off payments on the hosted page, and the notification.
//!
//! Decisions where the public record is silent (`PROTOCOLS.md`, section 5):
//! - Recurring payments are not public: the adapter declares it cannot save cards.
//! - No refund API: refunds are done in NetPay's cabinet and arrive as `Refund` notifications.
//! - No status query: a payment whose notification never comes goes to manual review.
//! - 3-D Secure happens on NetPay's page; the merchant contract makes it mandatory.
//! - A declined payment is reported by a notification with a status other than `APPROVED`
//!   (the plugins treat "anything else" as unsuccessful); the simulator sends one.

pub mod protocol;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod settings;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use url::Url;

use crate::{
    Acquirer, AcquirerKind, CallbackAnswer, CallbackError, CallbackEvent, Capabilities, Decline,
    DeclineCode, NextAction, PaymentRequest, ProviderError, RawCallback, StartOutcome,
    ThreeDsAssurance, VerifiedCallback,
};
pub use settings::NetPaySettings;
use wire::{Notification, TransactionType};

/// One NetPay merchant account.
#[derive(Debug, Clone)]
pub struct NetPayConfig {
    /// Derives the encryption key and signs notifications.
    pub api_key: SecretString,
    /// The merchant's "Auth signature", sent in the clear with each payment.
    pub auth: String,
    /// `https://my.net2pay.ru` in production, `https://demo.net2pay.ru` for the demo host.
    pub base_url: Url,
    /// In test mode the notification URL travels in the request (`param1=callback`); in
    /// production it is registered with NetPay.
    pub test_mode: bool,
    pub notification_url: Option<Url>,
    /// How long the payment link stays valid.
    pub link_lifetime: Duration,
}

#[derive(Debug)]
pub struct NetPay {
    config: NetPayConfig,
}

impl NetPay {
    /// The hosted payment page: a redirect built and signed here, without a call to the
    /// acquirer.
    fn hosted_page(&self, request: &PaymentRequest<'_>) -> StartOutcome {
        let lifetime =
            time::Duration::try_from(self.config.link_lifetime).unwrap_or(time::Duration::HOUR);
        let expire = wire::format_expire(OffsetDateTime::now_utc() + lifetime);
        let amount = request.amount.to_string();
        let mut items: Vec<(&str, &str)> = vec![
            ("amount", &amount),
            ("currency", "RUB"),
            ("orderID", request.order_id),
            ("orderNumber", request.payment_ref),
            ("description", request.description),
            ("successUrl", request.success_url),
            ("failUrl", request.fail_url),
        ];
        if let Some(email) = request.email {
            items.push(("email", email));
        }
        // The receipt travels encrypted with the rest, as the official ATOL helper sends it.
        let cashbox_data = request.receipt.map(crate::Receipt::net_pay_json);
        if let Some(cashbox_data) = &cashbox_data {
            items.push(("cashbox_data", cashbox_data));
        }
        let callback = self.config.notification_url.as_ref().map(Url::to_string);
        if let (true, Some(callback)) = (self.config.test_mode, callback.as_deref()) {
            items.push(("param1", "callback"));
            items.push(("value1", callback));
        }
        let data = wire::encrypt_data(self.config.api_key.expose_secret(), &expire, &items);
        StartOutcome::RequiresAction(NextAction::FormPost {
            url: self.page_url(),
            fields: vec![
                ("data".to_owned(), url_encode(&data)),
                ("auth".to_owned(), self.config.auth.clone()),
                ("expire".to_owned(), url_encode(&expire)),
            ],
        })
    }

    pub fn new(config: NetPayConfig) -> Result<Self, ProviderError> {
        if config.api_key.expose_secret().is_empty() || config.auth.is_empty() {
            return Err(ProviderError::Configuration(
                "NetPay api_key and auth are required".into(),
            ));
        }
        Ok(NetPay { config })
    }

    fn page_url(&self) -> String {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}/billingService/paypage/"));
        url.to_string()
    }
}

fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The answer to a notification, built from the raw notification so that it echoes its order
/// and transaction type.
pub fn notification_answer(raw: &RawCallback, refusal: Option<&str>) -> CallbackAnswer {
    let (order, kind) = match Notification::parse(&raw.query) {
        Ok(n) => (n.order_id, n.transaction_type),
        Err(_) => (String::new(), String::new()),
    };
    wire::notification_answer(&order, &kind, refusal)
}

#[async_trait]
impl Acquirer for NetPay {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::NetPay
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hosted_payment: true,
            saved_cards: false,
            saved_card_challenge: false,
            three_ds: ThreeDsAssurance::EnforcedByContract,
            status_query: false,
            refunds: false,
            refund_status: false,
            refund_lookup: false,
            unbind: false,
            // `param1`/`value1` is one pair, and test mode spends it on the callback address.
            personal_data: false,
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
        let notice = Notification::parse(&raw.query)?;
        let auth_matches: bool = notice
            .auth
            .as_bytes()
            .ct_eq(self.config.auth.as_bytes())
            .into();
        if !auth_matches || !notice.token_is_valid(self.config.api_key.expose_secret()) {
            return Err(CallbackError::BadSignature);
        }
        let amount = crate::money::notified_amount(&notice.amount, "amount")?;
        let approved = notice.status == "APPROVED" && notice.error_free();
        let event = match (TransactionType::parse(&notice.transaction_type), approved) {
            (TransactionType::Sale | TransactionType::Capture, true) => {
                CallbackEvent::PaymentSucceeded
            }
            (TransactionType::Sale, false) => CallbackEvent::PaymentFailed(Decline {
                acquirer_code: notice
                    .error
                    .clone()
                    .unwrap_or_else(|| notice.status.clone()),
                code: DeclineCode::Refused,
                message: format!("NetPay reports {} for the payment", notice.status),
            }),
            (TransactionType::Refund, true) => CallbackEvent::RefundSettled,
            (
                TransactionType::Authorize
                | TransactionType::Cancel
                | TransactionType::Capture
                | TransactionType::Refund
                | TransactionType::Unrecognized,
                _,
            ) => CallbackEvent::Unexpected(format!(
                "NetPay notification {} {}",
                notice.transaction_type, notice.status
            )),
        };
        Ok(VerifiedCallback {
            order_id: notice.order_id,
            event,
            amount_text: notice.amount,
            amount,
            payment_ref: notice.order_number,
            operation_id: None,
            currency: None,
            personal_data_echoed: None,
        })
    }
}
