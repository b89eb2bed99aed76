//! Bad stored data never panics: every way a record can fail to decode yields a typed
//! `DecodeError` that names the stream, the stream version and the event type.

use std::error::Error as _;
use std::panic::catch_unwind;
use std::time::SystemTime;

use es::prelude::*;
use es::testing::*;
use es::{
    DecodeError, DecodeErrorKind, Metadata, Position, RawEvent, StoredEvent, StreamId, UpcastError, decode_record,
};
use serde_json::Value;

/// The first target temperature: whole degrees.
#[event(name = "TargetSet", version = 1)]
struct TargetSetV1 {
    degrees: i32,
}

/// The target temperature was set, in tenths of a degree.
#[event(version = 2, upcast_from = TargetSetV1)]
struct TargetSet {
    tenths: i64,
}

impl From<TargetSetV1> for TargetSet {
    fn from(old: TargetSetV1) -> Self {
        Self { tenths: i64::from(old.degrees) * 10 }
    }
}

/// The heating mode changed. Version 1 is no longer read; version 2 had no `boost`.
#[event(version = 3, upcast_json(v2 = mode_v2_to_v3))]
struct ModeChanged {
    mode: String,
    boost: bool,
}

fn mode_v2_to_v3(mut v2: Value) -> Result<Value, UpcastError> {
    if let Some(mode) = v2.get("mode").and_then(Value::as_str)
        && !["eco", "comfort"].contains(&mode)
    {
        return Err(UpcastError::new(format!("version 2 knew only the modes eco and comfort, not {mode:?}")));
    }
    if let Some(object) = v2.as_object_mut() {
        object.insert("boost".into(), Value::Bool(false));
    }
    Ok(v2)
}

/// The thermostat was reset. Version 1 is no longer read and has no upcaster.
#[event(version = 2)]
struct FactoryReset {}

/// A thermostat.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(id = Uuid, events(TargetSet, ModeChanged, FactoryReset), name = "thermostat")]
struct Thermostat {
    target_tenths: i64,
    mode: String,
}

impl Apply<TargetSet> for Thermostat {
    fn apply(&mut self, event: &TargetSet) {
        self.target_tenths = event.tenths;
    }
}

impl Apply<ModeChanged> for Thermostat {
    fn apply(&mut self, event: &ModeChanged) {
        self.mode.clone_from(&event.mode);
    }
}

impl Apply<FactoryReset> for Thermostat {
    fn apply(&mut self, _: &FactoryReset) {
        *self = Self::default();
    }
}

const STREAM_ID: &str = "0190a5c4-7d2e-7000-8000-00000000002a";

fn record(event_type: &str, schema_version: u32, payload: &str) -> StoredEvent {
    StoredEvent {
        position: Position(41),
        stream: StreamId::new("thermostat", STREAM_ID),
        stream_version: Version(7),
        event_id: Uuid::from_u128(0x0190_a5c4_7d2e_7000_8000_0000_0000_0001),
        metadata: Metadata::new().with_header("user", "ann"),
        recorded_at: SystemTime::UNIX_EPOCH,
        event: RawEvent::new(event_type, schema_version, payload),
    }
}

/// The error and its sources, as a chain printer (anyhow's `{:#}`) shows them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Decodes a record that must fail, and checks everything every error must say.
fn decode_error(event_type: &str, schema_version: u32, payload: &str) -> DecodeError {
    let error = match decode_record::<Thermostat>(record(event_type, schema_version, payload)) {
        Ok(envelope) => panic!("{event_type} v{schema_version} {payload} decoded to {:?}", envelope.event),
        Err(error) => error,
    };
    assert_eq!(error.stream, StreamId::new("thermostat", STREAM_ID));
    assert_eq!(error.stream_version, Version(7));
    assert_eq!(error.event_type, event_type);
    assert_eq!(error.schema_version, schema_version);
    let text = error.to_string();
    let place = format!(
        "cannot decode event 7 of stream thermostat/{STREAM_ID} (type `{event_type}`, schema version {schema_version}): "
    );
    assert!(text.starts_with(&place), "{text}");
    assert!(text.ends_with(&error.kind.to_string()), "the message must end with what is wrong: {text}");
    // The kind is part of the message, so the source is the kind's own cause: a chain printer
    // shows each part once.
    assert_eq!(error.source().map(ToString::to_string), error.kind.source().map(ToString::to_string));
    let full = chain(&error);
    assert_eq!(full.matches(&error.kind.to_string()).count(), 1, "each cause once: {full}");

    // The event set reports the same kind without the stream.
    let kind = ThermostatEvent::decode(event_type, schema_version, payload).unwrap_err();
    assert_eq!(kind.to_string(), error.kind.to_string());
    error
}

fn payload_error(error: &DecodeError) -> (&'static str, u32, &serde_json::Error) {
    match &error.kind {
        DecodeErrorKind::Payload { rust_type, version, source } => (rust_type, *version, source),
        other => panic!("expected a payload error, got {other:?}"),
    }
}

#[test]
fn a_good_record_decodes_with_its_envelope() {
    let envelope = decode_record::<Thermostat>(record("TargetSet", 1, r#"{"degrees":21}"#)).unwrap();
    assert_eq!(envelope.event, ThermostatEvent::TargetSet(TargetSet { tenths: 210 }));
    assert_eq!((envelope.position, envelope.stream_version), (Position(41), Version(7)));
    assert_eq!((envelope.stream.stream_type(), envelope.stream.id()), ("thermostat", STREAM_ID));
    assert_eq!(envelope.metadata.headers["user"], "ann");
    Thermostat::given(envelope.event)
        .when(|_| Ok::<_, std::convert::Infallible>(ModeChanged { mode: "eco".into(), boost: true }))
        .then(ModeChanged { mode: "eco".into(), boost: true })
        .and_state_is(Thermostat { target_tenths: 210, mode: "eco".into() });
}

#[test]
fn an_unknown_type_lists_the_known_types() {
    let error = decode_error("TemperatureExploded", 1, "{}");
    match &error.kind {
        DecodeErrorKind::UnknownType { known } => assert_eq!(*known, ["TargetSet", "ModeChanged", "FactoryReset"]),
        other => panic!("expected an unknown type, got {other:?}"),
    }
    assert!(
        error.to_string().ends_with("unknown event type; known types are TargetSet, ModeChanged, FactoryReset"),
        "{error}"
    );
    assert!(error.kind.source().is_none());
}

#[test]
fn type_names_are_case_sensitive() {
    let error = decode_error("targetset", 2, r#"{"tenths":1}"#);
    assert!(matches!(error.kind, DecodeErrorKind::UnknownType { .. }), "{error:?}");
}

#[test]
fn a_schema_version_newer_than_the_code_is_refused() {
    for (event_type, found, newest, payload) in
        [("TargetSet", 3, 2, r#"{"tenths":1}"#), ("ModeChanged", 4, 3, "{}"), ("FactoryReset", u32::MAX, 2, "{}")]
    {
        let error = decode_error(event_type, found, payload);
        match error.kind {
            DecodeErrorKind::FutureVersion { found: f, newest: n } => assert_eq!((f, n), (found, newest)),
            ref other => panic!("expected a future version, got {other:?}"),
        }
        assert!(
            error.to_string().ends_with(&format!(
                "schema version {found} is newer than this code, which reads up to version {newest}: deploy the newer code"
            )),
            "{error}"
        );
    }
}

#[test]
fn an_old_version_without_an_upcaster_is_refused() {
    for (event_type, found, oldest) in [
        ("FactoryReset", 1, 2),
        ("FactoryReset", 0, 2),
        ("ModeChanged", 1, 2),
        ("ModeChanged", 0, 2),
        ("TargetSet", 0, 1),
    ] {
        let error = decode_error(event_type, found, "{}");
        match error.kind {
            DecodeErrorKind::UnsupportedVersion { found: f, oldest: o } => assert_eq!((f, o), (found, oldest)),
            ref other => panic!("{event_type} v{found}: expected an unsupported version, got {other:?}"),
        }
        let text = error.to_string();
        assert!(text.contains(&format!("no upcaster reads schema version {found}")), "{text}");
        assert!(text.contains(&format!("the oldest version read now is {oldest}")), "{text}");
        assert!(
            text.contains("upcast_from") && text.contains("upcast_json"),
            "the message says what to declare: {text}"
        );
    }
}

#[test]
fn a_field_of_the_wrong_type_is_a_payload_error() {
    let error = decode_error("TargetSet", 2, r#"{"tenths":"warm"}"#);
    let (rust_type, version, source) = payload_error(&error);
    assert_eq!((rust_type, version), ("TargetSet", 2));
    assert!(source.is_data(), "{source}");
    let text = chain(&error);
    assert!(text.contains("the payload does not fit `TargetSet` (version 2): invalid type: string \"warm\""), "{text}");
}

#[test]
fn a_missing_field_is_a_payload_error() {
    let error = decode_error("ModeChanged", 3, r#"{"mode":"eco"}"#);
    let (rust_type, version, source) = payload_error(&error);
    assert_eq!((rust_type, version), ("ModeChanged", 3));
    assert!(source.to_string().contains("missing field `boost`"), "{source}");
    assert!(chain(&error).contains("missing field `boost`"), "{error}");
}

#[test]
fn a_payload_that_is_not_json_is_a_payload_error() {
    let error = decode_error("TargetSet", 2, "<tenths>210</tenths>");
    let (rust_type, version, source) = payload_error(&error);
    assert_eq!((rust_type, version), ("TargetSet", 2));
    assert!(source.is_syntax(), "{source}");
    assert!(chain(&error).contains("expected value at line 1 column 1"), "{error}");

    for payload in ["", "{", "null", "[]", "42", r#"{"tenths":1}trailing"#] {
        let error = decode_error("TargetSet", 2, payload);
        let (rust_type, version, _) = payload_error(&error);
        assert_eq!((rust_type, version), ("TargetSet", 2), "{payload:?}");
    }
}

#[test]
fn an_old_version_that_does_not_fit_its_own_struct_names_that_struct() {
    let error = decode_error("TargetSet", 1, r#"{"tenths":210}"#);
    let (rust_type, version, source) = payload_error(&error);
    assert_eq!((rust_type, version), ("TargetSetV1", 1));
    assert!(source.to_string().contains("missing field `degrees`"), "{source}");
    assert!(error.to_string().contains("does not fit `TargetSetV1` (version 1)"), "{error}");
}

#[test]
fn an_old_version_that_is_not_json_is_a_payload_error_of_that_version() {
    let error = decode_error("ModeChanged", 2, "mode: eco");
    let (_, version, source) = payload_error(&error);
    assert_eq!(version, 2);
    assert!(source.is_syntax(), "{source}");
    assert!(chain(&error).contains("(version 2): expected value at line 1 column 1"), "{error}");
}

#[test]
fn what_a_json_upcaster_makes_must_still_fit_today_s_struct() {
    // The upcaster accepts it but `mode` is no string: today's struct refuses the result.
    let error = decode_error("ModeChanged", 2, r#"{"mode":5}"#);
    let (rust_type, version, source) = payload_error(&error);
    assert_eq!((rust_type, version), ("ModeChanged", 3));
    assert!(source.is_data(), "{source}");
}

#[test]
fn a_json_upcaster_that_refuses_is_an_upcast_error() {
    let error = decode_error("ModeChanged", 2, r#"{"mode":"turbo"}"#);
    let DecodeErrorKind::Upcast { from, source } = &error.kind else {
        panic!("expected an upcast error, got {:?}", error.kind)
    };
    assert_eq!(*from, 2);
    assert_eq!(source.to_string(), r#"version 2 knew only the modes eco and comfort, not "turbo""#);
    assert!(
        chain(&error).ends_with(
            r#"upcasting from schema version 2 failed: version 2 knew only the modes eco and comfort, not "turbo""#
        ),
        "{error}"
    );
    let inner = error.source().expect("the upcast error is the decode error's source");
    assert_eq!(inner.to_string(), source.to_string());
    assert!(inner.downcast_ref::<UpcastError>().is_some());
}

#[test]
fn the_source_chain_reaches_serde_json() {
    let error = decode_error("TargetSet", 2, r#"{"tenths":true}"#);
    // The kind is in the message; the source is serde_json's error itself.
    let json = error.source().expect("the serde_json error");
    assert!(json.downcast_ref::<serde_json::Error>().is_some(), "{json}");
    assert!(json.source().is_none());
}

#[test]
fn the_event_set_reports_the_same_kinds() {
    let kind = |t: &str, v: u32, p: &str| ThermostatEvent::decode(t, v, p).unwrap_err();
    assert!(matches!(kind("Nope", 1, "{}"), DecodeErrorKind::UnknownType { known } if known.len() == 3));
    assert!(matches!(kind("TargetSet", 9, "{}"), DecodeErrorKind::FutureVersion { found: 9, newest: 2 }));
    assert!(matches!(kind("FactoryReset", 1, "{}"), DecodeErrorKind::UnsupportedVersion { found: 1, oldest: 2 }));
    assert!(matches!(kind("TargetSet", 2, "{}"), DecodeErrorKind::Payload { rust_type: "TargetSet", version: 2, .. }));
    assert!(matches!(kind("ModeChanged", 2, r#"{"mode":"off"}"#), DecodeErrorKind::Upcast { from: 2, .. }));
}

#[test]
fn garbage_never_panics() {
    let types = ["TargetSet", "ModeChanged", "FactoryReset", "", "Unknown", "TargetSet\0", "ÄÖÜ"];
    let versions = [0, 1, 2, 3, 4, u32::MAX];
    let deep = "[".repeat(10_000);
    let payloads =
        ["", " ", "{", "}", "null", "[]", "{}", "\"text\"", "1e999", r#"{"mode":null}"#, r#"{"degrees":1e40}"#, &deep];
    for event_type in types {
        for version in versions {
            for payload in payloads {
                let outcome = catch_unwind(|| {
                    let _ = decode_record::<Thermostat>(record(event_type, version, payload));
                    let _ = ThermostatEvent::decode(event_type, version, payload);
                });
                assert!(outcome.is_ok(), "{event_type:?} v{version} {payload:?} panicked");
            }
        }
    }
}
