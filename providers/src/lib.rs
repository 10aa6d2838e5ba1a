//! Acquirer adapters behind one trait.
//!
//! The service talks to every acquirer through [`Acquirer`]. An adapter is one merchant account
//! at one acquirer: it knows its credentials and base URLs, signs what it sends, verifies what it
//! receives and maps the acquirer's answers to the outcome values below. Outcomes are values, not
//! errors: only [`ChargeOutcome::Unknown`] and [`StatusOutcome::Unknown`] mean "ask again later".
//!
//! Adapters declare what they can do in [`Capabilities`], so the service refuses an unsupported
//! request before anything is sent. Each acquirer also has a sandbox simulator of its wire
//! protocol (`<acquirer>::sandbox`) used by tests and the local demo.

pub mod markup;
pub mod money;
pub mod receipt;
pub mod redact;
#[macro_use]
pub mod registry;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod signing;

use std::fmt;

use async_trait::async_trait;

pub use money::{Amount, AmountError};
pub use receipt::Receipt;

// The acquirers, one line each: the folder, its configuration name and its settings type.
acquirers! {
    NetPay = "net_pay" in net_pay::NetPaySettings,
    Robokassa = "robokassa" in robokassa::RobokassaSettings,
    Moneta = "moneta" in moneta::MonetaSettings,
}

impl AcquirerKind {
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    /// Where this acquirer's simulator is mounted (in oplata in demo mode, or alone in
    /// `oplata sandbox`).
    pub fn sandbox_mount(self) -> String {
        format!("/sandbox/{}", self.as_str())
    }
}

/// How a stored acquirer name is read back.
impl TryFrom<String> for AcquirerKind {
    type Error = UnknownAcquirer;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        AcquirerKind::parse(&name).ok_or(UnknownAcquirer(name))
    }
}

/// Compares with the acquirer's configuration name (`kind == "moneta"`).
impl PartialEq<&str> for AcquirerKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown acquirer {0:?}")]
pub struct UnknownAcquirer(pub String);

impl fmt::Display for AcquirerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an adapter can do. The service checks these before it calls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A payment on the acquirer's hosted page, with card entry there.
    pub hosted_payment: bool,
    /// The acquirer can issue a recurring token from a hosted payment.
    pub saved_cards: bool,
    /// The issuer may demand 3-D Secure on a saved-card charge, completed through the merchant
    /// (`complete_three_ds`).
    pub saved_card_challenge: bool,
    /// How 3-D Secure on a new card payment is known to have happened.
    pub three_ds: ThreeDsAssurance,
    /// The acquirer answers "what happened to this order?".
    pub status_query: bool,
    /// Refunds can be requested through an API.
    pub refunds: bool,
    /// Refund status can be queried.
    pub refund_status: bool,
    /// A refund can be found by oplata's own refund reference (its `clientTransaction`), so a
    /// refund whose answer was lost can be asked about even without the acquirer's refund id.
    pub refund_lookup: bool,
    /// A saved token can be unbound at the acquirer.
    pub unbind: bool,
    /// The payment form has free fields that carry the payer's passport data (rule 8).
    pub personal_data: bool,
    /// How the fiscal receipt (54-FZ) reaches the acquirer's cashbox.
    pub receipts: ReceiptChannel,
}

/// Where an acquirer takes the fiscal receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptChannel {
    /// With the payment request, covered by its signature or encryption (Robokassa's
    /// `Receipt`, NetPay's `cashbox_data`), and with refunds where the refund API takes lines.
    WithPaymentRequest,
    /// In the merchant's answer to the paid notification (Moneta's `MNT_ATTRIBUTES`).
    InNotificationAnswer,
}

/// How oplata knows that a new-card payment passed 3-D Secure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreeDsAssurance {
    /// The acquirer's hosted page always runs 3-D Secure: it is in the merchant contract.
    EnforcedByContract,
    /// The acquirer reports, per operation, whether 3-D Secure was passed.
    ReportedPerPayment,
}

/// What the service asks an acquirer to start: a payment with card entry on the acquirer's page.
#[derive(Debug, Clone)]
pub struct PaymentRequest<'a> {
    /// oplata's payment id, echoed by the acquirer where its protocol allows.
    pub payment_ref: &'a str,
    /// The acquirer-side order id oplata allocated for this payment.
    pub order_id: &'a str,
    pub amount: Amount,
    pub description: &'a str,
    pub email: Option<&'a str>,
    /// Where the acquirer sends the browser back, for protocols that take it per payment.
    pub success_url: &'a str,
    pub fail_url: &'a str,
    /// Ask the acquirer for a recurring token (only where `capabilities.saved_cards`).
    pub save_card: bool,
    /// oplata's id of the customer, for acquirers that tie saved cards to one.
    pub customer_ref: Option<&'a str>,
    /// The payer's passport data, which budget payments must carry (only where
    /// `capabilities.personal_data`).
    pub payer: Option<Payer<'a>>,
    /// The fiscal receipt, when the supplier issues them through the acquirer.
    pub receipt: Option<&'a Receipt>,
}

/// Passport data for the acquirer's free fields. `Debug` shows none of it.
#[derive(Clone, Copy)]
pub struct Payer<'a> {
    /// Series and number, `"4510 123456"`.
    pub passport: &'a str,
    pub full_name: &'a str,
}

impl std::fmt::Debug for Payer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Payer(<personal data>)")
    }
}

/// A charge of a saved card, without card entry.
#[derive(Debug, Clone)]
pub struct RecurringCharge<'a> {
    /// The same for every retry of one charge, so the acquirer can refuse a second debit.
    pub attempt_id: &'a str,
    /// oplata's payment id, echoed by the acquirer where its protocol allows.
    pub payment_ref: &'a str,
    pub order_id: &'a str,
    pub amount: Amount,
    pub description: &'a str,
    pub token: &'a secrecy::SecretString,
    /// Where the issuer's 3-D Secure page sends its answer, if it demands a challenge.
    pub three_ds_return_url: &'a str,
    /// The fiscal receipt, when the supplier issues them through the acquirer.
    pub receipt: Option<&'a Receipt>,
}

/// The outcome of a saved-card charge or of a 3-D Secure completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        operation_id: String,
    },
    /// Accepted by the acquirer; the result comes later, by notification or status query.
    Pending {
        operation_id: String,
    },
    /// The issuer demands 3-D Secure: the customer's browser must post this form.
    RequiresAction {
        operation_id: String,
        action: NextAction,
    },
    Declined(Decline),
    /// Sent, no readable answer: ask the status later, never charge again blindly.
    Unknown {
        reason: String,
    },
    /// Certainly not acted upon: safe to retry.
    NotSent {
        reason: String,
    },
}

/// A refund request.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// The acquirer's id of the paid operation.
    pub operation_id: &'a str,
    /// oplata's refund id, the same for every retry.
    pub refund_ref: &'a str,
    /// `None` refunds the whole payment.
    pub amount: Option<Amount>,
    pub reason: &'a str,
    /// The lines of the refund receipt, where the acquirer's refund API takes them.
    pub receipt: Option<&'a Receipt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded { refund_id: String },
    Pending { refund_id: String },
    Declined(Decline),
    Unknown { reason: String },
    NotSent { reason: String },
}

/// What the acquirer knows of one operation.
#[derive(Debug, Clone)]
pub struct OperationDetails {
    pub status: StatusOutcome,
    /// The merchant's order the operation belongs to, where the acquirer reports it (Moneta's
    /// `clienttransaction`): a notification is bound to its own order's operation.
    pub order_id: Option<String>,
    /// The operation's currency, where reported (ISO 4217 letters).
    pub currency: Option<String>,
    /// `Some(true)` only when the acquirer reports 3-D Secure passed.
    pub three_ds_passed: Option<bool>,
    /// What may be shown of the card: `411111******1111`.
    pub masked_card: Option<String>,
    /// `MM/YYYY`.
    pub card_expiry: Option<String>,
    /// The recurring token, when the payment asked for one.
    pub token: Option<secrecy::SecretString>,
}

/// Where the service must send the customer's browser next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// Send the browser to this address with a GET.
    Redirect { url: String },
    /// Make the browser POST these fields to this address (an auto-submitting form).
    FormPost {
        url: String,
        fields: Vec<(String, String)>,
    },
}

/// The result of asking an acquirer to start a hosted payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The customer has to act: pay on the acquirer's page.
    RequiresAction(NextAction),
    /// The acquirer refused before the customer saw anything.
    Declined(Decline),
    /// Nothing was sent (or the acquirer certainly did not act on it): safe to try again.
    NotSent { reason: String },
}

/// A refusal by the acquirer or the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// The acquirer's own code, as it sent it.
    pub acquirer_code: String,
    /// oplata's unified code for it.
    pub code: DeclineCode,
    pub message: String,
}

/// oplata's unified decline reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineCode {
    CanceledByCustomer,
    InsufficientFunds,
    ThreeDsFailed,
    Refused,
    AcquirerError,
}

impl DeclineCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::CanceledByCustomer => "canceled_by_customer",
            DeclineCode::InsufficientFunds => "insufficient_funds",
            DeclineCode::ThreeDsFailed => "three_ds_failed",
            DeclineCode::Refused => "refused",
            DeclineCode::AcquirerError => "acquirer_error",
        }
    }
}

/// The acquirer's answer to "what happened to this order?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Paid: this much was charged.
    Succeeded { amount: Amount },
    /// Final failure.
    Failed(Decline),
    /// Not final yet (customer still on the page, money in transit…).
    Pending,
    /// The acquirer has no operation for this order: the customer never reached its page, or a
    /// charge never arrived. Past a deadline, it never happened.
    NotFound,
    /// The acquirer did not give a readable answer: ask again later.
    Unknown { reason: String },
}

/// A server-to-server notification as it arrived, before anything was trusted.
#[derive(Debug, Clone, Default)]
pub struct RawCallback {
    /// The raw query string, without the leading `?`.
    pub query: String,
    /// The raw request body.
    pub body: Vec<u8>,
}

impl RawCallback {
    /// The notification's parameters in the order received: the query string and a form body.
    pub fn params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .chain(form_urlencoded::parse(&self.body))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// What a verified notification says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// The payment was charged: `amount_text` exactly as the acquirer sent it.
    PaymentSucceeded,
    /// The payment failed.
    PaymentFailed(Decline),
    /// Money went back to the customer (a refund done at the acquirer).
    RefundSettled,
    /// Something the service does not act on by itself (a hold, a cancellation…): a person
    /// looks at it.
    Unexpected(String),
    /// The acquirer asks, before the customer pays, whether the order may be paid.
    CheckRequested,
}

/// A notification whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCallback {
    pub order_id: String,
    pub event: CallbackEvent,
    /// The amount as the acquirer wrote it (never re-formatted before verification).
    pub amount_text: String,
    /// The same amount as a number, to compare with the payment's.
    pub amount: rust_decimal::Decimal,
    /// The payment id echoed back in the acquirer's custom fields, when it carries one.
    pub payment_ref: Option<String>,
    /// The acquirer's own id of the operation, when the notification carries one.
    pub operation_id: Option<String>,
    /// The currency the notification names, where its protocol carries one (ISO 4217 letters).
    pub currency: Option<String>,
    /// Whether the payer's passport data oplata sent came back in the echoed parameters, where
    /// the protocol echoes them (Robokassa's `Shp_`); `None` elsewhere.
    pub personal_data_echoed: Option<bool>,
}

/// The HTTP answer an acquirer's protocol expects to a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Why a notification was not accepted. Texts are safe to log and to answer: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the notification is malformed: {0}")]
    Malformed(String),
    #[error("the notification's signature does not match")]
    BadSignature,
    #[error("the notification names an order this service does not know")]
    UnknownOrder,
    #[error("the notification's amount differs from the payment's")]
    AmountMismatch,
}

/// A failure of the adapter itself, as opposed to an outcome the acquirer reported.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{acquirer} does not support {operation}")]
    Unsupported {
        acquirer: AcquirerKind,
        operation: &'static str,
    },
    #[error("invalid adapter configuration: {0}")]
    Configuration(String),
}

/// One merchant account at one acquirer.
#[async_trait]
pub trait Acquirer: Send + Sync + fmt::Debug {
    fn kind(&self) -> AcquirerKind;

    fn capabilities(&self) -> Capabilities;

    /// Starts a payment with card entry on the acquirer's page and says where to send the browser.
    async fn start_payment(&self, request: &PaymentRequest<'_>) -> StartOutcome;

    /// The same as [`Acquirer::start_payment`] when starting asks the acquirer nothing (a
    /// signed or encrypted redirect to its page): the service then creates the payment and
    /// sends it there in one transaction. `None` (the default): call `start_payment`.
    fn start_locally(&self, request: &PaymentRequest<'_>) -> Option<StartOutcome> {
        let _ = request;
        None
    }

    /// Checks a server-to-server notification's signature and reads what it says.
    fn verify_callback(&self, raw: &RawCallback) -> Result<VerifiedCallback, CallbackError>;

    /// The answer to a notification when the protocol signs its answers with the merchant's
    /// secret (Moneta's `MNT_RESPONSE`); `None` means the unsigned protocol answer will do.
    fn signed_answer(
        &self,
        raw: &RawCallback,
        verdict: AnswerVerdict<'_>,
    ) -> Option<CallbackAnswer> {
        let _ = (raw, verdict);
        None
    }

    /// Whether a browser return carries the acquirer's own signature (Robokassa's SuccessURL):
    /// proof that the customer really came from the acquirer's page for this order.
    fn return_is_signed(&self, raw: &RawCallback) -> bool {
        let _ = raw;
        false
    }

    /// Asks the acquirer what happened to an order.
    async fn payment_status(&self, order_id: &str) -> Result<StatusOutcome, ProviderError> {
        let _ = order_id;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "status query",
        })
    }

    /// Reads an operation's details: its status, 3-D Secure result, card and token.
    async fn operation_details(
        &self,
        operation_id: &str,
    ) -> Result<OperationDetails, ProviderError> {
        let _ = operation_id;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "operation details",
        })
    }

    /// Charges a saved card.
    async fn charge_saved_card(
        &self,
        charge: &RecurringCharge<'_>,
    ) -> Result<ChargeOutcome, ProviderError> {
        let _ = charge;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "saved-card charges",
        })
    }

    /// Completes a charge after the customer's 3-D Secure challenge.
    async fn complete_three_ds(
        &self,
        operation_id: &str,
        challenge_answer: &str,
    ) -> Result<ChargeOutcome, ProviderError> {
        let _ = (operation_id, challenge_answer);
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "3-D Secure completion",
        })
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> Result<RefundOutcome, ProviderError> {
        let _ = request;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "refunds",
        })
    }

    /// Finds a refund by oplata's own reference (`RefundRequest::refund_ref`): `None` when the
    /// acquirer has no such refund. Only where `capabilities.refund_lookup`.
    async fn find_refund(&self, refund_ref: &str) -> Result<Option<RefundOutcome>, ProviderError> {
        let _ = refund_ref;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "refund lookup",
        })
    }

    /// What became of a refund the acquirer accepted (`refund_id` as it gave it).
    async fn refund_status(&self, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        let _ = refund_id;
        Err(ProviderError::Unsupported {
            acquirer: self.kind(),
            operation: "refund status",
        })
    }
}

/// What each acquirer's wire protocol says about its notifications and browser returns before
/// any merchant account is known (so before anything can be verified). Implemented in each
/// acquirer's folder and reached through [`AcquirerKind::protocol`].
pub trait Protocol: Send + Sync + 'static {
    fn kind(&self) -> AcquirerKind;

    /// Reads the order id out of a notification before it is verified, so the service can find
    /// the payment (and with it the merchant account whose secret verifies the notification).
    fn callback_order_id(&self, raw: &RawCallback) -> Result<String, CallbackError>;

    /// The answer the protocol expects for an accepted notification.
    fn callback_accepted(&self, raw: &RawCallback) -> CallbackAnswer;

    /// The answer the protocol expects for a rejected notification.
    fn callback_rejected(&self, raw: &RawCallback, error: &CallbackError) -> CallbackAnswer;

    /// Reads the order id from the customer's browser return (SuccessURL, FailURL…). The
    /// return is not trusted: the service only uses it to know which payment to ask about.
    fn return_order_id(&self, raw: &RawCallback) -> Option<String>;

    /// The paths under which oplata receives this acquirer's notifications (each set in the
    /// acquirer's cabinet or sent with the payment).
    fn notification_paths(&self) -> &'static [NotificationPath];
}

/// A path oplata receives notifications at, and whether the acquirer may POST there (all may
/// GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationPath {
    pub path: &'static str,
    pub post: bool,
}

/// The answer `kind`'s protocol expects for an accepted notification.
pub fn callback_accepted(kind: AcquirerKind, raw: &RawCallback) -> CallbackAnswer {
    kind.protocol().callback_accepted(raw)
}

/// The answer `kind`'s protocol expects for a rejected notification.
pub fn callback_rejected(
    kind: AcquirerKind,
    raw: &RawCallback,
    error: &CallbackError,
) -> CallbackAnswer {
    kind.protocol().callback_rejected(raw, error)
}

/// A protocol whose answer is itself signed with the merchant's secret needs the adapter:
/// this asks it, falling back to the protocol's unsigned answer.
pub fn signed_callback_answer(
    adapter: &dyn Acquirer,
    raw: &RawCallback,
    verdict: AnswerVerdict<'_>,
) -> CallbackAnswer {
    match (adapter.signed_answer(raw, verdict), verdict) {
        (Some(answer), _) => answer,
        (None, AnswerVerdict::Rejected(error)) => {
            adapter.kind().protocol().callback_rejected(raw, error)
        }
        (None, AnswerVerdict::Accepted { .. } | AnswerVerdict::Check { .. }) => {
            adapter.kind().protocol().callback_accepted(raw)
        }
    }
}

/// What the service decided about a notification, for the protocol's answer.
#[derive(Debug, Clone, Copy)]
pub enum AnswerVerdict<'a> {
    /// Accepted; a protocol that takes the fiscal receipt in its answer (Moneta's Pay URL)
    /// gets it here.
    Accepted {
        receipt: Option<&'a Receipt>,
    },
    Rejected(&'a CallbackError),
    /// The answer to a pre-payment check (Moneta's Check URL), which must name the order's
    /// amount and description.
    Check {
        result: CheckResult,
        amount: Option<Amount>,
        description: &'a str,
    },
}

/// May the customer pay this order now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// The order exists, is unpaid and may be paid.
    Payable,
    AlreadyPaid,
    InProgress,
    /// Unknown, cancelled, or not for this amount.
    NotPayable,
}

/// The order id oplata put into a return URL it gave the acquirer (`order=<id>`): one, not
/// empty, not absurdly long.
pub(crate) fn order_from_return(raw: &RawCallback) -> Option<String> {
    let params = raw.params();
    let mut ids = params.iter().filter(|(k, _)| k == "order").map(|(_, v)| v);
    let id = ids.next()?;
    (ids.next().is_none() && !id.is_empty() && id.len() <= 64).then(|| id.clone())
}

/// Idle connections kept open to each acquirer host.
const IDLE_CONNECTIONS_PER_ACQUIRER: usize = 32;

/// An HTTP client for talking to acquirers (and for the simulators' notifications): TLS through
/// rustls on `ring`, no redirects followed, a timeout on every call.
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider (ring builds faster than aws-lc);
    // install ring once for the process. A second install is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(std::time::Duration::from_secs(5))
        // A burst of charges opens a connection each; afterwards a few kept alive serve the
        // steady load, and the rest close instead of holding their buffers for 90 s.
        .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_ACQUIRER)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oplata/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod registry_tests {
    use super::{AcquirerKind, PROTOCOLS};

    #[test]
    fn every_acquirer_has_exactly_one_protocol() {
        for kind in AcquirerKind::ALL {
            let registered = PROTOCOLS.iter().filter(|p| p.kind() == kind).count();
            assert_eq!(registered, 1, "{kind}");
            assert_eq!(kind.protocol().kind(), kind);
        }
    }
}
