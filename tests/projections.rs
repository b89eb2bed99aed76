//! Projections through the facade, as a user writes them: the derive, given/then, and the
//! runner over the in-memory store (catch-up, live following, aliases and upcasting, future
//! versions, retries, parking, identity changes, status and read-your-writes).

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use es::prelude::*;
use es::projection::{
    CheckpointStore, DispatchError, IdentityChange, InMemoryCheckpointStore, OnFailure, Partition, ProjectionError,
    ProjectionIdentity, ProjectionOptions, ProjectionRunner, Rebuilt, RunState, SavedCheckpoint, WaitError,
};
use es::testing::*;
use es::{Checkpoint, DecodeErrorKind, EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId};

/// An account was opened.
#[event(version = 1)]
pub struct AccountOpened {
    pub owner: String,
}

/// Money was paid in. Version 2 added `reference`.
#[event(version = 2, upcast_from = MoneyDepositedV1)]
pub struct MoneyDeposited {
    pub amount: u64,
    pub reference: String,
}

/// The first shape of `MoneyDeposited`.
#[event(name = "MoneyDeposited", version = 1)]
pub struct MoneyDepositedV1 {
    pub amount: u64,
}

impl From<MoneyDepositedV1> for MoneyDeposited {
    fn from(old: MoneyDepositedV1) -> Self {
        Self { amount: old.amount, reference: "(none)".into() }
    }
}

/// Money was taken out; stored as `FundsWithdrawn` before a rename.
#[event(version = 1, aliases = ["FundsWithdrawn"])]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

/// A shop was opened: stored as `Opened`, like a branch.
#[event(name = "Opened", version = 1)]
pub struct ShopOpened {
    pub city: String,
}

/// A branch was opened: stored as `Opened`, like a shop.
#[event(name = "Opened", version = 1)]
pub struct BranchOpened {
    pub manager: String,
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(ShopOpened))]
pub struct Shop {}

impl Apply<ShopOpened> for Shop {
    fn apply(&mut self, _: &ShopOpened) {}
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(BranchOpened))]
pub struct Branch {}

impl Apply<BranchOpened> for Branch {
    fn apply(&mut self, _: &BranchOpened) {}
}

/// Balances by account, and every position seen (to prove each event arrives once, in order).
#[derive(Projection, Default, Debug, PartialEq)]
#[projection(name = "balances", version = 1, events(AccountOpened, MoneyDeposited, MoneyWithdrawn))]
pub struct Balances {
    balances: BTreeMap<String, i64>,
    references: Vec<String>,
    positions: Vec<u64>,
}

impl Balances {
    fn seen(&mut self, position: es::Position) -> Result<(), HandlerError> {
        if self.positions.last().is_some_and(|last| *last >= position.0) {
            return Err(format!("position {position} out of order").into());
        }
        self.positions.push(position.0);
        Ok(())
    }
}

impl Handle<AccountOpened> for Balances {
    fn handle(&mut self, event: &Envelope<AccountOpened>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        self.balances.insert(event.stream.id().to_owned(), 0);
        Ok(())
    }
}

impl Handle<MoneyDeposited> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        *self.balances.entry(event.stream.id().to_owned()).or_default() += i64::try_from(event.event.amount)?;
        self.references.push(event.event.reference.clone());
        Ok(())
    }
}

impl Handle<MoneyWithdrawn> for Balances {
    fn handle(&mut self, event: &Envelope<MoneyWithdrawn>) -> Result<(), HandlerError> {
        self.seen(event.position)?;
        *self.balances.entry(event.stream.id().to_owned()).or_default() -= i64::try_from(event.event.amount)?;
        Ok(())
    }
}

/// Two events stored under one name, told apart by the aggregate they come from.
#[derive(Projection, Default, Debug, PartialEq)]
#[projection(name = "openings", events(ShopOpened in Shop, BranchOpened in Branch))]
pub struct Openings {
    shops: Vec<String>,
    branches: Vec<String>,
}

impl Handle<ShopOpened> for Openings {
    fn handle(&mut self, event: &Envelope<ShopOpened>) -> Result<(), HandlerError> {
        self.shops.push(event.event.city.clone());
        Ok(())
    }
}

impl Handle<BranchOpened> for Openings {
    fn handle(&mut self, event: &Envelope<BranchOpened>) -> Result<(), HandlerError> {
        self.branches.push(event.event.manager.clone());
        Ok(())
    }
}

/// Fails on deposits of 13 for its first `fail_times` tries of each.
#[derive(Projection, Default, Debug)]
#[projection(name = "fragile", events(MoneyDeposited))]
pub struct Fragile {
    fail_times: u32,
    tries: Arc<AtomicU32>,
    total: u64,
}

impl Handle<MoneyDeposited> for Fragile {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        if event.event.amount == 13 && self.tries.fetch_add(1, Ordering::SeqCst) < self.fail_times {
            return Err("thirteen is unlucky".into());
        }
        self.total += event.event.amount;
        Ok(())
    }
}

const WAIT: Duration = Duration::from_secs(10);

fn new_event<E: Event>(event: &E) -> NewEvent {
    NewEvent::new(RawEvent::new(E::NAME, E::VERSION, serde_json::to_string(event).unwrap()))
}

async fn append(store: &InMemoryStore, stream: &StreamId, events: Vec<NewEvent>) {
    store.append(stream, ExpectedVersion::Any, events).await.unwrap();
}

fn account(id: &str) -> StreamId {
    StreamId::new("BankAccount", id)
}

fn deposit(amount: u64) -> NewEvent {
    new_event(&MoneyDeposited { amount, reference: "r".into() })
}

fn fast() -> ProjectionOptions {
    ProjectionOptions {
        batch_size: 7,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        ..ProjectionOptions::default()
    }
}

#[test]
fn given_typed_and_stored_records_of_old_versions_and_names() {
    Balances::given((
        AccountOpened { owner: "ann".into() },
        MoneyDeposited { amount: 50, reference: "salary".into() },
        RawEvent::new("MoneyDeposited", 1, r#"{"amount":7}"#),
        RawEvent::new("FundsWithdrawn", 1, r#"{"amount":20}"#),
    ))
    .then_state(|balances| {
        assert_eq!(balances.balances["given"], 37);
        assert_eq!(balances.references, ["salary", "(none)"]);
    });
}

#[test]
fn given_a_future_version_is_a_typed_error() {
    Balances::given(RawEvent::new("MoneyDeposited", 3, r#"{"amount":7}"#)).then_error(|error| {
        assert!(matches!(
            error,
            DispatchError::Decode(decode) if matches!(decode.kind, DecodeErrorKind::FutureVersion { found: 3, newest: 2 })
        ));
    });
}

#[test]
#[should_panic(expected = "record 1 was not handled")]
fn a_failed_record_fails_then_state_with_the_history() {
    Balances::given(RawEvent::new("MoneyDeposited", 1, "not json")).then_state(|_| {});
}

#[test]
fn same_named_events_of_two_aggregates_reach_their_own_handlers() {
    let shop = es::StoredEvent {
        position: es::Position(1),
        stream: StreamId::new("Shop", "s"),
        stream_version: Version(1),
        event_id: Uuid::from_u128(1),
        metadata: es::Metadata::new(),
        recorded_at: std::time::SystemTime::now(),
        event: RawEvent::new("Opened", 1, r#"{"city":"Oslo"}"#),
    };
    let branch = es::StoredEvent {
        position: es::Position(2),
        stream: StreamId::new("Branch", "b"),
        event_id: Uuid::from_u128(2),
        event: RawEvent::new("Opened", 1, r#"{"manager":"Bo"}"#),
        ..shop.clone()
    };
    Openings::given(vec![shop, branch])
        .then_state_is(Openings { shops: vec!["Oslo".into()], branches: vec!["Bo".into()] });
    let filter = <Openings as Projection>::filter();
    assert_eq!(filter.stream_types, ["Shop", "Branch"]);
}

#[tokio::test]
async fn a_projection_added_after_many_events_sees_each_once_in_order() {
    let store = InMemoryStore::new();
    for n in 0..50 {
        let stream = account(&n.to_string());
        append(&store, &stream, vec![new_event(&AccountOpened { owner: "x".into() }), deposit(10)]).await;
        // Events the projection does not select, in between.
        append(&store, &StreamId::new("Shop", n.to_string()), vec![new_event(&ShopOpened { city: "c".into() })]).await;
    }
    let runner =
        ProjectionRunner::new(Balances::default(), store.clone(), InMemoryCheckpointStore::new()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.read(|balances| {
        assert_eq!(balances.positions.len(), 100);
        assert_eq!(balances.balances.len(), 50);
        assert!(balances.balances.values().all(|b| *b == 10));
    });
    let status = handle.status().await.unwrap();
    assert_eq!((status.lag, status.checkpoint == status.head), (0, true));
    assert!(status.is_healthy(0), "{status:?}");
    handle.stop();
    task.await.unwrap().unwrap();
    assert!(matches!(handle.state(), RunState::Stopped));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_follows_writers_live_and_resumes_from_its_checkpoint() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    // A slow poll: only the store's commit signal can make this test fast.
    let options = ProjectionOptions { poll_interval: Duration::from_secs(60), ..fast() };
    let runner =
        ProjectionRunner::new(Balances::default(), store.clone(), checkpoints.clone()).with_options(options.clone());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    append(&store, &account(&format!("{w}-{n}")), vec![deposit(1)]).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|b| b.positions.len()), 100);
    // Read-your-writes: one more event, waited for by its checkpoint.
    append(&store, &account("last"), vec![deposit(5)]).await;
    let head = store.head().await.unwrap();
    handle.wait_for(&head, WAIT).await.unwrap();
    assert_eq!(handle.read(|b| b.balances["last"]), 5);
    handle.stop();
    task.await.unwrap().unwrap();

    // A new runner over the same checkpoints resumes: it sees only what came after.
    append(&store, &account("after"), vec![deposit(2)]).await;
    let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.read(|b| assert_eq!(b.balances.keys().collect::<Vec<_>>(), ["after"]));
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn records_under_an_alias_and_of_old_versions_reach_the_new_handler() {
    let store = InMemoryStore::new();
    let stream = account("ann");
    append(
        &store,
        &stream,
        vec![
            NewEvent::new(RawEvent::new("MoneyDeposited", 1, r#"{"amount":30}"#)),
            NewEvent::new(RawEvent::new("FundsWithdrawn", 1, r#"{"amount":10}"#)),
        ],
    )
    .await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.read(|b| {
        assert_eq!(b.balances["ann"], 20);
        assert_eq!(b.references, ["(none)"]);
    });
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_future_version_stops_the_projection_with_a_typed_error() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1)]).await;
    append(&store, &account("a"), vec![NewEvent::new(RawEvent::new("MoneyDeposited", 9, r#"{"amount":1}"#))]).await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let error = runner.run().await.unwrap_err();
    assert!(error.is_future_version(), "{error}");
    assert!(error.to_string().contains("position 2"), "{error}");
    assert!(matches!(handle.state(), RunState::Failed(_)));
    assert!(matches!(handle.wait_for_head(WAIT).await, Err(WaitError::Failed { .. })));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
}

#[tokio::test]
async fn a_failing_handler_is_retried_then_stops_naming_the_event() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1), deposit(13), deposit(2)]).await;
    let tries = Arc::new(AtomicU32::new(0));
    let fragile = Fragile { fail_times: u32::MAX, tries: Arc::clone(&tries), total: 0 };
    let runner = ProjectionRunner::new(fragile, store, InMemoryCheckpointStore::new()).with_options(fast());
    let handle = runner.handle();
    let error = runner.run().await.unwrap_err();
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    match error.as_ref() {
        ProjectionError::Handler { event, attempts: 3, .. } => {
            assert_eq!((event.position.0, event.stream_version.0, event.event_type.as_str()), (2, 2, "MoneyDeposited"));
            assert_eq!(event.stream, account("a"));
        }
        other => panic!("unexpected {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("event 2 of stream BankAccount/a") && message.contains("position 2"), "{message}");
    // Its batch was not checkpointed: a restart hands the batch to the handlers again.
    assert_eq!(handle.checkpoint(), Checkpoint::START);
}

#[tokio::test]
async fn a_retry_that_succeeds_loses_nothing() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1), deposit(13), deposit(2)]).await;
    let fragile = Fragile { fail_times: 2, tries: Arc::default(), total: 0 };
    let runner = ProjectionRunner::new(fragile, store, InMemoryCheckpointStore::new()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|f| f.total), 16);
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_parked_event_is_set_aside_and_the_rest_goes_on() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1), deposit(13), deposit(2)]).await;
    let fragile = Fragile { fail_times: u32::MAX, tries: Arc::default(), total: 0 };
    let options = ProjectionOptions { on_failure: OnFailure::Park, ..fast() };
    let runner = ProjectionRunner::new(fragile, store, InMemoryCheckpointStore::new()).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|f| f.total), 3);
    let parked = handle.parked();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].event.position.0, parked[0].attempts), (2, 3));
    assert!(parked[0].error.contains("unlucky"));
    assert_eq!(handle.status().await.unwrap().parked, 1);
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_changed_identity_rebuilds_or_is_refused() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1), deposit(2)]).await;
    let checkpoints = InMemoryCheckpointStore::new();
    // A checkpoint at the head, stored by an older definition (another selection).
    let old = ProjectionIdentity::new("balances", 1, "0000000000000000");
    let head = store.head().await.unwrap();
    checkpoints.save(&SavedCheckpoint::new(old.clone(), head)).await.unwrap();

    let refusing = ProjectionOptions { on_identity_change: IdentityChange::Refuse, ..fast() };
    let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints.clone()).with_options(refusing);
    let error = runner.run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ProjectionError::IdentityChanged { stored, .. } if *stored == old), "{error}");

    // Rebuild (the default): from the first event, never a silent resume at the old checkpoint.
    let runner = ProjectionRunner::new(Balances::default(), store.clone(), checkpoints.clone()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.read(|b| b.balances["a"]), 3);
    handle.stop();
    task.await.unwrap().unwrap();
    let saved = checkpoints.load("balances").await.unwrap().unwrap();
    assert_eq!(saved.identity, <Balances as Projection>::identity());
}

#[tokio::test]
async fn a_runner_whose_task_died_is_never_healthy() {
    let store = InMemoryStore::new();
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    task.abort();
    let _ = task.await;
    assert!(matches!(handle.state(), RunState::Abandoned));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
    assert!(matches!(handle.wait_for(&Checkpoint::START, WAIT).await, Ok(())));
}

#[tokio::test]
async fn wait_for_times_out_when_nothing_runs() {
    let store = InMemoryStore::new();
    append(&store, &account("a"), vec![deposit(1)]).await;
    let runner = ProjectionRunner::new(Balances::default(), store, InMemoryCheckpointStore::new());
    let handle = runner.handle();
    let result = handle.wait_for_head(Duration::from_millis(20)).await;
    assert!(matches!(result, Err(WaitError::Timeout { .. })), "{result:?}");
    assert!(matches!(handle.state(), RunState::NotStarted));
    assert!(!handle.status().await.unwrap().is_healthy(u64::MAX));
    drop(runner);
}

/// Every deposit it handled: stream, version, position.
#[derive(Projection, Default, Debug)]
#[projection(name = "per_stream", events(MoneyDeposited))]
pub struct PerStream {
    seen: Vec<(StreamId, u64, u64)>,
}

impl Handle<MoneyDeposited> for PerStream {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        self.seen.push((event.stream.clone(), event.stream_version.0, event.position.0));
        Ok(())
    }
}

type PartitionHandle = es::projection::ProjectionHandle<PerStream, InMemoryStore>;
type RunTask = tokio::task::JoinHandle<Result<(), Arc<ProjectionError>>>;

fn start_partitions(
    store: &InMemoryStore,
    checkpoints: &InMemoryCheckpointStore,
    count: u32,
    options: &ProjectionOptions,
) -> Vec<(PartitionHandle, RunTask)> {
    Partition::all(count)
        .map(|partition| {
            let runner = ProjectionRunner::new(PerStream::default(), store.clone(), checkpoints.clone())
                .with_options(options.clone())
                .with_partition(partition);
            (runner.handle(), tokio::spawn(runner.run()))
        })
        .collect()
}

/// Each event handled once by the partition owning its stream, each stream's in order.
fn assert_each_event_once_in_stream_order(handles: &[PartitionHandle], events: usize) {
    let mut all = Vec::new();
    let mut owner: BTreeMap<String, u32> = BTreeMap::new();
    for handle in handles {
        let partition = handle.partition();
        let seen = handle.read(|p| p.seen.clone());
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for (stream, version, position) in seen {
            assert!(partition.owns(&stream), "{partition} handled {stream}");
            let previous = owner.insert(stream.to_string(), partition.index());
            assert!(previous.is_none_or(|p| p == partition.index()), "{stream} in two partitions");
            let before = last.insert(stream.to_string(), version).unwrap_or(0);
            assert_eq!(version, before + 1, "{stream} out of order in {partition}");
            all.push(position);
        }
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), events, "every event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_under_concurrent_writers_handle_each_event_once_in_stream_order() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let options = ProjectionOptions { poll_interval: Duration::from_secs(60), ..fast() };
    let partitions = start_partitions(&store, &checkpoints, 4, &options);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    // Writers share streams: 20 streams, each written by several writers.
                    append(&store, &account(&((w * 7 + n) % 20).to_string()), vec![deposit(1)]).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let handles: Vec<_> = partitions.iter().map(|(handle, _)| handle.clone()).collect();
    for handle in &handles {
        handle.wait_for_head(WAIT).await.unwrap();
        assert_eq!(handle.status().await.unwrap().lag, 0);
    }
    assert_each_event_once_in_stream_order(&handles, 200);
    assert!(handles.iter().filter(|h| h.read(|p| !p.seen.is_empty())).count() >= 3, "the streams spread");
    for (handle, task) in partitions {
        assert_eq!(handle.rebuilt(), None);
        handle.stop();
        task.await.unwrap().unwrap();
    }
    // Each partition stored its own checkpoint, with the layout.
    let third = checkpoints.load("per_stream#3").await.unwrap().unwrap();
    assert!(third.identity.fingerprint.ends_with("+3/4"), "{third:?}");
}

#[tokio::test]
async fn changing_the_partition_count_is_a_rebuild_and_the_runner_says_so() {
    let store = InMemoryStore::new();
    for n in 0..30 {
        append(&store, &account(&(n % 9).to_string()), vec![deposit(1)]).await;
    }
    let checkpoints = InMemoryCheckpointStore::new();
    let partitions = start_partitions(&store, &checkpoints, 4, &fast());
    for (handle, task) in partitions {
        handle.wait_for_head(WAIT).await.unwrap();
        handle.stop();
        task.await.unwrap().unwrap();
    }

    // Refused: every partition of the new count, not only partition 0, says why.
    let refusing = ProjectionOptions { on_identity_change: IdentityChange::Refuse, ..fast() };
    for (_, task) in start_partitions(&store, &checkpoints, 2, &refusing) {
        let error = task.await.unwrap().unwrap_err();
        assert!(matches!(error.as_ref(), ProjectionError::PartitionsChanged { stored: 4, current: 2, .. }), "{error}");
        assert!(error.to_string().contains("rebuild"), "{error}");
    }

    // Rebuilt: from the first event, each event once across the two.
    let partitions = start_partitions(&store, &checkpoints, 2, &fast());
    let handles: Vec<_> = partitions.iter().map(|(handle, _)| handle.clone()).collect();
    for handle in &handles {
        handle.wait_for_head(WAIT).await.unwrap();
        assert_eq!(handle.rebuilt(), Some(Rebuilt::PartitionsChanged { stored: 4, current: 2 }));
    }
    assert_each_event_once_in_stream_order(&handles, 30);
    for (handle, task) in partitions {
        handle.stop();
        task.await.unwrap().unwrap();
    }

    // Back to one runner: a rebuild too.
    let runner = ProjectionRunner::new(PerStream::default(), store.clone(), checkpoints.clone()).with_options(fast());
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    assert_eq!(handle.rebuilt(), Some(Rebuilt::PartitionsChanged { stored: 2, current: 1 }));
    assert_eq!(handle.read(|p| p.seen.len()), 30);
    handle.stop();
    task.await.unwrap().unwrap();
    let saved = checkpoints.load("per_stream").await.unwrap().unwrap();
    assert_eq!(saved.identity, <PerStream as Projection>::identity());
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_wakes_its_followers_on_commit() {
    let store = es::SqliteStore::open_in_memory().unwrap();
    // A poll interval no test would wait for: only the commit signal can wake the runner.
    let options = ProjectionOptions { poll_interval: Duration::from_secs(3600), ..fast() };
    let runner =
        ProjectionRunner::new(Balances::default(), store.clone(), InMemoryCheckpointStore::new()).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    for n in 0..20 {
        store.append(&account(&n.to_string()), ExpectedVersion::Any, vec![deposit(1)]).await.unwrap();
        let head = store.head().await.unwrap();
        handle.wait_for(&head, WAIT).await.unwrap();
    }
    assert_eq!(handle.read(|b| b.positions.len()), 20);
    handle.stop();
    task.await.unwrap().unwrap();
}

/// A read model in the store's SQLite file: handlers keep their changes, and
/// `SqliteCheckpoints` writes them with the checkpoint in one transaction.
#[cfg(feature = "sqlite")]
#[derive(Projection, Default, Debug)]
#[projection(name = "sql_balances", events(MoneyDeposited))]
pub struct SqlBalances {
    pending: Vec<(String, u64)>,
    /// Fails on a deposit of this amount.
    fail_on: Option<u64>,
    /// Called with each deposit's amount before it is handled.
    on_deposit: Option<OnDeposit>,
}

/// What a test does while a deposit is handled.
#[cfg(feature = "sqlite")]
#[derive(Clone)]
pub struct OnDeposit(Arc<dyn Fn(u64) + Send + Sync>);

#[cfg(feature = "sqlite")]
impl std::fmt::Debug for OnDeposit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDeposit")
    }
}

#[cfg(feature = "sqlite")]
impl Handle<MoneyDeposited> for SqlBalances {
    fn handle(&mut self, event: &Envelope<MoneyDeposited>) -> Result<(), HandlerError> {
        if let Some(OnDeposit(hook)) = &self.on_deposit {
            hook(event.event.amount);
        }
        if self.fail_on == Some(event.event.amount) {
            return Err("refused".into());
        }
        self.pending.push((event.stream.id().to_owned(), event.event.amount));
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
fn flush_balances(tx: &es_sqlite::rusqlite::Transaction<'_>, projection: &mut SqlBalances) -> Result<(), HandlerError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, total INTEGER NOT NULL, deposits INTEGER NOT NULL)",
    )?;
    for (account, amount) in projection.pending.drain(..) {
        tx.execute(
            "INSERT INTO balances (account, total, deposits) VALUES (?1, ?2, 1)
             ON CONFLICT (account) DO UPDATE SET total = total + excluded.total, deposits = deposits + 1",
            (account, i64::try_from(amount)?),
        )?;
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
async fn balances_table(store: &es::SqliteStore) -> Vec<(String, i64, i64)> {
    type Error = Box<dyn std::error::Error + Send + Sync>;
    store
        .read(|tx| {
            let mut statement = tx.prepare("SELECT account, total, deposits FROM balances ORDER BY account")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok::<_, Error>(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

/// Runs a clean `SqlBalances` from its stored checkpoint until it has handled the head, then
/// stops it.
#[cfg(feature = "sqlite")]
async fn run_sql_balances_to_head(store: &es::SqliteStore, options: ProjectionOptions) {
    let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
    let runner = ProjectionRunner::new(SqlBalances::default(), store.clone(), checkpoints).with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_failure_mid_batch_repeats_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = es::SqliteStore::open(&path).unwrap();
    // 10 deposits of 1..=10 on two accounts; batches of 4: [1 2 3 4] [5 6 7 8] [9 10].
    for amount in 1..=10 {
        let stream = account(if amount % 2 == 0 { "even" } else { "odd" });
        store.append(&stream, ExpectedVersion::Any, vec![deposit(amount)]).await.unwrap();
    }
    let options = ProjectionOptions { batch_size: 4, ..fast() };

    // The handler fails on 6, in the middle of the second batch: the run stops, and only the
    // first batch is in the table, with its checkpoint.
    let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
    let failing = SqlBalances { fail_on: Some(6), ..SqlBalances::default() };
    let runner = ProjectionRunner::new(failing, store.clone(), checkpoints).with_options(options.clone());
    let error = runner.run().await.unwrap_err();
    assert!(matches!(error.as_ref(), ProjectionError::Handler { event, .. } if event.position.0 == 6), "{error}");
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 6, 2), ("odd".to_owned(), 4, 2)]);

    // After a restart (the same file, a new process), a clean run finishes the job: every
    // deposit counted once.
    drop(store);
    let store = es::SqliteStore::open(&path).unwrap();
    run_sql_balances_to_head(&store, options).await;
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 30, 5), ("odd".to_owned(), 25, 5)]);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_stop_while_the_next_page_is_read_ahead_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = es::SqliteStore::open(dir.path().join("bank.db")).unwrap();
    // 40 deposits of 1..=40 on two accounts; full batches of 4, so the runner reads each next
    // page while it handles and commits the one before.
    for amount in 1..=40 {
        let stream = account(if amount % 2 == 0 { "even" } else { "odd" });
        store.append(&stream, ExpectedVersion::Any, vec![deposit(amount)]).await.unwrap();
    }
    let options = ProjectionOptions { batch_size: 4, ..fast() };

    // A stop while the deposit of 6 is handled: the batch [5 6 7 8] is committed, the page
    // [9 10 11 12] read ahead beside it is dropped unhandled.
    type Handle = es::projection::ProjectionHandle<SqlBalances, es::SqliteStore>;
    let slot: Arc<std::sync::OnceLock<Handle>> = Arc::default();
    let stopper = Arc::clone(&slot);
    let on_deposit = OnDeposit(Arc::new(move |amount| {
        if amount == 6 {
            stopper.get().expect("the handle is set before the run").stop();
        }
    }));
    let stopping = SqlBalances { on_deposit: Some(on_deposit), ..SqlBalances::default() };
    let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
    let runner = ProjectionRunner::new(stopping, store.clone(), checkpoints).with_options(options.clone());
    let handle = runner.handle();
    assert!(slot.set(runner.handle()).is_ok());
    runner.run().await.unwrap();
    assert!(matches!(handle.state(), RunState::Stopped));
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 20, 4), ("odd".to_owned(), 16, 4)]);

    // The next run starts after the committed batch: every deposit counted once.
    run_sql_balances_to_head(&store, options).await;
    assert_eq!(balances_table(&store).await, [("even".to_owned(), 420, 20), ("odd".to_owned(), 400, 20)]);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_four_partitions_write_one_read_model_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = es::SqliteStore::open(dir.path().join("bank.db")).unwrap();
    let options = ProjectionOptions { batch_size: 16, poll_interval: Duration::from_secs(60), ..fast() };
    let mut partitions = Vec::new();
    for partition in Partition::all(4) {
        let checkpoints = es::SqliteCheckpoints::new(store.clone(), flush_balances).await.unwrap();
        let runner = ProjectionRunner::new(SqlBalances::default(), store.clone(), checkpoints)
            .with_options(options.clone())
            .with_partition(partition);
        partitions.push((runner.handle(), tokio::spawn(runner.run())));
    }
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..40u64 {
                    let stream = account(&((w + n) % 12).to_string());
                    store.append(&stream, ExpectedVersion::Any, vec![deposit(n + 1)]).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for (handle, _) in &partitions {
        handle.wait_for_head(WAIT).await.unwrap();
    }
    for (handle, task) in partitions {
        handle.stop();
        task.await.unwrap().unwrap();
    }
    let table = balances_table(&store).await;
    assert_eq!(table.len(), 12);
    assert_eq!(table.iter().map(|(_, _, deposits)| deposits).sum::<i64>(), 120);
    assert_eq!(table.iter().map(|(_, total, _)| total).sum::<i64>(), 3 * (40 * 41 / 2));
}

/// A vault's deposits; its read model is kept inline.
#[cfg(feature = "sqlite")]
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, events(MoneyDeposited))]
pub struct Vault {
    total: u64,
}

#[cfg(feature = "sqlite")]
impl Apply<MoneyDeposited> for Vault {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.total += event.amount;
    }
}

/// Vault totals, updated in the append's transaction; refuses deposits over 1000.
#[cfg(feature = "sqlite")]
struct VaultTotals;

#[cfg(feature = "sqlite")]
impl es::InlineProjection for VaultTotals {
    fn name(&self) -> &str {
        "vault_totals"
    }

    fn apply(&self, tx: &es_sqlite::rusqlite::Transaction<'_>, events: &[es::StoredEvent]) -> Result<(), HandlerError> {
        for record in events {
            let deposit = es::projection::decode_event::<MoneyDeposited>(record)?;
            tx.execute(
                "INSERT INTO vault_totals (vault, total, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (vault) DO UPDATE SET total = total + excluded.total, version = excluded.version",
                (record.stream.id(), i64::try_from(deposit.event.amount)?, i64::try_from(record.stream_version.0)?),
            )?;
            if deposit.event.amount > 1000 {
                return Err(format!("deposit of {} refused by the read model", deposit.event.amount).into());
            }
        }
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_inline_projection_commits_with_the_command_or_fails_it_leaving_nothing() {
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let store = es::SqliteStore::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            tx.execute_batch(
                "CREATE TABLE vault_totals (vault TEXT PRIMARY KEY, total INTEGER NOT NULL, version INTEGER NOT NULL)",
            )?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    let inline = es::InlineStore::new(store.clone(), VaultTotals);
    let vaults = Repository::<Vault, _>::new(inline);
    let totals = |store: es::SqliteStore| async move {
        store
            .read(|tx| {
                let mut statement = tx.prepare("SELECT vault, total, version FROM vault_totals ORDER BY vault")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                Ok::<Vec<(String, i64, i64)>, Error>(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap()
    };

    // Committed together: the read model is up to date the moment the command returns.
    vaults
        .execute("v", |_| Ok::<_, std::convert::Infallible>(MoneyDeposited { amount: 40, reference: "a".into() }))
        .await
        .unwrap();
    vaults
        .execute("v", |_| Ok::<_, std::convert::Infallible>(MoneyDeposited { amount: 2, reference: "b".into() }))
        .await
        .unwrap();
    assert_eq!(totals(store.clone()).await, [("v".to_owned(), 42, 2)]);

    // Failed together: a typed error, no event, no change (the row it wrote was rolled back).
    let error = vaults
        .execute("v", |_| Ok::<_, std::convert::Infallible>(MoneyDeposited { amount: 5000, reference: "c".into() }))
        .await
        .unwrap_err();
    let store_error = match &error {
        es::repository::RepositoryError::Store(store_error) => store_error,
        other => panic!("unexpected {other}"),
    };
    assert!(
        matches!(store_error, es::StoreError::InlineProjection { projection, source }
            if projection == "vault_totals" && source.to_string().contains("5000")),
        "{store_error}"
    );
    assert!(store_error.to_string().contains("nothing was appended"), "{store_error}");
    assert_eq!(totals(store.clone()).await, [("v".to_owned(), 42, 2)]);
    assert_eq!(store.stream_version(&StreamId::new("Vault", "v")).await.unwrap(), Version(2));
    assert_eq!(vaults.load("v").await.unwrap().state.total, 42);
}
