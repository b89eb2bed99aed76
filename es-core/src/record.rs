//! What a store keeps for every event, and the envelope that pairs a decoded event with it.

use std::collections::BTreeMap;
use std::fmt;
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

/// An event's place in the store-wide order.
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

/// An event as loosely as history can hold it: its type name, schema version and JSON payload.
/// Used to give the test harness history exactly as a store would hand it back.
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
}

/// One committed event as every store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Store-wide position.
    pub position: Position,
    /// The aggregate type (`Aggregate::TYPE`).
    pub stream_type: String,
    /// The aggregate id as text.
    pub stream_id: String,
    /// The event's version within its stream (1, 2, 3 …).
    pub stream_version: Version,
    /// Unique id (UUID v7); appending the same id twice is idempotent.
    pub event_id: Uuid,
    /// The stored type name.
    pub event_type: String,
    /// The schema version the payload was written with.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: String,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// When the store committed it.
    pub recorded_at: SystemTime,
}

/// A decoded event together with everything the store recorded about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// Store-wide position.
    pub position: Position,
    /// The aggregate type.
    pub stream_type: String,
    /// The aggregate id as text.
    pub stream_id: String,
    /// The event's version within its stream.
    pub stream_version: Version,
    /// Unique id.
    pub event_id: Uuid,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// When the store committed it.
    pub recorded_at: SystemTime,
    /// The event, upcast to today's type.
    pub event: E,
}
