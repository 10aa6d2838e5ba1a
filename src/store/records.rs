//! Rows as the database keeps them. Conversion to domain types happens in the service layer.

use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiClientRecord {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// What the service decided to store for a new payment.
#[derive(Debug, Clone)]
pub struct NewPaymentRecord {
    pub id: Uuid,
    pub client_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub supplier_id: String,
    pub account_number: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub email: Option<String>,
    /// Where the receipt goes when there is no e-mail address (`+7XXXXXXXXXX`).
    pub phone: Option<String>,
    pub return_url: Option<String>,
    pub acquirer: oplata_providers::AcquirerKind,
    pub payment_method: crate::domain::payment::PaymentMethod,
    pub saved_card_id: Option<Uuid>,
    pub save_card: bool,
    pub created_at: OffsetDateTime,
    /// The payer's sealed passport data (budget suppliers), stored with the payment.
    pub payer: Option<NewPayerData>,
}

/// Sealed personal data and the hash of the secret that lets the browser go on to the acquirer.
#[derive(Clone)]
pub struct NewPayerData {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub continue_token_hash: String,
}

impl std::fmt::Debug for NewPayerData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewPayerData {{ key_id: {:?}, <sealed> }}", self.key_id)
    }
}

/// A payment's personal data row; the ciphertext is gone once purged.
#[derive(Clone, sqlx::FromRow)]
pub struct PayerDataRecord {
    pub payment_id: Uuid,
    pub key_id: Option<String>,
    pub ciphertext: Option<Vec<u8>>,
    pub continue_token_hash: String,
    pub created_at: OffsetDateTime,
    pub purged_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for PayerDataRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayerDataRecord")
            .field("payment_id", &self.payment_id)
            .field("key_id", &self.key_id)
            .field("sealed", &self.ciphertext.is_some())
            .field("purged_at", &self.purged_at)
            .finish()
    }
}

/// Who made a public payment, and the limits it must pass.
#[derive(Debug, Clone)]
pub struct PublicAttempt {
    pub client_ip: String,
    pub limits: crate::domain::public_limits::PublicLimits,
}

/// One inbound SMS as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SmsMessageRecord {
    pub message_id: String,
    pub phone: String,
    pub local_day: String,
    pub account_day: Option<String>,
    pub kind: String,
    pub supplier_id: Option<String>,
    pub account_number: Option<String>,
    pub payment_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub state: crate::domain::sms::SmsState,
    pub reply: String,
    pub late_reply: Option<String>,
    pub received_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Who an accepted payment SMS pays and with which card, for its reply.
    pub payee: Option<String>,
}

/// An inbound SMS to judge and record under the phone's lock.
#[derive(Debug, Clone)]
pub struct SmsClaim<'a> {
    pub message_id: &'a str,
    pub phone: &'a str,
    /// The day in the SMS time zone: the phone's limits.
    pub local_day: &'a str,
    /// The day in the supplier's time zone: one payment SMS per account.
    pub account_day: Option<&'a str>,
    pub command: &'a crate::domain::sms::Command,
    /// The supplier the account resolved to, for a payment SMS.
    pub supplier_id: Option<&'a str>,
    /// The id the payment will have if the SMS is accepted.
    pub payment_id: Uuid,
    /// "Supplier, карта *1234": named in the reply of an accepted payment.
    pub payee: Option<&'a str>,
    pub received_at: OffsetDateTime,
    pub now: OffsetDateTime,
}

/// What the caller's rules made of a new SMS, given the day's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsJudgement {
    /// The kind it is stored and counted as.
    pub counted_as: &'static str,
    /// The reply that ends it; `None`: accepted, its charge runs.
    pub reply: Option<String>,
}

/// What became of a claimed SMS.
#[derive(Debug, Clone)]
pub enum SmsClaimResult {
    /// Seen before: the stored row (its reply is the answer, unless still `in_progress`).
    Seen(Box<SmsMessageRecord>),
    /// Answered without a charge; the reply text.
    Answered(String),
    /// Accepted: the charge must run now under the claimed payment id.
    Accepted,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub client_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub supplier_id: String,
    pub account_number: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub return_url: Option<String>,
    #[sqlx(try_from = "String")]
    pub acquirer: oplata_providers::AcquirerKind,
    pub acquirer_order_id: String,
    #[sqlx(try_from = "String")]
    pub status: crate::domain::payment::PaymentStatus,
    pub next_action: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub review_reason: Option<String>,
    /// Why it is on the review list: the code and facts of a `ReviewReason` (JSON).
    pub review_detail: Option<String>,
    pub acquirer_operation_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub payment_method: crate::domain::payment::PaymentMethod,
    pub saved_card_id: Option<Uuid>,
    pub save_card: bool,
    pub next_check_at: Option<OffsetDateTime>,
    pub check_attempts: i32,
    pub action_deadline: Option<OffsetDateTime>,
    /// When the payment was last sent to the acquirer for an outcome.
    pub submitted_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: String,
    /// The code and facts of an `AuditReason` (JSON); `None` on lines written before codes.
    pub detail: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRecord {
    pub id: Uuid,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub created_at: OffsetDateTime,
}

/// A response kept for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// A saved card. `Debug` leaves out the ciphertext.
#[derive(Clone, sqlx::FromRow)]
pub struct SavedCardRecord {
    pub id: Uuid,
    /// The API client (portal) whose user the card belongs to.
    pub client_id: Option<Uuid>,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub payment_type: crate::domain::supplier::PaymentType,
    #[sqlx(try_from = "String")]
    pub acquirer: oplata_providers::AcquirerKind,
    /// The payment that bound it; `None` once the card ended (for Robokassa that payment's
    /// invoice number is the token, so a tombstone must not name it).
    pub binding_payment_id: Option<Uuid>,
    pub key_id: Option<String>,
    pub token_ciphertext: Option<Vec<u8>>,
    pub brand: String,
    pub last4: String,
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
    #[sqlx(try_from = "String")]
    pub status: crate::domain::cards::CardStatus,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SavedCardRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedCardRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("payment_type", &self.payment_type)
            .field("acquirer", &self.acquirer)
            .field("status", &self.status)
            .field("key_id", &self.key_id)
            .field(
                "token_ciphertext",
                &self
                    .token_ciphertext
                    .as_ref()
                    .map(|c| format!("<{} bytes>", c.len())),
            )
            .field("last4", &self.last4)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewSavedCard {
    pub id: Uuid,
    pub client_id: Option<Uuid>,
    pub user_id: String,
    pub payment_type: crate::domain::supplier::PaymentType,
    pub acquirer: oplata_providers::AcquirerKind,
    pub binding_payment_id: Uuid,
    pub key_id: String,
    pub token_ciphertext: Vec<u8>,
    pub brand: String,
    pub last4: String,
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for NewSavedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSavedCard")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CardEventRecord {
    pub id: Uuid,
    pub card_id: Uuid,
    pub user_id: String,
    pub event: String,
    pub actor: String,
    pub payment_id: Option<Uuid>,
    pub detail: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRecord {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount_minor: i64,
    #[sqlx(try_from = "String")]
    pub status: crate::domain::refunds::RefundStatus,
    pub reason: String,
    pub operator: String,
    pub client_id: Option<Uuid>,
    pub acquirer_refund_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub next_check_at: Option<OffsetDateTime>,
    pub check_attempts: i32,
    /// Why the refund waits for a person: its outcome could not be learned from the acquirer.
    pub review_reason: Option<String>,
    /// The code and facts of its `ReviewReason` (JSON).
    pub review_detail: Option<String>,
    /// The operator who settled it from the review list, and their note.
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A refund to reserve.
#[derive(Debug, Clone)]
pub struct NewRefund<'a> {
    /// Chosen with the idempotency key's claim, so a retried request finds this refund.
    pub id: Uuid,
    pub payment_id: Uuid,
    pub reason: &'a str,
    pub operator: &'a str,
    pub client_id: Option<Uuid>,
    /// The acquirer has no refund API: the refund waits for the acquirer's own report.
    pub awaiting_acquirer: bool,
    pub now: OffsetDateTime,
}

/// What became of a refund at the acquirer.
#[derive(Debug, Clone, Copy)]
pub struct RefundSettlement<'a> {
    pub status: crate::domain::refunds::RefundStatus,
    pub acquirer_refund_id: Option<&'a str>,
    pub failure: Option<(&'a str, &'a str)>,
    pub actor: &'a str,
    /// An operator's note when a person settled it from the review list (`actor` is then the
    /// operator).
    pub resolution_note: Option<&'a str>,
}

/// One event to deliver to one endpoint, with the event itself.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub event_id: Uuid,
    pub endpoint: String,
    pub attempts: i32,
    pub event_type: String,
    pub payload: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub event_id: Uuid,
    pub endpoint: String,
    pub aggregate_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
}

/// `Debug` leaves out the password hash and the sealed second-factor secret.
#[derive(Clone, sqlx::FromRow)]
pub struct OperatorRecord {
    pub id: Uuid,
    pub login: String,
    pub name: String,
    /// An argon2 PHC string; never the password.
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
    /// The vault key that sealed `totp_secret`; both `None` when no second factor is enrolled.
    pub totp_key_id: Option<String>,
    pub totp_secret: Option<Vec<u8>>,
    /// The last RFC 6238 time step accepted: a code of that step or earlier is refused.
    pub totp_last_step: Option<i64>,
}

impl std::fmt::Debug for OperatorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRecord")
            .field("id", &self.id)
            .field("login", &self.login)
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("second_factor", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// `Debug` leaves out the CSRF token.
#[derive(Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub operator_id: Uuid,
    pub login: String,
    pub name: String,
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("operator_id", &self.operator_id)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}
