//! The schema docs of the bank domain and of a domain that uses every kind of upcast and the
//! serde attributes the model describes: Markdown (snapshot), JSON Schema and AsyncAPI.

#[allow(dead_code)]
#[path = "../examples/bank_account/domain.rs"]
mod domain;

use es::__private::serde_json::{Value, json};
use es::prelude::*;
use es::schema::{System, asyncapi, json_schema, markdown};

/// Version 3 of a parcel's shipment: the weight is in grams now.
#[event(version = 3, upcast_from = ParcelShippedV2)]
#[serde(rename_all = "camelCase")]
pub struct ParcelShipped {
    /// Where to.
    pub destination: String,
    /// The weight in grams.
    pub weight_grams: u32,
    /// The tracking numbers of the carrier.
    #[serde(default)]
    pub tracking: Vec<String>,
    /// The id of the label, when one was printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Uuid>,
}

/// Version 2: the weight was in kilograms, and version 1 is only known as JSON.
#[event(name = "ParcelShipped", version = 2, upcast_json(v1 = shipped_v1_to_v2))]
pub struct ParcelShippedV2 {
    /// Where to.
    pub destination: String,
    /// The weight in kilograms.
    pub weight_kg: f64,
}

impl From<ParcelShippedV2> for ParcelShipped {
    fn from(old: ParcelShippedV2) -> Self {
        let grams = (old.weight_kg * 1000.0).clamp(0.0, f64::from(u32::MAX));
        // In range after the clamp.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let weight_grams = grams as u32;
        Self { destination: old.destination, weight_grams, tracking: Vec::new(), label: None }
    }
}

/// Version 1 stored `to` and no weight.
fn shipped_v1_to_v2(mut v1: Value) -> Result<Value, es::UpcastError> {
    let object = v1.as_object_mut().ok_or_else(|| es::UpcastError::new("version 1 is an object"))?;
    let to = object.remove("to").unwrap_or(json!(""));
    Ok(json!({ "destination": to, "weight_kg": 0.0 }))
}

/// The parcel was delivered, and signed for.
#[event(version = 1, aliases = ["ParcelArrived"])]
#[serde(tag = "kind")]
pub struct ParcelDelivered {
    /// Who signed, by name and by role.
    pub signed_by: (String, String),
    /// When, as Unix seconds.
    pub at: i64,
    /// What proves it.
    pub proof: Proof,
}

/// What proves a delivery: a nested enum, described precisely with feature `json-schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "es::__private::serde", rename_all = "snake_case")]
#[cfg_attr(feature = "json-schema", derive(es::JsonSchema), schemars(crate = "es::__private::schemars"))]
pub enum Proof {
    /// Signed for on the courier's device.
    Signature {
        /// The image of the signature.
        strokes: Vec<(u16, u16)>,
    },
    /// Left at the door, with a photo.
    Photo(Uuid),
}

/// A parcel on its way.
#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(id = String, name = "parcel", events(ParcelShipped, ParcelDelivered))]
pub struct Parcel {
    delivered: bool,
}

#[es::apply]
impl Parcel {
    fn shipped(&mut self, _: &ParcelShipped) {}
    fn delivered(&mut self, _: &ParcelDelivered) {
        self.delivered = true;
    }
}

fn system() -> System {
    System::of::<(domain::BankAccount, Parcel)>("the bank and its parcels")
}

#[test]
fn the_markdown_page_is_the_reviewed_one() {
    insta::assert_snapshot!("events.md", markdown::render(&system()));
}

#[test]
fn the_markdown_shows_every_version_and_says_which_ones_are_raw_json() {
    let page = markdown::render(&system());
    assert!(
        page.contains("- [BankAccount](#bankaccount)\n  - [AccountOpened](#bankaccount-accountopened) (version 1)")
    );
    assert!(page.contains("    v1 -- upcast_from --> v2"), "{page}");
    assert!(page.contains("    v2 -- upcast_from --> v3\n    v1 -. upcast_json .-> v2"), "{page}");
    assert!(page.contains("##### Version 1: raw JSON"), "{page}");
    assert!(page.contains("its fields are no longer known to the code"), "{page}");
    assert!(
        page.contains("| `weightGrams` (Rust `weight_grams`) | `u32` | required | The weight in grams. |"),
        "{page}"
    );
    assert!(page.contains("| `label` | `Option<Uuid>` | optional, left out when `Option::is_none` |"), "{page}");
}

#[test]
fn every_described_version_has_a_json_schema() {
    let schemas = json_schema::system(&system());
    let names: Vec<&str> = schemas.iter().map(|s| s.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "BankAccount.AccountOpened.v1.schema.json",
            "BankAccount.MoneyDeposited.v2.schema.json",
            "BankAccount.MoneyDeposited.v1.schema.json",
            "BankAccount.MoneyWithdrawn.v1.schema.json",
            "BankAccount.AccountClosed.v1.schema.json",
            "parcel.ParcelShipped.v3.schema.json",
            "parcel.ParcelShipped.v2.schema.json",
            "parcel.ParcelDelivered.v1.schema.json",
        ]
    );
    let shipped = &schemas[5].schema;
    assert_eq!(shipped["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(shipped["required"], json!(["destination", "weightGrams"]));
    if cfg!(feature = "json-schema") {
        // schemars' own words for the range.
        assert_eq!(shipped["properties"]["weightGrams"]["format"], "uint32");
    } else {
        assert_eq!(shipped["properties"]["weightGrams"]["maximum"], json!(u32::MAX));
    }
    // `{"anyOf": [{"format": "uuid", ..}, {"type": "null"}]}` from the model, `{"format": "uuid",
    // "type": ["string", "null"]}` from schemars.
    assert!(shipped["properties"]["label"].to_string().contains(r#""format":"uuid""#), "{shipped}");
    assert_eq!(shipped["properties"]["tracking"]["items"]["type"], "string");
    let delivered = &schemas[7].schema;
    assert_eq!(delivered["properties"]["kind"]["const"], "ParcelDelivered");
    assert_eq!(delivered["properties"]["signed_by"]["prefixItems"][1]["type"], "string");
}

#[test]
fn the_asyncapi_document_has_a_channel_per_aggregate_and_a_message_per_version() {
    let document = asyncapi::render(&system(), "1.0.0");
    assert_eq!(document["asyncapi"], "3.0.0");
    let channels: Vec<&String> = document["channels"].as_object().map(|c| c.keys().collect()).unwrap_or_default();
    assert_eq!(channels.len(), 2);
    let messages = document["channels"]["parcel"]["messages"].as_object().map(|m| m.len());
    // ParcelShipped v3, v2, v1 (raw JSON) and ParcelDelivered v1.
    assert_eq!(messages, Some(4));
    let delivered = &document["components"]["messages"]["parcel.ParcelDelivered.v1"];
    // Draft-07, which AsyncAPI 3.0's default schema format accepts: tuples as `items: [...]`.
    assert_eq!(delivered["payload"]["properties"]["signed_by"]["items"][0]["type"], "string");
    assert_eq!(document["operations"]["parcel.append"]["action"], "send");
}

/// The official AsyncAPI parser, `@asyncapi/parser` (pinned in `tests/asyncapi/package.json`),
/// run on Node: it fails, never skips, when Node or npm is missing.
#[test]
fn the_asyncapi_document_passes_the_official_parser() {
    use std::process::Command;

    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asyncapi");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|out| out.status.success()),
        "this test runs the official AsyncAPI parser on Node, and `node` cannot be run ({node:?}): install Node.js \
         and npm (`apt-get install nodejs npm`); `.ci/run` then installs the parser"
    );
    if !folder.join("node_modules/@asyncapi/parser").exists() {
        let install = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&folder).output();
        assert!(
            install.as_ref().is_ok_and(|out| out.status.success()),
            "installing the AsyncAPI parser with `npm ci` in {} failed: {install:?}",
            folder.display()
        );
    }
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("a temporary folder: {error}"));
    let path = dir.path().join("events.asyncapi.json");
    let document = asyncapi::render(&system(), "1.0.0");
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    let run = Command::new("node").arg(folder.join("validate.mjs")).arg(&path).output();
    let run = run.unwrap_or_else(|error| panic!("running node: {error}"));
    let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the AsyncAPI parser rejects the document:\n{report}");
    assert!(report.contains("valid AsyncAPI 3.0.0 document: 2 channels, 9 messages"), "{report}");
}

/// The JSON of one example of each event version, under its schema's file name.
fn examples() -> Vec<(&'static str, Value)> {
    use domain::{AccountClosed, AccountOpened, MoneyDeposited, MoneyDepositedV1, MoneyWithdrawn};
    let json = |value: Result<Value, serde_json::Error>| value.unwrap_or_else(|error| panic!("an example: {error}"));
    vec![
        (
            "BankAccount.AccountOpened.v1.schema.json",
            json(serde_json::to_value(AccountOpened { owner: "ann".into(), initial_deposit: 100 })),
        ),
        (
            "BankAccount.MoneyDeposited.v2.schema.json",
            json(serde_json::to_value(MoneyDeposited { amount: 50, reference: "salary".into() })),
        ),
        ("BankAccount.MoneyDeposited.v1.schema.json", json(serde_json::to_value(MoneyDepositedV1 { amount: 5 }))),
        ("BankAccount.MoneyWithdrawn.v1.schema.json", json(serde_json::to_value(MoneyWithdrawn { amount: 20 }))),
        ("BankAccount.AccountClosed.v1.schema.json", json(serde_json::to_value(AccountClosed {}))),
        (
            "parcel.ParcelShipped.v3.schema.json",
            json(serde_json::to_value(ParcelShipped {
                destination: "Lyon".into(),
                weight_grams: 1200,
                tracking: vec!["TR-1".into()],
                label: Some(Uuid::now_v7()),
            })),
        ),
        (
            "parcel.ParcelShipped.v2.schema.json",
            json(serde_json::to_value(ParcelShippedV2 { destination: "Lyon".into(), weight_kg: 1.2 })),
        ),
        (
            "parcel.ParcelDelivered.v1.schema.json",
            json(serde_json::to_value(ParcelDelivered {
                signed_by: ("Ann".into(), "owner".into()),
                at: 1_700_000_000,
                proof: Proof::Signature { strokes: vec![(1, 2), (3, 4)] },
            })),
        ),
    ]
}

#[test]
fn the_json_schemas_are_valid_2020_12_and_accept_the_events_they_describe() {
    let schemas = json_schema::system(&system());
    let examples = examples();
    assert_eq!(examples.len(), schemas.len(), "one example per event version");
    for schema in &schemas {
        if let Err(error) = jsonschema::draft202012::meta::validate(&schema.schema) {
            panic!("{} is not a valid draft 2020-12 schema: {error}\n{:#}", schema.file_name, schema.schema);
        }
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema.schema)
            .unwrap_or_else(|error| panic!("{}: {error}", schema.file_name));
        let Some((_, example)) = examples.iter().find(|(name, _)| *name == schema.file_name) else {
            panic!("no example for {}", schema.file_name)
        };
        if let Err(error) = validator.validate(example) {
            panic!("{} rejects its own event {example}: {error}", schema.file_name);
        }
    }
    // And they reject what does not fit: a missing required key, a negative `u32`, a wrong tag.
    let by_name = |name: &str| schemas.iter().find(|s| s.file_name == name).map(|s| s.schema.clone());
    let shipped = by_name("parcel.ParcelShipped.v3.schema.json").unwrap_or_default();
    assert!(!jsonschema::is_valid(&shipped, &json!({ "destination": "Lyon" })));
    assert!(!jsonschema::is_valid(&shipped, &json!({ "destination": "Lyon", "weightGrams": -1 })));
    let delivered = by_name("parcel.ParcelDelivered.v1.schema.json").unwrap_or_default();
    let proof = json!({ "signature": { "strokes": [[1, 2]] } });
    assert!(jsonschema::is_valid(
        &delivered,
        &json!({ "kind": "ParcelDelivered", "signed_by": ["a", "b"], "at": 1, "proof": proof })
    ));
    assert!(!jsonschema::is_valid(
        &delivered,
        &json!({ "kind": "Other", "signed_by": ["a", "b"], "at": 1, "proof": proof })
    ));
    if cfg!(feature = "json-schema") {
        // The nested enum is described, so a proof of another shape is refused.
        let wrong = json!({ "kind": "ParcelDelivered", "signed_by": ["a", "b"], "at": 1, "proof": { "photo": 7 } });
        assert!(!jsonschema::is_valid(&delivered, &wrong));
    }
}

#[test]
fn the_asyncapi_payloads_are_valid_draft_07() {
    let document = asyncapi::render(&system(), "1.0.0");
    let messages = document["components"]["messages"].as_object().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 9);
    for (name, message) in &messages {
        if let Err(error) = jsonschema::draft7::meta::validate(&message["payload"]) {
            panic!("the payload of {name} is not valid draft-07: {error}");
        }
    }
}
