//! Storage failures are classified (busy, read-only, permission, pool timeout …: may a retry
//! help?), say which file or directory they are about, and never echo SQL or unbounded input.
//!
//! Tests run as root here, which ignores permission bits: files and directories are made
//! unwritable with the immutable attribute (`chattr +i`), undone when the test ends. Where
//! `chattr` is not available (another file system, no root) those checks are skipped with a
//! note, and the read-only file is still tested through SQLite's `mode=ro` URI.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use es_core::store::BackendErrorKind;
use es_core::{Checkpoint, EventStore, ExpectedVersion, NewEvent, RawEvent, ReadAllFilter, StoreError, StreamId};
use es_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::Connection;

fn account() -> StreamId {
    StreamId::new("Account", "1")
}

fn new_event(event_type: &str) -> NewEvent {
    NewEvent::new(RawEvent::new(event_type, 1, "{}"))
}

fn backend_kind(error: &StoreError) -> BackendErrorKind {
    match error {
        StoreError::Backend(backend) => backend.kind(),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// The message with every source below it, as a log line would show it.
fn full_message(error: &StoreError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn expect_open_error(path: impl AsRef<Path>) -> StoreError {
    match SqliteStore::open(path) {
        Ok(store) => panic!("opened {store:?}"),
        Err(error) => error,
    }
}

/// `chattr +i` on a path for as long as it lives; `None` where the attribute cannot be set.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Self> {
        let done = Command::new("chattr").arg("+i").arg(path).status().is_ok_and(|status| status.success());
        // Root ignores permission bits but not the attribute: check it really refuses writes.
        let guard = done.then(|| Self(path.to_path_buf()))?;
        let refuses = if path.is_dir() {
            std::fs::write(path.join("probe"), b"x").is_err()
        } else {
            std::fs::OpenOptions::new().append(true).open(path).is_err()
        };
        refuses.then_some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Another connection holding the write lock: an append waits the busy timeout, then fails
/// with a transient `Busy`, and succeeds once the lock is gone.
#[tokio::test]
async fn a_locked_database_is_busy_and_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let options = SqliteOptions::default().busy_timeout(Duration::from_millis(100));
    let store = SqliteStore::open_with(&path, options).unwrap();
    store.append(&account(), ExpectedVersion::NoStream, vec![new_event("Opened")]).await.unwrap();

    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let error = store.append(&account(), ExpectedVersion::Any, vec![new_event("Deposited")]).await.unwrap_err();
    assert_eq!(backend_kind(&error), BackendErrorKind::Busy, "{error}");
    assert!(error.is_transient() && !error.is_conflict(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "waited the short busy timeout, not the default");
    let message = error.to_string();
    assert!(message.contains("busy") && message.contains("append"), "{message}");
    // In WAL mode readers go on meanwhile.
    assert_eq!(store.read_stream(&account(), es_core::Version(0), 10).await.unwrap().len(), 1);

    other.execute_batch("ROLLBACK").unwrap();
    store.append(&account(), ExpectedVersion::Any, vec![new_event("Deposited")]).await.unwrap();
}

/// A database file this process may not write is refused at open, with `ReadOnly` and a
/// message naming the file, not opened read-only to fail at the first append.
#[test]
fn a_read_only_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(SqliteStore::open(&path).unwrap());

    // Through SQLite's own read-only mode, which works anywhere.
    let uri = format!("file:{}?mode=ro", path.display());
    let error = expect_open_error(&uri);
    assert_eq!(backend_kind(&error), BackendErrorKind::ReadOnly, "{error}");
    assert!(!error.is_transient());
    let message = error.to_string();
    assert!(message.contains("events.db") && message.contains("read-only"), "{message}");

    // A file the file system refuses to write.
    let Some(_immutable) = Immutable::set(&path) else {
        eprintln!("note: `chattr +i` is not available here; the immutable-file case is not tested");
        return;
    };
    let error = expect_open_error(&path);
    assert_eq!(backend_kind(&error), BackendErrorKind::ReadOnly, "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("read-only"), "{message}");
}

/// A directory this process may not create files in is named as such: for a new database,
/// and for an existing one (SQLite creates its `-wal` and `-shm` files beside it).
#[test]
fn a_directory_without_write_permission_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let existing = locked.join("existing.db");
    drop(SqliteStore::open(&existing).unwrap());
    assert!(!locked.join("existing.db-wal").exists(), "the last connection removes the WAL");

    let Some(_immutable) = Immutable::set(&locked) else {
        eprintln!("note: `chattr +i` is not available here; the unwritable-directory case is not tested");
        return;
    };
    for path in [locked.join("new.db"), existing] {
        let error = expect_open_error(&path);
        assert_eq!(backend_kind(&error), BackendErrorKind::PermissionDenied, "{path:?}: {error}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("the directory `{}`", locked.display())) && message.contains("create files"),
            "{message}"
        );
    }
}

/// A missing directory is named as missing (not as a permission problem).
#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no such directory");
    let error = expect_open_error(missing.join("events.db"));
    assert_eq!(backend_kind(&error), BackendErrorKind::Io, "{error}");
    let message = error.to_string();
    assert!(message.contains("does not exist") && message.contains("no such directory"), "{message}");
}

/// A filter naming 50,000 event types works (it is bound as one parameter, not spliced into
/// the SQL), and an error met while reading with it stays short.
#[tokio::test]
async fn a_filter_of_very_many_types_works_and_its_errors_stay_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    let events: Vec<_> = (0..10).map(|n| new_event(&format!("Type{n}"))).collect();
    store.append(&account(), ExpectedVersion::NoStream, events).await.unwrap();

    let mut filter = ReadAllFilter::all();
    for n in 0..50_000 {
        filter = filter.event_type(format!("Unrelated{n:05}WithALongishName"));
    }
    filter = filter.event_type("Type7").stream_type("Account");
    for n in 0..50_000 {
        filter = filter.stream_type(format!("UnrelatedStream{n:05}"));
    }
    let page = store.read_all(&Checkpoint::START, &filter, 100).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.event.event_type.as_str()).collect::<Vec<_>>(), ["Type7"]);
    assert_eq!(page.next, store.head().await.unwrap());

    // Break the table under the store: the filtered query fails to prepare (SQLite points into
    // the statement, which rusqlite would quote whole), and the error says so briefly.
    Connection::open(&path).unwrap().execute_batch("ALTER TABLE events RENAME COLUMN event_type TO kind").unwrap();
    let error = store.read_all(&Checkpoint::START, &filter, 100).await.unwrap_err();
    let message = full_message(&error);
    assert!(message.len() < 500, "{} characters: {}", message.len(), &message[..500.min(message.len())]);
    assert!(!message.contains("Unrelated") && !message.contains("SELECT"), "{message}");
    assert!(message.contains("cannot read all events"), "{message}");
}
