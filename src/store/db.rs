//! The one place that knows there are two databases.
//!
//! Every statement of the store is written once, in PostgreSQL's dialect with `$N` placeholders
//! (which SQLite understands too), and run through this module's [`query`] and [`query_as`]. They
//! look like sqlx's own functions, but their arguments are collected as [`Value`]s and encoded for
//! the backend the statement meets at execution time. That keeps the store ordinary, generic-free
//! Rust (sqlx's "any database" bounds are long and brittle) while each backend still gets its
//! native types, prepared-statement cache and transactions.
//!
//! What differs between the backends is decided here (a statement whose words differ is written
//! as a pair, by its store module, through this one):
//! - row locks: SQLite has none, and needs none, because a read-then-write transaction begins
//!   with `BEGIN IMMEDIATE` and so holds the database's only write lock; the `FOR UPDATE` and
//!   `FOR UPDATE SKIP LOCKED` clauses are removed from its statements;
//! - statements whose words differ ([`query_per_backend`], [`query_as_per_backend`]): two
//!   statements' work in one round trip (a data-modifying `WITH` on PostgreSQL, both statements
//!   in one string on SQLite), and order numbers (a sequence on PostgreSQL, a counter row on
//!   SQLite, taken in the payment's own `INSERT`);
//! - locks on a name ([`Tx::lock_name`]): a transaction-scoped advisory lock on PostgreSQL,
//!   nothing on SQLite for the same reason;
//! - statements whose result nobody reads (an audit line, an event): on SQLite they wait in the
//!   transaction and go in one string with its next statement, or with its commit
//!   ([`Query::execute_with_next`]), since each round trip to SQLite's worker thread is a thread
//!   hand-off both ways; PostgreSQL runs them at once;
//! - times: SQLite keeps them as text, so they are written in one fixed-width UTC form
//!   (`2026-12-02T09:32:10.120000000Z`) whose text order is time order, to the nanosecond.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{LazyLock, Mutex};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, FromRow, PgConnection, PgPool, SqlitePool};

use futures_util::TryStreamExt;

use super::sqlite_writer::{Frame, RELEASE, Writer, WriterTx};
use time::OffsetDateTime;
use uuid::Uuid;

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePools),
}

/// SQLite's connections: a pool of readers (WAL lets them read beside the writer), and the one
/// connection every write goes through. Writers queue for that connection in a fair,
/// asynchronous queue instead of each retrying the database lock in SQLite's busy handler
/// (sleep and retry, which wasted CPU and made the slowest writes wait up to a second).
#[derive(Debug, Clone)]
pub(crate) struct SqlitePools {
    /// `None` for an in-memory database, which exists on its one connection only: the writer
    /// reads too.
    pub reader: Option<SqlitePool>,
    pub writer: Writer,
}

impl Pool {
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Begins a transaction that will read rows and then write depending on what it read.
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            // Row locks (`FOR UPDATE`) make the read-then-write safe.
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            // Taking the write lock first is SQLite's only way: a deferred transaction that
            // reads and then writes fails with "database is locked" when another wrote between.
            // (Another process, `oplata` on the command line, may write too.)
            Pool::Sqlite(pools) => Tx::Sqlite(SqliteTx {
                writer: pools.writer.begin().await?,
                waiting: Vec::new(),
            }),
        })
    }
}

/// A transaction of either backend; dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub(crate) enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(SqliteTx),
}

/// A transaction on SQLite's writer, with the statements waiting to go with its next one.
#[derive(Debug)]
pub(crate) struct SqliteTx {
    writer: WriterTx,
    waiting: Vec<Waiting>,
}

/// A statement of a transaction whose result nobody reads, not sent yet: SQLite's words and its
/// arguments, owned so that it can wait across the caller's other work.
#[derive(Debug)]
struct Waiting {
    sql: &'static str,
    arguments: Vec<Value<'static>>,
}

/// A transaction's next round trip to SQLite, ready to send.
struct RoundTrip<'c> {
    /// Its statements: what waited, the statement itself, and the transaction's frame.
    sql: &'static str,
    arguments: SqliteArguments,
    conn: &'c mut sqlx::SqliteConnection,
    frame: Frame,
    /// How many statements that waited lead it.
    leading: usize,
}

impl SqliteTx {
    /// The round trip that sends `sql` (none: only what waits) with `arguments`, led by the
    /// statements waiting (taken: they go with it) and by the transaction's frame, followed by
    /// its release when it is the `last`.
    fn round_trip(
        &mut self,
        sql: Option<&'static str>,
        arguments: Vec<Value<'_>>,
        last: bool,
    ) -> Result<RoundTrip<'_>, sqlx::Error> {
        let (sql, arguments, leading) = if self.waiting.is_empty() {
            (sql.unwrap_or(""), arguments, 0)
        } else {
            let waiting = std::mem::take(&mut self.waiting);
            let parts = waiting.iter().map(|w| (w.sql, w.arguments.len())).collect();
            let (sql, leading) = joined(parts, sql);
            let mut all: Vec<Value<'_>> = waiting.into_iter().flat_map(|w| w.arguments).collect();
            all.extend(arguments);
            (sql, all, leading)
        };
        let arguments = sqlite_arguments(arguments)?;
        let (conn, frame) = self.writer.first_statement();
        Ok(RoundTrip {
            sql: sqlite_statement(sql, frame, last),
            arguments,
            conn,
            frame,
            leading,
        })
    }

    /// Sends `sql` as [`SqliteTx::round_trip`] does and answers the rows it changed itself.
    async fn execute(
        &mut self,
        sql: Option<&'static str>,
        arguments: Vec<Value<'_>>,
        last: bool,
    ) -> Result<u64, sqlx::Error> {
        let trip = self.round_trip(sql, arguments, last)?;
        let statement = sqlx::query_with(AssertSqlSafe(trip.sql), trip.arguments);
        execute_framed(trip.conn, statement, trip.frame, last, trip.leading).await
    }

    /// Sends what waits, if anything, followed by the release of the transaction.
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        if self.waiting.is_empty() {
            return self.writer.commit().await;
        }
        // The waiting statements' own counts are of no interest: only that they ran.
        self.execute(None, Vec::new(), true).await?;
        self.writer.released().await
    }
}

/// Statements joined into one string for SQLite, in order, each one's `$N` placeholders moved
/// past the arguments of those before it; `last`, when given, at the end. Answers the string and
/// how many statements `parts` hold. Computed once per sequence, as the statements are a fixed
/// set of literals and a transaction's sequences few.
fn joined(parts: Vec<(&'static str, usize)>, last: Option<&'static str>) -> (&'static str, usize) {
    type Key = (Vec<(&'static str, usize)>, Option<&'static str>);
    static JOINED: LazyLock<Mutex<HashMap<Key, (&'static str, usize)>>> =
        LazyLock::new(Default::default);
    let mut known = JOINED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *known
        .entry((parts, last))
        .or_insert_with_key(|(parts, last)| {
            let mut text = String::new();
            let mut offset = 0;
            for (sql, arguments) in parts.iter().copied().chain(last.map(|sql| (sql, 0))) {
                if !text.is_empty() {
                    text.push_str("; ");
                }
                text.push_str(&renumbered(sql.trim_end().trim_end_matches(';'), offset));
                offset += arguments;
            }
            let leading = parts.iter().map(|(sql, _)| statement_count(sql)).sum();
            // Bounded: one entry per sequence of statement literals a transaction sends together.
            (Box::leak(text.into_boxed_str()), leading)
        })
}

/// `sql` with each `$N` outside a quoted literal made `$(N + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\'' {
            quoted = !quoted;
        } else if c == '$' && !quoted {
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            match digits.parse::<usize>() {
                Ok(n) => out.push_str(&(n + offset).to_string()),
                Err(_) => out.push_str(&digits),
            }
        }
    }
    out
}

/// How many statements `sql` holds: its `;` outside quoted literals, plus one unless it ends
/// with one.
fn statement_count(sql: &str) -> usize {
    let mut quoted = false;
    let mut separators = 0;
    for c in sql.chars() {
        match c {
            '\'' => quoted = !quoted,
            ';' if !quoted => separators += 1,
            _ => {}
        }
    }
    if sql.trim_end().ends_with(';') {
        separators
    } else {
        separators + 1
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Rolls back; on SQLite what still waits is never sent.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Sqlite(tx) => tx.writer.rollback().await,
        }
    }

    /// Serialises this transaction with every other one that locks the same name, until it
    /// ends (for rules over rows that may not exist yet, so no row can be locked).
    pub(crate) async fn lock_name(&mut self, name: &str) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
            }
            // `BEGIN IMMEDIATE` already serialises every writing transaction.
            Tx::Sqlite(_) => {}
        }
        Ok(())
    }
}

/// Where a statement runs: the pool (a connection of its own) or an open transaction.
#[derive(Debug)]
pub(crate) enum Target<'c> {
    PostgresPool(&'c PgPool),
    PostgresConnection(&'c mut PgConnection),
    SqlitePools(&'c SqlitePools),
    SqliteTx(&'c mut SqliteTx),
}

/// Anything a statement can run on.
pub(crate) trait Executor<'c> {
    fn target(self) -> Target<'c>;
}

impl<'c> Executor<'c> for &'c Pool {
    fn target(self) -> Target<'c> {
        match self {
            Pool::Postgres(pool) => Target::PostgresPool(pool),
            Pool::Sqlite(pools) => Target::SqlitePools(pools),
        }
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    fn target(self) -> Target<'c> {
        match self {
            Tx::Postgres(tx) => Target::PostgresConnection(tx),
            Tx::Sqlite(tx) => Target::SqliteTx(tx),
        }
    }
}

/// Where an SQLite statement outside a transaction runs.
enum SqliteSide<'c> {
    Reader(&'c SqlitePool),
    Writer(&'c Writer),
}

impl SqlitePools {
    /// A statement that only reads goes to the readers; one that writes (`INSERT`, `UPDATE`,
    /// `DELETE`, with or without `RETURNING`) to the writer.
    fn for_statement(&self, sql: &str) -> SqliteSide<'_> {
        let verb = sql.trim_start().get(..6).unwrap_or_default();
        match &self.reader {
            Some(reader) if verb.eq_ignore_ascii_case("SELECT") => SqliteSide::Reader(reader),
            _ => SqliteSide::Writer(&self.writer),
        }
    }
}

/// Runs `$run` (an expression over `conn`, a reader pool or the writer's connection) on the side
/// `$sql` goes to; on the writer, holding it only for the statement.
macro_rules! on_sqlite_side {
    ($pools:expr, $sql:expr, |$conn:ident| $run:expr) => {
        match $pools.for_statement($sql) {
            SqliteSide::Reader(pool) => {
                let $conn = pool;
                $run.await
            }
            SqliteSide::Writer(writer) => writer.run(async |$conn| $run.await).await,
        }
    };
}

/// One statement argument, with its SQL type kept even when it is `NULL`.
#[derive(Debug, Clone)]
pub(crate) enum Value<'q> {
    Uuid(Option<Uuid>),
    BigInt(Option<i64>),
    Int(Option<i32>),
    Bool(Option<bool>),
    Text(Option<Cow<'q, str>>),
    Time(Option<OffsetDateTime>),
    Bytes(Option<Cow<'q, [u8]>>),
}

impl Value<'_> {
    /// The same value, owning what it borrowed.
    fn into_owned(self) -> Value<'static> {
        match self {
            Value::Uuid(v) => Value::Uuid(v),
            Value::BigInt(v) => Value::BigInt(v),
            Value::Int(v) => Value::Int(v),
            Value::Bool(v) => Value::Bool(v),
            Value::Text(v) => Value::Text(v.map(|text| Cow::Owned(text.into_owned()))),
            Value::Time(v) => Value::Time(v),
            Value::Bytes(v) => Value::Bytes(v.map(|bytes| Cow::Owned(bytes.into_owned()))),
        }
    }
}

/// A Rust value that can be a statement argument.
pub(crate) trait IntoValue<'q> {
    fn into_value(self) -> Value<'q>;
}

macro_rules! into_value {
    ($variant:ident: $($ty:ty => |$v:ident| $convert:expr),+ $(,)?) => {
        $(
            impl<'q> IntoValue<'q> for $ty {
                fn into_value(self) -> Value<'q> {
                    let $v = self;
                    Value::$variant($convert)
                }
            }
        )+
    };
}

into_value!(Uuid:
    Uuid => |v| Some(v),
    Option<Uuid> => |v| v,
    &Uuid => |v| Some(*v),
    &Option<Uuid> => |v| *v,
);
into_value!(BigInt:
    i64 => |v| Some(v),
    Option<i64> => |v| v,
    &i64 => |v| Some(*v),
    &Option<i64> => |v| *v,
);
into_value!(Int:
    i32 => |v| Some(v),
    Option<i32> => |v| v,
    &i32 => |v| Some(*v),
    &Option<i32> => |v| *v,
);
into_value!(Bool: bool => |v| Some(v), Option<bool> => |v| v, &bool => |v| Some(*v));
into_value!(Time:
    OffsetDateTime => |v| Some(v),
    Option<OffsetDateTime> => |v| v,
    &OffsetDateTime => |v| Some(*v),
    &Option<OffsetDateTime> => |v| *v,
);
into_value!(Text:
    &'q str => |v| Some(Cow::Borrowed(v)),
    Option<&'q str> => |v| v.map(Cow::Borrowed),
    &'q String => |v| Some(Cow::Borrowed(v.as_str())),
    String => |v| Some(Cow::Owned(v)),
    Option<String> => |v| v.map(Cow::Owned),
    &'q Option<String> => |v| v.as_deref().map(Cow::Borrowed),
    &'q &'q str => |v| Some(Cow::Borrowed(*v)),
);
into_value!(Bytes:
    &'q [u8] => |v| Some(Cow::Borrowed(v)),
    Option<&'q [u8]> => |v| v.map(Cow::Borrowed),
    Vec<u8> => |v| Some(Cow::Owned(v)),
    &'q Vec<u8> => |v| Some(Cow::Borrowed(v.as_slice())),
    Option<Vec<u8>> => |v| v.map(Cow::Owned),
    &'q Option<Vec<u8>> => |v| v.as_deref().map(Cow::Borrowed),
);

/// Enums kept as their text.
macro_rules! text_value {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl<'q> IntoValue<'q> for $ty {
                fn into_value(self) -> Value<'q> {
                    Value::Text(Some(Cow::Borrowed(self.as_str())))
                }
            }
        )+
    };
}

text_value!(
    crate::domain::payment::PaymentStatus,
    &crate::domain::payment::PaymentStatus,
    crate::domain::refunds::RefundStatus,
    &crate::domain::refunds::RefundStatus,
    crate::domain::cards::CardStatus,
    &crate::domain::cards::CardStatus,
    crate::domain::payment::PaymentMethod,
    &crate::domain::payment::PaymentMethod,
    crate::domain::supplier::PaymentType,
    &crate::domain::supplier::PaymentType,
    crate::domain::sms::SmsState,
    oplata_providers::AcquirerKind,
    &oplata_providers::AcquirerKind,
);

/// A row type both backends can decode (`#[derive(sqlx::FromRow)]` or a tuple).
pub(crate) trait Row:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Row for T
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    T: for<'r> FromRow<'r, SqliteRow>,
{
}

/// What a statement that returns no rows did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement and its arguments, not yet bound to a backend.
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed"]
pub(crate) struct Query<'q> {
    sql: &'static str,
    /// The statement SQLite runs instead, when it needs words of its own (see [`query_per_backend`]).
    sqlite_sql: Option<&'static str>,
    arguments: Vec<Value<'q>>,
}

/// A statement whose rows are decoded as `O`.
#[derive(Debug)]
#[must_use = "a query does nothing until it is fetched"]
pub(crate) struct QueryAs<'q, O> {
    query: Query<'q>,
    row: PhantomData<fn() -> O>,
}

pub(crate) fn query<'q>(sql: &'static str) -> Query<'q> {
    Query {
        sql,
        sqlite_sql: None,
        arguments: Vec::new(),
    }
}

/// Two statements' work in one round trip, which the backends say differently: PostgreSQL
/// as one statement (a `WITH` of the first, data-modifying), SQLite as both statements in one
/// string. Both number their arguments alike (`$1`…), so they share one argument list.
pub(crate) fn query_per_backend<'q>(postgres: &'static str, sqlite: &'static str) -> Query<'q> {
    Query {
        sql: postgres,
        sqlite_sql: Some(sqlite),
        arguments: Vec::new(),
    }
}

pub(crate) fn query_as<'q, O: Row>(sql: &'static str) -> QueryAs<'q, O> {
    QueryAs {
        query: query(sql),
        row: PhantomData,
    }
}

/// [`query_per_backend`] for a statement whose rows are decoded as `O` (on SQLite, the rows of
/// both statements, in order).
pub(crate) fn query_as_per_backend<'q, O: Row>(
    postgres: &'static str,
    sqlite: &'static str,
) -> QueryAs<'q, O> {
    QueryAs {
        query: query_per_backend(postgres, sqlite),
        row: PhantomData,
    }
}

/// A statement that takes arguments, whether or not it reads rows back.
pub(crate) trait Bind<'q>: Sized {
    fn bind(self, value: impl IntoValue<'q>) -> Self;
}

impl<'q> Bind<'q> for Query<'q> {
    fn bind(self, value: impl IntoValue<'q>) -> Self {
        Query::bind(self, value)
    }
}

impl<'q, O: Row> Bind<'q> for QueryAs<'q, O> {
    fn bind(self, value: impl IntoValue<'q>) -> Self {
        QueryAs::bind(self, value)
    }
}

impl<'q> Query<'q> {
    /// The statement as SQLite is given it, before its dialect is applied.
    fn sqlite_text(&self) -> &'static str {
        self.sqlite_sql.unwrap_or(self.sql)
    }

    pub(crate) fn bind(mut self, value: impl IntoValue<'q>) -> Self {
        self.arguments.push(value.into_value());
        self
    }

    pub(crate) async fn execute<'c>(self, on: impl Executor<'c>) -> Result<Done, sqlx::Error> {
        let rows_affected = match on.target() {
            Target::PostgresPool(pool) => self.postgres()?.execute(pool).await?.rows_affected(),
            Target::PostgresConnection(conn) => {
                self.postgres()?.execute(conn).await?.rows_affected()
            }
            Target::SqlitePools(pools) => {
                let statement = self.sqlite()?;
                pools
                    .writer
                    .run(async |conn| statement.execute(conn).await)
                    .await?
                    .rows_affected()
            }
            Target::SqliteTx(tx) => {
                tx.execute(Some(self.sqlite_text()), self.arguments, false)
                    .await?
            }
        };
        Ok(Done { rows_affected })
    }

    /// Runs this statement, whose result nobody reads, in `tx`: on PostgreSQL now, on SQLite
    /// in one round trip with the transaction's next statement or its commit (should it fail,
    /// that one fails, and the transaction with it; dropped or rolled back, it never runs).
    /// It must return no rows: the next statement's rows are read as that statement's.
    pub(crate) async fn execute_with_next(self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        debug_assert!(
            !self.sql.contains("RETURNING"),
            "a statement that returns rows cannot wait for the next one: {}",
            self.sql
        );
        match tx {
            Tx::Postgres(tx) => {
                self.postgres()?.execute(&mut **tx).await?;
            }
            Tx::Sqlite(tx) => {
                let sql = self.sqlite_text();
                tx.waiting.push(Waiting {
                    sql,
                    arguments: self.arguments.into_iter().map(Value::into_owned).collect(),
                });
            }
        }
        Ok(())
    }

    /// Runs this statement as the last of `tx` and commits it: on SQLite in one round trip (the
    /// statement and `COMMIT` in one string; should either fail, the transaction is rolled back
    /// as any dropped one is).
    pub(crate) async fn execute_and_commit(self, tx: Tx) -> Result<Done, sqlx::Error> {
        match tx {
            Tx::Postgres(mut tx) => {
                let done = self.postgres()?.execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Done {
                    rows_affected: done.rows_affected(),
                })
            }
            Tx::Sqlite(mut tx) => {
                let rows_affected = tx
                    .execute(Some(self.sqlite_text()), self.arguments, true)
                    .await?;
                tx.writer.released().await?;
                Ok(Done { rows_affected })
            }
        }
    }

    fn postgres(
        self,
    ) -> Result<sqlx::query::Query<'static, sqlx::Postgres, PgArguments>, sqlx::Error> {
        Ok(sqlx::query_with(
            self.sql,
            postgres_arguments(self.arguments)?,
        ))
    }

    /// The statement for SQLite outside a transaction.
    fn sqlite(
        self,
    ) -> Result<sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments>, sqlx::Error> {
        let sql = sqlite_dialect(self.sqlite_text());
        let arguments = sqlite_arguments(self.arguments)?;
        Ok(sqlx::query_with(AssertSqlSafe(sql), arguments))
    }
}

impl<'q, O: Row> QueryAs<'q, O> {
    pub(crate) fn bind(mut self, value: impl IntoValue<'q>) -> Self {
        self.query = self.query.bind(value);
        self
    }

    pub(crate) async fn fetch_one<'c>(self, on: impl Executor<'c>) -> Result<O, sqlx::Error> {
        match on.target() {
            Target::PostgresPool(pool) => self.postgres()?.fetch_one(pool).await,
            Target::PostgresConnection(conn) => self.postgres()?.fetch_one(conn).await,
            Target::SqlitePools(pools) => {
                let sql = self.query.sqlite_text();
                let statement = self.sqlite()?;
                on_sqlite_side!(pools, sql, |conn| statement.fetch_one(conn))
            }
            Target::SqliteTx(tx) => {
                let (statement, conn) = self.in_sqlite_tx(tx)?;
                statement.fetch_one(conn).await
            }
        }
    }

    pub(crate) async fn fetch_optional<'c>(
        self,
        on: impl Executor<'c>,
    ) -> Result<Option<O>, sqlx::Error> {
        match on.target() {
            Target::PostgresPool(pool) => self.postgres()?.fetch_optional(pool).await,
            Target::PostgresConnection(conn) => self.postgres()?.fetch_optional(conn).await,
            Target::SqlitePools(pools) => {
                let sql = self.query.sqlite_text();
                let statement = self.sqlite()?;
                on_sqlite_side!(pools, sql, |conn| statement.fetch_optional(conn))
            }
            Target::SqliteTx(tx) => {
                let (statement, conn) = self.in_sqlite_tx(tx)?;
                statement.fetch_optional(conn).await
            }
        }
    }

    pub(crate) async fn fetch_all<'c>(self, on: impl Executor<'c>) -> Result<Vec<O>, sqlx::Error> {
        match on.target() {
            Target::PostgresPool(pool) => self.postgres()?.fetch_all(pool).await,
            Target::PostgresConnection(conn) => self.postgres()?.fetch_all(conn).await,
            Target::SqlitePools(pools) => {
                let sql = self.query.sqlite_text();
                let statement = self.sqlite()?;
                on_sqlite_side!(pools, sql, |conn| statement.fetch_all(conn))
            }
            Target::SqliteTx(tx) => {
                let (statement, conn) = self.in_sqlite_tx(tx)?;
                statement.fetch_all(conn).await
            }
        }
    }

    fn postgres(
        self,
    ) -> Result<sqlx::query::QueryAs<'static, sqlx::Postgres, O, PgArguments>, sqlx::Error> {
        let arguments = postgres_arguments(self.query.arguments)?;
        Ok(sqlx::query_as_with(self.query.sql, arguments))
    }

    /// The statement for SQLite outside a transaction.
    fn sqlite(
        self,
    ) -> Result<sqlx::query::QueryAs<'static, sqlx::Sqlite, O, SqliteArguments>, sqlx::Error> {
        let sql = sqlite_dialect(self.query.sqlite_text());
        let arguments = sqlite_arguments(self.query.arguments)?;
        Ok(sqlx::query_as_with(AssertSqlSafe(sql), arguments))
    }

    /// The statement for SQLite inside `tx`, led by what waits there and by the transaction's
    /// frame, and the connection to run it on.
    #[allow(clippy::type_complexity)]
    fn in_sqlite_tx(
        self,
        tx: &mut SqliteTx,
    ) -> Result<
        (
            sqlx::query::QueryAs<'static, sqlx::Sqlite, O, SqliteArguments>,
            &mut sqlx::SqliteConnection,
        ),
        sqlx::Error,
    > {
        let trip = tx.round_trip(Some(self.query.sqlite_text()), self.query.arguments, false)?;
        Ok((
            sqlx::query_as_with(AssertSqlSafe(trip.sql), trip.arguments),
            trip.conn,
        ))
    }
}

fn postgres_arguments(values: Vec<Value<'_>>) -> Result<PgArguments, sqlx::Error> {
    let mut arguments = PgArguments::default();
    for value in values {
        match value {
            Value::Uuid(v) => arguments.add(v),
            Value::BigInt(v) => arguments.add(v),
            Value::Int(v) => arguments.add(v),
            Value::Bool(v) => arguments.add(v),
            Value::Text(v) => arguments.add(v.as_deref()),
            Value::Time(v) => arguments.add(v),
            Value::Bytes(v) => arguments.add(v.as_deref()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

fn sqlite_arguments(values: Vec<Value<'_>>) -> Result<SqliteArguments, sqlx::Error> {
    let mut arguments = SqliteArguments::default();
    for value in values {
        match value {
            Value::Uuid(v) => arguments.add(v),
            Value::BigInt(v) => arguments.add(v),
            Value::Int(v) => arguments.add(v),
            Value::Bool(v) => arguments.add(v),
            Value::Text(v) => arguments.add(v.as_deref()),
            Value::Time(v) => arguments.add(v.map(sortable_time)),
            Value::Bytes(v) => arguments.add(v.as_deref()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

/// A time as SQLite keeps it: UTC, always nine fractional digits, so that comparing the text
/// compares the times (RFC 3339 as `time` writes it drops trailing zeros, and `…:10Z` would
/// sort after `…:10.5Z`).
pub(crate) fn sortable_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond()
    )
}

/// Runs a statement [`sqlite_statement`] framed, and answers the rows it changed itself: each
/// statement of the string reports a count, and those of its frame (`BEGIN`, `SAVEPOINT`,
/// `RELEASE`) are SQLite's count of the connection's last change again (from another
/// transaction); the `leading` statements that waited to go with it count their own rows. Left
/// in, an `INSERT … ON CONFLICT DO NOTHING` that begins a transaction would say it inserted when
/// it did not.
async fn execute_framed(
    conn: &mut sqlx::SqliteConnection,
    statement: sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments>,
    frame: Frame,
    last: bool,
    leading: usize,
) -> Result<u64, sqlx::Error> {
    let results: Vec<_> = sqlx::Executor::execute_many(conn, statement)
        .try_collect()
        .await?;
    let skipped = frame.prefix_statements() + leading;
    let own = results.len().saturating_sub(skipped + usize::from(last));
    Ok(results
        .iter()
        .skip(skipped)
        .take(own)
        .map(|done| done.rows_affected())
        .sum())
}

/// A statement as SQLite runs it ([`sqlite_dialect`]), led by its transaction's `frame` (the
/// transaction's savepoint, and `BEGIN IMMEDIATE` when it opens a group), followed by the
/// transaction's release when it is its `last`: one round trip for all. Computed once per
/// statement, as the statements are a fixed set of literals.
fn sqlite_statement(sql: &'static str, frame: Frame, last: bool) -> &'static str {
    let sql = sqlite_dialect(sql);
    if frame == Frame::Inside && !last {
        return sql;
    }
    type Key = (&'static str, Frame, bool);
    static FRAMED: LazyLock<Mutex<HashMap<Key, &'static str>>> = LazyLock::new(Default::default);
    let mut framed = FRAMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Bounded: at most six entries per distinct statement literal of the store.
    framed.entry((sql, frame, last)).or_insert_with(|| {
        let release = if last { RELEASE } else { "" };
        Box::leak(format!("{}{sql}{release}", frame.prefix()).into_boxed_str())
    })
}

/// A statement as SQLite runs it: without row-lock clauses (see the module comment). Computed
/// once per statement, as the statements are a fixed set of literals.
fn sqlite_dialect(sql: &'static str) -> &'static str {
    if !sql.contains(" FOR UPDATE") {
        return sql;
    }
    static TRANSLATED: LazyLock<Mutex<HashMap<&'static str, &'static str>>> =
        LazyLock::new(Default::default);
    let mut translated = TRANSLATED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    translated.entry(sql).or_insert_with(|| {
        let without = sql
            .replace(" FOR UPDATE SKIP LOCKED", "")
            .replace(" FOR UPDATE", "");
        // Bounded: one entry per distinct statement literal of the store.
        Box::leak(without.into_boxed_str())
    })
}

#[cfg(test)]
// A test that cannot set up fails by its panic.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An SQLite database in `dir` behind its writer alone, foreign keys on.
    async fn writer_only(dir: &tempfile::TempDir) -> Pool {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
            "sqlite://{}/t.db",
            dir.path().display()
        ))
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
        let writer = Writer::open(options, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        Pool::Sqlite(SqlitePools {
            reader: None,
            writer,
        })
    }

    #[tokio::test]
    async fn a_first_statement_led_by_begin_reports_its_own_changes_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = writer_only(&dir).await;
        query("CREATE TABLE keys (k TEXT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        // SQLite's count of the last change is now 3, and `BEGIN` would report it again.
        query("INSERT INTO keys (k) VALUES ('a'), ('b'), ('c')")
            .execute(&pool)
            .await
            .unwrap();

        let mut tx = pool.begin_write().await.unwrap();
        let again = query("INSERT INTO keys (k) VALUES ($1) ON CONFLICT (k) DO NOTHING")
            .bind("a")
            .execute(&mut tx)
            .await
            .unwrap();
        assert_eq!(again.rows_affected(), 0);
        let new = query("INSERT INTO keys (k) VALUES ($1) ON CONFLICT (k) DO NOTHING")
            .bind("d")
            .execute(&mut tx)
            .await
            .unwrap();
        assert_eq!(new.rows_affected(), 1);
        tx.rollback().await.unwrap();

        let mut tx = pool.begin_write().await.unwrap();
        let first = query("INSERT INTO keys (k) VALUES ($1)")
            .bind("e")
            .execute(&mut tx)
            .await
            .unwrap();
        assert_eq!(first.rows_affected(), 1);
        drop(tx);
        // A transaction that ran nothing ends with nothing to send.
        pool.begin_write().await.unwrap().commit().await.unwrap();

        let (keys,): (String,) = query_as("SELECT group_concat(k, '') FROM keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(keys, "abc", "both transactions were rolled back");
    }

    #[tokio::test]
    async fn a_last_statement_that_commits_keeps_everything_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = writer_only(&dir).await;
        for ddl in [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL \
             REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        ] {
            query(ddl).execute(&pool).await.unwrap();
        }
        let insert_child = |id: i64, parent: i64| {
            query("INSERT INTO child (id, parent) VALUES ($1, $2)")
                .bind(id)
                .bind(parent)
        };

        // The foreign key is checked at the COMMIT sent with the statement, which SQLite refuses
        // with the transaction still open: it is rolled back, and the next writer begins.
        let mut tx = pool.begin_write().await.unwrap();
        query("INSERT INTO parent (id) VALUES (1)")
            .execute(&mut tx)
            .await
            .unwrap();
        assert!(insert_child(1, 99).execute_and_commit(tx).await.is_err());

        let tx = pool.begin_write().await.unwrap();
        let done = insert_child(2, 2).execute_and_commit(tx).await;
        assert!(done.is_err(), "no parent 2");
        let mut tx = pool.begin_write().await.unwrap();
        query("INSERT INTO parent (id) VALUES (3)")
            .execute(&mut tx)
            .await
            .unwrap();
        let done = insert_child(3, 3).execute_and_commit(tx).await.unwrap();
        assert_eq!(done.rows_affected(), 1);

        let (parents, children): (String, String) = query_as(
            "SELECT (SELECT group_concat(id) FROM parent), (SELECT group_concat(id) FROM child)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((parents.as_str(), children.as_str()), ("3", "3"));
    }

    #[tokio::test]
    async fn statements_waiting_go_with_the_next_one_in_order_and_count_apart() {
        let dir = tempfile::tempdir().unwrap();
        let pool = writer_only(&dir).await;
        query("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        query("INSERT INTO kv (k, v) VALUES ('old', 'x')")
            .execute(&pool)
            .await
            .unwrap();
        let insert = |k: &'static str, v: String| {
            query("INSERT INTO kv (k, v) VALUES ($1, $2)")
                .bind(k)
                .bind(v)
        };

        let mut tx = pool.begin_write().await.unwrap();
        // Owned arguments, dropped before the statements run: the waiting ones keep their own.
        insert("a", "1".to_owned())
            .execute_with_next(&mut tx)
            .await
            .unwrap();
        query_per_backend(
            "unused",
            "INSERT INTO kv (k, v) VALUES ($1, 'two; quoted $1'); \
             UPDATE kv SET v = v || $2 WHERE k = 'a'",
        )
        .bind("b")
        .bind("+")
        .execute_with_next(&mut tx)
        .await
        .unwrap();
        // The statement that takes them along counts its own rows only (the waiting ones
        // changed three).
        let again = query("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING")
            .bind("old")
            .bind("y")
            .execute(&mut tx)
            .await
            .unwrap();
        assert_eq!(again.rows_affected(), 0);
        insert("c", "3".to_owned())
            .execute_with_next(&mut tx)
            .await
            .unwrap();
        // A read in the transaction sees what waited, and its placeholders are its own.
        let (seen,): (String,) = query_as(
            "SELECT group_concat(kv, ',') FROM (SELECT k || '=' || v AS kv FROM kv \
             WHERE k <> $1 ORDER BY k)",
        )
        .bind("zzz")
        .fetch_one(&mut tx)
        .await
        .unwrap();
        assert_eq!(seen, "a=1+,b=two; quoted $1,c=3,old=x");
        insert("d", "4".to_owned())
            .execute_with_next(&mut tx)
            .await
            .unwrap();
        // A commit takes along what still waits.
        tx.commit().await.unwrap();

        let (keys,): (String,) =
            query_as("SELECT group_concat(k, '') FROM (SELECT k FROM kv ORDER BY k)")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(keys, "abcdold");
    }

    #[tokio::test]
    async fn statements_waiting_never_run_when_rolled_back_and_fail_the_one_they_go_with() {
        let dir = tempfile::tempdir().unwrap();
        let pool = writer_only(&dir).await;
        query("CREATE TABLE kv (k TEXT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let insert = |k: &'static str| query("INSERT INTO kv (k) VALUES ($1)").bind(k);

        let mut tx = pool.begin_write().await.unwrap();
        insert("a").execute_with_next(&mut tx).await.unwrap();
        tx.rollback().await.unwrap();
        let mut tx = pool.begin_write().await.unwrap();
        insert("b").execute_with_next(&mut tx).await.unwrap();
        drop(tx);

        // A waiting statement that fails fails the statement it went with, and then the
        // transaction: nothing of it stays.
        let mut tx = pool.begin_write().await.unwrap();
        insert("c").execute(&mut tx).await.unwrap();
        insert("c").execute_with_next(&mut tx).await.unwrap();
        assert!(insert("d").execute(&mut tx).await.is_err());
        drop(tx);
        let mut tx = pool.begin_write().await.unwrap();
        insert("e").execute_with_next(&mut tx).await.unwrap();
        insert("e").execute_with_next(&mut tx).await.unwrap();
        assert!(
            tx.commit().await.is_err(),
            "the commit went with a failing insert"
        );

        insert("f").execute(&pool).await.unwrap();
        let (keys,): (String,) = query_as("SELECT group_concat(k, '') FROM kv")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(keys, "f");
    }

    #[test]
    fn statements_joined_keep_their_placeholders_apart() {
        assert_eq!(
            renumbered("UPDATE t SET a = $1, b = '$2' WHERE c = $10", 3),
            "UPDATE t SET a = $4, b = '$2' WHERE c = $13"
        );
        assert_eq!(statement_count("INSERT INTO t VALUES ('a;b')"), 1);
        assert_eq!(
            statement_count("INSERT INTO t VALUES (1); INSERT INTO u VALUES (2);"),
            2
        );
        let first: &'static str = "INSERT INTO t (a, b) VALUES ($1, $2);";
        let second: &'static str = "INSERT INTO u (a) VALUES ($1)";
        let (joined_once, leading) = joined(vec![(first, 2), (second, 1)], Some("SELECT $1, $2"));
        assert_eq!(
            joined_once,
            "INSERT INTO t (a, b) VALUES ($1, $2); INSERT INTO u (a) VALUES ($3); SELECT $4, $5"
        );
        assert_eq!(leading, 2);
        assert!(std::ptr::eq(
            joined_once,
            joined(vec![(first, 2), (second, 1)], Some("SELECT $1, $2")).0
        ));
        assert_eq!(
            joined(vec![(second, 1)], None),
            ("INSERT INTO u (a) VALUES ($1)", 1)
        );
    }

    #[test]
    fn sqlite_statements_lose_their_row_locks_only() {
        assert_eq!(
            sqlite_dialect("SELECT id FROM payments WHERE id = $1 FOR UPDATE"),
            "SELECT id FROM payments WHERE id = $1"
        );
        assert_eq!(
            sqlite_dialect(
                "UPDATE p SET a = 1 WHERE id IN (SELECT id FROM p FOR UPDATE SKIP LOCKED) \
                 RETURNING id"
            ),
            "UPDATE p SET a = 1 WHERE id IN (SELECT id FROM p) RETURNING id"
        );
        let plain = "SELECT 1";
        assert!(std::ptr::eq(sqlite_dialect(plain), plain));
    }

    #[test]
    fn stored_times_sort_as_the_times_do() {
        let whole = time::macros::datetime!(2026-12-02 09:32:10 UTC);
        let half = whole + time::Duration::milliseconds(500);
        let nano = whole + time::Duration::nanoseconds(1);
        let next = whole + time::Duration::seconds(1);
        let mut texts = [next, half, whole, nano].map(sortable_time);
        texts.sort();
        assert_eq!(texts, [whole, nano, half, next].map(sortable_time));
        assert_eq!(sortable_time(whole), "2026-12-02T09:32:10.000000000Z");
        let moscow = whole.to_offset(time::macros::offset!(+3));
        assert_eq!(sortable_time(moscow), sortable_time(whole));
    }

    #[test]
    fn stored_times_read_back_exactly() {
        let at = time::macros::datetime!(2026-12-02 09:32:10.000000120 UTC);
        let parsed = OffsetDateTime::parse(
            &sortable_time(at),
            &time::format_description::well_known::Rfc3339,
        );
        assert_eq!(parsed.ok(), Some(at));
    }
}
