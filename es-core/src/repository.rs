//! The repository: load an aggregate (snapshot + tail), run a command on it, append what it
//! decided with the version it saw, retry on conflict if asked to.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::cache::AggregateCache;
use crate::decode::{DecodeError, decode_event};
use crate::event::{EventSet, IntoEvents};
use crate::record::{Envelope, Metadata, StoredEvent, Version};
use crate::store::{EventStore, ExpectedVersion, NewEvent, Snapshot, StoreError, StreamId, StreamPages};

/// How many events one read of a stream fetches while loading.
const LOAD_PAGE: usize = 1024;

/// An aggregate's state as loaded, with the stream version it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream version the state includes (0 for a stream with no events).
    pub version: Version,
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

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E> {
    /// The command refused; nothing was written.
    #[error("the command was refused: {0}")]
    Command(#[source] E),
    /// The store failed, or the stream moved on and retries (if any) were used up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not decode into today's types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event the command produced does not serialize.
    #[error("event `{event_type}` does not serialize: {source}")]
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

/// Retrying a command whose append met a version conflict: reload, decide again, append again,
/// with jittered exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles each time.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// No retries: a conflict is returned to the caller.
    pub const NONE: RetryPolicy =
        RetryPolicy { max_attempts: 1, base_delay: Duration::ZERO, max_delay: Duration::ZERO };

    /// Up to `max_attempts` attempts with the default backoff (1 ms doubling to 100 ms).
    #[must_use]
    pub const fn attempts(max_attempts: u32) -> Self {
        RetryPolicy { max_attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(100) }
    }

    /// The backoff before attempt `attempt + 1`: a random duration up to the exponential bound
    /// ("full jitter"), so contending writers spread out instead of colliding again.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self.base_delay.saturating_mul(1u32 << attempt.min(20)).min(self.max_delay);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos + 1)
    }
}

impl Default for RetryPolicy {
    /// Ten attempts, backoff from 1 ms doubling up to 100 ms.
    fn default() -> Self {
        Self::attempts(100)
    }
}

/// A random number from the standard library's per-process hash keys (no RNG dependency).
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Uuid::now_v7().as_u128());
    hasher.finish()
}

/// Per-command settings: metadata for the events and an optional command id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Stored with every event the command produces.
    pub metadata: Metadata,
    /// When set, the events' ids derive from it, and running a command with an id whose
    /// events are already stored returns those events instead of deciding again: a retried
    /// request never applies twice.
    pub command_id: Option<Uuid>,
}

impl CommandOptions {
    /// Options with this command id.
    #[must_use]
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = Some(command_id);
        self
    }

    /// Options with this metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Options for a command caused by `cause`: its correlation id carried forward, its event
    /// id as causation id.
    #[must_use]
    pub fn caused_by<E>(cause: &Envelope<E>) -> Self {
        Self { metadata: Metadata::caused_by(cause), command_id: None }
    }

    /// The id of the `index`-th event of a command with id `command_id` (UUID v5 in the
    /// command id's namespace).
    #[must_use]
    pub fn derived_event_id(command_id: Uuid, index: usize) -> Uuid {
        Uuid::new_v5(&command_id, &(index as u64).to_be_bytes())
    }
}

/// Loads and saves aggregates of type `A` in store `S`.
///
/// ```
/// # use es_core::{InMemoryStore, repository::Repository};
/// # fn doc<A: es_core::Aggregate>() {
/// let accounts = Repository::<A, _>::new(InMemoryStore::new());
/// # }
/// ```
pub struct Repository<A: Aggregate, S> {
    store: S,
    retry: RetryPolicy,
    cache: Option<AggregateCache<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), retry: self.retry, cache: self.cache.clone(), _aggregate: PhantomData }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store`, without retries or cache.
    pub fn new(store: S) -> Self {
        Self { store, retry: RetryPolicy::NONE, cache: None, _aggregate: PhantomData }
    }

    /// Retries commands on version conflicts.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Keeps up to `capacity` aggregates in memory (least recently used evicted). A cached
    /// aggregate is caught up with the events appended since it was cached before use, so
    /// other writers are never missed.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(AggregateCache::new(capacity));
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream name of aggregate `id`.
    pub fn stream_of(id: &A::Id) -> StreamId {
        StreamId::new(A::TYPE, id.to_string())
    }

    /// The current state: the latest usable snapshot plus the events after it.
    ///
    /// # Errors
    /// Store failures and events that do not decode.
    pub async fn load(&self, id: &A::Id) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        self.load_stream(&Self::stream_of(id), None, true).await
    }

    /// The state as it was at `version` (or at the current version, if the stream is
    /// shorter): time travel.
    ///
    /// # Errors
    /// Store failures and events that do not decode.
    pub async fn load_at(&self, id: &A::Id, version: Version) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        self.load_stream(&Self::stream_of(id), Some(version), false).await
    }

    /// The events of aggregate `id`, decoded, with their metadata.
    ///
    /// # Errors
    /// Store failures and events that do not decode.
    pub async fn history(&self, id: &A::Id) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>> {
        let mut pages = StreamPages::new(&self.store, Self::stream_of(id), Version(1), LOAD_PAGE);
        let mut history = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for record in &page {
                history.push(crate::decode::decode_record::<A>(record)?);
            }
        }
        Ok(history)
    }

    /// Loads aggregate `id`, runs `command` on it and appends what it decided, expecting the
    /// version it loaded. Returns the committed events (none if the command decided nothing).
    ///
    /// # Errors
    /// [`RepositoryError::Command`] when the command refuses, a conflict when another writer
    /// appended in between and retries are off or used up, store and decode failures.
    pub async fn execute<R, F>(
        &self,
        id: &A::Id,
        command: F,
    ) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>>
    where
        F: Fn(&A) -> Result<R, A::Error>,
        R: IntoEvents<A::Event>,
    {
        self.execute_with(id, CommandOptions::default(), command).await
    }

    /// [`Repository::execute`] with metadata and an optional command id.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_with<R, F>(
        &self,
        id: &A::Id,
        options: CommandOptions,
        command: F,
    ) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>>
    where
        F: Fn(&A) -> Result<R, A::Error>,
        R: IntoEvents<A::Event>,
    {
        self.run(id, &options, |state| std::future::ready(command(state).map(IntoEvents::into_events))).await
    }

    /// [`Repository::execute`] for a command that awaits outside services. The command gets
    /// a copy of the loaded state; it still runs between the load and the append, and the
    /// append expects the version it saw.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_async<R, F, Fut>(
        &self,
        id: &A::Id,
        options: CommandOptions,
        command: F,
    ) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>>
    where
        F: Fn(A) -> Fut,
        Fut: Future<Output = Result<R, A::Error>>,
        R: IntoEvents<A::Event>,
    {
        self.run(id, &options, |state| {
            let decided = command(state.clone());
            async move { decided.await.map(IntoEvents::into_events) }
        })
        .await
    }

    async fn run<F, Fut>(
        &self,
        id: &A::Id,
        options: &CommandOptions,
        decide: F,
    ) -> Result<Vec<Envelope<A::Event>>, RepositoryError<A::Error>>
    where
        F: Fn(&A) -> Fut,
        Fut: Future<Output = Result<Vec<A::Event>, A::Error>>,
    {
        let stream = Self::stream_of(id);
        let mut attempt = 1;
        loop {
            if let Some(command_id) = options.command_id
                && let Some(done) = self.already_applied(&stream, command_id).await?
            {
                return Ok(done);
            }
            // Not remembered in the cache here: `committed` caches the state after the append.
            let loaded = self.load_stream(&stream, None, false).await?;
            let events = decide(&loaded.state).await.map_err(RepositoryError::Command)?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let new_events = encode(&events, options)?;
            let expected =
                if loaded.is_new() { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(loaded.version) };
            match self.store.append(&stream, expected, new_events).await {
                Ok(stored) => return Ok(self.committed(&stream, loaded, events, stored).await),
                Err(error) if error.is_conflict() && attempt < self.retry.max_attempts => {
                    // The cache needs no reset: the next load catches it up with the events
                    // the other writer appended.
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// After a successful append: apply, snapshot when due, cache, and pair events with their
    /// records.
    async fn committed(
        &self,
        stream: &StreamId,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        stored: Vec<StoredEvent>,
    ) -> Vec<Envelope<A::Event>> {
        let Loaded { mut state, version: before } = loaded;
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
            cache.put(&stream.id, state, after);
        }
        stored.into_iter().zip(events).map(|(record, event)| envelope(record, event)).collect()
    }

    async fn save_snapshot(&self, stream: &StreamId, state: &A, version: Version, snapshot_version: u32) {
        match state.encode_snapshot() {
            Some(Ok(encoded)) => {
                let snapshot = Snapshot { stream: stream.clone(), version, snapshot_version, state: encoded };
                if let Err(error) = self.store.save_snapshot(snapshot).await {
                    tracing::warn!(%stream, %version, %error, "could not save a snapshot; loads replay more events until the next one");
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%stream, %version, %error, "the state does not serialize; no snapshot written");
            }
            None => {}
        }
    }

    /// The events of a command with this id, if they are stored already.
    async fn already_applied(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Vec<Envelope<A::Event>>>, RepositoryError<A::Error>> {
        let first_id = CommandOptions::derived_event_id(command_id, 0);
        let Some(first) = self.store.find_event(first_id).await? else { return Ok(None) };
        if first.stream_type != stream.stream_type || first.stream_id != stream.id {
            return Err(StoreError::EventIdReused {
                event_id: first_id,
                existing_stream: StreamId::new(first.stream_type, first.stream_id),
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
                let event = decode_event::<A>(&record)?;
                done.push(envelope(record, event));
            }
        }
        Ok(Some(done))
    }

    /// Loads the state at `at` (the current one for `None`): from the cache or the latest
    /// usable snapshot, then the events after it. `remember` puts the result in the cache
    /// when it moved past what the cache held.
    async fn load_stream(
        &self,
        stream: &StreamId,
        at: Option<Version>,
        remember: bool,
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let mut loaded = Loaded { state: A::default(), version: Version::NONE };
        let cached = match (&self.cache, at) {
            (Some(cache), None) => cache.get(&stream.id),
            _ => None,
        };
        let cached_version = cached.as_ref().map(|(_, version)| *version);
        if let Some((state, version)) = cached {
            loaded = Loaded { state, version };
        } else if let Some(policy) = A::SNAPSHOT
            && let Some(snapshot) = self.store.load_snapshot(stream).await?
            && at.is_none_or(|at| snapshot.version <= at)
        {
            if snapshot.snapshot_version != policy.version {
                tracing::warn!(
                    %stream,
                    found = snapshot.snapshot_version,
                    expected = policy.version,
                    "ignoring a snapshot of another state version; replaying the stream"
                );
            } else {
                match A::decode_snapshot(&snapshot.state) {
                    Some(Ok(state)) => loaded = Loaded { state, version: snapshot.version },
                    Some(Err(error)) => {
                        tracing::warn!(%stream, version = %snapshot.version, %error, "ignoring a snapshot that no longer deserializes; replaying the stream");
                    }
                    None => {}
                }
            }
        }
        // Time travel reads no more than it needs: pages no larger than the gap to `at`.
        let page_size = at.map_or(LOAD_PAGE, |at| {
            usize::try_from(at.0.saturating_sub(loaded.version.0)).unwrap_or(LOAD_PAGE).clamp(1, LOAD_PAGE)
        });
        let mut pages = StreamPages::new(&self.store, stream.clone(), loaded.version.next(), page_size);
        'pages: while let Some(page) = pages.next_page().await? {
            for record in &page {
                if at.is_some_and(|at| record.stream_version > at) {
                    break 'pages;
                }
                let event = decode_event::<A>(record)?;
                loaded.state.apply(&event);
                loaded.version = record.stream_version;
            }
        }
        if remember
            && cached_version != Some(loaded.version)
            && let Some(cache) = &self.cache
        {
            cache.put(&stream.id, loaded.state.clone(), loaded.version);
        }
        Ok(loaded)
    }
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
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload,
                metadata: options.metadata.clone(),
            })
        })
        .collect()
}

fn envelope<E>(record: StoredEvent, event: E) -> Envelope<E> {
    Envelope {
        position: record.position,
        stream_type: record.stream_type,
        stream_id: record.stream_id,
        stream_version: record.stream_version,
        event_id: record.event_id,
        metadata: record.metadata,
        recorded_at: record.recorded_at,
        event,
    }
}
