//! Storage: one [`Store`] trait with a PostgreSQL and a SQLite implementation.
//!
//! The backend is chosen by the database URL's scheme. Both run the same SQL (written with `$N`
//! placeholders, which both understand); they differ only in how a read-then-write transaction
//! is isolated: `SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite.

mod postgres;
mod records;
pub(crate) mod sql;
mod sql_channels;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::payment::{InvalidTransition, PaymentEvent};

pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("record not found")]
    NotFound,
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// The state machine refused a change a person asked for.
    #[error("refused: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the database could not be reached or gave no connection in time (as opposed to
    /// refusing a statement): the request may be tried again once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => {
                matches!(
                    error,
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
                    // PostgreSQL: the server is shutting down or starting (57P0x), or cannot
                    // connect (08xxx).
                    code.starts_with("57P0") || code.starts_with("08")
                }))
            }
            _ => false,
        }
    }
}

/// What a status change did.
#[derive(Debug, Clone)]
pub enum TransitionResult {
    /// The status changed; audit and outbox rows were written with it.
    Applied(PaymentRecord),
    /// The payment was already there: nothing was written.
    AlreadyThere(PaymentRecord),
    /// The state machine refused it: nothing was written.
    Refused(PaymentRecord, InvalidTransition),
}

/// A status change to apply atomically with its audit and outbox rows.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub event: PaymentEvent,
    /// JSON of the browser's next step (stored with `ActionRequired`).
    pub next_action: Option<&'a str>,
    /// Code and message of a failure (stored with `Failed` and the like).
    pub failure: Option<(&'a str, &'a str)>,
    /// Who caused it: `client:<id>`, `acquirer:robokassa`, `worker:reconciliation`…
    pub actor: &'a str,
    pub reason: &'a str,
    /// The acquirer's id of the operation, recorded when it becomes known.
    pub acquirer_operation_id: Option<&'a str>,
}

/// A key this request now holds, and the resource it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedKey {
    /// The id the key's payment or refund has (or will have): chosen at the first claim, kept
    /// by every later one.
    pub resource_id: Uuid,
    /// The key was held before by a request that died (or gave it back): the resource may
    /// exist and must be resumed, not created again.
    pub resumed: bool,
}

/// What became of an attempt to claim an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// This request owns the key now and must run.
    Claimed(ClaimedKey),
    /// Another request with this key is running.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
    /// The key was used with this request: here is the first answer.
    Completed(StoredResponse),
}

#[async_trait]
pub trait Store: ChannelStore + Send + Sync + std::fmt::Debug {
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> Result<(), StoreError>;

    async fn insert_api_client(&self, client: &ApiClientRecord) -> Result<(), StoreError>;
    async fn find_api_client_by_key_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiClientRecord>, StoreError>;
    async fn list_api_clients(&self) -> Result<Vec<ApiClientRecord>, StoreError>;
    /// Returns false when there is no such live key.
    async fn revoke_api_client(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    async fn claim_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        lock_until: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError>;
    async fn complete_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Forgets a key whose request was refused without writing anything.
    async fn release_idempotency_key(&self, client_id: Uuid, key: &str) -> Result<(), StoreError>;
    /// Gives a key back without an answer (its request met a database outage): the next request
    /// with it takes over at once and resumes what this one started.
    async fn reopen_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Records that a `processing` payment was sent to the acquirer again now.
    async fn mark_submitted(&self, payment_id: Uuid) -> Result<(), StoreError>;

    /// Allocates the acquirer order number and inserts the payment as `created`, with its audit
    /// and outbox rows, in one transaction.
    async fn create_payment(
        &self,
        payment: &NewPaymentRecord,
        actor: &str,
    ) -> Result<PaymentRecord, StoreError>;
    async fn get_payment(&self, id: Uuid) -> Result<Option<PaymentRecord>, StoreError>;
    async fn find_payment_by_order(
        &self,
        acquirer: &str,
        order_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError>;
    /// Applies an event through the state machine, under a lock on the payment row.
    async fn transition_payment(
        &self,
        id: Uuid,
        change: &StatusChange<'_>,
    ) -> Result<TransitionResult, StoreError>;
    /// Marks a payment for a person to look at, with an audit row saying why.
    async fn flag_payment_for_review(
        &self,
        id: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// A person settles a payment on the review list: applies `event` (when given) and takes the
    /// payment off the list, with an audit row carrying the note. `None` when it is not in review.
    async fn resolve_payment_review(
        &self,
        id: Uuid,
        event: Option<PaymentEvent>,
        actor: &str,
        note: &str,
    ) -> Result<Option<PaymentRecord>, StoreError>;
    /// Puts a pending refund whose outcome cannot be learned on the review list; it is no longer
    /// asked about.
    async fn flag_refund_for_review(
        &self,
        refund_id: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Pending refunds a person must settle.
    async fn refunds_for_review(&self) -> Result<Vec<RefundRecord>, StoreError>;
    async fn payment_audit(&self, payment_id: Uuid) -> Result<Vec<AuditRecord>, StoreError>;
    async fn outbox_for(&self, aggregate_id: Uuid) -> Result<Vec<OutboxRecord>, StoreError>;
    async fn count_payments(&self) -> Result<i64, StoreError>;

    /// Whether `user_id` has a succeeded (possibly since refunded) full-card-entry payment to
    /// `supplier_id` (rule 3).
    async fn has_full_entry_payment(
        &self,
        user_id: &str,
        supplier_id: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a bound card with its `bound` event and outbox row; a second call for the same
    /// binding payment returns the first card.
    async fn insert_saved_card(
        &self,
        card: &NewSavedCard,
        actor: &str,
    ) -> Result<SavedCardRecord, StoreError>;
    async fn get_saved_card(&self, id: Uuid) -> Result<Option<SavedCardRecord>, StoreError>;
    /// The active cards of a user of `client_id` (`None`: of that user id at any client).
    async fn list_saved_cards(
        &self,
        client_id: Option<Uuid>,
        user_id: &str,
    ) -> Result<Vec<SavedCardRecord>, StoreError>;
    /// Takes the card for a charge in one transaction: checks it is still active (under a lock
    /// that a revocation must wait for), moves the payment to `processing`, records the use.
    /// `None` when the card is no longer active: nothing was written.
    async fn start_saved_card_charge(
        &self,
        payment_id: Uuid,
        card_id: Uuid,
        actor: &str,
    ) -> Result<Option<SavedCardRecord>, StoreError>;
    /// Ends active cards of a user (all of them, or one), deleting their ciphertexts, with
    /// events and outbox rows, in one transaction. Returns the ids ended.
    async fn end_cards(
        &self,
        client_id: Uuid,
        user_id: &str,
        only: Option<Uuid>,
        ending: CardEnding,
        actor: &str,
    ) -> Result<Vec<Uuid>, StoreError>;
    async fn card_events(&self, card_id: Uuid) -> Result<Vec<CardEventRecord>, StoreError>;
    /// Active cards sealed under another key than `active_key`.
    async fn cards_to_reseal(&self, active_key: &str) -> Result<Vec<SavedCardRecord>, StoreError>;
    /// Replaces a card's ciphertext if it is still active and still under `old_key`.
    async fn reseal_card(
        &self,
        card_id: Uuid,
        old_key: &str,
        new_key: &str,
        ciphertext: &[u8],
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` payments whose check is due, pushing their next check to
    /// `lease_until` so no other worker takes them meanwhile (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL).
    async fn claim_due_payments(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
    /// Sets when to ask again (`None`: stop asking) and counts the attempt.
    async fn schedule_check(
        &self,
        payment_id: Uuid,
        next: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;
    /// Payments a person must look at.
    async fn payments_for_review(&self) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Reserves a refund under a lock on the payment row, after the refund rules (rule 13)
    /// accept it against the refunds already holding part of the payment.
    async fn reserve_refund(
        &self,
        refund: &NewRefund<'_>,
    ) -> Result<Result<RefundRecord, crate::domain::refunds::RefundRuleError>, StoreError>;
    /// Records what the acquirer did with a pending or awaiting refund; a succeeded refund moves
    /// the payment to `partially_refunded` or `refunded` in the same transaction. A refund
    /// already final is returned unchanged.
    async fn settle_refund(
        &self,
        refund_id: Uuid,
        settlement: &RefundSettlement<'_>,
    ) -> Result<RefundRecord, StoreError>;
    async fn get_refund(&self, id: Uuid) -> Result<Option<RefundRecord>, StoreError>;
    async fn list_refunds(&self, payment_id: Uuid) -> Result<Vec<RefundRecord>, StoreError>;
    /// Refunds waiting to be done in an acquirer's cabinet (NetPay), oldest first.
    async fn refunds_awaiting(&self) -> Result<Vec<RefundRecord>, StoreError>;

    /// Claims pending refunds whose status is due to be asked (lease as for payments).
    async fn claim_due_refunds(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<RefundRecord>, StoreError>;
    async fn schedule_refund_check(
        &self,
        refund_id: Uuid,
        next: OffsetDateTime,
    ) -> Result<(), StoreError>;

    async fn insert_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError>;
    async fn find_operator(&self, login: &str) -> Result<Option<OperatorRecord>, StoreError>;
    /// Disables an operator and ends their sessions; false when no such active operator.
    async fn disable_operator(&self, login: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Records a sign-in attempt as failed (before its password is checked: the brake counts it
    /// at once, whatever the concurrency); returns its id, to forget it if the password was right.
    async fn record_login_failure(
        &self,
        login: &str,
        at: OffsetDateTime,
    ) -> Result<Uuid, StoreError>;
    async fn forget_login_failure(&self, id: Uuid) -> Result<(), StoreError>;
    async fn login_failures_since(
        &self,
        login: &str,
        since: OffsetDateTime,
    ) -> Result<i64, StoreError>;
    async fn insert_session(
        &self,
        token_hash: &str,
        operator_id: Uuid,
        csrf_token: &str,
        at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The live session of an enabled operator.
    async fn find_session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Payments matching the desk's search, newest first.
    async fn search_payments(
        &self,
        query: &PaymentSearch,
    ) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Queues the outbox events not yet queued for `endpoint`: every one (`since` = `None`), or
    /// those made since then (outbox ids are time-ordered UUIDv7), which is an index range
    /// instead of a scan of the whole outbox.
    async fn queue_webhooks(
        &self,
        endpoint: &str,
        since: Option<OffsetDateTime>,
    ) -> Result<u64, StoreError>;
    /// Claims due deliveries for `endpoint`, the oldest undelivered event of each aggregate only,
    /// leasing them until `lease_until`.
    async fn claim_webhooks(
        &self,
        endpoint: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records an attempt: delivered, to retry at `retry_at`, or dead (`retry_at` `None`).
    async fn record_webhook_attempt(
        &self,
        event_id: Uuid,
        endpoint: &str,
        outcome: WebhookAttempt<'_>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    async fn webhook_deliveries(&self, event_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError>;
    async fn dead_webhooks(&self) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// How many things wait for a person, counted in the database.
    async fn attention_counts(&self) -> Result<AttentionCounts, StoreError>;
}

/// What the anonymous page, the SMS flow and the personal-data rule keep.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Creates a public payment like [`Store::create_payment`], after the abuse limits accept it
    /// under a lock on the account number, and records the attempt in the same transaction.
    async fn create_public_payment(
        &self,
        payment: &NewPaymentRecord,
        actor: &str,
        attempt: &PublicAttempt,
    ) -> Result<Result<PaymentRecord, crate::domain::public_limits::Limited>, StoreError>;
    async fn payer_data(&self, payment_id: Uuid) -> Result<Option<PayerDataRecord>, StoreError>;
    /// Replaces the hash of a payment's continue token.
    async fn replace_continue_token(
        &self,
        payment_id: Uuid,
        token_hash: &str,
    ) -> Result<(), StoreError>;
    /// Deletes, at most `batch` rows per table, what is past its retention: expired idempotency
    /// keys and sessions, and attempts, SMS and sign-in failures older than their cutoffs.
    async fn purge_retained(
        &self,
        cutoffs: &RetentionCutoffs,
        batch: i64,
    ) -> Result<RetentionReport, StoreError>;
    /// Deletes the ciphertexts of final payments last changed before `before`; returns how many.
    async fn purge_payer_data(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Links `phone` to `user_id` (replacing the user's earlier phone). `false` when the phone
    /// belongs to another user: nothing was written.
    async fn link_sms_phone(
        &self,
        client_id: Uuid,
        user_id: &str,
        phone: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn unlink_sms_phone(&self, user_id: &str) -> Result<bool, StoreError>;
    /// The user a phone is linked to, and the client that linked it (`None` for old links).
    async fn sms_phone_user(
        &self,
        phone: &str,
    ) -> Result<Option<(String, Option<Uuid>)>, StoreError>;
    /// The distinct (supplier, account) pairs of the user's succeeded full-card-entry payments
    /// (at `client_id`, or at any client).
    async fn full_entry_accounts(
        &self,
        client_id: Option<Uuid>,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Under a lock on the phone (and the account): replays a known `message_id`, or judges the
    /// SMS against today's counts (rule 14) and records it with its reply, or as accepted.
    async fn claim_sms(&self, claim: &SmsClaim<'_>) -> Result<SmsClaimResult, StoreError>;
    /// Ends an accepted SMS whose charge has run: under the payment's lock, a final payment gives
    /// its final reply; one still open answers "processing" and the final reply follows as an
    /// `sms.reply` outbox event when the payment settles. Returns the reply.
    async fn finish_sms_charge(
        &self,
        message_id: &str,
        now: OffsetDateTime,
    ) -> Result<String, StoreError>;
    /// Ends an accepted SMS with a reply of its own (the charge was refused or canceled);
    /// `kind` replaces the stored kind when given.
    async fn conclude_sms(
        &self,
        message_id: &str,
        kind: Option<&str>,
        reply: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// What waits for a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttentionCounts {
    pub webhooks_dead: i64,
    pub payments_in_review: i64,
    pub refunds_awaiting_acquirer: i64,
    /// Pending refunds whose outcome could not be learned.
    pub refunds_in_review: i64,
}

/// The refunds desk's search; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct PaymentSearch {
    pub account_number: Option<String>,
    pub payment_id: Option<Uuid>,
    pub acquirer_order_id: Option<String>,
    pub status: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub limit: i64,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy)]
pub enum WebhookAttempt<'a> {
    Delivered,
    Retry { at: OffsetDateTime, error: &'a str },
    Dead { error: &'a str },
}

/// Why cards end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEnding {
    /// The owner deleted it.
    Deleted,
    /// A password reset revoked it.
    Revoked,
}

impl CardEnding {
    pub fn status(self) -> &'static str {
        match self {
            CardEnding::Deleted => "deleted",
            CardEnding::Revoked => "revoked",
        }
    }

    pub fn event_type(self) -> &'static str {
        match self {
            CardEnding::Deleted => "card.deleted",
            CardEnding::Revoked => "card.revoked",
        }
    }
}

/// How long a request waits for a database connection by default before it is told the
/// database is unavailable (`503`), rather than hanging while the database is down.
pub const DEFAULT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the database named by `url`, creating a SQLite file if needed, and applies migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(url, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`connect`] with the time a request may wait for a connection.
pub async fn connect_with(
    url: &str,
    acquire_timeout: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url, acquire_timeout).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(url, acquire_timeout).await?)
    } else {
        return Err(StoreError::UnsupportedUrl(redact_url(url)));
    };
    Ok(store)
}

/// A database URL fit for a log line or an error: the password is replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// What the retention pass deletes: rows older than these moments.
#[derive(Debug, Clone, Copy)]
pub struct RetentionCutoffs {
    /// Idempotency keys and operator sessions expired before this.
    pub now: OffsetDateTime,
    pub public_attempts: OffsetDateTime,
    pub sms_messages: OffsetDateTime,
    pub login_failures: OffsetDateTime,
}

/// Rows one retention batch deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub idempotency_keys: u64,
    pub operator_sessions: u64,
    pub public_attempts: u64,
    pub sms_messages: u64,
    pub login_failures: u64,
}

impl RetentionReport {
    pub fn total(&self) -> u64 {
        self.idempotency_keys
            + self.operator_sessions
            + self.public_attempts
            + self.sms_messages
            + self.login_failures
    }

    pub fn per_table(&self) -> [(&'static str, u64); 5] {
        [
            ("idempotency_keys", self.idempotency_keys),
            ("operator_sessions", self.operator_sessions),
            ("public_attempts", self.public_attempts),
            ("sms_messages", self.sms_messages),
            ("login_failures", self.login_failures),
        ]
    }
}
