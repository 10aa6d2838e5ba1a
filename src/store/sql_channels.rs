//! The SQL of the anonymous page, the SMS flow and personal data, for both backends.
//!
//! Like [`super::sql`], a macro instantiated per backend; `lock_key` serialises transactions on
//! a name (an advisory lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises writers).

macro_rules! sms_columns {
    () => {
        "message_id, phone, local_day, account_day, kind, supplier_id, account_number, payment_id, state, reply, \
         late_reply, received_at, created_at, updated_at, payee"
    };
}
pub(super) use sms_columns;

macro_rules! channel_store {
    ($store:ident, $conn:ty, begin_write = $begin:literal, lock_row = $lock:literal, lock_key = $lock_key:literal) => {
        impl $store {
            /// What a payment becoming final means to the channels, inside the transition's
            /// transaction: a public attempt that failed counts as a decline of its address, and
            /// an SMS answered "processing" gets its late `sms.reply`.
            async fn channel_effects_in(
                conn: &mut $conn,
                payment: &$crate::store::PaymentRecord,
                status: $crate::domain::payment::PaymentStatus,
                now: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                if status == $crate::domain::payment::PaymentStatus::Failed && payment.client_id.is_none() {
                    sqlx::query("UPDATE public_attempts SET declined_at = $2 WHERE payment_id = $1")
                        .bind(payment.id)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let payee: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT payee FROM sms_messages WHERE payment_id = $1 LIMIT 1",
                )
                .bind(payment.id)
                .fetch_optional(&mut *conn)
                .await?;
                let payee = payee.and_then(|(p,)| p);
                let Some(reply) = $crate::domain::sms::final_reply(status, amount, &payment.account_number, payee.as_deref()) else {
                    return Ok(());
                };
                let text = reply.text();
                let waiting: Vec<(String, String)> = sqlx::query_as(
                    "UPDATE sms_messages SET state = 'done', late_reply = $2, updated_at = $3 \
                     WHERE payment_id = $1 AND state = 'awaiting_result' RETURNING message_id, phone",
                )
                .bind(payment.id)
                .bind(&text)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                for (message_id, phone) in waiting {
                    let payload = serde_json::json!({
                        "type": "sms.reply",
                        "message_id": message_id,
                        "to": phone,
                        "text": text,
                        "payment_id": payment.id,
                        "occurred_at": now.format(&time::format_description::well_known::Rfc3339)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    });
                    sqlx::query(
                        "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) \
                         VALUES ($1, $2, 'sms.reply', $3, $4)",
                    )
                    .bind($crate::store::sql::new_row_id())
                    .bind(payment.id)
                    .bind(payload.to_string())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            }

            async fn lock_name_in(conn: &mut $conn, name: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query($lock_key).bind(name).execute(&mut *conn).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ChannelStore for $store {
            async fn create_public_payment(
                &self,
                p: &$crate::store::NewPaymentRecord,
                actor: &str,
                attempt: &$crate::store::PublicAttempt,
            ) -> Result<Result<$crate::store::PaymentRecord, $crate::domain::public_limits::Limited>, $crate::store::StoreError> {
                let now = p.created_at;
                let limits = &attempt.limits;
                let mut tx = self.pool.begin_with($begin).await?;
                // The address first, then the account, always in this order.
                Self::lock_name_in(&mut tx, &format!("public-ip:{}", attempt.client_ip)).await?;
                Self::lock_name_in(&mut tx, &format!("public-account:{}:{}", p.supplier_id, p.account_number)).await?;
                let attempts: Vec<(time::OffsetDateTime,)> = sqlx::query_as(
                    "SELECT created_at FROM public_attempts \
                     WHERE supplier_id = $1 AND account_number = $2 AND created_at > $3",
                )
                .bind(&p.supplier_id)
                .bind(&p.account_number)
                .bind(now - limits.account_window)
                .fetch_all(&mut *tx)
                .await?;
                let declines: Vec<(time::OffsetDateTime,)> = sqlx::query_as(
                    "SELECT declined_at FROM public_attempts WHERE client_ip = $1 AND declined_at > $2",
                )
                .bind(&attempt.client_ip)
                .bind(now - limits.ip_window)
                .fetch_all(&mut *tx)
                .await?;
                let creations: Vec<(time::OffsetDateTime,)> = sqlx::query_as(
                    "SELECT created_at FROM public_attempts WHERE client_ip = $1 AND created_at > $2",
                )
                .bind(&attempt.client_ip)
                .bind(now - limits.creations_window)
                .fetch_all(&mut *tx)
                .await?;
                let attempts: Vec<time::OffsetDateTime> = attempts.into_iter().map(|(t,)| t).collect();
                let declines: Vec<time::OffsetDateTime> = declines.into_iter().map(|(t,)| t).collect();
                let creations: Vec<time::OffsetDateTime> = creations.into_iter().map(|(t,)| t).collect();
                if let Err(limited) = $crate::domain::public_limits::check(limits, &attempts, &declines, &creations, now) {
                    tx.rollback().await?;
                    return Ok(Err(limited));
                }
                let record = Self::create_payment_in(&mut tx, p, actor).await?;
                sqlx::query(
                    "INSERT INTO public_attempts (payment_id, client_ip, supplier_id, account_number, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(record.id)
                .bind(&attempt.client_ip)
                .bind(&p.supplier_id)
                .bind(&p.account_number)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ok(record))
            }

            async fn payer_data(&self, payment_id: uuid::Uuid) -> Result<Option<$crate::store::PayerDataRecord>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT payment_id, key_id, ciphertext, continue_token_hash, created_at, purged_at \
                     FROM payer_data WHERE payment_id = $1",
                )
                .bind(payment_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn replace_continue_token(&self, payment_id: uuid::Uuid, token_hash: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE payer_data SET continue_token_hash = $2 WHERE payment_id = $1")
                    .bind(payment_id)
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_retained(
                &self,
                cutoffs: &$crate::store::RetentionCutoffs,
                batch: i64,
            ) -> Result<$crate::store::RetentionReport, $crate::store::StoreError> {
                // Each table in its own short statement, at most `batch` rows, by primary key.
                let idempotency_keys = sqlx::query(
                    "DELETE FROM idempotency_keys WHERE (client_id, idem_key) IN \
                     (SELECT client_id, idem_key FROM idempotency_keys WHERE expires_at < $1 LIMIT $2)",
                )
                .bind(cutoffs.now)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                let operator_sessions = sqlx::query(
                    "DELETE FROM operator_sessions WHERE token_hash IN \
                     (SELECT token_hash FROM operator_sessions WHERE expires_at < $1 LIMIT $2)",
                )
                .bind(cutoffs.now)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                let public_attempts = sqlx::query(
                    "DELETE FROM public_attempts WHERE payment_id IN \
                     (SELECT payment_id FROM public_attempts WHERE created_at < $1 LIMIT $2)",
                )
                .bind(cutoffs.public_attempts)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                // Only finished SMS: one still waiting for its charge's outcome stays.
                let sms_messages = sqlx::query(
                    "DELETE FROM sms_messages WHERE message_id IN \
                     (SELECT message_id FROM sms_messages WHERE created_at < $1 AND state = 'done' LIMIT $2)",
                )
                .bind(cutoffs.sms_messages)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                let login_failures = sqlx::query(
                    "DELETE FROM login_failures WHERE id IN \
                     (SELECT id FROM login_failures WHERE failed_at < $1 LIMIT $2)",
                )
                .bind(cutoffs.login_failures)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok($crate::store::RetentionReport {
                    idempotency_keys,
                    operator_sessions,
                    public_attempts,
                    sms_messages,
                    login_failures,
                })
            }

            async fn purge_payer_data(
                &self,
                before: time::OffsetDateTime,
                now: time::OffsetDateTime,
            ) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(concat!(
                    "UPDATE payer_data SET key_id = NULL, ciphertext = NULL, purged_at = $2 \
                     WHERE purged_at IS NULL AND payment_id IN \
                     (SELECT id FROM payments WHERE updated_at < $1 AND status IN ",
                    "('succeeded', 'partially_refunded', 'refunded', 'failed', 'canceled', 'expired')",
                    ")"
                ))
                .bind(before)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn link_sms_phone(
                &self,
                client_id: uuid::Uuid,
                user_id: &str,
                phone: &str,
                at: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let owner: Option<(String,)> = sqlx::query_as(concat!("SELECT user_id FROM sms_phones WHERE phone = $1", $lock))
                    .bind(phone)
                    .fetch_optional(&mut *tx)
                    .await?;
                if owner.is_some_and(|(owner,)| owner != user_id) {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let linked = sqlx::query(
                    "INSERT INTO sms_phones (user_id, phone, linked_at, client_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO UPDATE SET phone = excluded.phone, linked_at = excluded.linked_at, \
                     client_id = excluded.client_id",
                )
                .bind(user_id)
                .bind(phone)
                .bind(at)
                .bind(client_id)
                .execute(&mut *tx)
                .await;
                match linked {
                    Ok(_) => {}
                    // Another user took the phone at the same moment.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn unlink_sms_phone(&self, user_id: &str) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query("DELETE FROM sms_phones WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn sms_phone_user(&self, phone: &str) -> Result<Option<(String, Option<uuid::Uuid>)>, $crate::store::StoreError> {
                Ok(sqlx::query_as("SELECT user_id, client_id FROM sms_phones WHERE phone = $1")
                    .bind(phone)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn full_entry_accounts(&self, client_id: Option<uuid::Uuid>, user_id: &str) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT DISTINCT supplier_id, account_number FROM payments WHERE user_id = $1 \
                     AND payment_method = 'new_card' AND status IN ('succeeded', 'partially_refunded', 'refunded') \
                     AND ($2 IS NULL OR client_id = $2) \
                     ORDER BY supplier_id, account_number",
                )
                .bind(user_id)
                .bind(client_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_sms(
                &self,
                c: &$crate::store::SmsClaim<'_>,
            ) -> Result<$crate::store::SmsClaimResult, $crate::store::StoreError> {
                use $crate::domain::sms::{Command, DayCounts, decide, kind};
                use $crate::store::SmsClaimResult;
                let mut tx = self.pool.begin_with($begin).await?;
                // Phone first, then account, always in this order: no two claims wait on each other
                // crosswise.
                Self::lock_name_in(&mut tx, &format!("sms-phone:{}", c.phone)).await?;
                let account = match (c.command, c.supplier_id) {
                    (Command::Pay { account, .. }, Some(supplier)) => Some((supplier, account.as_str())),
                    _ => None,
                };
                if let Some((supplier, account)) = account {
                    Self::lock_name_in(&mut tx, &format!("sms-account:{supplier}:{account}")).await?;
                }
                let seen: Option<$crate::store::SmsMessageRecord> = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql_channels::sms_columns!(), " FROM sms_messages WHERE message_id = $1"
                ))
                .bind(c.message_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(seen) = seen {
                    tx.commit().await?;
                    return Ok(SmsClaimResult::Seen(Box::new(seen)));
                }
                let (malformed, help): (i64, i64) = sqlx::query_as(
                    "SELECT COALESCE(SUM(CASE WHEN kind = 'malformed' THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN kind = 'help' THEN 1 ELSE 0 END), 0) \
                     FROM sms_messages WHERE phone = $1 AND local_day = $2",
                )
                .bind(c.phone)
                .bind(c.local_day)
                .fetch_one(&mut *tx)
                .await?;
                let account_payments = match account {
                    Some((supplier, account)) => {
                        let (count,): (i64,) = sqlx::query_as(
                            "SELECT COUNT(*) FROM sms_messages WHERE kind = 'payment' \
                             AND supplier_id = $1 AND account_number = $2 AND account_day = $3",
                        )
                        .bind(supplier)
                        .bind(account)
                        .bind(c.account_day.unwrap_or(c.local_day))
                        .fetch_one(&mut *tx)
                        .await?;
                        count
                    }
                    None => 0,
                };
                let (phone_payments, phone_amount_minor): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM sms_messages \
                     WHERE phone = $1 AND local_day = $2 AND kind = 'payment'",
                )
                .bind(c.phone)
                .bind(c.local_day)
                .fetch_one(&mut *tx)
                .await?;
                let today = DayCounts { malformed, help, account_payments, phone_payments, phone_amount_minor };
                let (counted_as, reply) = decide(c.command, today, c.caps, c.refusal.clone());
                let amount_minor = match c.command {
                    Command::Pay { amount, .. } if reply.is_none() => Some(amount.minor()),
                    _ => None,
                };
                let accepted = reply.is_none();
                let reply_text = reply.map(|r| r.text()).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO sms_messages (message_id, phone, local_day, kind, supplier_id, account_number, \
                     payment_id, state, reply, received_at, created_at, updated_at, account_day, amount_minor, payee) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)",
                )
                .bind(c.message_id)
                .bind(c.phone)
                .bind(c.local_day)
                .bind(counted_as)
                .bind(account.map(|(s, _)| s))
                .bind(account.map(|(_, a)| a))
                .bind(accepted.then_some(c.payment_id))
                .bind(if accepted { "in_progress" } else { "done" })
                .bind(&reply_text)
                .bind(c.received_at)
                .bind(c.now)
                .bind(account.map(|_| c.account_day.unwrap_or(c.local_day)))
                .bind(amount_minor)
                .bind(accepted.then_some(c.payee).flatten())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                debug_assert!(counted_as == kind::PAYMENT || !accepted);
                Ok(if accepted { SmsClaimResult::Accepted } else { SmsClaimResult::Answered(reply_text) })
            }

            async fn finish_sms_charge(
                &self,
                message_id: &str,
                now: time::OffsetDateTime,
            ) -> Result<String, $crate::store::StoreError> {
                use $crate::domain::payment::PaymentStatus;
                use $crate::domain::sms::{Reply, final_reply};
                use $crate::store::StoreError;
                let mut tx = self.pool.begin_with($begin).await?;
                let row: $crate::store::SmsMessageRecord = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql_channels::sms_columns!(), " FROM sms_messages WHERE message_id = $1", $lock
                ))
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                if row.state != "in_progress" {
                    tx.commit().await?;
                    return Ok(row.reply);
                }
                let payment_id = row.payment_id.ok_or_else(|| StoreError::Corrupt(format!("sms {message_id} has no payment")))?;
                // Under the payment's lock: a transition either happened before (final now) or
                // waits and then finds the SMS awaiting its result.
                let payment: $crate::store::PaymentRecord = sqlx::query_as(concat!(
                    "SELECT ", $crate::store::sql::payment_columns!(), " FROM payments WHERE id = $1", $lock
                ))
                .bind(payment_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                let status = PaymentStatus::parse(&payment.status)
                    .ok_or_else(|| StoreError::Corrupt(format!("payment {payment_id} status")))?;
                let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let (state, reply) = match final_reply(status, amount, &payment.account_number, row.payee.as_deref()) {
                    Some(reply) => ("done", reply),
                    None => ("awaiting_result", Reply::Processing),
                };
                let text = reply.text();
                sqlx::query("UPDATE sms_messages SET state = $2, reply = $3, updated_at = $4 WHERE message_id = $1")
                    .bind(message_id)
                    .bind(state)
                    .bind(&text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(text)
            }

            async fn conclude_sms(
                &self,
                message_id: &str,
                kind: Option<&str>,
                reply: &str,
                now: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE sms_messages SET state = 'done', reply = $2, kind = COALESCE($3, kind), updated_at = $4 \
                     WHERE message_id = $1",
                )
                .bind(message_id)
                .bind(reply)
                .bind(kind)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
pub(super) use channel_store;
