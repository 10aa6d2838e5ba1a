//! The SMS flow: phones linked to users, each SMS judged and recorded under a lock on the phone,
//! and the late reply when a payment answered "processing" settles.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Tx, query, query_as};
use super::journal::outbox_in;
use super::payments::lock_payment_in;
use super::{
    PaymentRecord, SmsClaim, SmsClaimResult, SmsJudgement, SmsMessageRecord, Store, StoreError,
};
use crate::domain::sms::{DayCounts, SmsState};

/// What a payment becoming final means to the channels, inside the transition's
/// transaction: a public attempt that failed counts as a decline of its address, and
/// an SMS answered "processing" gets its late `sms.reply`.
pub(super) async fn channel_effects_in(
    conn: &mut Tx,
    payment: &PaymentRecord,
    status: crate::domain::payment::PaymentStatus,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if status == crate::domain::payment::PaymentStatus::Failed && payment.client_id.is_none() {
        query("UPDATE public_attempts SET declined_at = $2 WHERE payment_id = $1")
            .bind(payment.id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reply = |payee: Option<&str>| {
        crate::domain::sms::final_reply(status, amount, &payment.account_number, payee)
    };
    if reply(None).is_none() {
        return Ok(());
    }
    // One statement for the payments no SMS waits on, nearly all of them; a waiting message's
    // reply names its payee, so its words are written once the row is known.
    let waiting: Vec<(String, String, Option<String>)> = query_as(
        "UPDATE sms_messages SET state = 'done', updated_at = $2 \
         WHERE payment_id = $1 AND state = 'awaiting_result' RETURNING message_id, phone, payee",
    )
    .bind(payment.id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for (message_id, phone, payee) in waiting {
        let Some(reply) = reply(payee.as_deref()) else {
            continue;
        };
        let text = reply.text();
        query("UPDATE sms_messages SET late_reply = $2 WHERE message_id = $1")
            .bind(&message_id)
            .bind(&text)
            .execute(&mut *conn)
            .await?;
        let payload = crate::events::sms_reply(&message_id, &phone, &text, payment.id, now)?;
        outbox_in(conn, payment.id, "sms.reply", payload, now).await?;
    }
    Ok(())
}

impl Store {
    /// Links `phone` to `user_id` (replacing the user's earlier phone). `false` when the phone
    /// belongs to another user: nothing was written.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn link_sms_phone(
        &self,
        client_id: Uuid,
        user_id: &str,
        phone: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let owner: Option<(String,)> = query_as(concat!(
            "SELECT user_id FROM sms_phones WHERE phone = $1",
            " FOR UPDATE"
        ))
        .bind(phone)
        .fetch_optional(&mut tx)
        .await?;
        if owner.is_some_and(|(owner,)| owner != user_id) {
            tx.rollback().await?;
            return Ok(false);
        }
        let linked = query(
            "INSERT INTO sms_phones (user_id, phone, linked_at, client_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET phone = excluded.phone, linked_at = \
             excluded.linked_at, \
             client_id = excluded.client_id",
        )
        .bind(user_id)
        .bind(phone)
        .bind(at)
        .bind(client_id)
        .execute(&mut tx)
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn unlink_sms_phone(&self, user_id: &str) -> Result<bool, StoreError> {
        let done = query("DELETE FROM sms_phones WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The user a phone is linked to, and the client that linked it (`None` for old links).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn sms_phone_user(
        &self,
        phone: &str,
    ) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
        Ok(
            query_as("SELECT user_id, client_id FROM sms_phones WHERE phone = $1")
                .bind(phone)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The distinct (supplier, account) pairs of the user's succeeded full-card-entry payments
    /// (at `client_id`, or at any client).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn full_entry_accounts(
        &self,
        client_id: Option<Uuid>,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(query_as(
            "SELECT DISTINCT supplier_id, account_number FROM payments WHERE user_id = $1 \
             AND payment_method = 'new_card' AND status IN ('succeeded', 'partially_refunded', \
             'refunded') \
             AND ($2 IS NULL OR client_id = $2) \
             ORDER BY supplier_id, account_number",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Under a lock on the phone (and the account): replays a known `message_id`, or has `judge`
    /// (the caller's rule 14) judge the SMS against today's counts and records it with its
    /// reply, or as accepted.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_sms(
        &self,
        c: &SmsClaim<'_>,
        judge: impl FnOnce(DayCounts) -> SmsJudgement + Send,
    ) -> Result<SmsClaimResult, StoreError> {
        use crate::domain::sms::{Command, kind};
        let mut tx = self.pool.begin_write().await?;
        // Phone first, then account, always in this order: no two claims wait on each other
        // crosswise.
        tx.lock_name(&format!("sms-phone:{}", c.phone)).await?;
        let account = match (c.command, c.supplier_id) {
            (Command::Pay { account, .. }, Some(supplier)) => Some((supplier, account.as_str())),
            _ => None,
        };
        if let Some((supplier, account)) = account {
            tx.lock_name(&format!("sms-account:{supplier}:{account}"))
                .await?;
        }
        let seen: Option<SmsMessageRecord> = query_as(concat!(
            "SELECT ",
            sms_columns!(),
            " FROM sms_messages WHERE message_id = $1"
        ))
        .bind(c.message_id)
        .fetch_optional(&mut tx)
        .await?;
        if let Some(seen) = seen {
            tx.commit().await?;
            return Ok(SmsClaimResult::Seen(Box::new(seen)));
        }
        let (malformed, help): (i64, i64) = query_as(
            "SELECT COALESCE(SUM(CASE WHEN kind = 'malformed' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN kind = 'help' THEN 1 ELSE 0 END), 0) \
             FROM sms_messages WHERE phone = $1 AND local_day = $2",
        )
        .bind(c.phone)
        .bind(c.local_day)
        .fetch_one(&mut tx)
        .await?;
        let account_payments = match account {
            Some((supplier, account)) => {
                let (count,): (i64,) = query_as(
                    "SELECT COUNT(*) FROM sms_messages WHERE kind = 'payment' \
                     AND supplier_id = $1 AND account_number = $2 AND account_day = $3",
                )
                .bind(supplier)
                .bind(account)
                .bind(c.account_day.unwrap_or(c.local_day))
                .fetch_one(&mut tx)
                .await?;
                count
            }
            None => 0,
        };
        let (phone_payments, phone_amount_minor): (i64, i64) = query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM sms_messages \
             WHERE phone = $1 AND local_day = $2 AND kind = 'payment'",
        )
        .bind(c.phone)
        .bind(c.local_day)
        .fetch_one(&mut tx)
        .await?;
        let today = DayCounts {
            malformed,
            help,
            account_payments,
            phone_payments,
            phone_amount_minor,
        };
        let SmsJudgement { counted_as, reply } = judge(today);
        let amount_minor = match c.command {
            Command::Pay { amount, .. } if reply.is_none() => Some(amount.minor()),
            _ => None,
        };
        let accepted = reply.is_none();
        let reply_text = reply.unwrap_or_default();
        query(
            "INSERT INTO sms_messages (message_id, phone, local_day, kind, supplier_id, \
             account_number, \
             payment_id, state, reply, received_at, created_at, updated_at, account_day, \
             amount_minor, payee) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)",
        )
        .bind(c.message_id)
        .bind(c.phone)
        .bind(c.local_day)
        .bind(counted_as)
        .bind(account.map(|(s, _)| s))
        .bind(account.map(|(_, a)| a))
        .bind(accepted.then_some(c.payment_id))
        .bind(if accepted {
            SmsState::InProgress
        } else {
            SmsState::Done
        })
        .bind(&reply_text)
        .bind(c.received_at)
        .bind(c.now)
        .bind(account.map(|_| c.account_day.unwrap_or(c.local_day)))
        .bind(amount_minor)
        .bind(accepted.then_some(c.payee).flatten())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        debug_assert!(counted_as == kind::PAYMENT || !accepted);
        Ok(if accepted {
            SmsClaimResult::Accepted
        } else {
            SmsClaimResult::Answered(reply_text)
        })
    }

    /// Ends an accepted SMS whose charge has run: under the payment's lock, a final payment gives
    /// its final reply; one still open answers "processing" and the final reply follows as an
    /// `sms.reply` outbox event when the payment settles. Returns the reply.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn finish_sms_charge(
        &self,
        message_id: &str,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        use crate::domain::sms::{Reply, final_reply};
        let mut tx = self.pool.begin_write().await?;
        let row: SmsMessageRecord = query_as(concat!(
            "SELECT ",
            sms_columns!(),
            " FROM sms_messages WHERE message_id = $1",
            " FOR UPDATE"
        ))
        .bind(message_id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        if row.state != SmsState::InProgress {
            tx.commit().await?;
            return Ok(row.reply);
        }
        let payment_id = row
            .payment_id
            .ok_or_else(|| StoreError::Corrupt(format!("sms {message_id} has no payment")))?;
        // Under the payment's lock: a transition either happened before (final now) or
        // waits and then finds the SMS awaiting its result.
        let payment = lock_payment_in(&mut tx, payment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let status = payment.status;
        let amount = oplata_providers::Amount::from_minor(payment.amount_minor)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (state, reply) = match final_reply(
            status,
            amount,
            &payment.account_number,
            row.payee.as_deref(),
        ) {
            Some(reply) => (SmsState::Done, reply),
            None => (SmsState::AwaitingResult, Reply::Processing),
        };
        let text = reply.text();
        query(
            "UPDATE sms_messages SET state = $2, reply = $3, updated_at = $4 WHERE message_id = $1",
        )
        .bind(message_id)
        .bind(state)
        .bind(&text)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(text)
    }

    /// Ends an accepted SMS with a reply of its own (the charge was refused or canceled);
    /// `kind` replaces the stored kind when given.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn conclude_sms(
        &self,
        message_id: &str,
        kind: Option<&str>,
        reply: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE sms_messages SET state = 'done', reply = $2, kind = COALESCE($3, kind), \
             updated_at = $4 \
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
