//! History that es never writes, put in by hand: impossible positions and stream versions are
//! `Corrupt` errors that name where they are, through every read that meets them; nothing is
//! skipped, and a checkpoint never moves past what a read handed out or examined.

use es_core::store::{CorruptProblem, Corruption};
use es_core::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, Position, RawEvent, ReadAllFilter, StoreError, StreamId, Version,
};
use es_sqlite::SqliteStore;
use rusqlite::{Connection, params};
use uuid::Uuid;

fn account() -> StreamId {
    StreamId::new("Account", "1")
}

fn new_event(n: u64) -> NewEvent {
    NewEvent::new(RawEvent::new("Deposited", 1, format!(r#"{{"n":{n}}}"#)))
}

/// A store at a fresh path, and a plain connection to write rows the store would not write.
fn store_and_connection() -> (tempfile::TempDir, SqliteStore, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    let connection = Connection::open(&path).unwrap();
    (dir, store, connection)
}

/// Writes a row of `stream` at `version` (and at `position`, when given) directly.
fn insert(connection: &Connection, stream: &StreamId, position: Option<i64>, version: i64) {
    connection
        .execute(
            "INSERT INTO events (position, stream_type, stream_id, stream_version, event_id, event_type, \
             schema_version, payload, metadata, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'Deposited', 1, '{}', '{}', 1700000000000000)",
            params![position, stream.stream_type(), stream.id(), version, Uuid::now_v7().as_bytes()],
        )
        .unwrap();
}

fn corruption<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> Corruption {
    match result {
        Err(StoreError::Corrupt(corruption)) => *corruption,
        other => panic!("{what}: expected a corrupt-history error, got {other:?}"),
    }
}

/// A row at a negative position is refused by every read of all events, also by a reader whose
/// checkpoint is past it (where `position > checkpoint` would skip it without a word), and by
/// `head`.
#[tokio::test]
async fn a_negative_position_is_corrupt_wherever_the_reader_stands() {
    let (_dir, store, connection) = store_and_connection();
    let appended = store.append(&account(), ExpectedVersion::NoStream, vec![new_event(1), new_event(2)]).await.unwrap();
    let caught_up = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 10).await.unwrap();
    assert_eq!(caught_up.events, appended.events);

    let other = StreamId::new("Account", "2");
    insert(&connection, &other, Some(-5), 1);
    for (what, from) in [("from the start", Checkpoint::START), ("from past it", caught_up.next.clone())] {
        for filter in [ReadAllFilter::all(), ReadAllFilter::all().event_type("Deposited")] {
            let found = corruption(store.read_all(&from, &filter, 10).await, what);
            assert_eq!(found.problem, CorruptProblem::ImpossiblePosition { found: "-5".into() }, "{what}");
            assert_eq!((found.stream.as_ref(), found.version), (Some(&other), Some(Version(1))), "{what}");
        }
    }
    let found = corruption(store.head().await, "head");
    assert_eq!(found.problem, CorruptProblem::ImpossiblePosition { found: "-5".into() });
}

/// A row at `i64::MAX` leaves AUTOINCREMENT no position to hand out: SQLite says "database or
/// disk is full", and the store says what is wrong instead, naming the position.
#[tokio::test]
async fn a_position_at_the_end_of_the_integers_is_named_when_appending() {
    let (_dir, store, connection) = store_and_connection();
    store.append(&account(), ExpectedVersion::NoStream, vec![new_event(1)]).await.unwrap();
    let other = StreamId::new("Account", "2");
    insert(&connection, &other, Some(i64::MAX), 1);

    let result = store.append(&account(), ExpectedVersion::Exact(Version(1)), vec![new_event(2)]).await;
    let found = corruption(result, "append");
    assert_eq!(found.problem, CorruptProblem::ImpossiblePosition { found: i64::MAX.to_string() });
    assert_eq!(found.position, Some(Position(i64::MAX.unsigned_abs())));
    let message = StoreError::corrupt(found).to_string();
    assert!(message.contains(&i64::MAX.to_string()) && !message.contains("full"), "{message}");
    // Nothing was written.
    assert_eq!(store.stream_version(&account()).await.unwrap(), Version(1));
}

/// Versions that do not run 1, 2, 3 … are refused by a stream read and by a read of all
/// events alike, naming the stream and a version.
#[tokio::test]
async fn version_gaps_are_corrupt_in_stream_reads_and_in_reads_of_all_events() {
    for versions in [&[1, 2, 5][..], &[2, 3], &[0, 1], &[-1, 1], &[1, 3]] {
        let (_dir, store, connection) = store_and_connection();
        // A healthy stream beside it, read before the damage.
        let other = StreamId::new("Account", "healthy");
        store.append(&other, ExpectedVersion::NoStream, vec![new_event(1)]).await.unwrap();
        for &version in versions {
            insert(&connection, &account(), None, version);
        }
        let what = format!("versions {versions:?}");
        for (read, result) in [
            ("read_stream", store.read_stream(&account(), Version(0), 100).await.map(drop)),
            ("read_all", store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100).await.map(drop)),
            (
                "read_all, filtered",
                store.read_all(&Checkpoint::START, &ReadAllFilter::all().stream_type("Account"), 100).await.map(drop),
            ),
        ] {
            let found = corruption(result, &format!("{what}, {read}"));
            assert_eq!(found.stream, Some(account()), "{what}, {read}");
            assert!(found.version.is_some(), "{what}, {read}: {found:?}");
            assert!(matches!(found.problem, CorruptProblem::VersionGap { .. }), "{what}, {read}: {found:?}");
        }
        // Read page by page, the gap is found where the page after it starts, too.
        let mut from = Checkpoint::START;
        let paged = loop {
            match store.read_all(&from, &ReadAllFilter::all(), 1).await {
                Ok(page) if page.events.is_empty() => break Ok(()),
                Ok(page) => from = page.next,
                Err(error) => break Err(error),
            }
        };
        let found = corruption(paged, &format!("{what}, read_all by pages of 1"));
        assert_eq!(found.stream, Some(account()), "{what}, paged");
        // The healthy stream still reads.
        assert_eq!(store.read_stream(&other, Version(0), 100).await.unwrap().len(), 1);
    }
}

/// A page of all events ends where the read stopped examining: a full page at its last event,
/// a short one at the head of the snapshot it read, never at a position it did not reach.
#[tokio::test]
async fn a_checkpoint_moves_only_past_what_the_read_examined() {
    let (_dir, store, _connection) = store_and_connection();
    for n in 0..6 {
        let stream = StreamId::new(if n % 2 == 0 { "Account" } else { "Ledger" }, n.to_string());
        store.append(&stream, ExpectedVersion::NoStream, vec![new_event(n)]).await.unwrap();
    }
    let accounts = ReadAllFilter::all().stream_type("Account");
    // Full pages: the checkpoint is after the page's last event, not at the head.
    let page = store.read_all(&Checkpoint::START, &accounts, 2).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.position.0).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(&page.next, page.checkpoint_after(1));
    let rest = store.read_all(&page.next, &accounts, 2).await.unwrap();
    assert_eq!(rest.events.iter().map(|e| e.position.0).collect::<Vec<_>>(), [5]);
    // The short page examined everything up to the head (6), which rejected the filter.
    assert_eq!(rest.next, store.head().await.unwrap());
    // Appended after: found by the next read.
    let late = store.append(&StreamId::new("Account", "late"), ExpectedVersion::NoStream, vec![new_event(9)]).await;
    let late = late.unwrap();
    let next = store.read_all(&rest.next, &accounts, 2).await.unwrap();
    assert_eq!(next.events, late.events);
}

/// What a read learned about a stream does not hide a gap written after it: a reader that has
/// read the stream to version 3 meets version 5 and refuses it; readers at other positions
/// and with filters read healthy history without a false alarm.
#[tokio::test]
async fn what_earlier_reads_saw_hides_no_later_gap() {
    let (_dir, store, connection) = store_and_connection();
    let other = StreamId::new("Ledger", "x");
    for n in 0..3 {
        store.append(&account(), ExpectedVersion::Any, vec![new_event(n)]).await.unwrap();
        store.append(&other, ExpectedVersion::Any, vec![new_event(n)]).await.unwrap();
    }
    let filters = [ReadAllFilter::all(), ReadAllFilter::all().stream_type("Account")];
    let mut middle = Checkpoint::START;
    for filter in &filters {
        for limit in [1, 2, 100] {
            let mut from = Checkpoint::START;
            loop {
                let page = store.read_all(&from, filter, limit).await.unwrap();
                if page.events.is_empty() {
                    break;
                }
                if page.events.iter().any(|e| e.stream_version == Version(2)) {
                    middle = page.next.clone();
                }
                from = page.next;
            }
        }
    }
    let head = store.head().await.unwrap();
    insert(&connection, &account(), None, 5);
    for from in [head, middle] {
        for filter in &filters {
            let found = corruption(store.read_all(&from, filter, 100).await, "after the gap was written");
            assert_eq!((found.stream, found.version), (Some(account()), Some(Version(4))));
        }
    }
}
