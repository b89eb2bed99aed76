//! The records every store, the repository and the harness share: one type per concept, each
//! conversion written once.
//!
//! - [`RawEvent`]: an event's data as stored (type name, schema version, JSON payload).
//! - [`NewEvent`]: what a writer hands a store: an id, the data and metadata.
//! - [`Envelope<E>`]: a committed event with everything the store recorded about it. A store
//!   hands out `Envelope<RawEvent>` ([`StoredEvent`]); decoding maps it to `Envelope<A::Event>`
//!   with [`Envelope::map`], so the header is never copied field by field.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stream's version: the number of events in it, and the version of each event within it
/// (1, 2, 3 …). A new stream is at version 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream with no events.
    pub const NONE: Version = Version(0);

    /// The version after this one.
    #[must_use]
    pub const fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's place in the store-wide order (1, 2, 3 …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Correlation and causation ids and free headers, stored with every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything one request caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the message (command or event) that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Free headers (user, tenant, trace ids …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Metadata {
    /// Empty metadata.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Whether there is nothing in it.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.headers.is_empty()
    }

    /// Metadata for what `cause` caused: the same correlation id (or the cause's own id when it
    /// had none), and the cause's event id as causation id. Headers are not carried.
    #[must_use]
    pub fn caused_by<E>(cause: &Envelope<E>) -> Self {
        Self {
            correlation_id: Some(cause.metadata.correlation_id.unwrap_or(cause.event_id)),
            causation_id: Some(cause.event_id),
            headers: BTreeMap::new(),
        }
    }
}

/// An event as loosely as history holds it: its type name, schema version and JSON payload.
///
/// The data of every stored event ([`StoredEvent`] is `Envelope<RawEvent>`), of every
/// [`NewEvent`], and what the test harness's `given_raw` takes to give history exactly as a
/// store would hand it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The stored type name.
    pub event_type: String,
    /// The schema version the payload was written with.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: String,
}

impl RawEvent {
    /// A raw event from its parts.
    pub fn new(event_type: impl Into<String>, schema_version: u32, payload: impl Into<String>) -> Self {
        Self { event_type: event_type.into(), schema_version, payload: payload.into() }
    }

    /// A raw event whose payload is a JSON value (`serde_json::json!({...})`).
    pub fn json(event_type: impl Into<String>, schema_version: u32, payload: &serde_json::Value) -> Self {
        Self::new(event_type, schema_version, payload.to_string())
    }

    /// Whether `other` holds the same event: the same type and schema version, and payloads
    /// that are the same JSON value (so a store that normalises JSON, as PostgreSQL's `jsonb`
    /// does, still recognises a retried append).
    #[must_use]
    pub fn same_as(&self, other: &RawEvent) -> bool {
        self.event_type == other.event_type
            && self.schema_version == other.schema_version
            && (self.payload == other.payload || same_json(&self.payload, &other.payload))
    }
}

fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An event to append: its id, its data and its metadata. The store assigns the position,
/// the stream version and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; a retried append with the same ids and content is idempotent.
    pub event_id: Uuid,
    /// Type name, schema version and payload.
    pub event: RawEvent,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh id (UUID v7) and no metadata.
    #[must_use]
    pub fn new(event: RawEvent) -> Self {
        Self { event_id: Uuid::now_v7(), event, metadata: Metadata::new() }
    }

    /// The same event with this id.
    #[must_use]
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// The same event with this metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Whether `stored` holds this event's content (data and metadata).
    #[must_use]
    pub fn same_content_as(&self, stored: &StoredEvent) -> bool {
        self.metadata == stored.metadata && self.event.same_as(&stored.event)
    }
}

/// A name shared without copying: a `&'static str` (an aggregate's type) or a shared string.
#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(text) => text,
            Name::Shared(text) => text,
        }
    }
}

/// Names one stream: the aggregate type and the instance id. Cloning it never allocates.
#[derive(Clone)]
pub struct StreamId {
    stream_type: Name,
    id: Arc<str>,
}

impl StreamId {
    /// A stream name from its parts.
    pub fn new(stream_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self { stream_type: Name::Shared(Arc::from(stream_type.into())), id: Arc::from(id.into()) }
    }

    /// The stream of aggregate type `stream_type` (a `'static` name, as `Aggregate::TYPE` is)
    /// and id `id`.
    pub fn with_static_type(stream_type: &'static str, id: impl Into<String>) -> Self {
        Self { stream_type: Name::Static(stream_type), id: Arc::from(id.into()) }
    }

    /// The stream of aggregate `A` with this id: `StreamId::of::<BankAccount>(&id)`.
    pub fn of<A: crate::Aggregate>(id: &(impl fmt::Display + ?Sized)) -> Self {
        Self::with_static_type(A::TYPE, id.to_string())
    }

    /// The aggregate type (`Aggregate::TYPE`).
    #[must_use]
    pub fn stream_type(&self) -> &str {
        self.stream_type.as_str()
    }

    /// The aggregate id as text.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether both hold the same shared strings: then they are equal (equal ids need not be).
    pub(crate) fn shares_text_with(&self, other: &StreamId) -> bool {
        Arc::ptr_eq(&self.id, &other.id) && std::ptr::eq(self.stream_type(), other.stream_type())
    }

    fn key(&self) -> (&str, &str) {
        (self.stream_type(), self.id())
    }
}

impl PartialEq for StreamId {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for StreamId {}

impl Hash for StreamId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StreamId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream_type(), self.id())
    }
}

/// A stream name with its hash, computed once (under one random key for the whole process) to
/// serve every lookup a command makes in the repository's cache and in [`InMemoryStore`]'s
/// index, which hash it no further ([`KeyMap`]).
///
/// [`InMemoryStore`]: crate::InMemoryStore
#[derive(Clone)]
pub(crate) struct StreamKey {
    hash: u64,
    stream: StreamId,
}

impl StreamKey {
    pub(crate) fn new(stream: StreamId) -> Self {
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let hash = HASHER.get_or_init(RandomState::new).hash_one(&stream);
        Self { hash, stream }
    }
}

impl std::ops::Deref for StreamKey {
    type Target = StreamId;

    fn deref(&self) -> &StreamId {
        &self.stream
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stream.fmt(f)
    }
}

impl PartialEq for StreamKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.stream == other.stream
    }
}

impl Eq for StreamKey {}

impl Hash for StreamKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A map keyed by [`StreamKey`]s, whose hash it takes as it is.
pub(crate) type KeyMap<V> = HashMap<StreamKey, V, BuildHasherDefault<KeyHasher>>;

/// The hasher of a [`KeyMap`]: a [`StreamKey`]'s hash (a random-keyed SipHash) passed through.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `StreamKey`; anything else is folded in, not lost.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("StreamId", 2)?;
        out.serialize_field("type", self.stream_type())?;
        out.serialize_field("id", self.id())?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Parts {
            #[serde(rename = "type")]
            stream_type: String,
            id: String,
        }
        let parts = Parts::deserialize(deserializer)?;
        Ok(StreamId::new(parts.stream_type, parts.id))
    }
}

/// A committed event with everything the store recorded about it.
///
/// Stores hand out `Envelope<RawEvent>` ([`StoredEvent`]); the repository and projections
/// decode it into `Envelope<A::Event>` with [`Envelope::map`] or [`Envelope::try_map`].
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E = RawEvent> {
    /// Store-wide position.
    pub position: Position,
    /// The stream (aggregate type and id).
    pub stream: StreamId,
    /// The event's version within its stream (1, 2, 3 …).
    pub stream_version: Version,
    /// Unique id (UUID v7, or v5 derived from a command id).
    pub event_id: Uuid,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// When the store committed it.
    pub recorded_at: SystemTime,
    /// The event: as stored ([`RawEvent`]) or decoded into today's type.
    pub event: E,
}

/// A committed event as every store keeps it: the envelope around the raw data.
pub type StoredEvent = Envelope<RawEvent>;

impl<E> Envelope<E> {
    /// The same record around another event (the decoded one, say).
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> Envelope<F> {
        Envelope {
            position: self.position,
            stream: self.stream,
            stream_version: self.stream_version,
            event_id: self.event_id,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            event: f(self.event),
        }
    }

    /// [`Envelope::map`] with a conversion that may fail.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn try_map<F, X>(self, f: impl FnOnce(E) -> Result<F, X>) -> Result<Envelope<F>, X> {
        let Envelope { position, stream, stream_version, event_id, metadata, recorded_at, event } = self;
        Ok(Envelope { position, stream, stream_version, event_id, metadata, recorded_at, event: f(event)? })
    }
}
