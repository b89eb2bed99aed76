//! The event store contract every store implements, and the types it speaks in.
//!
//! A store keeps streams of events (one stream per aggregate instance, named by stream type
//! and id) and one store-wide order over all of them. Its guarantees are checked for every
//! store by one suite, `testing::conformance` (feature `testing`).

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{Metadata, Position, StoredEvent, Version};

/// What an append expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(Version),
    /// No check: append after whatever is there.
    Any,
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies this expectation.
    #[must_use]
    pub fn admits(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::NoStream => actual == Version::NONE,
            ExpectedVersion::Exact(expected) => actual == expected,
            ExpectedVersion::Any => true,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
            ExpectedVersion::Any => f.write_str("any version"),
        }
    }
}

/// An event to append: what a store records besides the stream, versions and positions it
/// assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; a retried append with the same ids and content is idempotent.
    pub event_id: Uuid,
    /// The stored type name.
    pub event_type: String,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: String,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Whether `stored` holds this event's content (type, version, payload and metadata).
    /// Payloads are compared as JSON values, so a store that normalises JSON (PostgreSQL's
    /// `jsonb`) still recognises a retried append.
    #[must_use]
    pub fn same_content_as(&self, stored: &StoredEvent) -> bool {
        self.event_type == stored.event_type
            && self.schema_version == stored.schema_version
            && self.metadata == stored.metadata
            && (self.payload == stored.payload || same_json(&self.payload, &stored.payload))
    }
}

fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Names one stream: the aggregate type and the instance id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// The aggregate type (`Aggregate::TYPE`).
    pub stream_type: String,
    /// The aggregate id as text.
    pub id: String,
}

impl StreamId {
    /// A stream name from its parts.
    pub fn new(stream_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self { stream_type: stream_type.into(), id: id.into() }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream_type, self.id)
    }
}

/// Where a reader of all events stands: it has seen every event up to here.
///
/// Opaque on purpose: what a store needs to resume without skipping is its own business (for
/// the stores here, the position of the last event read). Persist it with its `Serialize`
/// form or [`Checkpoint::to_u64`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint(Position);

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint(Position(0));

    /// The checkpoint after the event at `position`.
    #[must_use]
    pub const fn after(position: Position) -> Self {
        Self(position)
    }

    /// The position of the last event read (0 at the start).
    #[must_use]
    pub const fn position(self) -> Position {
        self.0
    }

    /// A number to store the checkpoint as.
    #[must_use]
    pub const fn to_u64(self) -> u64 {
        self.0.0
    }

    /// The checkpoint stored with [`Checkpoint::to_u64`].
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self(Position(value))
    }
}

/// Which events a read of all events returns; empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAllFilter {
    /// Only events of these stream types.
    pub stream_types: Vec<String>,
    /// Only events of these type names.
    pub event_types: Vec<String>,
}

impl ReadAllFilter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Also admit events of this stream type.
    #[must_use]
    pub fn stream_type(mut self, stream_type: impl Into<String>) -> Self {
        self.stream_types.push(stream_type.into());
        self
    }

    /// Also admit events of this type name.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Whether `event` passes the filter.
    #[must_use]
    pub fn admits(&self, event: &StoredEvent) -> bool {
        (self.stream_types.is_empty() || self.stream_types.contains(&event.stream_type))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// One page of a read of all events.
#[derive(Debug, Clone, PartialEq)]
pub struct AllEventsPage {
    /// The events, in store order.
    pub events: Vec<StoredEvent>,
    /// Where to resume: after the last event of this page, or past filtered-out events (so a
    /// selective filter still makes progress). Equal to the requested checkpoint when nothing
    /// new was committed.
    pub next: Checkpoint,
}

/// A stored snapshot of one aggregate's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: Version,
    /// The state's own schema version (`snapshot(version = V)`).
    pub snapshot_version: u32,
    /// The state, as JSON.
    pub state: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error(
        "version conflict on stream {stream}: expected {expected}, but it is at version {actual}; \
         another writer got there first: reload and decide again (`Repository::with_retry` does this)"
    )]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// Where the stream actually is.
        actual: Version,
    },
    /// An event id already stored with other content or in another stream; nothing was
    /// written.
    #[error(
        "event id {event_id} is already stored as {existing_stream} version {existing_version} with other content; a retried append must carry the same events"
    )]
    EventIdReused {
        /// The reused id.
        event_id: Uuid,
        /// Where it is stored.
        existing_stream: StreamId,
        /// At which version.
        existing_version: Version,
    },
    /// The same event id appears twice in one batch.
    #[error("event id {event_id} appears twice in one append")]
    DuplicateIdInBatch {
        /// The repeated id.
        event_id: Uuid,
    },
    /// A stored row that the store cannot read (bad metadata, an unparsable id, …).
    #[error("corrupt record in the store at {location}: {reason}")]
    Corrupt {
        /// Where (table, position, stream).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The store's schema is newer than this code.
    #[error("the store's schema is version {found}, newer than version {supported} this code understands; upgrade es")]
    SchemaTooNew {
        /// The schema version found.
        found: u32,
        /// The newest this code knows.
        supported: u32,
    },
    /// The database or storage failed (I/O, not a database file, connection lost, …).
    #[error("event store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(error))
    }

    /// Whether retrying the operation after reloading may succeed (a version conflict).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// An event store: append-only streams with optimistic concurrency, one store-wide order, and
/// a snapshot per stream.
///
/// Futures are `Send` so that repositories can be used from any task.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`: all or nothing, versions assigned
    /// consecutively after the current one. Returns the committed events.
    ///
    /// When the batch's first id is already stored and the whole batch matches what is stored
    /// (same stream, consecutive versions, same content), returns the stored events unchanged:
    /// a retried append is idempotent.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the stream is elsewhere, [`StoreError::EventIdReused`] when
    /// an id is stored with other content or in another stream,
    /// [`StoreError::DuplicateIdInBatch`], and backend errors. Nothing is written on error.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Up to `limit` events of `stream` with versions `from` and above, in version order.
    ///
    /// # Errors
    /// Backend errors and [`StoreError::Corrupt`].
    fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// The stream's current version (0 when it does not exist).
    ///
    /// # Errors
    /// Backend errors and [`StoreError::Corrupt`].
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Up to `limit` events after `from` in store order that pass `filter`.
    ///
    /// Every committed event is handed out exactly once, in one order all readers agree on,
    /// and resuming from the returned [`AllEventsPage::next`] neither skips nor repeats.
    ///
    /// # Errors
    /// Backend errors and [`StoreError::Corrupt`].
    fn read_all(
        &self,
        from: Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> impl Future<Output = Result<AllEventsPage, StoreError>> + Send;

    /// The stored event with this id, if any.
    ///
    /// # Errors
    /// Backend errors and [`StoreError::Corrupt`].
    fn find_event(&self, event_id: Uuid) -> impl Future<Output = Result<Option<StoredEvent>, StoreError>> + Send;

    /// Stores a snapshot, replacing the stream's previous one unless that one is newer.
    ///
    /// # Errors
    /// Backend errors.
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stream's latest snapshot.
    ///
    /// # Errors
    /// Backend errors and [`StoreError::Corrupt`] for a snapshot row the store cannot read
    /// (the repository then replays the stream only if the row reads but does not decode).
    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
}

/// Reads one stream page by page: `while let Some(page) = pages.next_page().await? { … }`.
pub struct StreamPages<'a, S> {
    store: &'a S,
    stream: StreamId,
    next: Version,
    page_size: usize,
    done: bool,
}

impl<'a, S: EventStore> StreamPages<'a, S> {
    /// Pages of `page_size` events of `stream`, from version `from`.
    pub fn new(store: &'a S, stream: StreamId, from: Version, page_size: usize) -> Self {
        Self {
            store,
            stream,
            next: if from.0 == 0 { Version(1) } else { from },
            page_size: page_size.max(1),
            done: false,
        }
    }

    /// The next page, or `None` after the last event.
    ///
    /// # Errors
    /// Whatever [`EventStore::read_stream`] returns.
    pub async fn next_page(&mut self) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.read_stream(&self.stream, self.next, self.page_size).await?;
        if page.len() < self.page_size {
            self.done = true;
        }
        match page.last() {
            Some(last) => {
                self.next = last.stream_version.next();
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

/// The idempotency rule every store applies before appending, shared so they agree.
///
/// `existing[i]` is what the store holds under `batch[i].event_id`, if anything. Returns the
/// stored events when the batch is a retry of an append that committed (every id stored in
/// `stream` at consecutive versions with the same content), `None` when no id is stored yet.
///
/// # Errors
/// [`StoreError::DuplicateIdInBatch`] for an id twice in the batch, and
/// [`StoreError::EventIdReused`] for any other overlap with stored ids.
pub fn resolve_retry(
    stream: &StreamId,
    batch: &[NewEvent],
    existing: Vec<Option<StoredEvent>>,
) -> Result<Option<Vec<StoredEvent>>, StoreError> {
    if batch.len() > 1 {
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        if let Some(event) = batch.iter().find(|event| !seen.insert(event.event_id)) {
            return Err(StoreError::DuplicateIdInBatch { event_id: event.event_id });
        }
    }
    if existing.iter().all(Option::is_none) {
        return Ok(None);
    }
    // A retry has every id stored, in this stream, at consecutive versions, with the same
    // content. Anything else reports the first stored id, where it really is.
    let whole = existing.iter().all(Option::is_some);
    let first_version = existing.first().and_then(Option::as_ref).map(|found| found.stream_version.0);
    let fits = |offset: usize, event: &NewEvent, found: &StoredEvent| {
        whole
            && found.stream_type == stream.stream_type
            && found.stream_id == stream.id
            && first_version.map(|first| first + offset as u64) == Some(found.stream_version.0)
            && event.same_content_as(found)
    };
    for (offset, (event, found)) in batch.iter().zip(&existing).enumerate() {
        if let Some(found) = found
            && !fits(offset, event, found)
        {
            return Err(StoreError::EventIdReused {
                event_id: event.event_id,
                existing_stream: StreamId::new(found.stream_type.clone(), found.stream_id.clone()),
                existing_version: found.stream_version,
            });
        }
    }
    Ok(Some(existing.into_iter().flatten().collect()))
}
