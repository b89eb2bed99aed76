//! The JetStream relay and consumer against the real server (127.0.0.1:4222, or `NATS_URL`):
//! every event reaches a SQLite read model exactly once and in order across relay restarts,
//! a relay killed with SIGKILL, and a consumer killed with SIGKILL, while writers append; the
//! stream's configuration is checked; poisoned messages are parked or stop the consumer; a
//! second relay waits for the lease and takes over.
//!
//! The test binary runs itself as the children: `relay_child` and `consumer_child` are ignored
//! tests that do nothing unless the parent sets their environment variables. Each test has a
//! stream of its own (`ES_TEST_<label>_<time>_<random>`) and deletes it at the end.

#![allow(missing_docs)]

mod nats_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es::nats::async_nats::jetstream::stream::{Config, RetentionPolicy};
use es::nats::sqlite::relay_checkpoints;
use es::nats::{
    Consumer, ConsumerError, ConsumerOptions, Relay, RelayError, RelayOptions, RelayState, StreamError, StreamSettings,
};
use es::projection::{InMemoryCheckpointStore, OnFailure, ProjectionOptions};
use es::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RawEvent, RetryPolicy, SqliteStore, StreamId};
use nats_common::*;

const WAIT: Duration = Duration::from_secs(60);
const CHILD_STORE: &str = "ES_NATS_CHILD_STORE";
const CHILD_MODEL: &str = "ES_NATS_CHILD_MODEL";
const CHILD_STREAM: &str = "ES_NATS_CHILD_STREAM";
const CHILD_HANG: &str = "ES_NATS_CHILD_HANG";
const RELAY_READY: &str = "relay-child: publishing";
const CONSUMER_READY: &str = "consumer-child: running";
/// What a child in hang mode prints when it stopped between JetStream's acknowledgements (or
/// the read model's commit) and what follows them: the moment a kill must not lose or repeat.
const HUNG: &str = "child: hung after the acknowledgements";

/// A commit that succeeds `pass` times, then (after doing its work) says so and never returns:
/// a process stuck exactly between two steps, for the parent to kill there.
struct HangAfter<C> {
    inner: C,
    pass: std::sync::atomic::AtomicUsize,
}

impl<C> HangAfter<C> {
    fn new(inner: C, pass: usize) -> Self {
        Self { inner, pass: std::sync::atomic::AtomicUsize::new(pass) }
    }

    async fn maybe_hang(&self) {
        if self.pass.fetch_sub(1, Ordering::AcqRel) == 0 {
            println!("\n{HUNG}");
            std::future::pending::<()>().await;
        }
    }
}

/// The relay's checkpoint save hangs instead of saving: the batch is acknowledged, its
/// checkpoint not stored.
impl<C: es::projection::CommitBatch<()>> es::projection::CommitBatch<()> for HangAfter<C> {
    async fn load(
        &self,
        name: &str,
    ) -> Result<Option<es::projection::SavedCheckpoint>, es::projection::CheckpointStoreError> {
        self.inner.load(name).await
    }

    async fn commit(
        &self,
        projection: &Arc<std::sync::Mutex<()>>,
        saved: &es::projection::SavedCheckpoint,
    ) -> Result<(), es::projection::CheckpointStoreError> {
        self.maybe_hang().await;
        self.inner.commit(projection, saved).await
    }
}

/// The consumer's commit hangs after committing: the batch is in the read model, its messages
/// not acknowledged.
impl<C: es::nats::CommitApplied<Ledger>> es::nats::CommitApplied<Ledger> for HangAfter<C> {
    async fn load(&self, consumer: &str) -> Result<es::nats::Applied, es::projection::CheckpointStoreError> {
        self.inner.load(consumer).await
    }

    async fn commit(
        &self,
        consumer: &str,
        projection: &Arc<std::sync::Mutex<Ledger>>,
        applied: &[(StreamId, es::Version)],
        parked: &[es::projection::ParkedEvent],
    ) -> Result<(), es::projection::CheckpointStoreError> {
        self.inner.commit(consumer, projection, applied, parked).await?;
        self.maybe_hang().await;
        Ok(())
    }
}

fn relay_options() -> RelayOptions {
    RelayOptions {
        batch_size: 20,
        poll_interval: Duration::from_millis(50),
        lease_ttl: Duration::from_millis(1500),
        ..RelayOptions::default()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) }
}

fn consumer_options(batch_size: usize) -> ConsumerOptions {
    ConsumerOptions {
        projection: ProjectionOptions { batch_size, retry: fast_retry(), ..ProjectionOptions::default() },
        ack_wait: Duration::from_secs(2),
        gap_delay: Duration::from_millis(100),
        gap_deliveries: 60,
        ..ConsumerOptions::default()
    }
}

/// The settings a child was given: stream name and prefix, `|`-separated.
fn child_settings() -> Option<StreamSettings> {
    let text = std::env::var(CHILD_STREAM).ok()?;
    let (name, prefix) = text.split_once('|')?;
    Some(StreamSettings::new(name, prefix))
}

fn child_env(settings: &StreamSettings, path_var: &'static str, path: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        (CHILD_STREAM, format!("{}|{}", settings.name, settings.subjects.prefix())),
        (path_var, path.display().to_string()),
    ]
}

#[test]
#[ignore = "a child process of `every_event_arrives_once_in_order_across_relay_restarts_and_a_killed_relay`"]
fn relay_child() {
    let (Some(settings), Ok(path)) = (child_settings(), std::env::var(CHILD_STORE)) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        // In hang mode, the second batch's checkpoint is never saved.
        let pass = if std::env::var(CHILD_HANG).is_ok() { 1 } else { usize::MAX };
        let relay = Relay::new(
            store.clone(),
            HangAfter::new(relay_checkpoints(store.clone()).await.unwrap(), pass),
            jetstream().await,
            settings,
        )
        .with_options(relay_options());
        let handle = relay.handle();
        let task = tokio::spawn(relay.run());
        while handle.published().0 == 0 {
            assert!(!task.is_finished(), "the relay stopped: {:?}", handle.state());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("\n{RELAY_READY}");
        task.await.unwrap().unwrap();
    });
}

#[test]
#[ignore = "a child process of `a_consumer_killed_mid_batch_resumes_without_loss_or_repeat`"]
fn consumer_child() {
    let (Some(settings), Ok(path)) = (child_settings(), std::env::var(CHILD_MODEL)) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let ledger = Ledger { slow_flush: Duration::from_millis(15), ..Ledger::default() };
        // In hang mode, the third batch is committed and never acknowledged.
        let pass = if std::env::var(CHILD_HANG).is_ok() { 2 } else { usize::MAX };
        let model = HangAfter::new(ledger_model(path.as_ref()).await, pass);
        let consumer = Consumer::new(ledger, model, jetstream().await, settings).with_options(consumer_options(50));
        let handle = consumer.handle();
        let task = tokio::spawn(consumer.run());
        while !matches!(handle.state(), es::nats::ConsumerState::Running) {
            assert!(!task.is_finished(), "the consumer stopped: {:?}", handle.state());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("\n{CONSUMER_READY}");
        task.await.unwrap().unwrap();
    });
}

/// Waits until the consumer has applied every stream of `store` up to its current version.
async fn wait_for_all<P: es::Projection>(store: &SqliteStore, consumer: &es::nats::ConsumerHandle<P>) {
    let events = store.read_all(&es::Checkpoint::START, &es::ReadAllFilter::all(), usize::MAX).await.unwrap().events;
    let mut last = std::collections::BTreeMap::new();
    for event in &events {
        last.insert(event.stream.clone(), event.stream_version);
    }
    for (stream, version) in last {
        assert!(
            consumer.wait_for(&stream, version, WAIT).await,
            "the consumer did not reach version {version} of {stream}: {:?}",
            consumer.state()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_once_in_order_across_relay_restarts_and_a_killed_relay() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "relay").await;
    let dir = tempfile::tempdir().unwrap();
    let (store_path, model_path) = (dir.path().join("bank.db"), dir.path().join("model.db"));
    let store = SqliteStore::open(&store_path).unwrap();
    // The tables, before the children race to create them.
    let checkpoints = relay_checkpoints(store.clone()).await.unwrap();

    let consumer =
        Consumer::new(Ledger::default(), ledger_model(&model_path).await, jetstream.clone(), settings.clone())
            .with_options(consumer_options(64));
    let consumed = consumer.handle();
    let consumer_task = tokio::spawn(consumer.run());

    // A backlog, so that every relay below is busy publishing when it is killed or stopped;
    // then writers go on appending throughout.
    let once = Arc::new(AtomicBool::new(true));
    let mut backlog = 0;
    for _ in 0..300 {
        backlog += write_ticks(store.clone(), "backlog".into(), 4, Duration::ZERO, Arc::clone(&once)).await;
    }
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_ticks(store.clone(), "w".into(), 4, Duration::from_millis(3), Arc::clone(&stop_writing)));

    // A relay process killed with SIGKILL at a random moment while it publishes (the next one
    // waits for the dead one's lease to expire) ...
    let env = child_env(&settings, CHILD_STORE, &store_path);
    let child = start_child("relay_child", &env, RELAY_READY);
    std::thread::sleep(Duration::from_millis(50 + random() % 300));
    kill(child);
    // ... and one killed exactly mid-batch: JetStream acknowledged the batch, the checkpoint
    // after it is not saved.
    let mut hang = env.clone();
    hang.push((CHILD_HANG, "1".into()));
    kill(start_child("relay_child", &hang, HUNG));

    // A relay in this process publishes that batch again, and JetStream drops it; stopped and
    // restarted.
    let relay =
        Relay::new(store.clone(), checkpoints, jetstream.clone(), settings.clone()).with_options(relay_options());
    let handle = relay.handle();
    let task = tokio::spawn(relay.run());
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.published().0 < relay_options().batch_size as u64 {
        assert!(tokio::time::Instant::now() < deadline, "the relay published nothing: {:?}", handle.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (published, duplicates) = handle.published();
    assert!(duplicates >= relay_options().batch_size as u64, "{duplicates} duplicates of {published}");
    tokio::time::sleep(Duration::from_millis(100 + random() % 300)).await;
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(handle.state(), RelayState::Stopped);

    let relay =
        Relay::new(store.clone(), relay_checkpoints(store.clone()).await.unwrap(), jetstream.clone(), settings.clone())
            .with_options(relay_options());
    let handle = relay.handle();
    let task = tokio::spawn(relay.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_writing.store(true, Ordering::Release);
    let written = backlog + writer.await.unwrap();

    let head = store.head().await.unwrap();
    assert!(handle.wait_for(&head, WAIT).await, "the relay did not reach the head: {:?}", handle.state());
    wait_for_all(&store, &consumed).await;
    consumed.stop();
    consumer_task.await.unwrap().unwrap();
    handle.stop();
    task.await.unwrap().unwrap();

    let rows = ledger_rows(&model_path).await;
    assert_eq!(rows.len() as u64, written);
    assert_exactly_once_in_order(&store, &rows).await;
    // JetStream dropped every republished message as a duplicate: one message per event.
    assert_eq!(messages_in(&jetstream, &settings).await, written, "the stream holds a duplicate");
    delete(&jetstream, &settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_batch_resumes_without_loss_or_repeat() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "consumer").await;
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.db");
    let store = SqliteStore::open(dir.path().join("bank.db")).unwrap();
    let relay = Relay::new(store.clone(), InMemoryCheckpointStore::new(), jetstream.clone(), settings.clone())
        .with_options(RelayOptions { batch_size: 200, ..relay_options() });
    let relay_handle = relay.handle();
    let relay_task = tokio::spawn(relay.run());

    // A backlog, then more while the consumer processes are killed.
    let stop_writing = Arc::new(AtomicBool::new(true));
    write_ticks(store.clone(), "backlog".into(), 6, Duration::ZERO, Arc::clone(&stop_writing)).await;
    for _ in 0..200 {
        write_ticks(store.clone(), "backlog".into(), 6, Duration::ZERO, Arc::clone(&stop_writing)).await;
    }
    stop_writing.store(false, Ordering::Release);
    let writer =
        tokio::spawn(write_ticks(store.clone(), "live".into(), 3, Duration::from_millis(5), Arc::clone(&stop_writing)));

    drop(ledger_model(&model_path).await); // the tables, before the first child
    let env = child_env(&settings, CHILD_MODEL, &model_path);
    for _ in 0..2 {
        let child = start_child("consumer_child", &env, CONSUMER_READY);
        std::thread::sleep(Duration::from_millis(150 + random() % 500));
        kill(child);
    }
    // One killed exactly between the commit of a batch and its acknowledgements: JetStream
    // delivers the batch again, and the read model must not apply it twice.
    let mut hang = env.clone();
    hang.push((CHILD_HANG, "1".into()));
    kill(start_child("consumer_child", &hang, HUNG));
    let killed_rows = ledger_rows(&model_path).await.len();
    assert!(killed_rows > 0, "the killed consumers committed something");

    stop_writing.store(true, Ordering::Release);
    writer.await.unwrap();
    let head = store.head().await.unwrap();
    assert!(relay_handle.wait_for(&head, WAIT).await, "{:?}", relay_handle.state());

    let consumer =
        Consumer::new(Ledger::default(), ledger_model(&model_path).await, jetstream.clone(), settings.clone())
            .with_options(consumer_options(50));
    let consumed = consumer.handle();
    let consumer_task = tokio::spawn(consumer.run());
    wait_for_all(&store, &consumed).await;
    consumed.stop();
    consumer_task.await.unwrap().unwrap();
    relay_handle.stop();
    relay_task.await.unwrap().unwrap();

    let rows = ledger_rows(&model_path).await;
    assert!(rows.len() > killed_rows);
    assert_exactly_once_in_order(&store, &rows).await;
    delete(&jetstream, &settings).await;
}

async fn run_relay_once(settings: &StreamSettings) -> Result<(), RelayError> {
    let relay = Relay::new(InMemoryStore::new(), InMemoryCheckpointStore::new(), jetstream().await, settings.clone());
    let handle = relay.handle();
    let task = tokio::spawn(relay.run());
    // A relay that accepted the stream publishes until stopped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.stop();
    task.await.unwrap()
}

#[tokio::test]
async fn a_stream_that_does_not_fit_is_a_typed_error_that_says_what_to_change() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "config").await;
    let base = Config {
        name: settings.name.clone(),
        subjects: vec![settings.subjects.wildcard()],
        duplicate_window: Duration::from_secs(120),
        ..Config::default()
    };

    jetstream.create_stream(Config { duplicate_window: Duration::from_secs(10), ..base.clone() }).await.unwrap();
    let error = run_relay_once(&settings).await.unwrap_err();
    assert!(
        matches!(&error, RelayError::Stream(StreamError::DuplicateWindow { found, .. }) if *found == Duration::from_secs(10)),
        "{error:?}"
    );
    assert!(error.to_string().contains("raise its duplicate_window"), "{error}");
    // The consumer checks the same.
    let consumer =
        Consumer::new(Ledger::default(), es::nats::InMemoryApplied::new(), jetstream.clone(), settings.clone());
    let error = consumer.run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ConsumerError::Stream(StreamError::DuplicateWindow { .. })), "{error:?}");
    delete(&jetstream, &settings).await;

    jetstream.create_stream(Config { subjects: vec!["elsewhere.>".into()], ..base.clone() }).await.unwrap();
    let error = run_relay_once(&settings).await.unwrap_err();
    assert!(
        matches!(&error, RelayError::Stream(StreamError::Subjects { found, .. }) if found == &["elsewhere.>"]),
        "{error:?}"
    );
    delete(&jetstream, &settings).await;

    jetstream.create_stream(Config { retention: RetentionPolicy::Interest, ..base.clone() }).await.unwrap();
    let error = run_relay_once(&settings).await.unwrap_err();
    assert!(
        matches!(&error, RelayError::Stream(StreamError::Retention { found: RetentionPolicy::Interest, .. })),
        "{error:?}"
    );
    delete(&jetstream, &settings).await;

    let short = settings.clone().with_duplicate_window(Duration::from_secs(5));
    let error = run_relay_once(&short).await.unwrap_err();
    assert!(matches!(&error, RelayError::Stream(StreamError::Settings { .. })), "{error:?}");
    // A lease so long that a takeover could fall outside the window.
    let relay = Relay::new(InMemoryStore::new(), InMemoryCheckpointStore::new(), jetstream.clone(), settings.clone())
        .with_options(RelayOptions { lease_ttl: Duration::from_secs(60), ..RelayOptions::default() });
    let error = relay.run().await.unwrap_err();
    assert!(error.to_string().contains("shorten the lease"), "{error}");

    // A stream that fits (here: created by the relay itself) is accepted, and its window kept.
    run_relay_once(&settings).await.unwrap();
    let mut stream = jetstream.get_stream(&settings.name).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.subjects, [settings.subjects.wildcard()]);
    delete(&jetstream, &settings).await;
}

fn tick(n: u64) -> NewEvent {
    NewEvent::new(RawEvent::json("Ticked", 1, &serde_json::json!({ "n": n })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_message_is_parked_or_stops_the_consumer_and_says_which() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "poison").await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).unwrap();
    let (a, b) = (StreamId::new("Counter", "a"), StreamId::new("Counter", "b"));
    store.append(&a, ExpectedVersion::NoStream, vec![tick(1), tick(666), tick(3)]).await.unwrap();
    // Version 1 of `Paid`, as old code stored it: the consumer's projection upcasts it.
    let old = NewEvent::new(RawEvent::new("Paid", 1, r#"{"amount":5}"#));
    store.append(&b, ExpectedVersion::NoStream, vec![tick(4), old]).await.unwrap();
    let relay = Relay::new(store.clone(), InMemoryCheckpointStore::new(), jetstream.clone(), settings.clone())
        .with_options(relay_options());
    let relay_handle = relay.handle();
    let relay_task = tokio::spawn(relay.run());
    assert!(relay_handle.wait_for(&store.head().await.unwrap(), WAIT).await);
    // And a message that is no es event at all.
    jetstream
        .publish(format!("{}.junk", settings.subjects.prefix()), "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // Parked: the failing event is set aside and named, the rest of its stream and the other
    // stream go on; the junk message is terminated.
    let parking = ConsumerOptions {
        durable_name: Some("parking".into()),
        projection: ProjectionOptions { on_failure: OnFailure::Park, ..consumer_options(10).projection },
        ..consumer_options(10)
    };
    let model = dir.path().join("parked.db");
    let ledger = Ledger { fail_on: Some(666), ..Ledger::default() };
    let consumer =
        Consumer::new(ledger, ledger_model(&model).await, jetstream.clone(), settings.clone()).with_options(parking);
    let handle = consumer.handle();
    let task = tokio::spawn(consumer.run());
    assert!(handle.wait_for(&a, es::Version(3), WAIT).await);
    assert!(handle.wait_for(&b, es::Version(2), WAIT).await);
    let parked = handle.parked();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].event.stream.clone(), parked[0].event.stream_version), (a.clone(), es::Version(2)));
    assert!(parked[0].error.contains("tick 666 refused"), "{}", parked[0].error);
    assert_eq!(parked[0].attempts, 3);
    handle.stop();
    task.await.unwrap().unwrap();
    // The parked event is kept with the read model: a new run lists it too.
    let again = Consumer::new(Ledger::default(), ledger_model(&model).await, jetstream.clone(), settings.clone())
        .with_options(ConsumerOptions { durable_name: Some("parking".into()), ..consumer_options(10) });
    let again_handle = again.handle();
    let again_task = tokio::spawn(again.run());
    while !matches!(again_handle.state(), es::nats::ConsumerState::Running) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(again_handle.parked(), parked);
    again_handle.stop();
    again_task.await.unwrap().unwrap();
    let notes: Vec<String> =
        ledger_rows(&model).await.into_iter().map(|row| format!("{} {}", row.stream, row.note)).collect();
    assert_eq!(notes, ["Counter/a tick 1", "Counter/a tick 3", "Counter/b tick 4", "Counter/b paid 5 (v1)"]);

    // Stopped: the events before the failing one are committed, and the error names it.
    let stopping = ConsumerOptions { durable_name: Some("stopping".into()), ..consumer_options(10) };
    let model = dir.path().join("stopped.db");
    let ledger = Ledger { fail_on: Some(666), ..Ledger::default() };
    let consumer = Consumer::new(ledger, ledger_model(&model).await, jetstream.clone(), settings.clone())
        .with_options(stopping.clone());
    let error = consumer.run().await.unwrap_err();
    assert!(
        matches!(error.as_ref(), ConsumerError::Handler { event, attempts: 3, .. } if event.stream == a && event.stream_version == es::Version(2)),
        "{error:?}"
    );
    assert!(error.to_string().contains("event 2 of stream Counter/a"), "{error}");
    assert_eq!(ledger_rows(&model).await.len(), 1);

    // Mended and run again, it resumes after what it committed (nothing twice), then stops at
    // the junk message, naming its place in the stream.
    let consumer = Consumer::new(Ledger::default(), ledger_model(&model).await, jetstream.clone(), settings.clone())
        .with_options(stopping);
    let error = consumer.run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ConsumerError::BadMessage { sequence: 6, .. }), "{error:?}");
    assert!(error.to_string().contains("has no headers"), "{error}");
    let rows = ledger_rows(&model).await;
    assert_exactly_once_in_order(&store, &rows).await;

    relay_handle.stop();
    relay_task.await.unwrap().unwrap();
    delete(&jetstream, &settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_waits_for_the_lease_and_takes_over() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "lease").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let relay_on = |store: SqliteStore| {
        let (jetstream, settings) = (jetstream.clone(), settings.clone());
        async move {
            Relay::new(store.clone(), relay_checkpoints(store).await.unwrap(), jetstream, settings)
                .with_options(relay_options())
        }
    };
    let (first_store, second_store) = (SqliteStore::open(&path).unwrap(), SqliteStore::open(&path).unwrap());
    let first = relay_on(first_store.clone()).await;
    let first_handle = first.handle();
    let first_task = tokio::spawn(first.run());
    let stream = StreamId::new("Counter", "leased");
    first_store.append(&stream, ExpectedVersion::NoStream, vec![tick(1), tick(2)]).await.unwrap();
    assert!(first_handle.wait_for(&first_store.head().await.unwrap(), WAIT).await);

    let second = relay_on(second_store.clone()).await;
    let second_handle = second.handle();
    let second_task = tokio::spawn(second.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second_handle.state(), RelayState::Waiting);
    assert_eq!(second_handle.published(), (0, 0));

    // The first one stops (and releases the lease): the second resumes from its checkpoint.
    first_handle.stop();
    first_task.await.unwrap().unwrap();
    second_store.append(&stream, ExpectedVersion::Exact(es::Version(2)), vec![tick(3)]).await.unwrap();
    assert!(second_handle.wait_for(&second_store.head().await.unwrap(), WAIT).await);
    assert_eq!(second_handle.state(), RelayState::Publishing);
    assert_eq!(second_handle.published(), (1, 0), "it published only what the first had not");
    assert_eq!(messages_in(&jetstream, &settings).await, 3);
    second_handle.stop();
    second_task.await.unwrap().unwrap();
    delete(&jetstream, &settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_read_model_starts_its_durable_consumer_from_the_first_message() {
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "fresh").await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).unwrap();
    let stream = StreamId::new("Counter", "fresh");
    store.append(&stream, ExpectedVersion::NoStream, vec![tick(1), tick(2), tick(3)]).await.unwrap();
    let relay = Relay::new(store.clone(), InMemoryCheckpointStore::new(), jetstream.clone(), settings.clone())
        .with_options(relay_options());
    let relay_handle = relay.handle();
    let relay_task = tokio::spawn(relay.run());

    for model in ["first.db", "second.db"] {
        // The same durable consumer each time; the second read model is new.
        let path = dir.path().join(model);
        let consumer = Consumer::new(Ledger::default(), ledger_model(&path).await, jetstream.clone(), settings.clone())
            .with_options(consumer_options(10));
        let handle = consumer.handle();
        let task = tokio::spawn(consumer.run());
        assert!(handle.wait_for(&stream, es::Version(3), WAIT).await, "{model}: {:?}", handle.state());
        handle.stop();
        task.await.unwrap().unwrap();
        assert_exactly_once_in_order(&store, &ledger_rows(&path).await).await;
    }
    relay_handle.stop();
    relay_task.await.unwrap().unwrap();
    delete(&jetstream, &settings).await;
}

/// On PostgreSQL, with several processes writing to one store: the relay's checkpoint and lease
/// live in the store's schema; a relay started again (here: on another connection, as another
/// process would) publishes only what the first did not, and JetStream holds each event once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_relay_keeps_its_checkpoint_and_lease_in_the_schema() {
    use es::{PostgresOptions, PostgresStore};
    let jetstream = jetstream().await;
    let settings = unique_stream(&jetstream, "postgres").await;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("es_facade_nats_{:x}", random());
    let connect = || PostgresStore::connect_with(&url, PostgresOptions::new().schema(schema.clone()));
    let (writer, first_store, second_store) =
        (connect().await.unwrap(), connect().await.unwrap(), connect().await.unwrap());
    let stream = StreamId::new("Counter", "pg");
    writer.append(&stream, ExpectedVersion::NoStream, (1..=40).map(tick).collect()).await.unwrap();

    let relay_on = |store: PostgresStore| {
        let (jetstream, settings) = (jetstream.clone(), settings.clone());
        async move {
            let checkpoints = es::nats::postgres::relay_checkpoints(store.clone()).await.unwrap();
            Relay::new(store, checkpoints, jetstream, settings).with_options(relay_options())
        }
    };
    let first = relay_on(first_store).await;
    let first_handle = first.handle();
    let first_task = tokio::spawn(first.run());
    assert!(first_handle.wait_for(&writer.head().await.unwrap(), WAIT).await);
    first_handle.stop();
    first_task.await.unwrap().unwrap();

    writer.append(&stream, ExpectedVersion::Exact(es::Version(40)), (41..=50).map(tick).collect()).await.unwrap();
    let second = relay_on(second_store.clone()).await;
    let second_handle = second.handle();
    let second_task = tokio::spawn(second.run());
    assert!(second_handle.wait_for(&writer.head().await.unwrap(), WAIT).await);
    assert_eq!(second_handle.published(), (10, 0), "it published only what the first had not");
    assert_eq!(messages_in(&jetstream, &settings).await, 50);
    second_handle.stop();
    second_task.await.unwrap().unwrap();
    delete(&jetstream, &settings).await;
    let client = second_store.pool().get().await.unwrap();
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
