//! The schema model: what `#[event]` and `#[derive(Aggregate)]` record about every event.

use serde::Serialize;

/// One field of an event struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldSchema {
    /// The field's name (`"0"`, `"1"` … for tuple structs).
    pub name: &'static str,
    /// The field's Rust type as written.
    pub ty: &'static str,
    /// The field's doc comment.
    pub doc: &'static str,
}

/// How older schema versions of an event are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Upcast {
    /// Only the current version is read.
    None,
    /// `upcast_from = Older`: the older struct, converted with `From`.
    Typed {
        /// The older version's schema (which may itself upcast further).
        from: Box<EventSchema>,
    },
    /// `upcast_json(v1 = f, …)`: functions that rewrite the JSON one version at a time.
    Json {
        /// The oldest version the functions read.
        oldest: u32,
    },
}

/// One version of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSchema {
    /// The stored type name.
    pub name: &'static str,
    /// The schema version.
    pub version: u32,
    /// Former type names still read as this event.
    pub aliases: &'static [&'static str],
    /// The Rust type that describes this version.
    pub rust_type: &'static str,
    /// The struct's doc comment.
    pub doc: &'static str,
    /// Its fields.
    pub fields: &'static [FieldSchema],
    /// How older versions are read.
    pub upcast: Upcast,
}

/// Every event of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateSchema {
    /// The aggregate's stream type.
    pub name: &'static str,
    /// The aggregate's doc comment.
    pub doc: &'static str,
    /// Its events, in declaration order.
    pub events: Vec<EventSchema>,
}
