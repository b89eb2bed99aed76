//! Reading old history: typed and JSON upcast chains, mixed chains, renamed events (aliases),
//! and the schema that `#[event]` and `#[derive(Aggregate)]` record about all of them.

use es::prelude::*;
use es::schema::{ContainerSchema, EventSchema, FieldSchema, Read, Upcast};
use es::testing::*;
use es::{DecodeErrorKind, UpcastError};
use serde_json::{Value, json};

// --- a typed chain: v1 -> v2 -> v3, each step a struct and a `From` ------------------------

/// The first shape of a shipment: only its weight.
#[event(name = "ParcelShipped", version = 1)]
struct ParcelShippedV1 {
    /// The weight in grams.
    grams: u32,
}

/// The second shape: the carrier was added.
#[event(name = "ParcelShipped", version = 2, upcast_from = ParcelShippedV1)]
struct ParcelShippedV2 {
    /// The weight in grams.
    grams: u32,
    /// Who carries it.
    carrier: String,
}

/// A parcel left the warehouse.
///
/// Version 3 widened the weight and added the tracking number.
#[event(version = 3, upcast_from = ParcelShippedV2)]
struct ParcelShipped {
    /// The weight in grams.
    grams: u64,
    /// Who carries it.
    carrier: String,
    /// The carrier's tracking number, when it gave one.
    tracking: Option<String>,
}

impl From<ParcelShippedV1> for ParcelShippedV2 {
    fn from(old: ParcelShippedV1) -> Self {
        Self { grams: old.grams, carrier: "unknown".into() }
    }
}

impl From<ParcelShippedV2> for ParcelShipped {
    fn from(old: ParcelShippedV2) -> Self {
        Self { grams: u64::from(old.grams), carrier: old.carrier, tracking: None }
    }
}

// --- a JSON chain: the old structs are gone -----------------------------------------------

/// The price of the parcel's postage changed.
#[event(version = 3, upcast_json(v1 = price_v1_to_v2, v2 = price_v2_to_v3))]
struct PriceChanged {
    /// The new price in cents.
    cents: u64,
    /// ISO 4217 code.
    currency: String,
}

/// Version 1 held whole euros in `price`; version 2 holds cents in `cents`.
fn price_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
    let euros = v1
        .get("price")
        .and_then(Value::as_u64)
        .ok_or_else(|| UpcastError::new("version 1 needs a whole number `price`"))?;
    let object = v1.as_object_mut().ok_or_else(|| UpcastError::new("version 1 is an object"))?;
    object.remove("price");
    object.insert("cents".into(), json!(euros * 100));
    Ok(v1)
}

/// Version 3 added the currency; everything before was in euros.
fn price_v2_to_v3(mut v2: Value) -> Result<Value, UpcastError> {
    let object = v2.as_object_mut().ok_or_else(|| UpcastError::new("version 2 is an object"))?;
    object.insert("currency".into(), json!("EUR"));
    Ok(v2)
}

// --- a mixed chain: v3 typed from a v2 struct that reads v1 as JSON ------------------------

/// Version 2 of a label; version 1 (a single `text`) is gone and read as JSON.
#[event(name = "LabelPrinted", version = 2, upcast_json(v1 = label_v1_to_v2))]
struct LabelPrintedV2 {
    /// The lines on the label.
    lines: Vec<String>,
}

/// A label was printed for the parcel.
#[event(version = 3, upcast_from = LabelPrintedV2)]
struct LabelPrinted {
    /// The lines on the label.
    lines: Vec<String>,
    /// The printer's name.
    printer: String,
}

/// Version 1 had one `text` with the lines separated by `|`.
fn label_v1_to_v2(v1: Value) -> Result<Value, UpcastError> {
    let text = v1.get("text").and_then(Value::as_str).ok_or_else(|| UpcastError::new("version 1 needs a `text`"))?;
    Ok(json!({ "lines": text.split('|').collect::<Vec<_>>() }))
}

impl From<LabelPrintedV2> for LabelPrinted {
    fn from(old: LabelPrintedV2) -> Self {
        Self { lines: old.lines, printer: "legacy".into() }
    }
}

// --- aliases ------------------------------------------------------------------------------

/// The parcel reached its recipient. Stored as `ParcelArrived` before it was renamed.
#[event(version = 1, aliases = ["ParcelArrived", "Arrived"])]
struct ParcelDelivered {
    /// Who signed for it.
    signed_by: String,
}

/// The first shape of the redirect, when it was still called `ParcelRerouted`.
#[event(name = "ParcelRerouted", version = 1)]
struct ParcelReroutedV1 {
    /// The new address, as one line.
    to: String,
}

/// The parcel is on its way to another address.
#[event(version = 2, aliases = ["ParcelRerouted"], upcast_from = ParcelReroutedV1)]
struct ParcelRedirected {
    /// The new address, as one line.
    address: String,
    /// Why.
    reason: String,
}

impl From<ParcelReroutedV1> for ParcelRedirected {
    fn from(old: ParcelReroutedV1) -> Self {
        Self { address: old.to, reason: String::new() }
    }
}

// --- the aggregate ------------------------------------------------------------------------

/// A parcel on its way.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(
    id = u64,
    events(ParcelShipped, PriceChanged, LabelPrinted, ParcelDelivered, ParcelRedirected),
    event_enum = ParcelHistory,
    name = "parcel",
)]
struct Parcel {
    /// Every event applied, in order.
    applied: Vec<ParcelHistory>,
}

impl Apply<ParcelShipped> for Parcel {
    fn apply(&mut self, event: &ParcelShipped) {
        self.applied.push(event.clone().into());
    }
}

impl Apply<PriceChanged> for Parcel {
    fn apply(&mut self, event: &PriceChanged) {
        self.applied.push(event.clone().into());
    }
}

impl Apply<LabelPrinted> for Parcel {
    fn apply(&mut self, event: &LabelPrinted) {
        self.applied.push(event.clone().into());
    }
}

impl Apply<ParcelDelivered> for Parcel {
    fn apply(&mut self, event: &ParcelDelivered) {
        self.applied.push(event.clone().into());
    }
}

impl Apply<ParcelRedirected> for Parcel {
    fn apply(&mut self, event: &ParcelRedirected) {
        self.applied.push(event.clone().into());
    }
}

impl Parcel {
    fn deliver(&self, signed_by: &str) -> Result<ParcelDelivered, std::convert::Infallible> {
        Ok(ParcelDelivered { signed_by: signed_by.into() })
    }
}

fn decode(event_type: &str, version: u32, payload: &str) -> ParcelHistory {
    match ParcelHistory::decode(event_type, version, payload) {
        Ok(event) => event,
        Err(error) => panic!("{event_type} v{version} {payload} does not decode: {error}"),
    }
}

fn shipped(grams: u64, carrier: &str, tracking: Option<&str>) -> ParcelHistory {
    ParcelShipped { grams, carrier: carrier.into(), tracking: tracking.map(Into::into) }.into()
}

// --- typed chain --------------------------------------------------------------------------

#[test]
fn the_typed_chain_reads_every_stored_version() {
    assert_eq!(decode("ParcelShipped", 1, r#"{"grams":500}"#), shipped(500, "unknown", None));
    assert_eq!(decode("ParcelShipped", 2, r#"{"grams":500,"carrier":"dhl"}"#), shipped(500, "dhl", None));
    assert_eq!(
        decode("ParcelShipped", 3, r#"{"grams":5000000000,"carrier":"dhl","tracking":"T1"}"#),
        shipped(5_000_000_000, "dhl", Some("T1"))
    );
}

#[test]
fn each_step_of_the_typed_chain_decodes_on_its_own() {
    assert_eq!(
        ParcelShippedV2::decode_payload(1, r#"{"grams":1}"#).unwrap(),
        ParcelShippedV2 { grams: 1, carrier: "unknown".into() }
    );
    assert_eq!(ParcelShippedV1::decode_payload(1, r#"{"grams":1}"#).unwrap(), ParcelShippedV1 { grams: 1 });
    assert!(matches!(
        ParcelShippedV2::decode_payload(3, r#"{"grams":1}"#),
        Err(DecodeErrorKind::FutureVersion { found: 3, newest: 2 })
    ));
}

#[test]
fn a_version_1_payload_is_read_with_version_1_rules_not_today_s() {
    // Version 1 had a u32 weight: a value that fits only today's u64 is not a valid version 1.
    let error = ParcelHistory::decode("ParcelShipped", 1, r#"{"grams":5000000000}"#).unwrap_err();
    assert!(matches!(error, DecodeErrorKind::Payload { rust_type: "ParcelShippedV1", version: 1, .. }), "{error:?}");
}

#[test]
fn the_typed_chain_feeds_the_harness() {
    Parcel::given_raw([RawEvent::new("ParcelShipped", 1, r#"{"grams":500}"#)])
        .and_raw([RawEvent::new("ParcelShipped", 2, r#"{"grams":20,"carrier":"ups"}"#)])
        .when(|p| p.deliver("ann"))
        .then(ParcelDelivered { signed_by: "ann".into() })
        .and_state(|p| {
            assert_eq!(p.applied[..2], [shipped(500, "unknown", None), shipped(20, "ups", None)]);
            assert_eq!(p.applied.len(), 3);
        });
}

// --- JSON chain ---------------------------------------------------------------------------

fn price(cents: u64, currency: &str) -> ParcelHistory {
    PriceChanged { cents, currency: currency.into() }.into()
}

#[test]
fn the_json_chain_reads_every_stored_version() {
    assert_eq!(decode("PriceChanged", 1, r#"{"price":12}"#), price(1200, "EUR"));
    assert_eq!(decode("PriceChanged", 2, r#"{"cents":1250}"#), price(1250, "EUR"));
    assert_eq!(decode("PriceChanged", 3, r#"{"cents":999,"currency":"CHF"}"#), price(999, "CHF"));
}

#[test]
fn the_json_chain_starts_at_the_stored_version() {
    // A version 2 payload must not go through the version 1 step (which needs `price`).
    assert_eq!(
        PriceChanged::decode_payload(2, r#"{"cents":1}"#).unwrap(),
        PriceChanged { cents: 1, currency: "EUR".into() }
    );
}

#[test]
fn a_refusing_json_upcaster_reports_its_step_and_reason() {
    let error = PriceChanged::decode_payload(1, r#"{"price":"twelve"}"#).unwrap_err();
    match &error {
        DecodeErrorKind::Upcast { from: 1, source } => {
            assert_eq!(source.to_string(), "version 1 needs a whole number `price`");
        }
        other => panic!("expected an upcast error from version 1, got {other:?}"),
    }
}

// --- mixed chain --------------------------------------------------------------------------

fn label(lines: &[&str], printer: &str) -> ParcelHistory {
    LabelPrinted { lines: lines.iter().map(|l| (*l).to_owned()).collect(), printer: printer.into() }.into()
}

#[test]
fn the_mixed_chain_reads_every_stored_version() {
    assert_eq!(
        decode("LabelPrinted", 1, r#"{"text":"Ann Smith|1 Main St"}"#),
        label(&["Ann Smith", "1 Main St"], "legacy")
    );
    assert_eq!(decode("LabelPrinted", 2, r#"{"lines":["Bob"]}"#), label(&["Bob"], "legacy"));
    assert_eq!(decode("LabelPrinted", 3, r#"{"lines":[],"printer":"p2"}"#), label(&[], "p2"));
}

#[test]
fn the_mixed_chain_reports_a_refusal_of_its_json_step() {
    let error = ParcelHistory::decode("LabelPrinted", 1, r#"{"lines":["already v2"]}"#).unwrap_err();
    assert!(matches!(error, DecodeErrorKind::Upcast { from: 1, .. }), "{error:?}");
}

// --- aliases ------------------------------------------------------------------------------

fn delivered(signed_by: &str) -> ParcelHistory {
    ParcelDelivered { signed_by: signed_by.into() }.into()
}

fn redirected(address: &str, reason: &str) -> ParcelHistory {
    ParcelRedirected { address: address.into(), reason: reason.into() }.into()
}

#[test]
fn records_under_a_former_name_still_decode() {
    let payload = r#"{"signed_by":"ann"}"#;
    assert_eq!(decode("ParcelDelivered", 1, payload), delivered("ann"));
    assert_eq!(decode("ParcelArrived", 1, payload), delivered("ann"));
    assert_eq!(decode("Arrived", 1, payload), delivered("ann"));
}

#[test]
fn an_event_decoded_under_an_alias_is_stored_again_under_its_current_name() {
    let event = decode("ParcelArrived", 1, r#"{"signed_by":"ann"}"#);
    assert_eq!(event.event_type(), "ParcelDelivered");
    assert_eq!(event.schema_version(), 1);
}

#[test]
fn an_alias_combined_with_an_older_version_upcasts() {
    assert_eq!(decode("ParcelRerouted", 1, r#"{"to":"2 High St"}"#), redirected("2 High St", ""));
    assert_eq!(
        decode("ParcelRerouted", 2, r#"{"address":"3 Low St","reason":"moved"}"#),
        redirected("3 Low St", "moved")
    );
    assert_eq!(decode("ParcelRedirected", 1, r#"{"to":"4 Side St"}"#), redirected("4 Side St", ""));
    assert_eq!(decode("ParcelRedirected", 2, r#"{"address":"5 Top St","reason":"x"}"#), redirected("5 Top St", "x"));
    let event = decode("ParcelRerouted", 1, r#"{"to":"2 High St"}"#);
    assert_eq!((event.event_type(), event.schema_version()), ("ParcelRedirected", 2));
}

#[test]
fn a_name_that_is_no_alias_is_unknown() {
    let error = ParcelHistory::decode("ParcelRedirectedV1", 1, r#"{"to":"x"}"#).unwrap_err();
    assert!(matches!(error, DecodeErrorKind::UnknownType { .. }), "{error:?}");
}

#[test]
fn aliases_feed_the_harness() {
    Parcel::given_raw([
        RawEvent::new("ParcelRerouted", 1, r#"{"to":"2 High St"}"#),
        RawEvent::new("ParcelArrived", 1, r#"{"signed_by":"bob"}"#),
    ])
    .when(|p| p.deliver("ann"))
    .then(ParcelDelivered { signed_by: "ann".into() })
    .and_state_is(Parcel { applied: vec![redirected("2 High St", ""), delivered("bob"), delivered("ann")] });
}

// --- every event and version through EventSet -------------------------------------------

#[test]
fn the_event_set_knows_the_current_names_in_declaration_order() {
    assert_eq!(
        ParcelHistory::event_types(),
        ["ParcelShipped", "PriceChanged", "LabelPrinted", "ParcelDelivered", "ParcelRedirected"]
    );
}

#[test]
fn every_event_round_trips_through_encode_and_decode_at_its_current_version() {
    let events = [
        shipped(1, "dhl", Some("T")),
        price(2, "EUR"),
        label(&["a", "b"], "p"),
        delivered("ann"),
        redirected("x", "y"),
    ];
    let versions: Vec<u32> = events.iter().map(EventSet::schema_version).collect();
    assert_eq!(versions, [3, 3, 3, 1, 2]);
    for event in events {
        let payload = event.encode().unwrap();
        assert_eq!(ParcelHistory::decode(event.event_type(), event.schema_version(), &payload).unwrap(), event);
    }
}

#[test]
fn every_stored_version_of_every_event_decodes() {
    let stored: [(&str, u32, Value, ParcelHistory); 14] = [
        ("ParcelShipped", 1, json!({"grams": 7}), shipped(7, "unknown", None)),
        ("ParcelShipped", 2, json!({"grams": 7, "carrier": "c"}), shipped(7, "c", None)),
        ("ParcelShipped", 3, json!({"grams": 7, "carrier": "c", "tracking": null}), shipped(7, "c", None)),
        ("PriceChanged", 1, json!({"price": 3}), price(300, "EUR")),
        ("PriceChanged", 2, json!({"cents": 3}), price(3, "EUR")),
        ("PriceChanged", 3, json!({"cents": 3, "currency": "USD"}), price(3, "USD")),
        ("LabelPrinted", 1, json!({"text": "a"}), label(&["a"], "legacy")),
        ("LabelPrinted", 2, json!({"lines": ["a"]}), label(&["a"], "legacy")),
        ("LabelPrinted", 3, json!({"lines": ["a"], "printer": "p"}), label(&["a"], "p")),
        ("ParcelDelivered", 1, json!({"signed_by": "s"}), delivered("s")),
        ("ParcelArrived", 1, json!({"signed_by": "s"}), delivered("s")),
        ("ParcelRedirected", 1, json!({"to": "t"}), redirected("t", "")),
        ("ParcelRerouted", 1, json!({"to": "t"}), redirected("t", "")),
        ("ParcelRedirected", 2, json!({"address": "t", "reason": "r"}), redirected("t", "r")),
    ];
    for (event_type, version, payload, expected) in stored {
        let decoded = ParcelHistory::decode(event_type, version, &payload.to_string());
        assert_eq!(decoded.as_ref().ok(), Some(&expected), "{event_type} v{version}: {decoded:?}");
    }
}

// --- schema -------------------------------------------------------------------------------

const fn field(name: &'static str, ty: &'static str, doc: &'static str) -> FieldSchema {
    FieldSchema::plain(name, ty, doc)
}

const GRAMS_U32: FieldSchema = field("grams", "u32", "The weight in grams.");
const CARRIER: FieldSchema = field("carrier", "String", "Who carries it.");

#[test]
fn the_schema_of_a_typed_chain_describes_every_version() {
    let v1 = EventSchema {
        name: "ParcelShipped",
        version: 1,
        aliases: &[],
        rust_type: "ParcelShippedV1",
        doc: "The first shape of a shipment: only its weight.",
        container: ContainerSchema::PLAIN,
        fields: &[GRAMS_U32],
        upcast: Upcast::None,
        // With feature `json-schema`, schemars' schema; compared in tests/schema_docs.rs.
        json_schema: ParcelShippedV1::schema().json_schema,
    };
    assert_eq!(ParcelShippedV1::schema(), v1);
    let v2 = EventSchema {
        name: "ParcelShipped",
        version: 2,
        aliases: &[],
        rust_type: "ParcelShippedV2",
        doc: "The second shape: the carrier was added.",
        container: ContainerSchema::PLAIN,
        fields: &[GRAMS_U32, CARRIER],
        upcast: Upcast::Typed { from: Box::new(v1) },
        json_schema: ParcelShippedV2::schema().json_schema,
    };
    assert_eq!(ParcelShippedV2::schema(), v2);
    let v3 = ParcelShipped::schema();
    assert_eq!((v3.name, v3.version, v3.rust_type), ("ParcelShipped", 3, "ParcelShipped"));
    assert_eq!(v3.doc, "A parcel left the warehouse.\n\nVersion 3 widened the weight and added the tracking number.");
    assert_eq!(
        v3.fields,
        [
            field("grams", "u64", "The weight in grams."),
            CARRIER,
            FieldSchema {
                read: Read::Optional,
                ..field("tracking", "Option<String>", "The carrier's tracking number, when it gave one.")
            },
        ]
    );
    assert_eq!(v3.upcast, Upcast::Typed { from: Box::new(v2) });
}

#[test]
fn the_schema_of_a_json_chain_names_its_oldest_version() {
    let schema = PriceChanged::schema();
    assert_eq!(schema.upcast, Upcast::Json { oldest: 1 });
    assert_eq!(schema.version, 3);
    assert_eq!(
        schema.fields,
        [field("cents", "u64", "The new price in cents."), field("currency", "String", "ISO 4217 code.")]
    );
}

#[test]
fn the_schema_of_a_mixed_chain_nests_the_json_step_in_the_typed_one() {
    let schema = LabelPrinted::schema();
    let Upcast::Typed { from } = &schema.upcast else { panic!("expected a typed upcast: {:?}", schema.upcast) };
    assert_eq!((from.name, from.version, from.rust_type), ("LabelPrinted", 2, "LabelPrintedV2"));
    assert_eq!(from.upcast, Upcast::Json { oldest: 1 });
    assert_eq!(from.fields, [field("lines", "Vec<String>", "The lines on the label.")]);
    assert_eq!(from.doc, "Version 2 of a label; version 1 (a single `text`) is gone and read as JSON.");
}

#[test]
fn the_schema_records_aliases() {
    assert_eq!(ParcelDelivered::schema().aliases, ["ParcelArrived", "Arrived"]);
    assert_eq!(ParcelDelivered::ALIASES, ["ParcelArrived", "Arrived"]);
    assert_eq!(ParcelDelivered::schema().upcast, Upcast::None);
    let redirected = ParcelRedirected::schema();
    assert_eq!(redirected.aliases, ["ParcelRerouted"]);
    let Upcast::Typed { from } = redirected.upcast else { panic!("expected a typed upcast") };
    assert_eq!((from.name, from.version, from.aliases), ("ParcelRerouted", 1, &[][..]));
}

#[test]
fn the_event_constants_match_the_attribute() {
    assert_eq!((ParcelShipped::NAME, ParcelShipped::VERSION), ("ParcelShipped", 3));
    assert_eq!((ParcelShippedV2::NAME, ParcelShippedV2::VERSION), ("ParcelShipped", 2));
    assert_eq!((ParcelShippedV1::NAME, ParcelShippedV1::VERSION), ("ParcelShipped", 1));
    assert_eq!((ParcelReroutedV1::NAME, ParcelReroutedV1::VERSION), ("ParcelRerouted", 1));
    assert!(ParcelShipped::ALIASES.is_empty());
}

#[test]
fn the_aggregate_schema_lists_every_event_in_declaration_order() {
    let schema = Parcel::schema();
    assert_eq!(schema.name, "parcel");
    assert_eq!(schema.doc, "A parcel on its way.");
    assert_eq!((schema.id_type, schema.snapshot_version), ("u64", None));
    let events: Vec<(&str, u32)> = schema.events.iter().map(|e| (e.name, e.version)).collect();
    assert_eq!(
        events,
        [
            ("ParcelShipped", 3),
            ("PriceChanged", 3),
            ("LabelPrinted", 3),
            ("ParcelDelivered", 1),
            ("ParcelRedirected", 2)
        ]
    );
    assert_eq!(schema.events[0], ParcelShipped::schema());
    assert_eq!(schema.events[4], ParcelRedirected::schema());
    assert_eq!(Parcel::TYPE, "parcel");
}

#[test]
fn the_schema_serializes_the_upcast_chain() {
    let json = serde_json::to_value(LabelPrinted::schema()).unwrap();
    assert_eq!(json["upcast"]["kind"], "typed");
    assert_eq!(json["upcast"]["from"]["version"], 2);
    assert_eq!(json["upcast"]["from"]["upcast"], json!({ "kind": "json", "oldest": 1 }));
    assert_eq!(
        json["fields"][1],
        json!({
            "name": "printer",
            "json_name": "printer",
            "aliases": [],
            "ty": "String",
            "doc": "The printer's name.",
            "written": { "kind": "always" },
            "read": "required",
            "flatten": false,
            "undescribed": [],
        })
    );
}
