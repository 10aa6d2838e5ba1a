//! SQLite's one writer connection, handed from one write to the next through a fair lock, with
//! the transactions of writers that queue for it committed together.
//!
//! Every write of an SQLite database is serial, so the time between one writing transaction's
//! last statement and the next one's first is time no write is made. Through a connection pool
//! that gap was a `COMMIT`, a spawned task returning the connection, a ping on its way back, a
//! ping on its way out and a `BEGIN`: under a burst of charges, 65 % of the writer's idle time
//! sat there. Here the connection is behind a FIFO mutex: the next writer gets it the moment the
//! last one is done, with nothing to check on a local file in between.
//!
//! **Group commit.** A commit writes every page its transaction changed to the WAL: a saved-card
//! charge's first transaction changes about twenty (the payment, its audit and outbox rows, the
//! key, the card, and a dozen indexes), and under a burst the writer thread spent most of its time
//! writing and checksumming those pages, one commit after another, most of them the same pages
//! again. So a transaction is a *member* of a group: it runs inside a savepoint of one SQLite
//! transaction, and its end releases (or rolls back) only its savepoint. While other writers wait
//! for the connection, the group stays open for them; the member that ends its turn with fewer
//! than [`GROUP_WAITERS`] waiting (or makes the group [`GROUP_MEMBERS`] strong, or finds its
//! first member released [`GROUP_AGE`] ago) commits it, and every member's `commit` returns only once that `COMMIT` did: a caller never acts on a
//! write that is not in the database. Should the `COMMIT` fail, every member's `commit` fails and
//! none of their writes stays. A member that read others' released writes and then rolled back
//! also waits for them to commit (its decision rested on them). At light load a transaction is
//! committed at its end as before.
//!
//! A transaction's `BEGIN IMMEDIATE` (when it opens the group) and its `SAVEPOINT` are not
//! statements of their own: they travel in one string with the transaction's first statement (see
//! [`WriterTx::first_statement`]); a transaction that ran no statement has nothing to end.
//!
//! A transaction dropped without its end (its request cancelled, or an error on the way) has its
//! savepoint rolled back by a task that still holds the lock, so the next writer always finds the
//! connection outside any member's savepoint. A connection that stopped answering is opened again
//! by the next writer, and the group it held is failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

/// A group stays open at the end of a turn only while at least this many writers wait for the
/// connection: one more writer's turn is worth waiting for only when it saves commits under
/// load, and at light load a transaction is committed at its end.
const GROUP_WAITERS: usize = 2;
/// A group is committed once this many transactions are in it, writers waiting or not.
const GROUP_MEMBERS: usize = 32;
/// A group is committed once its first member was released this long ago, writers waiting or
/// not: about the longest a member's caller waits for the others.
const GROUP_AGE: Duration = Duration::from_millis(3);
/// How long a member waits for its group's `COMMIT` before it looks whether the group was left
/// open (the writer that was waiting for it gave up) and commits it itself.
const UNENDED_GROUP_CHECK: Duration = Duration::from_millis(250);

/// The writer connection and whoever waits for it.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    slot: Arc<Mutex<Slot>>,
    options: Arc<SqliteConnectOptions>,
    /// How long a write waits for the connection before it is refused (a pool's timeout).
    wait: Duration,
    /// Writers waiting for the connection now: while there are any, a group stays open for them.
    waiting: Arc<AtomicUsize>,
    limits: GroupLimits,
}

/// When a group is committed although writers wait to join it.
#[derive(Debug, Clone, Copy)]
struct GroupLimits {
    waiters: usize,
    members: usize,
    age: Duration,
}

#[derive(Debug)]
struct Slot {
    /// `None` once the connection broke: the next holder opens another.
    connection: Option<SqliteConnection>,
    /// A member's savepoint is open: ended by the member, or rolled back by whoever holds the
    /// connection next.
    member_open: bool,
    /// The SQLite transaction open on the connection, with its members' released writes.
    group: Option<Group>,
    /// The id the next group gets.
    next_group: u64,
    /// How many times a writer took the connection.
    holds: u64,
    /// How many times the page cache was given back.
    shrinks: u64,
    /// How many groups were committed.
    commits: u64,
}

#[derive(Debug)]
struct Group {
    id: u64,
    /// Transactions released into it; their callers wait for its `COMMIT`.
    members: usize,
    /// When its first member was released.
    first_release: Option<Instant>,
    outcome: watch::Sender<Option<GroupOutcome>>,
}

/// A group's end as its members learn it: committed, or failed with SQLite's reason.
type GroupOutcome = Result<(), Arc<str>>;

/// A member's wait for its group.
#[derive(Debug)]
struct Membership {
    group: u64,
    outcome: watch::Receiver<Option<GroupOutcome>>,
    /// Others' released writes were in the group when the member began.
    saw_others: bool,
}

/// The connection, held: every other writer waits until this is dropped.
#[derive(Debug)]
pub(crate) struct Held {
    /// Taken when the turn ends.
    guard: Option<OwnedMutexGuard<Slot>>,
    waiting: Arc<AtomicUsize>,
    limits: GroupLimits,
    /// This is the task that ends a turn left without its end: dropped unpolled (a runtime
    /// shutting down cancels what is spawned on it), it lets the guard go as it is.
    ending_task: bool,
}

/// One writer counted as waiting for as long as this lives.
struct Waiting<'w>(&'w AtomicUsize);

impl<'w> Waiting<'w> {
    fn start(count: &'w AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
                member_open: false,
                group: None,
                next_group: 0,
                holds: 0,
                shrinks: 0,
                commits: 0,
            })),
            options: Arc::new(options),
            wait,
            waiting: Arc::new(AtomicUsize::new(0)),
            limits: GroupLimits {
                waiters: GROUP_WAITERS,
                members: GROUP_MEMBERS,
                age: GROUP_AGE,
            },
        })
    }

    /// Takes the connection, in the order writers asked for it, outside any member's savepoint
    /// (a group of others may be open on it).
    pub(crate) async fn hold(&self) -> Result<Held, sqlx::Error> {
        let guard = {
            let _waiting = Waiting::start(&self.waiting);
            tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
        };
        let mut held = Held {
            guard: Some(guard),
            waiting: Arc::clone(&self.waiting),
            limits: self.limits,
            ending_task: false,
        };
        held.slot().holds += 1;
        if held.slot().member_open {
            held.roll_back_member().await;
        }
        if held.slot().connection.is_none() {
            held.slot().connection = Some(self.options.connect().await?);
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
                if holds >= quiet || slot.member_open || slot.group.is_some() {
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

    /// Copies the log's committed pages into the database file every `every`, from a connection
    /// of its own, so that a commit never does it. SQLite's own checkpoint runs inside the
    /// commit that fills the log past its threshold: that commit, and every writer queued behind
    /// it, waited for the copy and two `fsync`s (the log's, then the file's). A passive
    /// checkpoint on another connection waits for no reader or writer, and the writer keeps
    /// appending meanwhile; once all is copied, the next write starts the log from its
    /// beginning again. Durability is what `synchronous = NORMAL` gives either way: a commit is
    /// on disk once a checkpoint has synced the log, now within `every` of it instead of
    /// whenever the log filled up. Stops when the writer is dropped.
    pub(crate) fn checkpoint_in_background(&self, every: Duration) {
        let slot = Arc::downgrade(&self.slot);
        let options = Arc::clone(&self.options);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut connection: Option<SqliteConnection> = None;
            loop {
                ticks.tick().await;
                if slot.strong_count() == 0 {
                    return;
                }
                let open = match connection.as_mut() {
                    Some(open) => open,
                    None => match options.connect().await {
                        Ok(opened) => connection.insert(opened),
                        Err(error) => {
                            tracing::warn!(%error, "the SQLite checkpointer could not connect");
                            continue;
                        }
                    },
                };
                let checkpoint =
                    sqlx::raw_sql(sqlx::AssertSqlSafe("PRAGMA wal_checkpoint(PASSIVE)"))
                        .execute(open)
                        .await;
                if let Err(error) = checkpoint {
                    tracing::warn!(%error, "the SQLite checkpoint failed; the log grows until the next one");
                    connection = None;
                }
            }
        });
    }

    #[cfg(test)]
    async fn shrinks(&self) -> u64 {
        self.slot.lock().await.shrinks
    }

    #[cfg(test)]
    async fn commits(&self) -> u64 {
        self.slot.lock().await.commits
    }

    /// Runs `statement` outside any transaction, holding the connection for it alone. An open
    /// group is committed first: a statement of its own commits by itself, and must neither
    /// join others' writes nor see them before they are committed.
    pub(crate) async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut held = self.hold().await?;
        Box::pin(held.commit_group()).await;
        if held.slot().connection.is_none() {
            // The group's failed `COMMIT` could not be rolled back either.
            held.slot().connection = Some(self.options.connect().await?);
        }
        let result = statement(held.connection()).await;
        held.note(&result);
        Box::pin(held.end_turn()).await;
        result
    }

    /// Holds the connection for a transaction whose first statement begins it: with `BEGIN
    /// IMMEDIATE` when it opens a group, so the database's write lock is taken before anything
    /// is read (see [`super::db`]), and with its own savepoint.
    pub(crate) async fn begin(&self) -> Result<WriterTx, sqlx::Error> {
        let held = self.hold().await?;
        Ok(WriterTx {
            held: Some(held),
            writer: self.clone(),
            membership: None,
        })
    }

    /// Waits for the `COMMIT` of the group a released transaction is in. Should the writer that
    /// was to commit it have given up waiting for the connection, the group is left open with
    /// nobody to end it: after a while the member takes the connection and commits it itself.
    async fn outcome_of(&self, membership: Membership) -> Result<(), sqlx::Error> {
        let Membership {
            group, mut outcome, ..
        } = membership;
        loop {
            let ended = tokio::time::timeout(
                UNENDED_GROUP_CHECK,
                outcome.wait_for(|outcome| outcome.is_some()),
            )
            .await
            .map(|ended| ended.map(|outcome| outcome.clone()));
            match ended {
                Ok(Ok(Some(Ok(())))) => return Ok(()),
                Ok(Ok(Some(Err(reason)))) => return Err(group_failed(&reason)),
                Ok(Ok(None) | Err(_)) => {
                    return Err(group_failed("the group was dropped without an end"));
                }
                Err(_) => {
                    // A refusal to wait longer for the connection just means waiting again.
                    if let Ok(mut held) = self.hold().await {
                        if held.slot().group.as_ref().is_some_and(|g| g.id == group) {
                            held.commit_group().await;
                        }
                        held.end_turn().await;
                    }
                }
            }
        }
    }
}

/// The error a member's `commit` answers when its group's `COMMIT` failed.
fn group_failed(reason: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "the SQLite transaction this one was committed with failed; nothing of it stays: {reason}"
    ))
}

impl Held {
    fn slot(&mut self) -> &mut Slot {
        self.guard
            .as_mut()
            .expect("a held writer holds its slot until its turn ends")
    }

    pub(crate) fn connection(&mut self) -> &mut SqliteConnection {
        // `hold` opens one before it hands out the guard; `note` and a failed rollback take it
        // away only on the way out of a turn (`run` opens another after a group's).
        self.slot()
            .connection
            .as_mut()
            .expect("a held writer has a connection")
    }

    /// Forgets a connection whose error says it no longer answers; the next holder opens one.
    /// The group open on it is gone with it (SQLite rolls back what a closed connection left).
    pub(crate) fn note<T>(&mut self, result: &Result<T, sqlx::Error>) {
        if let Err(error) = result
            && connection_lost(error)
        {
            tracing::warn!(%error, "the SQLite writer connection broke; the next write opens another");
            let slot = self.slot();
            slot.connection = None;
            slot.member_open = false;
            if let Some(group) = slot.group.take() {
                group.outcome.send_replace(Some(Err(Arc::from(
                    "the writer connection broke before the commit",
                ))));
            }
        }
    }

    /// Rolls back the open member's savepoint, leaving the group's other writes; should that
    /// fail, the whole group is rolled back and failed.
    async fn roll_back_member(&mut self) {
        let rolled_back = match self.slot().connection.as_mut() {
            Some(connection) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(
                    "ROLLBACK TO member_savepoint; RELEASE member_savepoint",
                ))
                .execute(connection)
                .await
            }
            None => Ok(Default::default()),
        };
        self.slot().member_open = false;
        if let Err(error) = rolled_back {
            // Its savepoint never began (its first statement failed at `BEGIN`), or SQLite ended
            // the whole transaction on an error (a full disk): either way nothing of the group
            // can be trusted to stay.
            self.abandon_group(&error.to_string()).await;
        }
    }

    /// Rolls the open transaction back and fails its group's members.
    async fn abandon_group(&mut self, reason: &str) {
        let slot = self.slot();
        slot.member_open = false;
        if let Some(group) = slot.group.take() {
            group.outcome.send_replace(Some(Err(Arc::from(reason))));
        }
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        let rolled_back = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
            .execute(connection)
            .await;
        match rolled_back {
            Ok(_) => {}
            // Nothing was open after all.
            Err(sqlx::Error::Database(error))
                if error.message().contains("no transaction is active") => {}
            Err(error) => {
                tracing::warn!(%error, "rolling back on the SQLite writer failed; the connection is replaced");
                slot.connection = None;
            }
        }
    }

    /// Commits the open group, if any, and tells its members.
    async fn commit_group(&mut self) {
        let slot = self.slot();
        if slot.group.is_none() {
            return;
        }
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        let committed = sqlx::raw_sql(sqlx::AssertSqlSafe("COMMIT"))
            .execute(connection)
            .await;
        self.note(&committed);
        match committed {
            Ok(_) => {
                let slot = self.slot();
                slot.commits += 1;
                if let Some(group) = slot.group.take() {
                    // Transactions ÷ commits is how much grouping there is.
                    metrics::counter!("oplata_sqlite_commits_total").increment(1);
                    metrics::counter!("oplata_sqlite_committed_transactions_total")
                        .increment(group.members as u64);
                    group.outcome.send_replace(Some(Ok(())));
                }
            }
            // SQLite keeps the transaction open when its COMMIT fails (a full disk, a deferred
            // foreign key): it is rolled back, and every member is told.
            Err(error) => self.abandon_group(&error.to_string()).await,
        }
    }

    /// Whether the open group is to be committed now rather than left for a waiting writer.
    fn group_due(&self) -> bool {
        let Some(group) = self.guard.as_ref().and_then(|slot| slot.group.as_ref()) else {
            return false;
        };
        self.waiting.load(Ordering::SeqCst) < self.limits.waiters
            || group.members >= self.limits.members
            || group
                .first_release
                .is_some_and(|released| released.elapsed() >= self.limits.age)
    }

    /// Ends this writer's turn: the open group is committed unless a writer waits to join it.
    async fn end_turn(mut self) {
        if self.slot().member_open {
            self.roll_back_member().await;
        }
        if self.group_due() {
            self.commit_group().await;
        }
        self.guard.take();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if self.ending_task || (!guard.member_open && guard.group.is_none()) {
            return;
        }
        // The turn was left without its end (a request cancelled midway, an error on the way):
        // a task that keeps the lock rolls the member back and ends the turn, so no writer
        // begins before that is done. Without a runtime (the process is ending) the next
        // holder rolls the member back first.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(
                Held {
                    guard: Some(guard),
                    waiting: Arc::clone(&self.waiting),
                    limits: self.limits,
                    ending_task: true,
                }
                .end_turn(),
            );
        }
    }
}

/// How a writer transaction's first statement begins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Frame {
    /// Not the first: nothing before the statement.
    Inside,
    /// The first, in an open group: its savepoint.
    Joining,
    /// The first, opening a group: `BEGIN IMMEDIATE` and its savepoint.
    Opening,
}

impl Frame {
    /// What is sent ahead of the statement.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Frame::Inside => "",
            Frame::Joining => "SAVEPOINT member_savepoint; ",
            Frame::Opening => "BEGIN IMMEDIATE; SAVEPOINT member_savepoint; ",
        }
    }

    /// How many statements the prefix holds (each reports a change count of its own).
    pub(crate) fn prefix_statements(self) -> usize {
        match self {
            Frame::Inside => 0,
            Frame::Joining => 1,
            Frame::Opening => 2,
        }
    }
}

/// The statement that ends a writer transaction (releases it into its group), sent after its
/// last statement when that is known in advance.
pub(crate) const RELEASE: &str = "; RELEASE member_savepoint";

/// A transaction on the writer connection; dropped without [`WriterTx::commit`], it rolls back
/// before the next writer gets the connection.
#[derive(Debug)]
pub(crate) struct WriterTx {
    held: Option<Held>,
    writer: Writer,
    /// Set by the first statement: the group the transaction is in.
    membership: Option<Membership>,
}

impl WriterTx {
    /// The connection for the transaction's next statement, and what must be sent ahead of it
    /// (the transaction's savepoint, and `BEGIN` when it opens a group). Either way the
    /// transaction counts as begun from here: should the statement fail before its savepoint
    /// ran, rolling the savepoint back fails and the group is rolled back as a whole.
    pub(crate) fn first_statement(&mut self) -> (&mut SqliteConnection, Frame) {
        let held = self
            .held
            .as_mut()
            .expect("a transaction holds the writer until it ends");
        let frame = if self.membership.is_some() {
            Frame::Inside
        } else {
            let slot = held.slot();
            let frame = match slot.group {
                Some(_) => Frame::Joining,
                None => {
                    slot.group = Some(Group {
                        id: slot.next_group,
                        members: 0,
                        first_release: None,
                        outcome: watch::Sender::new(None),
                    });
                    slot.next_group += 1;
                    Frame::Opening
                }
            };
            slot.member_open = true;
            if let Some(group) = slot.group.as_ref() {
                self.membership = Some(Membership {
                    group: group.id,
                    outcome: group.outcome.subscribe(),
                    saw_others: group.members > 0,
                });
            }
            frame
        };
        (held.connection(), frame)
    }

    /// The connection inside the transaction, its prefix sent on its own first if it is owed:
    /// for statements that do not go through [`super::db`].
    #[cfg(test)]
    pub(crate) async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let (connection, frame) = self.first_statement();
        if frame != Frame::Inside {
            sqlx::raw_sql(sqlx::AssertSqlSafe(frame.prefix()))
                .execute(&mut *connection)
                .await?;
        }
        Ok(connection)
    }

    /// Releases the transaction into its group and returns once the group is committed.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        // Boxed, as the other ends below: a transaction's end is awaited deep inside request
        // futures, and its waits would otherwise add to every one of them.
        Box::pin(self.release_and_wait()).await
    }

    async fn release_and_wait(mut self) -> Result<(), sqlx::Error> {
        let mut held = self.held.take().expect("a transaction ends once");
        if self.membership.is_none() {
            // Nothing was sent: nothing to end.
            held.end_turn().await;
            return Ok(());
        }
        let released = sqlx::raw_sql(sqlx::AssertSqlSafe("RELEASE member_savepoint"))
            .execute(held.connection())
            .await;
        held.note(&released);
        if let Err(error) = released {
            held.end_turn().await;
            return Err(error);
        }
        self.released_in(held).await
    }

    /// After a statement that ended with [`RELEASE`] succeeded: returns once the group is
    /// committed.
    pub(crate) async fn released(mut self) -> Result<(), sqlx::Error> {
        let held = self.held.take().expect("a transaction ends once");
        Box::pin(self.released_in(held)).await
    }

    async fn released_in(mut self, mut held: Held) -> Result<(), sqlx::Error> {
        let slot = held.slot();
        slot.member_open = false;
        if let Some(group) = slot.group.as_mut() {
            group.members += 1;
            group.first_release.get_or_insert_with(Instant::now);
        }
        held.end_turn().await;
        match self.membership.take() {
            Some(membership) => self.writer.outcome_of(membership).await,
            None => Ok(()),
        }
    }

    /// Rolls the transaction back. When it had read others' writes not yet committed, it waits
    /// for them: a decision taken on writes that are then rolled back fails too.
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let held = self.held.take().expect("a transaction ends once");
        let membership = self.membership.take();
        let writer = self.writer.clone();
        Box::pin(async move {
            // The member's savepoint is rolled back at the end of the turn.
            held.end_turn().await;
            match membership {
                Some(membership) if membership.saw_others => writer.outcome_of(membership).await,
                _ => Ok(()),
            }
        })
        .await
    }
}

impl Drop for WriterTx {
    fn drop(&mut self) {
        // A held writer dropped with its member open rolls it back (see `Held`'s drop).
        self.held.take();
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
        let mut writer = Writer::open(options, wait).await.unwrap();
        // Long enough for a slow machine to queue the tests' writers; the count still applies.
        writer.limits.age = Duration::from_secs(30);
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

    /// Frames in the log after one more write: few once everything before it was copied into
    /// the database (that write started the log over), all of them otherwise.
    async fn frames_after_one_more_write(dir: &tempfile::TempDir, writer: &Writer, id: i64) -> i64 {
        let mut last = writer.begin().await.unwrap();
        insert_child(last.connection().await.unwrap(), id, 1)
            .await
            .unwrap();
        last.commit().await.unwrap();
        let mut probe =
            SqliteConnectOptions::from_str(&format!("sqlite://{}/w.db", dir.path().display()))
                .unwrap()
                .connect()
                .await
                .unwrap();
        // `wal_checkpoint` answers (busy, frames in the log, frames copied); a checkpoint that
        // finds the log already copied copies nothing and reports the log as it is.
        let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut probe)
            .await
            .unwrap();
        frames
    }

    #[tokio::test]
    async fn commits_leave_the_checkpoint_to_the_background_which_copies_the_log() {
        for background in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let options =
                SqliteConnectOptions::from_str(&format!("sqlite://{}/w.db", dir.path().display()))
                    .unwrap()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .pragma("wal_autocheckpoint", "0");
            let writer = Writer::open(options, Duration::from_secs(5)).await.unwrap();
            let mut held = writer.hold().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL); \
                 INSERT INTO parent (id) VALUES (1)",
            ))
            .execute(held.connection())
            .await
            .unwrap();
            drop(held);
            for id in 0..200 {
                let mut tx = writer.begin().await.unwrap();
                insert_child(tx.connection().await.unwrap(), id, 1)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            if background {
                writer.checkpoint_in_background(Duration::from_millis(10));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let frames = frames_after_one_more_write(&dir, &writer, 1000).await;
            if background {
                assert!(
                    frames < 10,
                    "the log was copied and started over: {frames} frames"
                );
            } else {
                assert!(frames >= 200, "no commit checkpointed: {frames} frames");
            }
        }
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

    /// Waits until `count` writers wait for the connection.
    async fn until_waiting(writer: &Writer, count: usize) {
        while writer.waiting.load(Ordering::SeqCst) < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A writer that inserts child `id` of `parent` and then ends as `end` says, once it has the
    /// connection: "commit", "rollback" or "drop" (its request cancelled).
    fn queued_writer(
        writer: &Writer,
        id: i64,
        parent: i64,
        end: &'static str,
    ) -> tokio::task::JoinHandle<Result<(), sqlx::Error>> {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut tx = writer.begin().await?;
            insert_child(tx.connection().await?, id, parent).await?;
            match end {
                "commit" => tx.commit().await,
                "rollback" => tx.rollback().await,
                _ => {
                    drop(tx);
                    Ok(())
                }
            }
        })
    }

    /// A transaction holding the writer, child 1 inserted: the writers queued after it form
    /// a group when it ends.
    async fn holding_child_one(writer: &Writer) -> WriterTx {
        let mut first = writer.begin().await.unwrap();
        insert_child(first.connection().await.unwrap(), 1, 1)
            .await
            .unwrap();
        first
    }

    async fn child_ids(writer: &Writer) -> String {
        let mut held = writer.hold().await.unwrap();
        let (ids,): (Option<String>,) =
            sqlx::query_as("SELECT group_concat(id) FROM (SELECT id FROM child ORDER BY id)")
                .fetch_one(held.connection())
                .await
                .unwrap();
        ids.unwrap_or_default()
    }

    #[tokio::test]
    async fn writers_that_queue_are_committed_together_and_each_waits_for_that_commit() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let commits_before = writer.commits().await;
        let first = holding_child_one(&writer).await;
        let queued: Vec<_> = (2..=6)
            .map(|id| queued_writer(&writer, id, 1, "commit"))
            .collect();
        until_waiting(&writer, 5).await;

        first.commit().await.unwrap();
        // The first one's commit returned: its row is in the database, for any connection.
        let mut reader = writer.options.connect().await.unwrap();
        let (seen,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM child WHERE id = 1")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(seen, 1);
        for queued in queued {
            queued.await.unwrap().unwrap();
        }
        assert_eq!(child_ids(&writer).await, "1,2,3,4,5,6");
        // The fifth ends its turn with one writer waiting, too few to keep the group open.
        assert_eq!(
            writer.commits().await - commits_before,
            2,
            "six transactions, two COMMITs"
        );
    }

    #[tokio::test]
    async fn a_group_is_committed_when_it_is_full_though_writers_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(&dir, Duration::from_secs(5)).await;
        writer.limits.members = 2;
        let commits_before = writer.commits().await;
        let first = holding_child_one(&writer).await;
        let queued: Vec<_> = (2..=5)
            .map(|id| queued_writer(&writer, id, 1, "commit"))
            .collect();
        until_waiting(&writer, 4).await;
        first.commit().await.unwrap();
        for queued in queued {
            queued.await.unwrap().unwrap();
        }
        assert_eq!(child_ids(&writer).await, "1,2,3,4,5");
        // Two of two, two of two (also one waiter too few), and the last alone.
        assert_eq!(writer.commits().await - commits_before, 3);
    }

    #[tokio::test]
    async fn a_transaction_rolled_back_or_dropped_in_a_group_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let first = holding_child_one(&writer).await;
        let mut queued = Vec::new();
        for (id, end) in [(2, "commit"), (3, "rollback"), (4, "drop"), (5, "commit")] {
            queued.push(queued_writer(&writer, id, 1, end));
            // In this order.
            until_waiting(&writer, queued.len()).await;
        }
        first.commit().await.unwrap();
        for queued in queued {
            queued.await.unwrap().unwrap();
        }
        assert_eq!(child_ids(&writer).await, "1,2,5");
    }

    #[tokio::test]
    async fn a_group_whose_commit_fails_fails_every_member_and_keeps_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let first = holding_child_one(&writer).await;
        // Its foreign key is checked at the group's COMMIT, which SQLite refuses.
        let orphan = queued_writer(&writer, 2, 99, "commit");
        until_waiting(&writer, 1).await;
        let innocent = queued_writer(&writer, 3, 1, "commit");
        until_waiting(&writer, 2).await;
        // A reader of the group's uncommitted writes, who decides nothing needs writing.
        let reader = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut tx = writer.begin().await?;
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM child")
                    .fetch_one(tx.connection().await?)
                    .await?;
                assert_eq!(count, 3, "it sees the group's released writes");
                tx.rollback().await
            }
        });
        until_waiting(&writer, 3).await;
        // It keeps the group open for the reader; its own transaction is the next group's.
        let after = queued_writer(&writer, 4, 1, "commit");
        until_waiting(&writer, 4).await;

        assert!(first.commit().await.is_err());
        assert!(orphan.await.unwrap().is_err());
        assert!(innocent.await.unwrap().is_err());
        assert!(
            reader.await.unwrap().is_err(),
            "what it read was never committed"
        );
        after.await.unwrap().unwrap();
        assert_eq!(child_ids(&writer).await, "4", "the writer usable after");
    }

    #[tokio::test]
    async fn a_group_left_open_for_a_writer_that_gave_up_is_committed_by_its_member() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_secs(5)).await;
        let mut tx = writer.begin().await.unwrap();
        insert_child(tx.connection().await.unwrap(), 1, 1)
            .await
            .unwrap();
        // Writers counted as waiting that never take the connection (they gave up, or their
        // requests were cancelled, just as the turn ended): the group is left open for them.
        let _gave_up = (
            Waiting::start(&writer.waiting),
            Waiting::start(&writer.waiting),
        );
        tokio::time::timeout(Duration::from_secs(5), tx.commit())
            .await
            .expect("the member commits its group itself")
            .unwrap();
        assert_eq!(child_ids(&writer).await, "1");
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
