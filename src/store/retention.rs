//! Retention: deletes, in bounded batches, what is past its keeping time in the tables that
//! only grow.

use time::OffsetDateTime;

use super::db::query;
use super::{RetentionCutoffs, RetentionReport, Store, StoreError};

impl Store {
    /// Deletes, at most `batch` rows per table, what is past its retention: expired idempotency
    /// keys and sessions, and attempts, SMS and sign-in failures older than their cutoffs.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn purge_retained(
        &self,
        cutoffs: &RetentionCutoffs,
        batch: i64,
    ) -> Result<RetentionReport, StoreError> {
        // Each table in its own short statement, at most `batch` rows, by primary key.
        let idempotency_keys = self
            .delete_batch(
                "DELETE FROM idempotency_keys WHERE (client_id, idem_key) IN \
             (SELECT client_id, idem_key FROM idempotency_keys WHERE expires_at < $1 LIMIT $2)",
                cutoffs.now,
                batch,
            )
            .await?;
        let operator_sessions = self
            .delete_batch(
                "DELETE FROM operator_sessions WHERE token_hash IN \
             (SELECT token_hash FROM operator_sessions WHERE expires_at < $1 LIMIT $2)",
                cutoffs.now,
                batch,
            )
            .await?;
        let public_attempts = self
            .delete_batch(
                "DELETE FROM public_attempts WHERE payment_id IN \
             (SELECT payment_id FROM public_attempts WHERE created_at < $1 LIMIT $2)",
                cutoffs.public_attempts,
                batch,
            )
            .await?;
        // Only finished SMS: one still waiting for its charge's outcome stays.
        let sms_messages = self
            .delete_batch(
                "DELETE FROM sms_messages WHERE message_id IN \
             (SELECT message_id FROM sms_messages \
              WHERE created_at < $1 AND state = 'done' LIMIT $2)",
                cutoffs.sms_messages,
                batch,
            )
            .await?;
        let login_failures = self
            .delete_batch(
                "DELETE FROM login_failures WHERE id IN \
             (SELECT id FROM login_failures WHERE failed_at < $1 LIMIT $2)",
                cutoffs.login_failures,
                batch,
            )
            .await?;
        Ok(RetentionReport {
            idempotency_keys,
            operator_sessions,
            public_attempts,
            sms_messages,
            login_failures,
        })
    }

    /// One bounded delete: `statement` takes the cutoff as `$1` and the batch size as `$2`.
    async fn delete_batch(
        &self,
        statement: &'static str,
        cutoff: OffsetDateTime,
        batch: i64,
    ) -> Result<u64, StoreError> {
        Ok(query(statement)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
