//! The anonymous page: a payment created after the abuse limits accept it, and the sealed
//! payer data of budget payments with its continue token's hash.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{query, query_as};
use super::{
    DecideFirstMove, NewPaymentRecord, PayerDataRecord, PaymentRecord, PublicAttempt, Store,
    StoreError,
};
use crate::domain::public_limits::Recent;

impl Store {
    /// Creates a public payment like [`Store::create_payment`], after `limits_allow` (the
    /// caller's abuse limits) accepts the recent attempts read under locks on the address and
    /// the account, and records the attempt in the same transaction.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_public_payment<Refused>(
        &self,
        p: &NewPaymentRecord,
        actor: &str,
        attempt: &PublicAttempt,
        limits_allow: impl FnOnce(Recent<'_>) -> Result<(), Refused> + Send,
        first: DecideFirstMove<'_>,
    ) -> Result<Result<PaymentRecord, Refused>, StoreError> {
        let now = p.created_at;
        let limits = &attempt.limits;
        let mut tx = self.pool.begin_write().await?;
        // The address first, then the account, always in this order.
        tx.lock_name(&format!("public-ip:{}", attempt.client_ip))
            .await?;
        tx.lock_name(&format!(
            "public-account:{}:{}",
            p.supplier_id, p.account_number
        ))
        .await?;
        let attempts: Vec<(OffsetDateTime,)> = query_as(
            "SELECT created_at FROM public_attempts \
             WHERE supplier_id = $1 AND account_number = $2 AND created_at > $3",
        )
        .bind(&p.supplier_id)
        .bind(&p.account_number)
        .bind(now - limits.account_window)
        .fetch_all(&mut tx)
        .await?;
        let declines: Vec<(OffsetDateTime,)> = query_as(
            "SELECT declined_at FROM public_attempts WHERE client_ip = $1 AND declined_at > $2",
        )
        .bind(&attempt.client_ip)
        .bind(now - limits.ip_window)
        .fetch_all(&mut tx)
        .await?;
        let creations: Vec<(OffsetDateTime,)> = query_as(
            "SELECT created_at FROM public_attempts WHERE client_ip = $1 AND created_at > $2",
        )
        .bind(&attempt.client_ip)
        .bind(now - limits.creations_window)
        .fetch_all(&mut tx)
        .await?;
        let attempts: Vec<OffsetDateTime> = attempts.into_iter().map(|(t,)| t).collect();
        let declines: Vec<OffsetDateTime> = declines.into_iter().map(|(t,)| t).collect();
        let creations: Vec<OffsetDateTime> = creations.into_iter().map(|(t,)| t).collect();
        let recent = Recent {
            account_attempts: &attempts,
            ip_declines: &declines,
            ip_creations: &creations,
        };
        if let Err(limited) = limits_allow(recent) {
            tx.rollback().await?;
            return Ok(Err(limited));
        }
        let record = super::payments::create_payment_in(&mut tx, p, actor, first).await?;
        query(
            "INSERT INTO public_attempts (payment_id, client_ip, supplier_id, account_number, \
             created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(record.id)
        .bind(&attempt.client_ip)
        .bind(&p.supplier_id)
        .bind(&p.account_number)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(record))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn payer_data(
        &self,
        payment_id: Uuid,
    ) -> Result<Option<PayerDataRecord>, StoreError> {
        Ok(query_as(
            "SELECT payment_id, key_id, ciphertext, continue_token_hash, created_at, purged_at \
             FROM payer_data WHERE payment_id = $1",
        )
        .bind(payment_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Replaces the hash of a payment's continue token.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn replace_continue_token(
        &self,
        payment_id: Uuid,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        query("UPDATE payer_data SET continue_token_hash = $2 WHERE payment_id = $1")
            .bind(payment_id)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the ciphertexts of final payments last changed before `before`; returns how many.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn purge_payer_data(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let done = query(concat!(
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
}
