//! One suite that proves projections work on a store, with their read model committed by the
//! store's own [`CommitBatch`] (exactly once), run by any store with one line:
//!
//! ```ignore
//! es::projection_suite!(|test_name: &str| async move { MyFixture::new(test_name).await });
//! ```
//!
//! The macro writes one `#[tokio::test]` per check (the calling crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features as a dev-dependency). The factory gets the test's
//! name and returns a [`ReadModelFixture`]: an empty store, the checkpoints that commit the
//! read model of [`Ticks`] with its checkpoint, and a way to read that model back. Every check
//! reads the *committed* model, so a batch committed twice, or lost, fails it.
//!
//! [`MemoryReadModel`] is such a fixture for any store, with the read model in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::counter::{Counter, Incremented};
use crate::aggregate::Aggregate as _;
use crate::event::Event as _;
use crate::projection::{
    CheckpointStoreError, CommitBatch, DispatchError, IdentityChange, OnFailure, Partition, Projection,
    ProjectionError, ProjectionOptions, ProjectionRunner, Rebuilt, SavedCheckpoint, Selected, decode_event,
    selected_index,
};
use crate::record::RawEvent;
use crate::repository::RetryPolicy;
use crate::store::{EventStore, ExpectedVersion, NewEvent, StreamId};

/// Runs every check of the suite against the fixture the factory makes; see the module docs.
///
/// The list of checks is written once, in the `@list` arm; [`CHECKS`] is made from the same
/// list, and a unit test fails when a public check of this module is missing from it.
#[macro_export]
macro_rules! projection_suite {
    ($make:expr) => {
        $crate::projection_suite!(@list (@tests $make));
    };
    (@names) => {
        $crate::projection_suite!(@list (@strings))
    };
    (@list ($($mode:tt)*)) => {
        $crate::projection_suite! { $($mode)*;
            a_projection_added_after_ten_thousand_events_sees_each_once,
            it_follows_writers_live_and_resumes_from_its_checkpoint,
            a_poisoned_event_is_retried_then_stops_or_is_parked,
            four_partitions_under_concurrent_writers_handle_each_event_once_in_stream_order,
            a_rebuild_gives_the_same_read_model
        }
    };
    (@strings; $($name:ident),+ $(,)?) => {
        &[$(::core::stringify!($name)),+]
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture = ($make)(::core::stringify!($name)).await;
                $crate::testing::projection_suite::$name(&fixture).await;
                $crate::testing::projection_suite::ReadModelFixture::finish(fixture).await;
            }
        )+
    };
}

/// The names of every check [`projection_suite!`] runs, in its order.
pub const CHECKS: &[&str] = crate::projection_suite!(@names);

/// One row of the read model of [`Ticks`]: one handled event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    /// The projection version that wrote it (a rebuild under a bumped version writes its own).
    pub version: u32,
    /// The index of the partition that handled it.
    pub partition: u32,
    /// How many events that projection value had handled before it (its handling order).
    pub handled: u64,
    /// The id of the event's stream (a [`Counter`] stream).
    pub stream: String,
    /// The event's version in its stream.
    pub stream_version: u64,
    /// The event's position in the store's order.
    pub position: u64,
}

/// Called with each row a [`Ticks`] handler is about to keep (a crash test's child stalls in
/// it, to be killed between the handler and the checkpoint).
pub type OnHandled = Arc<dyn Fn(&Row) + Send + Sync>;

/// The suite's projection: every [`Incremented`] of [`Counter`] streams, as one [`Row`] each,
/// kept until the batch is committed ([`Ticks::take_rows`]). `V` is its version, so that a
/// check can bump it.
///
/// It can be poisoned: its handler fails on increments by [`Ticks::poison`] for the first
/// `fail_times` tries of each.
pub struct Ticks<const V: u32> {
    partition: u32,
    handled: u64,
    pending: Vec<Row>,
    poison: Option<(u64, u32)>,
    tries: Arc<AtomicU32>,
    on_handled: Option<OnHandled>,
}

impl<const V: u32> fmt::Debug for Ticks<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticks")
            .field("version", &V)
            .field("partition", &self.partition)
            .field("handled", &self.handled)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<const V: u32> Default for Ticks<V> {
    fn default() -> Self {
        Self { partition: 0, handled: 0, pending: Vec::new(), poison: None, tries: Arc::default(), on_handled: None }
    }
}

impl<const V: u32> Ticks<V> {
    /// The projection as partition `partition` of its runner (for the rows it writes).
    #[must_use]
    pub fn for_partition(partition: Partition) -> Self {
        Self { partition: partition.index(), ..Self::default() }
    }

    /// Poisoned: its handler fails on increments by `by`, for the first `fail_times` tries.
    #[must_use]
    pub fn poison(mut self, by: u64, fail_times: u32) -> Self {
        self.poison = Some((by, fail_times));
        self
    }

    /// Calls `on_handled` with each row before it keeps it.
    #[must_use]
    pub fn on_handled(mut self, on_handled: OnHandled) -> Self {
        self.on_handled = Some(on_handled);
        self
    }

    /// How often the handler was tried on the poisoned event; shared by clones of the counter.
    #[must_use]
    pub fn tries(&self) -> Arc<AtomicU32> {
        Arc::clone(&self.tries)
    }

    /// How many events it has handled.
    #[must_use]
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// The rows kept since the last call: what the next commit writes.
    pub fn take_rows(&mut self) -> Vec<Row> {
        std::mem::take(&mut self.pending)
    }
}

impl<const V: u32> Projection for Ticks<V> {
    const NAME: &'static str = "suite_ticks";
    const VERSION: u32 = V;
    const SELECTION: &'static [Selected] = &[Selected {
        rust_type: "Incremented",
        stream_type: Some(Counter::TYPE),
        event_type: Incremented::NAME,
        aliases: &[],
    }];

    fn dispatch(&mut self, record: &crate::record::StoredEvent) -> Result<bool, DispatchError> {
        if selected_index(Self::SELECTION, record) != Some(0) {
            return Ok(false);
        }
        let event = decode_event::<Incremented>(record).map_err(DispatchError::Decode)?;
        if let Some((by, fail_times)) = self.poison
            && event.event.by == by
            && self.tries.fetch_add(1, Ordering::SeqCst) < fail_times
        {
            return Err(DispatchError::Handler(format!("increment by {by} is poisoned").into()));
        }
        let row = Row {
            version: V,
            partition: self.partition,
            handled: self.handled,
            stream: record.stream.id().to_owned(),
            stream_version: record.stream_version.0,
            position: record.position.0,
        };
        if let Some(on_handled) = &self.on_handled {
            on_handled(&row);
        }
        self.handled += 1;
        self.pending.push(row);
        Ok(true)
    }
}

/// What the suite runs on: a store, the checkpoints that commit the read model of [`Ticks`]
/// with the checkpoint, and the committed read model.
pub trait ReadModelFixture: Send + Sync + 'static {
    /// The store under test.
    type Store: EventStore + Clone;

    /// The store, empty when the fixture was made.
    fn store(&self) -> Self::Store;

    /// Checkpoints for [`Ticks<V>`] that write the rows it took ([`Ticks::take_rows`]) with
    /// its checkpoint, in one transaction.
    fn checkpoints<const V: u32>(&self) -> impl Future<Output = impl CommitBatch<Ticks<V>>> + Send;

    /// Every committed row written by version `version`, in any order.
    fn rows(&self, version: u32) -> impl Future<Output = Vec<Row>> + Send;

    /// Cleans up after a check (drops a schema, say); nothing by default.
    fn finish(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// The read model of [`Ticks`] and its checkpoints in memory, committed together under one
/// lock: exactly once within the process. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryReadModel {
    state: Arc<Mutex<Committed>>,
}

/// What a [`MemoryReadModel`] holds: the checkpoints by name, and the rows.
type Committed = (HashMap<String, SavedCheckpoint>, Vec<Row>);

impl MemoryReadModel {
    /// No rows, no checkpoints.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every committed row of version `version`.
    #[must_use]
    pub fn rows(&self, version: u32) -> Vec<Row> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1.iter().filter(|row| row.version == version).cloned().collect()
    }
}

impl<const V: u32> CommitBatch<Ticks<V>> for MemoryReadModel {
    async fn load(&self, name: &str) -> Result<Option<SavedCheckpoint>, CheckpointStoreError> {
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner).0.get(name).cloned())
    }

    async fn commit(
        &self,
        projection: &Arc<Mutex<Ticks<V>>>,
        saved: &SavedCheckpoint,
    ) -> Result<(), CheckpointStoreError> {
        let rows = projection.lock().unwrap_or_else(PoisonError::into_inner).take_rows();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.insert(saved.identity.name.clone(), saved.clone());
        state.1.extend(rows);
        Ok(())
    }
}

/// A fixture over any store with the read model in memory ([`MemoryReadModel`]).
#[derive(Debug, Clone)]
pub struct InMemoryFixture<S> {
    store: S,
    model: MemoryReadModel,
}

impl<S> InMemoryFixture<S> {
    /// `store` (empty) with a read model in memory.
    pub fn new(store: S) -> Self {
        Self { store, model: MemoryReadModel::new() }
    }
}

impl<S: EventStore + Clone> ReadModelFixture for InMemoryFixture<S> {
    type Store = S;

    fn store(&self) -> S {
        self.store.clone()
    }

    async fn checkpoints<const V: u32>(&self) -> impl CommitBatch<Ticks<V>> {
        self.model.clone()
    }

    async fn rows(&self, version: u32) -> Vec<Row> {
        self.model.rows(version)
    }
}

const WAIT: Duration = Duration::from_secs(60);

/// An increment of `by`.
#[must_use]
pub fn increment(by: u64) -> NewEvent {
    NewEvent::new(RawEvent::new(Incremented::NAME, 1, format!(r#"{{"by":{by}}}"#)))
}

/// The [`Counter`] stream `id`.
#[must_use]
pub fn counter(id: &str) -> StreamId {
    StreamId::new(Counter::TYPE, id)
}

/// Small batches, quick retries, and a poll interval that only matters for a store without a
/// commit signal (a store with one must wake its followers itself).
fn options<S: EventStore>(store: &S) -> ProjectionOptions {
    let poll_interval =
        if store.commit_signal().is_some() { Duration::from_secs(3600) } else { Duration::from_millis(20) };
    ProjectionOptions {
        batch_size: 50,
        poll_interval,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        ..ProjectionOptions::default()
    }
}

/// Every committed row is one event, once: as many distinct positions as rows, and `count`.
#[track_caller]
fn assert_each_once(rows: &[Row], count: usize) {
    let positions: HashSet<u64> = rows.iter().map(|row| row.position).collect();
    assert_eq!(positions.len(), rows.len(), "an event was committed twice");
    assert_eq!(rows.len(), count, "every event, exactly once");
}

/// Within each partition, each stream's events were handled in version order, from 1 with no
/// gap, and no stream was handled by two partitions.
#[track_caller]
fn assert_stream_order(rows: &[Row]) {
    let mut by_stream: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_stream.entry(&row.stream).or_default().push(row);
    }
    for (stream, mut rows) in by_stream {
        let partitions: HashSet<u32> = rows.iter().map(|row| row.partition).collect();
        assert_eq!(partitions.len(), 1, "stream {stream} was handled by partitions {partitions:?}");
        rows.sort_by_key(|row| row.handled);
        let versions: Vec<u64> = rows.iter().map(|row| row.stream_version).collect();
        let expected: Vec<u64> = (1..=rows.len() as u64).collect();
        assert_eq!(versions, expected, "stream {stream} out of order");
    }
}

/// Runs `projection` until it has handled everything up to the store's head, then stops it.
async fn run_to_head<F: ReadModelFixture, const V: u32>(fixture: &F, projection: Ticks<V>) -> Option<Rebuilt> {
    let store = fixture.store();
    let runner = ProjectionRunner::new(projection, store.clone(), fixture.checkpoints::<V>().await)
        .with_options(options(&store));
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.expect("the projection reaches the head");
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    handle.rebuilt()
}

/// A projection started after 10,000 of its events (and others it does not select) were
/// stored sees every one once, each stream in order.
pub async fn a_projection_added_after_ten_thousand_events_sees_each_once<F: ReadModelFixture>(fixture: &F) {
    let store = fixture.store();
    for stream in 0..50 {
        for part in 0..2u64 {
            let batch = (1..=100).map(|n| increment(part * 100 + n)).collect();
            store.append(&counter(&stream.to_string()), ExpectedVersion::Any, batch).await.expect("append");
        }
        let other = StreamId::new("Other", stream.to_string());
        store.append(&other, ExpectedVersion::Any, vec![increment(1)]).await.expect("append");
    }
    let store = fixture.store();
    let runner = ProjectionRunner::new(Ticks::<1>::default(), store.clone(), fixture.checkpoints::<1>().await)
        .with_options(ProjectionOptions { batch_size: 500, ..options(&store) });
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.expect("the projection catches up");
    let status = handle.status().await.expect("status");
    assert!(status.is_healthy(0), "{status:?}");
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    assert_eq!(handle.read(Ticks::handled), 10_000, "handled once each");
    let rows = fixture.rows(1).await;
    assert_each_once(&rows, 10_000);
    assert_stream_order(&rows);
}

/// A running projection follows concurrent writers as they append (woken by the store's
/// commit signal: its poll interval is an hour), and a new runner resumes from the committed
/// checkpoint: it handles only what came after.
pub async fn it_follows_writers_live_and_resumes_from_its_checkpoint<F: ReadModelFixture>(fixture: &F) {
    let store = fixture.store();
    let runner = ProjectionRunner::new(Ticks::<1>::default(), store.clone(), fixture.checkpoints::<1>().await)
        .with_options(options(&store));
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    let stream = counter(&format!("{writer}-{}", n % 5));
                    store.append(&stream, ExpectedVersion::Any, vec![increment(1)]).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    handle.wait_for_head(WAIT).await.expect("the projection follows the writers");
    // Read-your-writes: one more event, waited for by the head after it.
    store.append(&counter("last"), ExpectedVersion::Any, vec![increment(5)]).await.expect("append");
    let head = store.head().await.expect("head");
    handle.wait_for(&head, WAIT).await.expect("the projection sees the last write");
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    let rows = fixture.rows(1).await;
    assert_each_once(&rows, 101);
    assert_stream_order(&rows);

    store.append(&counter("after"), ExpectedVersion::Any, vec![increment(2)]).await.expect("append");
    assert_eq!(run_to_head(fixture, Ticks::<1>::default()).await, None, "a resume, not a rebuild");
    let rows = fixture.rows(1).await;
    assert_each_once(&rows, 102);
    assert_eq!(rows.iter().filter(|row| row.stream == "after").count(), 1);
}

/// A handler that keeps failing on one event is tried `max_attempts` times and stops the
/// projection with an error naming the event, its batch uncommitted; a restart whose retry
/// succeeds loses and repeats nothing; under [`OnFailure::Park`] the event is set aside and
/// the rest handled.
pub async fn a_poisoned_event_is_retried_then_stops_or_is_parked<F: ReadModelFixture>(fixture: &F) {
    let store = fixture.store();
    let stream = counter("poisoned");
    let batch = (1..=10).map(increment).collect();
    store.append(&stream, ExpectedVersion::NoStream, batch).await.expect("append");
    // Batches of 4: [1 2 3 4] [5 6 7 8] [9 10]; the event by 6 is in the middle of the second.
    let options = ProjectionOptions { batch_size: 4, ..options(&store) };

    let poisoned = Ticks::<1>::default().poison(6, u32::MAX);
    let tries = poisoned.tries();
    let runner =
        ProjectionRunner::new(poisoned, store.clone(), fixture.checkpoints::<1>().await).with_options(options.clone());
    let handle = runner.handle();
    let error = runner.run().await.expect_err("the poisoned event stops the projection");
    assert_eq!(tries.load(Ordering::SeqCst), 3, "tried max_attempts times");
    match error.as_ref() {
        ProjectionError::Handler { event, attempts: 3, .. } => {
            assert_eq!((event.stream_version.0, event.event_type.as_str()), (6, Incremented::NAME));
            assert_eq!(event.stream, stream);
        }
        other => panic!("expected a handler error, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("event 6 of stream Counter/poisoned"), "{message}");
    assert!(!handle.status().await.expect("status").is_healthy(u64::MAX));
    let mut versions: Vec<u64> = fixture.rows(1).await.iter().map(|row| row.stream_version).collect();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4], "the first batch only");

    // A restart whose retry succeeds: from the second batch on, nothing lost, nothing twice.
    assert_eq!(run_to_head(fixture, Ticks::<1>::default().poison(6, 2)).await, None);
    let rows = fixture.rows(1).await;
    assert_each_once(&rows, 10);
    let mut versions: Vec<u64> = rows.iter().map(|row| row.stream_version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());

    // Parked (under a new version, which rebuilds from the first event).
    let options = ProjectionOptions { on_failure: OnFailure::Park, ..options };
    let runner = ProjectionRunner::new(
        Ticks::<2>::default().poison(6, u32::MAX),
        store.clone(),
        fixture.checkpoints::<2>().await,
    )
    .with_options(options);
    let handle = runner.handle();
    let task = tokio::spawn(runner.run());
    handle.wait_for_head(WAIT).await.expect("the rest is handled");
    let parked = handle.parked();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].event.stream_version.0, parked[0].attempts), (6, 3));
    assert!(parked[0].error.contains("poisoned"), "{}", parked[0].error);
    assert_eq!(handle.status().await.expect("status").parked, 1);
    handle.stop();
    task.await.expect("the runner panicked").expect("the runner failed");
    let mut versions: Vec<u64> = fixture.rows(2).await.iter().map(|row| row.stream_version).collect();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4, 5, 7, 8, 9, 10], "every event but the parked one");
}

/// Four partitions, started before three writers append concurrently to twelve shared
/// streams, commit every event exactly once, each stream in one partition and in order.
pub async fn four_partitions_under_concurrent_writers_handle_each_event_once_in_stream_order<F: ReadModelFixture>(
    fixture: &F,
) {
    let store = fixture.store();
    let mut partitions = Vec::new();
    for partition in Partition::all(4) {
        let runner = ProjectionRunner::new(
            Ticks::<1>::for_partition(partition),
            store.clone(),
            fixture.checkpoints::<1>().await,
        )
        .with_options(ProjectionOptions { batch_size: 16, ..options(&store) })
        .with_partition(partition);
        partitions.push((runner.handle(), tokio::spawn(runner.run())));
    }
    let writers: Vec<_> = (0..3u64)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..40u64 {
                    let stream = counter(&((writer + n) % 12).to_string());
                    store.append(&stream, ExpectedVersion::Any, vec![increment(n + 1)]).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    for (handle, _) in &partitions {
        handle.wait_for_head(WAIT).await.expect("every partition reaches the head");
        assert_eq!(handle.status().await.expect("status").lag, 0);
    }
    for (handle, task) in partitions {
        assert_eq!(handle.rebuilt(), None);
        handle.stop();
        task.await.expect("the runner panicked").expect("the runner failed");
    }
    let rows = fixture.rows(1).await;
    assert_each_once(&rows, 120);
    assert_stream_order(&rows);
    for row in &rows {
        let partition = Partition::new(row.partition, 4).expect("a partition of four");
        assert!(partition.owns(&counter(&row.stream)), "{partition} handled stream {}", row.stream);
    }
    let used: HashSet<u32> = rows.iter().map(|row| row.partition).collect();
    assert!(used.len() >= 3, "the streams spread over the partitions: {used:?}");
}

/// Bumping the version rebuilds the read model from the first event, and the rebuilt model
/// is the one the first run committed.
pub async fn a_rebuild_gives_the_same_read_model<F: ReadModelFixture>(fixture: &F) {
    let store = fixture.store();
    for n in 0..300u64 {
        let stream = counter(&(n % 7).to_string());
        store.append(&stream, ExpectedVersion::Any, vec![increment(n)]).await.expect("append");
    }
    assert_eq!(run_to_head(fixture, Ticks::<1>::default()).await, None);
    let rebuilt = run_to_head(fixture, Ticks::<2>::default()).await;
    assert!(
        matches!(&rebuilt, Some(Rebuilt::IdentityChanged { stored, current }) if stored.version == 1 && current.version == 2),
        "{rebuilt:?}"
    );
    let strip = |rows: Vec<Row>| {
        let mut rows: Vec<Row> = rows.into_iter().map(|row| Row { version: 0, ..row }).collect();
        rows.sort();
        rows
    };
    let (first, second) = (strip(fixture.rows(1).await), strip(fixture.rows(2).await));
    assert_eq!(first.len(), 300);
    assert_eq!(first, second, "the rebuilt read model is the first one");

    // Refusing the change instead: a typed error, and the version-2 model is left as it is.
    let runner = ProjectionRunner::new(Ticks::<3>::default(), store.clone(), fixture.checkpoints::<3>().await)
        .with_options(ProjectionOptions { on_identity_change: IdentityChange::Refuse, ..options(&store) });
    let error = runner.run().await.expect_err("a refused identity change");
    assert!(matches!(error.as_ref(), ProjectionError::IdentityChanged { .. }), "{error}");
    assert!(fixture.rows(3).await.is_empty());
}

#[cfg(test)]
mod tests {
    /// Every public check of this module is in the one list the suite runs.
    #[test]
    fn every_check_is_listed() {
        super::super::assert_every_check_listed(include_str!("projection_suite.rs"), super::CHECKS);
    }
}
