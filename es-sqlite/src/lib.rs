//! [`SqliteStore`]: the embedded default event store of [es](https://docs.rs/es), one SQLite
//! file (rusqlite with SQLite bundled, so nothing to install) in WAL mode.
//!
//! ```no_run
//! # fn main() -> Result<(), es_core::StoreError> {
//! let store = es_sqlite::SqliteStore::open("bank.db")?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! It implements [`EventStore`] with every guarantee of the contract: optimistic concurrency,
//! all-or-nothing batches, idempotent retries by event id, one store-wide order that readers of
//! all events follow without skipping, and typed errors (never panics) for rows it cannot read.
//!
//! ```
//! use es_core::{Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, ReadAllFilter, StreamId, Version};
//! use es_sqlite::SqliteStore;
//!
//! fn deposited(amount: u64) -> NewEvent {
//!     let payload = format!(r#"{{"amount":{amount},"reference":"salary"}}"#);
//!     NewEvent::new(RawEvent::new("MoneyDeposited", 2, payload)).with_metadata(Metadata::new().with_header("user", "ann"))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open_in_memory()?; // or SqliteStore::open("bank.db")?
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let account = StreamId::new("BankAccount", "42");
//!     let batch = vec![deposited(50), deposited(20)];
//!     let committed = store.append(&account, ExpectedVersion::NoStream, batch.clone()).await?;
//!     assert!(committed.was_written());
//!     assert_eq!(committed.events[1].stream_version, Version(2));
//!
//!     // A retry of the same append (same ids, same content) returns the stored events, and
//!     // says that it did not write them.
//!     let retried = store.append(&account, ExpectedVersion::NoStream, batch).await?;
//!     assert!(!retried.was_written());
//!     assert_eq!(retried.events, committed.events);
//!
//!     // An append that expected another version is a typed conflict and writes nothing.
//!     let stale = store.append(&account, ExpectedVersion::Exact(Version(1)), vec![deposited(5)]).await;
//!     assert!(stale.is_err_and(|error| error.is_conflict()));
//!
//!     let page = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100).await?;
//!     assert_eq!(page.events, committed.events);
//!     Ok::<_, es_core::StoreError>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Connections.** One writer connection behind a mutex serves every append and snapshot
//!   write. For a file, reads go to a small pool of separate connections, so in WAL mode they
//!   neither wait for nor block a writer; `:memory:` databases use the single connection for
//!   everything, since every in-memory connection would be a database of its own.
//! - **Async.** The [`EventStore`] futures run the blocking SQLite work on
//!   [`tokio::task::spawn_blocking`] when called inside a Tokio runtime, and inline otherwise.
//!   An append whose future is dropped while it runs still commits or fails as a whole; retry
//!   it with the same event ids to learn which.
//! - **Several processes.** Any number of processes may open the same file: SQLite serializes
//!   their writes, and a writer waits up to 10 seconds for another one's transaction
//!   before giving up with a backend error ("database is locked").
//! - **Durability.** Commits are synchronous (`PRAGMA synchronous = FULL`): an append that
//!   returned survives a crash of the process or of the machine. A killed process leaves every
//!   batch either wholly stored or absent.
//! - **Schema.** The tables are `events`, `snapshots` and `projection_checkpoints`, versioned
//!   with `PRAGMA user_version` and migrated forward on open in one transaction. A database
//!   written by a newer es is refused with [`StoreError::SchemaTooNew`]; a file that is not an
//!   SQLite database with a [`StoreError::Backend`] that says so.
//! - **Bad data.** A stored row this code cannot read (metadata that is not the JSON es
//!   writes, an event id that is not 16 bytes, a version below 1, …) is a
//!   [`StoreError::Corrupt`] naming the table, the position and the stream. Payloads are
//!   handed out as stored; `es_core::decode_record` turns one that does not fit into a typed
//!   `DecodeError`.

/// The columns `rows::event` reads, in its order.
macro_rules! event_columns {
    () => {
        "position, stream_type, stream_id, stream_version, event_id, event_type, schema_version, payload, \
         metadata, recorded_at"
    };
}

mod error;
mod rows;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use uuid::Uuid;

use es_core::store::kit::{self, resolve_retry};
use es_core::store::{AllEventsPage, Appended, StoreOrigin};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, Position, ReadAllFilter, Snapshot, StoreError, StoredEvent,
    StreamId, Version,
};

use crate::error::{Context, sqlite_error};

/// How long a write waits for another connection's (or process's) write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read connections kept open between reads; more are opened while reads run concurrently.
const IDLE_READERS: usize = 4;

/// An [`EventStore`] in one SQLite database file (or in memory).
///
/// Clones share the same connections; the store is `Send + Sync` and meant to be shared by
/// every task of a process. See the [crate docs](crate) for how it works.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every write, and every read when `readers` is `None`.
    writer: Mutex<Connection>,
    /// Read connections, for a file; `None` for an in-memory database.
    readers: Option<ReaderPool>,
    /// What was opened, for `Debug`.
    location: String,
    /// Which store this is, carried by every checkpoint it hands out.
    origin: StoreOrigin,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("database", &self.inner.location).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this code writes (`PRAGMA user_version` of its databases).
    pub const SCHEMA_VERSION: u32 = schema::SCHEMA_VERSION;

    /// Opens the store in the SQLite database at `path`, creating the file if needed and
    /// migrating its schema forward.
    ///
    /// `":memory:"` (or an empty path) opens a new in-memory database, as
    /// [`SqliteStore::open_in_memory`] does.
    ///
    /// # Errors
    /// [`StoreError::SchemaTooNew`] for a database written by a newer es, and
    /// [`StoreError::Backend`] when the file cannot be opened or created, is not an SQLite
    /// database, or is locked by another process for longer than the busy timeout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        if is_in_memory(path) {
            return Self::single_connection(
                Connection::open(path).map_err(|error| open_error(&location, error))?,
                location,
            );
        }
        let mut writer = Connection::open(path).map_err(|error| open_error(&location, error))?;
        configure_writer(&writer).map_err(|error| open_error(&location, error))?;
        schema::migrate(&mut writer)?;
        // Readers open the same file even if the working directory changes later.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let first_reader = open_reader(&path)?;
        let origin = StoreOrigin::new("sqlite", schema::store_id(&writer)?);
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Some(ReaderPool { path, idle: Mutex::new(vec![first_reader]) }),
                location,
                origin,
            }),
        })
    }

    /// Opens a new, empty store in memory: nothing is kept after the last clone is dropped.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let location = ":memory:".to_owned();
        Self::single_connection(Connection::open_in_memory().map_err(|error| open_error(&location, error))?, location)
    }

    fn single_connection(mut connection: Connection, location: String) -> Result<Self, StoreError> {
        configure_writer(&connection).map_err(|error| open_error(&location, error))?;
        schema::migrate(&mut connection)?;
        let origin = StoreOrigin::new("sqlite", schema::store_id(&connection)?);
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(connection), readers: None, location, origin }) })
    }

    /// Runs `work` where blocking is allowed: on Tokio's blocking pool inside a runtime, inline
    /// outside one.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => match runtime.spawn_blocking(move || work(&inner)).await {
                Ok(result) => result,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => Err(es_core::store::BackendError::new(
                    es_core::store::BackendErrorKind::Other,
                    "the blocking task running an SQLite call was cancelled",
                )
                .with_source(error)
                .into()),
            },
            Err(_) => work(&inner),
        }
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

fn open_error(location: &str, error: rusqlite::Error) -> StoreError {
    let context = if error.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        format!("`{location}` is not an SQLite database, so it cannot be opened as an event store")
    } else {
        format!("cannot open the event store `{location}`")
    };
    sqlite_error(context, error)
}

fn configure_writer(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Returns the mode now in force: "wal" for a file, "memory" for an in-memory database.
    // WAL lets readers go on while a writer writes; without it (a file system that cannot
    // share memory) everything still holds, readers just wait.
    let _mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", "FULL")
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let location = path.display().to_string();
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| open_error(&location, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| open_error(&location, error))?;
    connection.pragma_update(None, "query_only", true).map_err(|error| open_error(&location, error))?;
    Ok(connection)
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-done: rusqlite rolls
        // back a transaction that is dropped without a commit.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a read connection (the writer's for an in-memory database).
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let Some(pool) = &self.readers else { return read(&self.writer()) };
        let idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => open_reader(&pool.path)?,
        };
        let result = read(&connection);
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(connection);
        }
        result
    }
}

const SELECT_BY_ID: &str = concat!("SELECT ", event_columns!(), " FROM events WHERE event_id = ?1");
const SELECT_STREAM_VERSION: &str =
    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_type = ?1 AND stream_id = ?2";
const INSERT_EVENT: &str = "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

fn stream_version(connection: &Connection, stream: &StreamId) -> Result<Version, StoreError> {
    let mut statement = connection.prepare_cached(SELECT_STREAM_VERSION).context("cannot read a stream's version")?;
    let value: i64 = statement
        .query_row(params![stream.stream_type(), stream.id()], |row| row.get(0))
        .context("cannot read a stream's version")?;
    rows::stream_version(stream, value)
}

fn find_event(connection: &Connection, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
    let mut statement = connection.prepare_cached(SELECT_BY_ID).context("cannot look up an event id")?;
    rows::first_event(statement.query([event_id.as_bytes()]).context("cannot look up an event id")?)
}

fn to_sql_integer(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        es_core::store::BackendError::new(
            es_core::store::BackendErrorKind::OutOfRange,
            format!("{what} {value} is beyond what SQLite stores (at most {})", i64::MAX),
        )
        .into()
    })
}

fn append(
    connection: &mut Connection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Appended, StoreError> {
    kit::check_batch(&events)?;
    // IMMEDIATE takes the write lock up front, so the id lookups and the version check below
    // see the state the inserts will commit on: nobody else can write in between.
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot start an append transaction")?;
    let existing = events.iter().map(|event| find_event(&transaction, event.event_id)).collect::<Result<_, _>>()?;
    if let Some(stored) = resolve_retry(stream, &events, existing)? {
        return Ok(Appended::already_stored(stored)); // Nothing written: dropping the transaction rolls it back.
    }
    let actual = stream_version(&transaction, stream)?;
    if !expected.admits(actual) {
        return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
    }
    // Stored in microseconds, so hand back the time as it will read back.
    let micros = rows::micros_since_epoch(SystemTime::now());
    let recorded_at = rows::time_from_micros(micros).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut committed = Vec::with_capacity(events.len());
    {
        let mut insert = transaction.prepare_cached(INSERT_EVENT).context("cannot append events")?;
        for (offset, event) in events.into_iter().enumerate() {
            let version = Version(actual.0 + offset as u64 + 1);
            let metadata = serde_json::to_string(&event.metadata).map_err(|error| {
                StoreError::from(
                    es_core::store::BackendError::new(
                        es_core::store::BackendErrorKind::Other,
                        "cannot encode metadata",
                    )
                    .with_source(error),
                )
            })?;
            insert
                .execute(params![
                    stream.stream_type(),
                    stream.id(),
                    to_sql_integer(version.0, "stream version")?,
                    event.event_id.as_bytes(),
                    event.event.event_type,
                    event.event.schema_version,
                    event.event.payload,
                    metadata,
                    micros,
                ])
                .context("cannot append events")?;
            // SQLite runs one write transaction at a time and AUTOINCREMENT hands out rowids
            // above every one ever used, so positions become visible strictly in order: a
            // reader that has seen position p has seen every event below p that will ever
            // exist, and "the last position read" is a checkpoint that never skips.
            let position = u64::try_from(transaction.last_insert_rowid()).unwrap_or(0);
            committed.push(StoredEvent {
                position: Position(position),
                stream: stream.clone(),
                stream_version: version,
                event_id: event.event_id,
                metadata: event.metadata,
                recorded_at,
                event: event.event,
            });
        }
    }
    transaction.commit().context("cannot commit an append")?;
    Ok(Appended::written(committed))
}

fn read_stream(
    connection: &Connection,
    stream: &StreamId,
    from: Version,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // From version 1 there is no lower bound, so a row at version 0 or below is read and
    // refused by the check instead of being filtered out.
    const SQL: &str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE stream_type = ?1 AND stream_id = ?2 AND stream_version >= ?3 \
         ORDER BY stream_version LIMIT ?4"
    );
    let mut statement = connection.prepare_cached(SQL).context("cannot read a stream")?;
    let lower = if from.0 <= 1 { i64::MIN } else { i64::try_from(from.0).unwrap_or(i64::MAX) };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let page = rows::events(
        statement.query(params![stream.stream_type(), stream.id(), lower, limit]).context("cannot read a stream")?,
    )?;
    kit::check_stream_page(stream, from, &page)?;
    Ok(page)
}

/// A page of all events after `from` that pass `filter`.
///
/// `next` must move past events the filter rejects (or a selective reader would scan the same
/// rows forever) without ever moving past an event the reader has not been shown. The query
/// first takes `head`, the highest committed position, and then reads only up to it:
///
/// - a full page ends at its last event: `next` is that event's position, exactly as
///   [`es_core::InMemoryStore`] does;
/// - a page that is not full has scanned everything up to `head`, so `next = head`.
///
/// Reading up to `head` only is what makes the second case safe with concurrent writers: an
/// event committed after `head` was taken has a higher position (see the comment in
/// `append`), so it is neither in this page nor behind `next`, and the next read finds it.
/// Taking `MAX(position)` after the page instead could jump past an event committed between
/// the two queries.
fn read_all(
    connection: &Connection,
    origin: &StoreOrigin,
    from: &Checkpoint,
    filter: &ReadAllFilter,
    limit: usize,
) -> Result<AllEventsPage, StoreError> {
    let after = from.resolve(origin)?.map_or(0, |[position, _]| position);
    let nothing_new = || AllEventsPage::empty(from.clone());
    if limit == 0 {
        return Ok(nothing_new());
    }
    // One read transaction: `head` and the page see the same snapshot of the file.
    let transaction = connection.unchecked_transaction().context("cannot start a read")?;
    let head: i64 = transaction
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .context("cannot read the store's last position")?;
    let head = u64::try_from(head).map_err(|_| impossible_position(head))?;
    if head <= after {
        return Ok(nothing_new());
    }
    // Filters are bound as one JSON array each, never spliced into the SQL: any number of
    // types, and no SQL in an error message.
    const ALL: &str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
    );
    // A NULL list admits everything.
    const FILTERED: &str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE position > ?1 AND position <= ?2 \
         AND (?4 IS NULL OR stream_type IN (SELECT value FROM json_each(?4))) \
         AND (?5 IS NULL OR event_type IN (SELECT value FROM json_each(?5))) ORDER BY position LIMIT ?3"
    );
    let as_json = |names: &[String]| (!names.is_empty()).then(|| serde_json::to_string(names).unwrap_or_default());
    let (stream_types, event_types) = (as_json(&filter.stream_types), as_json(&filter.event_types));
    // From the start there is no lower bound, so a row at position 0 or below is read and
    // refused instead of being skipped.
    let lower = if after == 0 { i64::MIN } else { to_sql_integer(after, "position")? };
    let limit_value = i64::try_from(limit).unwrap_or(i64::MAX);
    let head_value = to_sql_integer(head, "position")?;
    let sql = if filter.is_all() { ALL } else { FILTERED };
    let mut statement = transaction.prepare_cached(sql).context("cannot read all events")?;
    let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&lower, &head_value, &limit_value];
    if !filter.is_all() {
        bound.push(&stream_types);
        bound.push(&event_types);
    }
    let events = rows::events(statement.query(bound.as_slice()).context("cannot read all events")?)?;
    kit::check_all_page(Position(after), &events)?;
    // A full page ends after its last event. A page that is not full examined every row up to
    // `head` (in this snapshot; a later commit gets a higher position), so it resumes there.
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

fn impossible_position(found: i64) -> StoreError {
    StoreError::corrupt(es_core::store::Corruption::new(es_core::store::CorruptProblem::ImpossiblePosition {
        found: found.to_string(),
    }))
}

fn head(connection: &Connection, origin: &StoreOrigin) -> Result<Checkpoint, StoreError> {
    let head: i64 = connection
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .context("cannot read the store's last position")?;
    match u64::try_from(head) {
        Ok(0) => Ok(Checkpoint::START),
        Ok(head) => Ok(Checkpoint::new(origin, [head, 0])),
        Err(_) => Err(impossible_position(head)),
    }
}

fn save_snapshot(connection: &Connection, snapshot: &Snapshot) -> Result<(), StoreError> {
    // Replaces the stream's snapshot unless the stored one is newer, as the in-memory store does.
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO snapshots (stream_type, stream_id, version, snapshot_version, state) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (stream_type, stream_id) DO UPDATE SET version = excluded.version, \
             snapshot_version = excluded.snapshot_version, state = excluded.state \
             WHERE excluded.version >= snapshots.version",
        )
        .context("cannot save a snapshot")?;
    statement
        .execute(params![
            snapshot.stream.stream_type(),
            snapshot.stream.id(),
            to_sql_integer(snapshot.version.0, "snapshot version")?,
            snapshot.snapshot_version,
            snapshot.state,
        ])
        .context("cannot save a snapshot")?;
    Ok(())
}

fn load_snapshot(connection: &Connection, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT version, snapshot_version, state FROM snapshots WHERE stream_type = ?1 AND stream_id = ?2",
        )
        .context("cannot load a snapshot")?;
    let mut found = statement.query(params![stream.stream_type(), stream.id()]).context("cannot load a snapshot")?;
    match found.next().context("cannot load a snapshot")? {
        Some(row) => rows::snapshot(stream, row).map(Some),
        None => Ok(None),
    }
}

impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let stream = stream.clone();
        self.run(move |inner| append(&mut inner.writer(), &stream, expected, events)).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let stream = stream.clone();
        self.run(move |inner| inner.read(|connection| read_stream(connection, &stream, from, limit))).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let stream = stream.clone();
        self.run(move |inner| inner.read(|connection| stream_version(connection, &stream))).await
    }

    async fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> Result<AllEventsPage, StoreError> {
        let (from, filter) = (from.clone(), filter.clone());
        self.run(move |inner| inner.read(|connection| read_all(connection, &inner.origin, &from, &filter, limit))).await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.run(move |inner| inner.read(|connection| head(connection, &inner.origin))).await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.run(move |inner| inner.read(|connection| find_event(connection, event_id))).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.run(move |inner| save_snapshot(&inner.writer(), &snapshot)).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let stream = stream.clone();
        self.run(move |inner| inner.read(|connection| load_snapshot(connection, &stream))).await
    }
}
