//! A JSON Schema for every event version.
//!
//! With the facade's feature `json-schema`, `#[event]` derives `schemars::JsonSchema` and the
//! schema is schemars' own: every nested struct and enum is described precisely (under
//! `$defs`), and types nested in events need `#[derive(es::JsonSchema)]` too (a missing one is
//! a compile error that names the type). Without the feature, the schema is built from the
//! schema model: field types are read from their Rust type as written: strings, booleans, integers (with
//! their range), floats, `Option`, `Vec` and the other sequences, maps, tuples, arrays, `Uuid`
//! and the usual time types are described precisely. A type the model only knows by its name
//! (a struct or enum of the user's, nested in the event) is described as any JSON value, with a
//! `$comment` that names it; serde's keys, renames, tagging, flatten and `deny_unknown_fields`
//! are honoured in both modes. Schemas are draft 2020-12 ([`Draft::V2020_12`]); [`Draft::V07`] writes the
//! same schema in draft-07, the dialect AsyncAPI 3.0 payloads use by default.

use es_core::schema::{EventSchema, FieldSchema, Read, Shape};
use serde_json::{Map, Value, json};

use crate::System;
use crate::system::{Known, versions};

/// The JSON Schema dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    /// Draft 2020-12.
    V2020_12,
    /// Draft-07.
    V07,
}

impl Draft {
    /// The dialect's `$schema` URI.
    #[must_use]
    pub const fn uri(self) -> &'static str {
        match self {
            Self::V2020_12 => "https://json-schema.org/draft/2020-12/schema",
            Self::V07 => "http://json-schema.org/draft-07/schema#",
        }
    }
}

/// One schema of a system: which event version it describes, and the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSchema {
    /// The aggregate's stream type.
    pub aggregate: &'static str,
    /// The event's stored type name.
    pub event: &'static str,
    /// The schema version.
    pub version: u32,
    /// A file name for it: `Aggregate.Event.vN.schema.json`.
    pub file_name: String,
    /// The schema, with `$schema`, `title` and `description`.
    pub schema: Value,
}

/// The schema of every version of every event the code still describes (versions read only as
/// raw JSON by `upcast_json` have none), in draft 2020-12.
#[must_use]
pub fn system(system: &System) -> Vec<VersionSchema> {
    let mut out = Vec::new();
    for aggregate in &system.aggregates {
        for event in &aggregate.events {
            for (version, known) in versions(event) {
                if let Known::Typed(schema) = known {
                    out.push(VersionSchema {
                        aggregate: aggregate.name,
                        event: event.name,
                        version,
                        file_name: format!(
                            "{}.{}.v{version}.schema.json",
                            file_part(aggregate.name),
                            file_part(event.name)
                        ),
                        schema: document(schema, Draft::V2020_12),
                    });
                }
            }
        }
    }
    out
}

/// The schema of one event version as a document: `$schema`, `title`, `description` and the
/// payload's schema.
#[must_use]
pub fn document(event: &EventSchema, draft: Draft) -> Value {
    let mut schema = Map::new();
    schema.insert("$schema".into(), json!(draft.uri()));
    schema.insert("title".into(), json!(format!("{} v{}", event.name, event.version)));
    if !event.doc.trim().is_empty() {
        schema.insert("description".into(), json!(event.doc.trim()));
    }
    if let Value::Object(payload) = payload(event, draft) {
        for (key, value) in payload {
            // schemars' own `title` is the Rust type's name; the document's names the version.
            if key != "title" && key != "$schema" {
                schema.insert(key, value);
            }
        }
    }
    Value::Object(schema)
}

/// schemars' schema (draft 2020-12) written in draft-07: `$defs` as `definitions`, tuples'
/// `prefixItems` as `items: [...]`.
fn to_draft07(value: &Value) -> Value {
    to_draft07_at(value, "#/definitions/")
}

/// [`to_draft07`] with references to the definitions rewritten to `definitions` (the pointer
/// where they will be found: AsyncAPI hoists them into `components.schemas`).
pub(crate) fn to_draft07_at(value: &Value, definitions: &str) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            let tuple = map.contains_key("prefixItems");
            for (key, value) in map {
                match key.as_str() {
                    "$schema" => {}
                    "$defs" => {
                        out.insert("definitions".into(), to_draft07_at(value, definitions));
                    }
                    "$ref" => {
                        let reference = value.as_str().unwrap_or_default().replacen("#/$defs/", definitions, 1);
                        out.insert(key.clone(), json!(reference));
                    }
                    "prefixItems" => {
                        out.insert("items".into(), to_draft07_at(value, definitions));
                    }
                    "items" if tuple => {
                        out.insert("additionalItems".into(), to_draft07_at(value, definitions));
                    }
                    _ => {
                        out.insert(key.clone(), to_draft07_at(value, definitions));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| to_draft07_at(item, definitions)).collect()),
        other => other.clone(),
    }
}

/// The schema of one event version's stored payload, without `$schema`.
#[must_use]
///
/// With feature `json-schema` it is the schema schemars derived for the struct (nested types
/// described precisely, under `$defs`); without it, it is built from the schema model.
pub fn payload(event: &EventSchema, draft: Draft) -> Value {
    if let Some(schema) = &event.json_schema {
        let schema = with_tag(schema, event);
        return match draft {
            Draft::V2020_12 => {
                let mut schema = schema;
                if let Value::Object(map) = &mut schema {
                    map.remove("$schema");
                }
                schema
            }
            Draft::V07 => to_draft07(&schema),
        };
    }
    model_payload(event, draft)
}

/// schemars leaves out the entry serde's `#[serde(tag = "...")]` adds to a struct: put it in.
pub(crate) fn with_tag(schema: &Value, event: &EventSchema) -> Value {
    let mut schema = schema.clone();
    let (Some(tag), Value::Object(map)) = (event.container.tag, &mut schema) else { return schema };
    if let Value::Object(properties) = map.entry("properties").or_insert_with(|| json!({})) {
        properties.entry(tag).or_insert_with(|| json!({ "const": event.container.tag_value }));
    }
    if let Value::Array(required) = map.entry("required").or_insert_with(|| json!([]))
        && !required.iter().any(|key| key == tag)
    {
        required.insert(0, json!(tag));
    }
    schema
}

/// The payload's schema built from the schema model alone.
#[must_use]
pub fn model_payload(event: &EventSchema, draft: Draft) -> Value {
    let stored: Vec<&FieldSchema> = event.fields.iter().filter(|f| f.read != Read::Ignored).collect();
    match event.container.shape {
        Shape::Null => json!({ "type": "null" }),
        Shape::Inner => stored.first().map_or_else(|| json!({}), |field| field_schema(field, draft)),
        Shape::Array => {
            let items: Vec<Value> = event.fields.iter().map(|field| field_schema(field, draft)).collect();
            tuple(items, draft)
        }
        Shape::Object => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            let mut flattened = false;
            if let Some(tag) = event.container.tag {
                properties.insert(tag.into(), json!({ "const": event.container.tag_value }));
                required.push(json!(tag));
            }
            for field in stored {
                if field.flatten {
                    flattened = true;
                    continue;
                }
                properties.insert(field.json_name.into(), field_schema(field, draft));
                if field.read == Read::Required {
                    required.push(json!(field.json_name));
                }
                for alias in field.aliases {
                    properties.entry(*alias).or_insert_with(|| field_schema(field, draft));
                }
            }
            let mut schema = Map::new();
            schema.insert("type".into(), json!("object"));
            schema.insert("properties".into(), Value::Object(properties));
            schema.insert("required".into(), Value::Array(required));
            if event.container.deny_unknown_fields && !flattened {
                schema.insert("additionalProperties".into(), json!(false));
            }
            Value::Object(schema)
        }
    }
}

fn field_schema(field: &FieldSchema, draft: Draft) -> Value {
    let mut schema = if field.undescribed.is_empty() {
        type_schema(field.ty, draft)
    } else {
        json!({ "$comment": format!("stored through serde `{}`: not described", field.undescribed.join("`, `")) })
    };
    let doc = field.doc.trim();
    if let (Value::Object(map), false) = (&mut schema, doc.is_empty()) {
        map.insert("description".into(), json!(doc));
    }
    schema
}

fn tuple(items: Vec<Value>, draft: Draft) -> Value {
    let count = items.len();
    match draft {
        Draft::V2020_12 => {
            json!({ "type": "array", "prefixItems": items, "items": false, "minItems": count })
        }
        Draft::V07 => {
            json!({ "type": "array", "items": items, "additionalItems": false, "minItems": count })
        }
    }
}

/// The schema of a Rust type, as written.
#[must_use]
pub fn type_schema(ty: &str, draft: Draft) -> Value {
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    type_of(&ty, draft, 0)
}

fn type_of(ty: &str, draft: Draft, depth: usize) -> Value {
    if depth > 32 {
        return json!({});
    }
    let ty = ty.trim_start_matches('&').trim_start_matches("'static").trim_start_matches("mut");
    if let Some(inner) = ty.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        if inner.is_empty() {
            return json!({ "type": "null" });
        }
        let items: Vec<Value> = split_top(inner).iter().map(|t| type_of(t, draft, depth + 1)).collect();
        return tuple(items, draft);
    }
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let parts = split_top_by(inner, ';');
        let item = parts.first().map_or_else(|| json!({}), |t| type_of(t, draft, depth + 1));
        let mut schema = json!({ "type": "array", "items": item });
        if let (Some(len), Value::Object(map)) = (parts.get(1).and_then(|n| n.parse::<u64>().ok()), &mut schema) {
            map.insert("minItems".into(), json!(len));
            map.insert("maxItems".into(), json!(len));
        }
        return schema;
    }
    let (path, args) = match ty.find('<') {
        Some(open) if ty.ends_with('>') => (&ty[..open], split_top(&ty[open + 1..ty.len() - 1])),
        _ => (ty, Vec::new()),
    };
    let name = path.rsplit("::").next().unwrap_or(path);
    let arg = |i: usize| args.get(i).map_or_else(|| json!({}), |t| type_of(t, draft, depth + 1));
    let integer = |min: Option<i128>, max: u128| {
        let mut schema = Map::new();
        schema.insert("type".into(), json!("integer"));
        if let Some(Ok(min)) = min.map(i64::try_from) {
            schema.insert("minimum".into(), json!(min));
        }
        if let Ok(max) = u64::try_from(max) {
            schema.insert("maximum".into(), json!(max));
        }
        Value::Object(schema)
    };
    match name {
        "String" | "str" | "Cow" | "PathBuf" | "Path" => json!({ "type": "string" }),
        "char" => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        "bool" => json!({ "type": "boolean" }),
        "u8" => integer(Some(0), u128::from(u8::MAX)),
        "u16" => integer(Some(0), u128::from(u16::MAX)),
        "u32" | "NonZeroU32" => integer(Some(i128::from(name == "NonZeroU32")), u128::from(u32::MAX)),
        "u64" | "usize" | "u128" | "NonZeroU64" => integer(
            Some(i128::from(name == "NonZeroU64")),
            if name == "u128" { u128::MAX } else { u128::from(u64::MAX) },
        ),
        "i8" => json!({ "type": "integer", "minimum": i8::MIN, "maximum": i8::MAX }),
        "i16" => json!({ "type": "integer", "minimum": i16::MIN, "maximum": i16::MAX }),
        "i32" => json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX }),
        "i64" | "isize" | "i128" => json!({ "type": "integer" }),
        "f32" | "f64" => json!({ "type": "number" }),
        "Uuid" => json!({ "type": "string", "format": "uuid" }),
        "DateTime" | "OffsetDateTime" | "Timestamp" | "Zoned" => json!({ "type": "string", "format": "date-time" }),
        "NaiveDate" | "Date" => json!({ "type": "string", "format": "date" }),
        "NaiveTime" | "Time" => json!({ "type": "string", "format": "time" }),
        "Value" => json!({}),
        "Option" => json!({ "anyOf": [arg(0), { "type": "null" }] }),
        "Box" | "Rc" | "Arc" | "Reverse" | "Wrapping" => arg(0),
        "Vec" | "VecDeque" | "LinkedList" | "BinaryHeap" => json!({ "type": "array", "items": arg(0) }),
        "HashSet" | "BTreeSet" | "IndexSet" => json!({ "type": "array", "items": arg(0), "uniqueItems": true }),
        "HashMap" | "BTreeMap" | "IndexMap" => {
            json!({ "type": "object", "additionalProperties": arg(1) })
        }
        _ => json!({ "$comment": format!("Rust type `{ty}`: any JSON value here") }),
    }
}

/// `a,b<c,d>,e` split at the commas outside brackets.
fn split_top(text: &str) -> Vec<&str> {
    split_top_by(text, ',')
}

fn split_top_by(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

/// A name made safe for a file name.
pub(crate) fn file_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
