//! Writes: appends (with the caller's own SQL in the same transaction, if any) and snapshots.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::SystemTime;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use es_core::store::kit::{self, resolve_retry};
use es_core::store::{Appended, BackendErrorKind, CorruptProblem, Corruption};
use es_core::{ExpectedVersion, NewEvent, Position, Snapshot, StoreError, StoredEvent, StreamId, Version};

use crate::error::{Context, sqlite_error, store_failure};
use crate::read::{find_event, stream_version};
use crate::rows;

const INSERT_EVENT: &str = "INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// The stored events with the given ids (a JSON array of their hex forms), in one query: the
/// lookup uses the unique index on `event_id` once per id.
static SELECT_BY_IDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM events WHERE event_id IN (SELECT unhex(value) FROM json_each(?1))",
        rows::event_columns(None)
    )
});

/// Appends `events` to `stream` in one IMMEDIATE transaction, and runs `hook` in it after the
/// inserts, with the events as they will be committed. The transaction commits only when the
/// hook returns `Ok`; a retry that finds the events stored writes nothing and runs no hook.
///
/// Stored ids are found with at most one lookup on the way to a commit: a retry has every id
/// stored, so its first one; a batch whose first id is new is no retry, and if another of its
/// ids is stored the UNIQUE index on `event_id` refuses the insert, and the batch's ids are
/// then looked up in one query to name it. A version conflict looks them up too, so that a
/// reused id is reported before a conflict, as by every store.
pub(crate) fn append<T, E, H>(
    connection: &mut Connection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    hook: H,
) -> Result<(Appended, Option<T>), E>
where
    E: From<StoreError>,
    H: FnOnce(&Transaction<'_>, &[StoredEvent]) -> Result<T, E>,
{
    kit::check_batch(&events)?;
    // IMMEDIATE takes the write lock up front, so the id lookup and the version check below
    // see the state the inserts will commit on: nobody else can write in between.
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot start an append transaction")?;
    if let Some(first) = events.first()
        && find_event(&transaction, first.event_id)?.is_some()
    {
        let existing = stored_with_ids(&transaction, &events)?;
        if let Some(stored) = resolve_retry(stream, &events, existing)? {
            // Nothing written: dropping the transaction rolls it back.
            return Ok((Appended::already_stored(stored), None));
        }
    }
    let actual = stream_version(&transaction, stream)?;
    if !expected.admits(actual) {
        if events.len() > 1 {
            // The first id is new (or this is a retry, returned above): any stored id is reused.
            resolve_retry(stream, &events, stored_with_ids(&transaction, &events)?)?;
        }
        return Err(StoreError::Conflict { stream: stream.clone(), expected, actual }.into());
    }
    let ids = kit::batch_ids(&events);
    let committed = match insert(&transaction, stream, actual, events) {
        Ok(committed) => committed,
        Err(Refused::Constraint { offset, error }) => {
            return Err(reused_id(&transaction, ids[offset], error).into());
        }
        Err(Refused::Store(error)) => return Err(error.into()),
    };
    let output = hook(&transaction, &committed)?;
    transaction.commit().context("cannot commit an append")?;
    Ok((Appended::written(committed), Some(output)))
}

/// Why an insert failed.
enum Refused {
    /// A constraint refused the event at `offset` of the batch: see [`reused_id`].
    Constraint {
        offset: usize,
        error: rusqlite::Error,
    },
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        Refused::Store(error)
    }
}

/// The error for a batch whose event at `offset` a constraint refused. The events before it
/// went in, so their ids were new: if this one's id is stored, it is the first stored id of
/// the batch, named as [`resolve_retry`] names it. Otherwise the constraint was another one
/// (a stream version taken, which only damaged history allows), reported as it is.
fn reused_id(transaction: &Transaction<'_>, event_id: Uuid, error: rusqlite::Error) -> StoreError {
    match find_event(transaction, event_id) {
        Ok(Some(stored)) => StoreError::EventIdReused {
            event_id,
            existing_stream: stored.stream,
            existing_version: stored.stream_version,
        },
        Ok(None) => sqlite_error("cannot append events", error),
        Err(lookup) => lookup,
    }
}

/// What is stored under each id of `batch`, in the batch's order, looked up in one query.
fn stored_with_ids(transaction: &Transaction<'_>, batch: &[NewEvent]) -> Result<Vec<Option<StoredEvent>>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = String::with_capacity(batch.len() * 35 + 2);
    ids.push('[');
    for (index, event) in batch.iter().enumerate() {
        if index > 0 {
            ids.push(',');
        }
        ids.push('"');
        ids.push_str(event.event_id.simple().encode_lower(&mut Uuid::encode_buffer()));
        ids.push('"');
    }
    ids.push(']');
    let mut statement = transaction.prepare_cached(&SELECT_BY_IDS).context("cannot look up the batch's event ids")?;
    let found = rows::events(
        statement.query([ids]).context("cannot look up the batch's event ids")?,
        "cannot look up the batch's event ids",
    )?;
    if found.is_empty() {
        return Ok(vec![None; batch.len()]);
    }
    let mut by_id: HashMap<Uuid, StoredEvent> = found.into_iter().map(|event| (event.event_id, event)).collect();
    Ok(batch.iter().map(|event| by_id.remove(&event.event_id)).collect())
}

fn insert(
    transaction: &Transaction<'_>,
    stream: &StreamId,
    actual: Version,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, Refused> {
    // Stored in microseconds, so hand back the time as it will read back.
    let now = SystemTime::now();
    let (micros, recorded_at) = rows::micros_since_epoch(now)
        .and_then(|micros| Some((micros, rows::time_from_micros(micros)?)))
        .ok_or_else(|| {
            store_failure(
                BackendErrorKind::OutOfRange,
                format!("the system clock reads {now:?}, beyond what SQLite stores"),
            )
        })?;
    let mut committed = Vec::with_capacity(events.len());
    let mut statement = transaction.prepare_cached(INSERT_EVENT).context("cannot append events")?;
    for (offset, event) in events.into_iter().enumerate() {
        let version = Version(actual.0 + offset as u64 + 1);
        let metadata = serde_json::to_string(&event.metadata).map_err(|error| {
            StoreError::from(
                es_core::store::BackendError::new(BackendErrorKind::Other, "cannot encode metadata").with_source(error),
            )
        })?;
        statement
            .execute(params![
                stream.stream_type(),
                stream.id(),
                to_sql_integer(version.0, "stream version")?,
                event.event_id.as_bytes(),
                event.event.event_type,
                event.event.schema_version,
                event.event.payload,
                metadata,
                micros,
            ])
            .map_err(|error| match error.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => Refused::Constraint { offset, error },
                _ => Refused::Store(insert_error(transaction, error)),
            })?;
        // SQLite runs one write transaction at a time and AUTOINCREMENT hands out rowids
        // above every one ever used, so positions become visible strictly in order: a
        // reader that has seen position p has seen every event below p that will ever
        // exist, and "the last position read" is a checkpoint that never skips.
        let rowid = transaction.last_insert_rowid();
        let position = u64::try_from(rowid).ok().filter(|&position| position > 0).ok_or_else(|| {
            StoreError::corrupt(
                Corruption::new(CorruptProblem::ImpossiblePosition { found: rowid.to_string() })
                    .in_stream(stream)
                    .at_version(version),
            )
        })?;
        committed.push(StoredEvent {
            position: Position(position),
            stream: stream.clone(),
            stream_version: version,
            event_id: event.event_id,
            metadata: event.metadata,
            recorded_at,
            event: event.event,
        });
    }
    Ok(committed)
}

/// An insert's error. SQLite reports "database or disk is full" when AUTOINCREMENT has no
/// position left above the highest one ever used: that is a row es never writes (at
/// `i64::MAX`), so say so instead of asking for disk space.
fn insert_error(transaction: &Transaction<'_>, error: rusqlite::Error) -> StoreError {
    if error.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        let highest: rusqlite::Result<Option<i64>> = transaction.query_row(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
             COALESCE((SELECT MAX(position) FROM events), 0))",
            [],
            |row| row.get(0),
        );
        if let Ok(Some(highest)) = highest
            && highest == i64::MAX
        {
            return StoreError::corrupt(
                Corruption::new(CorruptProblem::ImpossiblePosition { found: highest.to_string() })
                    .at_position(Position(highest.unsigned_abs())),
            );
        }
    }
    sqlite_error("cannot append events", error)
}

pub(crate) fn to_sql_integer(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        store_failure(
            BackendErrorKind::OutOfRange,
            format!("{what} {value} is beyond what SQLite stores (at most {})", i64::MAX),
        )
    })
}

pub(crate) fn save_snapshot(connection: &Connection, snapshot: &Snapshot) -> Result<(), StoreError> {
    // Replaces the stream's snapshot unless the stored one is newer, as the in-memory store does.
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO snapshots (stream_type, stream_id, version, snapshot_version, state) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (stream_type, stream_id) DO UPDATE SET version = excluded.version, \
             snapshot_version = excluded.snapshot_version, state = excluded.state \
             WHERE excluded.version >= snapshots.version",
        )
        .context("cannot save a snapshot")?;
    statement
        .execute(params![
            snapshot.stream.stream_type(),
            snapshot.stream.id(),
            to_sql_integer(snapshot.version.0, "snapshot version")?,
            snapshot.snapshot_version,
            snapshot.state,
        ])
        .context("cannot save a snapshot")?;
    Ok(())
}

/// Runs `work` in an IMMEDIATE transaction on the writer, committing when it returns `Ok`.
pub(crate) fn transaction<T, E>(
    connection: &mut Connection,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    let transaction =
        connection.transaction_with_behavior(TransactionBehavior::Immediate).context("cannot start a transaction")?;
    let output = work(&transaction)?;
    transaction.commit().context("cannot commit a transaction")?;
    Ok(output)
}
