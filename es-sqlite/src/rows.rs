//! Reading rows back into records, checking every value: a row the code cannot read is a
//! [`StoreError::Corrupt`] that names the table, the position and the stream, never a panic.
//!
//! The payload is handed out as stored: turning it into an event is `es_core::decode_record`'s
//! job, which reports a payload that does not fit as a typed `DecodeError`.

use std::time::{Duration, SystemTime};

use rusqlite::Row;
use rusqlite::types::ValueRef;
use uuid::Uuid;

use es_core::store::{CorruptProblem, Corruption};
use es_core::{Metadata, Position, RawEvent, Snapshot, StoreError, StoredEvent, StreamId, Version};

use crate::error::Context;

/// The columns of `events` that [`event`] reads, in the order it reads them: every query
/// that hands its rows to [`event`] selects [`event_columns`] first.
pub(crate) const EVENT_COLUMNS: [&str; 10] = [
    "position",
    "stream_type",
    "stream_id",
    "stream_version",
    "event_id",
    "event_type",
    "schema_version",
    "payload",
    "metadata",
    "recorded_at",
];

const POSITION: usize = 0;
const STREAM_TYPE: usize = 1;
const STREAM_ID: usize = 2;
const STREAM_VERSION: usize = 3;
const EVENT_ID: usize = 4;
const EVENT_TYPE: usize = 5;
const SCHEMA_VERSION: usize = 6;
const PAYLOAD: usize = 7;
const METADATA: usize = 8;
const RECORDED_AT: usize = 9;

/// The column list for a `SELECT`, each qualified with `table` (an alias) when one is given.
pub(crate) fn event_columns(table: Option<&str>) -> String {
    let qualified = EVENT_COLUMNS.iter().map(|column| match table {
        Some(table) => format!("{table}.{column}"),
        None => (*column).to_owned(),
    });
    qualified.collect::<Vec<_>>().join(", ")
}

/// The field name of column `index` of [`EVENT_COLUMNS`] in a corruption report.
fn field(index: usize) -> String {
    format!("events.{}", EVENT_COLUMNS[index])
}

/// Every event the query yields; a failure to step says `context`.
pub(crate) fn events(mut rows: rusqlite::Rows<'_>, context: &'static str) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events: Vec<StoredEvent> = Vec::new();
    while let Some(row) = rows.next().context(context)? {
        let event = event_after(row, events.last().map(|last| &last.stream))?;
        events.push(event);
    }
    Ok(events)
}

/// The first event the query yields, if any.
pub(crate) fn first_event(mut rows: rusqlite::Rows<'_>) -> Result<Option<StoredEvent>, StoreError> {
    match rows.next().context("cannot read an event")? {
        Some(row) => event(row).map(Some),
        None => Ok(None),
    }
}

/// One row of `events`, selected as [`event_columns`].
pub(crate) fn event(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    event_after(row, None)
}

/// One row of `events`, sharing the stream name of the event read before it when the row is of
/// the same stream (a stream read, a batch): no new strings for it.
fn event_after(row: &Row<'_>, previous: Option<&StreamId>) -> Result<StoredEvent, StoreError> {
    let corrupt = |index: usize, reason: String| {
        let mut corruption = Corruption::new(CorruptProblem::Unreadable { field: field(index).into(), reason });
        if let (Ok(ValueRef::Text(stream_type)), Ok(ValueRef::Text(id))) =
            (row.get_ref(STREAM_TYPE), row.get_ref(STREAM_ID))
        {
            corruption.stream = Some(StreamId::new(String::from_utf8_lossy(stream_type), String::from_utf8_lossy(id)));
        }
        if let Ok(ValueRef::Integer(version)) = row.get_ref(STREAM_VERSION)
            && let Ok(version) = u64::try_from(version)
        {
            corruption.version = Some(Version(version));
        }
        if let Ok(ValueRef::Integer(position)) = row.get_ref(POSITION)
            && let Ok(position) = u64::try_from(position)
        {
            corruption.position = Some(Position(position));
        }
        StoreError::corrupt(corruption)
    };
    let position = integer(row, POSITION).map_err(|r| corrupt(POSITION, r))?;
    let stream = match (previous, row.get_ref(STREAM_TYPE), row.get_ref(STREAM_ID)) {
        (Some(previous), Ok(ValueRef::Text(stream_type)), Ok(ValueRef::Text(id)))
            if stream_type == previous.stream_type().as_bytes() && id == previous.id().as_bytes() =>
        {
            previous.clone()
        }
        _ => {
            let stream_type = text(row, STREAM_TYPE).map_err(|r| corrupt(STREAM_TYPE, r))?;
            let stream_id = text(row, STREAM_ID).map_err(|r| corrupt(STREAM_ID, r))?;
            StreamId::new(stream_type, stream_id)
        }
    };
    let stream_version = integer(row, STREAM_VERSION).map_err(|r| corrupt(STREAM_VERSION, r))?;
    // Positions and versions count from 1: anything else is not a value es writes.
    let position = match u64::try_from(position) {
        Ok(position) if position > 0 => Position(position),
        _ => {
            let corruption =
                Corruption::new(CorruptProblem::ImpossiblePosition { found: position.to_string() }).in_stream(&stream);
            let corruption = match u64::try_from(stream_version) {
                Ok(version) => corruption.at_version(Version(version)),
                Err(_) => corruption,
            };
            return Err(StoreError::corrupt(corruption));
        }
    };
    let stream_version = match u64::try_from(stream_version) {
        Ok(version) if version > 0 => Version(version),
        _ => {
            return Err(es_core::store::kit::version_gap(
                &stream,
                Version(1),
                &stream_version.to_string(),
                Some(position),
            ));
        }
    };
    let event_id = uuid(row, EVENT_ID).map_err(|r| corrupt(EVENT_ID, r))?;
    let event_type = text(row, EVENT_TYPE).map_err(|r| corrupt(EVENT_TYPE, r))?;
    let schema_version = integer(row, SCHEMA_VERSION)
        .and_then(|v| u32::try_from(v).map_err(|_| format!("holds {v}, not a schema version")))
        .map_err(|r| corrupt(SCHEMA_VERSION, r))?;
    let payload = text(row, PAYLOAD).map_err(|r| corrupt(PAYLOAD, r))?;
    let metadata = text(row, METADATA)
        .and_then(|json| {
            serde_json::from_str::<Metadata>(&json)
                .map_err(|error| format!("does not hold the metadata JSON es writes: {error}"))
        })
        .map_err(|r| corrupt(METADATA, r))?;
    let recorded_at = integer(row, RECORDED_AT)
        .and_then(|micros| time_from_micros(micros).ok_or_else(|| format!("holds {micros}, out of range")))
        .map_err(|r| corrupt(RECORDED_AT, r))?;
    Ok(StoredEvent {
        position,
        stream,
        stream_version,
        event_id,
        metadata,
        recorded_at,
        event: RawEvent { event_type, schema_version, payload },
    })
}

/// The row of `snapshots` for `stream`, selected as `version, snapshot_version, state`.
pub(crate) fn snapshot(stream: &StreamId, row: &Row<'_>) -> Result<Snapshot, StoreError> {
    let corrupt = |field: &'static str, reason: String| {
        StoreError::corrupt(
            Corruption::new(CorruptProblem::Unreadable { field: field.into(), reason }).in_stream(stream),
        )
    };
    let version = integer(row, 0)
        .and_then(|v| u64::try_from(v).map_err(|_| format!("holds {v}, not a stream version")))
        .map_err(|r| corrupt("snapshots.version", r))?;
    let snapshot_version = integer(row, 1)
        .and_then(|v| u32::try_from(v).map_err(|_| format!("holds {v}, not a version")))
        .map_err(|r| corrupt("snapshots.snapshot_version", r))?;
    let state = text(row, 2).map_err(|r| corrupt("snapshots.state", r))?;
    Ok(Snapshot { stream: stream.clone(), version: Version(version), snapshot_version, state })
}

/// A stream version computed by SQL (`MAX(stream_version)`), 0 for an empty stream.
pub(crate) fn stream_version(stream: &StreamId, value: i64) -> Result<Version, StoreError> {
    u64::try_from(value).map(Version).map_err(|_| kit_gap(stream, value))
}

fn kit_gap(stream: &StreamId, value: i64) -> StoreError {
    es_core::store::kit::version_gap(stream, Version(1), &value.to_string(), None)
}

fn kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn value<'r>(row: &'r Row<'_>, index: usize) -> Result<ValueRef<'r>, String> {
    row.get_ref(index).map_err(|error| format!("cannot be read: {error}"))
}

fn text(row: &Row<'_>, index: usize) -> Result<String, String> {
    match value(row, index)? {
        ValueRef::Text(bytes) => {
            String::from_utf8(bytes.to_vec()).map_err(|error| format!("is not valid UTF-8: {error}"))
        }
        other => Err(format!("holds {} where text belongs", kind(other))),
    }
}

fn integer(row: &Row<'_>, index: usize) -> Result<i64, String> {
    match value(row, index)? {
        ValueRef::Integer(value) => Ok(value),
        other => Err(format!("holds {} where an integer belongs", kind(other))),
    }
}

fn uuid(row: &Row<'_>, index: usize) -> Result<Uuid, String> {
    match value(row, index)? {
        ValueRef::Blob(bytes) => {
            Uuid::from_slice(bytes).map_err(|_| format!("holds {} bytes, not the 16 of a UUID", bytes.len()))
        }
        other => Err(format!("holds {} where a 16-byte UUID blob belongs", kind(other))),
    }
}

/// Microseconds since the Unix epoch, as stored in `recorded_at`; `None` for a time SQLite's
/// integers cannot hold (some 292,000 years away).
pub(crate) fn micros_since_epoch(time: SystemTime) -> Option<i64> {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros()).ok().map(|micros| -micros),
    }
}

/// The time `micros` microseconds after (or before, when negative) the Unix epoch.
pub(crate) fn time_from_micros(micros: i64) -> Option<SystemTime> {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 { SystemTime::UNIX_EPOCH.checked_add(offset) } else { SystemTime::UNIX_EPOCH.checked_sub(offset) }
}
