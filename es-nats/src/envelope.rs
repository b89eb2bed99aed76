//! One stored event as one JetStream message, and back: the subject it is published on, the
//! envelope as headers, the payload as it is stored.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use es_core::{Envelope, Metadata, Position, RawEvent, StoredEvent, StreamId, Version};
use uuid::Uuid;

/// The header names of the envelope. The event id is also `Nats-Msg-Id`, JetStream's
/// de-duplication key.
pub mod header {
    /// JetStream's de-duplication key: the event id.
    pub const MESSAGE_ID: &str = "Nats-Msg-Id";
    /// The event id (UUID).
    pub const EVENT_ID: &str = "Es-Event-Id";
    /// The stream type (the aggregate's type).
    pub const STREAM_TYPE: &str = "Es-Stream-Type";
    /// The stream id (the aggregate's id).
    pub const STREAM_ID: &str = "Es-Stream-Id";
    /// The event's version within its stream.
    pub const STREAM_VERSION: &str = "Es-Stream-Version";
    /// The event's position in the store's order.
    pub const POSITION: &str = "Es-Position";
    /// The stored type name.
    pub const EVENT_TYPE: &str = "Es-Event-Type";
    /// The schema version the payload was written with.
    pub const SCHEMA_VERSION: &str = "Es-Schema-Version";
    /// When the store committed the event: nanoseconds since the Unix epoch.
    pub const RECORDED_AT: &str = "Es-Recorded-At";
    /// The metadata as JSON (correlation id, causation id, headers); absent when empty.
    pub const METADATA: &str = "Es-Metadata";
}

/// How the relay names the subject of an event.
///
/// The default is `<prefix>.<stream type>.<event type>` (`bank.BankAccount.MoneyDeposited`),
/// each name made a valid subject token (characters other than ASCII letters, digits, `-` and
/// `_` become `_`). A subject only routes: the headers carry the names exactly, so two names
/// that map to one token are still told apart by the consumer.
#[derive(Clone)]
pub struct Subjects {
    prefix: String,
    custom: Option<Arc<SubjectTail>>,
}

/// What [`Subjects::with_tail`] takes.
type SubjectTail = dyn Fn(&StoredEvent) -> String + Send + Sync;

impl fmt::Debug for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subjects").field("prefix", &self.prefix).field("custom", &self.custom.is_some()).finish()
    }
}

impl Subjects {
    /// `<prefix>.<stream type>.<event type>`. The prefix may have several tokens (`prod.bank`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), custom: None }
    }

    /// Subjects of your own: `<prefix>.` followed by what `tail` returns for the event (one or
    /// more tokens, `accounts.eu.deposits` say). The stream holds `<prefix>.>`.
    #[must_use]
    pub fn with_tail(mut self, tail: impl Fn(&StoredEvent) -> String + Send + Sync + 'static) -> Self {
        self.custom = Some(Arc::new(tail));
        self
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What the stream and the consumers take: every subject under the prefix.
    #[must_use]
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The subject of `event`.
    #[must_use]
    pub fn subject(&self, event: &StoredEvent) -> String {
        match &self.custom {
            Some(tail) => format!("{}.{}", self.prefix, tail(event)),
            None => format!("{}.{}.{}", self.prefix, token(event.stream.stream_type()), token(&event.event.event_type)),
        }
    }
}

/// `name` as one subject token: ASCII letters, digits, `-` and `_` kept, anything else `_`.
#[must_use]
pub fn token(name: &str) -> String {
    let token: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if token.is_empty() { "_".to_owned() } else { token }
}

/// A header value holds visible ASCII only (no line breaks, no edge spaces the parser would
/// trim): anything else, and `%`, is percent-encoded as UTF-8 bytes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers of `event`'s message: `Nats-Msg-Id` (the event id) and the envelope.
#[must_use]
pub fn headers(event: &StoredEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = event.event_id.to_string();
    headers.insert(header::MESSAGE_ID, id.as_str());
    headers.insert(header::EVENT_ID, id);
    headers.insert(header::STREAM_TYPE, escape(event.stream.stream_type()));
    headers.insert(header::STREAM_ID, escape(event.stream.id()));
    headers.insert(header::STREAM_VERSION, event.stream_version.0.to_string());
    headers.insert(header::POSITION, event.position.0.to_string());
    headers.insert(header::EVENT_TYPE, escape(&event.event.event_type));
    headers.insert(header::SCHEMA_VERSION, event.event.schema_version.to_string());
    let nanos = event.recorded_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    headers.insert(header::RECORDED_AT, nanos.to_string());
    if !event.metadata.is_empty() {
        // serde_json escapes control characters; `escape` keeps the rest visible ASCII.
        let json = serde_json::to_string(&event.metadata).unwrap_or_default();
        headers.insert(header::METADATA, escape(&json));
    }
    headers
}

/// Why a message is not an event the relay published: which header, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message is not an es event: {problem}")]
pub struct BadMessage {
    /// What is wrong (a missing or unreadable header, a payload that is not UTF-8).
    pub problem: String,
}

fn bad(problem: impl Into<String>) -> BadMessage {
    BadMessage { problem: problem.into() }
}

/// The stored event a message carries, as the store handed it to the relay.
///
/// # Errors
/// [`BadMessage`] naming the header that is missing or does not read, or a payload that is not
/// UTF-8.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<StoredEvent, BadMessage> {
    let headers = headers.ok_or_else(|| bad("it has no headers"))?;
    let text = |name: &'static str| {
        headers.get(name).map(|value| value.as_str()).ok_or_else(|| bad(format!("header `{name}` is missing")))
    };
    let unescaped = |name: &'static str| {
        text(name).and_then(|value| unescape(value).ok_or_else(|| bad(format!("header `{name}` does not decode"))))
    };
    fn number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, BadMessage> {
        value.parse().map_err(|_| bad(format!("header `{name}` is not a number: `{}`", es_core::store::bounded(value))))
    }
    let event_id = Uuid::parse_str(text(header::EVENT_ID)?).map_err(|_| bad("header `Es-Event-Id` is not a UUID"))?;
    let stream = StreamId::new(unescaped(header::STREAM_TYPE)?, unescaped(header::STREAM_ID)?);
    let stream_version = Version(number(header::STREAM_VERSION, text(header::STREAM_VERSION)?)?);
    let position = Position(number(header::POSITION, text(header::POSITION)?)?);
    let schema_version = number(header::SCHEMA_VERSION, text(header::SCHEMA_VERSION)?)?;
    let nanos: u128 = number(header::RECORDED_AT, text(header::RECORDED_AT)?)?;
    let since = Duration::new(
        u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("header `Es-Recorded-At` is out of range"))?,
        u32::try_from(nanos % 1_000_000_000).unwrap_or_default(),
    );
    let recorded_at =
        SystemTime::UNIX_EPOCH.checked_add(since).ok_or_else(|| bad("header `Es-Recorded-At` is out of range"))?;
    let metadata = match headers.get(header::METADATA) {
        None => Metadata::new(),
        Some(_) => serde_json::from_str(&unescaped(header::METADATA)?)
            .map_err(|error| bad(format!("header `Es-Metadata` is not es metadata: {error}")))?,
    };
    let payload = std::str::from_utf8(payload).map_err(|_| bad("the payload is not UTF-8"))?;
    Ok(Envelope {
        position,
        stream,
        stream_version,
        event_id,
        metadata,
        recorded_at,
        event: RawEvent::new(unescaped(header::EVENT_TYPE)?, schema_version, payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream_id: &str, metadata: Metadata) -> StoredEvent {
        Envelope {
            position: Position(42),
            stream: StreamId::new("Bank Account", stream_id),
            stream_version: Version(7),
            event_id: Uuid::now_v7(),
            metadata,
            recorded_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            event: RawEvent::new("Money.Deposited", 2, r#"{"amount":5,"reference":"a\nb"}"#),
        }
    }

    #[test]
    fn an_event_survives_the_headers_exactly() {
        let odd = " id with spaces, 100% ünïcode\r\nand a line break ";
        let metadata = Metadata::new()
            .with_correlation_id(Uuid::now_v7())
            .with_header("user", "ann\nsmith")
            .with_header("note", "50% off");
        for original in [event("42", Metadata::new()), event(odd, metadata)] {
            let headers = headers(&original);
            assert_eq!(headers.get(header::MESSAGE_ID).unwrap().as_str(), original.event_id.to_string());
            for (_, values) in headers.iter() {
                for value in values {
                    assert!(value.as_str().bytes().all(|b| (0x21..=0x7e).contains(&b)), "{value:?}");
                }
            }
            let decoded = decode(Some(&headers), original.event.payload.as_bytes()).unwrap();
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn the_default_subject_is_made_of_valid_tokens() {
        let subjects = Subjects::new("prod.bank");
        assert_eq!(subjects.subject(&event("1", Metadata::new())), "prod.bank.Bank_Account.Money_Deposited");
        assert_eq!(subjects.wildcard(), "prod.bank.>");
        let custom = Subjects::new("bank").with_tail(|e| format!("by-type.{}", token(&e.event.event_type)));
        assert_eq!(custom.subject(&event("1", Metadata::new())), "bank.by-type.Money_Deposited");
        assert_eq!(token(""), "_");
    }

    #[test]
    fn a_message_without_the_envelope_says_what_is_missing() {
        assert_eq!(decode(None, b"{}").unwrap_err().problem, "it has no headers");
        let mut headers = headers(&event("1", Metadata::new()));
        headers.insert(header::STREAM_VERSION, "seven");
        let error = decode(Some(&headers), b"{}").unwrap_err();
        assert!(error.problem.contains("Es-Stream-Version"), "{error}");
        let error = decode(Some(&HeaderMap::new()), b"{}").unwrap_err();
        assert!(error.problem.contains("is missing"), "{error}");
        let headers = super::headers(&event("1", Metadata::new()));
        assert!(decode(Some(&headers), &[0xff, 0xfe]).unwrap_err().problem.contains("UTF-8"));
    }
}
