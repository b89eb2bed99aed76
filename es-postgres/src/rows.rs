//! Reading rows back into records, checking every value: a row the code cannot read is a
//! [`StoreError::Corrupt`] that names the column, the position and the stream, never a panic.
//!
//! The payload is handed out as stored: turning it into an event is `es_core::decode_record`'s
//! job, which reports a payload that does not fit as a typed `DecodeError`.

use std::error::Error;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};
use uuid::Uuid;

use es_core::store::{CorruptProblem, Corruption, bounded};
use es_core::{Metadata, Position, RawEvent, Snapshot, StoreError, StoredEvent, StreamId, Version};

/// A `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01 UTC. Read raw, so that
/// `infinity` or a date past what `SystemTime` holds is a typed error here, not a panic in a
/// conversion.
struct PgMicros(i64);

impl<'a> FromSql<'a> for PgMicros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(PgMicros(i64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECS: u64 = 946_684_800;

/// The time of a stored `timestamptz`; `None` for `infinity` and `-infinity` (stored as the
/// extreme integers), which es never writes, and for times `SystemTime` cannot hold.
fn time_from_pg_micros(micros: i64) -> Option<SystemTime> {
    if micros == i64::MAX || micros == i64::MIN {
        return None;
    }
    let pg_epoch = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_SECS))?;
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 { pg_epoch.checked_add(offset) } else { pg_epoch.checked_sub(offset) }
}

/// `time` cut to whole microseconds, as PostgreSQL keeps it, so that what an append returns is
/// what a read returns.
pub(crate) fn to_micros(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(after.as_micros()).unwrap_or(0)),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Column `index` of `row`, NULL and values of another type refused with a reason.
fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, String> {
    row.try_get::<_, Option<T>>(index)
        .map_err(|error| format!("cannot be read ({})", bounded(&error.to_string())))?
        .ok_or_else(|| "is NULL".to_owned())
}

fn positive(value: i64) -> Result<u64, String> {
    match u64::try_from(value) {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("holds {value}; it counts from 1")),
    }
}

/// How many columns `schema::EVENT_COLUMNS` has.
pub(crate) const EVENT_COLUMN_COUNT: usize = 10;

/// The `has_predecessor` flag of a read of all events at column `index`; a value that does not
/// read counts as missing, so the read reports the gap rather than hand the event out.
pub(crate) fn has_predecessor(row: &Row, index: usize) -> bool {
    matches!(row.try_get::<_, Option<bool>>(index), Ok(Some(true)))
}

/// Whether the event columns starting at `offset` are all NULL (the empty side of an outer
/// join).
pub(crate) fn no_event(row: &Row, offset: usize) -> bool {
    matches!(row.try_get::<_, Option<i64>>(offset), Ok(None))
}

/// One event, selected as `schema::EVENT_COLUMNS` starting at column `offset`.
pub(crate) fn event(row: &Row, offset: usize) -> Result<StoredEvent, StoreError> {
    let corrupt = |field: &'static str, reason: String| {
        let mut corruption = Corruption::new(CorruptProblem::Unreadable { field: field.into(), reason });
        if let (Ok(stream_type), Ok(id)) = (get::<String>(row, offset + 1), get::<String>(row, offset + 2)) {
            corruption.stream = Some(StreamId::new(stream_type, id));
        }
        if let Ok(version) = get::<i64>(row, offset + 3)
            && let Ok(version) = u64::try_from(version)
        {
            corruption.version = Some(Version(version));
        }
        if let Ok(position) = get::<i64>(row, offset)
            && let Ok(position) = u64::try_from(position)
        {
            corruption.position = Some(Position(position));
        }
        StoreError::corrupt(corruption)
    };
    let position = get::<i64>(row, offset).and_then(positive).map_err(|r| corrupt("events.position", r))?;
    let stream_type = get::<String>(row, offset + 1).map_err(|r| corrupt("events.stream_type", r))?;
    let stream_id = get::<String>(row, offset + 2).map_err(|r| corrupt("events.stream_id", r))?;
    let stream_version =
        get::<i64>(row, offset + 3).and_then(positive).map_err(|r| corrupt("events.stream_version", r))?;
    let event_id = get::<Uuid>(row, offset + 4).map_err(|r| corrupt("events.event_id", r))?;
    let event_type = get::<String>(row, offset + 5).map_err(|r| corrupt("events.event_type", r))?;
    let schema_version = get::<i64>(row, offset + 6)
        .and_then(|v| u32::try_from(v).map_err(|_| format!("holds {v}, not a schema version")))
        .map_err(|r| corrupt("events.schema_version", r))?;
    let payload = get::<String>(row, offset + 7).map_err(|r| corrupt("events.payload", r))?;
    let metadata = get::<String>(row, offset + 8)
        .and_then(|json| {
            serde_json::from_str::<Metadata>(&json)
                .map_err(|error| format!("does not hold the metadata JSON es writes: {error}"))
        })
        .map_err(|r| corrupt("events.metadata", r))?;
    let recorded_at = get::<PgMicros>(row, offset + 9)
        .and_then(|PgMicros(micros)| {
            time_from_pg_micros(micros).ok_or_else(|| "is infinite or out of range".to_owned())
        })
        .map_err(|r| corrupt("events.recorded_at", r))?;
    Ok(StoredEvent {
        position: Position(position),
        stream: StreamId::new(stream_type, stream_id),
        stream_version: Version(stream_version),
        event_id,
        metadata,
        recorded_at,
        event: RawEvent { event_type, schema_version, payload },
    })
}

/// Every row as an event from column 0.
pub(crate) fn events(rows: &[Row]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter().map(|row| event(row, 0)).collect()
}

/// The row of `snapshots` for `stream`, selected as `version, snapshot_version, state`.
pub(crate) fn snapshot(stream: &StreamId, row: &Row) -> Result<Snapshot, StoreError> {
    let corrupt = |field: &'static str, reason: String| {
        StoreError::corrupt(
            Corruption::new(CorruptProblem::Unreadable { field: field.into(), reason }).in_stream(stream),
        )
    };
    let version = get::<i64>(row, 0)
        .and_then(|v| u64::try_from(v).map_err(|_| format!("holds {v}, not a stream version")))
        .map_err(|r| corrupt("snapshots.version", r))?;
    let snapshot_version = get::<i64>(row, 1)
        .and_then(|v| u32::try_from(v).map_err(|_| format!("holds {v}, not a version")))
        .map_err(|r| corrupt("snapshots.snapshot_version", r))?;
    let state = get::<String>(row, 2).map_err(|r| corrupt("snapshots.state", r))?;
    Ok(Snapshot { stream: stream.clone(), version: Version(version), snapshot_version, state })
}

/// A non-negative integer computed or stored by the store (a stream's version, the frontier),
/// as `u64`.
pub(crate) fn counter(row: &Row, index: usize, field: &'static str) -> Result<u64, StoreError> {
    get::<i64>(row, index).and_then(|v| u64::try_from(v).map_err(|_| format!("holds {v}, below 0"))).map_err(|reason| {
        StoreError::corrupt(Corruption::new(CorruptProblem::Unreadable { field: field.into(), reason }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_without_panicking() {
        assert_eq!(time_from_pg_micros(0), SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_SECS)));
        // `infinity` and `-infinity`.
        assert_eq!(time_from_pg_micros(i64::MAX), None);
        assert_eq!(time_from_pg_micros(i64::MIN), None);
        let now = to_micros(SystemTime::now());
        assert_eq!(now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos() % 1000).ok(), Some(0));
    }
}
