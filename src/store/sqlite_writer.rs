//! SQLite's one writer connection, handed from one write to the next through a fair lock.
//!
//! Every write of an SQLite database is serial, so the time between one writing transaction's
//! last statement and the next one's first is time no write is made. Through a connection pool
//! that gap was a `COMMIT`, a spawned task returning the connection, a ping on its way back, a
//! ping on its way out and a `BEGIN`: under a burst of charges, 65 % of the writer's idle time
//! sat there. Here the connection is behind a FIFO mutex: the next writer gets it the moment the
//! last one is done, with nothing to check on a local file in between.
//!
//! A transaction's `BEGIN IMMEDIATE` is not a statement of its own: it travels in one string with
//! the transaction's first statement (see [`WriterTx::first_statement`]), one round trip fewer
//! for every write; a transaction that ran no statement has nothing to commit or roll back.
//!
//! A transaction dropped without `COMMIT` (its request cancelled, or an error on the way) is
//! rolled back by a task that still holds the lock, so the next writer always finds the
//! connection outside any transaction. A connection that stopped answering is opened again by
//! the next writer.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The writer connection and whoever waits for it.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    slot: Arc<Mutex<Slot>>,
    options: Arc<SqliteConnectOptions>,
    /// How long a write waits for the connection before it is refused (a pool's timeout).
    wait: Duration,
}

#[derive(Debug)]
struct Slot {
    /// `None` once the connection broke: the next holder opens another.
    connection: Option<SqliteConnection>,
    /// A transaction was left open and its rollback has not been confirmed.
    rollback_owed: bool,
    /// How many times a writer took the connection.
    holds: u64,
    /// How many times the page cache was given back.
    shrinks: u64,
}

/// The connection, held: every other writer waits until this is dropped.
#[derive(Debug)]
pub(crate) struct Held {
    guard: OwnedMutexGuard<Slot>,
}

impl Writer {
    pub(crate) async fn open(
        options: SqliteConnectOptions,
        wait: Duration,
    ) -> Result<Self, sqlx::Error> {
        let connection = options.connect().await?;
        Ok(Self {
            slot: Arc::new(Mutex::new(Slot {
                connection: Some(connection),
                rollback_owed: false,
                holds: 0,
                shrinks: 0,
            })),
            options: Arc::new(options),
            wait,
        })
    }

    /// Takes the connection, in the order writers asked for it, outside any transaction.
    pub(crate) async fn hold(&self) -> Result<Held, sqlx::Error> {
        let guard = tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        let mut held = Held { guard };
        held.guard.holds += 1;
        if held.guard.rollback_owed {
            held.roll_back().await;
        }
        if held.guard.connection.is_none() {
            held.guard.connection = Some(self.options.connect().await?);
        }
        Ok(held)
    }

    /// Gives the connection's page cache back to the allocator (`PRAGMA shrink_memory`) at the
    /// end of every `period` in which writers took the connection fewer than `quiet` times,
    /// until the writer is dropped. The writer's cache (16 MB, filled by a burst of writes
    /// on a database of that size) is most of what SQLite keeps after the burst; once writes are
    /// few (the workers' passes), the pages they need are read again from the operating
    /// system's file cache.
    pub(crate) fn give_back_cache_when_quiet(&self, period: Duration, quiet: u64) {
        let slot = Arc::downgrade(&self.slot);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut holds_before = 0;
            loop {
                ticks.tick().await;
                let Some(slot) = slot.upgrade() else {
                    return;
                };
                // A writer holds it or waits for it: not quiet now.
                let Ok(mut slot) = slot.try_lock() else {
                    continue;
                };
                let holds = slot.holds - holds_before;
                holds_before = slot.holds;
                if holds >= quiet || slot.rollback_owed {
                    continue;
                }
                if let Some(connection) = slot.connection.as_mut() {
                    let shrunk = sqlx::raw_sql(sqlx::AssertSqlSafe("PRAGMA shrink_memory"))
                        .execute(connection)
                        .await;
                    match shrunk {
                        Ok(_) => slot.shrinks += 1,
                        Err(error) => {
                            tracing::warn!(%error, "the SQLite writer could not give its cache back")
                        }
                    }
                }
            }
        });
    }

    #[cfg(test)]
    async fn shrinks(&self) -> u64 {
        self.slot.lock().await.shrinks
    }

    /// Runs `statement` outside any transaction, holding the connection for it alone.
    pub(crate) async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut held = self.hold().await?;
        let result = statement(held.connection()).await;
        held.note(&result);
        result
    }

    /// Holds the connection for a transaction whose first statement begins it with `BEGIN
    /// IMMEDIATE`: the database's write lock is taken before anything is read (see
    /// [`super::db`]).
    pub(crate) async fn begin(&self) -> Result<WriterTx, sqlx::Error> {
        let held = self.hold().await?;
        Ok(WriterTx {
            held: Some(held),
            begun: false,
        })
    }
}

impl Held {
    pub(crate) fn connection(&mut self) -> &mut SqliteConnection {
        // `hold` opens one before it hands out the guard, and only `note` takes it away, on
        // the way out.
        self.guard
            .connection
            .as_mut()
            .expect("a held writer has a connection")
    }

    /// Forgets a connection whose error says it no longer answers; the next holder opens one.
    pub(crate) fn note<T>(&mut self, result: &Result<T, sqlx::Error>) {
        if let Err(error) = result
            && connection_lost(error)
        {
            tracing::warn!(%error, "the SQLite writer connection broke; the next write opens another");
            self.guard.connection = None;
            self.guard.rollback_owed = false;
        }
    }

    /// Ends a transaction left open; a connection that cannot is closed (SQLite then rolls
    /// back whatever was open on it).
    async fn roll_back(&mut self) {
        if let Some(connection) = self.guard.connection.as_mut() {
            let rolled_back = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
                .execute(connection)
                .await;
            match rolled_back {
                Ok(_) => {}
                // Nothing was open after all (the statement that opened it never ran).
                Err(sqlx::Error::Database(error))
                    if error.message().contains("no transaction is active") => {}
                Err(error) => {
                    tracing::warn!(%error, "rolling back on the SQLite writer failed; the connection is replaced");
                    self.guard.connection = None;
                }
            }
        }
        self.guard.rollback_owed = false;
    }
}

/// The statement that opens a writer transaction, sent ahead of its first statement.
pub(crate) const BEGIN: &str = "BEGIN IMMEDIATE; ";

/// The statement that ends a writer transaction, sent after its last statement when that is
/// known in advance.
pub(crate) const COMMIT: &str = "; COMMIT";

/// A transaction on the writer connection; dropped without [`WriterTx::commit`], it rolls back
/// before the next writer gets the connection.
#[derive(Debug)]
pub(crate) struct WriterTx {
    held: Option<Held>,
    /// Whether `BEGIN` has been sent (with the first statement).
    begun: bool,
}

impl WriterTx {
    /// The connection for the transaction's next statement, and whether that statement must
    /// begin with [`BEGIN`] (it is the first). Either way the transaction counts as begun from
    /// here: should the statement fail before its `BEGIN` ran, the rollback owed finds nothing
    /// open, which it allows.
    pub(crate) fn first_statement(&mut self) -> (&mut SqliteConnection, bool) {
        let first = !self.begun;
        self.begun = true;
        let connection = self
            .held
            .as_mut()
            .expect("a transaction holds the writer until it ends")
            .connection();
        (connection, first)
    }

    /// The connection inside the transaction, `BEGIN` sent on its own first if it is owed: for
    /// statements that do not go through [`super::db`].
    #[cfg(test)]
    pub(crate) async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let (connection, first) = self.first_statement();
        if first {
            sqlx::raw_sql(sqlx::AssertSqlSafe(BEGIN))
                .execute(&mut *connection)
                .await?;
        }
        Ok(connection)
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    /// Lets the connection go after a statement that ended with [`COMMIT`] succeeded: nothing
    /// is left to end.
    pub(crate) fn committed(mut self) {
        self.held.take();
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        let mut held = self.held.take().expect("a transaction ends once");
        if !self.begun {
            // Nothing was sent: nothing to end.
            return Ok(());
        }
        let ended = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(held.connection())
            .await;
        held.note(&ended);
        if ended.is_err() {
            // SQLite keeps a transaction open when its COMMIT fails (busy, disk full); a
            // ROLLBACK that failed is tried once more, and then the connection is replaced.
            held.guard.rollback_owed = true;
            held.roll_back().await;
        }
        ended.map(|_| ())
    }
}

impl Drop for WriterTx {
    fn drop(&mut self) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        if !self.begun {
            return;
        }
        held.guard.rollback_owed = true;
        // The lock goes with the task, so no writer can begin before the rollback is done.
        // Without a runtime (the process is ending) the next holder rolls back first.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { held.roll_back().await });
        }
    }
}

/// Whether an error means the connection itself is gone, not just this statement.
fn connection_lost(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)
    )
}

#[cfg(test)]
// A test that cannot set up fails by its panic.
#[allow(clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::SqliteJournalMode;

    use super::*;

    async fn writer(dir: &tempfile::TempDir, wait: Duration) -> Writer {
        let options =
            SqliteConnectOptions::from_str(&format!("sqlite://{}/w.db", dir.path().display()))
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true);
        let writer = Writer::open(options, wait).await.unwrap();
        let mut held = writer.hold().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL \
               REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
             INSERT INTO parent (id) VALUES (1)",
        ))
        .execute(held.connection())
        .await
        .unwrap();
        drop(held);
        writer
    }

    async fn insert_child(
        connection: &mut SqliteConnection,
        id: i64,
        parent: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO child (id, parent) VALUES ($1, $2)")
            .bind(id)
            .bind(parent)
            .execute(connection)
            .await
            .map(|_| ())
    }

    async fn children(writer: &Writer) -> i64 {
        let mut held = writer.hold().await.unwrap();
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM child")
            .fetch_one(held.connection())
            .await
            .unwrap();
        count
    }

    #[tokio::test]
    async fn a_transaction_dropped_midway_is_rolled_back_before_the_next_writer_begins() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let mut abandoned = writer.begin().await.unwrap();
        insert_child(abandoned.connection().await.unwrap(), 1, 1)
            .await
            .unwrap();
        drop(abandoned);

        // The next writer begins at once: it would fail ("cannot start a transaction within a
        // transaction") if the abandoned one were still open.
        let mut next = writer.begin().await.unwrap();
        insert_child(next.connection().await.unwrap(), 2, 1)
            .await
            .unwrap();
        next.commit().await.unwrap();

        let (ids,): (String,) = {
            let mut held = writer.hold().await.unwrap();
            sqlx::query_as("SELECT group_concat(id) FROM child")
                .fetch_one(held.connection())
                .await
                .unwrap()
        };
        assert_eq!(ids, "2");
    }

    #[tokio::test]
    async fn a_commit_that_fails_leaves_nothing_and_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let mut orphan = writer.begin().await.unwrap();
        // The foreign key is checked at COMMIT, which SQLite then refuses with the
        // transaction still open.
        insert_child(orphan.connection().await.unwrap(), 1, 99)
            .await
            .unwrap();
        assert!(orphan.commit().await.is_err());
        assert_eq!(children(&writer).await, 0);

        let mut next = writer.begin().await.unwrap();
        insert_child(next.connection().await.unwrap(), 2, 1)
            .await
            .unwrap();
        next.commit().await.unwrap();
        assert_eq!(children(&writer).await, 1);
    }

    #[tokio::test]
    async fn the_cache_is_given_back_after_a_quiet_period_only() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        writer.give_back_cache_when_quiet(Duration::from_millis(200), 5);
        // The first tick comes at once, before any write: a quiet period.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let at_start = writer.shrinks().await;

        // A busy period: many writes, no shrink at its end.
        let busy_until = tokio::time::Instant::now() + Duration::from_millis(400);
        let mut id = 0;
        while tokio::time::Instant::now() < busy_until {
            id += 1;
            let mut tx = writer.begin().await.unwrap();
            insert_child(tx.connection().await.unwrap(), id, 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        assert_eq!(
            writer.shrinks().await,
            at_start,
            "not while writes are many"
        );

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            writer.shrinks().await > at_start,
            "a quiet period gives it back"
        );
        assert_eq!(children(&writer).await, id);
    }

    #[tokio::test]
    async fn writers_take_turns_and_one_kept_waiting_too_long_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_millis(200)).await;
        let first = writer.begin().await.unwrap();
        let refused = writer.begin().await;
        assert!(
            matches!(refused, Err(sqlx::Error::PoolTimedOut)),
            "{refused:?}"
        );

        let second = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut second = writer.begin().await.unwrap();
                insert_child(second.connection().await.unwrap(), 2, 1)
                    .await
                    .unwrap();
                second.commit().await.unwrap();
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "the second writer waits for the first"
        );
        first.rollback().await.unwrap();
        second.await.unwrap();
        assert_eq!(children(&writer).await, 1);
    }
}
