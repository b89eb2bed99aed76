//! The store's connections: one writer, and for a file a bounded pool of read connections.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use es_core::StoreError;
use es_core::store::BackendErrorKind;

use crate::SqliteOptions;
use crate::error::{open_error, read_only_file, store_failure};
use crate::schema;

/// Every connection of one store.
pub(crate) struct Connections {
    /// Every write, and every read when `readers` is `None`.
    writer: Mutex<Connection>,
    /// Read connections, for a file; `None` for an in-memory database, which exists only for
    /// the connection that opened it.
    readers: Option<ReaderPool>,
}

impl Connections {
    /// Opens the database file at `path` (creating it if needed), migrates its schema, and
    /// returns the connections and the store's id.
    pub(crate) fn open_file(path: &Path, options: &SqliteOptions) -> Result<(Self, uuid::Uuid), StoreError> {
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| open_error(path, error))?;
        // SQLite opens a file it may not write read-only, without a word, and the first append
        // would fail. An event store must write: refuse now, naming the file.
        if writer.is_readonly(rusqlite::MAIN_DB).map_err(|error| open_error(path, error))? {
            return Err(read_only_file(path));
        }
        configure_writer(&writer, options).map_err(|error| open_error(path, error))?;
        schema::migrate(&mut writer).map_err(|error| at_open(path, error))?;
        let store_id = schema::store_id(&writer)?;
        // Readers open the same file even if the working directory changes later. A URI
        // (`file:…`) is not a path of the file system, and is kept as written.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let pool = ReaderPool::new(path, options)?;
        Ok((Self { writer: Mutex::new(writer), readers: Some(pool) }, store_id))
    }

    /// One connection to an in-memory database, for writes and reads alike.
    pub(crate) fn in_memory(
        mut connection: Connection,
        options: &SqliteOptions,
    ) -> Result<(Self, uuid::Uuid), StoreError> {
        let location = Path::new(":memory:");
        configure_writer(&connection, options).map_err(|error| open_error(location, error))?;
        schema::migrate(&mut connection)?;
        let store_id = schema::store_id(&connection)?;
        Ok((Self { writer: Mutex::new(connection), readers: None }, store_id))
    }

    /// The writer connection, waiting for the write before.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-done: rusqlite rolls
        // back a transaction that is dropped without a commit.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a read connection (the writer for an in-memory database).
    ///
    /// # Errors
    /// What `read` returns, and [`BackendErrorKind::PoolTimeout`] when no read connection
    /// became free within [`SqliteOptions::pool_timeout`].
    pub(crate) fn read<T, E: From<StoreError>>(&self, read: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        match &self.readers {
            None => read(&self.writer()),
            Some(pool) => {
                let connection = pool.take()?;
                read(connection.connection())
            }
        }
    }
}

/// What every writing connection is set to.
fn configure_writer(connection: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    connection.busy_timeout(options.busy_timeout)?;
    // Returns the mode now in force: "wal" for a file, "memory" for an in-memory database.
    // WAL lets readers go on while a writer writes; without it (a file system that cannot
    // share memory) everything still holds, readers just wait.
    let _mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", "FULL")
}

/// An error met while migrating at open, with a closer look when SQLite could not write.
fn at_open(path: &Path, error: StoreError) -> StoreError {
    match &error {
        StoreError::Backend(backend) if matches!(backend.kind(), BackendErrorKind::ReadOnly | BackendErrorKind::Io) => {
            match std::error::Error::source(backend).and_then(|source| source.downcast_ref::<rusqlite::Error>()) {
                Some(rusqlite::Error::SqliteFailure(code, message)) => {
                    open_error(path, rusqlite::Error::SqliteFailure(*code, message.clone()))
                }
                _ => error,
            }
        }
        _ => error,
    }
}

/// At most `max` read connections, opened when first needed and kept open.
struct ReaderPool {
    path: PathBuf,
    busy_timeout: Duration,
    max: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections open, idle or in use.
    open: usize,
}

impl ReaderPool {
    fn new(path: PathBuf, options: &SqliteOptions) -> Result<Self, StoreError> {
        let max = options.max_readers.max(1);
        // One reader is opened now, so that a file that cannot be read fails at open.
        let first = open_reader(&path, options.busy_timeout)?;
        Ok(Self {
            path,
            busy_timeout: options.busy_timeout,
            max,
            wait: options.pool_timeout,
            state: Mutex::new(PoolState { idle: vec![first], open: 1 }),
            returned: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is two plain values, each updated in one step: never half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read connection: an idle one, a new one while fewer than `max` are open, or the next
    /// one returned within `wait`.
    fn take(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            if let Some(connection) = state.idle.pop() {
                return Ok(Lease { pool: self, connection: Some(connection) });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open_reader(&self.path, self.busy_timeout) {
                    Ok(connection) => Ok(Lease { pool: self, connection: Some(connection) }),
                    Err(error) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(error)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(store_failure(
                    BackendErrorKind::PoolTimeout,
                    format!(
                        "no read connection became free within {:?} ({} in use); raise \
                         `SqliteOptions::max_readers` or `pool_timeout`",
                        self.wait, self.max
                    ),
                ));
            }
            state = self.returned.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// A read connection taken from the pool, given back when dropped (also by a panic).
struct Lease<'a> {
    pool: &'a ReaderPool,
    connection: Option<Connection>,
}

impl Lease<'_> {
    fn connection(&self) -> &Connection {
        // Only `drop` takes it out.
        self.connection.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.connection.take() {
            // A connection left inside a transaction (a panic in the middle of a read) would
            // pin an old snapshot: close it instead.
            Some(connection) if connection.is_autocommit() => state.idle.push(connection),
            _ => state.open -= 1,
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    // Read-write without create: in WAL mode a reader writes to the shared-memory index, and
    // `query_only` keeps it from changing the database.
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| open_error(path, error))?;
    connection.busy_timeout(busy_timeout).map_err(|error| open_error(path, error))?;
    connection.pragma_update(None, "query_only", true).map_err(|error| open_error(path, error))?;
    Ok(connection)
}
