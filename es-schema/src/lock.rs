//! The schema lock: a committed JSON file of every event version ever released, and the check
//! that today's code still reads each of them as it was written.
//!
//! Add one test to the project:
//!
//! ```no_run
//! # let system = es_schema::System::new("bank");
//! // tests/schema_lock.rs — `system` is `System::of::<(BankAccount, ...)>("bank")`.
//! es_schema::lock::assert_up_to_date(&system, "tests/schema.lock.json");
//! ```
//!
//! - The first run, without a lock, writes nothing and fails with the command that creates it:
//!   `ES_SCHEMA_LOCK=update cargo test`.
//! - An event version in the lock whose shape changed in the code fails, with a message that
//!   names the aggregate, the event, the version, the field and what changed, and says what to
//!   do instead: add version N+1 with an upcaster.
//! - Compatibility is backward transitive: today's code must read every version in the lock.
//!   A version the code no longer reads (a new version without `upcast_from` or `upcast_json`
//!   from the one before) fails, and so does an event in the lock that is gone from the code.
//! - New events, new versions and compatible changes (an optional field added) fail as "not
//!   in the lock yet" until `ES_SCHEMA_LOCK=update` writes them: the lock never changes
//!   silently. Breaking changes are never written by `update`; `ES_SCHEMA_LOCK=force` writes
//!   the lock as the code is now, for history that was never deployed.
//!
//! # What it compares
//!
//! Per field, under its stored key: its Rust type as written, whether it is required, whether
//! it is flattened; per version, the payload's shape, serde tagging and `deny_unknown_fields`.
//! Without the facade's feature `json-schema`, a type is compared by its name as written in the
//! field (`Address`, `Vec<Line>`): a change *inside* a nested type that keeps its name is not
//! seen. With it, the lock also stores each version's JSON Schema (schemars', canonical: keys
//! sorted, doc comments left out) and compares each field's schema with its nested types
//! resolved, so a field added to, removed from or retyped in `Address` is reported on the
//! field that holds it. Fields of a flattened type are not compared that way. Versions read only
//! through `upcast_json` keep the shape the lock recorded when their struct still existed; the
//! code no longer knows their fields, so only that they are still read is checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use es_core::schema::{EventSchema, Read, Shape};
use serde::{Deserialize, Serialize};

use crate::System;
use crate::system::{Known, versions};

/// The environment variable that lets [`check_file`] write the lock.
pub const ENV: &str = "ES_SCHEMA_LOCK";

/// The version of the lock file's own format.
pub const FORMAT: u32 = 1;

/// A lock: every aggregate's events and the shape of each of their versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// [`FORMAT`].
    pub format: u32,
    /// The aggregates, by stream type.
    pub aggregates: BTreeMap<String, LockedAggregate>,
}

/// One aggregate of a lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedAggregate {
    /// Its events, by stored type name.
    pub events: BTreeMap<String, LockedEvent>,
}

/// One event of a lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedEvent {
    /// Listed in `#[aggregate(retired(...))]`: still read, no longer emitted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub retired: bool,
    /// Every version, oldest first.
    pub versions: Vec<LockedVersion>,
}

/// One version of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedVersion {
    /// The schema version.
    pub version: u32,
    /// Its shape, or `None` when it was first locked while already read only as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<LockedShape>,
}

/// The stored shape of one event version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedShape {
    /// The Rust type that described it when it was locked (informative; not compared).
    pub rust_type: String,
    /// `object`, `array`, `inner` or `null`.
    pub payload: String,
    /// serde's `tag = "..."` key and the value under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<(String, String)>,
    /// `deny_unknown_fields`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_unknown_fields: bool,
    /// Its fields, by stored key; fields never read (`skip`) are left out.
    pub fields: BTreeMap<String, LockedField>,
    /// Its JSON Schema with feature `json-schema`, keys sorted and without the words that only
    /// inform (`description`, `title`, `$comment`, `examples`): what catches a change inside a
    /// nested type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

/// One field of a locked version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedField {
    /// Its Rust type as written.
    #[serde(rename = "type")]
    pub ty: String,
    /// `true` when a stored event without it fails to read.
    pub required: bool,
    /// Other stored keys read as this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `#[serde(flatten)]`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub flatten: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_false(value: &bool) -> bool {
    !*value
}

impl Lock {
    /// The lock of the system as the code is now.
    #[must_use]
    pub fn of(system: &System) -> Self {
        let mut aggregates = BTreeMap::new();
        for aggregate in &system.aggregates {
            let locked: &mut LockedAggregate = aggregates.entry(aggregate.name.to_owned()).or_default();
            for event in &aggregate.events {
                let mut all: Vec<LockedVersion> = versions(event)
                    .into_iter()
                    .map(|(version, known)| LockedVersion {
                        version,
                        shape: match known {
                            Known::Typed(schema) => Some(LockedShape::of(schema)),
                            Known::Raw => None,
                        },
                    })
                    .collect();
                all.sort_by_key(|v| v.version);
                let retired = aggregate.retired.contains(&event.name);
                locked.events.insert(event.name.to_owned(), LockedEvent { retired, versions: all });
            }
        }
        Self { format: FORMAT, aggregates }
    }

    /// Reads a lock file's text.
    ///
    /// # Errors
    /// When the text is not a lock of this format.
    pub fn parse(text: &str) -> Result<Self, LockError> {
        let lock: Self = serde_json::from_str(text).map_err(|error| LockError::Unreadable(error.to_string()))?;
        if lock.format != FORMAT {
            return Err(LockError::Unreadable(format!(
                "the lock is in format {}, this version of es reads format {FORMAT}",
                lock.format
            )));
        }
        Ok(lock)
    }

    /// The lock file's text: pretty JSON, keys in a stable order, one trailing newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// This lock with what `today` adds: new events, new versions and compatible changes. A
    /// version today's code reads only as raw JSON keeps the shape locked before.
    #[must_use]
    pub fn updated_with(&self, today: &Self) -> Self {
        let mut out = self.clone();
        for (aggregate, events) in &today.aggregates {
            let locked = out.aggregates.entry(aggregate.clone()).or_default();
            for (name, event) in &events.events {
                let locked = locked.events.entry(name.clone()).or_default();
                locked.retired = event.retired;
                for version in &event.versions {
                    match locked.versions.iter_mut().find(|v| v.version == version.version) {
                        Some(existing) => match (&mut existing.shape, &version.shape) {
                            // Today's code without `json-schema` keeps the JSON Schema locked before.
                            (Some(old), Some(new)) if new.json_schema.is_none() => {
                                let kept = old.json_schema.take();
                                *old = LockedShape { json_schema: kept, ..new.clone() };
                            }
                            (old, Some(new)) => *old = Some(new.clone()),
                            (_, None) => {}
                        },
                        None => locked.versions.push(version.clone()),
                    }
                }
                locked.versions.sort_by_key(|v| v.version);
            }
        }
        out
    }
}

impl Lock {
    /// Only the events and versions that `today` reads.
    fn pruned_to(mut self, today: &Self) -> Self {
        self.aggregates.retain(|name, _| today.aggregates.contains_key(name));
        for (name, aggregate) in &mut self.aggregates {
            let Some(now) = today.aggregates.get(name) else { continue };
            aggregate.events.retain(|event, _| now.events.contains_key(event));
            for (event, locked) in &mut aggregate.events {
                let Some(now) = now.events.get(event) else { continue };
                locked.versions.retain(|v| now.versions.iter().any(|n| n.version == v.version));
            }
        }
        self
    }
}

impl LockedShape {
    /// Equal but for the Rust type's name, which only informs.
    ///
    /// A JSON Schema known on one side only is not compared: a lock written with feature
    /// `json-schema` is still checked (field by field) without it, and the other way round.
    fn same_shape(&self, other: &Self) -> bool {
        let both = self.json_schema.is_some() && other.json_schema.is_some();
        let strip = |shape: &Self| Self {
            rust_type: String::new(),
            json_schema: if both { shape.json_schema.clone() } else { None },
            ..shape.clone()
        };
        strip(self) == strip(other)
    }

    fn of(event: &EventSchema) -> Self {
        let payload = match event.container.shape {
            Shape::Object => "object",
            Shape::Array => "array",
            Shape::Inner => "inner",
            Shape::Null => "null",
        };
        let fields = event
            .fields
            .iter()
            .filter(|field| field.read != Read::Ignored)
            .map(|field| {
                (
                    field.json_name.to_owned(),
                    LockedField {
                        ty: field.ty.to_owned(),
                        required: field.read == Read::Required,
                        aliases: field.aliases.iter().map(|&a| a.to_owned()).collect(),
                        flatten: field.flatten,
                    },
                )
            })
            .collect();
        Self {
            rust_type: event.rust_type.to_owned(),
            payload: payload.to_owned(),
            tag: event.container.tag.map(|tag| (tag.to_owned(), event.container.tag_value.to_owned())),
            deny_unknown_fields: event.container.deny_unknown_fields,
            fields,
            json_schema: event.json_schema.as_ref().map(canonical),
        }
    }
}

/// `schema` with object keys sorted and without the keywords that only inform.
fn canonical(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "description" | "title" | "$comment" | "examples"))
                .collect();
            Value::Object(sorted.into_iter().map(|(key, value)| (key.clone(), canonical(value))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// `schema` with its references to `defs` replaced by what they name, `depth` levels deep
/// (a recursive type keeps its reference past that).
fn resolved(schema: &serde_json::Value, defs: Option<&serde_json::Value>, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if let (Some(Value::String(reference)), Some(defs), true) = (map.get("$ref"), defs, depth > 0)
                && let Some(target) = reference.strip_prefix("#/$defs/").and_then(|name| defs.get(name))
            {
                return resolved(target, Some(defs), depth - 1);
            }
            Value::Object(map.iter().map(|(key, value)| (key.clone(), resolved(value, defs, depth))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| resolved(item, defs, depth)).collect()),
        other => other.clone(),
    }
}

/// The schema of field `key` in a locked JSON Schema, its nested types resolved.
fn field_json_schema(schema: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    let field = schema.get("properties")?.get(key)?;
    Some(resolved(field, schema.get("$defs"), 16))
}

/// A JSON value in one short line.
fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 240 {
        return text;
    }
    let cut: String = text.chars().take(240).collect();
    format!("{cut}…")
}

/// A change that breaks reading history already written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaking {
    /// The aggregate's stream type.
    pub aggregate: String,
    /// The event's stored type name.
    pub event: String,
    /// The version concerned.
    pub version: u32,
    /// What changed.
    pub change: Change,
}

/// What changed in a locked event version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A field of the locked version is gone.
    FieldRemoved {
        /// Its stored key.
        field: String,
    },
    /// A field is gone and another, of the same type, appeared: renamed without
    /// `#[serde(rename = "...")]` or `alias`.
    FieldRenamed {
        /// The stored key in the lock.
        from: String,
        /// The new key.
        to: String,
    },
    /// A field's type changed.
    TypeChanged {
        /// Its stored key.
        field: String,
        /// The locked type.
        from: String,
        /// Today's type.
        to: String,
    },
    /// A required field was added, or an optional one became required.
    RequiredFieldAdded {
        /// Its stored key.
        field: String,
    },
    /// A field keeps its type's name, but the type's JSON Schema changed: a change inside a
    /// nested type (feature `json-schema`).
    NestedChanged {
        /// Its stored key.
        field: String,
        /// Its Rust type as written.
        ty: String,
        /// The locked JSON Schema of the field.
        from: String,
        /// Today's.
        to: String,
    },
    /// A field was flattened or no longer is.
    FlattenChanged {
        /// Its stored key.
        field: String,
    },
    /// The payload's JSON shape, its serde tag, or its strictness changed.
    ContainerChanged {
        /// What, in words.
        what: String,
    },
    /// The code no longer reads this version.
    VersionUnread {
        /// The oldest version the code reads, if it knows the event at all.
        oldest: u32,
        /// The newest version in the code.
        newest: u32,
    },
    /// The event is in the lock and gone from the code.
    EventRemoved,
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { aggregate, event, version, change } = self;
        let next = version + 1;
        let bump = format!(
            "stored `{event}` events of version {version} no longer read as they were written. \
             Keep version {version} as it is in the lock, and make the change in version {next}: \
             `#[event(version = {next}, upcast_from = ...)]` with the old struct kept at version {version} \
             (or `upcast_json(v{version} = ...)`)"
        );
        write!(f, "`{event}` version {version} (aggregate `{aggregate}`): ")?;
        match change {
            Change::FieldRemoved { field } => write!(f, "field `{field}` was removed; {bump}"),
            Change::FieldRenamed { from, to } => write!(
                f,
                "field `{from}` was renamed to `{to}` without a serde rename; keep the stored key with \
                 `#[serde(rename = \"{from}\")]` on `{to}`, or {bump}"
            ),
            Change::TypeChanged { field, from, to } => {
                write!(f, "field `{field}` changed type from `{from}` to `{to}`; {bump}")
            }
            Change::RequiredFieldAdded { field } => write!(
                f,
                "required field `{field}` was added, which stored events do not have; make it an `Option` or \
                 `#[serde(default)]`, or {bump}"
            ),
            Change::FlattenChanged { field } => write!(f, "field `{field}` changed `#[serde(flatten)]`; {bump}"),
            Change::NestedChanged { field, ty, from, to } => write!(
                f,
                "field `{field}` keeps its type `{ty}`, but the type changed inside: its JSON Schema was {from} and is \
                 now {to}; {bump}"
            ),
            Change::ContainerChanged { what } => write!(f, "{what}; {bump}"),
            Change::VersionUnread { oldest, newest } => write!(
                f,
                "the code reads versions {oldest} to {newest} only, so stored version {version} events no longer \
                 load: give version {} an upcaster from version {}, `upcast_from = <the struct of version {}>` \
                 or `upcast_json(v{} = ...)`",
                oldest,
                oldest.saturating_sub(1),
                oldest.saturating_sub(1),
                oldest.saturating_sub(1)
            ),
            Change::EventRemoved => write!(
                f,
                "the event is gone from the code, so stored `{event}` events no longer load; list it again in \
                 `{aggregate}`'s `events(...)`, or in its `retired(...)` if commands must no longer emit it"
            ),
        }
    }
}

/// Something today's code has that the lock does not yet record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The aggregate's stream type.
    pub aggregate: String,
    /// The event's stored type name.
    pub event: String,
    /// The version, or `None` for a new event as a whole.
    pub version: Option<u32>,
    /// What, in words.
    pub what: String,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => {
                write!(f, "`{}` version {version} (aggregate `{}`): {}", self.event, self.aggregate, self.what)
            }
            None => write!(f, "`{}` (aggregate `{}`): {}", self.event, self.aggregate, self.what),
        }
    }
}

/// What [`compare`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Changes that break reading stored history.
    pub breaking: Vec<Breaking>,
    /// What the lock does not record yet.
    pub pending: Vec<Pending>,
}

impl Report {
    /// Nothing breaking and nothing pending.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.breaking.is_empty() && self.pending.is_empty()
    }
}

/// Compares today's lock with the committed one.
#[must_use]
pub fn compare(locked: &Lock, today: &Lock) -> Report {
    let mut report = Report::default();
    let empty = LockedAggregate::default();
    for (aggregate, locked_events) in &locked.aggregates {
        let today_events = today.aggregates.get(aggregate).unwrap_or(&empty);
        for (event, locked_event) in &locked_events.events {
            let Some(today_event) = today_events.events.get(event) else {
                report.breaking.push(Breaking {
                    aggregate: aggregate.clone(),
                    event: event.clone(),
                    version: locked_event.versions.last().map_or(1, |v| v.version),
                    change: Change::EventRemoved,
                });
                continue;
            };
            compare_event(aggregate, event, locked_event, today_event, &mut report);
        }
    }
    for (aggregate, today_events) in &today.aggregates {
        let locked_events = locked.aggregates.get(aggregate).unwrap_or(&empty);
        for event in today_events.events.keys() {
            if !locked_events.events.contains_key(event) {
                report.pending.push(Pending {
                    aggregate: aggregate.clone(),
                    event: event.clone(),
                    version: None,
                    what: "a new event, not in the lock yet".to_owned(),
                });
            }
        }
    }
    report
}

fn compare_event(aggregate: &str, event: &str, locked: &LockedEvent, today: &LockedEvent, report: &mut Report) {
    if locked.retired != today.retired {
        report.pending.push(Pending {
            aggregate: aggregate.to_owned(),
            event: event.to_owned(),
            version: None,
            what: if today.retired { "now retired" } else { "no longer retired" }.to_owned() + ", not in the lock yet",
        });
    }
    let oldest = today.versions.first().map_or(0, |v| v.version);
    let newest = today.versions.last().map_or(0, |v| v.version);
    let breaking = |version: u32, change: Change| Breaking {
        aggregate: aggregate.to_owned(),
        event: event.to_owned(),
        version,
        change,
    };
    for old in &locked.versions {
        let Some(now) = today.versions.iter().find(|v| v.version == old.version) else {
            report.breaking.push(breaking(old.version, Change::VersionUnread { oldest, newest }));
            continue;
        };
        match (&old.shape, &now.shape) {
            (Some(old_shape), Some(now_shape)) => {
                let before = report.breaking.len();
                for change in shape_changes(old_shape, now_shape) {
                    report.breaking.push(breaking(old.version, change));
                }
                if report.breaking.len() == before && !old_shape.same_shape(now_shape) {
                    report.pending.push(Pending {
                        aggregate: aggregate.to_owned(),
                        event: event.to_owned(),
                        version: Some(old.version),
                        what: "a compatible change (an optional field, an alias), not in the lock yet".to_owned(),
                    });
                }
            }
            (None, Some(_)) => report.pending.push(Pending {
                aggregate: aggregate.to_owned(),
                event: event.to_owned(),
                version: Some(old.version),
                what: "its fields are known again, not in the lock yet".to_owned(),
            }),
            // Read as raw JSON today: the code no longer knows its fields, only that it reads it.
            (_, None) => {}
        }
    }
    for now in &today.versions {
        if !locked.versions.iter().any(|v| v.version == now.version) {
            report.pending.push(Pending {
                aggregate: aggregate.to_owned(),
                event: event.to_owned(),
                version: Some(now.version),
                what: "a new version, not in the lock yet".to_owned(),
            });
        }
    }
}

fn shape_changes(old: &LockedShape, now: &LockedShape) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.payload != now.payload {
        changes.push(Change::ContainerChanged {
            what: format!("the payload was stored as {} and is now read as {}", old.payload, now.payload),
        });
    }
    if old.tag != now.tag {
        let show = |tag: &Option<(String, String)>| match tag {
            Some((key, value)) => format!("tagged `\"{key}\": \"{value}\"`"),
            None => "untagged".to_owned(),
        };
        changes.push(Change::ContainerChanged {
            what: format!("the payload was {} and is now {}", show(&old.tag), show(&now.tag)),
        });
    }
    if !old.deny_unknown_fields && now.deny_unknown_fields {
        changes.push(Change::ContainerChanged {
            what: "`#[serde(deny_unknown_fields)]` was added, so stored keys the struct lost would fail to read"
                .to_owned(),
        });
    }
    // A locked key is still read when a field of today has it as its key or one of its aliases.
    let reader = |key: &str| -> Option<(&str, &LockedField)> {
        now.fields
            .get_key_value(key)
            .or_else(|| now.fields.iter().find(|(_, field)| field.aliases.iter().any(|a| a == key)))
            .map(|(k, f)| (k.as_str(), f))
    };
    let mut gone = Vec::new();
    for (key, old_field) in &old.fields {
        match reader(key) {
            Some((_, field)) => {
                if field.ty != old_field.ty {
                    changes.push(Change::TypeChanged {
                        field: key.clone(),
                        from: old_field.ty.clone(),
                        to: field.ty.clone(),
                    });
                }
                if field.flatten != old_field.flatten {
                    changes.push(Change::FlattenChanged { field: key.clone() });
                }
                if field.required && !old_field.required {
                    changes.push(Change::RequiredFieldAdded { field: key.clone() });
                }
                if field.ty == old_field.ty
                    && !field.flatten
                    && let Some(change) = nested_change(old, now, key, &field.ty)
                {
                    changes.push(change);
                }
            }
            None => gone.push((key, old_field)),
        }
    }
    let read_keys: Vec<&str> = old.fields.keys().filter_map(|key| reader(key).map(|(k, _)| k)).collect();
    let mut added: Vec<(&String, &LockedField)> = now
        .fields
        .iter()
        .filter(|(key, _)| !old.fields.contains_key(*key) && !read_keys.contains(&key.as_str()))
        .collect();
    for (key, old_field) in gone {
        // A new field of the same type standing where the old one was: a rename.
        if let Some(index) = added.iter().position(|(_, field)| field.ty == old_field.ty && !field.flatten) {
            let (to, _) = added.remove(index);
            changes.push(Change::FieldRenamed { from: key.clone(), to: to.clone() });
        } else {
            changes.push(Change::FieldRemoved { field: key.clone() });
        }
    }
    for (key, field) in added {
        if field.required {
            changes.push(Change::RequiredFieldAdded { field: key.clone() });
        }
    }
    changes
}

/// A change inside the type of field `key`, as the JSON Schemas of both sides show it.
fn nested_change(old: &LockedShape, now: &LockedShape, key: &str, ty: &str) -> Option<Change> {
    let before = field_json_schema(old.json_schema.as_ref()?, key)?;
    let after = field_json_schema(now.json_schema.as_ref()?, key)?;
    (before != after).then(|| Change::NestedChanged {
        field: key.to_owned(),
        ty: ty.to_owned(),
        from: short(&before),
        to: short(&after),
    })
}

/// Why [`check_file`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// There is no lock file yet; nothing was written.
    Missing {
        /// The path looked at.
        path: String,
    },
    /// The lock file could not be read or written, or is not a lock.
    Unreadable(String),
    /// Changes that break reading stored history (never written to the lock by `update`).
    Breaking(Vec<Breaking>),
    /// What the lock does not record yet.
    Pending(Vec<Pending>),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(
                f,
                "there is no schema lock at {path}; nothing was written. Create it with `{ENV}=update cargo test` \
                 and commit it"
            ),
            Self::Unreadable(why) => write!(f, "the schema lock cannot be used: {why}"),
            Self::Breaking(changes) => {
                writeln!(f, "the events changed in ways that break reading stored history:")?;
                for change in changes {
                    writeln!(f, "- {change}")?;
                }
                write!(
                    f,
                    "({ENV}=update never writes these; for history that was never deployed, `{ENV}=force cargo test` \
                     rewrites the lock as the code is now)"
                )
            }
            Self::Pending(pending) => {
                writeln!(f, "the schema lock is out of date:")?;
                for item in pending {
                    writeln!(f, "- {item}")?;
                }
                write!(f, "review them, then run `{ENV}=update cargo test` and commit the lock")
            }
        }
    }
}

impl std::error::Error for LockError {}

/// What `ES_SCHEMA_LOCK` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compare only (unset, or any other value).
    Check,
    /// `update`: write new events, new versions and compatible changes.
    Update,
    /// `force`: write the lock as the code is now, breaking changes included.
    Force,
}

impl Mode {
    /// The mode [`ENV`] asks for.
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var(ENV).as_deref() {
            Ok("update" | "1" | "always") => Self::Update,
            Ok("force") => Self::Force,
            _ => Self::Check,
        }
    }
}

/// Compares the system with the lock at `path`, writing the lock as `mode` allows. `Ok` when
/// the lock (as written, if it was) matches the code.
///
/// # Errors
/// See [`LockError`].
pub fn check_file(system: &System, path: impl AsRef<Path>, mode: Mode) -> Result<(), LockError> {
    let path = path.as_ref();
    let today = Lock::of(system);
    let write = |lock: &Lock| {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| LockError::Unreadable(format!("{}: {error}", dir.display())))?;
        }
        std::fs::write(path, lock.to_text())
            .map_err(|error| LockError::Unreadable(format!("{}: {error}", path.display())))
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return match mode {
                Mode::Check => Err(LockError::Missing { path: path.display().to_string() }),
                Mode::Update | Mode::Force => write(&today),
            };
        }
        Err(error) => return Err(LockError::Unreadable(format!("{}: {error}", path.display()))),
    };
    let locked = Lock::parse(&text)?;
    let report = compare(&locked, &today);
    match mode {
        Mode::Force => {
            let merged = locked.updated_with(&today).pruned_to(&today);
            if merged == locked { Ok(()) } else { write(&merged) }
        }
        _ if !report.breaking.is_empty() => Err(LockError::Breaking(report.breaking)),
        Mode::Check if !report.pending.is_empty() => Err(LockError::Pending(report.pending)),
        Mode::Check => Ok(()),
        Mode::Update => {
            // Written whenever it changes: also when only what one mode knows (the JSON Schemas
            // of feature `json-schema`) is new.
            let merged = locked.updated_with(&today);
            if merged == locked { Ok(()) } else { write(&merged) }
        }
    }
}

/// The one line of a lock test: [`check_file`] in the mode `ES_SCHEMA_LOCK` asks for, panicking
/// with the message of what failed.
///
/// # Panics
/// When [`check_file`] fails: that is the test failing.
#[track_caller]
pub fn assert_up_to_date(system: &System, path: impl AsRef<Path>) {
    if let Err(error) = check_file(system, path, Mode::from_env()) {
        panic!("{error}");
    }
}
