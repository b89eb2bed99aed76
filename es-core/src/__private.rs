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

impl<Older, T: From<Older>> UpcastFrom<Older> for T {
    #[inline]
    fn upcast_from(older: Older) -> Self {
        T::from(older)
    }
}

/// Reads an older version through the older struct's own decoder, then converts it.
#[inline]
pub fn decode_typed_upcast<Older: Event, E: UpcastFrom<Older>>(
    version: u32,
    payload: &str,
) -> Result<E, DecodeErrorKind> {
    Older::decode_payload(version, payload).map(E::upcast_from)
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
    let mut value: serde_json::Value = serde_json::from_str(payload).map_err(|source| {
        DecodeErrorKind::Payload { rust_type: "JSON", version, source }
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

/// Whether the type name or any alias of event `index` is also a name or alias of another
/// event in `events` (each entry: the event's name, its aliases).
#[must_use]
pub const fn name_clashes(index: usize, events: &[(&str, &[&str])]) -> bool {
    let (name, aliases) = events[index];
    let mut other = 0;
    while other < events.len() {
        if other != index {
            let (other_name, other_aliases) = events[other];
            if str_eq(name, other_name) || contains(other_aliases, name) || contains(aliases, other_name) {
                return true;
            }
            let mut a = 0;
            while a < aliases.len() {
                if contains(other_aliases, aliases[a]) {
                    return true;
                }
                a += 1;
            }
        }
        other += 1;
    }
    false
}

/// The state of an aggregate declared with `snapshot(...)`, which must be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares `snapshot(...)` but its state cannot be stored",
    label = "the state must implement `Serialize` and `Deserialize`",
    note = "add `#[derive(Serialize, Deserialize)]` to `{Self}` (serde), or remove `snapshot(...)`"
)]
pub trait SnapshotState: serde::Serialize + serde::de::DeserializeOwned {}

impl<T: serde::Serialize + serde::de::DeserializeOwned> SnapshotState for T {}

/// Serializes a snapshot of the state.
pub fn encode_snapshot<A: SnapshotState>(state: &A) -> Result<String, serde_json::Error> {
    serde_json::to_string(state)
}

/// Deserializes a snapshot of the state.
pub fn decode_snapshot<A: SnapshotState>(state: &str) -> Result<A, serde_json::Error> {
    serde_json::from_str(state)
}
