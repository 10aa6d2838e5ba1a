//! SQLite: the embedded default, for one machine.
//!
//! WAL journal so readers never wait for the writer; a busy timeout so concurrent writers queue
//! instead of failing; `BEGIN IMMEDIATE` (see [`super::db`]) so a read-then-write transaction
//! takes the write lock before it reads, which is what makes it safe without row locks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::db::Pool;

pub(super) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Pool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // An in-memory database exists per connection: it can only ever have one.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(if in_memory { 1 } else { 8 })
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(Pool::Sqlite(pool))
}
