//! Typed errors for stored data that does not decode, and the decoding of a stored record.

use std::fmt;

use crate::aggregate::Aggregate;
use crate::event::EventSet;
use crate::record::{Envelope, StoredEvent, Version};

/// A stored event that could not be read into today's types, with where it was found.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event {stream_version} of stream {stream_type}/{stream_id} \
     (type `{event_type}`, schema version {schema_version}): {kind}"
)]
pub struct DecodeError {
    /// The aggregate type of the stream.
    pub stream_type: String,
    /// The stream's id.
    pub stream_id: String,
    /// The event's version within the stream.
    pub stream_version: Version,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// What is wrong with it.
    #[source]
    pub kind: DecodeErrorKind,
}

/// What is wrong with a stored event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// No event of the aggregate carries this type name or alias.
    #[error("unknown event type; known types are {}", known.join(", "))]
    UnknownType {
        /// The type names the aggregate knows.
        known: &'static [&'static str],
    },
    /// The record was written by newer code.
    #[error("schema version {found} is newer than this code, which reads up to version {newest}")]
    FutureVersion {
        /// The stored schema version.
        found: u32,
        /// The newest version this code reads.
        newest: u32,
    },
    /// An old version that no upcaster reads.
    #[error(
        "no upcaster reads schema version {found}; declare `upcast_from` or `upcast_json` down to it \
         (the oldest version read now is {oldest})"
    )]
    UnsupportedVersion {
        /// The stored schema version.
        found: u32,
        /// The oldest version this code reads.
        oldest: u32,
    },
    /// The JSON does not fit the struct of its version.
    #[error("the payload does not fit `{rust_type}` (version {version}): {source}")]
    Payload {
        /// The struct the payload was read as.
        rust_type: &'static str,
        /// That struct's schema version.
        version: u32,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON upcaster refused the payload.
    #[error("upcasting from schema version {from} failed: {source}")]
    Upcast {
        /// The version the upcaster reads.
        from: u32,
        /// Why it refused.
        #[source]
        source: UpcastError,
    },
}

/// Why a JSON upcaster (`upcast_json(...)`) could not turn one version's payload into the next.
#[derive(Debug)]
pub struct UpcastError(String);

impl UpcastError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpcastError {}

impl From<serde_json::Error> for UpcastError {
    fn from(error: serde_json::Error) -> Self {
        Self::new(error)
    }
}

/// Decodes a stored record of aggregate `A` into an envelope of today's event type.
///
/// # Errors
/// A [`DecodeError`] naming the stream, the version and the event type.
pub fn decode_record<A: Aggregate>(record: &StoredEvent) -> Result<Envelope<A::Event>, DecodeError> {
    let event = decode_event::<A>(record)?;
    Ok(Envelope {
        position: record.position,
        stream_type: record.stream_type.clone(),
        stream_id: record.stream_id.clone(),
        stream_version: record.stream_version,
        event_id: record.event_id,
        metadata: record.metadata.clone(),
        recorded_at: record.recorded_at,
        event,
    })
}

/// Decodes only the event of a stored record (no envelope), for folding into state.
///
/// # Errors
/// A [`DecodeError`] naming the stream, the version and the event type.
pub fn decode_event<A: Aggregate>(record: &StoredEvent) -> Result<A::Event, DecodeError> {
    A::Event::decode(&record.event_type, record.schema_version, &record.payload).map_err(|kind| DecodeError {
        stream_type: record.stream_type.clone(),
        stream_id: record.stream_id.clone(),
        stream_version: record.stream_version,
        event_type: record.event_type.clone(),
        schema_version: record.schema_version,
        kind,
    })
}
