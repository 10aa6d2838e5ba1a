//! Idempotency keys: claimed before a request runs, completed with its answer, reopened when
//! the request met an outage so that a retry resumes what it started.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Executor, Query, Tx, query, query_as};
use super::{ClaimedKey, IdempotencyClaim, Store, StoreError, StoredResponse, new_row_id};

/// A key as its first claim writes it: held by its request until `lock_until`.
pub(super) struct NewKey<'a> {
    pub client_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub now: OffsetDateTime,
    pub lock_until: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub resource_id: Uuid,
}

/// Writes a key unless the client has it already; true when this call wrote it.
pub(super) async fn insert_key_in(conn: &mut Tx, k: &NewKey<'_>) -> Result<bool, StoreError> {
    let inserted = query(
        "INSERT INTO idempotency_keys \
         (client_id, idem_key, fingerprint, state, created_at, locked_until, expires_at, \
         resource_id) \
         VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7) \
         ON CONFLICT (client_id, idem_key) DO NOTHING",
    )
    .bind(k.client_id)
    .bind(k.key)
    .bind(k.fingerprint)
    .bind(k.now)
    .bind(k.lock_until)
    .bind(k.expires_at)
    .bind(k.resource_id)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Keeps a key's answer: later requests with it get this again.
pub(super) async fn answer_key<'c>(
    on: impl Executor<'c>,
    client_id: Uuid,
    key: &str,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    answer_key_query(client_id, key, response)
        .execute(on)
        .await?;
    Ok(())
}

/// [`answer_key`] as the last statement of `tx`, which it commits.
pub(super) async fn answer_key_and_commit(
    tx: Tx,
    client_id: Uuid,
    key: &str,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    answer_key_query(client_id, key, response)
        .execute_and_commit(tx)
        .await?;
    Ok(())
}

fn answer_key_query<'q>(client_id: Uuid, key: &'q str, response: &'q StoredResponse) -> Query<'q> {
    query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4 \
         WHERE client_id = $1 AND idem_key = $2",
    )
    .bind(client_id)
    .bind(key)
    .bind(i32::from(response.status))
    .bind(&response.body)
}

impl Store {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        lock_until: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError> {
        use crate::store::{IdempotencyClaim, StoredResponse};
        let mut tx = self.pool.begin_write().await?;
        query(
            "DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND expires_at < \
             $3",
        )
        .bind(client_id)
        .bind(key)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let resource_id = new_row_id();
        let new_key = NewKey {
            client_id,
            key,
            fingerprint,
            now,
            lock_until,
            expires_at,
            resource_id,
        };
        if insert_key_in(&mut tx, &new_key).await? {
            tx.commit().await?;
            return Ok(IdempotencyClaim::Claimed(ClaimedKey {
                resource_id,
                resumed: false,
            }));
        }
        let row: (
            String,
            String,
            Option<i32>,
            Option<String>,
            OffsetDateTime,
            Option<Uuid>,
        ) = query_as(concat!(
            "SELECT fingerprint, state, response_status, response_body, locked_until, resource_id \
                 FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2",
            " FOR UPDATE"
        ))
        .bind(client_id)
        .bind(key)
        .fetch_one(&mut tx)
        .await?;
        let (stored_fingerprint, state, status, body, locked_until, stored_resource) = row;
        let claim = if stored_fingerprint != fingerprint {
            IdempotencyClaim::Mismatch
        } else if state == "done" {
            let status = status
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| StoreError::Corrupt("idempotency status".into()))?;
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
            query(
                "UPDATE idempotency_keys SET locked_until = $3, resource_id = $4 \
                 WHERE client_id = $1 AND idem_key = $2",
            )
            .bind(client_id)
            .bind(key)
            .bind(lock_until)
            .bind(resource_id)
            .execute(&mut tx)
            .await?;
            IdempotencyClaim::Claimed(ClaimedKey {
                resource_id,
                resumed: true,
            })
        };
        tx.commit().await?;
        Ok(claim)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn complete_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        answer_key(&self.pool, client_id, key, response).await
    }

    /// Forgets a key whose request was refused without writing anything.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn release_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
    ) -> Result<(), StoreError> {
        query("DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2")
            .bind(client_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives a key back without an answer (its request met a database outage): the next request
    /// with it takes over at once and resumes what this one started.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reopen_idempotency_key(
        &self,
        client_id: Uuid,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query(
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
}
