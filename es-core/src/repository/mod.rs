//! The repository: load an aggregate (cache or snapshot, then the events after it), run a
//! command on it, append what it decided with the version it saw, retry on conflict if asked.
//!
//! ```
//! # use es_core::{InMemoryStore, Repository};
//! # fn doc<A: es_core::Aggregate>() {
//! let accounts = Repository::<A, _>::new(InMemoryStore::new());
//! # }
//! ```

mod cache;
mod options;

use std::borrow::Borrow;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Instrument;
use uuid::Uuid;

use self::cache::AggregateCache;
pub use self::options::{CommandOptions, RetryPolicy};
use crate::aggregate::Aggregate;
use crate::decode::{DecodeError, decode_raw, decode_record};
use crate::event::{CommandResult, EventSet, IntoEvents};
use crate::record::{Envelope, NewEvent, RawEvent, StoredEvent, StreamId, Version};
use crate::store::kit::StreamPages;
use crate::store::{
    AppendOutcome, Appended, CorruptProblem, Corruption, EventStore, ExpectedVersion, Snapshot, StoreError,
};

/// How many events one read of a stream fetches while loading.
const LOAD_PAGE: usize = 1024;

/// How many aggregates a repository caches unless told otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// An aggregate's state as loaded, with the stream version it reflects and how it was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream version the state includes (0 for a stream with no events).
    pub version: Version,
    /// The version of the snapshot the load started from, if it used one.
    pub from_snapshot: Option<Version>,
    /// A stored snapshot the load could not use, and why (the stream was replayed instead).
    pub ignored_snapshot: Option<IgnoredSnapshot>,
}

impl<A> Loaded<A> {
    /// Whether the stream has no events yet (the state is the default).
    #[must_use]
    pub fn is_new(&self) -> bool {
        self.version == Version::NONE
    }
}

impl<A> Deref for Loaded<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.state
    }
}

/// A stored snapshot that a load passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredSnapshot {
    /// The stream version it was taken at.
    pub version: Version,
    /// Why it was not used.
    pub reason: SnapshotProblem,
}

/// Why a stored snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotProblem {
    /// It was written for another version of the state's schema (`snapshot(version = V)`).
    OtherStateVersion {
        /// The snapshot's state version.
        found: u32,
        /// The version the aggregate declares now.
        expected: u32,
    },
    /// It no longer deserializes into the state.
    DoesNotDeserialize {
        /// What serde_json reported.
        reason: String,
    },
}

/// Counts of what a repository (and its clones) did, readable without a tracing subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositoryStats {
    /// Commands whose append met a version conflict and ran again.
    pub conflicts_retried: u64,
    /// Commands that found their command id already stored and returned the stored events.
    pub commands_already_applied: u64,
    /// Stored snapshots that loads passed over (another state version, or not deserializing).
    pub snapshots_ignored: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Snapshots that could not be written (the state did not serialize, or the store failed).
    pub snapshot_failures: u64,
    /// Loads and commands that started from a cached state.
    pub cache_hits: u64,
    /// Loads and commands that found no cached state.
    pub cache_misses: u64,
}

#[derive(Default)]
struct Counters {
    conflicts_retried: AtomicU64,
    commands_already_applied: AtomicU64,
    snapshots_ignored: AtomicU64,
    snapshots_written: AtomicU64,
    snapshot_failures: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E> {
    /// The command refused; nothing was written. The command's error is the source.
    #[error("the command was refused")]
    Command(#[source] E),
    /// The store failed, or the stream moved on and retries (if any) were used up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not decode into today's types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event the command produced does not serialize; nothing was written. serde_json's
    /// error is the source.
    #[error("event `{event_type}` does not serialize to JSON")]
    Encode {
        /// The event's type name.
        event_type: &'static str,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
}

impl<E> RepositoryError<E> {
    /// Whether the failure is a version conflict (another writer got there first).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, RepositoryError::Store(error) if error.is_conflict())
    }

    /// The command's own error, if the command refused.
    #[must_use]
    pub fn command_error(&self) -> Option<&E> {
        match self {
            RepositoryError::Command(error) => Some(error),
            _ => None,
        }
    }
}

/// What a command committed: its events as stored, and whether this call wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<E> {
    /// The events, decoded, with their records (empty if the command decided nothing).
    pub events: Vec<Envelope<E>>,
    /// Whether this call wrote them, or found a command with the same id already stored.
    pub outcome: AppendOutcome,
}

impl<E> Executed<E> {
    /// Whether the events were stored by an earlier run of the same command (same command id):
    /// the original outcome, returned again.
    #[must_use]
    pub fn already_applied(&self) -> bool {
        self.outcome == AppendOutcome::AlreadyStored
    }

    /// The stream version after the command (`None` if it decided nothing).
    #[must_use]
    pub fn version(&self) -> Option<Version> {
        self.events.last().map(|event| event.stream_version)
    }
}

impl<E> Deref for Executed<E> {
    type Target = [Envelope<E>];

    fn deref(&self) -> &[Envelope<E>] {
        &self.events
    }
}

impl<E> IntoIterator for Executed<E> {
    type Item = Envelope<E>;
    type IntoIter = std::vec::IntoIter<Envelope<E>>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

/// Loads and saves aggregates of type `A` in store `S`.
///
/// - **Cache.** On by default ([`DEFAULT_CACHE_CAPACITY`] aggregates, second-chance
///   eviction): a repository reads the events appended since the cached version before every
///   use, so other writers and other processes are never missed; the cache only saves the
///   replay. [`Repository::with_cache`] sets the size, `with_cache(0)` turns it off.
/// - **Retries.** Off by default: a version conflict is returned. [`Repository::with_retry`]
///   reloads and runs the command again, which is why a command is an `Fn`: it may run more
///   than once, and must decide from the state alone.
/// - **Command ids.** With [`CommandOptions::with_command_id`], the events' ids derive from the
///   command id, and a command whose id is already stored returns the stored events (its
///   original outcome) instead of deciding again, however the deliveries interleave.
///
/// Clones share the store, the cache and the counters.
pub struct Repository<A: Aggregate, S> {
    store: S,
    retry: RetryPolicy,
    cache: Option<Arc<AggregateCache<A>>>,
    counters: Arc<Counters>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retry: self.retry,
            cache: self.cache.clone(),
            counters: Arc::clone(&self.counters),
            _aggregate: PhantomData,
        }
    }
}

/// Where a load starts: a state and the version it includes.
struct Start<A> {
    state: A,
    version: Version,
    from_snapshot: Option<Version>,
    ignored_snapshot: Option<IgnoredSnapshot>,
    /// Whether the event at `version` must be read again to prove the stream reaches it (a
    /// snapshot's claim; a cached state was read from the store by this process).
    verify: bool,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store`, with the default cache and without retries.
    pub fn new(store: S) -> Self {
        Self {
            store,
            retry: RetryPolicy::NONE,
            cache: Some(Arc::new(AggregateCache::new(DEFAULT_CACHE_CAPACITY))),
            counters: Arc::default(),
            _aggregate: PhantomData,
        }
    }

    /// Retries commands on version conflicts: reload, decide again, append again.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Keeps up to `capacity` aggregates in memory (0 turns the cache off). A cached aggregate
    /// is caught up with the events appended since it was cached before every use, so other
    /// writers are never missed.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| Arc::new(AggregateCache::new(capacity)));
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// What this repository and its clones did so far.
    #[must_use]
    pub fn stats(&self) -> RepositoryStats {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RepositoryStats {
            conflicts_retried: read(&c.conflicts_retried),
            commands_already_applied: read(&c.commands_already_applied),
            snapshots_ignored: read(&c.snapshots_ignored),
            snapshots_written: read(&c.snapshots_written),
            snapshot_failures: read(&c.snapshot_failures),
            cache_hits: read(&c.cache_hits),
            cache_misses: read(&c.cache_misses),
        }
    }

    /// The current state: the cached state or the latest usable snapshot, plus the events
    /// after it. A `String` id may be passed as `&str`.
    ///
    /// # Errors
    /// Store failures, [`StoreError::Corrupt`] for impossible history (a version gap, a
    /// snapshot ahead of its stream) and events that do not decode.
    pub async fn load<Q>(&self, id: &Q) -> Result<Loaded<A>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
    {
        let stream = StreamId::of::<A>(id);
        let span = tracing::debug_span!("es.load", stream = %stream, version = tracing::field::Empty);
        let recorded = span.clone();
        async {
            let cached = self.cache.as_ref().and_then(|cache| cache.get(&stream));
            let cached_version = cached.as_ref().map(|(_, version)| *version);
            let loaded = self.load_from(&stream, cached, None).await?;
            recorded.record("version", loaded.version.0);
            if let Some(cache) = &self.cache
                && cached_version != Some(loaded.version)
            {
                cache.put(&stream, loaded.state.clone(), loaded.version);
            }
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    /// The state as it was at `version` (or at the current version, if the stream is
    /// shorter): time travel.
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn load_at<Q>(&self, id: &Q, version: Version) -> Result<Loaded<A>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
    {
        let stream = StreamId::of::<A>(id);
        let span = tracing::debug_span!("es.load_at", stream = %stream, at = version.0);
        self.load_from(&stream, None, Some(version)).instrument(span).await
    }

    /// The events of aggregate `id`, decoded, with their records.
    ///
    /// # Errors
    /// Store failures and events that do not decode.
    pub async fn history<Q>(&self, id: &Q) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
    {
        let mut pages = StreamPages::new(&self.store, StreamId::of::<A>(id), Version(1), LOAD_PAGE);
        let mut history = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for record in page {
                history.push(decode_record::<A>(record)?);
            }
        }
        Ok(history)
    }

    /// Loads aggregate `id`, runs `command` on it and appends what it decided, expecting the
    /// version it loaded. Returns the committed events (none if the command decided nothing).
    ///
    /// The command is an `Fn` because it may run again: after a version conflict when retries
    /// are on. It decides from the state alone and changes nothing outside.
    ///
    /// # Errors
    /// [`RepositoryError::Command`] when the command refuses, a conflict when another writer
    /// appended in between and retries are off or used up, store and decode failures.
    pub async fn execute<Q, F, Out>(&self, id: &Q, command: F) -> Result<Executed<A::Event>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
        F: Fn(&A) -> Out,
        Out: CommandResult<A>,
    {
        self.execute_with(id, CommandOptions::default(), command).await
    }

    /// [`Repository::execute`] with metadata and an optional command id.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_with<Q, F, Out>(
        &self,
        id: &Q,
        options: CommandOptions,
        command: F,
    ) -> Result<Executed<A::Event>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
        F: Fn(&A) -> Out,
        Out: CommandResult<A>,
    {
        self.run(StreamId::of::<A>(id), &options, |state| {
            std::future::ready(command(state).into_result().map(IntoEvents::into_events))
        })
        .await
    }

    /// [`Repository::execute`] for a command that awaits outside services. The command gets
    /// a copy of the loaded state (a future cannot borrow it across the retries); it still
    /// runs between the load and the append, and the append expects the version it saw. It
    /// may return several events, as a synchronous command does.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_async<Q, F, Fut>(
        &self,
        id: &Q,
        command: F,
    ) -> Result<Executed<A::Event>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
        F: Fn(A) -> Fut,
        Fut: Future<Output: CommandResult<A>>,
    {
        self.execute_async_with(id, CommandOptions::default(), command).await
    }

    /// [`Repository::execute_async`] with metadata and an optional command id.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_async_with<Q, F, Fut>(
        &self,
        id: &Q,
        options: CommandOptions,
        command: F,
    ) -> Result<Executed<A::Event>, RepositoryError<A::Error>>
    where
        A::Id: Borrow<Q>,
        Q: Display + ?Sized,
        F: Fn(A) -> Fut,
        Fut: Future<Output: CommandResult<A>>,
    {
        self.run(StreamId::of::<A>(id), &options, |state| {
            let decided = command(state.clone());
            async move { decided.await.into_result().map(IntoEvents::into_events) }
        })
        .await
    }

    async fn run<F, Fut>(
        &self,
        stream: StreamId,
        options: &CommandOptions,
        decide: F,
    ) -> Result<Executed<A::Event>, RepositoryError<A::Error>>
    where
        F: Fn(&A) -> Fut,
        Fut: Future<Output = Result<Vec<A::Event>, A::Error>>,
    {
        let span = tracing::debug_span!(
            "es.execute",
            stream = %stream,
            attempt = tracing::field::Empty,
            version = tracing::field::Empty,
            events = tracing::field::Empty,
        );
        let recorded = span.clone();
        async {
            let mut attempt = 1;
            loop {
                recorded.record("attempt", attempt);
                if let Some(command_id) = options.command_id
                    && let Some(done) = self.already_applied(&stream, command_id).await?
                {
                    return Ok(done);
                }
                let cached = self.cache.as_ref().and_then(|cache| cache.take(&stream));
                let loaded = self.load_from(&stream, cached, None).await?;
                let decided = decide(&loaded.state).instrument(tracing::debug_span!("es.decide")).await;
                let events = match decided {
                    Ok(events) if !events.is_empty() => events,
                    outcome => {
                        self.put_back(&stream, loaded);
                        // A delivery of the same command that committed meanwhile is the
                        // outcome, not this run's refusal (or nothing).
                        if let Some(command_id) = options.command_id
                            && let Some(done) = self.already_applied(&stream, command_id).await?
                        {
                            return Ok(done);
                        }
                        return match outcome {
                            Ok(_) => Ok(Executed { events: Vec::new(), outcome: AppendOutcome::Written }),
                            Err(refusal) => Err(RepositoryError::Command(refusal)),
                        };
                    }
                };
                let batch = match encode(&events, options) {
                    Ok(batch) => batch,
                    Err(error) => {
                        self.put_back(&stream, loaded);
                        return Err(error);
                    }
                };
                let expected = ExpectedVersion::at(loaded.version);
                let appended = self
                    .store
                    .append(&stream, expected, batch)
                    .instrument(tracing::debug_span!("es.append", expected = %expected, events = events.len()))
                    .await;
                match appended {
                    Ok(Appended { events: stored, outcome: AppendOutcome::Written }) => {
                        let done = self.committed(&stream, loaded, events, stored).await;
                        if let Some(version) = done.version() {
                            recorded.record("version", version.0).record("events", done.len());
                        }
                        return Ok(done);
                    }
                    Ok(Appended { events: stored, outcome: AppendOutcome::AlreadyStored }) => {
                        // Another delivery of this command wrote these events; this run's
                        // decision was made on a state that may already contain them, so it is
                        // not applied: the stored events are the outcome.
                        self.put_back(&stream, loaded);
                        bump(&self.counters.commands_already_applied);
                        return self.found(stored);
                    }
                    Err(error) if error.is_conflict() && attempt < self.retry.max_attempts => {
                        self.put_back(&stream, loaded);
                        bump(&self.counters.conflicts_retried);
                        tracing::debug!(%stream, attempt, "version conflict; deciding again");
                        crate::timer::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(error @ StoreError::EventIdReused { event_id, .. })
                        if options.command_id.is_some_and(|command_id| {
                            (0..events.len()).any(|i| CommandOptions::derived_event_id(command_id, i) == event_id)
                        }) =>
                    {
                        // The same command, decided differently by another delivery on another
                        // state, is stored: that first outcome stands.
                        self.put_back(&stream, loaded);
                        if let Some(command_id) = options.command_id
                            && let Some(done) = self.already_applied(&stream, command_id).await?
                        {
                            return Ok(done);
                        }
                        return Err(error.into());
                    }
                    Err(error) => {
                        self.put_back(&stream, loaded);
                        return Err(error.into());
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn put_back(&self, stream: &StreamId, loaded: Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(stream, loaded.state, loaded.version);
        }
    }

    /// After this call wrote the events: apply them, snapshot when due, cache, and pair the
    /// events with their records.
    async fn committed(
        &self,
        stream: &StreamId,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        stored: Vec<StoredEvent>,
    ) -> Executed<A::Event> {
        let Loaded { mut state, version: before, .. } = loaded;
        for event in &events {
            state.apply(event);
        }
        let after = stored.last().map_or(before, |record| record.stream_version);
        if let Some(policy) = A::SNAPSHOT
            && before.0 / policy.every != after.0 / policy.every
        {
            self.save_snapshot(stream, &state, after, policy.version).await;
        }
        if let Some(cache) = &self.cache {
            cache.put(stream, state, after);
        }
        let events = stored.into_iter().zip(events).map(|(record, event)| record.map(|_| event)).collect();
        Executed { events, outcome: AppendOutcome::Written }
    }

    /// Events stored by an earlier run of the command, decoded.
    fn found(&self, stored: Vec<StoredEvent>) -> Result<Executed<A::Event>, RepositoryError<A::Error>> {
        let events = stored.into_iter().map(decode_record::<A>).collect::<Result<Vec<_>, _>>()?;
        Ok(Executed { events, outcome: AppendOutcome::AlreadyStored })
    }

    async fn save_snapshot(&self, stream: &StreamId, state: &A, version: Version, snapshot_version: u32) {
        let span = tracing::debug_span!("es.snapshot", stream = %stream, version = version.0);
        async {
            match state.encode_snapshot() {
                Some(Ok(encoded)) => {
                    let snapshot = Snapshot { stream: stream.clone(), version, snapshot_version, state: encoded };
                    match self.store.save_snapshot(snapshot).await {
                        Ok(()) => bump(&self.counters.snapshots_written),
                        Err(error) => {
                            bump(&self.counters.snapshot_failures);
                            tracing::warn!(%stream, %version, %error, "could not save a snapshot; loads replay more events until the next one");
                        }
                    }
                }
                Some(Err(error)) => {
                    bump(&self.counters.snapshot_failures);
                    tracing::warn!(%stream, %version, %error, "the state does not serialize; no snapshot written");
                }
                None => {}
            }
        }
        .instrument(span)
        .await;
    }

    /// The events of a command with this id, if they are stored already.
    async fn already_applied(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Executed<A::Event>>, RepositoryError<A::Error>> {
        let first_id = CommandOptions::derived_event_id(command_id, 0);
        let Some(first) = self.store.find_event(first_id).await? else { return Ok(None) };
        if first.stream != *stream {
            return Err(StoreError::EventIdReused {
                event_id: first_id,
                existing_stream: first.stream,
                existing_version: first.stream_version,
            }
            .into());
        }
        let mut done = Vec::new();
        let mut pages = StreamPages::new(&self.store, stream.clone(), first.stream_version, LOAD_PAGE);
        'pages: while let Some(page) = pages.next_page().await? {
            for record in page {
                if record.event_id != CommandOptions::derived_event_id(command_id, done.len()) {
                    break 'pages;
                }
                done.push(decode_record::<A>(record)?);
            }
        }
        bump(&self.counters.commands_already_applied);
        Ok(Some(Executed { events: done, outcome: AppendOutcome::AlreadyStored }))
    }

    /// Where a load starts: the cached state if there is one, else the latest usable snapshot
    /// (not past `at`), else the default state.
    async fn start(
        &self,
        stream: &StreamId,
        cached: Option<(A, Version)>,
        at: Option<Version>,
    ) -> Result<Start<A>, RepositoryError<A::Error>> {
        let nothing = || Start {
            state: A::default(),
            version: Version::NONE,
            from_snapshot: None,
            ignored_snapshot: None,
            verify: false,
        };
        if self.cache.is_some() && at.is_none() {
            match cached {
                Some((state, version)) => {
                    bump(&self.counters.cache_hits);
                    return Ok(Start { state, version, from_snapshot: None, ignored_snapshot: None, verify: false });
                }
                None => bump(&self.counters.cache_misses),
            }
        }
        let Some(policy) = A::SNAPSHOT else { return Ok(nothing()) };
        let Some(snapshot) = self.store.load_snapshot(stream).await? else { return Ok(nothing()) };
        if snapshot.version == Version::NONE {
            return Err(snapshot_ahead(stream, Version::NONE, Version::NONE));
        }
        if at.is_some_and(|at| snapshot.version > at) {
            return Ok(nothing());
        }
        let problem = if snapshot.snapshot_version == policy.version {
            match A::decode_snapshot(&snapshot.state) {
                Some(Ok(state)) => {
                    return Ok(Start {
                        state,
                        version: snapshot.version,
                        from_snapshot: Some(snapshot.version),
                        ignored_snapshot: None,
                        verify: true,
                    });
                }
                Some(Err(error)) => SnapshotProblem::DoesNotDeserialize { reason: error.to_string() },
                None => return Ok(nothing()),
            }
        } else {
            SnapshotProblem::OtherStateVersion { found: snapshot.snapshot_version, expected: policy.version }
        };
        bump(&self.counters.snapshots_ignored);
        tracing::warn!(%stream, version = %snapshot.version, problem = ?problem, "ignoring a stored snapshot; replaying the stream");
        Ok(Start {
            ignored_snapshot: Some(IgnoredSnapshot { version: snapshot.version, reason: problem }),
            ..nothing()
        })
    }

    /// Loads the state at `at` (the current one for `None`), starting from `cached` if given.
    async fn load_from(
        &self,
        stream: &StreamId,
        cached: Option<(A, Version)>,
        at: Option<Version>,
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let Start { mut state, mut version, from_snapshot, ignored_snapshot, verify } =
            self.start(stream, cached, at).await?;
        // A snapshot claims the stream reached its version: read that event again to prove it
        // (a snapshot ahead of its stream would make every append conflict forever).
        let read_from = if verify { version } else { version.next() };
        // Time travel reads no more than it needs: pages no larger than the gap to `at`.
        let page_size = at.map_or(LOAD_PAGE, |at| {
            usize::try_from(at.0.saturating_sub(read_from.0) + 1).unwrap_or(LOAD_PAGE).clamp(1, LOAD_PAGE)
        });
        let mut pages = StreamPages::new(&self.store, stream.clone(), read_from, page_size);
        let mut verified = !verify;
        'pages: while let Some(page) = pages.next_page().await? {
            for record in &page {
                if !verified {
                    // `next_page` checked that the page starts at `read_from`.
                    verified = true;
                    continue;
                }
                if at.is_some_and(|at| record.stream_version > at) {
                    break 'pages;
                }
                let event = decode_raw::<A>(stream, record.stream_version, &record.event)?;
                state.apply(&event);
                version = record.stream_version;
            }
        }
        if !verified {
            let stream_version = self.store.stream_version(stream).await?;
            return Err(snapshot_ahead(stream, version, stream_version));
        }
        Ok(Loaded { state, version, from_snapshot, ignored_snapshot })
    }
}

fn snapshot_ahead<E>(stream: &StreamId, snapshot: Version, stream_version: Version) -> RepositoryError<E> {
    StoreError::corrupt(
        Corruption::new(CorruptProblem::SnapshotAhead { snapshot, stream_version })
            .in_stream(stream)
            .at_version(snapshot),
    )
    .into()
}

fn encode<E: EventSet, X>(events: &[E], options: &CommandOptions) -> Result<Vec<NewEvent>, RepositoryError<X>> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let payload =
                event.encode().map_err(|source| RepositoryError::Encode { event_type: event.event_type(), source })?;
            let event_id = match options.command_id {
                Some(command_id) => CommandOptions::derived_event_id(command_id, index),
                None => Uuid::now_v7(),
            };
            Ok(NewEvent {
                event_id,
                event: RawEvent {
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    payload,
                },
                metadata: options.metadata.clone(),
            })
        })
        .collect()
}
