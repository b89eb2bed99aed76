//! The event store contract every store implements, the types it speaks in, and (in
//! [`kit`]) the rules every store applies the same way.
//!
//! A store keeps streams of events (one stream per aggregate instance, named by stream type
//! and id) and one store-wide order over all of them. Its guarantees are checked for every
//! store by one suite, `testing::conformance` (feature `testing`).

mod checkpoint;
mod error;
pub mod kit;
mod lease;
mod signal;

use std::fmt;
use std::future::Future;

use uuid::Uuid;

pub use self::checkpoint::{Checkpoint, CheckpointParseError, StoreOrigin};
pub use self::error::{
    BackendError, BackendErrorKind, CorruptProblem, Corruption, PayloadProblem, StoreError, bounded,
};
pub use self::lease::{Lease, LeaseAttempt, LeaseGrant, LeaseLost, Leases};
#[doc(hidden)]
pub use self::lease::{LeaseRow, next_token};
pub(crate) use self::signal::first_of;
pub use self::signal::{Changed, CommitSignal};
pub use crate::record::{NewEvent, Position, RawEvent, StoredEvent, StreamId, Version};

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
    /// The expectation for a stream last seen at `version`: `NoStream` at 0, `Exact` above.
    #[must_use]
    pub fn at(version: Version) -> Self {
        if version == Version::NONE { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) }
    }

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

/// Which events a read of all events returns; empty lists mean "all".
///
/// Lists may be long (a projection over many event types and their aliases): stores bind
/// them as one parameter, never as SQL text.
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

    /// Whether the filter admits every event.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.stream_types.is_empty() && self.event_types.is_empty()
    }

    /// Whether `event` passes the filter.
    #[must_use]
    pub fn admits(&self, event: &StoredEvent) -> bool {
        (self.stream_types.is_empty() || self.stream_types.iter().any(|t| t == event.stream.stream_type()))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event.event_type))
    }
}

/// One page of a read of all events.
#[derive(Debug, Clone, PartialEq)]
pub struct AllEventsPage {
    /// The events, in store order.
    pub events: Vec<StoredEvent>,
    /// Where to resume: after the last event this read examined. That is the last event of
    /// the page, or beyond it past events the filter rejected (so a selective reader still
    /// makes progress), but never past an event it neither handed out nor examined. Equal to
    /// the requested checkpoint when nothing new was committed.
    pub next: Checkpoint,
    /// The checkpoint after each event of `events`, for a reader that stops inside a page.
    after: Vec<Checkpoint>,
}

impl AllEventsPage {
    /// For store authors: a page of `events`, each with the checkpoint after it, and where to
    /// resume after the whole page.
    #[must_use]
    pub fn new(events: Vec<(StoredEvent, Checkpoint)>, next: Checkpoint) -> Self {
        let (events, after) = events.into_iter().unzip();
        Self { events, next, after }
    }

    /// A page with no events.
    #[must_use]
    pub fn empty(next: Checkpoint) -> Self {
        Self { events: Vec::new(), next, after: Vec::new() }
    }

    /// The checkpoint after `events[index]`: resuming there reads `events[index + 1]` next.
    /// `next` for an index past the end.
    #[must_use]
    pub fn checkpoint_after(&self, index: usize) -> &Checkpoint {
        self.after.get(index).unwrap_or(&self.next)
    }

    /// The events with the checkpoint after each.
    pub fn iter(&self) -> impl Iterator<Item = (&StoredEvent, &Checkpoint)> {
        self.events.iter().zip(&self.after)
    }
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

/// What an append did: wrote the batch, or found it already stored (a retried append).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppendOutcome {
    /// This call wrote the events.
    Written,
    /// The same events (same ids, same content, same stream) were stored before, by this
    /// writer or another; nothing was written, and the events are as first stored.
    AlreadyStored,
}

/// The result of an append: the committed events and whether this call wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The events as committed (in version order).
    pub events: Vec<StoredEvent>,
    /// Whether this call wrote them or found them stored.
    pub outcome: AppendOutcome,
}

impl Appended {
    /// Events this call wrote.
    #[must_use]
    pub fn written(events: Vec<StoredEvent>) -> Self {
        Self { events, outcome: AppendOutcome::Written }
    }

    /// Events found already stored.
    #[must_use]
    pub fn already_stored(events: Vec<StoredEvent>) -> Self {
        Self { events, outcome: AppendOutcome::AlreadyStored }
    }

    /// Whether this call wrote the events.
    #[must_use]
    pub fn was_written(&self) -> bool {
        self.outcome == AppendOutcome::Written
    }

    /// The versions of the events, first and last (`None` for an empty batch).
    #[must_use]
    pub fn versions(&self) -> Option<(Version, Version)> {
        Some((self.events.first()?.stream_version, self.events.last()?.stream_version))
    }
}

/// An event store: append-only streams with optimistic concurrency, one store-wide order, and
/// a snapshot per stream.
///
/// Futures are `Send` so that repositories can be used from any task. Every rule that does not
/// depend on the storage (which batches are retries, what a stream read must look like, which
/// payloads can be stored) is in [`kit`], so that all stores apply it alike.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`: all or nothing, versions assigned
    /// consecutively after the current one.
    ///
    /// When every id of the batch is already stored in this stream, at consecutive versions,
    /// with the same content ([`kit::resolve_retry`]), nothing is written and the stored events
    /// come back as [`AppendOutcome::AlreadyStored`], whatever `expected` says: a retried append
    /// is idempotent, and its caller learns that it did not write.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the stream is elsewhere, [`StoreError::EventIdReused`] when
    /// an id is stored with other content or in another stream,
    /// [`StoreError::DuplicateIdInBatch`], [`StoreError::InvalidEvent`] for a payload that
    /// could not be read back, and backend errors. Nothing is written on error.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Up to `limit` events of `stream` with versions `from` and above, in version order. The
    /// page starts at `from` (or at 1 for `from` 0) and has no gap ([`kit::check_stream_page`]).
    ///
    /// # Errors
    /// Backend errors, and [`StoreError::Corrupt`] for a version gap, a version below 1 or a
    /// row that does not read.
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
    /// [`StoreError::ForeignCheckpoint`] for a checkpoint of another store, backend errors,
    /// and [`StoreError::Corrupt`] for impossible positions or versions.
    fn read_all(
        &self,
        from: &Checkpoint,
        filter: &ReadAllFilter,
        limit: usize,
    ) -> impl Future<Output = Result<AllEventsPage, StoreError>> + Send;

    /// The checkpoint after the last committed event: where a reader that has read
    /// everything stands.
    ///
    /// # Errors
    /// Backend errors.
    fn head(&self) -> impl Future<Output = Result<Checkpoint, StoreError>> + Send;

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

    /// A signal fired after each commit this process makes through this store (any clone of
    /// it), so that readers following [`EventStore::read_all`] wake at once instead of polling.
    ///
    /// `None`, the default, when the store has none: followers then poll at their (slow)
    /// interval. Commits by other processes never fire it, so followers poll at that interval
    /// as well, whatever this returns.
    fn commit_signal(&self) -> Option<CommitSignal> {
        None
    }
}
