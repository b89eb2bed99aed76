//! `SqliteStore` against the `EventStore` contract, and against `InMemoryStore`, the reference:
//! the same operations give the same results on both.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use es_core::store::{AllEventsPage, AppendOutcome};
use es_core::{
    Appended, Checkpoint, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Position, RawEvent,
    ReadAllFilter, Snapshot, StoreError, StoredEvent, StreamId, Version,
};
use es_sqlite::SqliteStore;
use uuid::Uuid;

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(RawEvent::new(event_type, 1, format!(r#"{{"n":{n}}}"#))).with_metadata(
        Metadata::new()
            .with_correlation_id(Uuid::now_v7())
            .with_causation_id(Uuid::now_v7())
            .with_header("user", "ann"),
    )
}

fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open");
    (dir, store)
}

/// What two stores must agree on: everything but the time of recording.
fn comparable(events: &[StoredEvent]) -> Vec<StoredEvent> {
    events.iter().cloned().map(|event| StoredEvent { recorded_at: SystemTime::UNIX_EPOCH, ..event }).collect()
}

/// The position a checkpoint of SQLite or of the in-memory store stands at (their checkpoints
/// are `<kind>:<store id>:<position>.0`); 0 for the start.
fn position_of(checkpoint: &Checkpoint) -> u64 {
    let text = checkpoint.to_string();
    if text == "start" {
        return 0;
    }
    let (_, at) = text.rsplit_once(':').expect("a checkpoint of a store");
    let (position, rest) = at.split_once('.').expect("two numbers");
    assert_eq!(rest, "0", "{text}");
    position.parse().expect("a position")
}

/// The checkpoint of `store` at `position`, made from its head (so the store must hold events).
async fn at(store: &impl EventStore, position: u64) -> Checkpoint {
    let head = store.head().await.expect("head").to_string();
    let (origin, _) = head.rsplit_once(':').expect("a store with events");
    format!("{origin}:{position}.0").parse().expect("a checkpoint")
}

fn error_kind(result: &Result<Appended, StoreError>) -> String {
    match result {
        Ok(appended) => format!("ok {:?} {:?}", appended.outcome, comparable(&appended.events)),
        Err(StoreError::Conflict { stream, expected, actual }) => format!("conflict {stream} {expected} {actual}"),
        Err(StoreError::EventIdReused { event_id, existing_stream, existing_version }) => {
            format!("reused {event_id} {existing_stream} {existing_version}")
        }
        Err(StoreError::DuplicateIdInBatch { event_id }) => format!("duplicate {event_id}"),
        Err(other) => format!("other {other}"),
    }
}

/// A page read from `from` (a position) on both stores; returns SQLite's and the position of
/// its `next`, after checking that both agree, the checkpoint after each event included.
async fn same_page(
    sqlite: &SqliteStore,
    memory: &InMemoryStore,
    from: u64,
    filter: &ReadAllFilter,
    limit: usize,
) -> (AllEventsPage, u64) {
    let (from_a, from_b) = if from == 0 {
        (Checkpoint::START, Checkpoint::START)
    } else {
        (at(sqlite, from).await, at(memory, from).await)
    };
    let a = sqlite.read_all(&from_a, filter, limit).await.expect("sqlite read_all");
    let b = memory.read_all(&from_b, filter, limit).await.expect("memory read_all");
    assert_eq!(comparable(&a.events), comparable(&b.events), "events from {from} {filter:?} limit {limit}");
    let next = position_of(&a.next);
    assert_eq!(next, position_of(&b.next), "next from {from} {filter:?} limit {limit}");
    for index in 0..a.events.len() {
        let (after_a, after_b) = (a.checkpoint_after(index), b.checkpoint_after(index));
        assert_eq!(position_of(after_a), position_of(after_b), "after event {index} from {from} {filter:?}");
        assert_eq!(position_of(after_a), a.events[index].position.0);
    }
    (a, next)
}

/// One script of appends (successes, conflicts, retries, reused ids) on both stores, then every
/// read compared.
#[tokio::test]
async fn behaves_like_the_in_memory_store() {
    let (_dir, sqlite) = file_store();
    let memory = InMemoryStore::new();
    let accounts = [StreamId::new("Account", "a"), StreamId::new("Account", "b"), StreamId::new("Ledger", "x")];

    let first = vec![event("Opened", 1), event("Deposited", 2)];
    let dup = event("Deposited", 9);
    let reused = first[1].clone();
    let mut other_content = first[0].clone();
    other_content.event.payload = r#"{"n":1000}"#.to_owned();
    let mut same_json_other_text = first.clone();
    same_json_other_text[0].event.payload = r#"{ "n" : 1 }"#.to_owned();
    let script: Vec<(usize, ExpectedVersion, Vec<NewEvent>)> = vec![
        (0, ExpectedVersion::NoStream, first.clone()),
        (0, ExpectedVersion::NoStream, first.clone()), // retry: the original result
        (0, ExpectedVersion::NoStream, same_json_other_text), // same JSON, other spacing: a retry too
        (0, ExpectedVersion::NoStream, vec![event("Opened", 3)]), // conflict
        (0, ExpectedVersion::Exact(Version(5)), vec![event("Deposited", 3)]), // conflict
        (1, ExpectedVersion::Exact(Version(0)), vec![event("Opened", 4)]),
        (2, ExpectedVersion::Any, vec![event("Posted", 5), event("Posted", 6), event("Posted", 7)]),
        (0, ExpectedVersion::Exact(Version(2)), vec![event("Deposited", 8)]),
        (1, ExpectedVersion::Any, vec![dup.clone(), dup]), // duplicate in batch
        (1, ExpectedVersion::Any, vec![reused]),           // id stored in another stream
        (0, ExpectedVersion::Any, vec![other_content]),    // id stored with other content
        (0, ExpectedVersion::Any, vec![first[0].clone(), event("X", 0)]), // partly stored
        // Partly stored, the first id new: refused by the insert, and nothing of it kept.
        (1, ExpectedVersion::Any, vec![event("New", 0), event("New", 1), first[1].clone(), event("New", 2)]),
        // The same with a wrong version: the reused id is reported, not the conflict.
        (1, ExpectedVersion::Exact(Version(9)), vec![event("New", 3), first[1].clone()]),
        (2, ExpectedVersion::Any, vec![]),
        (1, ExpectedVersion::NoStream, vec![]), // an empty batch still checks the version
        (2, ExpectedVersion::Any, vec![event("Closed", 10)]),
    ];
    for (step, (stream, expected, batch)) in script.into_iter().enumerate() {
        let a = sqlite.append(&accounts[stream], expected, batch.clone()).await;
        let b = memory.append(&accounts[stream], expected, batch).await;
        assert_eq!(error_kind(&a), error_kind(&b), "step {step}");
    }

    for stream in &accounts {
        assert_eq!(sqlite.stream_version(stream).await.unwrap(), memory.stream_version(stream).await.unwrap());
        for from in 0..6 {
            for limit in [0, 1, 2, 100] {
                let a = sqlite.read_stream(stream, Version(from), limit).await.unwrap();
                let b = memory.read_stream(stream, Version(from), limit).await.unwrap();
                assert_eq!(comparable(&a), comparable(&b), "{stream} from {from} limit {limit}");
            }
        }
    }
    assert_eq!(sqlite.stream_version(&StreamId::new("Account", "none")).await.unwrap(), Version(0));

    let filters = [
        ReadAllFilter::all(),
        ReadAllFilter::all().stream_type("Account"),
        ReadAllFilter::all().stream_type("Ledger").stream_type("Account"),
        ReadAllFilter::all().event_type("Posted"),
        ReadAllFilter::all().event_type("Deposited").event_type("Closed"),
        ReadAllFilter::all().stream_type("Account").event_type("Opened"),
        ReadAllFilter::all().stream_type("Nothing"),
    ];
    for filter in &filters {
        for from in 0..12 {
            for limit in [0, 1, 2, 3, 100] {
                same_page(&sqlite, &memory, from, filter, limit).await;
            }
        }
        // Paging to the end gives every admitted event once, on both.
        for limit in [1, 2, 3] {
            let mut from = 0;
            let mut seen = Vec::new();
            loop {
                let (page, next) = same_page(&sqlite, &memory, from, filter, limit).await;
                if next == from {
                    assert!(page.events.is_empty());
                    break;
                }
                seen.extend(page.events);
                from = next;
            }
            let all = memory.read_all(&Checkpoint::START, filter, usize::MAX).await.unwrap();
            assert_eq!(comparable(&seen), comparable(&all.events));
        }
    }
    same_page(&sqlite, &memory, u64::MAX, &ReadAllFilter::all(), 10).await;

    let stored = memory.read_all(&Checkpoint::START, &ReadAllFilter::all(), 100).await.unwrap().events;
    for event in &stored {
        let found = sqlite.find_event(event.event_id).await.unwrap().expect("stored");
        assert_eq!(comparable(&[found]), comparable(std::slice::from_ref(event)));
    }
    assert!(sqlite.find_event(Uuid::now_v7()).await.unwrap().is_none());
}

#[tokio::test]
async fn append_returns_what_reads_return() {
    let (_dir, store) = file_store();
    let stream = StreamId::new("Account", "1");
    let appended = store.append(&stream, ExpectedVersion::NoStream, vec![event("A", 1), event("B", 2)]).await.unwrap();
    assert_eq!(appended.outcome, AppendOutcome::Written);
    let appended = appended.events;
    assert_eq!(appended.iter().map(|e| e.position).collect::<Vec<_>>(), [Position(1), Position(2)]);
    assert_eq!(store.read_stream(&stream, Version(1), 10).await.unwrap(), appended);
    assert_eq!(store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 10).await.unwrap().events, appended);
    assert_eq!(store.find_event(appended[1].event_id).await.unwrap().as_ref(), Some(&appended[1]));
    let since = appended[0].recorded_at.elapsed().unwrap_or_default();
    assert!(since < Duration::from_secs(60), "recorded_at is now");
}

#[tokio::test]
async fn a_conflict_writes_nothing() {
    let (_dir, store) = file_store();
    let stream = StreamId::new("Account", "1");
    store.append(&stream, ExpectedVersion::NoStream, vec![event("A", 1)]).await.unwrap();
    let batch = vec![event("B", 2), event("C", 3)];
    let error = store.append(&stream, ExpectedVersion::Exact(Version(0)), batch.clone()).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { actual: Version(1), expected: ExpectedVersion::Exact(Version(0)), .. }),
        "{error}"
    );
    assert_eq!(store.stream_version(&stream).await.unwrap(), Version(1));
    for event in &batch {
        assert!(store.find_event(event.event_id).await.unwrap().is_none());
    }
    // The ids were not consumed: the batch appends fine at the right version.
    let committed = store.append(&stream, ExpectedVersion::Exact(Version(1)), batch).await.unwrap();
    assert_eq!(committed.events[0].position, Position(2));
}

#[tokio::test]
async fn snapshots_keep_the_newest() {
    let (_dir, store) = file_store();
    let stream = StreamId::new("Account", "1");
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), None);
    let snapshot = |version: u64, state: &str| Snapshot {
        stream: stream.clone(),
        version: Version(version),
        snapshot_version: 3,
        state: state.to_owned(),
    };
    store.save_snapshot(snapshot(10, "ten")).await.unwrap();
    store.save_snapshot(snapshot(5, "five")).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot(10, "ten")));
    store.save_snapshot(snapshot(10, "ten again")).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot(10, "ten again")));
    store.save_snapshot(snapshot(20, "twenty")).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot(20, "twenty")));
    assert_eq!(store.load_snapshot(&StreamId::new("Account", "2")).await.unwrap(), None);
}

#[tokio::test]
async fn a_file_store_keeps_everything_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Account", "1");
    let appended = {
        let store = SqliteStore::open(&path).unwrap();
        store
            .save_snapshot(Snapshot {
                stream: stream.clone(),
                version: Version(1),
                snapshot_version: 1,
                state: "{}".into(),
            })
            .await
            .unwrap();
        store.append(&stream, ExpectedVersion::NoStream, vec![event("A", 1)]).await.unwrap().events
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.read_stream(&stream, Version(1), 10).await.unwrap(), appended);
    assert!(store.load_snapshot(&stream).await.unwrap().is_some());
    let more = store.append(&stream, ExpectedVersion::Exact(Version(1)), vec![event("B", 2)]).await.unwrap();
    assert_eq!(more.events[0].position, Position(2));
}

#[tokio::test]
async fn in_memory_stores_are_one_database_per_store() {
    for store in [SqliteStore::open_in_memory().unwrap(), SqliteStore::open(":memory:").unwrap()] {
        let stream = StreamId::new("Account", "1");
        let appended = store.append(&stream, ExpectedVersion::NoStream, vec![event("A", 1)]).await.unwrap().events;
        // Reads see the write: they use the same connection.
        assert_eq!(store.read_stream(&stream, Version(1), 10).await.unwrap(), appended);
        let clone = store.clone();
        assert_eq!(clone.stream_version(&stream).await.unwrap(), Version(1));
        assert_eq!(clone.read_all(&Checkpoint::START, &ReadAllFilter::all(), 10).await.unwrap().events, appended);
    }
    let other = SqliteStore::open(":memory:").unwrap();
    assert_eq!(other.stream_version(&StreamId::new("Account", "1")).await.unwrap(), Version(0));
}

#[test]
fn works_outside_a_tokio_runtime() {
    // Without a runtime the work runs inline; drive the future with a minimal executor.
    let store = SqliteStore::open_in_memory().unwrap();
    let stream = StreamId::new("Account", "1");
    let appended = block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event("A", 1)])).unwrap().events;
    assert_eq!(block_on(store.read_stream(&stream, Version(1), 10)).unwrap(), appended);
}

fn block_on<F: Future>(future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

#[test]
fn the_store_is_shareable() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<SqliteStore>();
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(format!("{store:?}").contains(":memory:"));
}

/// Many writers on one store and on a second store over the same file (as another process
/// would be), with readers following all events through a selective filter meanwhile: every
/// admitted event is seen exactly once, in position order, and every append either commits or
/// is a typed conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let one = SqliteStore::open(&path).unwrap();
    let two = SqliteStore::open(&path).unwrap();
    const WRITERS: usize = 8;
    const APPENDS: usize = 40;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = if writer % 2 == 0 { one.clone() } else { two.clone() };
        writers.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for append in 0..APPENDS {
                // Two writers share each stream, so optimistic concurrency is exercised.
                let stream =
                    StreamId::new(if writer % 3 == 0 { "Ledger" } else { "Account" }, (writer / 2).to_string());
                let version = store.stream_version(&stream).await.unwrap();
                let kind = if append % 5 == 0 { "Rare" } else { "Common" };
                match store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event(kind, 0), event("Common", 1)])
                    .await
                {
                    Ok(_) => {}
                    Err(error) if error.is_conflict() => conflicts += 1,
                    Err(error) => panic!("append failed: {error}"),
                }
            }
            conflicts
        }));
    }

    let done = Arc::new(AtomicBool::new(false));
    let follow = |store: SqliteStore, filter: ReadAllFilter| {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut from = Checkpoint::START;
            let mut seen = Vec::new();
            // Keep reading until a read that started after the writers finished finds nothing new.
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = store.read_all(&from, &filter, 7).await.unwrap();
                assert!(page.next >= from);
                let caught_up = page.next == from;
                from = page.next;
                seen.extend(page.events.into_iter().map(|e| (e.position, e.event_id)));
                if caught_up {
                    if finished {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            seen
        })
    };
    let rare = follow(one.clone(), ReadAllFilter::all().event_type("Rare"));
    let ledger = follow(two.clone(), ReadAllFilter::all().stream_type("Ledger"));

    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let total = one.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.unwrap().events;
    assert_eq!(total.len(), (WRITERS * APPENDS - conflicts) * 2);
    let positions: Vec<u64> = total.iter().map(|e| e.position.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    for (reader, filter) in
        [(rare, ReadAllFilter::all().event_type("Rare")), (ledger, ReadAllFilter::all().stream_type("Ledger"))]
    {
        let seen = reader.await.unwrap();
        let expected: Vec<_> = total.iter().filter(|e| filter.admits(e)).map(|e| (e.position, e.event_id)).collect();
        assert!(!expected.is_empty());
        assert_eq!(seen, expected, "{filter:?}");
        assert_eq!(seen.iter().map(|s| s.1).collect::<HashSet<_>>().len(), seen.len());
    }

    // Every stream is gapless.
    let mut streams: std::collections::BTreeMap<StreamId, Vec<u64>> = Default::default();
    for e in &total {
        streams.entry(e.stream.clone()).or_default().push(e.stream_version.0);
    }
    for versions in streams.values() {
        assert_eq!(*versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
}
