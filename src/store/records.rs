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
    pub return_url: Option<String>,
    pub acquirer: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
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
    pub return_url: Option<String>,
    pub acquirer: String,
    pub acquirer_order_id: String,
    pub status: String,
    pub next_action: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub review_reason: Option<String>,
    pub acquirer_operation_id: Option<String>,
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
