//! Who may call: API clients and their key hashes, desk operators, their sessions and the
//! sign-in brake's failures.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{query, query_as};
use super::{ApiClientRecord, OperatorRecord, SessionRecord, Store, StoreError, new_row_id};

impl Store {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn insert_api_client(&self, client: &ApiClientRecord) -> Result<(), StoreError> {
        query(
            "INSERT INTO api_clients (id, name, scope, key_hash, key_prefix, created_at, \
             revoked_at) \
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn find_api_client_by_key_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiClientRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, name, scope, key_hash, key_prefix, created_at, revoked_at \
             FROM api_clients WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_api_clients(&self) -> Result<Vec<ApiClientRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, name, scope, key_hash, key_prefix, created_at, revoked_at \
             FROM api_clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns false when there is no such live key.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_api_client(
        &self,
        id: Uuid,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done =
            query("UPDATE api_clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn insert_operator(&self, o: &OperatorRecord) -> Result<(), StoreError> {
        query(
            "INSERT INTO operators (id, login, name, password_hash, created_at, disabled_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn find_operator(&self, login: &str) -> Result<Option<OperatorRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators WHERE login = $1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Enrols (`Some`) or removes (`None`) an operator's sealed second-factor secret; a new
    /// secret starts with no step accepted. False when no such operator.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn set_operator_second_factor(
        &self,
        login: &str,
        sealed: Option<(&str, &[u8])>,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE operators SET totp_key_id = $2, totp_secret = $3, totp_last_step = NULL \
             WHERE login = $1",
        )
        .bind(login)
        .bind(sealed.map(|(key_id, _)| key_id))
        .bind(sealed.map(|(_, bytes)| bytes))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `step` as the operator's last accepted second-factor step if it is later than
    /// the last one: of two sign-ins with one code, only one gets true.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn accept_second_factor_step(
        &self,
        operator_id: Uuid,
        step: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE operators SET totp_last_step = $2 WHERE id = $1 AND totp_secret IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(operator_id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Operators whose second-factor secret is sealed under another key than `active_key`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn operators_to_reseal(
        &self,
        active_key: &str,
    ) -> Result<Vec<OperatorRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators WHERE totp_key_id IS NOT NULL AND totp_key_id <> $1 ORDER BY id"
        ))
        .bind(active_key)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces an operator's sealed secret if it is still under `old_key`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reseal_operator_second_factor(
        &self,
        operator_id: Uuid,
        old_key: &str,
        new_key: &str,
        ciphertext: &[u8],
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE operators SET totp_key_id = $3, totp_secret = $4 WHERE id = $1 AND \
             totp_key_id = $2",
        )
        .bind(operator_id)
        .bind(old_key)
        .bind(new_key)
        .bind(ciphertext)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables an operator and ends their sessions; false when no such active operator.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn disable_operator(
        &self,
        login: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let done =
            query("UPDATE operators SET disabled_at = $2 WHERE login = $1 AND disabled_at IS NULL")
                .bind(login)
                .bind(at)
                .execute(&mut tx)
                .await?;
        query(
            "DELETE FROM operator_sessions WHERE operator_id IN (SELECT id FROM operators WHERE \
               login = $1)",
        )
        .bind(login)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a sign-in attempt as failed (before its password is checked: the brake counts it
    /// at once, whatever the concurrency); returns its id, to forget it if the password was right.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn record_login_failure(
        &self,
        login: &str,
        at: OffsetDateTime,
    ) -> Result<Uuid, StoreError> {
        let id = new_row_id();
        query("INSERT INTO login_failures (id, login, failed_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(login)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn forget_login_failure(&self, id: Uuid) -> Result<(), StoreError> {
        query("DELETE FROM login_failures WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn login_failures_since(
        &self,
        login: &str,
        since: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let (count,): (i64,) =
            query_as("SELECT COUNT(*) FROM login_failures WHERE login = $1 AND failed_at >= $2")
                .bind(login)
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
        Ok(count)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn insert_session(
        &self,
        token_hash: &str,
        operator_id: Uuid,
        csrf_token: &str,
        at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO operator_sessions (token_hash, operator_id, csrf_token, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
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

    /// The live session of an enabled operator.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn find_session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(query_as(
            "SELECT s.operator_id, o.login, o.name, s.csrf_token, s.expires_at FROM \
             operator_sessions s \
             JOIN operators o ON o.id = s.operator_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND o.disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        query("DELETE FROM operator_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
