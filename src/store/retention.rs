//! Retention: deletes, in bounded batches, what is past its keeping time in the tables that
//! only grow.

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
        let idempotency_keys = query(
            "DELETE FROM idempotency_keys WHERE (client_id, idem_key) IN \
             (SELECT client_id, idem_key FROM idempotency_keys WHERE expires_at < $1 LIMIT $2)",
        )
        .bind(cutoffs.now)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let operator_sessions = query(
            "DELETE FROM operator_sessions WHERE token_hash IN \
             (SELECT token_hash FROM operator_sessions WHERE expires_at < $1 LIMIT $2)",
        )
        .bind(cutoffs.now)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let public_attempts = query(
            "DELETE FROM public_attempts WHERE payment_id IN \
             (SELECT payment_id FROM public_attempts WHERE created_at < $1 LIMIT $2)",
        )
        .bind(cutoffs.public_attempts)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        // Only finished SMS: one still waiting for its charge's outcome stays.
        let sms_messages = query(
            "DELETE FROM sms_messages WHERE message_id IN \
             (SELECT message_id FROM sms_messages \
              WHERE created_at < $1 AND state = 'done' LIMIT $2)",
        )
        .bind(cutoffs.sms_messages)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let login_failures = query(
            "DELETE FROM login_failures WHERE id IN \
             (SELECT id FROM login_failures WHERE failed_at < $1 LIMIT $2)",
        )
        .bind(cutoffs.login_failures)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(RetentionReport {
            idempotency_keys,
            operator_sessions,
            public_attempts,
            sms_messages,
            login_failures,
        })
    }
}
