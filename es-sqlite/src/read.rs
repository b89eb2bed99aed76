//! Reads: streams, all events in store order, single events, snapshots.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, params};
use uuid::Uuid;

use es_core::store::kit;
use es_core::store::{AllEventsPage, BackendErrorKind, CorruptProblem, Corruption, StoreOrigin};
use es_core::{Checkpoint, Position, ReadAllFilter, Snapshot, StoreError, StoredEvent, StreamId, Version};

use crate::append::to_sql_integer;
use crate::error::Context;
use crate::rows;

const SELECT_STREAM_VERSION: &str =
    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_type = ?1 AND stream_id = ?2";

static SELECT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM events WHERE event_id = ?1", rows::event_columns(None)));

/// From version 1 there is no lower bound (see `read_stream`).
static SELECT_STREAM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM events WHERE stream_type = ?1 AND stream_id = ?2 AND stream_version >= ?3 \
         ORDER BY stream_version LIMIT ?4",
        rows::event_columns(None)
    )
});

/// The highest and the lowest position: two lookups at the ends of the rowid tree.
const SELECT_BOUNDS: &str = "SELECT (SELECT MAX(position) FROM events), (SELECT MIN(position) FROM events)";

/// A page of all events.
fn select_all(filtered: bool) -> String {
    // A NULL list admits everything; lists are bound as one JSON array each, never spliced
    // into the SQL: any number of types, and no SQL in an error message.
    let filter = if filtered {
        " AND (?4 IS NULL OR stream_type IN (SELECT value FROM json_each(?4))) \
         AND (?5 IS NULL OR event_type IN (SELECT value FROM json_each(?5)))"
    } else {
        ""
    };
    format!(
        "SELECT {} FROM events WHERE position > ?1 AND position <= ?2{filter} ORDER BY position LIMIT ?3",
        rows::event_columns(None)
    )
}

/// Whether a stream has a version: one lookup in the `(stream_type, stream_id,
/// stream_version)` index.
const SELECT_VERSION_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM events WHERE stream_type = ?1 AND stream_id = ?2 \
     AND stream_version = ?3)";

static SELECT_ALL: LazyLock<String> = LazyLock::new(|| select_all(false));
static SELECT_ALL_FILTERED: LazyLock<String> = LazyLock::new(|| select_all(true));

pub(crate) fn stream_version(connection: &Connection, stream: &StreamId) -> Result<Version, StoreError> {
    let mut statement = connection.prepare_cached(SELECT_STREAM_VERSION).context("cannot read a stream's version")?;
    let value: i64 = statement
        .query_row(params![stream.stream_type(), stream.id()], |row| row.get(0))
        .context("cannot read a stream's version")?;
    rows::stream_version(stream, value)
}

pub(crate) fn find_event(connection: &Connection, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
    let mut statement = connection.prepare_cached(&SELECT_BY_ID).context("cannot look up an event id")?;
    rows::first_event(statement.query([event_id.as_bytes()]).context("cannot look up an event id")?)
}

pub(crate) fn read_stream(
    connection: &Connection,
    stream: &StreamId,
    from: Version,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // From version 1 there is no lower bound, so a row at version 0 or below is read and
    // refused instead of being filtered out. A version beyond SQLite's integers finds nothing.
    let lower = if from.0 <= 1 { i64::MIN } else { i64::try_from(from.0).unwrap_or(i64::MAX) };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(&SELECT_STREAM).context("cannot read a stream")?;
    let page = rows::events(
        statement.query(params![stream.stream_type(), stream.id(), lower, limit]).context("cannot read a stream")?,
        "cannot read a stream",
    )?;
    kit::check_stream_page(stream, from, &page)?;
    Ok(page)
}

/// A page of all events after `from` that pass `filter`.
///
/// `next` must move past events the filter rejects (or a selective reader would scan the same
/// rows forever) without ever moving past an event the reader has not been shown. The read
/// takes `head`, the highest committed position, and then reads only up to it, both in one
/// read transaction (one snapshot of the file):
///
/// - a full page ends at its last event: `next` is that event's position, exactly as
///   [`es_core::InMemoryStore`] does;
/// - a page that is not full has examined every row up to `head`, so `next = head`.
///
/// An event committed after the snapshot was taken has a higher position (see `append`), so
/// it is neither in this page nor behind `next`, and the next read finds it.
///
/// Impossible history is refused, never skipped: a position below 1 anywhere in the table
/// (which `position > after` would pass over), a position that goes backwards, a version
/// below 1, and a version whose predecessor in its stream is missing
/// ([`check_predecessors`]).
pub(crate) fn read_all(
    connection: &Connection,
    origin: &StoreOrigin,
    seen: &VersionsSeen,
    from: &Checkpoint,
    filter: &ReadAllFilter,
    limit: usize,
) -> Result<AllEventsPage, StoreError> {
    let after = from.resolve(origin)?.map_or(0, |[position, _]| position);
    let nothing_new = || AllEventsPage::empty(from.clone());
    if limit == 0 {
        return Ok(nothing_new());
    }
    let transaction = connection.unchecked_transaction().context("cannot start a read")?;
    let (head, lowest) = bounds(&transaction)?;
    if let Some(lowest) = lowest
        && lowest <= 0
    {
        return Err(impossible_row(&transaction, lowest));
    }
    let head = head.map_or(Ok(0), |head| u64::try_from(head).map_err(|_| impossible_position(head)))?;
    if head <= after {
        return Ok(nothing_new());
    }
    let bind = |names: &[String]| -> Result<Option<String>, StoreError> {
        if names.is_empty() {
            return Ok(None);
        }
        serde_json::to_string(names).map(Some).map_err(|error| {
            es_core::store::BackendError::new(BackendErrorKind::Other, "cannot encode a filter")
                .with_source(error)
                .into()
        })
    };
    let after_value = to_sql_integer(after, "position")?;
    let head_value = to_sql_integer(head, "position")?;
    let limit_value = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = if filter.is_all() {
        let mut statement = transaction.prepare_cached(&SELECT_ALL).context("cannot read all events")?;
        rows::events(
            statement.query(params![after_value, head_value, limit_value]).context("cannot read all events")?,
            "cannot read all events",
        )?
    } else {
        let (stream_types, event_types) = (bind(&filter.stream_types)?, bind(&filter.event_types)?);
        let mut statement = transaction.prepare_cached(&SELECT_ALL_FILTERED).context("cannot read all events")?;
        rows::events(
            statement
                .query(params![after_value, head_value, limit_value, stream_types, event_types])
                .context("cannot read all events")?,
            "cannot read all events",
        )?
    };
    kit::check_all_page(Position(after), &events)?;
    check_predecessors(&transaction, &events, seen)?;
    // A full page ends after its last event. A page that is not full examined every row up to
    // `head` (in this snapshot; a later commit gets a higher position), so it resumes there.
    let next = match events.last() {
        Some(last) if events.len() == limit => last.position,
        _ => Position(head),
    };
    let checkpoint = |position: Position| Checkpoint::new(origin, [position.0, 0]);
    let events = events.into_iter().map(|event| {
        let after = checkpoint(event.position);
        (event, after)
    });
    Ok(AllEventsPage::new(events.collect(), checkpoint(next)))
}

/// What earlier reads of all events found about streams, so that a read need not look up the
/// predecessor of an event whose predecessor an earlier read handed out.
///
/// For each stream: `prefix`, a version up to which every version has been seen to exist
/// (from 1, in order), and `last`, the version of the stream that the latest read ended with.
/// A projection reading from the start, or one resuming where it stopped, then needs no
/// lookup at all; a reader starting in the middle needs one per stream. The map is cleared
/// when it holds [`VersionsSeen::MAX_STREAMS`] streams.
#[derive(Default)]
pub(crate) struct VersionsSeen {
    streams: Mutex<HashMap<StreamId, Seen>>,
}

#[derive(Clone, Copy, Default)]
struct Seen {
    prefix: Version,
    last: Version,
}

impl VersionsSeen {
    const MAX_STREAMS: usize = 100_000;

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Seen>> {
        // Plain values, each written in one step: never half-updated.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks that every event's stream has the version before it (from 1). An event whose
/// predecessor is the previous event of its stream in the page, or was seen by an earlier read
/// ([`VersionsSeen`]), needs nothing more; any other (the first of its stream in the page, or
/// one after events a filter rejected) is looked up in the stream index.
fn check_predecessors(connection: &Connection, page: &[StoredEvent], seen: &VersionsSeen) -> Result<(), StoreError> {
    if page.is_empty() {
        return Ok(());
    }
    // This page's view: the last version of each stream, and whether every version up to it
    // is known to exist. Worked out under one lock; the lookups run after it is released.
    let mut in_page: HashMap<&StreamId, (Version, bool)> = HashMap::new();
    let mut unknown = Vec::new();
    {
        let streams = seen.lock();
        for event in page {
            let (version, previous) = (event.stream_version, Version(event.stream_version.0 - 1));
            let entry = in_page.entry(&event.stream);
            let prefix = match &entry {
                _ if previous == Version::NONE => true,
                std::collections::hash_map::Entry::Occupied(last) if last.get().0 == previous => last.get().1,
                _ => match streams.get(&event.stream) {
                    Some(known) if known.prefix >= previous => true,
                    Some(known) if known.last == previous => false,
                    _ => {
                        unknown.push(event);
                        false
                    }
                },
            };
            *entry.or_default() = (version, prefix);
        }
    }
    if !unknown.is_empty() {
        let mut statement =
            connection.prepare_cached(SELECT_VERSION_EXISTS).context("cannot check a stream's versions")?;
        for event in unknown {
            let previous = Version(event.stream_version.0 - 1);
            let stored: bool = statement
                .query_row(
                    params![
                        event.stream.stream_type(),
                        event.stream.id(),
                        to_sql_integer(previous.0, "stream version")?
                    ],
                    |row| row.get(0),
                )
                .context("cannot check a stream's versions")?;
            if !stored {
                return Err(kit::version_gap(&event.stream, previous, "nothing", Some(event.position)));
            }
        }
    }
    let mut streams = seen.lock();
    if streams.len() + in_page.len() > VersionsSeen::MAX_STREAMS {
        streams.clear();
    }
    for (stream, (last, prefix)) in in_page {
        let known = streams.entry(stream.clone()).or_default();
        known.last = last;
        if prefix && last > known.prefix {
            known.prefix = last;
        }
    }
    Ok(())
}

/// The highest and lowest positions stored (`None` for an empty store).
fn bounds(connection: &Connection) -> Result<(Option<i64>, Option<i64>), StoreError> {
    connection
        .prepare_cached(SELECT_BOUNDS)
        .and_then(|mut statement| statement.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
        .context("cannot read the store's positions")
}

/// The corruption of the row at `position` (below 1), naming its stream and version when the
/// row reads that far.
fn impossible_row(connection: &Connection, position: i64) -> StoreError {
    let sql = format!("SELECT {} FROM events WHERE position = ?1", rows::event_columns(None));
    let row = connection.prepare(&sql).and_then(|mut statement| {
        let mut found = statement.query([position])?;
        Ok(found.next()?.map(rows::event))
    });
    match row {
        // Reading the row reports the position, with its stream and version.
        Ok(Some(Err(error))) => error,
        _ => impossible_position(position),
    }
}

fn impossible_position(found: i64) -> StoreError {
    StoreError::corrupt(Corruption::new(CorruptProblem::ImpossiblePosition { found: found.to_string() }))
}

pub(crate) fn head(connection: &Connection, origin: &StoreOrigin) -> Result<Checkpoint, StoreError> {
    let (head, lowest) = bounds(connection)?;
    if let Some(lowest) = lowest
        && lowest <= 0
    {
        return Err(impossible_row(connection, lowest));
    }
    match head {
        None => Ok(Checkpoint::START),
        Some(head) => {
            u64::try_from(head).map(|head| Checkpoint::new(origin, [head, 0])).map_err(|_| impossible_position(head))
        }
    }
}

pub(crate) fn load_snapshot(connection: &Connection, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT version, snapshot_version, state FROM snapshots WHERE stream_type = ?1 AND stream_id = ?2",
        )
        .context("cannot load a snapshot")?;
    let mut found = statement.query(params![stream.stream_type(), stream.id()]).context("cannot load a snapshot")?;
    match found.next().context("cannot load a snapshot")? {
        Some(row) => rows::snapshot(stream, row).map(Some),
        None => Ok(None),
    }
}
