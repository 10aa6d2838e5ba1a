//! PostgreSQL: the production store, shared by any number of replicas.
//!
//! Read-then-write transactions lock the row they read with `SELECT … FOR UPDATE`, so two
//! replicas handling the same payment at once take turns.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use super::db::Pool;

/// How long a connection may sit idle in the pool before it is checked again before use.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

pub(super) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Pool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(acquire_timeout)
        // The pool pings every connection as it comes back; pinging it again on the way out
        // was one more round trip per transaction. A connection idle for a while is still
        // checked before use (the server may have closed it meanwhile).
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(Pool::Postgres(pool))
}
