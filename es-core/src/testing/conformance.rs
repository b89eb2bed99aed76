//! One suite that proves a store keeps the [`EventStore`] contract, run by any store with one
//! line:
//!
//! ```ignore
//! es::conformance_suite!(|test_name: &str| async move { MyStore::open(test_name).await.unwrap() });
//! ```
//!
//! The macro writes one `#[tokio::test]` per check (the calling crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features as a dev-dependency). The factory gets the test's
//! name, so a store on a shared server can give each test its own schema or prefix; it must
//! return an empty store.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::counter::{Counter, CounterError, CounterEvent, Incremented};
use crate::aggregate::Aggregate as _;
use crate::event::Event as _;
use crate::record::{Metadata, RawEvent, StoredEvent, Version};
use crate::repository::{CommandOptions, Repository, RepositoryError, RetryPolicy};
use crate::store::kit::StreamPages;
use crate::store::{
    Appended, Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StreamId,
};

/// Runs every check of the suite against the store the factory makes; see the module docs.
///
/// The list of checks is written once, in the `@list` arm; [`CHECKS`] is made from the same
/// list, and a unit test fails when a public check of this module is missing from it.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@list (@tests $make));
    };
    (@names) => {
        $crate::conformance_suite!(@list (@strings))
    };
    (@list ($($mode:tt)*)) => {
        $crate::conformance_suite! { $($mode)*;
            append_and_read, expected_version_no_stream, expected_version_exact, expected_version_any,
            conflicts_write_nothing, idempotent_retry, reused_event_ids, batches_are_all_or_nothing,
            unreadable_payloads_are_refused, read_stream_from_version_in_pages, read_all_in_pages,
            read_all_filters, read_all_checkpoints_belong_to_their_store, metadata_round_trip,
            large_payloads, unicode_and_nul, many_streams, find_event, snapshots, repository_new_stream,
            repository_snapshots_and_time_travel, repository_ignores_bad_snapshots,
            repository_refuses_impossible_snapshots, repository_command_ids, repository_command_id_races,
            repository_cache_catches_up, concurrent_writers_one_aggregate, read_all_while_writing,
            read_all_followers_agree, commit_signal_fires_on_append, projection_runner_catches_up_and_follows
        }
    };
    (@strings; $($name:ident),+ $(,)?) => {
        &[$(::core::stringify!($name)),+]
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store = ($make)(::core::stringify!($name)).await;
                $crate::testing::conformance::$name(store).await;
            }
        )+
    };
}

/// The names of every check [`conformance_suite!`] runs, in its order.
pub const CHECKS: &[&str] = crate::conformance_suite!(@names);

fn stream(name: &str) -> StreamId {
    StreamId::new("Test", name)
}

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(RawEvent::new(event_type, 1, format!(r#"{{"n":{n}}}"#)))
}

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count).map(|n| event("Happened", n)).collect()
}

async fn all_of<S: EventStore>(store: &S, stream: &StreamId) -> Vec<StoredEvent> {
    store.read_stream(stream, Version(1), usize::MAX).await.expect("read_stream failed")
}

async fn everything<S: EventStore>(store: &S) -> Vec<StoredEvent> {
    store.read_all(&Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read_all failed").events
}

fn versions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.stream_version.0).collect()
}

fn assert_conflict(result: Result<Appended, StoreError>, actual: u64) {
    match result {
        Err(StoreError::Conflict { actual: found, .. }) => {
            assert_eq!(found, Version(actual), "the conflict must report the stream's actual version");
        }
        other => panic!("expected a version conflict at version {actual}, got {other:?}"),
    }
}

/// Appended events come back with versions 1.., increasing positions and every field intact.
pub async fn append_and_read<S: EventStore>(store: S) {
    let s = stream("a");
    let before = SystemTime::now() - Duration::from_secs(5);
    let batch = events(3);
    let committed = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed").events;
    assert_eq!(versions(&committed), [1, 2, 3]);
    let read = all_of(&store, &s).await;
    assert_eq!(read, committed, "read_stream must return what append committed");
    for (stored, new) in read.iter().zip(&batch) {
        assert_eq!(stored.event_id, new.event_id);
        assert_eq!(stored.event, new.event);
        assert_eq!((stored.stream.stream_type(), stored.stream.id()), ("Test", "a"));
        assert!(stored.recorded_at >= before && stored.recorded_at <= SystemTime::now() + Duration::from_secs(5));
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position), "positions must increase");
    assert_eq!(store.stream_version(&s).await.expect("stream_version failed"), Version(3));
    assert_eq!(store.stream_version(&stream("missing")).await.expect("stream_version failed"), Version::NONE);
    assert!(all_of(&store, &stream("missing")).await.is_empty());
}

/// `NoStream` admits a new stream only.
pub async fn expected_version_no_stream<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::NoStream, events(1)).await.expect("first append failed");
    assert_conflict(store.append(&s, ExpectedVersion::NoStream, events(1)).await, 1);
    assert_eq!(all_of(&store, &s).await.len(), 1);
}

/// `Exact(n)` admits version n only; `Exact(0)` on a new stream is `NoStream`.
pub async fn expected_version_exact<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::Exact(Version(0)), events(2)).await.expect("append at 0 failed");
    assert_conflict(store.append(&s, ExpectedVersion::Exact(Version(1)), events(1)).await, 2);
    assert_conflict(store.append(&s, ExpectedVersion::Exact(Version(3)), events(1)).await, 2);
    let committed =
        store.append(&s, ExpectedVersion::Exact(Version(2)), events(2)).await.expect("append at 2 failed").events;
    assert_eq!(versions(&committed), [3, 4]);
    assert_conflict(store.append(&stream("new"), ExpectedVersion::Exact(Version(1)), events(1)).await, 0);
}

/// `Any` appends after whatever is there, including nothing.
pub async fn expected_version_any<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::Any, events(2)).await.expect("append failed");
    let committed = store.append(&s, ExpectedVersion::Any, events(1)).await.expect("append failed").events;
    assert_eq!(versions(&committed), [3]);
    assert_eq!(versions(&all_of(&store, &s).await), [1, 2, 3]);
}

/// A conflicting append writes nothing, in its stream or anywhere else.
pub async fn conflicts_write_nothing<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::NoStream, events(2)).await.expect("append failed");
    let refused = events(5);
    assert_conflict(store.append(&s, ExpectedVersion::Exact(Version(1)), refused.clone()).await, 2);
    assert_eq!(everything(&store).await.len(), 2);
    for event in &refused {
        assert!(store.find_event(event.event_id).await.expect("find_event failed").is_none());
    }
}

/// Appending the same ids with the same content again returns the original result, even after
/// other events followed and whatever the expected version says.
pub async fn idempotent_retry<S: EventStore>(store: S) {
    let s = stream("a");
    let batch = events(3);
    let first = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed").events;
    let again = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("retry must succeed");
    assert!(!again.was_written(), "a retry must say it found the batch stored, not that it wrote it");
    assert_eq!(again.events, first, "a retry must return the original events");
    store.append(&s, ExpectedVersion::Exact(Version(3)), events(1)).await.expect("append failed");
    let late = store.append(&s, ExpectedVersion::Exact(Version(0)), batch).await.expect("late retry must succeed");
    assert_eq!(late, Appended::already_stored(first));
    assert_eq!(everything(&store).await.len(), 4, "retries must not write");
}

/// An id reused for other content, in another stream, twice in a batch, or a batch that only
/// partly overlaps stored ids: typed errors, nothing written.
pub async fn reused_event_ids<S: EventStore>(store: S) {
    let s = stream("a");
    let batch = events(2);
    store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");

    let mut other_content = batch.clone();
    other_content[1].event.payload = r#"{"n":99}"#.to_owned();
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, other_content).await,
        Err(StoreError::EventIdReused { event_id, .. }) if event_id == batch[1].event_id
    ));

    let elsewhere = store.append(&stream("b"), ExpectedVersion::Any, vec![batch[0].clone()]).await;
    assert!(matches!(elsewhere, Err(StoreError::EventIdReused { event_id, .. }) if event_id == batch[0].event_id));

    let mut partly = events(2);
    partly[1] = batch[0].clone();
    assert!(matches!(store.append(&s, ExpectedVersion::Any, partly).await, Err(StoreError::EventIdReused { .. })));
    // The error names the id that is stored, and where it is, not an id of the new batch.
    let mut partly = events(2);
    partly[1] = batch[1].clone();
    match store.append(&s, ExpectedVersion::Any, partly).await {
        Err(StoreError::EventIdReused { event_id, existing_stream, existing_version }) => {
            assert_eq!((event_id, existing_stream, existing_version), (batch[1].event_id, s.clone(), Version(2)));
        }
        other => panic!("expected EventIdReused for the stored id, got {other:?}"),
    }

    let twice = event("Happened", 7);
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![twice.clone(), twice]).await,
        Err(StoreError::DuplicateIdInBatch { .. })
    ));
    assert_eq!(everything(&store).await.len(), 2, "failed appends must not write");
}

/// A batch that fails on its last event leaves none of its events behind.
pub async fn batches_are_all_or_nothing<S: EventStore>(store: S) {
    let s = stream("a");
    let stored =
        store.append(&stream("other"), ExpectedVersion::NoStream, events(1)).await.expect("append failed").events;
    let mut batch = events(20);
    batch[19].event_id = stored[0].event_id;
    assert!(store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.is_err());
    assert_eq!(store.stream_version(&s).await.expect("stream_version failed"), Version::NONE);
    for event in &batch[..19] {
        assert!(store.find_event(event.event_id).await.expect("find_event failed").is_none());
    }
    let ok = store.append(&s, ExpectedVersion::NoStream, events(20)).await.expect("append failed").events;
    assert_eq!(versions(&ok), (1..=20).collect::<Vec<_>>());
}

/// A payload that is not JSON, or nested deeper than the decoder reads, is refused before
/// anything is written: nothing commits that could not be read back.
pub async fn unreadable_payloads_are_refused<S: EventStore>(store: S) {
    let s = stream("a");
    let depth = crate::store::kit::MAX_PAYLOAD_DEPTH + 1;
    let too_deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for (name, payload) in [("not JSON", "{\"n\": 1".to_owned()), ("too deep", too_deep)] {
        let mut batch = events(2);
        batch[1].event.payload = payload;
        match store.append(&s, ExpectedVersion::NoStream, batch.clone()).await {
            Err(StoreError::InvalidEvent { event_id, .. }) => assert_eq!(event_id, batch[1].event_id, "{name}"),
            other => panic!("{name}: expected InvalidEvent, got {other:?}"),
        }
        assert!(store.find_event(batch[0].event_id).await.expect("find_event failed").is_none(), "{name}");
    }
    assert_eq!(store.stream_version(&s).await.expect("stream_version failed"), Version::NONE);
}

/// Reading from a version, with limits, and page by page.
pub async fn read_stream_from_version_in_pages<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::NoStream, events(25)).await.expect("append failed");
    store.append(&stream("b"), ExpectedVersion::NoStream, events(5)).await.expect("append failed");
    assert_eq!(versions(&store.read_stream(&s, Version(10), 3).await.expect("read failed")), [10, 11, 12]);
    assert_eq!(versions(&store.read_stream(&s, Version(24), 10).await.expect("read failed")), [24, 25]);
    assert!(store.read_stream(&s, Version(26), 10).await.expect("read failed").is_empty());
    assert_eq!(store.read_stream(&s, Version(0), 100).await.expect("read failed").len(), 25);

    let mut pages = StreamPages::new(&store, s.clone(), Version(1), 10);
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await.expect("page failed") {
        sizes.push(page.len());
        seen.extend(page);
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(versions(&seen), (1..=25).collect::<Vec<_>>());
}

/// Read-all pages hand out every event once, in position order, and the checkpoint resumes.
pub async fn read_all_in_pages<S: EventStore>(store: S) {
    for i in 0..10 {
        store.append(&stream(&format!("s{i}")), ExpectedVersion::NoStream, events(5)).await.expect("append failed");
    }
    let mut checkpoint = Checkpoint::START;
    let mut seen = Vec::new();
    loop {
        let page = store.read_all(&checkpoint, &ReadAllFilter::all(), 7).await.expect("read_all failed");
        assert!(page.events.len() <= 7);
        if page.events.is_empty() {
            assert_eq!(page.next, checkpoint, "an empty page must not move the checkpoint");
            break;
        }
        assert!(page.next > checkpoint);
        assert_eq!(
            page.checkpoint_after(page.events.len() - 1),
            &page.next,
            "an unfiltered page ends after its last event"
        );
        checkpoint = page.next.clone();
        seen.extend(page.events);
    }
    assert_eq!(seen.len(), 50);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(seen, everything(&store).await);
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 50);
}

/// Filters by stream type and event type, and a selective filter still makes progress.
pub async fn read_all_filters<S: EventStore>(store: S) {
    let orders = StreamId::new("Order", "1");
    let users = StreamId::new("User", "1");
    store
        .append(&orders, ExpectedVersion::NoStream, vec![event("Placed", 1), event("Shipped", 2)])
        .await
        .expect("append failed");
    store
        .append(&users, ExpectedVersion::NoStream, vec![event("Registered", 1), event("Placed", 2)])
        .await
        .expect("append failed");
    for i in 0..30 {
        store
            .append(&StreamId::new("Noise", i.to_string()), ExpectedVersion::NoStream, events(1))
            .await
            .expect("append failed");
    }
    store.append(&orders, ExpectedVersion::Any, vec![event("Placed", 3)]).await.expect("append failed");

    let by_type = ReadAllFilter::all().stream_type("Order");
    let page = store.read_all(&Checkpoint::START, &by_type, 100).await.expect("read_all failed");
    assert_eq!(
        page.events.iter().map(|e| e.event.event_type.as_str()).collect::<Vec<_>>(),
        ["Placed", "Shipped", "Placed"]
    );

    let placed = ReadAllFilter::all().event_type("Placed");
    let page = store.read_all(&Checkpoint::START, &placed, 100).await.expect("read_all failed");
    assert_eq!(page.events.len(), 3);
    assert!(page.events.iter().all(|e| e.event.event_type == "Placed"));

    let both = ReadAllFilter::all().stream_type("User").event_type("Placed");
    let page = store.read_all(&Checkpoint::START, &both, 100).await.expect("read_all failed");
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].stream.stream_type(), "User");

    // One event at a time through the noise: never skips, never repeats, ends.
    let mut checkpoint = Checkpoint::START;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = store.read_all(&checkpoint, &by_type, 1).await.expect("read_all failed");
        if page.events.is_empty() && page.next == checkpoint {
            break;
        }
        checkpoint = page.next.clone();
        seen.extend(page.events);
    }
    assert_eq!(seen.len(), 3, "a filtered reader must see each matching event once");
}

/// A checkpoint is the store's own: it round-trips through its text form, `head` is where a
/// reader that read everything stands, and a checkpoint of another store is refused.
pub async fn read_all_checkpoints_belong_to_their_store<S: EventStore>(store: S) {
    assert_eq!(store.head().await.expect("head failed"), Checkpoint::START, "an empty store's head is the start");
    store.append(&stream("a"), ExpectedVersion::NoStream, events(3)).await.expect("append failed");
    let page = store.read_all(&Checkpoint::START, &ReadAllFilter::all(), 2).await.expect("read_all failed");
    let text = page.next.to_string();
    let parsed: Checkpoint = text.parse().expect("a checkpoint's text must parse");
    assert_eq!(parsed, page.next);
    let rest = store.read_all(&parsed, &ReadAllFilter::all(), 10).await.expect("read_all failed");
    assert_eq!(rest.events.len(), 1, "resuming from the parsed checkpoint must read the rest");
    assert_eq!(rest.next, store.head().await.expect("head failed"));
    assert!(Checkpoint::START < page.next && page.next < rest.next, "checkpoints must be ordered");

    let other = crate::InMemoryStore::new();
    other.append(&stream("x"), ExpectedVersion::NoStream, events(1)).await.expect("append failed");
    let foreign = other.head().await.expect("head failed");
    match store.read_all(&foreign, &ReadAllFilter::all(), 10).await {
        Err(StoreError::ForeignCheckpoint { .. }) => {}
        other => panic!("a checkpoint of another store must be refused, got {other:?}"),
    }
}

/// Correlation, causation and headers come back as written.
pub async fn metadata_round_trip<S: EventStore>(store: S) {
    let s = stream("a");
    let metadata = Metadata::new()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_header("user", "ännä")
        .with_header("trace", "00-abc-01")
        .with_header("empty", "");
    let mut batch = events(2);
    batch[0].metadata = metadata.clone();
    let committed = store.append(&s, ExpectedVersion::NoStream, batch).await.expect("append failed").events;
    let read = all_of(&store, &s).await;
    assert_eq!(read[0].metadata, metadata);
    assert_eq!(read[1].metadata, Metadata::new());
    assert_eq!(committed[0].metadata, metadata);
}

/// A payload of several MiB is stored and read intact.
pub async fn large_payloads<S: EventStore>(store: S) {
    let s = stream("a");
    let text = "x".repeat(4 * 1024 * 1024);
    let mut batch = events(1);
    batch[0].event.payload = serde_json::json!({ "text": text }).to_string();
    store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");
    let read = all_of(&store, &s).await;
    let value: serde_json::Value = serde_json::from_str(&read[0].event.payload).expect("payload is not JSON");
    assert_eq!(value["text"].as_str().map(str::len), Some(text.len()));
}

/// Unicode everywhere, and `\u0000` inside JSON strings.
pub async fn unicode_and_nul<S: EventStore>(store: S) {
    let s = StreamId::new("Tëst", "ストリーム-🦀");
    let payload = serde_json::json!({ "name": "nul:\u{0}: emoji:🦀 rtl:שלום", "ß": "✓" });
    let mut batch = events(1);
    batch[0].event.payload = payload.to_string();
    batch[0].event.event_type = "Événement".to_owned();
    store.append(&s, ExpectedVersion::NoStream, batch).await.expect("append failed");
    let read = all_of(&store, &s).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].stream.id(), "ストリーム-🦀");
    assert_eq!(read[0].event.event_type, "Événement");
    let back: serde_json::Value = serde_json::from_str(&read[0].event.payload).expect("payload is not JSON");
    assert_eq!(back, payload);
}

/// Many streams keep their own versions and their own events.
pub async fn many_streams<S: EventStore>(store: S) {
    for i in 0..300u64 {
        store
            .append(&stream(&i.to_string()), ExpectedVersion::NoStream, events(i % 3 + 1))
            .await
            .expect("append failed");
    }
    for i in (0..300u64).step_by(37) {
        let s = stream(&i.to_string());
        assert_eq!(store.stream_version(&s).await.expect("stream_version failed"), Version(i % 3 + 1));
        let read = all_of(&store, &s).await;
        assert!(read.iter().all(|e| e.stream == s));
        assert_eq!(versions(&read), (1..=i % 3 + 1).collect::<Vec<_>>());
    }
    assert_eq!(everything(&store).await.len(), (0..300u64).map(|i| i % 3 + 1).sum::<u64>() as usize);
}

/// Events are found by id.
pub async fn find_event<S: EventStore>(store: S) {
    let committed =
        store.append(&stream("a"), ExpectedVersion::NoStream, events(3)).await.expect("append failed").events;
    let found = store.find_event(committed[1].event_id).await.expect("find_event failed");
    assert_eq!(found.as_ref(), Some(&committed[1]));
    assert!(store.find_event(Uuid::now_v7()).await.expect("find_event failed").is_none());
}

/// Snapshots: the latest is kept; an older one does not replace a newer one.
pub async fn snapshots<S: EventStore>(store: S) {
    let s = stream("a");
    assert!(store.load_snapshot(&s).await.expect("load_snapshot failed").is_none());
    let snapshot = |version: u64, state: &str| Snapshot {
        stream: s.clone(),
        version: Version(version),
        snapshot_version: 3,
        state: state.to_owned(),
    };
    store.save_snapshot(snapshot(10, r#"{"v":10}"#)).await.expect("save failed");
    store.save_snapshot(snapshot(20, r#"{"v":20,"ü":"\u0000"}"#)).await.expect("save failed");
    store.save_snapshot(snapshot(15, r#"{"v":15}"#)).await.expect("save failed");
    let loaded = store.load_snapshot(&s).await.expect("load_snapshot failed");
    assert_eq!(loaded, Some(snapshot(20, r#"{"v":20,"ü":"\u0000"}"#)));
    assert!(store.load_snapshot(&stream("b")).await.expect("load_snapshot failed").is_none());
}

/// A missing stream loads as the default state at version 0; `execute` creates it.
pub async fn repository_new_stream<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store);
    let id = "new".to_owned();
    let loaded = counters.load(&id).await.expect("load failed");
    assert!(loaded.is_new());
    assert_eq!(loaded.state, Counter::default());
    let committed = counters.execute(id.as_str(), |c| c.increment(5)).await.expect("execute failed");
    assert_eq!(committed.len(), 1);
    assert!(!committed.already_applied());
    assert_eq!(committed.version(), Some(Version(1)));
    assert_eq!(committed[0].event, CounterEvent::Incremented(Incremented { by: 5 }));
    let loaded = counters.load("new").await.expect("load failed");
    assert_eq!((loaded.value, loaded.version), (5, Version(1)));
    assert!(!loaded.is_new());
    let nothing = counters.execute(&id, |_| Ok(None::<Incremented>)).await;
    assert!(nothing.expect("execute failed").is_empty());
    assert_eq!(
        counters.store().stream_version(&StreamId::of::<Counter>(&id)).await.expect("version failed"),
        Version(1)
    );
    let refused = counters.execute(&id, |c| c.increment_within(10, 10)).await;
    assert!(matches!(refused, Err(RepositoryError::Command(CounterError::OverLimit { value: 5, .. }))), "{refused:?}");
}

/// Snapshots are written every N events and used; `load_at` travels back in time.
pub async fn repository_snapshots_and_time_travel<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store).with_cache(0);
    let id = "snap".to_owned();
    for by in 1..=25 {
        counters.execute(&id, |c| c.increment(by)).await.expect("execute failed");
    }
    let s = StreamId::of::<Counter>(&id);
    let snapshot =
        counters.store().load_snapshot(&s).await.expect("load_snapshot failed").expect("no snapshot after 25 events");
    assert_eq!((snapshot.version, snapshot.snapshot_version), (Version(20), 1));
    let loaded = counters.load(&id).await.expect("load failed");
    assert_eq!((loaded.value, loaded.applied, loaded.version), ((1..=25).sum(), 25, Version(25)));
    assert_eq!(loaded.from_snapshot, Some(Version(20)));
    let then = counters.load_at(&id, Version(7)).await.expect("load_at failed");
    assert_eq!((then.value, then.applied, then.version), ((1..=7).sum(), 7, Version(7)));
    let after_snapshot = counters.load_at(&id, Version(22)).await.expect("load_at failed");
    assert_eq!((after_snapshot.value, after_snapshot.version), ((1..=22).sum(), Version(22)));
    let at_snapshot = counters.load_at(&id, Version(20)).await.expect("load_at failed");
    assert_eq!((at_snapshot.value, at_snapshot.version), ((1..=20).sum(), Version(20)));
    let beyond = counters.load_at(&id, Version(99)).await.expect("load_at failed");
    assert_eq!(beyond.version, Version(25));
    assert_eq!(counters.history(&id).await.expect("history failed").len(), 25);
    assert_eq!(counters.stats().snapshots_written, 2);
}

/// A snapshot of another state version, or one that no longer deserializes, is ignored (and
/// said so on what `load` returns, and counted).
pub async fn repository_ignores_bad_snapshots<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store).with_cache(0);
    for (name, snapshot_version, state) in
        [("other-version", 2, r#"{"value":1000,"applied":1000}"#), ("corrupt", 1, r#"{"value":"not a number"}"#)]
    {
        let id = name.to_owned();
        for _ in 0..3 {
            counters.execute(&id, |c| c.increment(1)).await.expect("execute failed");
        }
        let s = StreamId::of::<Counter>(&id);
        let bad = Snapshot { stream: s, version: Version(3), snapshot_version, state: state.to_owned() };
        counters.store().save_snapshot(bad).await.expect("save failed");
        let loaded = counters.load(&id).await.expect("a bad snapshot must not be an error");
        assert_eq!((loaded.value, loaded.version), (3, Version(3)), "{name}: the stream must be replayed");
        assert_eq!(loaded.ignored_snapshot.as_ref().map(|ignored| ignored.version), Some(Version(3)), "{name}");
    }
    assert_eq!(counters.stats().snapshots_ignored, 2);
}

/// A snapshot ahead of its stream, or at version 0, is impossible history: a typed `Corrupt`
/// on load and on execute, never a conflict retried forever nor a double replay.
pub async fn repository_refuses_impossible_snapshots<S: EventStore + Clone>(store: S) {
    let counters = Repository::<Counter, _>::new(store).with_retry(RetryPolicy::attempts(5));
    for (name, at) in [("ahead", 50), ("zero", 0)] {
        let id = name.to_owned();
        for _ in 0..5 {
            counters.execute(&id, |c| c.increment(1)).await.expect("execute failed");
        }
        let s = StreamId::of::<Counter>(&id);
        let state = r#"{"value":50,"applied":50}"#.to_owned();
        let impossible = Snapshot { stream: s.clone(), version: Version(at), snapshot_version: 1, state };
        counters.store().save_snapshot(impossible).await.expect("save failed");
        let fresh = Repository::<Counter, _>::new(counters.store().clone()).with_retry(RetryPolicy::attempts(5));
        for error in [
            fresh.load(&id).await.expect_err("load must refuse"),
            fresh.execute(&id, |c| c.increment(1)).await.expect_err("execute must refuse"),
        ] {
            match &error {
                RepositoryError::Store(StoreError::Corrupt(corruption)) => {
                    assert_eq!(corruption.stream.as_ref(), Some(&s), "{name}: {error}");
                    assert_eq!(corruption.version, Some(Version(at)), "{name}: {error}");
                }
                other => panic!("{name}: expected Corrupt, got {other:?}"),
            }
        }
        assert_eq!(fresh.stats().conflicts_retried, 0, "{name}: nothing to retry");
        assert_eq!(counters.store().stream_version(&s).await.expect("version failed"), Version(5));
    }
}

/// A command id makes a retried request return the events it already stored.
pub async fn repository_command_ids<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store);
    let id = "cmd".to_owned();
    let command_id = Uuid::now_v7();
    let cause_metadata = Metadata::new().with_correlation_id(Uuid::now_v7()).with_header("tenant", "t1");
    let options = CommandOptions::default().with_command_id(command_id).with_metadata(cause_metadata.clone());
    let first = counters.execute_with(&id, options.clone(), |c| c.increment(3)).await.expect("execute failed");
    let again = counters.execute_with(&id, options, |c| c.increment(3)).await.expect("retry failed");
    assert!(!first.already_applied() && again.already_applied());
    assert_eq!(first.events, again.events, "a retried command must return the stored events");
    assert_eq!(counters.load(&id).await.expect("load failed").value, 3, "a retried command must not apply twice");
    assert_eq!(first[0].metadata, cause_metadata);
    assert_eq!(first[0].event_id, CommandOptions::derived_event_id(command_id, 0));

    let caused = CommandOptions::caused_by(&first[0]);
    let next = counters.execute_with(&id, caused, |c| c.increment(1)).await.expect("execute failed");
    assert_eq!(next[0].metadata.correlation_id, cause_metadata.correlation_id);
    assert_eq!(next[0].metadata.causation_id, Some(first[0].event_id));

    let async_result = counters
        .execute_async(&id, |state: Counter| async move {
            tokio::task::yield_now().await;
            Ok::<_, CounterError>((state.increment(state.value)?, state.increment(1)?))
        })
        .await
        .expect("execute_async failed");
    assert_eq!(async_result.len(), 2, "an async command may produce several events");
    assert_eq!(async_result[0].event, CounterEvent::Incremented(Incremented { by: 4 }));
    let async_id = Uuid::now_v7();
    let options = CommandOptions::default().with_command_id(async_id);
    let once = counters
        .execute_async_with(&id, options.clone(), |state: Counter| async move { state.increment(1) })
        .await
        .expect("execute_async_with failed");
    let twice = counters
        .execute_async_with(&id, options, |state: Counter| async move { state.increment(1) })
        .await
        .expect("execute_async_with failed");
    assert_eq!(once.events, twice.events);
    assert!(twice.already_applied());
}

/// A cached aggregate is caught up with events another writer appended.
pub async fn repository_cache_catches_up<S: EventStore + Clone>(store: S) {
    let cached = Repository::<Counter, _>::new(store.clone()).with_cache(2);
    let other = Repository::<Counter, _>::new(store);
    let id = "cache".to_owned();
    cached.execute(&id, |c| c.increment(1)).await.expect("execute failed");
    assert_eq!(cached.load(&id).await.expect("load failed").value, 1);
    other.execute(&id, |c| c.increment(10)).await.expect("execute failed");
    let loaded = cached.load(&id).await.expect("load failed");
    assert_eq!((loaded.value, loaded.version), (11, Version(2)), "the cache must catch up with other writers");
    cached.execute(&id, |c| c.increment(100)).await.expect("execute with a stale cache must succeed");
    for i in 0..5 {
        cached.execute(&format!("evict-{i}"), |c| c.increment(1)).await.expect("execute failed");
    }
    assert_eq!(cached.load(&id).await.expect("load failed").value, 111);
    assert!(cached.stats().cache_hits > 0);
}

/// Where a forced interleaving happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// After the first `find_event` (the command id check) answered.
    AfterFindEvent,
    /// Before the first `append` reaches the store.
    BeforeAppend,
}

type Meanwhile = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// `store`, running another writer's work once, at `at`: a race forced deterministically.
fn interleaved<S: EventStore>(store: S, at: Hook, meanwhile: Meanwhile) -> super::Hooked<S> {
    let once = std::sync::Arc::new(std::sync::Mutex::new(Some(meanwhile)));
    let hook = move || -> std::pin::Pin<Box<dyn Future<Output = Option<StoreError>> + Send>> {
        let work = once.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        Box::pin(async move {
            if let Some(work) = work {
                work().await;
            }
            None
        })
    };
    let hooked = super::Hooked::new(store);
    match at {
        Hook::AfterFindEvent => hooked.after_find_event(hook),
        Hook::BeforeAppend => hooked.before_append(hook),
    }
}

/// Two deliveries of one command id, raced at every point that matters: the second delivery
/// returns the first one's events (never a refusal, never `EventIdReused`), applies nothing
/// twice, and leaves its cache and the stored snapshot right.
pub async fn repository_command_id_races<S: EventStore + Clone>(store: S) {
    type Decide = fn(&Counter) -> Result<Incremented, CounterError>;
    let cases: [(&str, Hook, Decide); 4] = [
        // B checked the id, A committed, B loads A's events and decides the same events.
        ("same-decision", Hook::AfterFindEvent, |c| c.increment(1)),
        // ... and B's decision on the new state is a refusal.
        ("refused-after", Hook::AfterFindEvent, |c| c.increment_within(1, 9 + 1)),
        // ... and B decides other events under the same derived ids.
        ("other-decision", Hook::AfterFindEvent, Counter::increment_past_value),
        // B loaded before A committed; A commits just before B's append.
        ("append-finds", Hook::BeforeAppend, |c| c.increment(1)),
    ];
    for (name, hook, decide) in cases {
        let id = format!("race-{name}");
        // Nine events first, so that the raced command crosses the snapshot boundary (10).
        let setup = Repository::<Counter, _>::new(store.clone());
        for _ in 0..9 {
            setup.execute(&id, |c| c.increment(1)).await.expect("setup failed");
        }
        let command_id = Uuid::now_v7();
        let options = CommandOptions::default().with_command_id(command_id);
        let first = std::sync::Arc::new(std::sync::Mutex::new(None));
        let meanwhile: Meanwhile = {
            let (store, id, options, first) = (store.clone(), id.clone(), options.clone(), first.clone());
            Box::new(move || {
                Box::pin(async move {
                    let a = Repository::<Counter, _>::new(store);
                    let done = a.execute_with(&id, options, decide).await.expect("delivery A failed");
                    *first.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(done.events);
                })
            })
        };
        let b = Repository::<Counter, _>::new(interleaved(store.clone(), hook, meanwhile));
        // B's cache holds the state before the race, as a busy process's would.
        assert_eq!(b.load(&id).await.expect("load failed").version, Version(9));
        let outcome = b.execute_with(&id, options, decide).await;
        let a_events = first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().expect("A never ran");
        let done = match outcome {
            Ok(done) => done,
            Err(error) => panic!("{name}: a retried command must return the original outcome, got {error:?}"),
        };
        let s = StreamId::of::<Counter>(&id);
        assert_eq!(
            store.stream_version(&s).await.expect("version failed"),
            Version(10),
            "{name}: one command, one event"
        );
        let truth: u64 = all_of(&store, &s)
            .await
            .iter()
            .map(|e| match serde_json::from_str::<Incremented>(&e.event.payload) {
                Ok(Incremented { by }) => by,
                Err(error) => panic!("{name}: {error}"),
            })
            .sum();
        let cached = b.load(&id).await.expect("load failed");
        assert_eq!(
            (cached.value, cached.applied, cached.version),
            (truth, 10, Version(10)),
            "{name}: B's cache is wrong"
        );
        let snapshot = store.load_snapshot(&s).await.expect("load_snapshot failed").expect("no snapshot at 10");
        let snapshotted: Counter = serde_json::from_str(&snapshot.state).expect("snapshot does not decode");
        assert_eq!(
            (snapshotted.value, snapshotted.applied, snapshot.version),
            (truth, 10, Version(10)),
            "{name}: wrong snapshot"
        );
        assert_eq!(done.events, a_events, "{name}: B must return A's events");
        assert!(done.already_applied(), "{name}: B must report the command as already applied");
        // And B goes on from there.
        b.execute(&id, |c| c.increment(1)).await.expect("execute after the race failed");
        assert_eq!(b.load(&id).await.expect("load failed").applied, 11, "{name}");
    }
}

/// 8 tasks × 250 commands on one aggregate, with retry: exactly 2,000 events, versions 1..2000.
pub async fn concurrent_writers_one_aggregate<S: EventStore + Clone>(store: S) {
    let counters = Repository::<Counter, _>::new(store).with_retry(RetryPolicy::default()).with_cache(16);
    let id = "contended".to_owned();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let counters = counters.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                counters.execute(&id, |c| c.increment(1)).await.expect("a writer did not get through");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let s = StreamId::of::<Counter>(&id);
    let all = all_of(counters.store(), &s).await;
    assert_eq!(versions(&all), (1..=2000).collect::<Vec<_>>(), "versions must be 1..=2000 with no gap or duplicate");
    let loaded = Repository::<Counter, _>::new(counters.store().clone()).load(&id).await.expect("load failed");
    assert_eq!((loaded.value, loaded.version), (2000, Version(2000)));
}

/// A reader following read-all while 8 writers append sees every event exactly once, in
/// store order.
pub async fn read_all_while_writing<S: EventStore + Clone>(store: S) {
    const WRITERS: u64 = 8;
    const BATCHES: u64 = 40;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = stream(&format!("writer-{w}"));
            for b in 0..BATCHES {
                let size = b % 3 + 1;
                store.append(&s, ExpectedVersion::Any, events(size)).await.expect("append failed");
                tokio::task::yield_now().await;
            }
        }));
    }
    let expected: u64 = WRITERS * (0..BATCHES).map(|b| b % 3 + 1).sum::<u64>();
    let mut checkpoint = Checkpoint::START;
    let mut seen: Vec<StoredEvent> = Vec::new();
    let mut idle_rounds = 0;
    while (seen.len() as u64) < expected && idle_rounds < 10_000 {
        let page = store.read_all(&checkpoint, &ReadAllFilter::all(), 13).await.expect("read_all failed");
        if page.events.is_empty() {
            idle_rounds += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        checkpoint = page.next.clone();
        seen.extend(page.events);
    }
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let tail = store.read_all(&checkpoint, &ReadAllFilter::all(), usize::MAX).await.expect("read_all failed");
    seen.extend(tail.events);
    assert_eq!(seen.len() as u64, expected, "the reader must see every event exactly once");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "the reader must see store order");
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len() as u64, expected, "no event may be repeated");
    assert_eq!(seen, everything(&store).await, "the follower must agree with a reader from the start");
    let mut per_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &seen {
        per_stream.entry(e.stream.id()).or_default().push(e.stream_version.0);
    }
    for (stream, versions) in per_stream {
        assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "{stream}: versions out of order in store order");
    }
}

/// 16 writers on different streams and 2 followers of read-all: each follower sees every
/// committed event exactly once, and both see the same order.
pub async fn read_all_followers_agree<S: EventStore + Clone>(store: S) {
    const WRITERS: u64 = 16;
    const BATCHES: u64 = 25;
    let expected: u64 = WRITERS * (0..BATCHES).map(|b| b % 4 + 1).sum::<u64>();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = stream(&format!("agree-{w}"));
                for b in 0..BATCHES {
                    store.append(&s, ExpectedVersion::Any, events(b % 4 + 1)).await.expect("append failed");
                }
            })
        })
        .collect();
    let followers: Vec<_> = (0..2)
        .map(|f| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut checkpoint = Checkpoint::START;
                let mut seen: Vec<Uuid> = Vec::new();
                // A bound in time, not in empty reads: a loaded machine makes many empty reads
                // before the writers are done.
                let deadline = Instant::now() + Duration::from_secs(120);
                while (seen.len() as u64) < expected && Instant::now() < deadline {
                    let page =
                        store.read_all(&checkpoint, &ReadAllFilter::all(), 7 + f * 5).await.expect("read_all failed");
                    if page.events.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    seen.extend(page.events.iter().map(|event| event.event_id));
                    checkpoint = page.next;
                }
                seen
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let mut orders = Vec::new();
    for follower in followers {
        orders.push(follower.await.expect("a follower panicked"));
    }
    let truth: Vec<Uuid> = everything(&store).await.iter().map(|event| event.event_id).collect();
    assert_eq!(truth.len() as u64, expected);
    for (f, order) in orders.iter().enumerate() {
        assert_eq!(order.len() as u64, expected, "follower {f} must see every event once");
        assert_eq!(order.iter().collect::<HashSet<_>>().len() as u64, expected, "follower {f} saw an event twice");
        assert_eq!(order, &truth, "follower {f} must see the store's one order");
    }
}

/// A store with a commit signal fires it after an append that writes (followers in the
/// process then wake at once); a store without one is followed by polling.
pub async fn commit_signal_fires_on_append<S: EventStore>(store: S) {
    let Some(signal) = store.commit_signal() else { return };
    let seen = signal.generation();
    store.append(&stream("signalled"), ExpectedVersion::NoStream, events(1)).await.expect("append");
    assert_ne!(signal.generation(), seen, "an append that wrote must fire the commit signal");
}

/// A read model of every `Incremented` of `Counter` streams, written by hand as the derive
/// writes one.
#[derive(Default)]
struct Totals {
    total: u64,
    positions: Vec<crate::record::Position>,
}

impl crate::projection::Projection for Totals {
    const NAME: &'static str = "conformance_totals";
    const VERSION: u32 = 1;
    const SELECTION: &'static [crate::projection::Selected] = &[crate::projection::Selected {
        rust_type: "Incremented",
        stream_type: Some(Counter::TYPE),
        event_type: Incremented::NAME,
        aliases: &[],
    }];

    fn dispatch(&mut self, record: &StoredEvent) -> Result<bool, crate::projection::DispatchError> {
        if crate::projection::selected_index(Self::SELECTION, record) != Some(0) {
            return Ok(false);
        }
        let event =
            crate::projection::decode_event::<Incremented>(record).map_err(crate::projection::DispatchError::Decode)?;
        self.total += event.event.by;
        self.positions.push(event.position);
        Ok(true)
    }
}

/// A projection runner catches up on events written before it started, then follows writers
/// (woken by the commit signal or its poll), handing out each selected event once, in order.
pub async fn projection_runner_catches_up_and_follows<S: EventStore>(store: S) {
    use crate::projection::{InMemoryCheckpointStore, ProjectionOptions, ProjectionRunner};
    let store = std::sync::Arc::new(store);
    let increment = |by: u64| NewEvent::new(RawEvent::new(Incremented::NAME, 1, format!(r#"{{"by":{by}}}"#)));
    for n in 0..30 {
        let counter = StreamId::new(Counter::TYPE, format!("before-{n}"));
        store.append(&counter, ExpectedVersion::NoStream, vec![increment(1)]).await.expect("append");
        store.append(&stream(&format!("other-{n}")), ExpectedVersion::NoStream, events(1)).await.expect("append");
    }
    let options = ProjectionOptions { batch_size: 7, poll_interval: Duration::from_millis(50), ..Default::default() };
    let runner = ProjectionRunner::with_shared_store(
        Totals::default(),
        std::sync::Arc::clone(&store),
        InMemoryCheckpointStore::new(),
    )
    .with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(Duration::from_secs(30)).await.expect("the runner catches up");
    assert_eq!(handle.read(|totals| totals.total), 30);
    for n in 0..10 {
        let counter = StreamId::new(Counter::TYPE, format!("after-{n}"));
        store.append(&counter, ExpectedVersion::NoStream, vec![increment(2)]).await.expect("append");
    }
    handle.wait_for_head(Duration::from_secs(30)).await.expect("the runner follows");
    handle.read(|totals| {
        assert_eq!(totals.total, 50);
        assert_eq!(totals.positions.len(), 40, "each selected event once");
        assert!(totals.positions.windows(2).all(|pair| pair[0] < pair[1]), "in the store's order");
    });
    let status = handle.status().await.expect("status");
    assert!(status.is_healthy(0), "{status:?}");
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
}

#[cfg(test)]
mod tests {
    /// Every public check of this module is in the one list the suite runs.
    #[test]
    fn every_check_is_listed() {
        let source = include_str!("conformance.rs");
        let defined: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split(['<', '(']).next())
            .collect();
        let mut listed = super::CHECKS.to_vec();
        let mut sorted = defined.clone();
        listed.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(sorted, listed, "a check is defined but not run, or run but not defined");
    }
}
