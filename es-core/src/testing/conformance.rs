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
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::counter::{Counter, CounterEvent, Incremented};
use crate::record::{Metadata, StoredEvent, Version};
use crate::repository::{CommandOptions, Repository, RetryPolicy};
use crate::store::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, ReadAllFilter, Snapshot, StoreError, StreamId, StreamPages,
};

/// Runs every check of the suite against the store the factory makes; see the module docs.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            append_and_read, expected_version_no_stream, expected_version_exact, expected_version_any,
            conflicts_write_nothing, idempotent_retry, reused_event_ids, batches_are_all_or_nothing,
            read_stream_from_version_in_pages, read_all_in_pages, read_all_filters, metadata_round_trip,
            large_payloads, unicode_and_nul, many_streams, find_event, snapshots, repository_new_stream,
            repository_snapshots_and_time_travel, repository_ignores_bad_snapshots, repository_command_ids,
            repository_cache_catches_up, concurrent_writers_one_aggregate, read_all_while_writing
        );
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

fn stream(name: &str) -> StreamId {
    StreamId::new("Test", name)
}

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: format!(r#"{{"n":{n}}}"#),
        metadata: Metadata::new(),
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count).map(|n| event("Happened", n)).collect()
}

async fn all_of<S: EventStore>(store: &S, stream: &StreamId) -> Vec<StoredEvent> {
    store.read_stream(stream, Version(1), usize::MAX).await.expect("read_stream failed")
}

async fn everything<S: EventStore>(store: &S) -> Vec<StoredEvent> {
    store.read_all(Checkpoint::START, &ReadAllFilter::all(), usize::MAX).await.expect("read_all failed").events
}

fn versions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.stream_version.0).collect()
}

fn assert_conflict(result: Result<Vec<StoredEvent>, StoreError>, actual: u64) {
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
    let committed = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");
    assert_eq!(versions(&committed), [1, 2, 3]);
    let read = all_of(&store, &s).await;
    assert_eq!(read, committed, "read_stream must return what append committed");
    for (stored, new) in read.iter().zip(&batch) {
        assert_eq!(stored.event_id, new.event_id);
        assert_eq!(stored.event_type, new.event_type);
        assert_eq!(stored.schema_version, new.schema_version);
        assert_eq!(stored.payload, new.payload);
        assert_eq!((stored.stream_type.as_str(), stored.stream_id.as_str()), ("Test", "a"));
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
    let committed = store.append(&s, ExpectedVersion::Exact(Version(2)), events(2)).await.expect("append at 2 failed");
    assert_eq!(versions(&committed), [3, 4]);
    assert_conflict(store.append(&stream("new"), ExpectedVersion::Exact(Version(1)), events(1)).await, 0);
}

/// `Any` appends after whatever is there, including nothing.
pub async fn expected_version_any<S: EventStore>(store: S) {
    let s = stream("a");
    store.append(&s, ExpectedVersion::Any, events(2)).await.expect("append failed");
    let committed = store.append(&s, ExpectedVersion::Any, events(1)).await.expect("append failed");
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
    let first = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");
    let again = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("retry must succeed");
    assert_eq!(again, first, "a retry must return the original events");
    store.append(&s, ExpectedVersion::Exact(Version(3)), events(1)).await.expect("append failed");
    let late = store.append(&s, ExpectedVersion::Exact(Version(0)), batch).await.expect("late retry must succeed");
    assert_eq!(late, first);
    assert_eq!(everything(&store).await.len(), 4, "retries must not write");
}

/// An id reused for other content, in another stream, twice in a batch, or a batch that only
/// partly overlaps stored ids: typed errors, nothing written.
pub async fn reused_event_ids<S: EventStore>(store: S) {
    let s = stream("a");
    let batch = events(2);
    store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");

    let mut other_content = batch.clone();
    other_content[1].payload = r#"{"n":99}"#.to_owned();
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
    let stored = store.append(&stream("other"), ExpectedVersion::NoStream, events(1)).await.expect("append failed");
    let mut batch = events(20);
    batch[19].event_id = stored[0].event_id;
    assert!(store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.is_err());
    assert_eq!(store.stream_version(&s).await.expect("stream_version failed"), Version::NONE);
    for event in &batch[..19] {
        assert!(store.find_event(event.event_id).await.expect("find_event failed").is_none());
    }
    let ok = store.append(&s, ExpectedVersion::NoStream, events(20)).await.expect("append failed");
    assert_eq!(versions(&ok), (1..=20).collect::<Vec<_>>());
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
        let page = store.read_all(checkpoint, &ReadAllFilter::all(), 7).await.expect("read_all failed");
        assert!(page.events.len() <= 7);
        if page.events.is_empty() {
            assert_eq!(page.next, checkpoint, "an empty page must not move the checkpoint");
            break;
        }
        assert!(page.next > checkpoint);
        checkpoint = page.next;
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
    let page = store.read_all(Checkpoint::START, &by_type, 100).await.expect("read_all failed");
    assert_eq!(page.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["Placed", "Shipped", "Placed"]);

    let placed = ReadAllFilter::all().event_type("Placed");
    let page = store.read_all(Checkpoint::START, &placed, 100).await.expect("read_all failed");
    assert_eq!(page.events.len(), 3);
    assert!(page.events.iter().all(|e| e.event_type == "Placed"));

    let both = ReadAllFilter::all().stream_type("User").event_type("Placed");
    let page = store.read_all(Checkpoint::START, &both, 100).await.expect("read_all failed");
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].stream_type, "User");

    // One event at a time through the noise: never skips, never repeats, ends.
    let mut checkpoint = Checkpoint::START;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = store.read_all(checkpoint, &by_type, 1).await.expect("read_all failed");
        if page.events.is_empty() && page.next == checkpoint {
            break;
        }
        checkpoint = page.next;
        seen.extend(page.events);
    }
    assert_eq!(seen.len(), 3, "a filtered reader must see each matching event once");
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
    let committed = store.append(&s, ExpectedVersion::NoStream, batch).await.expect("append failed");
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
    batch[0].payload = serde_json::json!({ "text": text }).to_string();
    store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.expect("append failed");
    let read = all_of(&store, &s).await;
    let value: serde_json::Value = serde_json::from_str(&read[0].payload).expect("payload is not JSON");
    assert_eq!(value["text"].as_str().map(str::len), Some(text.len()));
}

/// Unicode everywhere, and `\u0000` inside JSON strings.
pub async fn unicode_and_nul<S: EventStore>(store: S) {
    let s = StreamId::new("Tëst", "ストリーム-🦀");
    let payload = serde_json::json!({ "name": "nul:\u{0}: emoji:🦀 rtl:שלום", "ß": "✓" });
    let mut batch = events(1);
    batch[0].payload = payload.to_string();
    batch[0].event_type = "Événement".to_owned();
    store.append(&s, ExpectedVersion::NoStream, batch).await.expect("append failed");
    let read = all_of(&store, &s).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].stream_id, "ストリーム-🦀");
    assert_eq!(read[0].event_type, "Événement");
    let back: serde_json::Value = serde_json::from_str(&read[0].payload).expect("payload is not JSON");
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
        assert!(read.iter().all(|e| e.stream_id == s.id));
        assert_eq!(versions(&read), (1..=i % 3 + 1).collect::<Vec<_>>());
    }
    assert_eq!(everything(&store).await.len(), (0..300u64).map(|i| i % 3 + 1).sum::<u64>() as usize);
}

/// Events are found by id.
pub async fn find_event<S: EventStore>(store: S) {
    let committed = store.append(&stream("a"), ExpectedVersion::NoStream, events(3)).await.expect("append failed");
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
    let committed = counters.execute(&id, |c| c.increment(5)).await.expect("execute failed");
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].stream_version, Version(1));
    assert_eq!(committed[0].event, CounterEvent::Incremented(Incremented { by: 5 }));
    let loaded = counters.load(&id).await.expect("load failed");
    assert_eq!((loaded.value, loaded.version), (5, Version(1)));
    assert!(!loaded.is_new());
    let nothing = counters.execute(&id, |_| Ok::<_, std::convert::Infallible>(None::<Incremented>)).await;
    assert!(nothing.expect("execute failed").is_empty());
    assert_eq!(
        counters.store().stream_version(&Repository::<Counter, S>::stream_of(&id)).await.expect("version failed"),
        Version(1)
    );
}

/// Snapshots are written every N events and used; `load_at` travels back in time.
pub async fn repository_snapshots_and_time_travel<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store);
    let id = "snap".to_owned();
    for by in 1..=25 {
        counters.execute(&id, |c| c.increment(by)).await.expect("execute failed");
    }
    let s = Repository::<Counter, S>::stream_of(&id);
    let snapshot =
        counters.store().load_snapshot(&s).await.expect("load_snapshot failed").expect("no snapshot after 25 events");
    assert_eq!((snapshot.version, snapshot.snapshot_version), (Version(20), 1));
    let loaded = counters.load(&id).await.expect("load failed");
    assert_eq!((loaded.value, loaded.applied, loaded.version), ((1..=25).sum(), 25, Version(25)));
    let then = counters.load_at(&id, Version(7)).await.expect("load_at failed");
    assert_eq!((then.value, then.applied, then.version), ((1..=7).sum(), 7, Version(7)));
    let after_snapshot = counters.load_at(&id, Version(22)).await.expect("load_at failed");
    assert_eq!((after_snapshot.value, after_snapshot.version), ((1..=22).sum(), Version(22)));
    let beyond = counters.load_at(&id, Version(99)).await.expect("load_at failed");
    assert_eq!(beyond.version, Version(25));
    assert_eq!(counters.history(&id).await.expect("history failed").len(), 25);
}

/// A snapshot of another state version, or one that no longer deserializes, is ignored.
pub async fn repository_ignores_bad_snapshots<S: EventStore>(store: S) {
    let counters = Repository::<Counter, _>::new(store);
    for (name, snapshot_version, state) in
        [("other-version", 2, r#"{"value":1000,"applied":1000}"#), ("corrupt", 1, r#"{"value":"not a number"}"#)]
    {
        let id = name.to_owned();
        for _ in 0..3 {
            counters.execute(&id, |c| c.increment(1)).await.expect("execute failed");
        }
        let s = Repository::<Counter, S>::stream_of(&id);
        let bad = Snapshot { stream: s, version: Version(3), snapshot_version, state: state.to_owned() };
        counters.store().save_snapshot(bad).await.expect("save failed");
        let loaded = counters.load(&id).await.expect("a bad snapshot must not be an error");
        assert_eq!((loaded.value, loaded.version), (3, Version(3)), "{name}: the stream must be replayed");
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
    assert_eq!(first, again, "a retried command must return the stored events");
    assert_eq!(counters.load(&id).await.expect("load failed").value, 3, "a retried command must not apply twice");
    assert_eq!(first[0].metadata, cause_metadata);
    assert_eq!(first[0].event_id, CommandOptions::derived_event_id(command_id, 0));

    let caused = CommandOptions::caused_by(&first[0]);
    let next = counters.execute_with(&id, caused, |c| c.increment(1)).await.expect("execute failed");
    assert_eq!(next[0].metadata.correlation_id, cause_metadata.correlation_id);
    assert_eq!(next[0].metadata.causation_id, Some(first[0].event_id));

    let async_result = counters
        .execute_async(&id, CommandOptions::default(), |state: Counter| async move {
            tokio::task::yield_now().await;
            state.increment(state.value)
        })
        .await
        .expect("execute_async failed");
    assert_eq!(async_result[0].event, CounterEvent::Incremented(Incremented { by: 4 }));
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
    let s = Repository::<Counter, S>::stream_of(&id);
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
        let page = store.read_all(checkpoint, &ReadAllFilter::all(), 13).await.expect("read_all failed");
        if page.events.is_empty() {
            idle_rounds += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        checkpoint = page.next;
        seen.extend(page.events);
    }
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let tail = store.read_all(checkpoint, &ReadAllFilter::all(), usize::MAX).await.expect("read_all failed");
    seen.extend(tail.events);
    assert_eq!(seen.len() as u64, expected, "the reader must see every event exactly once");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "the reader must see store order");
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len() as u64, expected, "no event may be repeated");
    assert_eq!(seen, everything(&store).await, "the follower must agree with a reader from the start");
    let mut per_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &seen {
        per_stream.entry(e.stream_id.as_str()).or_default().push(e.stream_version.0);
    }
    for (stream, versions) in per_stream {
        assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "{stream}: versions out of order in store order");
    }
}
