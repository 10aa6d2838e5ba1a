//! Storage: one [`Store`] trait with a PostgreSQL and a SQLite implementation.
//!
//! The backend is chosen by the database URL's scheme. Both run the same SQL (written with `$N`
//! placeholders, which both understand); they differ only in how a read-then-write transaction
//! is isolated: `SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite.

#[macro_use]
mod columns;
mod access;
mod cards;
mod db;
mod idempotency;
mod ids;
mod journal;
mod order_numbers;
mod outbox;
mod payments;
mod postgres;
mod public;
mod records;
mod refunds;
mod retention;
mod review;
mod sms;
mod sqlite;
mod sqlite_writer;

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::payment::{InvalidTransition, PaymentEvent};

pub use ids::first_row_id_at;
pub(crate) use ids::new_row_id;
pub use records::*;

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
    #[error(transparent)]
    Event(#[from] crate::events::Unwritable),
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
    pub reason: &'a crate::domain::audit::AuditReason,
    /// The acquirer's id of the operation, recorded when it becomes known.
    pub acquirer_operation_id: Option<&'a str>,
}

/// A payment's first move, decided inside its creating transaction once the order number is
/// known and without any I/O (a hosted page the adapter builds itself): the payment is created
/// and sent to the page in one commit.
#[derive(Debug, Clone)]
pub struct FirstMove {
    pub event: PaymentEvent,
    pub next_action: Option<String>,
    pub failure: Option<(String, String)>,
    pub reason: &'static crate::domain::audit::AuditReason,
}

impl FirstMove {
    pub fn change<'a>(&'a self, actor: &'a str) -> StatusChange<'a> {
        StatusChange {
            event: self.event,
            next_action: self.next_action.as_deref(),
            failure: self
                .failure
                .as_ref()
                .map(|(code, message)| (code.as_str(), message.as_str())),
            actor,
            reason: self.reason,
            acquirer_operation_id: None,
        }
    }
}

/// Decides a payment's first move from the row just inserted; `None` leaves it `created`.
pub type DecideFirstMove<'a> = &'a (dyn Fn(&PaymentRecord) -> Option<FirstMove> + Send + Sync);

/// An idempotency key taken and answered in the transaction that creates its payment.
pub struct KeyAnswer<'a> {
    pub client_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The answer kept with the key, rendered from the payment as it stands at commit; `None`
    /// gives the whole transaction up (the request needs the step-by-step path).
    pub answer: &'a (dyn Fn(&PaymentRecord) -> Option<StoredResponse> + Send + Sync),
}

impl std::fmt::Debug for KeyAnswer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAnswer")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An idempotency key claimed, with a lease, in the transaction that creates its payment: the
/// first commit of a saved-card charge, whose answer can only come after the acquirer's.
#[derive(Debug, Clone, Copy)]
pub struct KeyLease<'a> {
    pub client_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub now: OffsetDateTime,
    /// Until then the key is this request's; after it, a retry takes it over and resumes.
    pub lock_until: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl<'a> KeyLease<'a> {
    /// The row that claims this key for `resource_id`.
    fn claim_for(&self, resource_id: Uuid) -> idempotency::NewKey<'a> {
        idempotency::NewKey {
            client_id: self.client_id,
            key: self.key,
            fingerprint: self.fingerprint,
            now: self.now,
            lock_until: self.lock_until,
            expires_at: self.expires_at,
            resource_id,
        }
    }
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

/// The database: PostgreSQL or SQLite, chosen by the URL's scheme. Its methods live in one
/// module per aggregate; each is a statement or a transaction, and none decides a business rule
/// on its own (the rules are domain functions the callers hand in or the transaction calls).
#[derive(Debug, Clone)]
pub struct Store {
    pool: db::Pool,
    /// PostgreSQL's order numbers in hand (unused on SQLite, whose counter is taken inside the
    /// creating transaction at no extra round trip).
    order_numbers: Arc<order_numbers::OrderNumbers>,
}

impl Store {
    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        db::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
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

/// A payment whose review item, or one of its refunds', a person settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledReview {
    pub payment_id: Uuid,
    pub supplier_id: String,
    pub amount_minor: i64,
    pub status: crate::domain::payment::PaymentStatus,
    pub settled_at: OffsetDateTime,
}

/// The refunds desk's search; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct PaymentSearch {
    pub account_number: Option<String>,
    /// Ids from the first to the last (a whole id is a range of one; a prefix of a time-ordered
    /// id is a range the primary key finds).
    pub id_range: Option<(Uuid, Uuid)>,
    pub acquirer_order_id: Option<String>,
    pub status: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Lower case: addresses are compared without case.
    pub email: Option<String>,
    /// `+7` and ten digits.
    pub phone: Option<String>,
    pub amount_minor: Option<i64>,
    /// The last four digits of the saved card that paid.
    pub card_last4: Option<String>,
    /// The next page: payments listed before this one (newest first).
    pub before: Option<(OffsetDateTime, Uuid)>,
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
pub async fn connect(url: &str) -> Result<Arc<Store>, StoreError> {
    connect_with(url, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`connect`] with the time a request may wait for a connection.
pub async fn connect_with(
    url: &str,
    acquire_timeout: std::time::Duration,
) -> Result<Arc<Store>, StoreError> {
    let pool = if url.starts_with("sqlite:") {
        sqlite::connect(url, acquire_timeout).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::connect(url, acquire_timeout).await?
    } else {
        return Err(StoreError::UnsupportedUrl(redact_url(url)));
    };
    Ok(Arc::new(Store {
        pool,
        order_numbers: Arc::default(),
    }))
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
    /// Outbox events made before this and delivered everywhere.
    pub webhook_events: OffsetDateTime,
}

/// Rows one retention batch deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub idempotency_keys: u64,
    pub operator_sessions: u64,
    pub public_attempts: u64,
    pub sms_messages: u64,
    pub login_failures: u64,
    /// Outbox events, each with its delivery rows.
    pub webhook_events: u64,
}

impl RetentionReport {
    pub fn total(&self) -> u64 {
        self.idempotency_keys
            + self.operator_sessions
            + self.public_attempts
            + self.sms_messages
            + self.login_failures
            + self.webhook_events
    }

    pub fn per_table(&self) -> [(&'static str, u64); 6] {
        [
            ("idempotency_keys", self.idempotency_keys),
            ("operator_sessions", self.operator_sessions),
            ("public_attempts", self.public_attempts),
            ("sms_messages", self.sms_messages),
            ("login_failures", self.login_failures),
            ("outbox", self.webhook_events),
        ]
    }
}
