//! Paths and helpers for the code `#[event]` and `#[derive(Aggregate)]` generate. Not a public
//! API: names here change without notice.

pub use core;
pub use serde;
pub use serde_json;
pub use std;

#[cfg(feature = "json-schema")]
pub use schemars;

/// The JSON Schema of `T`, for [`EventSchema::json_schema`] (feature `json-schema`).
#[cfg(feature = "json-schema")]
#[must_use]
pub fn json_schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(T).to_value()
}

pub use crate::aggregate::{Aggregate, SnapshotPolicy};
pub use crate::decode::{DecodeErrorKind, UpcastError};
pub use crate::event::{Apply, Event, EventSet, IntoEvents};
pub use crate::schema::{AggregateSchema, ContainerSchema, EventSchema, FieldSchema, Read, Shape, Upcast, Written};

pub use crate::schema::JsonUpcaster;

pub use crate::projection::{DispatchError, Handle, Projection, Selected, selected_index};
pub use crate::record::StoredEvent;

/// Reads a payload of exactly the struct's own version.
#[inline]
pub fn decode_current<E: serde::de::DeserializeOwned>(
    payload: &str,
    rust_type: &'static str,
    version: u32,
) -> Result<E, DecodeErrorKind> {
    serde_json::from_str(payload).map_err(|source| DecodeErrorKind::Payload { rust_type, version, source })
}

/// The error for a version newer than the code.
#[cold]
pub fn future_version(found: u32, newest: u32) -> DecodeErrorKind {
    DecodeErrorKind::FutureVersion { found, newest }
}

/// The error for an old version no upcaster reads.
#[cold]
pub fn unsupported_version(found: u32, oldest: u32) -> DecodeErrorKind {
    DecodeErrorKind::UnsupportedVersion { found, oldest }
}

/// `upcast_from = Older`: `Self` is built from the older struct with `From`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `upcast_from = {Older}` but cannot be built from it",
    label = "no `impl From<{Older}> for {Self}`",
    note = "write `impl From<{Older}> for {Self} {{ fn from(old: {Older}) -> Self {{ … }} }}`"
)]
pub trait UpcastFrom<Older> {
    /// Converts the older version into this one.
    fn upcast_from(older: Older) -> Self;
}

// `do_not_recommend`: a missing `From` is reported as the `UpcastFrom` sentence above, not as
// rustc's "`From<..>` is not implemented" with this impl as a note.
#[diagnostic::do_not_recommend]
impl<Older, T: From<Older>> UpcastFrom<Older> for T {
    #[inline]
    fn upcast_from(older: Older) -> Self {
        T::from(older)
    }
}

/// What generated code needs of an event named in `events(...)` or `upcast_from = ...`.
///
/// Every use of such an event goes through this one trait, spanned at the event's name: a
/// type that is not an event then fails one obligation, which rustc reports once, instead of
/// one error per trait the event enum needs (`Clone`, `PartialEq`, `Debug`, `Serialize`, …).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "put `#[es::event(version = 1)]` above `struct {Self}` (above its derives)"
)]
pub trait EventOps: Sized {
    /// [`Event::NAME`].
    const NAME: &'static str;
    /// [`Event::VERSION`].
    const VERSION: u32;
    /// [`Event::ALIASES`].
    const ALIASES: &'static [&'static str];

    /// [`Event::decode_payload`].
    ///
    /// # Errors
    /// Those of [`Event::decode_payload`].
    fn decode_payload(version: u32, payload: &str) -> Result<Self, DecodeErrorKind>;

    /// [`Event::schema`].
    fn schema() -> EventSchema;

    /// [`Clone::clone`].
    #[must_use]
    fn clone_event(&self) -> Self;

    /// [`PartialEq::eq`].
    fn eq_event(&self, other: &Self) -> bool;

    /// [`Debug::fmt`](core::fmt::Debug::fmt).
    ///
    /// # Errors
    /// Those of the formatter.
    fn fmt_event(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result;

    /// The JSON payload as it is stored.
    ///
    /// # Errors
    /// Whatever `serde_json` reports for the event's own `Serialize`.
    fn encode_event(&self) -> Result<String, serde_json::Error>;
}

// `do_not_recommend`: a type that is not an event is reported with the sentence above, not as
// "`Event` is not implemented" with this impl as a note.
#[diagnostic::do_not_recommend]
impl<E: Event> EventOps for E {
    const NAME: &'static str = E::NAME;
    const VERSION: u32 = E::VERSION;
    const ALIASES: &'static [&'static str] = E::ALIASES;

    #[inline]
    fn decode_payload(version: u32, payload: &str) -> Result<Self, DecodeErrorKind> {
        E::decode_payload(version, payload)
    }

    #[inline]
    fn schema() -> EventSchema {
        E::schema()
    }

    #[inline]
    fn clone_event(&self) -> Self {
        self.clone()
    }

    #[inline]
    fn eq_event(&self, other: &Self) -> bool {
        self == other
    }

    #[inline]
    fn fmt_event(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }

    #[inline]
    fn encode_event(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Reads an older version by running the JSON upcasters from `version` up to `current`.
/// `steps[i]` turns version `current - steps.len() + i` into the one after it.
pub fn decode_json_upcast<E: serde::de::DeserializeOwned>(
    version: u32,
    payload: &str,
    rust_type: &'static str,
    current: u32,
    steps: &[JsonUpcaster],
) -> Result<E, DecodeErrorKind> {
    // The macro guarantees `steps.len() < current`.
    let oldest = current - steps.len() as u32;
    if version < oldest {
        return Err(unsupported_version(version, oldest));
    }
    let mut value: serde_json::Value = serde_json::from_str(payload).map_err(|source| DecodeErrorKind::Payload {
        rust_type: "any JSON value",
        version,
        source,
    })?;
    for (from, step) in (version..current).zip(&steps[(version - oldest) as usize..]) {
        value = step(value).map_err(|source| DecodeErrorKind::Upcast { from, source })?;
    }
    serde_json::from_value(value).map_err(|source| DecodeErrorKind::Payload { rust_type, version: current, source })
}

/// Byte-wise string equality usable in constants.
#[must_use]
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `name` is one of `names`.
#[must_use]
pub const fn contains(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// One event of an aggregate's `events(...)`, for the stored-name check: the path as written,
/// its stored name, its aliases and its version.
pub type ListedName = (&'static str, &'static str, &'static [&'static str], u32);

/// A message built in a constant, for `panic!("{}", message.as_str())` in generated checks.
pub struct ConstMessage {
    buf: [u8; 1024],
    len: usize,
}

impl ConstMessage {
    const fn new() -> Self {
        Self { buf: [0; 1024], len: 0 }
    }

    const fn push(mut self, text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut i = 0;
        // A message cut short at the buffer's end is cut at a character boundary below.
        while i < bytes.len() && self.len < self.buf.len() {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    const fn push_u32(self, mut n: u32) -> Self {
        let mut digits = [0u8; 10];
        let mut count = 0;
        loop {
            digits[9 - count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let (_, used) = digits.split_at(10 - count);
        match core::str::from_utf8(used) {
            Ok(text) => self.push(text),
            Err(_) => self,
        }
    }

    /// The message so far.
    #[must_use]
    pub const fn as_str(&self) -> &str {
        let mut len = self.len;
        loop {
            let (head, _) = self.buf.split_at(len);
            match core::str::from_utf8(head) {
                Ok(text) => return text,
                Err(error) => len = error.valid_up_to(),
            }
        }
    }
}

/// The stored name that event `index` shares with an earlier one, if any, and that event.
const fn shared_name(index: usize, events: &[ListedName]) -> Option<(usize, &'static str)> {
    let (_, name, aliases, _) = events[index];
    let mut earlier = 0;
    while earlier < index {
        let (_, other, other_aliases, _) = events[earlier];
        if str_eq(name, other) || contains(other_aliases, name) {
            return Some((earlier, name));
        }
        if contains(aliases, other) {
            return Some((earlier, other));
        }
        let mut i = 0;
        while i < aliases.len() {
            if contains(other_aliases, aliases[i]) {
                return Some((earlier, aliases[i]));
            }
            i += 1;
        }
        earlier += 1;
    }
    None
}

/// Whether event `index` of `events` shares a stored name with an event listed before it: the
/// message that names both events and the name, or `None`.
#[must_use]
pub const fn stored_name_clash(aggregate: &str, index: usize, events: &[ListedName]) -> Option<ConstMessage> {
    let Some((earlier, name)) = shared_name(index, events) else { return None };
    let (later_path, later_name, _, later_version) = events[index];
    let (earlier_path, earlier_name, _, earlier_version) = events[earlier];
    let message = ConstMessage::new();
    if str_eq(later_name, earlier_name) && later_version != earlier_version {
        let (old, old_version, new, new_version) = if later_version < earlier_version {
            (later_path, later_version, earlier_path, earlier_version)
        } else {
            (earlier_path, earlier_version, later_path, later_version)
        };
        return Some(
            message
                .push("`")
                .push(old)
                .push("` (version ")
                .push_u32(old_version)
                .push(") and `")
                .push(new)
                .push("` (version ")
                .push_u32(new_version)
                .push(") are two versions of the event stored as \"")
                .push(name)
                .push("\": list only the newest, `")
                .push(new)
                .push("`, in `")
                .push(aggregate)
                .push("`'s `events(...)`; it reads the older versions through `upcast_from`"),
        );
    }
    Some(
        message
            .push("`")
            .push(later_path)
            .push("` and `")
            .push(earlier_path)
            .push("` in `")
            .push(aggregate)
            .push("` are both stored under the type name \"")
            .push(name)
            .push("\", so stored records could not tell them apart: give one of them its own `#[event(name = \"…\")]`"),
    )
}

/// `upcast_from = Older` on an event of version N: `Older` must be version N-1 of an event.
/// `#[event]` implements it for each event at its own version; generated code reads the older
/// struct as `<Older as Versioned<{N-1}>>::Event`, so a wrong version is one error that says
/// so, before any missing `From`.
#[diagnostic::on_unimplemented(
    message = "`upcast_from = {Self}` needs version {N} of this event, and `{Self}` is not",
    label = "not version {N} of an event",
    note = "upcasting goes one version at a time: name the struct of version {N} here, or give `{Self}` `#[event(name = \"…\", version = {N})]`"
)]
pub trait Versioned<const N: u32> {
    /// The event itself.
    type Event: Event;
}

/// The state of an aggregate declared with `snapshot(...)`, which must be serializable.
///
/// The generated `encode_snapshot` and `decode_snapshot` both call through this one trait,
/// spanned at `snapshot`: state without serde is one error there, not one per missing trait
/// and call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `snapshot(...)` but its state cannot be stored",
    label = "the state must implement `Serialize` and `Deserialize`",
    note = "add `#[derive(Serialize, Deserialize)]` and `#[serde(crate = \"es::serde\")]` below `#[derive(Aggregate)]` on `{Self}` (both work with `use es::prelude::*;` and no serde dependency), or remove `snapshot(...)`"
)]
pub trait SnapshotState: Sized {
    /// Serializes a snapshot of the state.
    ///
    /// # Errors
    /// Whatever `serde_json` reports for the state's own `Serialize`.
    fn encode_state(&self) -> Result<String, serde_json::Error>;

    /// Deserializes a snapshot of the state.
    ///
    /// # Errors
    /// Whatever `serde_json` reports for a payload that does not fit the state.
    fn decode_state(state: &str) -> Result<Self, serde_json::Error>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> SnapshotState for T {
    #[inline]
    fn encode_state(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    #[inline]
    fn decode_state(state: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(state)
    }
}

/// Whether event `index` of a projection's selection is read from the same records as an
/// earlier one (a stored name or alias in common, in streams of a type both read): the message
/// that names both, or `None`.
#[must_use]
pub const fn selection_clash(projection: &str, index: usize, selection: &[Selected]) -> Option<ConstMessage> {
    let later = selection[index];
    let mut earlier = 0;
    while earlier < index {
        let first = selection[earlier];
        let same_streams = match (first.stream_type, later.stream_type) {
            (Some(a), Some(b)) => str_eq(a, b),
            _ => true,
        };
        let names: [ListedName; 2] = [
            (first.rust_type, first.event_type, first.aliases, 0),
            (later.rust_type, later.event_type, later.aliases, 0),
        ];
        if same_streams && let Some((_, name)) = shared_name(1, &names) {
            return Some(
                ConstMessage::new()
                    .push("`")
                    .push(later.rust_type)
                    .push("` and `")
                    .push(first.rust_type)
                    .push("` in `")
                    .push(projection)
                    .push("` both read records stored as \"")
                    .push(name)
                    .push("\", so a record could not tell which handler it is for: list each once, or say which aggregate each comes from, `events(")
                    .push(later.rust_type)
                    .push(" in TheirAggregate)`"),
            );
        }
        earlier += 1;
    }
    None
}

/// [`decode_event`](crate::projection::decode_event) for generated code: bound by
/// [`EventOps`], so that a listed type that is not an event is the one error of `EventOps`.
///
/// # Errors
/// A [`DecodeError`](crate::DecodeError) naming the stream, the version and the event type.
pub fn decode_listed<E: EventOps>(record: &StoredEvent) -> Result<crate::record::Envelope<E>, crate::DecodeError> {
    let raw = &record.event;
    let event = E::decode_payload(raw.schema_version, &raw.payload).map_err(|kind| crate::DecodeError {
        stream: record.stream.clone(),
        stream_version: record.stream_version,
        event_type: raw.event_type.clone(),
        schema_version: raw.schema_version,
        kind,
    })?;
    Ok(crate::record::Envelope {
        position: record.position,
        stream: record.stream.clone(),
        stream_version: record.stream_version,
        event_id: record.event_id,
        metadata: record.metadata.clone(),
        recorded_at: record.recorded_at,
        event,
    })
}

/// What a projection needs of the aggregate named by `events(E in Aggregate)`: its stream type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "`in` names the aggregate whose streams hold the event",
    note = "write `events(TheEvent in TheAggregate)`, where `TheAggregate` has `#[derive(Aggregate)]`"
)]
pub trait StreamOf {
    /// [`Aggregate::TYPE`].
    const TYPE: &'static str;
}

// `do_not_recommend`: a type that is not an aggregate is reported with the sentence above.
#[diagnostic::do_not_recommend]
impl<A: Aggregate> StreamOf for A {
    const TYPE: &'static str = A::TYPE;
}
