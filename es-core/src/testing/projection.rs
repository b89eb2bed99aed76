//! Given/then for projections: give events (typed, or stored records of old versions), then
//! check the read model. No store and no runner: the records go through the same dispatch,
//! decoding and upcasting the runner uses.

use std::fmt::{Debug, Write as _};
use std::time::SystemTime;

use uuid::Uuid;

use super::{with_causes, write_state_diff};
use crate::event::Event;
use crate::projection::{DispatchError, Projection};
use crate::record::{Envelope, Metadata, Position, RawEvent, StoredEvent, StreamId, Version};

/// The entry points for every projection with a default read model (`Balances::given(...)`).
pub trait ProjectionScenario: Projection + Default {
    /// Starts from the default read model with `history` handled: one event, a stored record
    /// ([`RawEvent`] or [`StoredEvent`]), a tuple or a `Vec` of them.
    #[track_caller]
    #[must_use = "a scenario checks nothing until a `then...` runs"]
    fn given(history: impl History) -> GivenProjection<Self> {
        GivenProjection::new(Self::default()).and(history)
    }

    /// Starts from the default read model with nothing handled.
    #[must_use = "a scenario checks nothing until a `then...` runs"]
    fn given_nothing() -> GivenProjection<Self> {
        GivenProjection::new(Self::default())
    }
}

impl<P: Projection + Default> ProjectionScenario for P {}

/// One given record before it is placed in a stream: a typed event knows its stored name, a
/// raw one carries it, a stored one is used as it is.
#[derive(Debug)]
pub enum GivenRecord {
    /// A typed event, encoded with its own version.
    Typed(RawEvent),
    /// A record as stored, of any version.
    Raw(RawEvent),
    /// A stored record with its own envelope (stream, version, metadata …).
    Stored(StoredEvent),
}

/// What `given` takes: an event, a stored record, or a tuple or `Vec` of them.
pub trait History {
    /// Appends the records to `out`, in order.
    fn push_into(self, out: &mut Vec<GivenRecord>);
}

impl<E: Event> History for E {
    #[track_caller]
    fn push_into(self, out: &mut Vec<GivenRecord>) {
        let payload = match serde_json::to_string(&self) {
            Ok(payload) => payload,
            Err(error) => panic!("given/then: `{}` does not serialize: {error}", E::NAME),
        };
        out.push(GivenRecord::Typed(RawEvent::new(E::NAME, E::VERSION, payload)));
    }
}

impl History for RawEvent {
    fn push_into(self, out: &mut Vec<GivenRecord>) {
        out.push(GivenRecord::Raw(self));
    }
}

impl History for StoredEvent {
    fn push_into(self, out: &mut Vec<GivenRecord>) {
        out.push(GivenRecord::Stored(self));
    }
}

impl<T: History> History for Vec<T> {
    fn push_into(self, out: &mut Vec<GivenRecord>) {
        for item in self {
            item.push_into(out);
        }
    }
}

macro_rules! tuple_history {
    ($($name:ident)+) => {
        impl<$($name: History),+> History for ($($name,)+) {
            #[allow(non_snake_case)]
            fn push_into(self, out: &mut Vec<GivenRecord>) {
                let ($($name,)+) = self;
                $($name.push_into(out);)+
            }
        }
    };
}

tuple_history!(A);
tuple_history!(A B);
tuple_history!(A B C);
tuple_history!(A B C D);
tuple_history!(A B C D F);
tuple_history!(A B C D F G);
tuple_history!(A B C D F G H);
tuple_history!(A B C D F G H I);

/// The read model after the given records, to be checked.
pub struct GivenProjection<P: Projection> {
    state: P,
    history: Vec<StoredEvent>,
    /// The record whose dispatch failed (its index in `history`) and why; nothing after it
    /// was handled.
    failed: Option<(usize, DispatchError)>,
}

impl<P: Projection> GivenProjection<P> {
    fn new(state: P) -> Self {
        Self { state, history: Vec::new(), failed: None }
    }

    /// Handles more records (nothing, once one failed).
    #[track_caller]
    #[must_use = "a scenario checks nothing until a `then...` runs"]
    pub fn and(mut self, more: impl History) -> Self {
        let mut records = Vec::new();
        more.push_into(&mut records);
        for record in records {
            let stored = self.place(record);
            self.history.push(stored);
            if self.failed.is_some() {
                continue;
            }
            let index = self.history.len() - 1;
            if let Err(error) = self.state.dispatch(&self.history[index]) {
                self.failed = Some((index, error));
            }
        }
        self
    }

    /// Gives a record a place: the stream of the first selected event it is read as (its
    /// stream type, or `"Given"`), the next version there, the next position.
    fn place(&self, record: GivenRecord) -> StoredEvent {
        let raw = match record {
            GivenRecord::Stored(stored) => return stored,
            GivenRecord::Typed(raw) | GivenRecord::Raw(raw) => raw,
        };
        let stream_type = P::SELECTION
            .iter()
            .find(|s| s.event_type == raw.event_type || s.aliases.contains(&raw.event_type.as_str()))
            .and_then(|s| s.stream_type)
            .unwrap_or("Given");
        let stream = StreamId::new(stream_type, "given");
        let version = self.history.iter().filter(|e| e.stream == stream).count() as u64 + 1;
        let position = self.history.len() as u64 + 1;
        Envelope {
            position: Position(position),
            stream,
            stream_version: Version(version),
            event_id: Uuid::from_u128(u128::from(position)),
            metadata: Metadata::new(),
            recorded_at: SystemTime::now(),
            event: raw,
        }
    }

    /// The read model.
    pub fn state(&self) -> &P {
        &self.state
    }

    #[track_caller]
    fn fail(&self, headline: &str, details: impl FnOnce(&mut String)) -> ! {
        let mut out = format!("given/then for projection {} failed: {headline}\n\n", P::NAME);
        if self.history.is_empty() {
            out.push_str("Given: no events\n");
        } else {
            out.push_str("Given:\n");
            for (index, record) in self.history.iter().enumerate() {
                let raw = &record.event;
                let _ = writeln!(
                    out,
                    "  {}. {} v{} in {} (version {}, position {}): {}",
                    index + 1,
                    raw.event_type,
                    raw.schema_version,
                    record.stream,
                    record.stream_version,
                    record.position,
                    raw.payload
                );
            }
        }
        details(&mut out);
        panic!("{out}");
    }

    #[track_caller]
    fn succeeded(&self) {
        if let Some((index, error)) = &self.failed {
            let (index, error) = (*index, error);
            self.fail(&format!("record {} was not handled", index + 1), |out| {
                let _ = writeln!(out, "\nError: {}", with_causes(error));
            });
        }
    }

    /// Runs assertions on the read model, once every record was handled (a failed record
    /// fails the test here, with the history and the error).
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&P)) -> Self {
        self.succeeded();
        check(&self.state);
        self
    }

    /// Checks that the read model equals `expected`; a failure shows both and the fields that
    /// differ.
    #[track_caller]
    pub fn then_state_is(self, expected: P) -> Self
    where
        P: PartialEq + Debug,
    {
        self.succeeded();
        if self.state != expected {
            self.fail("the read model differs", |out| {
                let _ = writeln!(out, "\nExpected state:\n  {expected:?}\nActual state:\n  {:?}", self.state);
                write_state_diff(out, &expected, &self.state);
            });
        }
        self
    }

    /// Checks that a record failed, and hands its error to `check` (for a schema version newer
    /// than the code, `DispatchError::Decode` with `DecodeErrorKind::FutureVersion`).
    #[track_caller]
    pub fn then_error(self, check: impl FnOnce(&DispatchError)) {
        match &self.failed {
            Some((_, error)) => check(error),
            None => self.fail("every record was handled, but a failure was expected", |_| {}),
        }
    }
}
