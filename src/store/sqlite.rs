//! SQLite: the embedded default, for one machine.
//!
//! WAL journal so readers never wait for the writer; one writer connection that every write goes
//! through, so that writers queue for it rather than in SQLite's busy loop (the busy timeout
//! stays for other processes; see [`super::sqlite_writer`]); `BEGIN IMMEDIATE` (see [`super::db`]) so a read-then-write transaction
//! takes the write lock before it reads, which is what makes it safe without row locks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::db::{Pool, SqlitePools};
use super::sqlite_writer::Writer;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// How many prepared statements the writer connection keeps.
const WRITER_STATEMENTS: usize = 256;

/// The writer gives its page cache back after a period this long with few writes.
const WRITER_QUIET_PERIOD: Duration = Duration::from_secs(30);
/// Fewer writes than this in such a period is quiet (the workers' passes make a few).
const WRITER_QUIET_WRITES: u64 = 100;

/// How often the log's committed pages are copied into the database file, off the writer's
/// path (see [`Writer::checkpoint_in_background`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Log pages past which a commit still checkpoints by itself: only should the background
/// checkpoint stop keeping up (SQLite's default is 1,000 pages, about 4 MB).
const WRITER_CHECKPOINT_PAGES: u32 = 16 * 1024;

/// How long a write may wait for the writer connection (SQLite's busy timeout before).
const WRITER_WAIT: Duration = Duration::from_secs(10);

/// How long a reader connection beyond the first stays open unused. Each keeps up to 2 MB of
/// pages it has read; a burst opens all eight, and closing the idle ones afterwards gives their
/// caches back, for the cost of opening a connection at the next burst.
const READER_IDLE: Duration = Duration::from_secs(60);

pub(super) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Pool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // Writers wait their turn for the one writer connection as they used to wait for the
    // database lock; the shorter timeout is for readers, who wait only when the pool is busy.
    // Each write updates a dozen indexes of `payments` at places spread over the whole table;
    // the writer keeps more of them at hand than SQLite's default 2 MB (readers keep theirs).
    let writer = Writer::open(
        options
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string())
            // Every writing statement of the store, and again led by `BEGIN` as the first of a
            // transaction, stays prepared (sqlx keeps 100 by default).
            .statement_cache_capacity(WRITER_STATEMENTS),
        acquire_timeout.max(WRITER_WAIT),
    )
    .await?;
    {
        let mut held = writer.hold().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(held.connection())
            .await?;
    }
    // An in-memory database exists per connection: it can only ever have the one.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        writer.give_back_cache_when_quiet(WRITER_QUIET_PERIOD, WRITER_QUIET_WRITES);
        writer.checkpoint_in_background(CHECKPOINT_EVERY);
    }
    let reader = if in_memory {
        None
    } else {
        Some(
            SqlitePoolOptions::new()
                .max_connections(8)
                .min_connections(1)
                .idle_timeout(READER_IDLE)
                .acquire_timeout(acquire_timeout)
                // A local file: the pool already pings each connection as it comes back, and
                // another ping on the way out would be one more round trip per read.
                .test_before_acquire(false)
                .connect_with(options)
                .await?,
        )
    };
    Ok(Pool::Sqlite(SqlitePools { reader, writer }))
}
