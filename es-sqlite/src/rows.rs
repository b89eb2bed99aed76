//! Reading rows back into records, checking every value: a row the code cannot read is a
//! [`StoreError::Corrupt`] that names the table, the position and the stream, never a panic.
//!
//! The payload is handed out as stored: turning it into an event is `es_core::decode_record`'s
//! job, which reports a payload that does not fit as a typed `DecodeError`.

use std::time::{Duration, SystemTime};

use rusqlite::Row;
use rusqlite::types::ValueRef;
use uuid::Uuid;

use es_core::{Metadata, Position, Snapshot, StoreError, StoredEvent, StreamId, Version};

use crate::error::Context;

/// Every event the query yields.
pub(crate) fn events(mut rows: rusqlite::Rows<'_>) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(row) = rows.next().context("cannot read events")? {
        events.push(event(row)?);
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

/// One row of `events`, selected as `event_columns!()`.
pub(crate) fn event(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: format!(
            "table `events`, position {}, stream {}/{} version {}",
            show(row, 0),
            show(row, 1),
            show(row, 2),
            show(row, 3)
        ),
        reason,
    };
    let position = integer(row, 0, "position").and_then(|p| positive(p, "position")).map_err(corrupt)?;
    let stream_type = text(row, 1, "stream_type").map_err(corrupt)?;
    let stream_id = text(row, 2, "stream_id").map_err(corrupt)?;
    let stream_version =
        integer(row, 3, "stream_version").and_then(|v| positive(v, "stream_version")).map_err(corrupt)?;
    let event_id = uuid(row, 4, "event_id").map_err(corrupt)?;
    let event_type = text(row, 5, "event_type").map_err(corrupt)?;
    let schema_version = integer(row, 6, "schema_version")
        .and_then(|v| u32::try_from(v).map_err(|_| format!("column `schema_version` holds {v}, not a schema version")))
        .map_err(corrupt)?;
    let payload = text(row, 7, "payload").map_err(corrupt)?;
    let metadata = text(row, 8, "metadata")
        .and_then(|json| {
            serde_json::from_str::<Metadata>(&json)
                .map_err(|error| format!("column `metadata` does not hold the metadata JSON es writes: {error}"))
        })
        .map_err(corrupt)?;
    let recorded_at = integer(row, 9, "recorded_at")
        .and_then(|micros| {
            time_from_micros(micros).ok_or_else(|| format!("column `recorded_at` holds {micros}, out of range"))
        })
        .map_err(corrupt)?;
    Ok(StoredEvent {
        position: Position(position),
        stream_type,
        stream_id,
        stream_version: Version(stream_version),
        event_id,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    })
}

/// The row of `snapshots` for `stream`, selected as `version, snapshot_version, state`.
pub(crate) fn snapshot(stream: &StreamId, row: &Row<'_>) -> Result<Snapshot, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: format!("table `snapshots`, stream {stream} version {}", show(row, 0)),
        reason,
    };
    let version = integer(row, 0, "version")
        .and_then(|v| u64::try_from(v).map_err(|_| format!("column `version` holds {v}, not a stream version")))
        .map_err(corrupt)?;
    let snapshot_version = integer(row, 1, "snapshot_version")
        .and_then(|v| u32::try_from(v).map_err(|_| format!("column `snapshot_version` holds {v}, not a version")))
        .map_err(corrupt)?;
    let state = text(row, 2, "state").map_err(corrupt)?;
    Ok(Snapshot { stream: stream.clone(), version: Version(version), snapshot_version, state })
}

/// A stream version computed by SQL (`MAX(stream_version)`), 0 for an empty stream.
pub(crate) fn stream_version(stream: &StreamId, value: i64) -> Result<Version, StoreError> {
    u64::try_from(value).map(Version).map_err(|_| StoreError::Corrupt {
        location: format!("table `events`, stream {stream}"),
        reason: format!("the stream's highest version is {value}, below zero"),
    })
}

/// A value for a message about a row that may be corrupt: whatever is there, shown loosely.
fn show(row: &Row<'_>, index: usize) -> String {
    match row.get_ref(index) {
        Ok(ValueRef::Null) => "NULL".to_owned(),
        Ok(ValueRef::Integer(value)) => value.to_string(),
        Ok(ValueRef::Real(value)) => value.to_string(),
        Ok(ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Ok(ValueRef::Blob(bytes)) => format!("<blob of {} bytes>", bytes.len()),
        Err(_) => "?".to_owned(),
    }
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

fn value<'r>(row: &'r Row<'_>, index: usize, column: &str) -> Result<ValueRef<'r>, String> {
    row.get_ref(index).map_err(|error| format!("column `{column}` cannot be read: {error}"))
}

fn text(row: &Row<'_>, index: usize, column: &str) -> Result<String, String> {
    match value(row, index, column)? {
        ValueRef::Text(bytes) => {
            String::from_utf8(bytes.to_vec()).map_err(|error| format!("column `{column}` is not valid UTF-8: {error}"))
        }
        other => Err(format!("column `{column}` holds {} where text belongs", kind(other))),
    }
}

fn integer(row: &Row<'_>, index: usize, column: &str) -> Result<i64, String> {
    match value(row, index, column)? {
        ValueRef::Integer(value) => Ok(value),
        other => Err(format!("column `{column}` holds {} where an integer belongs", kind(other))),
    }
}

fn positive(value: i64, column: &str) -> Result<u64, String> {
    match u64::try_from(value) {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("column `{column}` holds {value}; it counts from 1")),
    }
}

fn uuid(row: &Row<'_>, index: usize, column: &str) -> Result<Uuid, String> {
    match value(row, index, column)? {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes)
            .map_err(|_| format!("column `{column}` holds {} bytes, not the 16 of a UUID", bytes.len())),
        other => Err(format!("column `{column}` holds {} where a 16-byte UUID blob belongs", kind(other))),
    }
}

/// Microseconds since the Unix epoch, as stored in `recorded_at`.
pub(crate) fn micros_since_epoch(time: SystemTime) -> i64 {
    let saturate = |micros: u128| i64::try_from(micros).unwrap_or(i64::MAX);
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => saturate(after.as_micros()),
        Err(before) => -saturate(before.duration().as_micros()),
    }
}

/// The time `micros` microseconds after (or before, when negative) the Unix epoch.
pub(crate) fn time_from_micros(micros: i64) -> Option<SystemTime> {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 { SystemTime::UNIX_EPOCH.checked_add(offset) } else { SystemTime::UNIX_EPOCH.checked_sub(offset) }
}
