//! The schema describes the JSON serde actually stores: renamed keys, aliases, skipped and
//! defaulted fields, flatten, tagging, and what it cannot describe.

use es::prelude::*;
use es::schema::{ContainerSchema, FieldSchema, Read, Shape, Written};

/// A label was printed.
#[event(version = 1)]
#[serde(rename_all = "camelCase")]
pub struct LabelPrinted {
    /// Which printer.
    pub printer_name: String,
    /// How many copies.
    #[serde(rename = "qty", alias = "count")]
    pub quantity: u32,
    /// An optional note, left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Never stored.
    #[serde(skip)]
    pub cached: bool,
    /// Its own fields are stored inline.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Inline fields of a label.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(crate = "es::serde")]
#[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
pub struct Extra {
    /// The paper size.
    pub paper: String,
}

/// Stored internally tagged, and read with a strict key set.
#[event(version = 1)]
#[serde(tag = "type", rename = "Jam", deny_unknown_fields)]
pub struct PaperJammed {
    /// Where.
    pub tray: u8,
}

/// A newtype event.
#[event(version = 1)]
pub struct Counted(pub u64);

/// Stored through another type: not described.
#[event(version = 1)]
pub struct Stamped {
    /// Written as a string.
    #[serde(with = "as_text")]
    pub at: u64,
}

mod as_text {
    use es::__private::serde::de::Error as _;
    use es::__private::serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[test]
fn every_stored_key_is_a_json_name_of_the_schema() {
    let label = LabelPrinted {
        printer_name: "p1".into(),
        quantity: 2,
        note: None,
        cached: true,
        extra: Extra { paper: "A6".into() },
    };
    let json = serde_json::to_value(&label).unwrap_or_default();
    let keys: Vec<&str> = json.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(keys, ["paper", "printerName", "qty"]);
    let schema = LabelPrinted::schema();
    let names: Vec<(&str, &str)> = schema.fields.iter().map(|f| (f.name, f.json_name)).collect();
    assert_eq!(
        names,
        [
            ("printer_name", "printerName"),
            ("quantity", "qty"),
            ("note", "note"),
            ("cached", "cached"),
            ("extra", "extra")
        ]
    );
    assert_eq!(schema.container.rename_all, Some("camelCase"));
}

#[test]
fn fields_say_when_they_are_written_and_how_they_are_read() {
    let fields = LabelPrinted::schema().fields;
    assert_eq!(
        fields[0],
        FieldSchema { json_name: "printerName", ..FieldSchema::plain("printer_name", "String", "Which printer.") }
    );
    assert_eq!(fields[1].aliases, ["count"]);
    assert_eq!((fields[2].written, fields[2].read), (Written::Unless("Option::is_none"), Read::Defaulted));
    assert_eq!((fields[3].written, fields[3].read), (Written::Never, Read::Ignored));
    assert!(fields[4].flatten);
}

#[test]
fn the_container_records_tagging_and_strictness() {
    let schema = PaperJammed::schema();
    assert_eq!(
        schema.container,
        ContainerSchema { tag: Some("type"), tag_value: "Jam", deny_unknown_fields: true, ..ContainerSchema::PLAIN }
    );
    let json = serde_json::to_string(&PaperJammed { tray: 2 }).unwrap_or_default();
    assert_eq!(json, r#"{"type":"Jam","tray":2}"#);
    assert_eq!(Counted::schema().container.shape, Shape::Inner);
}

#[test]
fn what_the_schema_cannot_describe_is_marked() {
    assert_eq!(Stamped::schema().fields[0].undescribed, ["with"]);
    let json = serde_json::to_string(&Stamped { at: 5 }).unwrap_or_default();
    assert_eq!(json, r#"{"at":"5"}"#);
}
