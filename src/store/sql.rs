//! The SQL both backends share, written once and instantiated per backend by [`sql_store!`].
//!
//! A macro rather than generic code: sqlx's executor bounds for "any database" are long and
//! brittle, while the statements themselves are identical. Each backend passes the statement
//! that opens a read-then-write transaction and the clause that locks a row.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{PaymentRecord, StoreError};

/// The columns of a [`PaymentRecord`], as a literal so that `concat!` can build statements.
macro_rules! payment_columns {
    () => {
        "id, client_id, user_id, supplier_id, account_number, amount_minor, currency, description, \
         email, return_url, acquirer, acquirer_order_id, status, next_action, failure_code, \
         failure_message, review_reason, acquirer_operation_id, created_at, updated_at"
    };
}

/// The billing system's view of a payment, as written to the outbox.
pub(super) fn payment_event_payload(
    payment: &PaymentRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<String, StoreError> {
    let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
        .map_err(|e| StoreError::Corrupt(format!("payment {}: {e}", payment.id)))?;
    let occurred_at = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(serde_json::json!({
        "type": event_type,
        "payment_id": payment.id,
        "status": payment.status,
        "amount": amount.to_string(),
        "currency": payment.currency,
        "supplier_id": payment.supplier_id,
        "account_number": payment.account_number,
        "acquirer": payment.acquirer,
        "acquirer_order_id": payment.acquirer_order_id,
        "occurred_at": occurred_at,
    })
    .to_string())
}

pub(super) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}

macro_rules! sql_store {
    ($store:ident, begin_write = $begin:literal, lock_row = $lock:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert_api_client(
                &self,
                client: &$crate::store::ApiClientRecord,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO api_clients (id, name, scope, key_hash, key_prefix, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(client.id)
                .bind(&client.name)
                .bind(&client.scope)
                .bind(&client.key_hash)
                .bind(&client.key_prefix)
                .bind(client.created_at)
                .bind(client.revoked_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_api_client_by_key_hash(
                &self,
                key_hash: &str,
            ) -> Result<Option<$crate::store::ApiClientRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, scope, key_hash, key_prefix, created_at, revoked_at \
                     FROM api_clients WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_api_clients(
                &self,
            ) -> Result<Vec<$crate::store::ApiClientRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, scope, key_hash, key_prefix, created_at, revoked_at \
                     FROM api_clients ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_api_client(
                &self,
                id: uuid::Uuid,
                at: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE api_clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_idempotency_key(
                &self,
                client_id: uuid::Uuid,
                key: &str,
                fingerprint: &str,
                now: time::OffsetDateTime,
                lock_until: time::OffsetDateTime,
                expires_at: time::OffsetDateTime,
            ) -> Result<$crate::store::IdempotencyClaim, $crate::store::StoreError> {
                use $crate::store::{IdempotencyClaim, StoredResponse};
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND expires_at < $3",
                )
                .bind(client_id)
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys \
                     (client_id, idem_key, fingerprint, state, created_at, locked_until, expires_at) \
                     VALUES ($1, $2, $3, 'in_progress', $4, $5, $6) \
                     ON CONFLICT (client_id, idem_key) DO NOTHING",
                )
                .bind(client_id)
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .bind(lock_until)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    tx.commit().await?;
                    return Ok(IdempotencyClaim::Claimed);
                }
                let row: (String, String, Option<i32>, Option<String>, time::OffsetDateTime) =
                    sqlx::query_as(concat!(
                        "SELECT fingerprint, state, response_status, response_body, locked_until \
                         FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2",
                        $lock
                    ))
                    .bind(client_id)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                let (stored_fingerprint, state, status, body, locked_until) = row;
                let claim = if stored_fingerprint != fingerprint {
                    IdempotencyClaim::Mismatch
                } else if state == "done" {
                    let status = status
                        .and_then(|s| u16::try_from(s).ok())
                        .ok_or_else(|| $crate::store::StoreError::Corrupt("idempotency status".into()))?;
                    IdempotencyClaim::Completed(StoredResponse {
                        status,
                        body: body.unwrap_or_default(),
                    })
                } else if locked_until > now {
                    IdempotencyClaim::InProgress
                } else {
                    // The request that held the key died before answering: take over.
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_until = $3 WHERE client_id = $1 AND idem_key = $2",
                    )
                    .bind(client_id)
                    .bind(key)
                    .bind(lock_until)
                    .execute(&mut *tx)
                    .await?;
                    IdempotencyClaim::Claimed
                };
                tx.commit().await?;
                Ok(claim)
            }

            async fn complete_idempotency_key(
                &self,
                client_id: uuid::Uuid,
                key: &str,
                response: &$crate::store::StoredResponse,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4 \
                     WHERE client_id = $1 AND idem_key = $2",
                )
                .bind(client_id)
                .bind(key)
                .bind(i32::from(response.status))
                .bind(&response.body)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn release_idempotency_key(
                &self,
                client_id: uuid::Uuid,
                key: &str,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND state = 'in_progress'",
                )
                .bind(client_id)
                .bind(key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_payment(
                &self,
                p: &$crate::store::NewPaymentRecord,
                actor: &str,
            ) -> Result<$crate::store::PaymentRecord, $crate::store::StoreError> {
                use $crate::store::sql::{new_row_id, payment_event_payload};
                let mut tx = self.pool.begin_with($begin).await?;
                let (order_number,): (i64,) = sqlx::query_as(
                    "INSERT INTO acquirer_sequences (acquirer, last_value) VALUES ($1, 1) \
                     ON CONFLICT (acquirer) DO UPDATE SET last_value = acquirer_sequences.last_value + 1 \
                     RETURNING last_value",
                )
                .bind(&p.acquirer)
                .fetch_one(&mut *tx)
                .await?;
                let record: $crate::store::PaymentRecord = sqlx::query_as(
                    concat!(
                    "INSERT INTO payments (id, client_id, user_id, supplier_id, account_number, amount_minor, \
                     currency, description, email, return_url, acquirer, acquirer_order_id, status, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'created', $13, $13) \
                     RETURNING ",
                    $crate::store::sql::payment_columns!()
                ),
                )
                .bind(p.id)
                .bind(p.client_id)
                .bind(&p.user_id)
                .bind(&p.supplier_id)
                .bind(&p.account_number)
                .bind(p.amount_minor)
                .bind(&p.currency)
                .bind(&p.description)
                .bind(&p.email)
                .bind(&p.return_url)
                .bind(&p.acquirer)
                .bind(order_number.to_string())
                .bind(p.created_at)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     VALUES ($1, $2, NULL, 'created', $3, 'payment created', $4)",
                )
                .bind(new_row_id())
                .bind(record.id)
                .bind(actor)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await?;
                let payload = payment_event_payload(&record, "payment.created", p.created_at)?;
                sqlx::query(
                    "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) \
                     VALUES ($1, $2, 'payment.created', $3, $4)",
                )
                .bind(new_row_id())
                .bind(record.id)
                .bind(payload)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn get_payment(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1"),
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn find_payment_by_order(
                &self,
                acquirer: &str,
                order_id: &str,
            ) -> Result<Option<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    concat!(
                    "SELECT ",
                    $crate::store::sql::payment_columns!(),
                    " FROM payments WHERE acquirer = $1 AND acquirer_order_id = $2"
                ),
                )
                .bind(acquirer)
                .bind(order_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn transition_payment(
                &self,
                id: uuid::Uuid,
                change: &$crate::store::StatusChange<'_>,
            ) -> Result<$crate::store::TransitionResult, $crate::store::StoreError> {
                use $crate::domain::payment::{PaymentStatus, Transition};
                use $crate::store::sql::{new_row_id, payment_event_payload};
                use $crate::store::{StoreError, TransitionResult};
                let mut tx = self.pool.begin_with($begin).await?;
                let current: Option<$crate::store::PaymentRecord> = sqlx::query_as(concat!(
                    concat!("SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1"),
                    $lock
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let current = current.ok_or(StoreError::NotFound)?;
                let from = PaymentStatus::parse(&current.status)
                    .ok_or_else(|| StoreError::Corrupt(format!("payment {id} status {:?}", current.status)))?;
                let to = match from.apply(change.event) {
                    Ok(Transition::To(to)) => to,
                    Ok(Transition::AlreadyThere) => return Ok(TransitionResult::AlreadyThere(current)),
                    Err(refused) => return Ok(TransitionResult::Refused(current, refused)),
                };
                let now = time::OffsetDateTime::now_utc();
                // The next action only makes sense while the customer still has to act.
                let next_action = if to == PaymentStatus::RequiresAction {
                    change.next_action
                } else {
                    None
                };
                let (failure_code, failure_message) = change.failure.unzip();
                let updated: $crate::store::PaymentRecord = sqlx::query_as(
                    concat!(
                    "UPDATE payments SET status = $2, next_action = $3, \
                     failure_code = COALESCE($4, failure_code), failure_message = COALESCE($5, failure_message), \
                     acquirer_operation_id = COALESCE($7, acquirer_operation_id), \
                     updated_at = $6 WHERE id = $1 RETURNING ",
                    $crate::store::sql::payment_columns!()
                ),
                )
                .bind(id)
                .bind(to.as_str())
                .bind(next_action)
                .bind(failure_code)
                .bind(failure_message)
                .bind(now)
                .bind(change.acquirer_operation_id)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(new_row_id())
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(change.actor)
                .bind(change.reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let event_type = change.event.outbox_type();
                let payload = payment_event_payload(&updated, event_type, now)?;
                sqlx::query(
                    "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(new_row_id())
                .bind(id)
                .bind(event_type)
                .bind(payload)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(TransitionResult::Applied(updated))
            }

            async fn flag_payment_for_review(
                &self,
                id: uuid::Uuid,
                actor: &str,
                reason: &str,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::new_row_id;
                let mut tx = self.pool.begin_with($begin).await?;
                let now = time::OffsetDateTime::now_utc();
                let status: Option<(String,)> = sqlx::query_as(
                    "UPDATE payments SET review_reason = $2, updated_at = $3 WHERE id = $1 RETURNING status",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let (status,) = status.ok_or($crate::store::StoreError::NotFound)?;
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6)",
                )
                .bind(new_row_id())
                .bind(id)
                .bind(&status)
                .bind(actor)
                .bind(format!("flagged for manual review: {reason}"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn payment_audit(
                &self,
                payment_id: uuid::Uuid,
            ) -> Result<Vec<$crate::store::AuditRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, payment_id, from_status, to_status, actor, reason, created_at \
                     FROM payment_audit WHERE payment_id = $1 ORDER BY id",
                )
                .bind(payment_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn outbox_for(
                &self,
                aggregate_id: uuid::Uuid,
            ) -> Result<Vec<$crate::store::OutboxRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, aggregate_id, event_type, payload, created_at \
                     FROM outbox WHERE aggregate_id = $1 ORDER BY id",
                )
                .bind(aggregate_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn count_payments(&self) -> Result<i64, $crate::store::StoreError> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM payments")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }
        }
    };
}

pub(crate) use payment_columns;
pub(super) use sql_store;
