//! A tiny aggregate implemented by hand (no macros: es-core cannot use its own derive), for
//! the conformance suite's repository scenarios.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, SnapshotPolicy};
use crate::decode::DecodeErrorKind;
use crate::event::{Apply, Event, EventSet, IntoEvents};
use crate::schema::{AggregateSchema, ContainerSchema, EventSchema, FieldSchema, Upcast};

/// The counter went up by `by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremented {
    /// How much.
    pub by: u64,
}

impl Event for Incremented {
    const NAME: &'static str = "Incremented";
    const VERSION: u32 = 1;

    fn decode_payload(version: u32, payload: &str) -> Result<Self, DecodeErrorKind> {
        match version {
            1 => serde_json::from_str(payload).map_err(|source| DecodeErrorKind::Payload {
                rust_type: "Incremented",
                version,
                source,
            }),
            0 => Err(DecodeErrorKind::UnsupportedVersion { found: version, oldest: 1 }),
            _ => Err(DecodeErrorKind::FutureVersion { found: version, newest: 1 }),
        }
    }

    fn schema() -> EventSchema {
        EventSchema {
            name: Self::NAME,
            version: Self::VERSION,
            aliases: &[],
            rust_type: "Incremented",
            doc: "The counter went up by `by`.",
            container: ContainerSchema::PLAIN,
            fields: const { &[FieldSchema::plain("by", "u64", "How much.")] },
            upcast: Upcast::None,
            json_schema: None,
        }
    }
}

/// The counter's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterEvent {
    /// See [`Incremented`].
    Incremented(Incremented),
}

#[diagnostic::do_not_recommend]
impl IntoEvents<CounterEvent> for Incremented {
    fn extend_into(self, out: &mut Vec<CounterEvent>) {
        out.push(CounterEvent::Incremented(self));
    }
}

impl EventSet for CounterEvent {
    fn event_type(&self) -> &'static str {
        Incremented::NAME
    }

    fn schema_version(&self) -> u32 {
        Incremented::VERSION
    }

    fn encode(&self) -> Result<String, serde_json::Error> {
        let CounterEvent::Incremented(event) = self;
        serde_json::to_string(event)
    }

    fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Self, DecodeErrorKind> {
        if event_type == Incremented::NAME {
            Incremented::decode_payload(schema_version, payload).map(CounterEvent::Incremented)
        } else {
            Err(DecodeErrorKind::UnknownType { known: Self::event_types() })
        }
    }

    fn event_types() -> &'static [&'static str] {
        &[Incremented::NAME]
    }
}

/// A counter that remembers how many events made it; snapshotted every 10 events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The sum of all increments.
    pub value: u64,
    /// How many events were applied.
    pub applied: u64,
}

impl Apply<CounterEvent> for Counter {
    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Incremented(Incremented { by }) = event;
        self.value += by;
        self.applied += 1;
    }
}

impl Aggregate for Counter {
    type Id = String;
    type Event = CounterEvent;
    type Error = CounterError;

    const TYPE: &'static str = "Counter";
    const SNAPSHOT: Option<SnapshotPolicy> = Some(SnapshotPolicy { every: 10, version: 1 });

    fn encode_snapshot(&self) -> Option<Result<String, serde_json::Error>> {
        Some(serde_json::to_string(self))
    }

    fn decode_snapshot(state: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(serde_json::from_str(state))
    }

    fn schema() -> AggregateSchema {
        AggregateSchema {
            name: Self::TYPE,
            doc: "A counter.",
            id_type: "String",
            snapshot_version: Some(1),
            retired: &[],
            events: vec![Incremented::schema()],
        }
    }
}

/// Why a counter command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The increment would pass the limit.
    #[error("the counter is at {value}; adding {by} would pass {limit}")]
    OverLimit {
        /// The value now.
        value: u64,
        /// The increment asked for.
        by: u64,
        /// The limit.
        limit: u64,
    },
}

impl Counter {
    /// Add `by`.
    ///
    /// # Errors
    /// Never.
    pub fn increment(&self, by: u64) -> Result<Incremented, CounterError> {
        Ok(Incremented { by })
    }

    /// Add `by` unless the value would pass `limit`: a decision that depends on the state.
    ///
    /// # Errors
    /// [`CounterError::OverLimit`].
    pub fn increment_within(&self, by: u64, limit: u64) -> Result<Incremented, CounterError> {
        if self.value + by > limit {
            return Err(CounterError::OverLimit { value: self.value, by, limit });
        }
        Ok(Incremented { by })
    }

    /// Add one more than the value is now: a decision whose event depends on the state.
    ///
    /// # Errors
    /// Never.
    pub fn increment_past_value(&self) -> Result<Incremented, CounterError> {
        Ok(Incremented { by: self.value + 1 })
    }
}
