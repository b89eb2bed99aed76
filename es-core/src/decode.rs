//! Typed errors for stored data that does not decode, and the decoding of a stored record.
//!
//! Error messages follow one rule, so that a chain printer (anyhow's `{:#}`, eyre) shows each
//! cause once: an error's message says what went wrong at its level, and the lower-level cause
//! (serde_json's message, an upcaster's own error) is its `source()`, not part of its message.

use std::fmt;

use crate::aggregate::Aggregate;
use crate::event::EventSet;
use crate::record::{Envelope, RawEvent, StoredEvent, StreamId, Version};

/// A stored event that could not be read into today's types, with where it was found.
#[derive(Debug)]
pub struct DecodeError {
    /// The stream.
    pub stream: StreamId,
    /// The event's version within the stream.
    pub stream_version: Version,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot decode event {} of stream {} (type `{}`, schema version {}): {}",
            self.stream_version,
            self.stream,
            crate::store::bounded(&self.event_type),
            self.schema_version,
            self.kind
        )
    }
}

/// The kind is part of this error's message; its own cause is this error's source.
impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
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
    #[error(
        "schema version {found} is newer than this code, which reads up to version {newest}: deploy the newer code"
    )]
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
    /// The JSON does not fit the struct of its version; serde_json's message is the source.
    #[error("the payload does not fit `{rust_type}` (version {version})")]
    Payload {
        /// The struct the payload was read as.
        rust_type: &'static str,
        /// That struct's schema version.
        version: u32,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON upcaster refused the payload; its error is the source.
    #[error("upcasting from schema version {from} failed")]
    Upcast {
        /// The version the upcaster reads.
        from: u32,
        /// Why it refused.
        #[source]
        source: UpcastError,
    },
}

/// Why a JSON upcaster (`upcast_json(...)`) could not turn one version's payload into the next.
///
/// Its message says what the upcaster found; the error that made it refuse, if any, is kept as
/// its source (`UpcastError::from(serde_json_error)`, [`UpcastError::because`]).
#[derive(Debug)]
pub struct UpcastError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl UpcastError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), source: None }
    }

    /// An error with this message, caused by `source`.
    pub fn because(message: impl fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.to_string(), source: Some(Box::new(source)) }
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UpcastError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<serde_json::Error> for UpcastError {
    fn from(error: serde_json::Error) -> Self {
        Self::because("the payload is not the JSON this upcaster reads", error)
    }
}

/// Decodes a raw event of aggregate `A` found in `stream` at `version` into today's event type.
///
/// # Errors
/// A [`DecodeError`] naming the stream, the version and the event type.
pub fn decode_raw<A: Aggregate>(stream: &StreamId, version: Version, raw: &RawEvent) -> Result<A::Event, DecodeError> {
    A::Event::decode(&raw.event_type, raw.schema_version, &raw.payload).map_err(|kind| DecodeError {
        stream: stream.clone(),
        stream_version: version,
        event_type: raw.event_type.clone(),
        schema_version: raw.schema_version,
        kind,
    })
}

/// Decodes a stored record of aggregate `A` into an envelope of today's event type.
///
/// # Errors
/// A [`DecodeError`] naming the stream, the version and the event type.
pub fn decode_record<A: Aggregate>(record: StoredEvent) -> Result<Envelope<A::Event>, DecodeError> {
    let (stream, version) = (record.stream.clone(), record.stream_version);
    record.try_map(|raw| decode_raw::<A>(&stream, version, &raw))
}
