//! Why a store operation failed: typed, classified (may a retry help?), and never echoing SQL
//! or unbounded input.

use std::borrow::Cow;
use std::fmt;

use uuid::Uuid;

use super::ExpectedVersion;
use crate::record::{Position, StreamId, Version};

/// Why a store operation failed.
///
/// [`StoreError::is_transient`] tells whether the same call may succeed later unchanged (a
/// busy database, a dropped connection); [`StoreError::is_conflict`] whether it may succeed
/// after reloading and deciding again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error(
        "version conflict on stream {stream}: expected {expected}, but it is at version {actual}; \
         another writer appended first: reload the stream and decide again"
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
        "event id {event_id} is already stored as {existing_stream} version {existing_version} with other \
         content; a retried append must carry the same events, and new events need new ids"
    )]
    EventIdReused {
        /// The reused id.
        event_id: Uuid,
        /// Where it is stored.
        existing_stream: StreamId,
        /// At which version.
        existing_version: Version,
    },
    /// The same event id appears twice in one batch; nothing was written.
    #[error("event id {event_id} appears twice in one append; give every event its own id")]
    DuplicateIdInBatch {
        /// The repeated id.
        event_id: Uuid,
    },
    /// An event that could be written but never read back (a payload that is not JSON, or
    /// nested deeper than the decoder reads); nothing was written.
    #[error("event {event_id} (type `{event_type}`) cannot be stored: {problem}")]
    InvalidEvent {
        /// The event's id.
        event_id: Uuid,
        /// Its type name.
        event_type: String,
        /// What is wrong with it.
        problem: PayloadProblem,
    },
    /// Stored history that cannot be true: a version gap, a snapshot ahead of its stream, an
    /// impossible position, a row that does not read. Nothing is guessed: the store holds data
    /// that es never writes.
    #[error("{0}")]
    Corrupt(Box<Corruption>),
    /// A checkpoint made by another store (another database, or another kind of store).
    #[error(
        "the checkpoint belongs to {found}, not to this store ({expected}); a checkpoint only resumes a \
         reader of the store that handed it out: start from `Checkpoint::START` to read this store from the beginning"
    )]
    ForeignCheckpoint {
        /// The store the checkpoint came from.
        found: String,
        /// This store.
        expected: String,
    },
    /// The store's schema is newer than this code.
    #[error("the store's schema is version {found}, newer than version {supported} this code understands; upgrade es")]
    SchemaTooNew {
        /// The schema version found.
        found: u32,
        /// The newest this code knows.
        supported: u32,
    },
    /// The database or its storage failed; [`BackendError::kind`] says how, and whether a
    /// retry may help.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An inline projection (a read model updated in the append's own transaction) failed:
    /// the append was rolled back, so neither the events nor any change of the read model
    /// were committed.
    #[error("inline projection `{}` failed: nothing was appended", super::bounded(projection))]
    InlineProjection {
        /// The inline projection's name.
        projection: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Work guarded by a [`Lease`](super::Lease) stopped because the lease was lost.
    #[error(transparent)]
    LeaseLost(Box<super::LeaseLost>),
}

impl StoreError {
    /// Whether retrying after reloading may succeed (a version conflict).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether the same call may succeed later, unchanged: a busy database, a dropped
    /// connection, a pool that had no free connection in time.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(error) if error.kind().is_transient())
    }

    /// A [`StoreError::Corrupt`].
    #[must_use]
    pub fn corrupt(corruption: Corruption) -> Self {
        StoreError::Corrupt(Box::new(corruption))
    }

    /// The corruption, for a [`StoreError::Corrupt`].
    #[must_use]
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            StoreError::Corrupt(corruption) => Some(corruption),
            _ => None,
        }
    }
}

/// What is wrong with an event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadProblem {
    /// Not JSON at all.
    NotJson {
        /// What the JSON parser reported (its message only: never the payload).
        reason: String,
    },
    /// Arrays and objects nested deeper than the decoder reads.
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
}

impl fmt::Display for PayloadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadProblem::NotJson { reason } => write!(f, "its payload is not JSON ({reason})"),
            PayloadProblem::TooDeep { limit } => write!(
                f,
                "its payload nests arrays and objects more than {limit} levels deep, deeper than serde_json reads \
                 back; flatten the event's data"
            ),
        }
    }
}

/// Where stored history cannot be true, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The stream, when the damage is in one.
    pub stream: Option<StreamId>,
    /// The stream version involved, when known.
    pub version: Option<Version>,
    /// The store-wide position involved, when known.
    pub position: Option<Position>,
    /// What is wrong.
    pub problem: CorruptProblem,
}

impl Corruption {
    /// A corruption with no location yet.
    #[must_use]
    pub fn new(problem: CorruptProblem) -> Self {
        Self { stream: None, version: None, position: None, problem }
    }

    /// In this stream.
    #[must_use]
    pub fn in_stream(mut self, stream: &StreamId) -> Self {
        self.stream = Some(stream.clone());
        self
    }

    /// At this stream version.
    #[must_use]
    pub fn at_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// At this position.
    #[must_use]
    pub fn at_position(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("corrupt history")?;
        if let Some(stream) = &self.stream {
            write!(f, " in stream {stream}")?;
        }
        if let Some(version) = self.version {
            write!(f, " at version {version}")?;
        }
        if let Some(position) = self.position {
            write!(f, " (position {position})")?;
        }
        write!(
            f,
            ": {}; es never writes this, so the store was changed by hand or damaged: restore it from a backup",
            self.problem
        )
    }
}

/// The ways stored history can be impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptProblem {
    /// The stream's versions are not 1, 2, 3 … without a gap.
    VersionGap {
        /// The version that belongs where `found` is.
        expected: Version,
        /// What is there instead, as stored ("5", "0", "NULL", "nothing" …).
        found: String,
    },
    /// A snapshot of a version the stream never reached, or of version 0.
    SnapshotAhead {
        /// The snapshot's version.
        snapshot: Version,
        /// The stream's last version.
        stream_version: Version,
    },
    /// A position that no store hands out (0, negative, or where no higher one can follow).
    ImpossiblePosition {
        /// The position as stored.
        found: String,
    },
    /// Positions that go backwards in store order.
    PositionOutOfOrder {
        /// The position before.
        previous: Position,
        /// The one after it.
        found: Position,
    },
    /// A value that does not read as what belongs there.
    Unreadable {
        /// The field (column) it is in.
        field: Cow<'static, str>,
        /// What is wrong with it (bounded: never the whole value).
        reason: String,
    },
}

impl fmt::Display for CorruptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptProblem::VersionGap { expected, found } => {
                write!(
                    f,
                    "the stream's versions must run 1, 2, 3 … without a gap, but where version {expected} belongs there is {found}"
                )
            }
            CorruptProblem::SnapshotAhead { snapshot, stream_version } => {
                write!(f, "a snapshot at version {snapshot}, but the stream's events end at version {stream_version}")
            }
            CorruptProblem::ImpossiblePosition { found } => write!(f, "position {found} is impossible"),
            CorruptProblem::PositionOutOfOrder { previous, found } => {
                write!(f, "position {found} follows position {previous} in store order")
            }
            CorruptProblem::Unreadable { field, reason } => write!(f, "`{field}` {reason}"),
        }
    }
}

/// A failure of the database or its storage, classified so a caller can decide whether to
/// retry. Its message says what the store was doing and what went wrong; the backend's own
/// error is its [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    context: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A backend failure of this kind, while doing `context` ("cannot append to stream X").
    pub fn new(kind: BackendErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        Self { kind, context: context.into(), source: None }
    }

    /// The backend's own error behind it.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// How it failed.
    #[must_use]
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// What the store was doing.
    #[must_use]
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.kind)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// How a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// Another writer held the database longer than the store waits ("database is locked").
    /// Transient.
    Busy,
    /// The connection to the server failed or was lost. Transient.
    Unavailable,
    /// No connection was free in time. Transient.
    PoolTimeout,
    /// The disk or the database's size limit is full. Permanent until space is made.
    StorageFull,
    /// The database is read-only (a read-only file, mount or user). Permanent.
    ReadOnly,
    /// The operating system refused access to a file or directory. Permanent.
    PermissionDenied,
    /// The file is not a database this store can open. Permanent.
    NotADatabase,
    /// An I/O error of the storage. Permanent as far as the store can tell.
    Io,
    /// Credentials the server refused. Permanent.
    Authentication,
    /// A value the store cannot represent (a version beyond its integer range, …). Permanent.
    OutOfRange,
    /// Anything else. Permanent as far as the store can tell.
    Other,
}

impl BackendErrorKind {
    /// Whether the same call may succeed later, unchanged.
    #[must_use]
    pub fn is_transient(self) -> bool {
        matches!(self, BackendErrorKind::Busy | BackendErrorKind::Unavailable | BackendErrorKind::PoolTimeout)
    }
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Busy => "the database is busy with another writer (transient: retry later)",
            BackendErrorKind::Unavailable => "the database cannot be reached (transient: retry later)",
            BackendErrorKind::PoolTimeout => "no database connection became free in time (transient: retry later)",
            BackendErrorKind::StorageFull => "the storage is full: free disk space",
            BackendErrorKind::ReadOnly => "the database is read-only",
            BackendErrorKind::PermissionDenied => "permission denied",
            BackendErrorKind::NotADatabase => "not a database this store can open",
            BackendErrorKind::Io => "an I/O error",
            BackendErrorKind::Authentication => "the server refused the credentials",
            BackendErrorKind::OutOfRange => "a value beyond what the database stores",
            BackendErrorKind::Other => "the database failed",
        })
    }
}

/// Shortens text from outside (a type name, a parser message) for an error message, so that
/// no message grows with its input.
#[must_use]
pub fn bounded(text: &str) -> String {
    const LIMIT: usize = 200;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}
