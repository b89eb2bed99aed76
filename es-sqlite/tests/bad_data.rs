//! Bad data never panics: rows written by someone else (or damaged), files that are not
//! databases, schemas from the future. Also the schema's versioning and migration.

use std::path::Path;

use es_core::store::{CorruptProblem, Corruption};
use es_core::{
    Apply, Checkpoint, DecodeErrorKind, EventStore, ExpectedVersion, NewEvent, Position, RawEvent, ReadAllFilter,
    StoreError, StreamId, Version, decode_record,
};
use es_derive::{Aggregate, event};
use es_sqlite::SqliteStore;
use rusqlite::{Connection, params};
use uuid::Uuid;

/// An account was opened.
#[event(version = 1, crate = ::es_core)]
pub struct Opened {
    /// Who owns it.
    pub owner: String,
}

/// A bank account with one event, enough to decode stored rows.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(id = String, events(Opened), crate = ::es_core)]
pub struct Account {
    owner: String,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
    }
}

fn account() -> StreamId {
    StreamId::new("Account", "1")
}

/// A store at a fresh path, and a plain connection to write rows the store would not write.
fn store_and_connection() -> (tempfile::TempDir, SqliteStore, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    let connection = Connection::open(&path).unwrap();
    (dir, store, connection)
}

/// Writes an `Account/1` row directly.
fn insert(
    connection: &Connection,
    version: i64,
    event_id: &[u8],
    event_type: &str,
    schema_version: i64,
    payload: &str,
    metadata: &str,
) {
    connection
        .execute(
            "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, \
             payload, metadata, recorded_at) VALUES ('Account', '1', ?1, ?2, ?3, ?4, ?5, ?6, 1700000000000000)",
            params![version, event_id, event_type, schema_version, payload, metadata],
        )
        .unwrap();
}

fn good_id() -> Vec<u8> {
    Uuid::now_v7().as_bytes().to_vec()
}

/// Rows whose payloads do not fit read fine from the store, and decode to typed errors that
/// name the stream, the version and the type.
#[tokio::test]
async fn payloads_that_do_not_fit_are_typed_decode_errors() {
    let (_dir, store, connection) = store_and_connection();
    insert(&connection, 1, &good_id(), "Opened", 1, r#"{"owner":"ann"}"#, "{}");
    insert(&connection, 2, &good_id(), "Opened", 1, r#"{"owner":5}"#, "{}");
    insert(&connection, 3, &good_id(), "Opened", 1, "this is not JSON", "{}");
    insert(&connection, 4, &good_id(), "Closed", 1, "{}", "{}");
    insert(&connection, 5, &good_id(), "Opened", 7, r#"{"owner":"ann"}"#, "{}");

    let records = store.read_stream(&account(), Version(1), 10).await.unwrap();
    assert_eq!(records.len(), 5);
    let ok = decode_record::<Account>(records[0].clone()).unwrap();
    assert_eq!(ok.event, AccountEvent::Opened(Opened { owner: "ann".into() }));

    let errors: Vec<_> = records[1..].iter().map(|r| decode_record::<Account>(r.clone()).unwrap_err()).collect();
    assert!(matches!(errors[0].kind, DecodeErrorKind::Payload { version: 1, .. }), "{}", errors[0]);
    assert!(matches!(errors[1].kind, DecodeErrorKind::Payload { .. }), "{}", errors[1]);
    assert!(matches!(errors[2].kind, DecodeErrorKind::UnknownType { .. }), "{}", errors[2]);
    assert!(matches!(errors[3].kind, DecodeErrorKind::FutureVersion { found: 7, newest: 1 }), "{}", errors[3]);
    for (error, version) in errors.iter().zip(2..) {
        assert_eq!(error.stream, account());
        assert_eq!(error.stream_version, Version(version));
        let message = error.to_string();
        assert!(message.contains("Account/1") && message.contains(&error.event_type), "{message}");
    }
}

/// The corruption behind `result`, or a panic that says what came instead.
fn corruption<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> Corruption {
    match result {
        Err(StoreError::Corrupt(corruption)) => *corruption,
        other => panic!("{what}: expected a corrupt-history error, got {other:?}"),
    }
}

/// Every way a row can be unreadable by the store, each a `Corrupt` error naming the column,
/// the position and the stream, through every read that meets the row.
#[tokio::test]
async fn unreadable_rows_are_corrupt_errors() {
    struct Case {
        what: &'static str,
        version: i64,
        id: Vec<u8>,
        schema_version: i64,
        metadata: &'static str,
        /// The column named, or `None` for a version gap.
        field: Option<&'static str>,
    }
    let case = |what, version, id, schema_version, metadata, field| Case {
        what,
        version,
        id,
        schema_version,
        metadata,
        field,
    };
    let cases = [
        case("metadata that is not JSON", 1, good_id(), 1, "not json", Some("events.metadata")),
        case(
            "metadata of the wrong shape",
            1,
            good_id(),
            1,
            r#"{"correlation_id":"not a uuid"}"#,
            Some("events.metadata"),
        ),
        case("an event id of 3 bytes", 1, vec![1, 2, 3], 1, "{}", Some("events.event_id")),
        case("a negative version", -3, good_id(), 1, "{}", None),
        case("a schema version beyond u32", 1, good_id(), 5_000_000_000, "{}", Some("events.schema_version")),
        case("a negative schema version", 1, good_id(), -1, "{}", Some("events.schema_version")),
    ];
    for Case { what, version, id, schema_version, metadata, field } in cases {
        let (_dir, store, connection) = store_and_connection();
        insert(&connection, version, &id, "Opened", schema_version, "{}", metadata);
        let check = |result: Result<(), StoreError>, read: &str| {
            let found = corruption(result, &format!("{what}, {read}"));
            assert_eq!(found.stream, Some(account()), "{what}, {read}");
            assert_eq!(found.position, Some(Position(1)), "{what}, {read}");
            match (&found.problem, field) {
                (CorruptProblem::Unreadable { field: named, reason }, Some(field)) => {
                    assert_eq!(named, field, "{what}, {read}");
                    assert!(!reason.is_empty());
                }
                (CorruptProblem::VersionGap { expected, found: stored }, None) => {
                    assert_eq!((*expected, stored.as_str()), (Version(1), version.to_string().as_str()));
                    assert_eq!(found.version, Some(Version(1)), "{what}, {read}");
                }
                (problem, _) => panic!("{what}, {read}: {problem:?}"),
            }
        };
        // A stream read from the start has no lower bound on the version, so it meets a row
        // below 1 too.
        check(store.read_stream(&account(), Version(0), 10).await.map(drop), "read_stream");
        check(store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 10).await.map(drop), "read_all");
        if id.len() == 16 {
            let id = Uuid::from_slice(&id).unwrap();
            check(store.find_event(id).await.map(drop), "find_event");
            // A retry of that id meets the row while looking it up.
            let retry = NewEvent::new(RawEvent::new("Opened", 1, "{}")).with_id(id);
            check(store.append(&account(), ExpectedVersion::Any, vec![retry]).await.map(drop), "append");
        }
    }
}

#[tokio::test]
async fn a_negative_stream_version_and_a_corrupt_snapshot_are_corrupt_errors() {
    let (_dir, store, connection) = store_and_connection();
    insert(&connection, -3, &good_id(), "Opened", 1, "{}", "{}");
    let found = corruption(store.stream_version(&account()).await, "stream_version");
    assert_eq!(found.stream, Some(account()));
    let append = corruption(store.append(&account(), ExpectedVersion::Any, Vec::new()).await, "append");
    assert_eq!(append.stream, Some(account()));

    connection
        .execute("INSERT INTO snapshots VALUES ('Account', '1', -1, 1, '{}'), ('Account', '2', 1, -1, '{}')", [])
        .unwrap();
    for (id, column) in [("1", "snapshots.version"), ("2", "snapshots.snapshot_version")] {
        let stream = StreamId::new("Account", id);
        let found = corruption(store.load_snapshot(&stream).await, "load_snapshot");
        assert_eq!(found.stream, Some(stream));
        assert!(
            matches!(&found.problem, CorruptProblem::Unreadable { field, .. } if field == column),
            "{:?}",
            found.problem
        );
    }
}

fn expect_open_error(path: &Path) -> StoreError {
    match SqliteStore::open(path) {
        Ok(store) => panic!("opened {store:?}"),
        Err(error) => error,
    }
}

#[test]
fn a_file_that_is_not_a_database_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "Dear diary, today I opened an event store. ".repeat(200)).unwrap();
    let error = expect_open_error(&path);
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("notes.txt") && message.contains("not an SQLite database"), "{message}");
    // The file is left alone.
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("Dear diary"));
}

#[test]
fn a_path_that_cannot_be_created_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = expect_open_error(&dir.path().join("no such directory").join("events.db"));
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("no such directory"), "{error}");
}

#[test]
fn a_schema_newer_than_the_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(SqliteStore::open(&path).unwrap());
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();
    let error = expect_open_error(&path);
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, supported } if found == newer && supported == SqliteStore::SCHEMA_VERSION),
        "{error:?}"
    );

    Connection::open(&path).unwrap().pragma_update(None, "user_version", -1).unwrap();
    let error = expect_open_error(&path);
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path).unwrap().pragma_query_value(None, "user_version", |row| row.get(0)).unwrap()
}

fn tables(path: &Path) -> Vec<String> {
    let connection = Connection::open(path).unwrap();
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn opening_creates_the_current_schema_once() {
    assert_eq!(SqliteStore::SCHEMA_VERSION, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), 2);
    assert_eq!(tables(&path), ["events", "snapshots", "store_meta"]);
    let journal: String =
        Connection::open(&path).unwrap().pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    assert_eq!(journal, "wal");

    let appended = store
        .append(
            &account(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Opened", 1, r#"{"owner":"ann"}"#))],
        )
        .await
        .unwrap()
        .events;
    // Open again while the first store is still open, and once more after it is gone.
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.read_stream(&account(), Version(1), 10).await.unwrap(), appended);
    drop((store, again));
    let third = SqliteStore::open(&path).unwrap();
    assert_eq!(third.read_stream(&account(), Version(1), 10).await.unwrap(), appended);
    assert_eq!(user_version(&path), 2);
}

#[test]
fn an_existing_empty_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE unrelated (x INTEGER)").unwrap();
    assert_eq!(user_version(&path), 0);
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!(user_version(&path), 2);
    assert_eq!(tables(&path), ["events", "snapshots", "store_meta", "unrelated"]);
}

#[test]
fn a_failed_migration_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // Another program's `snapshots` table: the migration fails half-way and rolls back whole.
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE snapshots (x INTEGER)").unwrap();
    let error = expect_open_error(&path);
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("migration"), "{error}");
    assert_eq!(user_version(&path), 0);
    assert_eq!(tables(&path), ["snapshots"]);
}
