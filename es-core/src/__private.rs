//! Paths and helpers for the code `#[event]` and `#[derive(Aggregate)]` generate. Not a public
//! API: names here change without notice.

pub use core;
pub use serde;
pub use serde_json;
pub use std;

pub use crate::aggregate::{Aggregate, SnapshotPolicy};
pub use crate::decode::{DecodeErrorKind, UpcastError};
pub use crate::event::{Apply, Event, EventSet, IntoEvents};
pub use crate::schema::{AggregateSchema, EventSchema, FieldSchema, Upcast};

/// The signature of a JSON upcaster: version N's payload in, version N+1's out.
pub type JsonUpcaster = fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>;

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

/// Whether event `index` shares a stored name with any event before it in `events`.
#[must_use]
pub const fn overlaps_earlier(index: usize, events: &[(&str, &[&str])]) -> bool {
    let mut earlier = 0;
    while earlier < index {
        if names_overlap(events[earlier], events[index]) {
            return true;
        }
        earlier += 1;
    }
    false
}

/// Whether two events share a stored name: the type name or an alias of one is the type name
/// or an alias of the other (each event given as its name and its aliases).
#[must_use]
pub const fn names_overlap(a: (&str, &[&str]), b: (&str, &[&str])) -> bool {
    let ((a_name, a_aliases), (b_name, b_aliases)) = (a, b);
    if str_eq(a_name, b_name) || contains(b_aliases, a_name) || contains(a_aliases, b_name) {
        return true;
    }
    let mut i = 0;
    while i < a_aliases.len() {
        if contains(b_aliases, a_aliases[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// The state of an aggregate declared with `snapshot(...)`, which must be serializable.
///
/// The generated `encode_snapshot` and `decode_snapshot` both call through this one trait,
/// spanned at `snapshot`: state without serde is one error there, not one per missing trait
/// and call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `snapshot(...)` but its state cannot be stored",
    label = "the state must implement `Serialize` and `Deserialize`",
    note = "add `#[derive(Serialize, Deserialize)]` to `{Self}` (serde), or remove `snapshot(...)`"
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
