//! [`PostgresStore`]: the production event store of [es](https://docs.rs/es), on PostgreSQL
//! through tokio-postgres and a [`bb8`] connection pool ([`bb8_postgres`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), es_core::StoreError> {
//! use es_postgres::{PostgresOptions, PostgresStore};
//!
//! // The tables live in the schema `es`, created and migrated on connect.
//! let store = PostgresStore::connect("postgres://app:secret@db.internal/bank").await?;
//! // Several applications (or test runs) share one database, each in a schema of its own.
//! let billing = PostgresStore::connect_with(
//!     "postgres://app:secret@db.internal/bank",
//!     PostgresOptions::new().schema("billing").max_connections(32),
//! )
//! .await?;
//! # let _ = (store, billing);
//! # Ok(())
//! # }
//! ```
//!
//! It implements [`EventStore`] with every guarantee of the contract, checked by the same
//! conformance suite as every other store: optimistic concurrency, all-or-nothing batches,
//! idempotent retries by event id ([`kit::resolve_retry`]), reads in pages, read-all filters, one
//! store-wide order that readers of all events follow without skipping, and typed errors (never
//! panics) for rows it cannot read.
//!
//! # Reading all events: a commit-ordered frontier
//!
//! A reader of all events resumes from the last position it has seen. That is only sound if
//! no event can become visible *below* a position a reader has already passed. A sequence
//! (`bigserial`) does not give that: values are taken when a transaction inserts, not when it
//! commits, so a transaction holding position 7 can commit after one holding position 8, and a
//! reader that saw 8 and stored it as its checkpoint skips 7 for ever.
//!
//! This store hands out positions from a one-row table, `head` (the *frontier*). Every append
//! is one statement that updates that row (`last_position = last_position + n`), which locks
//! it until the statement's transaction ends, and inserts its events at the `n` positions it
//! just took. Why no reader ever skips:
//!
//! 1. **Positions follow commit order.** The row lock serializes appends from the update to
//!    the commit: the next append's update waits for the lock and then (`READ COMMITTED`
//!    re-reads the updated row) continues from the committed value. So if append A took
//!    positions below append B's, A committed before B took its positions.
//! 2. **No holes.** An append that fails after the update (a version conflict caught by the
//!    unique index, a dropped connection, a killed process) rolls the update back with its
//!    rows; the next append takes the same positions. Positions `1..=last_position` are
//!    exactly the committed events.
//! 3. **Visibility follows positions.** PostgreSQL makes a transaction visible to new snapshots
//!    (ends it in the proc array) before it releases its locks, so when B gets the lock, A is
//!    already visible to every later snapshot; a snapshot that sees B sees A.
//! 4. **One snapshot per page.** A read of all events reads `head.last_position` and the page
//!    in one statement, so in one snapshot. By 1–3, every position up to that value is
//!    committed and visible in it. A full page resumes after its last event; a page that is
//!    not full has examined every event up to `last_position` and resumes there, past events
//!    its filter rejected but never past one it has not examined.
//!
//! The checkpoint is that position (`Checkpoint`'s second number is unused and 0); it is
//! bound to the store by the id in the schema's `meta` table.
//!
//! **What it costs writers.** Appends to *any* streams are serialized for the length of one
//! statement: the frontier update, the insert and the commit (including its WAL flush). The
//! lock is taken inside that single statement, after the version check, so no network round
//! trip happens while it is held, and conflicting appends (a stale expected version) never
//! take it. That statement is the whole of an append in the common case: one round trip,
//! like a raw autocommit `INSERT`. It calls the schema's `append` function, which reads the
//! stream's version, checks the expectation, takes the positions and inserts; the stream is
//! read again, and the batch's ids looked up, only after a conflict or a unique violation. Because the flush happens under the lock, commits of different appends cannot
//! share a flush the way independent inserts do; the store makes up for it within a process
//! with its own group commit: the appends ready at the same moment go into one statement and
//! one commit (`src/commit.rs`), each still all or nothing. Batches amortize
//! the rest: a batch of 100 events takes the lock once. Appends from several processes
//! serialize with each other; appends that must not wait for each other at all belong in
//! different schemas (different stores).
//!
//! Measured with `cargo bench -p es-postgres --bench append` (PostgreSQL 15 on a quiet 2-core
//! machine, `fsync` and `synchronous_commit` on). Events per second from one run, each writer
//! on its own stream and connection; "raw" is tokio-postgres writing the same rows (UUID v7
//! ids, the same three unique indexes) into a table with a `bigserial` position and no version
//! check, either one `UNNEST` statement per commit or a prepared INSERT per row between
//! `BEGIN` and `COMMIT`:
//!
//! | writers | batches of 100: store | raw UNNEST | raw INSERT per row | single events: store | raw UNNEST | raw INSERT per row |
//! | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
//! | 1 | 61,700 | 63,000 | 6,400 | 1,170 | 1,660 | 1,920 |
//! | 4 | 59,700 | 92,200 | 27,800 | 2,490 | 3,900 | 4,600 |
//! | 16 | 59,800 | 84,800 | 30,600 | 8,280 | 4,380 | 4,840 |
//!
//! Batches run close to raw `UNNEST` for one writer and at about twice raw INSERT per row
//! under concurrency: the price of the version read, the frontier and commits that cannot
//! share a flush, for an order that raw inserts never give readers. Batch where you can.
//! Single events from many writers overtake raw inserts (the group commit put 15.8 appends in
//! one commit at 16 writers); one to four writers commit at 0.5–0.6x of raw INSERT per row.
//! About a third of that gap is the commit notification for followers (`pg_notify`, which
//! PostgreSQL serializes across notifying commits): with
//! [`PostgresOptions::notify_commits`]`(false)` one run measured 0.71x (1 writer) and 0.81x
//! (4 writers); `ES_BENCH_NO_NOTIFY=1` runs the bench that way. Runs on a busy server vary by
//! up to half: compare within a run.
//!
//! **What a long transaction elsewhere does.** Nothing to readers: they never wait for
//! transactions that are not appending, and see every committed append at once, however old
//! the oldest open transaction in the cluster is (unlike an order built on transaction ids,
//! which must hold readers back to the oldest running transaction). What a reader can wait
//! for is an append itself: a slow append (a huge batch, a slow disk) delays the appends
//! queued behind it, which a user sees as append latency, not as reader lag. Readers that
//! fall behind show it as a checkpoint below [`EventStore::head`].
//!
//! The one indirect effect: every append leaves a dead version of the `head` row (updates
//! are HOT, no index changes, and are pruned as they go), and a transaction open for a long
//! time anywhere in the cluster keeps vacuum from removing the versions made since it began.
//! Appends and reads then walk a longer chain to the live row and get slower until that
//! transaction ends; `pg_stat_activity.xact_start` shows the culprit. Nothing is skipped or
//! reordered meanwhile.
//!
//! # Connections, PgBouncer and replicas
//!
//! - **Tokio.** The store runs on Tokio: connect inside a Tokio runtime, which keeps the
//!   pool's connections and the store's group-commit task.
//! - **Pool.** [`PostgresStore::connect`] builds a bb8 pool (16 connections by default,
//!   [`PostgresOptions`]); [`PostgresStore::from_pool`] takes one you built (for TLS, say).
//!   A call that finds every connection busy waits at most the pool's wait timeout (bb8's
//!   `connection_timeout`) and then fails with [`BackendErrorKind::PoolTimeout`], which is
//!   transient; when bb8 could not open a connection meanwhile (the server went away, it
//!   refuses the credentials), a pool built by `connect` says that instead, with the same
//!   kinds as connecting does. A connection found closed, or that an error showed lost, leaves
//!   the pool instead of going to the next call; connections are not otherwise tested when
//!   taken (no round trip per call).
//! - **No session state.** Every statement names the schema; the store sets no `search_path`,
//!   uses no session advisory locks, no temporary tables, and LISTENs only on a connection of
//!   its own, outside the pool (see "Commit notifications"). Appends and reads are single
//!   statements in their own implicit transactions; only the migration on connect, an
//!   exactly-once projection's batch ([`PostgresCheckpoints`]) and an append through a
//!   [`PostgresInlineStore`] are multi-statement transactions.
//! - **PgBouncer in transaction mode** works: statements are sent with their parameter types
//!   as unnamed statements (tokio-postgres's `query_typed`), never as named prepared
//!   statements that a pooler would hand to another server connection. The cost is one parse
//!   per statement on the server; for appends that is only the short call of the schema's
//!   `append` function, whose statements PL/pgSQL plans once per server connection and keeps.
//!   No option is needed. The whole conformance suite runs through PgBouncer 1.18 (which
//!   knows no prepared statements at all) with `pool_mode = transaction` in this crate's CI
//!   (`tests/pgbouncer.rs`); set `ES_PGBOUNCER_URL` to run it through yours. Connect to the
//!   server itself for what a pooler hides: `pg_terminate_backend` and other per-connection
//!   administration, and startup `options` (PgBouncer must be told to ignore them with
//!   `ignore_startup_parameters`).
//! - **Read replicas.** The store connects to one server for everything. A second store on a
//!   hot standby can serve `read_stream`, `read_all`, `head`, `find_event` and
//!   `load_snapshot` (it cannot migrate: create the schema on the primary first, and connect
//!   to the standby only after it has replayed it). On a standby, commits become visible in
//!   WAL order, which is the frontier's order, so a reader there still never skips; it lags by
//!   the replica's replay delay and catches up. Do not mix: a checkpoint taken on the
//!   primary may be ahead of the replica (the reader then sees nothing new until the replica
//!   catches up), and a repository that appends after reading a stream on a lagging replica
//!   gets version conflicts (which it retries) — send commands to the primary.
//!
//! # Commit notifications
//!
//! Projections follow the store without polling it: [`EventStore::commit_signal`] returns a
//! signal that a [`ProjectionRunner`](es_core::projection::ProjectionRunner) waits on once it
//! has caught up.
//!
//! - Every append that writes sends `pg_notify('es_commits_<schema>', '')` inside its own
//!   statement, so in its own transaction: the notification is delivered when the append
//!   commits, never for one that rolled back, and once per commit (the group commit's appends
//!   share one). It costs no round trip; PostgreSQL takes its notification queue's lock at
//!   commit, which appends, serialized by the frontier anyway, do not feel.
//! - A background task holds one connection of its own (not one of the pool's), LISTENs on
//!   that channel and fires the signal for every notification, whichever process appended.
//!   The store also fires it itself after each of its own appends.
//! - The listener reconnects after a lost connection (backoff up to 5 seconds; TCP
//!   keepalives notice a dead peer within about a minute) and fires the signal once each time
//!   it listens again, so no reader waits for a notification sent while it was away.
//!
//! **The worst-case delay** before a caught-up projection sees an append of another process
//! is the notification's trip (it leaves at commit) plus one read. While the listener is
//! reconnecting, and where LISTEN is unavailable, the bound is the runner's
//! `poll_interval` plus one read: PgBouncer in transaction mode hands each transaction to any
//! server connection, so a LISTEN through it is lost; turn listening off there
//! ([`PostgresOptions::listen_for_commits`]`(false)`) or give the store a direct connection.
//! `NOTIFY` itself works through PgBouncer; [`PostgresOptions::notify_commits`]`(false)`
//! turns it off. A store made by [`PostgresStore::from_pool`] notifies but does not listen.
//!
//! # Read models
//!
//! - [`PostgresCheckpoints`]: a projection whose read model lives in the same database
//!   commits each batch's changes with its checkpoint in one transaction: **exactly once**,
//!   also across crashes ([`PostgresFlush`]).
//! - [`PostgresInlineStore`]: a read model that must never lag is updated in the append's own
//!   transaction ([`PostgresInline`]); a failing one fails the command and leaves nothing.
//!
//! # Values
//!
//! - **JSON is stored as `text`.** Payloads, metadata and snapshot states come back byte for
//!   byte as written. `jsonb` would refuse `\u0000` inside strings (which serde writes for a
//!   NUL character) and reorder and deduplicate keys; `text` keeps both, and the store checks
//!   that every payload is JSON before writing ([`kit::check_batch`]).
//! - **Text is UTF-8 without NUL.** PostgreSQL text cannot hold the NUL character itself (the
//!   JSON escape `\u0000` is six ordinary characters and is fine); a stream id or type name
//!   with one is refused with [`BackendErrorKind::OutOfRange`] and nothing is written.
//! - **Times** are `timestamptz`, kept to the microsecond.
//!
//! # Schema
//!
//! The tables are `events`, `head` (the frontier), `snapshots` and `meta` (schema version and
//! store id), and the function `append` (the append statement), in the store's schema, whose
//! name is a checked identifier. They are versioned
//! and migrated forward on connect in one transaction under `pg_advisory_xact_lock`, so two
//! processes connecting at once migrate once. A schema written by a newer es is refused with
//! [`StoreError::SchemaTooNew`]. Every value is a bound parameter, lists too (`= ANY($n)`).
//!
//! # Bad data
//!
//! A row es never writes (metadata that is not its JSON, a version below 1, a schema version
//! beyond `u32`, a NULL where a value belongs, an infinite time, …) is a
//! [`StoreError::Corrupt`] naming the column, the stream and the position, never a panic; a
//! version gap is one on every read path, `read_all` included (which probes the stream index
//! for each event's predecessor). Payloads are handed out as stored: one that does not fit its
//! event is `es_core::decode_record`'s typed `DecodeError`.
//!
//! [`kit::resolve_retry`]: es_core::store::kit::resolve_retry
//! [`kit::check_batch`]: es_core::store::kit::check_batch

mod commit;
mod error;
mod inline;
mod lease;
mod notify;
mod pool;
mod projection;
mod rows;
mod schema;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use es_core::store::kit::{self, resolve_retry};
use es_core::store::{AllEventsPage, Appended, BackendErrorKind, CommitSignal, StoreOrigin, bounded};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, Position, ReadAllFilter, Snapshot, StoreError, StoredEvent,
    StreamId, Version,
};

pub use bb8;
pub use bb8_postgres;
pub use tokio_postgres;

pub use crate::inline::{PostgresInline, PostgresInlineStore};
pub use crate::projection::{PostgresCheckpoints, PostgresFlush};

use crate::error::{Context, backend, pg_error};
use crate::pool::{Conn, ConnectErrors, Pool};
use crate::schema::Sql;

/// How an append whose insert collided with a concurrent writer is tried again before giving
/// up with a transient error (each try re-reads the stream, so an `Exact` expectation ends in
/// a conflict at the second try; only `Any` appends to a hot stream loop).
const APPEND_ATTEMPTS: usize = 32;

/// How [`PostgresStore::connect_with`] opens its pool and where it keeps its tables.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    schema: String,
    max_connections: usize,
    wait_timeout: Duration,
    connect_timeout: Duration,
    notify: bool,
    listen: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "es".to_owned(),
            max_connections: 16,
            wait_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            notify: true,
            listen: true,
        }
    }
}

impl PostgresOptions {
    /// Schema `es`, 16 connections, 10 seconds to wait for a free connection and 10 to
    /// connect, commit notifications sent and listened for.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema the store's tables live in (created if missing): lower-case ASCII letters,
    /// digits and `_`, at most 63 bytes.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (at least 1).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a free connection before failing with
    /// [`BackendErrorKind::PoolTimeout`].
    #[must_use]
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening one connection may take (unless the URL sets `connect_timeout`).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether appends send `NOTIFY` on the schema's channel (on by default), so that stores
    /// of other processes that listen wake their projections at once (crate docs, "Commit
    /// notifications"). NOTIFY works through PgBouncer in transaction mode.
    #[must_use]
    pub fn notify_commits(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Whether the store LISTENs for commits on one dedicated connection (on by default) and
    /// fires its [`commit_signal`](EventStore::commit_signal) for every process's appends.
    /// Turn it off where LISTEN is unavailable (PgBouncer in transaction mode): the signal
    /// then fires for this process's appends only, and a projection sees other processes'
    /// appends within its poll interval.
    #[must_use]
    pub fn listen_for_commits(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }
}

/// An [`EventStore`] in a schema of a PostgreSQL database.
///
/// Clones share the same pool; the store is `Send + Sync` and meant to be shared by every task
/// of a process. See the [crate docs](crate) for how it works.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// What bb8 last failed to connect with (fed only by pools `connect_with` builds).
    errors: ConnectErrors,
    sql: Sql,
    /// Inserts the appends that are ready together ([`commit`]).
    committer: commit::Committer,
    schema: String,
    /// Where it is, without any password, for messages and `Debug`.
    location: String,
    /// Which store this is, carried by every checkpoint it hands out.
    origin: StoreOrigin,
    /// Fired after this process's appends and, when listening, every process's ([`notify`]).
    signal: CommitSignal,
    /// The LISTEN task, stopped with the store.
    _listener: Option<notify::Listener>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.inner.location)
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The schema version this code writes (kept in the schema's `meta` table).
    pub const SCHEMA_VERSION: u32 = schema::SCHEMA_VERSION;

    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// tokio-postgres's `key=value` form) and opens the store in schema `es`, creating or
    /// migrating it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the server without its password: `Unavailable` when it
    /// cannot be reached, `Authentication` for credentials it refuses, `NotADatabase` for a
    /// database that does not exist, `Other` for a URL that is not one; and
    /// [`StoreError::SchemaTooNew`] for a schema written by a newer es.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`PostgresStore::connect`] with a schema, pool size and timeouts of your choice.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and for a schema name that is not a plain identifier.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        schema::check_identifier(&options.schema)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
            StoreError::from(
                es_core::store::BackendError::new(
                    BackendErrorKind::Other,
                    format!("`{}` is not a PostgreSQL connection URL", redact(url)),
                )
                .with_source(error),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let location = describe(&config);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime());
        }
        let errors = ConnectErrors::default();
        let listen = options.listen.then(|| config.clone());
        let pool = pool::build(config, options.max_connections, options.wait_timeout, &errors);
        let notifications = Notifications { notify: options.notify, listen };
        Self::open(pool, errors, options.schema, location, notifications).await
    }

    /// Opens the store in `schema` of the database `pool` connects to, creating or migrating
    /// it. A call that finds the pool exhausted waits at most its `connection_timeout` (30
    /// seconds unless you set it) and then fails with [`BackendErrorKind::PoolTimeout`].
    /// bb8 tests a connection with a round trip every time one is taken unless the pool is
    /// built with `test_on_check_out(false)`; the store drops closed connections itself, so
    /// that setting is safe.
    ///
    /// Its appends notify (crate docs, "Commit notifications"), but it does not listen: the
    /// pool does not say how to open a connection of its own. Its commit signal fires for this
    /// process's appends; a projection sees other processes' within its poll interval.
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with`].
    pub async fn from_pool(
        pool: bb8::Pool<PostgresConnectionManager<NoTls>>,
        schema: &str,
    ) -> Result<Self, StoreError> {
        schema::check_identifier(schema)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime());
        }
        let location = "the database of the given pool".to_owned();
        let notifications = Notifications { notify: true, listen: None };
        Self::open(pool, ConnectErrors::default(), schema.to_owned(), location, notifications).await
    }

    async fn open(
        pool: Pool,
        errors: ConnectErrors,
        schema: String,
        location: String,
        notifications: Notifications,
    ) -> Result<Self, StoreError> {
        // The first connection is opened here rather than by the pool, whose background
        // connects report their errors only to its sink: this one says why it failed.
        let wait = pool.config().connection_timeout;
        let mut client = match tokio::time::timeout(wait, pool.dedicated_connection()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(connect_error(&location, error)),
            Err(_) => {
                return Err(backend(
                    BackendErrorKind::Unavailable,
                    format!("cannot connect to {location}: the server did not answer in time"),
                ));
            }
        };
        let id = schema::migrate(&mut client, &schema).await?;
        // It becomes the pool's first connection (dropped instead if the pool is full).
        let _ = pool.add(client);
        let mut sql = Sql::new(&schema);
        if notifications.notify {
            let notifying = commit::notifying(&sql.insert, &notify::channel(&schema));
            sql.insert =
                notifying.ok_or_else(|| backend(BackendErrorKind::Other, "the append statement cannot notify"))?;
        }
        let committer = commit::Committer::start(pool.clone(), errors.clone(), Arc::from(sql.insert.as_str()))?;
        let origin = StoreOrigin::new("postgres", id);
        let signal = CommitSignal::new();
        let listener = match (notifications.listen, tokio::runtime::Handle::try_current()) {
            (Some(config), Ok(runtime)) => Some(notify::Listener::start(&runtime, config, &schema, signal.clone())),
            _ => None,
        };
        let inner = Inner { pool, errors, sql, committer, schema, location, origin, signal, _listener: listener };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The schema the store's tables are in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The pool the store draws its connections from.
    #[must_use]
    pub fn pool(&self) -> &bb8::Pool<PostgresConnectionManager<NoTls>> {
        &self.inner.pool
    }

    async fn client(&self, context: &'static str) -> Result<Conn, StoreError> {
        pool::get(&self.inner.pool, &self.inner.errors, context).await
    }

    /// One statement on a connection of the pool; a connection found lost is dropped from the
    /// pool rather than handed to the next call.
    async fn query(
        &self,
        context: &'static str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client(context).await?;
        match client.query_typed(sql, params).await {
            Ok(rows) => Ok(rows),
            Err(error) => {
                pool::release(client, &error);
                Err(pg_error(context, error))
            }
        }
    }

    async fn stream_version_on(&self, client: &Conn, stream: &StreamId) -> Result<Version, StoreError> {
        let rows = client
            .query_typed(
                &self.inner.sql.stream_version,
                &[(&stream.stream_type(), Type::TEXT), (&stream.id(), Type::TEXT)],
            )
            .await
            .context("cannot read a stream's version")?;
        let row = rows.first().ok_or_else(|| backend(BackendErrorKind::Other, "a stream's version read no row"))?;
        rows::counter(row, 0, "events.stream_version").map(Version)
    }

    /// The stored events under the batch's ids, as [`resolve_retry`] wants them.
    async fn existing(&self, client: &Conn, events: &[NewEvent]) -> Result<Vec<Option<StoredEvent>>, StoreError> {
        let ids = kit::batch_ids(events);
        let rows = client
            .query_typed(&self.inner.sql.find_events, &[(&ids, Type::UUID_ARRAY)])
            .await
            .context("cannot look up event ids")?;
        let found = rows::events(&rows)?;
        Ok(ids.iter().map(|id| found.iter().find(|event| event.event_id == *id).cloned()).collect())
    }

    /// Appends `job` alone on one connection, the way every append goes that the group
    /// commit did not write (and every append of an inline store): `insert` runs the insert.
    async fn append_alone(
        &self,
        expected: ExpectedVersion,
        mut job: commit::Job,
        mut collided: bool,
        insert: &impl InsertAlone,
    ) -> Result<Appended, StoreError> {
        // The rare way: the expectation did not hold in the statement's snapshot, or a unique
        // index refused a row. Look up the batch's ids after a collision (a retried append is
        // recognised, never written twice), read the stream's version (a conflict is a
        // conflict only after a retry was ruled out), and try alone at the version read.
        let stream = job.stream.clone();
        let stream = &stream;
        let mut client = self.client("cannot append events").await?;
        for _ in 0..APPEND_ATTEMPTS {
            if collided
                && let Some(stored) = resolve_retry(stream, &job.events, self.existing(&client, &job.events).await?)?
            {
                return Ok(Appended::already_stored(stored));
            }
            let actual = self.stream_version_on(&client, stream).await?;
            if !expected.admits(actual) {
                if let Some(stored) = resolve_retry(stream, &job.events, self.existing(&client, &job.events).await?)? {
                    return Ok(Appended::already_stored(stored));
                }
                return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
            }
            if job.events.is_empty() {
                return Ok(Appended::written(Vec::new()));
            }
            to_sql_integer(actual.0 + job.events.len() as u64, "stream version")?;
            job.expected = to_sql_integer(actual.0, "stream version")?;
            // A held connection that was lost leaves the pool as it is dropped.
            match insert.insert(&mut client, &self.inner.sql.insert, job).await {
                Alone::Written(appended) => {
                    self.inner.signal.notify();
                    return Ok(appended);
                }
                // Another writer moved the stream since it was read: read it again.
                Alone::Refused(back) => {
                    job = back;
                    collided = false;
                }
                // An id already stored, or another writer took these versions first.
                Alone::Collided(back) => {
                    job = back;
                    collided = true;
                }
                Alone::Failed(error) => return Err(error),
            }
        }
        Err(backend(
            BackendErrorKind::Busy,
            format!("cannot append to stream {stream}: other writers kept taking its next version"),
        ))
    }
}

/// How [`PostgresStore::append_alone`] inserts one append on its connection.
trait InsertAlone: Sync {
    /// Inserts `job` with `sql` (the append statement) on `client`, and commits.
    fn insert(&self, client: &mut Conn, sql: &str, job: commit::Job) -> impl Future<Output = Alone> + Send;
}

/// How an append alone went.
enum Alone {
    /// Committed.
    Written(Appended),
    /// The expectation did not hold in the statement's snapshot: nothing was written.
    Refused(commit::Job),
    /// A unique index refused a row: nothing was written.
    Collided(commit::Job),
    /// Nothing was written (or, for a lost connection, it may have been).
    Failed(StoreError),
}

impl From<commit::Outcome> for Alone {
    fn from(outcome: commit::Outcome) -> Self {
        match outcome {
            commit::Outcome::Written { job, first, first_version, recorded_at } => {
                let stream = job.stream.clone();
                Alone::Written(written(&stream, job, first, first_version, recorded_at))
            }
            commit::Outcome::Refused(job) => Alone::Refused(job),
            commit::Outcome::Collided(job) => Alone::Collided(job),
            commit::Outcome::Failed(error) => Alone::Failed(error),
        }
    }
}

/// The plain insert: the append statement in its own implicit transaction.
struct Plain;

impl InsertAlone for Plain {
    async fn insert(&self, client: &mut Conn, sql: &str, job: commit::Job) -> Alone {
        commit::alone(client, sql, job).await.into()
    }
}

/// `events` checked and ready to insert into `stream`, expecting `expected` (as the statement
/// takes it).
fn job(stream: &StreamId, expected: i64, events: Vec<NewEvent>) -> Result<commit::Job, StoreError> {
    kit::check_batch(&events)?;
    let metadata = events
        .iter()
        .map(|event| serde_json::to_string(&event.metadata))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|error| {
            StoreError::from(
                es_core::store::BackendError::new(BackendErrorKind::Other, "cannot encode metadata").with_source(error),
            )
        })?;
    Ok(commit::Job { stream: stream.clone(), expected, events, metadata })
}

/// Whether a store's appends notify, and the connection its listener opens (if it listens).
struct Notifications {
    notify: bool,
    listen: Option<tokio_postgres::Config>,
}

/// The message for a first connection that failed, naming the server without its password.
fn connect_error(location: &str, error: tokio_postgres::Error) -> StoreError {
    let context = match error::classify(&error) {
        BackendErrorKind::NotADatabase => format!("cannot connect to {location}: the database does not exist"),
        BackendErrorKind::Authentication => {
            format!("cannot connect to {location}: the server refused the user or password")
        }
        BackendErrorKind::Unavailable => format!("cannot connect to {location}: the server cannot be reached"),
        _ => format!("cannot connect to {location}"),
    };
    pg_error(context, error)
}

fn no_runtime() -> StoreError {
    backend(BackendErrorKind::Other, "PostgresStore needs a Tokio runtime: connect inside one")
}

/// `postgres://user@host:port/database` for a parsed configuration: never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(index).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    bounded(&format!("postgres://{at}{}/{}", hosts.join(","), config.get_dbname().unwrap_or("")))
}

/// A connection string that did not parse, without anything that may be a password.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let rest = match rest.split_once('@') {
            Some((credentials, host)) => {
                format!("{}@{host}", credentials.split(':').next().unwrap_or(""))
            }
            None => rest.to_owned(),
        };
        return bounded(&format!("{scheme}://{rest}"));
    }
    let words: Vec<&str> =
        url.split_whitespace().map(|word| if word.starts_with("password") { "password=…" } else { word }).collect();
    bounded(&words.join(" "))
}

fn to_sql_integer(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        backend(
            BackendErrorKind::OutOfRange,
            format!("{what} {value} is beyond what PostgreSQL stores (at most {})", i64::MAX),
        )
    })
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

use crate::commit::impossible_frontier;

/// The events of `job`, committed at positions from `first` and versions from `first_version`.
fn written(stream: &StreamId, job: commit::Job, first: u64, first_version: u64, recorded_at: SystemTime) -> Appended {
    let committed = job
        .events
        .into_iter()
        .enumerate()
        .map(|(offset, event)| StoredEvent {
            position: Position(first + offset as u64),
            stream: stream.clone(),
            stream_version: Version(first_version + offset as u64),
            event_id: event.event_id,
            metadata: event.metadata,
            recorded_at,
            event: event.event,
        })
        .collect();
    Appended::written(committed)
}

impl EventStore for PostgresStore {
    /// See the crate docs for why this never leaves a hole in the store order.
    ///
    /// The batch goes to the store's group commit: one statement, in one round trip, reads
    /// the stream's version, checks the expectation, takes the frontier, inserts this batch
    /// with the others ready at that moment whose expectations hold, and commits. Only when
    /// the expectation did not hold in that statement's snapshot, or a unique index refused a
    /// row (an id already stored, or a concurrent writer who took the same versions, which
    /// rolls the statement back whole), does the append go the long way alone: it looks up its
    /// ids after a collision, reads the stream's version and, when that does not admit the
    /// append, looks up its ids, so that a retried append is recognised before it is called a
    /// conflict ([`resolve_retry`]); otherwise it tries again at the version read.
    ///
    /// An append whose future is dropped while it runs still commits or fails as a whole;
    /// retry it with the same event ids to learn which.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let fast = commit::expectation(expected)
            .filter(|&at| at < 0 || at.checked_add(i64::try_from(events.len()).unwrap_or(i64::MAX)).is_some());
        let mut job = job(stream, fast.unwrap_or(0), events)?;
        // The common case is one round trip: the group commit's statement checks the
        // expectation in its snapshot and inserts. A version PostgreSQL cannot hold goes the
        // long way, which reads the stream (and finds a conflict). `collided`: whether the
        // batch's ids must be looked up before the stream is read again.
        let mut collided = false;
        if fast.is_some() {
            match self.inner.committer.commit(job).await {
                commit::Outcome::Written { job, first, first_version, recorded_at } => {
                    self.inner.signal.notify();
                    return Ok(written(stream, job, first, first_version, recorded_at));
                }
                commit::Outcome::Refused(back) => job = back,
                commit::Outcome::Collided(back) => {
                    job = back;
                    collided = true;
                }
                commit::Outcome::Failed(error) => return Err(error),
            }
        }
        self.append_alone(expected, job, collided, &Plain).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // From version 1 there is no lower bound, so a row at version 0 or below is read and
        // refused by the check instead of being filtered out.
        let lower = if from.0 <= 1 { i64::MIN } else { saturating_i64(from.0) };
        let limit = saturating_i64(limit as u64);
        let rows = self
            .query(
                "cannot read a stream",
                &self.inner.sql.read_stream,
                &[
                    (&stream.stream_type(), Type::TEXT),
                    (&stream.id(), Type::TEXT),
                    (&lower, Type::INT8),
                    (&limit, Type::INT8),
                ],
            )
            .await?;
        let page = rows::events(&rows)?;
        kit::check_stream_page(stream, from, &page)?;
        Ok(page)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let rows = self
            .query(
                "cannot read a stream's version",
                &self.inner.sql.stream_version,
                &[(&stream.stream_type(), Type::TEXT), (&stream.id(), Type::TEXT)],
            )
            .await?;
        let row = rows.first().ok_or_else(|| backend(BackendErrorKind::Other, "a stream's version read no row"))?;
        rows::counter(row, 0, "events.stream_version").map(Version)
    }

    /// See the crate docs for why resuming from `next` never skips an event.
    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        let origin = &self.inner.origin;
        let after = from.resolve(origin)?.map_or(0, |[position, _]| position);
        if limit == 0 {
            return Ok(AllEventsPage::empty(from.clone()));
        }
        // From the start there is no lower bound, so a row at position 0 or below is read and
        // refused instead of being skipped.
        let lower = if after == 0 { i64::MIN } else { saturating_i64(after) };
        let limit_value = saturating_i64(limit as u64);
        let stream_types = (!filter.stream_types.is_empty()).then_some(filter.stream_types.as_slice());
        let event_types = (!filter.event_types.is_empty()).then_some(filter.event_types.as_slice());
        let rows = self
            .query(
                "cannot read all events",
                &self.inner.sql.read_all,
                &[
                    (&lower, Type::INT8),
                    (&limit_value, Type::INT8),
                    (&stream_types, Type::TEXT_ARRAY),
                    (&event_types, Type::TEXT_ARRAY),
                ],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(impossible_frontier("missing (the `head` row of the store's schema is gone)"));
        };
        let head = rows::counter(first, 0, "head.last_position")?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if !rows::no_event(row, 1) {
                let event = rows::event(row, 1)?;
                if !rows::has_predecessor(row, 1 + rows::EVENT_COLUMN_COUNT) && event.stream_version.0 > 1 {
                    let previous = Version(event.stream_version.0 - 1);
                    return Err(kit::version_gap(&event.stream, previous, "nothing", Some(event.position)));
                }
                events.push(event);
            }
        }
        kit::check_all_page(Position(after), &events)?;
        if head <= after && events.is_empty() {
            return Ok(AllEventsPage::empty(from.clone()));
        }
        let next = match events.last() {
            Some(last) if events.len() == limit => last.position,
            _ => Position(head),
        };
        let checkpoint = |position: Position| Checkpoint::new(origin, [position.0, 0]);
        let events = events.into_iter().map(|event| {
            let after = checkpoint(event.position);
            (event, after)
        });
        Ok(AllEventsPage::new(events.collect(), checkpoint(next)))
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let rows = self.query("cannot read the store's last position", &self.inner.sql.head, &[]).await?;
        let Some(row) = rows.first() else {
            return Err(impossible_frontier("missing (the `head` row of the store's schema is gone)"));
        };
        match rows::counter(row, 0, "head.last_position")? {
            0 => Ok(Checkpoint::START),
            head => Ok(Checkpoint::new(&self.inner.origin, [head, 0])),
        }
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let rows =
            self.query("cannot look up an event id", &self.inner.sql.find_event, &[(&event_id, Type::UUID)]).await?;
        rows.first().map(|row| rows::event(row, 0)).transpose()
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = to_sql_integer(snapshot.version.0, "snapshot version")?;
        let snapshot_version = i64::from(snapshot.snapshot_version);
        self.query(
            "cannot save a snapshot",
            &self.inner.sql.save_snapshot,
            &[
                (&snapshot.stream.stream_type(), Type::TEXT),
                (&snapshot.stream.id(), Type::TEXT),
                (&version, Type::INT8),
                (&snapshot_version, Type::INT8),
                (&snapshot.state, Type::TEXT),
            ],
        )
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let rows = self
            .query(
                "cannot load a snapshot",
                &self.inner.sql.load_snapshot,
                &[(&stream.stream_type(), Type::TEXT), (&stream.id(), Type::TEXT)],
            )
            .await?;
        rows.first().map(|row| rows::snapshot(stream, row)).transpose()
    }

    /// Fired after every append of this process that writes and, while the store listens
    /// ([`PostgresOptions::listen_for_commits`]), after every append of any process (crate
    /// docs, "Commit notifications").
    fn commit_signal(&self) -> Option<CommitSignal> {
        Some(self.inner.signal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_append_statement_can_notify() {
        let sql = Sql::new("bank");
        let notifying =
            commit::notifying(&sql.insert, &notify::channel("bank")).expect("the append statement changed shape");
        assert!(notifying.contains("pg_notify('es_commits_bank', '')"), "{notifying}");
        assert!(notifying.ends_with("$9, $10) AS a"), "{notifying}");
    }

    #[test]
    fn locations_never_show_a_password() {
        let config: tokio_postgres::Config = "postgres://ann:secret@db.example:6432/bank".parse().unwrap();
        assert_eq!(describe(&config), "postgres://ann@db.example:6432/bank");
        let config: tokio_postgres::Config = "host=db user=ann password=secret dbname=bank".parse().unwrap();
        assert!(!describe(&config).contains("secret"));
        assert_eq!(redact("postgres://ann:secret@db/bank?x"), "postgres://ann@db/bank?x");
        assert!(!redact("host=db password=secret").contains("secret"));
    }
}
