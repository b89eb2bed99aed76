//! The schema model: what `#[event]` and `#[derive(Aggregate)]` record about every event.
//!
//! It describes the JSON actually stored, as serde writes and reads it: `#[event]` reads the
//! struct's `#[serde(...)]` attributes, so a field renamed by `rename_all = "camelCase"` or
//! `rename = "qty"` is listed under its stored key ([`FieldSchema::json_name`]) beside its Rust
//! name. What the model cannot describe (a field written by `serialize_with`, a container read
//! `from` another type) is listed in `undescribed`, never described wrongly. Everything is
//! `&'static` data built at compile time.

use serde::Serialize;

use crate::decode::UpcastError;

/// A JSON upcaster, as `#[event(upcast_json(v1 = f, ...))]` names it: `f` takes the payload of
/// version N as stored and returns the payload of version N+1.
///
/// ```
/// use es_core::UpcastError;
/// use serde_json::{Value, json};
///
/// /// Version 2 of `MoneyDeposited` added `reference`.
/// fn deposited_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
///     let object = v1.as_object_mut().ok_or_else(|| UpcastError::new("version 1 is an object"))?;
///     object.insert("reference".into(), json!(""));
///     Ok(v1)
/// }
/// let _: es_core::schema::JsonUpcaster = deposited_v1_to_v2;
/// ```
pub type JsonUpcaster = fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>;

/// When a field is written to the stored JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "predicate", rename_all = "snake_case")]
pub enum Written {
    /// Always.
    Always,
    /// Never (`#[serde(skip)]`, `skip_serializing`).
    Never,
    /// Unless the named function returns true for it (`skip_serializing_if = "..."`).
    Unless(&'static str),
}

/// What reading a stored JSON without the field does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Read {
    /// The field must be present.
    Required,
    /// An `Option` field: absent reads as `None`.
    Optional,
    /// Absent reads as the default (`#[serde(default)]` on the field or the struct).
    Defaulted,
    /// The stored value is never read; the field is always its default (`skip`,
    /// `skip_deserializing`).
    Ignored,
}

/// One field of an event struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldSchema {
    /// The field's Rust name (`"0"`, `"1"` … for tuple structs).
    pub name: &'static str,
    /// The key the field is stored under: `name` after serde's `rename` and `rename_all`.
    pub json_name: &'static str,
    /// Other keys read as this field (`alias`, or a `rename(deserialize = ...)` that differs).
    pub aliases: &'static [&'static str],
    /// The field's Rust type as written.
    pub ty: &'static str,
    /// The field's doc comment.
    pub doc: &'static str,
    /// When it is written.
    pub written: Written,
    /// What a stored JSON without it reads as.
    pub read: Read,
    /// `#[serde(flatten)]`: the field's own fields are stored inline, not under `json_name`.
    pub flatten: bool,
    /// serde attributes whose effect this schema does not describe (`with`, `serialize_with`,
    /// `deserialize_with`, `getter`): the stored value need not look like `ty`.
    pub undescribed: &'static [&'static str],
}

impl FieldSchema {
    /// A field without serde attributes: stored under its Rust name, always written, required.
    #[must_use]
    pub const fn plain(name: &'static str, ty: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            json_name: name,
            aliases: &[],
            ty,
            doc,
            written: Written::Always,
            read: Read::Required,
            flatten: false,
            undescribed: &[],
        }
    }
}

/// The JSON shape of an event's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A struct with named fields: a JSON object of its fields.
    Object,
    /// A tuple struct of several fields: a JSON array.
    Array,
    /// A struct of one unnamed field, or `#[serde(transparent)]`: the field's own JSON.
    Inner,
    /// A unit struct: `null`.
    Null,
}

/// How serde stores the event struct as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSchema {
    /// The payload's shape.
    pub shape: Shape,
    /// `#[serde(rename_all = "...")]`, as written; already applied to every
    /// [`FieldSchema::json_name`].
    pub rename_all: Option<&'static str>,
    /// `#[serde(tag = "...")]` on a struct: the key of an extra entry that holds `tag_value`.
    pub tag: Option<&'static str>,
    /// The value stored under `tag`: the struct's name after `#[serde(rename = "...")]`.
    pub tag_value: &'static str,
    /// `#[serde(deny_unknown_fields)]`: a stored key that is no field fails to read.
    pub deny_unknown_fields: bool,
    /// serde attributes whose effect this schema does not describe (`from`, `try_from`,
    /// `into`, `remote`): the stored JSON need not look like the fields.
    pub undescribed: &'static [&'static str],
}

impl ContainerSchema {
    /// A struct with named fields and no serde attributes.
    pub const PLAIN: Self = Self {
        shape: Shape::Object,
        rename_all: None,
        tag: None,
        tag_value: "",
        deny_unknown_fields: false,
        undescribed: &[],
    };
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
    /// How serde stores the struct.
    pub container: ContainerSchema,
    /// Its fields.
    pub fields: &'static [FieldSchema],
    /// How older versions are read.
    pub upcast: Upcast,
    /// The payload's JSON Schema (draft 2020-12) as `schemars` derives it, with feature
    /// `json-schema`; `None` without it.
    pub json_schema: Option<serde_json::Value>,
}

/// Every event of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateSchema {
    /// The aggregate's stream type.
    pub name: &'static str,
    /// The aggregate's doc comment.
    pub doc: &'static str,
    /// The Rust type of its id, as written in `id = ...`.
    pub id_type: &'static str,
    /// The schema version of its snapshotted state (`snapshot(version = N)`), if it snapshots.
    pub snapshot_version: Option<u32>,
    /// Its events, in declaration order (those of `retired(...)` last).
    pub events: Vec<EventSchema>,
    /// The stored names of its retired events (`#[aggregate(retired(...))]`): still read from
    /// history and applied, no longer returned by commands.
    pub retired: &'static [&'static str],
}
