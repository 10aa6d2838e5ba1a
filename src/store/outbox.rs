//! The outbox and its webhook deliveries: queued per endpoint, claimed with `SKIP LOCKED`,
//! retried with back-off, and kept in order per payment.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{query, query_as, query_per_backend};
use super::{DeliveryRecord, DueDelivery, OutboxRecord, Store, StoreError, WebhookAttempt};

/// The claim of due deliveries, with how its ids are matched (`open` … `close`).
macro_rules! claim_sql {
    ($open:literal, $close:literal) => {
        concat!(
            "UPDATE webhook_deliveries SET next_attempt_at = $4 \
             WHERE endpoint = $1 AND event_id",
            $open,
            "SELECT d.event_id FROM webhook_deliveries d \
               WHERE d.endpoint = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
               AND d.event_id = (SELECT e.event_id FROM webhook_deliveries e \
                 WHERE e.endpoint = d.endpoint AND e.aggregate_id = d.aggregate_id \
                 AND e.status = 'pending' ORDER BY e.event_id LIMIT 1) \
               ORDER BY d.next_attempt_at, d.event_id LIMIT $3",
            $close,
            " RETURNING event_id, endpoint, attempts, \
             (SELECT event_type FROM outbox o WHERE o.id = webhook_deliveries.event_id) \
               AS event_type, \
             (SELECT payload FROM outbox o WHERE o.id = webhook_deliveries.event_id) AS payload, \
             (SELECT created_at FROM outbox o WHERE o.id = webhook_deliveries.event_id) \
               AS created_at"
        )
    };
}

impl Store {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn outbox_for(&self, aggregate_id: Uuid) -> Result<Vec<OutboxRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, aggregate_id, event_type, payload, created_at \
             FROM outbox WHERE aggregate_id = $1 ORDER BY id",
        )
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues the deliveries of every event written since the last call, one per endpoint, and
    /// marks those events queued, in one transaction: through the partial index of the events
    /// that wait, so its cost is what was written meanwhile, not the size of the outbox, and an
    /// event whose transaction committed late is there when it is visible. (The first attempt
    /// matched the events of the last minutes against their deliveries at every pass: thousands
    /// of lookups a pass under load, slower as the tables grew.)
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn queue_new_webhooks(&self, endpoints: &[&str]) -> Result<(), StoreError> {
        let endpoints = serde_json::to_string(endpoints)
            .map_err(|e| StoreError::Corrupt(format!("webhook endpoints: {e}")))?;
        let tx = self.pool.begin_write().await?;
        query_per_backend(
            "WITH fresh AS (UPDATE outbox SET awaiting_queue = false WHERE awaiting_queue \
               RETURNING id, aggregate_id, created_at) \
             INSERT INTO webhook_deliveries (event_id, endpoint, aggregate_id, status, attempts, \
               next_attempt_at) \
             SELECT f.id, e.endpoint, f.aggregate_id, 'pending', 0, f.created_at \
             FROM fresh f CROSS JOIN json_array_elements_text(CAST($1 AS json)) AS e(endpoint) \
             ON CONFLICT (event_id, endpoint) DO NOTHING",
            // The writer is held from `BEGIN IMMEDIATE` on: no event is written between the two.
            "INSERT INTO webhook_deliveries (event_id, endpoint, aggregate_id, status, attempts, \
               next_attempt_at) \
             SELECT o.id, e.value, o.aggregate_id, 'pending', 0, o.created_at \
             FROM outbox o CROSS JOIN json_each($1) AS e WHERE o.awaiting_queue \
             ON CONFLICT (event_id, endpoint) DO NOTHING; \
             UPDATE outbox SET awaiting_queue = false WHERE awaiting_queue",
        )
        .bind(endpoints)
        .execute_and_commit(tx)
        .await?;
        Ok(())
    }

    /// Queues every outbox event made from `since` on (an id bound) not yet queued for
    /// `endpoint`, matching that part of the outbox against its deliveries: for an endpoint just
    /// configured, once at a process's start and hourly. `since` stays a day inside the
    /// retention of delivered events, so an event is never queued while the retention pass
    /// deletes it.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn queue_all_webhooks(&self, endpoint: &str, since: Uuid) -> Result<u64, StoreError> {
        let done = query(
            "INSERT INTO webhook_deliveries (event_id, endpoint, aggregate_id, status, \
             attempts, next_attempt_at) \
             SELECT o.id, $1, o.aggregate_id, 'pending', 0, o.created_at FROM outbox o \
             WHERE o.id >= $2 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.event_id = o.id AND d.endpoint = $1) \
             ON CONFLICT (event_id, endpoint) DO NOTHING",
        )
        .bind(endpoint)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims due deliveries for `endpoint`, the oldest undelivered event of each aggregate only,
    /// leasing them until `lease_until`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_webhooks(
        &self,
        endpoint: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        // Only the first undelivered event of each aggregate is due: later ones wait, so a
        // payment's events arrive in order. That first event is asked of the index per candidate
        // (a correlated subquery, always a lookup by aggregate): as `NOT EXISTS`, a plan made while
        // the table looked empty scanned every pending delivery per candidate (a second and more
        // per claim once thousands were queued). The lease (a later `next_attempt_at`) keeps a
        // claimed event and the events after it from every other claim until it is recorded,
        // so claims may run side by side. One statement claims the whole batch.
        // PostgreSQL reads the claimed ids into an array first, so the update finds them by
        // primary key; as `IN (subquery)` its generic plan joined against a scan of every
        // delivery, which took a second and more once deliveries piled up.
        let sql = match self.pool.backend() {
            "postgres" => claim_sql!(" = ANY(ARRAY(", " FOR UPDATE SKIP LOCKED))"),
            _ => claim_sql!(" IN (", ")"),
        };
        let due: Vec<DueDelivery> = query_as(sql)
            .bind(endpoint)
            .bind(now)
            .bind(limit)
            .bind(lease_until)
            .fetch_all(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(due)
    }

    /// Records a batch of attempts at one endpoint, each delivered, to retry, or dead, in one
    /// transaction. The delivered ones (nearly all of a batch) are two statements however many
    /// they are: their ids travel as one JSON array.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn record_webhook_attempts(
        &self,
        endpoint: &str,
        attempts: &[(Uuid, WebhookAttempt<'_>)],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let delivered: Vec<String> = attempts
            .iter()
            .filter(|(_, outcome)| matches!(outcome, WebhookAttempt::Delivered))
            .map(|(id, _)| id.simple().to_string())
            .collect();
        let mut tx = self.pool.begin_write().await?;
        if !delivered.is_empty() {
            let ids = serde_json::to_string(&delivered)
                .map_err(|e| StoreError::Corrupt(format!("webhook ids: {e}")))?;
            // The same statements on both databases but for reading the array: PostgreSQL's
            // uuid from text, SQLite's 16-byte blob from hex. On PostgreSQL "still pending" is
            // written as "neither delivered nor dead" (the only other statuses, by the table's
            // CHECK): `status = 'pending'` lets the planner take the pending-order partial
            // index, found only by endpoint, and filter every pending delivery for the batch's
            // ids whenever its statistics hold the pending set small (never analyzed, or a
            // backlog grown since): 14.6 ms a batch against 0.66 ms through the primary key
            // with 20,000 pending, and 1.9 ms an event in a benchmark's drain.
            let (deliveries, outbox) = match self.pool.backend() {
                "postgres" => (
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                     next_attempt_at = $3, last_error = NULL, delivered_at = $3 \
                     WHERE endpoint = $1 AND status NOT IN ('delivered', 'dead') \
                     AND event_id = ANY(ARRAY(\
                     SELECT CAST(value AS uuid) FROM json_array_elements_text(CAST($2 AS json))))",
                    "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1 \
                     WHERE delivered_at IS NULL AND id = ANY(ARRAY(\
                     SELECT CAST(value AS uuid) FROM json_array_elements_text(CAST($1 AS json))))",
                ),
                _ => (
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                     next_attempt_at = $3, last_error = NULL, delivered_at = $3 \
                     WHERE endpoint = $1 AND status = 'pending' AND event_id IN \
                     (SELECT unhex(value) FROM json_each($2))",
                    "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1 \
                     WHERE delivered_at IS NULL AND id IN (SELECT unhex(value) FROM json_each($1))",
                ),
            };
            query(deliveries)
                .bind(endpoint)
                .bind(&ids)
                .bind(at)
                .execute(&mut tx)
                .await?;
            query(outbox).bind(&ids).bind(at).execute(&mut tx).await?;
        }
        for (event_id, outcome) in attempts {
            let (status, next, error) = match *outcome {
                WebhookAttempt::Delivered => continue,
                WebhookAttempt::Retry { at: retry, error } => ("pending", retry, error),
                WebhookAttempt::Dead { error } => ("dead", at, error),
            };
            query(
                "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, \
                 next_attempt_at = $4, last_error = $5 \
                 WHERE event_id = $1 AND endpoint = $2 AND status = 'pending'",
            )
            .bind(*event_id)
            .bind(endpoint)
            .bind(status)
            .bind(next)
            .bind(error)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn webhook_deliveries(
        &self,
        event_id: Uuid,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(query_as(
            "SELECT event_id, endpoint, aggregate_id, status, attempts, next_attempt_at, \
             last_error, delivered_at \
             FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn dead_webhooks(&self) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(query_as(
            "SELECT event_id, endpoint, aggregate_id, status, attempts, next_attempt_at, \
             last_error, delivered_at \
             FROM webhook_deliveries WHERE status = 'dead' ORDER BY next_attempt_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
