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
         email, phone, return_url, acquirer, acquirer_order_id, status, next_action, failure_code, \
         failure_message, review_reason, acquirer_operation_id, payment_method, saved_card_id, save_card, \
         next_check_at, check_attempts, action_deadline, submitted_at, created_at, updated_at"
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

/// One row of a card's audit trail.
pub(super) struct CardEvent<'a> {
    pub card_id: Uuid,
    pub user_id: &'a str,
    pub event: &'a str,
    pub actor: &'a str,
    pub payment_id: Option<Uuid>,
    pub detail: &'a str,
    pub at: OffsetDateTime,
}

pub(super) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}

/// The smallest UUIDv7 of the millisecond `at`: every row id made at or after `at` is at least
/// this (a lower bound for range scans over time-ordered ids).
pub(super) fn first_id_at(at: time::OffsetDateTime) -> Uuid {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

/// The columns of a refund.
macro_rules! refund_columns {
    () => {
        "id, payment_id, amount_minor, status, reason, operator, client_id, acquirer_refund_id, \
         failure_code, failure_message, next_check_at, check_attempts, review_reason, resolved_by, \
         resolution_note, created_at, updated_at"
    };
}

/// The columns of a saved card.
macro_rules! card_columns {
    () => {
        "id, client_id, user_id, payment_type, acquirer, binding_payment_id, key_id, token_ciphertext, brand, \
         last4, exp_month, exp_year, status, created_at, last_used_at, ended_at"
    };
}

macro_rules! sql_store {
    ($store:ident, $conn:ty, begin_write = $begin:literal, lock_row = $lock:literal, skip_locked = $skip:literal) => {
        impl $store {
            /// The state machine applied inside a transaction someone else commits.
            async fn transition_in(
                conn: &mut $conn,
                id: uuid::Uuid,
                change: &$crate::store::StatusChange<'_>,
            ) -> Result<$crate::store::TransitionResult, $crate::store::StoreError> {
                use $crate::domain::payment::{PaymentStatus, Transition, first_check_delay, ACTION_WINDOW};
                use $crate::store::sql::{new_row_id, payment_event_payload};
                use $crate::store::{StoreError, TransitionResult};
                let current: Option<$crate::store::PaymentRecord> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::sql::payment_columns!(),
                    " FROM payments WHERE id = $1",
                    $lock
                ))
                .bind(id)
                .fetch_optional(&mut *conn)
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
                let next_action = if to == PaymentStatus::RequiresAction { change.next_action } else { None };
                let next_check_at = first_check_delay(to).map(|delay| now + delay);
                let action_deadline = (to == PaymentStatus::RequiresAction).then(|| now + ACTION_WINDOW);
                let (failure_code, failure_message) = change.failure.unzip();
                let updated: $crate::store::PaymentRecord = sqlx::query_as(concat!(
                    "UPDATE payments SET status = $2, next_action = $3, \
                     failure_code = COALESCE($4, failure_code), failure_message = COALESCE($5, failure_message), \
                     acquirer_operation_id = COALESCE($7, acquirer_operation_id), \
                     next_check_at = $8, check_attempts = 0, action_deadline = COALESCE($9, action_deadline), \
                     submitted_at = CASE WHEN $2 = 'processing' THEN $6 ELSE submitted_at END, \
                     updated_at = $6 WHERE id = $1 RETURNING ",
                    $crate::store::sql::payment_columns!()
                ))
                .bind(id)
                .bind(to.as_str())
                .bind(next_action)
                .bind(failure_code)
                .bind(failure_message)
                .bind(now)
                .bind(change.acquirer_operation_id)
                .bind(next_check_at)
                .bind(action_deadline)
                .fetch_one(&mut *conn)
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
                .execute(&mut *conn)
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
                .execute(&mut *conn)
                .await?;
                if to.is_final() {
                    Self::channel_effects_in(conn, &updated, to, now).await?;
                }
                Ok(TransitionResult::Applied(updated))
            }

            /// Inserts a payment with its audit, outbox and personal-data rows.
            async fn create_payment_in(
                tx: &mut $conn,
                p: &$crate::store::NewPaymentRecord,
                actor: &str,
            ) -> Result<$crate::store::PaymentRecord, $crate::store::StoreError> {
                use $crate::store::sql::{new_row_id, payment_event_payload};
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
                     created_at, updated_at, payment_method, saved_card_id, save_card, next_check_at, phone) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'created', $13, $13, $14, $15, $16, $17, $18) \
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
                .bind(&p.payment_method)
                .bind(p.saved_card_id)
                .bind(p.save_card)
                // A payment that never leaves `created` (the process died) is checked too.
                .bind($crate::domain::payment::first_check_delay($crate::domain::payment::PaymentStatus::Created)
                    .map(|delay| p.created_at + delay))
                .bind(&p.phone)
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
                if let Some(payer) = &p.payer {
                    sqlx::query(
                        "INSERT INTO payer_data (payment_id, key_id, ciphertext, continue_token_hash, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(record.id)
                    .bind(&payer.key_id)
                    .bind(&payer.ciphertext)
                    .bind(&payer.continue_token_hash)
                    .bind(p.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(record)
            }

            async fn card_event_in(
                conn: &mut $conn,
                e: $crate::store::sql::CardEvent<'_>,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO card_events (id, card_id, user_id, event, actor, payment_id, detail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind($crate::store::sql::new_row_id())
                .bind(e.card_id)
                .bind(e.user_id)
                .bind(e.event)
                .bind(e.actor)
                .bind(e.payment_id)
                .bind(e.detail)
                .bind(e.at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn refund_outbox_in(
                conn: &mut $conn,
                refund: &$crate::store::RefundRecord,
                event_type: &str,
                at: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                let amount = oplata_providers::Amount::from_minor(refund.amount_minor)
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                let payload = serde_json::json!({
                    "type": event_type,
                    "refund_id": refund.id,
                    "payment_id": refund.payment_id,
                    "amount": amount.to_string(),
                    "status": refund.status,
                    "operator": refund.operator,
                    "occurred_at": at.format(&time::format_description::well_known::Rfc3339)
                        .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?,
                })
                .to_string();
                sqlx::query(
                    "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind($crate::store::sql::new_row_id())
                .bind(refund.payment_id)
                .bind(event_type)
                .bind(payload)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn card_outbox_in(
                conn: &mut $conn,
                card: &$crate::store::SavedCardRecord,
                event_type: &str,
                at: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                let payload = serde_json::json!({
                    "type": event_type,
                    "card_id": card.id,
                    "user_id": card.user_id,
                    "payment_type": card.payment_type,
                    "acquirer": card.acquirer,
                    "brand": card.brand,
                    "last4": card.last4,
                    "occurred_at": at.format(&time::format_description::well_known::Rfc3339)
                        .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?,
                })
                .to_string();
                sqlx::query(
                    "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind($crate::store::sql::new_row_id())
                .bind(card.id)
                .bind(event_type)
                .bind(payload)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

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
                let resource_id = $crate::store::sql::new_row_id();
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys \
                     (client_id, idem_key, fingerprint, state, created_at, locked_until, expires_at, resource_id) \
                     VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7) \
                     ON CONFLICT (client_id, idem_key) DO NOTHING",
                )
                .bind(client_id)
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .bind(lock_until)
                .bind(expires_at)
                .bind(resource_id)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    tx.commit().await?;
                    return Ok(IdempotencyClaim::Claimed($crate::store::ClaimedKey { resource_id, resumed: false }));
                }
                let row: (String, String, Option<i32>, Option<String>, time::OffsetDateTime, Option<uuid::Uuid>) =
                    sqlx::query_as(concat!(
                        "SELECT fingerprint, state, response_status, response_body, locked_until, resource_id \
                         FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2",
                        $lock
                    ))
                    .bind(client_id)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                let (stored_fingerprint, state, status, body, locked_until, stored_resource) = row;
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
                    // The request that held the key died before answering (or gave the key back
                    // after a database outage): take over, with the resource it was making.
                    let resource_id = stored_resource.unwrap_or(resource_id);
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_until = $3, resource_id = $4 \
                         WHERE client_id = $1 AND idem_key = $2",
                    )
                    .bind(client_id)
                    .bind(key)
                    .bind(lock_until)
                    .bind(resource_id)
                    .execute(&mut *tx)
                    .await?;
                    IdempotencyClaim::Claimed($crate::store::ClaimedKey { resource_id, resumed: true })
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

            async fn release_idempotency_key(&self, client_id: uuid::Uuid, key: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2")
                    .bind(client_id)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn reopen_idempotency_key(&self, client_id: uuid::Uuid, key: &str, now: time::OffsetDateTime) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE idempotency_keys SET locked_until = $3 \
                     WHERE client_id = $1 AND idem_key = $2 AND state = 'in_progress'",
                )
                .bind(client_id)
                .bind(key)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn mark_submitted(&self, payment_id: uuid::Uuid) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE payments SET submitted_at = $2 WHERE id = $1 AND status = 'processing'")
                    .bind(payment_id)
                    .bind(time::OffsetDateTime::now_utc())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_payment(
                &self,
                p: &$crate::store::NewPaymentRecord,
                actor: &str,
            ) -> Result<$crate::store::PaymentRecord, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let record = Self::create_payment_in(&mut tx, p, actor).await?;
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
                let mut tx = self.pool.begin_with($begin).await?;
                let result = Self::transition_in(&mut tx, id, change).await?;
                tx.commit().await?;
                Ok(result)
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

            async fn resolve_payment_review(
                &self,
                id: uuid::Uuid,
                event: Option<$crate::domain::payment::PaymentEvent>,
                actor: &str,
                note: &str,
            ) -> Result<Option<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                use $crate::store::sql::new_row_id;
                let mut tx = self.pool.begin_with($begin).await?;
                let current: Option<$crate::store::PaymentRecord> = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1", $lock
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if current.is_none_or(|p| p.review_reason.is_none()) {
                    return Ok(None);
                }
                if let Some(event) = event {
                    let change = $crate::store::StatusChange {
                        event,
                        next_action: None,
                        failure: (event == $crate::domain::payment::PaymentEvent::Failed)
                            .then_some(("settled_by_operator", "an operator found that the payment did not happen")),
                        actor,
                        reason: "settled from the review list",
                        acquirer_operation_id: None,
                    };
                    if let $crate::store::TransitionResult::Refused(_, refused) = Self::transition_in(&mut tx, id, &change).await? {
                        return Err($crate::store::StoreError::Refused(refused.to_string()));
                    }
                }
                let now = time::OffsetDateTime::now_utc();
                let updated: $crate::store::PaymentRecord = sqlx::query_as(concat!(
                    "UPDATE payments SET review_reason = NULL, updated_at = $2 WHERE id = $1 RETURNING ",
                    $crate::store::sql::payment_columns!()
                ))
                .bind(id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6)",
                )
                .bind(new_row_id())
                .bind(id)
                .bind(&updated.status)
                .bind(actor)
                .bind(format!("review resolved: {note}"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(updated))
            }

            async fn flag_refund_for_review(
                &self,
                refund_id: uuid::Uuid,
                actor: &str,
                reason: &str,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::new_row_id;
                let mut tx = self.pool.begin_with($begin).await?;
                let now = time::OffsetDateTime::now_utc();
                let flagged: Option<(uuid::Uuid,)> = sqlx::query_as(
                    "UPDATE refunds SET review_reason = $2, next_check_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND status = 'pending' RETURNING payment_id",
                )
                .bind(refund_id)
                .bind(reason)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((payment_id,)) = flagged else {
                    return Ok(());
                };
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     SELECT $1, id, status, status, $3, $4, $5 FROM payments WHERE id = $2",
                )
                .bind(new_row_id())
                .bind(payment_id)
                .bind(actor)
                .bind(format!("refund {refund_id} flagged for manual review: {reason}"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refunds_for_review(&self) -> Result<Vec<$crate::store::RefundRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::refund_columns!(),
                    " FROM refunds WHERE review_reason IS NOT NULL AND status = 'pending' ORDER BY updated_at, id"
                ))
                .fetch_all(&self.pool)
                .await?)
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

            async fn has_full_entry_payment(&self, user_id: &str, supplier_id: &str) -> Result<bool, $crate::store::StoreError> {
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM payments WHERE user_id = $1 AND supplier_id = $2 \
                     AND payment_method = 'new_card' AND status IN ('succeeded', 'partially_refunded', 'refunded')",
                )
                .bind(user_id)
                .bind(supplier_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(count > 0)
            }

            async fn insert_saved_card(
                &self,
                card: &$crate::store::NewSavedCard,
                actor: &str,
            ) -> Result<$crate::store::SavedCardRecord, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = sqlx::query(
                    "INSERT INTO saved_cards (id, user_id, payment_type, acquirer, binding_payment_id, key_id, \
                     token_ciphertext, brand, last4, exp_month, exp_year, status, created_at, client_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active', $12, $13) \
                     ON CONFLICT (binding_payment_id) DO NOTHING",
                )
                .bind(card.id)
                .bind(&card.user_id)
                .bind(&card.payment_type)
                .bind(&card.acquirer)
                .bind(card.binding_payment_id)
                .bind(&card.key_id)
                .bind(&card.token_ciphertext)
                .bind(&card.brand)
                .bind(&card.last4)
                .bind(card.exp_month)
                .bind(card.exp_year)
                .bind(card.created_at)
                .bind(card.client_id)
                .execute(&mut *tx)
                .await?;
                let stored: $crate::store::SavedCardRecord = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::card_columns!(), " FROM saved_cards WHERE binding_payment_id = $1"
                ))
                .bind(card.binding_payment_id)
                .fetch_one(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    Self::card_event_in(
                        &mut tx,
                        $crate::store::sql::CardEvent {
                            card_id: stored.id,
                            user_id: &stored.user_id,
                            event: "bound",
                            actor,
                            payment_id: Some(card.binding_payment_id),
                            detail: "card saved after a payment with full card entry and 3-D Secure",
                            at: card.created_at,
                        },
                    )
                    .await?;
                    Self::card_outbox_in(&mut tx, &stored, "card.saved", card.created_at).await?;
                }
                tx.commit().await?;
                Ok(stored)
            }

            async fn get_saved_card(&self, id: uuid::Uuid) -> Result<Option<$crate::store::SavedCardRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", $crate::store::sql::card_columns!(), " FROM saved_cards WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_saved_cards(&self, client_id: Option<uuid::Uuid>, user_id: &str) -> Result<Vec<$crate::store::SavedCardRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::card_columns!(),
                    " FROM saved_cards WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR client_id = $2) \
                     ORDER BY created_at, id"
                ))
                .bind(user_id)
                .bind(client_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn start_saved_card_charge(
                &self,
                payment_id: uuid::Uuid,
                card_id: uuid::Uuid,
                actor: &str,
            ) -> Result<Option<$crate::store::SavedCardRecord>, $crate::store::StoreError> {
                use $crate::domain::payment::PaymentEvent;
                let mut tx = self.pool.begin_with($begin).await?;
                // The lock makes a revocation wait for this transaction, and this one wait for a
                // revocation under way: after a reset commits, no charge can take the card.
                let card: Option<$crate::store::SavedCardRecord> = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::card_columns!(), " FROM saved_cards WHERE id = $1 AND status = 'active'", $lock
                ))
                .bind(card_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(card) = card else {
                    return Ok(None);
                };
                let change = $crate::store::StatusChange {
                    event: PaymentEvent::Submitted,
                    next_action: None,
                    failure: None,
                    actor,
                    reason: "saved-card charge sent to the acquirer",
                    acquirer_operation_id: None,
                };
                match Self::transition_in(&mut tx, payment_id, &change).await? {
                    $crate::store::TransitionResult::Applied(_) => {}
                    $crate::store::TransitionResult::AlreadyThere(_) | $crate::store::TransitionResult::Refused(..) => {
                        return Ok(None);
                    }
                }
                let now = time::OffsetDateTime::now_utc();
                sqlx::query("UPDATE saved_cards SET last_used_at = $2 WHERE id = $1")
                    .bind(card_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Self::card_event_in(
                    &mut tx,
                    $crate::store::sql::CardEvent {
                        card_id: card.id,
                        user_id: &card.user_id,
                        event: "used",
                        actor,
                        payment_id: Some(payment_id),
                        detail: "recurring charge started",
                        at: now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(Some(card))
            }

            async fn end_cards(
                &self,
                client_id: uuid::Uuid,
                user_id: &str,
                only: Option<uuid::Uuid>,
                ending: $crate::store::CardEnding,
                actor: &str,
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                // Take the rows first: a charge holding one finishes before we go on, so the
                // time recorded below is after every use that won the race.
                sqlx::query(concat!(
                    "SELECT id FROM saved_cards WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR id = $2) \
                     AND client_id = $3",
                    $lock
                ))
                .bind(user_id)
                .bind(only)
                .bind(client_id)
                .fetch_all(&mut *tx)
                .await?;
                let now = time::OffsetDateTime::now_utc();
                let ended: Vec<$crate::store::SavedCardRecord> = sqlx::query_as(concat!(
                    "UPDATE saved_cards SET status = $3, key_id = NULL, token_ciphertext = NULL, ended_at = $4 \
                     WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR id = $2) AND client_id = $5 RETURNING ",
                    $crate::store::sql::card_columns!()
                ))
                .bind(user_id)
                .bind(only)
                .bind(ending.status())
                .bind(now)
                .bind(client_id)
                .fetch_all(&mut *tx)
                .await?;
                let detail = match ending {
                    $crate::store::CardEnding::Deleted => "deleted by its owner; the token was erased",
                    $crate::store::CardEnding::Revoked => "revoked by a password reset; the token was erased",
                };
                for card in &ended {
                    Self::card_event_in(
                        &mut tx,
                        $crate::store::sql::CardEvent {
                            card_id: card.id,
                            user_id: &card.user_id,
                            event: ending.status(),
                            actor,
                            payment_id: None,
                            detail,
                            at: now,
                        },
                    )
                    .await?;
                    Self::card_outbox_in(&mut tx, card, ending.event_type(), now).await?;
                }
                tx.commit().await?;
                Ok(ended.into_iter().map(|c| c.id).collect())
            }

            async fn card_events(&self, card_id: uuid::Uuid) -> Result<Vec<$crate::store::CardEventRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, card_id, user_id, event, actor, payment_id, detail, created_at \
                     FROM card_events WHERE card_id = $1 ORDER BY id",
                )
                .bind(card_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn cards_to_reseal(&self, active_key: &str) -> Result<Vec<$crate::store::SavedCardRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::card_columns!(),
                    " FROM saved_cards WHERE status = 'active' AND key_id <> $1 ORDER BY id"
                ))
                .bind(active_key)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn reseal_card(
                &self,
                card_id: uuid::Uuid,
                old_key: &str,
                new_key: &str,
                ciphertext: &[u8],
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE saved_cards SET key_id = $3, token_ciphertext = $4 \
                     WHERE id = $1 AND key_id = $2 AND status = 'active'",
                )
                .bind(card_id)
                .bind(old_key)
                .bind(new_key)
                .bind(ciphertext)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_due_payments(
                &self,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: i64,
            ) -> Result<Vec<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let claimed: Vec<$crate::store::PaymentRecord> = sqlx::query_as(concat!(
                    "UPDATE payments SET next_check_at = $2 WHERE id IN (\
                     SELECT id FROM payments WHERE next_check_at IS NOT NULL AND next_check_at <= $1 \
                     AND status IN ('created', 'requires_action', 'processing') \
                     ORDER BY next_check_at LIMIT $3", $skip, ") RETURNING ",
                    $crate::store::sql::payment_columns!()
                ))
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn schedule_check(&self, payment_id: uuid::Uuid, next: Option<time::OffsetDateTime>) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE payments SET next_check_at = $2, check_attempts = check_attempts + 1 WHERE id = $1")
                    .bind(payment_id)
                    .bind(next)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn payments_for_review(&self) -> Result<Vec<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(),
                    " FROM payments WHERE review_reason IS NOT NULL ORDER BY updated_at"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn reserve_refund(
                &self,
                r: &$crate::store::NewRefund<'_>,
            ) -> Result<Result<$crate::store::RefundRecord, $crate::domain::refunds::RefundRuleError>, $crate::store::StoreError> {
                use $crate::domain::payment::PaymentStatus;
                use $crate::domain::refunds::{RefundContext, RefundStatus, check_refund};
                let mut tx = self.pool.begin_with($begin).await?;
                let payment: Option<$crate::store::PaymentRecord> = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1", $lock
                ))
                .bind(r.payment_id)
                .fetch_optional(&mut *tx)
                .await?;
                let payment = payment.ok_or($crate::store::StoreError::NotFound)?;
                let (held,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds \
                     WHERE payment_id = $1 AND status IN ('pending', 'awaiting_acquirer', 'succeeded')",
                )
                .bind(r.payment_id)
                .fetch_one(&mut *tx)
                .await?;
                let day_start = r.now.replace_time(time::Time::MIDNIGHT);
                let (today,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds \
                     WHERE operator = $1 AND created_at >= $2 AND status <> 'failed'",
                )
                .bind(r.operator)
                .bind(day_start)
                .fetch_one(&mut *tx)
                .await?;
                let payment_status = PaymentStatus::parse(&payment.status)
                    .ok_or_else(|| $crate::store::StoreError::Corrupt(format!("payment {} status", payment.id)))?;
                let context = RefundContext {
                    payment_status,
                    paid_minor: payment.amount_minor,
                    paid_at: payment.created_at,
                    held_minor: held,
                    operator_today_minor: today,
                };
                let amount = match check_refund(&context, r.amount, r.reason, &r.limits, r.now) {
                    Ok(amount) => amount,
                    Err(refused) => return Ok(Err(refused)),
                };
                let status = if r.awaiting_acquirer { RefundStatus::AwaitingAcquirer } else { RefundStatus::Pending };
                // A refund whose request dies before the acquirer's answer is recorded is asked
                // about (or handed to a person) once this grace has passed.
                let first_check = (status == RefundStatus::Pending)
                    .then(|| r.now + $crate::domain::refunds::ANSWER_GRACE);
                let refund: $crate::store::RefundRecord = sqlx::query_as(concat!(
                    "INSERT INTO refunds (id, payment_id, amount_minor, status, reason, operator, client_id, created_at, updated_at, next_check_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING ",
                    $crate::store::sql::refund_columns!()
                ))
                .bind(r.id)
                .bind(r.payment_id)
                .bind(amount.minor())
                .bind(status.as_str())
                .bind(r.reason)
                .bind(r.operator)
                .bind(r.client_id)
                .bind(r.now)
                .bind(first_check)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6)",
                )
                .bind($crate::store::sql::new_row_id())
                .bind(r.payment_id)
                .bind(&payment.status)
                .bind(format!("operator:{}", r.operator))
                .bind(format!("refund {} of {} requested: {}", refund.id, amount, r.reason))
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                Self::refund_outbox_in(&mut tx, &refund, "refund.requested", r.now).await?;
                tx.commit().await?;
                Ok(Ok(refund))
            }

            async fn settle_refund(
                &self,
                refund_id: uuid::Uuid,
                s: &$crate::store::RefundSettlement<'_>,
            ) -> Result<$crate::store::RefundRecord, $crate::store::StoreError> {
                use $crate::domain::refunds::{RefundStatus, status_after_refunds};
                let mut tx = self.pool.begin_with($begin).await?;
                let current: Option<$crate::store::RefundRecord> = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::refund_columns!(), " FROM refunds WHERE id = $1"
                ))
                .bind(refund_id)
                .fetch_optional(&mut *tx)
                .await?;
                let current = current.ok_or($crate::store::StoreError::NotFound)?;
                // Lock the payment first, as reservations do, so the two never deadlock.
                let payment: $crate::store::PaymentRecord = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1", $lock
                ))
                .bind(current.payment_id)
                .fetch_one(&mut *tx)
                .await?;
                let now = time::OffsetDateTime::now_utc();
                let (failure_code, failure_message) = s.failure.unzip();
                let updated: Option<$crate::store::RefundRecord> = sqlx::query_as(concat!(
                    "UPDATE refunds SET status = $2, acquirer_refund_id = COALESCE($3, acquirer_refund_id), \
                     failure_code = $4, failure_message = $5, updated_at = $6, \
                     next_check_at = CASE WHEN $2 = 'pending' THEN $7 ELSE NULL END, \
                     resolution_note = COALESCE($8, resolution_note), \
                     resolved_by = CASE WHEN $8 IS NULL THEN resolved_by ELSE $9 END \
                     WHERE id = $1 AND status IN ('pending', 'awaiting_acquirer') RETURNING ",
                    $crate::store::sql::refund_columns!()
                ))
                .bind(refund_id)
                .bind(s.status.as_str())
                .bind(s.acquirer_refund_id)
                .bind(failure_code)
                .bind(failure_message)
                .bind(now)
                // A refund the acquirer accepted but has not finished is asked about again soon.
                .bind(now + time::Duration::seconds(30))
                .bind(s.resolution_note)
                .bind(s.actor)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(updated) = updated else {
                    return Ok(current);
                };
                if let Some(note) = s.resolution_note {
                    sqlx::query(
                        "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) \
                         VALUES ($1, $2, $3, $3, $4, $5, $6)",
                    )
                    .bind($crate::store::sql::new_row_id())
                    .bind(payment.id)
                    .bind(&payment.status)
                    .bind(s.actor)
                    .bind(format!("refund {} settled from review as {}: {note}", updated.id, updated.status))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                match s.status {
                    RefundStatus::Succeeded => {
                        let (succeeded,): (i64,) = sqlx::query_as(
                            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE payment_id = $1 AND status = 'succeeded'",
                        )
                        .bind(current.payment_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        if let Some(event) = status_after_refunds(payment.amount_minor, succeeded) {
                            let change = $crate::store::StatusChange {
                                event,
                                next_action: None,
                                failure: None,
                                actor: s.actor,
                                reason: "a refund succeeded",
                                acquirer_operation_id: None,
                            };
                            Self::transition_in(&mut tx, payment.id, &change).await?;
                        }
                        Self::refund_outbox_in(&mut tx, &updated, "refund.succeeded", now).await?;
                    }
                    RefundStatus::Failed => Self::refund_outbox_in(&mut tx, &updated, "refund.failed", now).await?,
                    RefundStatus::Pending | RefundStatus::AwaitingAcquirer => {}
                }
                tx.commit().await?;
                Ok(updated)
            }

            async fn get_refund(&self, id: uuid::Uuid) -> Result<Option<$crate::store::RefundRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", $crate::store::sql::refund_columns!(), " FROM refunds WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_refunds(&self, payment_id: uuid::Uuid) -> Result<Vec<$crate::store::RefundRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::refund_columns!(), " FROM refunds WHERE payment_id = $1 ORDER BY created_at, id"
                ))
                .bind(payment_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn refunds_awaiting(&self) -> Result<Vec<$crate::store::RefundRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::refund_columns!(),
                    " FROM refunds WHERE status = 'awaiting_acquirer' ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_due_refunds(
                &self,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: i64,
            ) -> Result<Vec<$crate::store::RefundRecord>, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let claimed: Vec<$crate::store::RefundRecord> = sqlx::query_as(concat!(
                    "UPDATE refunds SET next_check_at = $2, check_attempts = check_attempts + 1 WHERE id IN (\
                     SELECT id FROM refunds WHERE status = 'pending' AND review_reason IS NULL \
                     AND next_check_at IS NOT NULL AND next_check_at <= $1 ORDER BY next_check_at LIMIT $3", $skip,
                    ") RETURNING ", $crate::store::sql::refund_columns!()
                ))
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn schedule_refund_check(&self, refund_id: uuid::Uuid, next: time::OffsetDateTime) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE refunds SET next_check_at = $2 WHERE id = $1 AND status = 'pending'")
                    .bind(refund_id)
                    .bind(next)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_operator(&self, o: &$crate::store::OperatorRecord) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO operators (id, login, name, password_hash, created_at, disabled_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(o.id)
                .bind(&o.login)
                .bind(&o.name)
                .bind(&o.password_hash)
                .bind(o.created_at)
                .bind(o.disabled_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_operator(&self, login: &str) -> Result<Option<$crate::store::OperatorRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, login, name, password_hash, created_at, disabled_at FROM operators WHERE login = $1",
                )
                .bind(login)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn disable_operator(&self, login: &str, at: time::OffsetDateTime) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query("UPDATE operators SET disabled_at = $2 WHERE login = $1 AND disabled_at IS NULL")
                    .bind(login)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM operator_sessions WHERE operator_id IN (SELECT id FROM operators WHERE login = $1)")
                    .bind(login)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_login_failure(&self, login: &str, at: time::OffsetDateTime) -> Result<uuid::Uuid, $crate::store::StoreError> {
                let id = $crate::store::sql::new_row_id();
                sqlx::query("INSERT INTO login_failures (id, login, failed_at) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(login)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(id)
            }

            async fn forget_login_failure(&self, id: uuid::Uuid) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM login_failures WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn login_failures_since(&self, login: &str, since: time::OffsetDateTime) -> Result<i64, $crate::store::StoreError> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM login_failures WHERE login = $1 AND failed_at >= $2")
                    .bind(login)
                    .bind(since)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }

            async fn insert_session(
                &self,
                token_hash: &str,
                operator_id: uuid::Uuid,
                csrf_token: &str,
                at: time::OffsetDateTime,
                expires_at: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO operator_sessions (token_hash, operator_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(token_hash)
                .bind(operator_id)
                .bind(csrf_token)
                .bind(at)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_session(&self, token_hash: &str, now: time::OffsetDateTime) -> Result<Option<$crate::store::SessionRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT s.operator_id, o.login, o.name, s.csrf_token, s.expires_at FROM operator_sessions s \
                     JOIN operators o ON o.id = s.operator_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND o.disabled_at IS NULL",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn delete_session(&self, token_hash: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM operator_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn search_payments(&self, q: &$crate::store::PaymentSearch) -> Result<Vec<$crate::store::PaymentRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE \
                     ($1 IS NULL OR account_number = $1) AND ($2 IS NULL OR id = $2) AND \
                     ($3 IS NULL OR acquirer_order_id = $3) AND ($4 IS NULL OR status = $4) AND \
                     ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6) \
                     ORDER BY created_at DESC, id DESC LIMIT $7"
                ))
                .bind(&q.account_number)
                .bind(q.payment_id)
                .bind(&q.acquirer_order_id)
                .bind(&q.status)
                .bind(q.from)
                .bind(q.to)
                .bind(q.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn queue_webhooks(
                &self,
                endpoint: &str,
                since: Option<time::OffsetDateTime>,
            ) -> Result<u64, $crate::store::StoreError> {
                let done = match since {
                    None => sqlx::query(
                        "INSERT INTO webhook_deliveries (event_id, endpoint, aggregate_id, status, attempts, next_attempt_at) \
                         SELECT o.id, $1, o.aggregate_id, 'pending', 0, o.created_at FROM outbox o \
                         WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = o.id AND d.endpoint = $1) \
                         ON CONFLICT (event_id, endpoint) DO NOTHING",
                    )
                    .bind(endpoint)
                    .execute(&self.pool)
                    .await?,
                    Some(since) => sqlx::query(
                        "INSERT INTO webhook_deliveries (event_id, endpoint, aggregate_id, status, attempts, next_attempt_at) \
                         SELECT o.id, $1, o.aggregate_id, 'pending', 0, o.created_at FROM outbox o \
                         WHERE o.id >= $2 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                           WHERE d.event_id = o.id AND d.endpoint = $1 AND d.event_id >= $2) \
                         ON CONFLICT (event_id, endpoint) DO NOTHING",
                    )
                    .bind(endpoint)
                    .bind($crate::store::sql::first_id_at(since))
                    .execute(&self.pool)
                    .await?,
                };
                Ok(done.rows_affected())
            }

            async fn claim_webhooks(
                &self,
                endpoint: &str,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: i64,
            ) -> Result<Vec<$crate::store::DueDelivery>, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                // Only the first undelivered event of each aggregate is due: later ones wait, so a
                // payment's events arrive in order.
                let claimed: Vec<(uuid::Uuid,)> = sqlx::query_as(concat!(
                    "SELECT d.event_id FROM webhook_deliveries d \
                     WHERE d.endpoint = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.endpoint = d.endpoint \
                       AND e.aggregate_id = d.aggregate_id AND e.status = 'pending' AND e.event_id < d.event_id) \
                     ORDER BY d.next_attempt_at, d.event_id LIMIT $3", $skip
                ))
                .bind(endpoint)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut due = Vec::with_capacity(claimed.len());
                for (event_id,) in claimed {
                    let row: $crate::store::DueDelivery = sqlx::query_as(
                        "UPDATE webhook_deliveries SET next_attempt_at = $3 WHERE event_id = $1 AND endpoint = $2 \
                         RETURNING event_id, endpoint, attempts, \
                         (SELECT event_type FROM outbox WHERE id = $1) AS event_type, \
                         (SELECT payload FROM outbox WHERE id = $1) AS payload, \
                         (SELECT created_at FROM outbox WHERE id = $1) AS created_at",
                    )
                    .bind(event_id)
                    .bind(endpoint)
                    .bind(lease_until)
                    .fetch_one(&mut *tx)
                    .await?;
                    due.push(row);
                }
                tx.commit().await?;
                Ok(due)
            }

            async fn record_webhook_attempt(
                &self,
                event_id: uuid::Uuid,
                endpoint: &str,
                outcome: $crate::store::WebhookAttempt<'_>,
                at: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::WebhookAttempt;
                let (status, next, error, delivered_at) = match outcome {
                    WebhookAttempt::Delivered => ("delivered", at, None, Some(at)),
                    WebhookAttempt::Retry { at: retry, error } => ("pending", retry, Some(error), None),
                    WebhookAttempt::Dead { error } => ("dead", at, Some(error), None),
                };
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, next_attempt_at = $4, \
                     last_error = $5, delivered_at = $6 WHERE event_id = $1 AND endpoint = $2 AND status = 'pending'",
                )
                .bind(event_id)
                .bind(endpoint)
                .bind(status)
                .bind(next)
                .bind(error)
                .bind(delivered_at)
                .execute(&self.pool)
                .await?;
                if status == "delivered" {
                    sqlx::query("UPDATE outbox SET delivered_at = $2, attempts = attempts + 1 WHERE id = $1 AND delivered_at IS NULL")
                        .bind(event_id)
                        .bind(at)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(())
            }

            async fn webhook_deliveries(&self, event_id: uuid::Uuid) -> Result<Vec<$crate::store::DeliveryRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT event_id, endpoint, aggregate_id, status, attempts, next_attempt_at, last_error, delivered_at \
                     FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint",
                )
                .bind(event_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn attention_counts(&self) -> Result<$crate::store::AttentionCounts, $crate::store::StoreError> {
                let (webhooks_dead, payments_in_review, refunds_awaiting_acquirer, refunds_in_review): (i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'dead'), \
                     (SELECT COUNT(*) FROM payments WHERE review_reason IS NOT NULL), \
                     (SELECT COUNT(*) FROM refunds WHERE status = 'awaiting_acquirer'), \
                     (SELECT COUNT(*) FROM refunds WHERE review_reason IS NOT NULL AND status = 'pending')",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::AttentionCounts {
                    webhooks_dead,
                    payments_in_review,
                    refunds_awaiting_acquirer,
                    refunds_in_review,
                })
            }

            async fn dead_webhooks(&self) -> Result<Vec<$crate::store::DeliveryRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT event_id, endpoint, aggregate_id, status, attempts, next_attempt_at, last_error, delivered_at \
                     FROM webhook_deliveries WHERE status = 'dead' ORDER BY next_attempt_at",
                )
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use sql_store;
pub(crate) use {card_columns, payment_columns, refund_columns};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_moment_bounds_every_id_made_from_then_on() {
        let now = time::OffsetDateTime::now_utc();
        let made = new_row_id();
        assert!(first_id_at(now - time::Duration::milliseconds(1)) <= made);
        assert!(first_id_at(now + time::Duration::seconds(1)) > made);
        assert_eq!(first_id_at(now).get_version_num(), 7);
    }
}
