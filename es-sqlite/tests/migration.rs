//! A file written by the previous release (schema version 1, with its `projection_checkpoints`
//! table) keeps opening: it is migrated forward in place, its events and snapshots read back as
//! they were, and it gets an identity of its own that its checkpoints carry.

use rusqlite::Connection;

use es_core::{Checkpoint, EventStore, ExpectedVersion, NewEvent, RawEvent, ReadAllFilter, StreamId, Version};
use es_sqlite::SqliteStore;

/// Schema version 1 exactly as the first release created it.
const VERSION_1: &str = "CREATE TABLE events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_type TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        stream_version INTEGER NOT NULL,
        event_id BLOB NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        UNIQUE (stream_type, stream_id, stream_version)
    ) STRICT;
    CREATE TABLE snapshots (
        stream_type TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        snapshot_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (stream_type, stream_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE projection_checkpoints (
        name TEXT NOT NULL PRIMARY KEY,
        position INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    PRAGMA user_version = 1;";

fn tables(connection: &Connection) -> Vec<String> {
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    statement.query_map([], |row| row.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

#[tokio::test]
async fn a_version_1_file_is_migrated_and_keeps_its_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    {
        let old = Connection::open(&path).expect("open");
        old.execute_batch(VERSION_1).expect("create version 1");
        for version in 1..=3i64 {
            old.execute(
                "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, \
                 payload, metadata, recorded_at) VALUES ('Account', '7', ?1, ?2, 'Deposited', 1, ?3, '{}', 1700000000000000)",
                rusqlite::params![version, uuid::Uuid::now_v7().as_bytes().to_vec(), format!(r#"{{"amount":{version}}}"#)],
            )
            .expect("insert");
        }
        old.execute("INSERT INTO snapshots VALUES ('Account', '7', 2, 1, '{\"balance\":3}')", []).expect("snapshot");
        old.execute("INSERT INTO projection_checkpoints VALUES ('balances', 3)", []).expect("checkpoint");
    }

    let store = SqliteStore::open(&path).expect("a version 1 file must open");
    let account = StreamId::new("Account", "7");
    let history = store.read_stream(&account, Version(1), 10).await.expect("read");
    assert_eq!(history.iter().map(|e| e.stream_version.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(history[2].event.payload, r#"{"amount":3}"#);
    let snapshot = store.load_snapshot(&account).await.expect("snapshot").expect("kept");
    assert_eq!((snapshot.version, snapshot.state.as_str()), (Version(2), r#"{"balance":3}"#));
    let appended = store
        .append(&account, ExpectedVersion::Exact(Version(3)), vec![NewEvent::new(RawEvent::new("Deposited", 1, "{}"))])
        .await
        .expect("append after migration");
    assert_eq!(appended.events[0].position.0, 4);

    let connection = Connection::open(&path).expect("open");
    assert_eq!(tables(&connection), ["events", "snapshots", "store_meta"]);
    let user_version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).expect("pragma");
    assert_eq!(user_version, i64::from(SqliteStore::SCHEMA_VERSION));

    // The file has an identity now: its checkpoints resume on it, and survive reopening.
    let page = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 2).await.expect("read_all");
    drop(store);
    let reopened = SqliteStore::open(&path).expect("reopen");
    let rest = reopened.read_all(&page.next, &ReadAllFilter::all(), 10).await.expect("resume after reopening");
    assert_eq!(rest.events.len(), 2);
}
