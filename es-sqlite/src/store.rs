//! [`SqliteStore`]: opening a database, its options, the [`EventStore`] methods, and the
//! caller's own SQL in the store's transactions.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Transaction};
use uuid::Uuid;

use es_core::store::{AllEventsPage, Appended, CommitSignal, StoreOrigin};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StoredEvent, StreamId,
    Version,
};

use crate::bridge::blocking;
use crate::connections::Connections;
use crate::error::{Context, open_error};
use crate::{append, read, schema};

/// How a [`SqliteStore`] waits and how many connections it opens.
///
/// ```
/// use std::time::Duration;
/// let options = es_sqlite::SqliteOptions::default().busy_timeout(Duration::from_secs(2)).max_readers(16);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a statement waits for another connection's (or process's) write lock before
    /// failing with [`BackendErrorKind::Busy`](es_core::store::BackendErrorKind::Busy).
    /// Default 10 seconds.
    pub busy_timeout: Duration,
    /// The most read connections open at once (at least 1). Default 8.
    pub max_readers: usize,
    /// How long a read waits for a free read connection when `max_readers` are in use before
    /// failing with [`BackendErrorKind::PoolTimeout`](es_core::store::BackendErrorKind::PoolTimeout).
    /// Default 10 seconds.
    pub pool_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { busy_timeout: Duration::from_secs(10), max_readers: 8, pool_timeout: Duration::from_secs(10) }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::busy_timeout`].
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqliteOptions::max_readers`].
    #[must_use]
    pub fn max_readers(mut self, max: usize) -> Self {
        self.max_readers = max;
        self
    }

    /// Sets [`SqliteOptions::pool_timeout`].
    #[must_use]
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout;
        self
    }
}

/// An [`EventStore`] in one SQLite database file (or in memory).
///
/// Clones share the same connections; the store is `Send + Sync` and meant to be shared by
/// every task of a process. See the [crate docs](crate) for how it works.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    /// What reads of all events found about streams' versions (see `read::VersionsSeen`).
    seen: read::VersionsSeen,
    /// What was opened, for `Debug`.
    location: String,
    /// Which store this is, carried by every checkpoint it hands out.
    origin: StoreOrigin,
    /// Fired after each append this process commits, for projection runners that follow.
    committed: CommitSignal,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.inner.location)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this code writes (`PRAGMA user_version` of its databases).
    pub const SCHEMA_VERSION: u32 = schema::SCHEMA_VERSION;

    /// Opens the store in the SQLite database at `path` with the default [`SqliteOptions`],
    /// creating the file if needed and migrating its schema forward.
    ///
    /// `":memory:"` (or an empty path) opens a new in-memory database, as
    /// [`SqliteStore::open_in_memory`] does.
    ///
    /// # Errors
    /// [`StoreError::SchemaTooNew`] for a database written by a newer es, and
    /// [`StoreError::Backend`] when the file cannot be opened or created (its
    /// [`kind`](es_core::store::BackendError::kind) says why: `ReadOnly` for a file this process
    /// may not write, `PermissionDenied` for a directory it may not create files in,
    /// `NotADatabase`, `Busy` when another process holds the database longer than the busy
    /// timeout, …).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with other [`SqliteOptions`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        let (connections, store_id) = if is_in_memory(path) {
            let connection = Connection::open(path).map_err(|error| open_error(path, error))?;
            Connections::in_memory(connection, &options)?
        } else {
            Connections::open_file(path, &options)?
        };
        Ok(Self::from_parts(connections, location, store_id))
    }

    /// Opens a new, empty store in memory: nothing is kept after the last clone is dropped.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let connection = Connection::open_in_memory().map_err(|error| open_error(Path::new(":memory:"), error))?;
        let (connections, store_id) = Connections::in_memory(connection, &SqliteOptions::default())?;
        Ok(Self::from_parts(connections, ":memory:".to_owned(), store_id))
    }

    fn from_parts(connections: Connections, location: String, store_id: Uuid) -> Self {
        let origin = StoreOrigin::new("sqlite", store_id);
        Self {
            inner: Arc::new(Inner {
                connections,
                seen: read::VersionsSeen::default(),
                location,
                origin,
                committed: CommitSignal::new(),
            }),
        }
    }

    /// Which store this is: kind `"sqlite"` and the id the database got when it was created
    /// (kept in its `store_meta` table). Every checkpoint the store hands out carries it.
    #[must_use]
    pub fn origin(&self) -> &StoreOrigin {
        &self.inner.origin
    }

    /// Runs `work` on the store's writer connection in one IMMEDIATE transaction, committed
    /// when `work` returns `Ok` and rolled back when it returns `Err` (or panics).
    ///
    /// For read models kept in the same file as the events: create their tables, or change
    /// them together with something else, atomically. Appends wait while it runs, so keep it
    /// short. `work` runs where blocking is allowed (see the [crate docs](crate)).
    ///
    /// Errors of rusqlite inside `work` become a [`StoreError`] with
    /// [`backend_error`](crate::backend_error), classified as the store's own are.
    ///
    /// ```
    /// # use es_sqlite::{SqliteStore, rusqlite};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open_in_memory()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// runtime.block_on(store.transaction(|tx: &rusqlite::Transaction<'_>| {
    ///     tx.execute_batch("CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, cents INTEGER)")
    ///         .map_err(|error| es_sqlite::backend_error("cannot create the balances table", error))
    /// }))?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// What `work` returns, and backend errors starting or committing the transaction.
    pub async fn transaction<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || append::transaction(&mut inner.connections.writer(), work)).await
    }

    /// Appends as [`EventStore::append`] does, and runs `hook` inside the append's transaction,
    /// after the events are inserted and before the commit, with the events as they will be
    /// committed (positions and versions assigned). The append commits only when `hook`
    /// returns `Ok`: a failing hook (or a panicking one) leaves neither the events nor what
    /// the hook wrote.
    ///
    /// This is how a read model in the same file stays exactly in step with the events: its
    /// rows change in the transaction that commits the events they come from.
    ///
    /// The hook runs only when this call writes: for a retry that finds the events already
    /// stored ([`AppendOutcome::AlreadyStored`](es_core::store::AppendOutcome::AlreadyStored))
    /// nothing is written and the hook is not run (it ran with the append that wrote them),
    /// and the second value is `None`.
    ///
    /// # Errors
    /// Every error of [`EventStore::append`], and what `hook` returns.
    pub async fn append_with<T, E, H>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        hook: H,
    ) -> Result<(Appended, Option<T>), E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        H: FnOnce(&Transaction<'_>, &[StoredEvent]) -> Result<T, E> + Send + 'static,
    {
        let (inner, stream) = (Arc::clone(&self.inner), stream.clone());
        let result =
            blocking(move || append::append(&mut inner.connections.writer(), &stream, expected, events, hook)).await;
        if result.as_ref().is_ok_and(|(appended, _)| appended.was_written()) {
            self.inner.committed.notify();
        }
        result
    }

    /// Runs `work` in a read transaction on a read connection: one consistent snapshot of the
    /// database, taken without waiting for (or blocking) writers. For queries on read models
    /// kept in the same file. On a file the connection is query-only (a write fails with
    /// [`BackendErrorKind::ReadOnly`](es_core::store::BackendErrorKind::ReadOnly)); an in-memory
    /// database has one connection, which this shares with writes.
    ///
    /// # Errors
    /// What `work` returns, backend errors starting the transaction, and
    /// [`BackendErrorKind::PoolTimeout`](es_core::store::BackendErrorKind::PoolTimeout) when no
    /// read connection became free in time.
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.connections.read(|connection| {
                let transaction = connection.unchecked_transaction().context("cannot start a read")?;
                // Dropped without a commit: a read transaction has nothing to keep.
                work(&transaction)
            })
        })
        .await
    }

    /// Runs `work` on the writer connection, outside any transaction, where blocking is
    /// allowed: for this crate's own writes that set the connection up around their
    /// transaction (a projection's batch commit).
    pub(crate) async fn on_writer<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || work(&mut inner.connections.writer())).await
    }

    /// Runs a read of the store's own on a read connection.
    async fn reading<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &StoreOrigin) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.connections.read(|connection| work(connection, &inner.origin))).await
    }
}

/// Whether `path` names an in-memory database, which exists only for the connection that
/// opened it and so must be served by a single connection.
fn is_in_memory(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.is_empty()
        || text == ":memory:"
        || (text.starts_with("file:") && (text.contains(":memory:") || text.contains("mode=memory")))
}

impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let no_hook = |_: &Transaction<'_>, _: &[StoredEvent]| Ok::<(), StoreError>(());
        self.append_with(stream, expected, events, no_hook).await.map(|(appended, _)| appended)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let stream = stream.clone();
        self.reading(move |connection, _| read::read_stream(connection, &stream, from, limit)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let stream = stream.clone();
        self.reading(move |connection, _| read::stream_version(connection, &stream)).await
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        let (from, filter, inner) = (from.clone(), filter.clone(), Arc::clone(&self.inner));
        blocking(move || {
            inner
                .connections
                .read(|connection| read::read_all(connection, &inner.origin, &inner.seen, &from, &filter, limit))
        })
        .await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.reading(read::head).await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.reading(move |connection, _| read::find_event(connection, event_id)).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || append::save_snapshot(&inner.connections.writer(), &snapshot)).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let stream = stream.clone();
        self.reading(move |connection, _| read::load_snapshot(connection, &stream)).await
    }

    /// Fired after each append this process commits through any clone of this store; appends
    /// by other processes are seen at the follower's poll interval.
    fn commit_signal(&self) -> Option<CommitSignal> {
        Some(self.inner.committed.clone())
    }
}
