//! PostgreSQL: the production store, shared by any number of replicas.
//!
//! Read-then-write transactions lock the row they read with `SELECT … FOR UPDATE`, so two
//! replicas handling the same payment at once take turns.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use super::sql::sql_store;
use super::sql_channels::channel_store;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";

    pub async fn connect(url: &str, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

sql_store!(
    PostgresStore,
    sqlx::PgConnection,
    begin_write = "BEGIN",
    lock_row = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED"
);

channel_store!(
    PostgresStore,
    sqlx::PgConnection,
    begin_write = "BEGIN",
    lock_row = " FOR UPDATE",
    lock_key = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
);
