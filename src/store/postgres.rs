//! PostgreSQL: the production store, shared by any number of replicas.
//!
//! Read-then-write transactions lock the row they read with `SELECT … FOR UPDATE`, so two
//! replicas handling the same payment at once take turns.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use super::db::Pool;

pub(super) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Pool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(Pool::Postgres(pool))
}
